"""Text-to-image concept erasure on Stable Diffusion 1.x: UCE / RECE closed-form cross-attention
edits and a text-encoder SAE clamp, with verification that needs no image-quality model.

Imports are lazy: `import workbench.diffusion` does not import diffusers.
"""
from __future__ import annotations

__all__ = ["load_pipeline", "DiffusionModel", "TINY"]


def __getattr__(name):
    if name in __all__:
        from workbench.diffusion import models
        return getattr(models, name)
    raise AttributeError(name)
