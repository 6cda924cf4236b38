"""Concept Workbench: locate a concept in a language model, edit it out, verify, export a patch.

Imports are lazy so that one broken optional dependency cannot break the rest.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "load_model": "workbench.models",
    "HookedModel": "workbench.models",
    "resolve_device": "workbench.paths",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
