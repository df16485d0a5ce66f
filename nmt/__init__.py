"""nmt: attention-based neural machine translation on one shared pipeline."""

from nmt.paths import register_resolvers

__version__ = "0.1.0"

register_resolvers()
