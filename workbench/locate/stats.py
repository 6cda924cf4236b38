"""Second-moment statistics of MLP down-projection inputs over general text (ROME's C = E[k kᵀ]).

Accumulated in fp32 (on the CPU, whatever the model's dtype or device map) over the corpus' train split in one forward pass for every layer, cached per
model under WORKBENCH_HOME/stats/ as safetensors (keyed by the model's content id — config hash +
weight fingerprints, `workbench.models.identity` — token count and sequence length, so two models
that share a folder name, such as every `build-moe` dense twin, never share statistics).
"""
from __future__ import annotations

import json
import time

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from workbench.paths import atomic_path, cache_dir


def _key(model, n_tokens: int, seq_len: int) -> str:
    """Cache key: the model's name (for people) + its content id (config + weights: for the cache)."""
    from workbench.models.identity import model_content_id
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.model_id)
    dtype = getattr(model.hf, "dtype", torch.float32)
    tag = "" if dtype == torch.float32 else "-" + str(dtype).replace("torch.", "")   # bf16 activations differ
    return f"{safe}-{model_content_id(model)}-mom2-{n_tokens}-{seq_len}{tag}"


def mlp_key_second_moment(model, layer: int, n_tokens: int = 16384, seq_len: int = 128, batch_size: int = 8,
                          refresh: bool = False, progress: bool = True) -> torch.Tensor:
    """C [d_mlp, d_mlp] = mean over corpus tokens of k kᵀ, k = blocks.{layer}.mlp.hook_post (fp32)."""
    folder = cache_dir("stats")
    path = folder / f"{_key(model, n_tokens, seq_len)}.safetensors"
    if path.exists() and not refresh:
        with safe_open(str(path), framework="pt") as fh:      # reads only this layer's matrix
            return fh.get_tensor(f"layer{layer}")
    from workbench.data.corpus import token_chunks
    chunks = token_chunks(model.tokenizer, "train", n_tokens, seq_len)
    sites = [f"blocks.{L}.mlp.hook_post" for L in range(model.n_layers)]
    d = model.info.d_mlp
    acc = {s: torch.zeros(d, d, dtype=torch.float32) for s in sites}
    count = 0
    t0 = time.perf_counter()

    def accumulate(act, site):
        k = act.reshape(-1, act.shape[-1]).float().cpu()
        acc[site].addmm_(k.T, k)

    with torch.no_grad(), model.hooks([(s, accumulate) for s in sites]):
        for start in tqdm(range(0, len(chunks), batch_size), desc="MLP key covariance", disable=not progress):
            batch = chunks[start:start + batch_size].to(model.device)
            model.forward({"input_ids": batch, "attention_mask": torch.ones_like(batch)}, logits_to_keep=1)
            count += batch.numel()
    tensors = {f"layer{L}": (acc[s] / count).contiguous() for L, s in enumerate(sites)}
    meta = {"model": model.model_id, "tokens": str(count), "seq_len": str(seq_len),
            "seconds": f"{time.perf_counter() - t0:.1f}", "source": "shakespeare train split"}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    (folder / f"{path.stem}.json").write_text(json.dumps(meta))
    return tensors[f"layer{layer}"]
