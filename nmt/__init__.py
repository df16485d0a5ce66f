"""nmt: attention-based neural machine translation on one shared pipeline.

The Python API is :class:`nmt.Translator` (``from nmt import Translator``), imported on first use so that
``import nmt`` stays light for the configuration helpers.
"""

from typing import Any

from nmt.paths import register_resolvers

__version__ = "0.1.0"
__all__ = ["Translator", "__version__"]

register_resolvers()


def __getattr__(name: str) -> Any:
    if name == "Translator":
        from nmt.translator import Translator

        return Translator
    raise AttributeError(f"module 'nmt' has no attribute {name!r}")
