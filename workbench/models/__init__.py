"""Model loading, the hooked-model facade and the site grammar."""
from __future__ import annotations

import torch

from workbench.models.hooked import ActivationCache, HookedModel, ModelInfo
from workbench.models.loading import DEFAULT_MODEL, EMBEDDED, ModelLoadError, load_hf
from workbench.models.sites import Site, SiteError, parse_site

BACKENDS = ("hf", "nnsight", "tl")


def load_model(name_or_path: str = DEFAULT_MODEL, backend: str = "hf", dtype: str | torch.dtype | None = None,
               device: str | torch.device | None = None, device_map=None, max_memory: dict | None = None,
               offload_folder=None) -> HookedModel:
    """Load a model as a HookedModel.

    name_or_path: an embedded name ('smollm2-135m', 'gemma-3-270m'), a local HF folder, a .gguf
    file or a hub id. backend: 'hf' (PyTorch hooks, default), 'nnsight' or 'tl' — the other
    backends are built eagerly over the same weights and are reachable as model.nnsight() /
    model.tl(); the facade's own methods always use the hf path.
    dtype: "float32" (default), "bf16"/"bfloat16", "fp16". device_map ("auto", {module: device},
    ...) spreads a model too large for one device over several through accelerate (see
    `workbench.models.loading.load_hf`); statistics and attributions are computed in fp32
    whatever the model's dtype.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    model_id, hf, tok = load_hf(name_or_path, dtype=dtype, device=device, device_map=device_map,
                                 max_memory=max_memory, offload_folder=offload_folder)
    model = HookedModel(hf, tok, model_id)
    if backend == "tl":
        model.tl()
    elif backend == "nnsight":
        model.nnsight()
    return model


__all__ = ["ActivationCache", "BACKENDS", "DEFAULT_MODEL", "EMBEDDED", "HookedModel", "ModelInfo",
           "ModelLoadError", "Site", "SiteError", "load_hf", "load_model", "parse_site"]
