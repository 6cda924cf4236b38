"""Identity of a model by its content, not its folder name.

`model_content_id(model)` hashes the model's config (as JSON, minus volatile keys such as the
folder name) together with fingerprints of a few weight tensors (the embedding, the first and last
block's parameters, the final norm). Two folders holding the same weights get the same id; a
retrained or edited model (e.g. every `build-moe` dense twin, all called `dense`) gets a new one.
Caches of derived data (covariances, fit corpora, activation shards) are keyed by it.

The id is computed once per module object and remembered (weights edited in place afterwards, e.g.
by a scoped edit, do not change the cached id: caches are meant for the base model).
"""
from __future__ import annotations

import hashlib
import json
import weakref

import torch

_VOLATILE = {"_name_or_path", "name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype",
             "quantization_config", "_attn_implementation_autoset", "architectures_version"}
_CACHE: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def _fingerprint(t: torch.Tensor) -> str:
    """sha256 of a tensor's fp32 bytes (on CPU), with its shape."""
    data = t.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(str(tuple(data.shape)).encode())
    h.update(data.numpy().tobytes())
    return h.hexdigest()


def _config_dict(hf) -> dict:
    cfg = getattr(hf, "config", None)
    if cfg is None:
        return {}
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))
    return {k: v for k, v in sorted(d.items()) if k not in _VOLATILE}


def model_content_id(model) -> str:
    """A 16-hex-digit id of the model's config and weights (HookedModel or torch module)."""
    hf = getattr(model, "hf", model)
    if hf in _CACHE:
        return _CACHE[hf]
    h = hashlib.sha256(json.dumps(_config_dict(hf), sort_keys=True, default=str).encode())
    params = list(hf.named_parameters())
    # first, middle and last tensors: embedding, first block, last block, final norm
    picks = sorted({0, 1, len(params) // 2, len(params) - 2, len(params) - 1})
    for i in picks:
        if 0 <= i < len(params):
            name, p = params[i]
            h.update(name.encode())
            h.update(_fingerprint(p).encode())
    out = h.hexdigest()[:16]
    _CACHE[hf] = out
    return out
