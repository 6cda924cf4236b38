"""Sparse autoencoders: activation cache + SAE storage (store), TopK training (train), feature editing (clamp).

Feature editing with the error term kept (clamp), shared by the sae-clamp edit
(workbench.edits.sae_clamp) and the features' causal check (workbench.locate.sae).
"""
from workbench.sae.store import SAEHandle, SAEStoreError, load_sae, save_sae

__all__ = ["SAEHandle", "SAEStoreError", "load_sae", "save_sae"]
