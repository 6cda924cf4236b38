"""On-disk activation cache and SAE storage.

Activations: one forward pass over the corpus records several hook sites at once; each site gets
its own folder of safetensors shards (`acts` [n, d_in] fp32, the first position of every chunk
excluded: its residual norm is ~100x the median, Xiao et al. 2023 "attention sinks", and would
dominate the reconstruction loss) plus `meta.json`. The model forward dominates the cost, so
several SAEs (widths, k) train from one cache.

SAEs are stored in the sae-lens inference format (`cfg.json` + `sae_weights.safetensors`, what
`sae_lens.SAE.load_from_disk` reads) plus `workbench_sae.json` (name, model, hook site, training
metrics). A local folder and a pretrained sae-lens release (`release/sae_id`) load through the same
`load_sae`, which returns an `SAEHandle` with a content hash of the weights (sha256 over the sorted
tensor fingerprints) that sae-clamp patches record.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from workbench.errors import WorkbenchError
from workbench.paths import atomic_path, cache_dir, write_json

META = "meta.json"
WB_META = "workbench_sae.json"


class SAEStoreError(WorkbenchError, ValueError):
    """An activation cache or SAE folder that cannot be read; the message says which and why."""


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


# ------------------------------------------------------------------------------ activations
def model_cache_id(model) -> str:
    """`{model_id}-{content id}`: the folder activations of `model` are cached under (by content, so
    two models that share a name, such as `build-moe` dense twins, never share a cache)."""
    from workbench.models.identity import model_content_id
    return f"{model.model_id}-{model_content_id(model)}"


def activation_dir(model_id: str, site: str, key: str) -> Path:
    """The cache folder of one site's activations; `model_id` is `model_cache_id(model)`."""
    return cache_dir("sae", "acts", _slug(model_id), _slug(site), _slug(key))


def cache_key(source: str, split: str, n_tokens: int, seq_len: int) -> str:
    return f"{source}-{split}-{n_tokens}-ctx{seq_len}"


@torch.no_grad()
def cache_activations(model, sites: list[str], n_tokens: int = 200_000, seq_len: int = 128,
                      source: str = "shakespeare", split: str = "train", batch_size: int = 16,
                      shard_tokens: int = 65_536, progress: bool = True, overwrite: bool = False) -> dict[str, Path]:
    """Record `sites` over ~n_tokens corpus tokens (one forward for all sites); returns site -> folder.

    A folder whose meta.json says it is complete is reused (no forward pass) unless `overwrite`.
    Shapes: each shard's `acts` is [n, d_in] fp32, n = batch rows x (seq_len - 1).
    """
    from workbench.data.corpus import token_chunks
    for s in sites:
        site = model.site(s)
        if site.is_weight:
            raise ValueError(f"site {s!r} is a weight, not an activation site")
    key = cache_key(source, split, n_tokens, seq_len)
    dirs = {s: activation_dir(model_cache_id(model), s, key) for s in sites}
    todo = [s for s in sites if overwrite or not _complete(dirs[s])]
    if not todo:
        return dirs
    chunks = token_chunks(model.tokenizer, split=split, n_tokens=n_tokens, seq_len=seq_len, source=source)
    for s in todo:
        for f in dirs[s].glob("shard_*.safetensors"):
            f.unlink()
        (dirs[s] / META).unlink(missing_ok=True)
    bufs: dict[str, list[torch.Tensor]] = {s: [] for s in todo}
    counts = {s: 0 for s in todo}
    shard_no = {s: 0 for s in todo}

    def flush(s: str, force: bool = False):
        n = sum(t.shape[0] for t in bufs[s])
        if n == 0 or (n < shard_tokens and not force):
            return
        acts = torch.cat(bufs[s]).float().contiguous()
        with atomic_path(dirs[s] / f"shard_{shard_no[s]:04d}.safetensors") as tmp:
            save_file({"acts": acts}, str(tmp))
        shard_no[s] += 1
        counts[s] += acts.shape[0]
        bufs[s] = []

    it = range(0, chunks.shape[0], batch_size)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc=f"caching {len(todo)} site(s)", unit="batch")
    for i in it:
        ids = chunks[i:i + batch_size].to(model.device)
        _, cache = model.run_with_cache({"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                                        sites=todo, logits_to_keep=1)
        for s in todo:
            a = cache[s][:, 1:]
            bufs[s].append(a.reshape(-1, a.shape[-1]).cpu())
            flush(s)
    for s in todo:
        flush(s, force=True)
        write_json(dirs[s] / META, {"model": model.model_id, "site": s, "source": source, "split": split,
                                    "seq_len": seq_len, "n_tokens": counts[s], "n_shards": shard_no[s],
                                    "d_in": int(cache[s].shape[-1]), "first_position_excluded": True,
                                    "complete": True})
    return dirs


def _complete(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / META).read_text()).get("complete"))
    except (OSError, json.JSONDecodeError):
        return False


def read_cache_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    if not _complete(folder):
        raise SAEStoreError(f"{folder}: not a complete activation cache ({META} missing or incomplete)")
    return json.loads((folder / META).read_text())


def load_activations(folder: str | Path, max_tokens: int | None = None) -> torch.Tensor:
    """All cached activations of one site [n, d_in] fp32 (the first `max_tokens` when given)."""
    folder = Path(folder)
    meta = read_cache_meta(folder)
    parts, n = [], 0
    for i in range(meta["n_shards"]):
        f = folder / f"shard_{i:04d}.safetensors"
        if not f.is_file():
            raise SAEStoreError(f"{folder}: shard {f.name} is missing")
        t = load_file(str(f))["acts"]
        parts.append(t)
        n += t.shape[0]
        if max_tokens is not None and n >= max_tokens:
            break
    acts = torch.cat(parts)
    return acts[:max_tokens] if max_tokens is not None else acts


def batches(acts: torch.Tensor, batch_size: int, seed: int = 0) -> Iterator[torch.Tensor]:
    """Endless shuffled mini-batches [batch_size, d_in] over `acts` (a new permutation per epoch)."""
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(acts.shape[0], generator=g)
        for i in range(0, acts.shape[0] - batch_size + 1, batch_size):
            yield acts[perm[i:i + batch_size]]


# ------------------------------------------------------------------------------ SAEs
@dataclass
class SAEHandle:
    """A loaded SAE (a sae_lens SAE object), where it came from and what it reads.

    name: `sae_name` of the feature names `{sae_name}#{index}`; site: the hook (site grammar);
    source: {"path": ...} or {"release": ..., "sae_id": ...}; sha256: content hash of the weights.
    """
    sae: Any
    name: str
    site: str
    source: dict[str, str]
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    def feature(self, index: int) -> str:
        return f"{self.name}#{index}"

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations [..., d_sae] of activations [..., d_in] (fp32)."""
        return self.sae.encode(x.to(self.sae.W_enc.dtype))

    @torch.no_grad()
    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return self.sae.decode(f)


def topk_sae(d_in: int, d_sae: int, k: int, hook_name: str, state: dict[str, torch.Tensor] | None = None):
    """An inference sae-lens TopK SAE (fp32, cpu) of these sizes; `state`: its tensors (W_enc [d_in, d_sae],
    b_enc, W_dec [d_sae, d_in], b_dec), loaded strictly (a missing, extra or mis-shaped tensor raises)."""
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    for name, v in (("d_in", d_in), ("d_sae", d_sae), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SAEStoreError(f"TopK SAE {name}={v!r} must be a positive integer")
    if k > d_sae:
        raise SAEStoreError(f"TopK SAE k={k} exceeds its width d_sae={d_sae}")
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, dtype="float32", device="cpu",
                                metadata=SAEMetadata(hook_name=hook_name)))
    if state is not None:
        try:
            sae.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise SAEStoreError(f"TopK SAE tensors do not fit d_in={d_in}, d_sae={d_sae}: {exc}") from None
    return sae.requires_grad_(False).eval()


def weights_sha256(sae) -> str:
    """sha256 over the sorted (name, tensor fingerprint) pairs of the SAE's state dict."""
    from workbench.fingerprint import tensor_fingerprint
    h = hashlib.sha256()
    for name, t in sorted(sae.state_dict().items()):
        h.update(f"{name}:{tensor_fingerprint(t)}\n".encode())
    return h.hexdigest()


def save_sae(sae, folder: str | Path, name: str, site: str, model_id: str, metrics: dict | None = None,
             training: dict | None = None, model_content: str | None = None) -> Path:
    """Write `sae` (a sae_lens SAE / TrainingSAE) as a folder; atomic (write, then rename).

    model_content: the model's content id (`workbench.models.identity.model_content_id`), recorded
    so an SAE is matched to the model it was trained on, not to any model of that name."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SAEStoreError(f"cannot write SAE to {folder}: it is a file")
    check_sae_target(folder)
    with atomic_path(folder, is_dir=True) as tmp:
        if hasattr(sae, "save_inference_model"):
            sae.save_inference_model(str(tmp))
        else:
            sae.save_model(str(tmp))
        inf = _load_sae_lens_folder(tmp)
        check_finite_sae(inf, f"cannot write SAE to {folder}")
        meta = {"name": name, "site": site, "model": model_id, "metrics": metrics or {},
                "training": training or {}, "sha256": weights_sha256(inf)}
        if model_content is not None:
            meta["model_content_id"] = model_content
        write_json(tmp / WB_META, meta)
    return folder


def check_finite_sae(sae, where: str) -> None:
    """Refuse an SAE whose weights hold NaN or infinite values (SAEStoreError, one line)."""
    for name, t in sae.state_dict().items():
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            raise SAEStoreError(f"{where}: SAE tensor {name} holds NaN or infinite values")


def check_sae_target(folder: str | Path) -> Path:
    """Refuse an SAE output folder that is a file, a symlink or a non-empty folder that is not an SAE."""
    from workbench.paths import check_output_folder
    return check_output_folder(folder, ("cfg.json", WB_META), "an SAE folder")


def saes_for(model, root: str | Path | None = None) -> list[Path]:
    """SAE folders under `root` (default WORKBENCH_HOME/sae) trained on `model`: their workbench_sae.json
    names the model, and its content id when recorded (so a same-named model's SAEs do not match)."""
    from workbench.models.identity import model_content_id
    from workbench.paths import home
    root = Path(root) if root is not None else home() / "sae"
    out = []
    for meta in sorted(root.glob(f"**/{WB_META}")) if root.is_dir() else []:
        try:
            info = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if info.get("model") == model.model_id and info.get("model_content_id") in (None, model_content_id(model)):
            out.append(meta.parent)
    return out


def _load_sae_lens_folder(folder: Path, device: str = "cpu"):
    from sae_lens import SAE
    for f in ("cfg.json", "sae_weights.safetensors"):
        if not (folder / f).is_file():
            raise SAEStoreError(f"{folder}: not an SAE folder ({f} is missing)")
    import warnings
    try:
        with warnings.catch_warnings():       # sae-lens advises on TransformerLens loading; not relevant here
            warnings.filterwarnings("ignore", message="(?s).*model_from_pretrained_kwargs")
            sae = SAE.load_from_disk(str(folder), device=device)
    except Exception as exc:           # sae_lens raises assorted errors on bad configs
        raise SAEStoreError(f"{folder}: cannot load the SAE ({type(exc).__name__}: {exc})") from exc
    return sae.requires_grad_(False).eval()


def load_sae(spec: str | Path, sae_id: str | None = None, device: str = "cpu") -> SAEHandle:
    """A local SAE folder, or a sae-lens pretrained release with `sae_id` (needs a reachable hub).

    Either way the result is a sae_lens SAE in an SAEHandle; the hook site is the SAE's
    `metadata.hook_name` (TransformerLens names = the workbench site grammar).
    """
    path = Path(spec)
    if sae_id is None:
        if not path.is_dir():
            raise SAEStoreError(f"{spec}: no such SAE folder (for a pretrained SAE give a release and an sae_id)")
        sae = _load_sae_lens_folder(path, device)
        check_finite_sae(sae, str(path))
        meta: dict = {}
        if (path / WB_META).is_file():
            try:
                meta = json.loads((path / WB_META).read_text())
            except (json.JSONDecodeError, RecursionError) as exc:
                why = exc if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                raise SAEStoreError(f"{path / WB_META}: not valid JSON ({why})") from None
            if not isinstance(meta, dict):
                raise SAEStoreError(f"{path / WB_META}: must be a JSON object")
        site = meta.get("site") or getattr(sae.cfg.metadata, "hook_name", None)
        if not site:
            raise SAEStoreError(f"{path}: the SAE names no hook site (cfg.json metadata.hook_name)")
        name = meta.get("name") or path.name
        sha = weights_sha256(sae)
        if meta.get("sha256") and meta["sha256"] != sha:
            raise SAEStoreError(f"{path}: weights do not match the sha256 in {WB_META}")
        return SAEHandle(sae, name, site, {"path": str(path.resolve())}, sha, meta)
    from sae_lens import SAE
    try:
        sae = SAE.from_pretrained(str(spec), sae_id, device=device)
    except Exception as exc:
        raise SAEStoreError(f"cannot load pretrained SAE {spec}/{sae_id} ({type(exc).__name__}: {exc}); "
                            "pretrained releases need a reachable hub or a filled HF cache") from exc
    if isinstance(sae, tuple):          # older sae_lens returned (sae, cfg, sparsity)
        sae = sae[0]
    sae = sae.requires_grad_(False).eval()
    site = sae.cfg.metadata.hook_name
    return SAEHandle(sae, f"{spec}/{sae_id}", site, {"release": str(spec), "sae_id": sae_id}, weights_sha256(sae))
