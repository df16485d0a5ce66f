"""nmt: attention-based neural machine translation on one shared pipeline.

The Python API is :class:`nmt.Translator` (``from nmt import Translator``) and :func:`nmt.load_translator`
(a checkpoint or an ``nmt-export`` directory), imported on first use so that ``import nmt`` stays light
for the configuration helpers.
"""

from typing import Any

from nmt.paths import register_resolvers

__version__ = "0.1.0"
__all__ = ["Translator", "__version__", "load_translator"]

register_resolvers()


def __getattr__(name: str) -> Any:
    if name == "Translator":
        from nmt.decoding.translator import Translator

        return Translator
    if name == "load_translator":
        from nmt.decoding.backend import load_translator

        return load_translator
    raise AttributeError(f"module 'nmt' has no attribute {name!r}")
