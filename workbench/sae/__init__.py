"""Sparse autoencoders: activation cache + SAE storage (store), TopK training (train).

Concept features live in workbench.locate.sae, the sae-clamp edit in workbench.edits.sae_clamp.
"""
from workbench.sae.store import SAEHandle, SAEStoreError, load_sae, save_sae

__all__ = ["SAEHandle", "SAEStoreError", "load_sae", "save_sae"]
