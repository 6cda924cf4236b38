"""Weight masks: the top fraction of weights by an attribution score, globally or per module,
stored compactly and reusable across edits.

A mask selects the weights an edit may change. `keep` is the share of weights KEPT FOR UPDATING,
as the WAGLE reference's `ratio` (`score2mask` with scores −|s|: ranks < ratio · N get 1, and the
trainer multiplies gradients by the mask; its configs use 0.95 for TOFU and 0.6 for WMDP).
`sparsity` (the share left OUT, = 1 − keep) is the older name, still accepted. Selection is
exact: precisely round(keep · N) weights (ties broken by position). On disk a mask is one safetensors file:
per tensor either a packed bitmap (uint8, numel/8 bytes) or sorted int32/int64 flat indices,
whichever is smaller, plus a JSON header in the safetensors metadata; nothing else is read back.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["WeightMask", "top_fraction", "build_mask", "load_mask", "MASK_FORMAT"]

MASK_FORMAT = "workbench-weight-mask"
_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def _pack(mask: torch.Tensor) -> torch.Tensor:
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.reshape(-1, 8) * _BITS).sum(1, dtype=torch.uint8)


def _unpack(packed: torch.Tensor, numel: int) -> torch.Tensor:
    bits = (packed.reshape(-1, 1) & _BITS) != 0
    return bits.reshape(-1)[:numel]


@dataclass
class WeightMask:
    """name -> bool tensor (CPU, shape of the HF parameter); True = the weight may change."""
    masks: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def numel(self) -> int:
        return sum(m.numel() for m in self.masks.values())

    @property
    def selected(self) -> int:
        return sum(int(m.sum()) for m in self.masks.values())

    @property
    def density(self) -> float:
        return self.selected / max(1, self.numel)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def per_module(self) -> list[dict]:
        """One row per tensor: layer, module, selected, numel, density."""
        from workbench.locate.weights import param_layer_module
        rows = []
        for name, m in self.masks.items():
            layer, module = param_layer_module(name)
            k = int(m.sum())
            rows.append({"name": name, "layer": layer, "module": module, "selected": k, "numel": m.numel(),
                         "density": k / max(1, m.numel())})
        return rows

    def check(self, model) -> dict[str, torch.nn.Parameter]:
        """The model's parameters under this mask; raises naming the first unknown name / bad shape."""
        named = dict(model.hf.named_parameters())
        out = {}
        for name, m in self.masks.items():
            if name not in named:
                raise ValueError(f"mask names parameter {name!r}, which {getattr(model, 'model_id', 'the model')} "
                                 f"does not have")
            if tuple(named[name].shape) != tuple(m.shape):
                raise ValueError(f"mask for {name!r} has shape {tuple(m.shape)}, the parameter {tuple(named[name].shape)}")
            out[name] = named[name]
        return out

    def nonempty(self) -> "WeightMask":
        return WeightMask({n: m for n, m in self.masks.items() if bool(m.any())}, dict(self.meta))

    def to_dict(self) -> dict:
        return {"meta": self.meta, "selected": self.selected, "numel": self.numel, "density": self.density,
                "modules": self.per_module()}

    def figures(self) -> list:
        """Plotly: density per module (module x layer heat map) and selected weights per layer."""
        import plotly.graph_objects as go
        rows = [r for r in self.per_module() if r["layer"] is not None]
        modules = list(dict.fromkeys(r["module"] for r in rows))
        layers = sorted({r["layer"] for r in rows})
        z = [[None] * len(layers) for _ in modules]
        per_layer = [0] * len(layers)
        for r in rows:
            z[modules.index(r["module"])][layers.index(r["layer"])] = r["density"]
            per_layer[layers.index(r["layer"])] += r["selected"]
        label = self.meta.get("method", "mask")
        heat = go.Figure(go.Heatmap(z=z, x=layers, y=modules, colorscale="Magma", colorbar_title="density"))
        heat.update_layout(title=f"{label} mask: share of each module's weights selected "
                                 f"(overall {self.density:.2%})", xaxis_title="layer", yaxis_title="module")
        bars = go.Figure(go.Bar(x=layers, y=per_layer))
        other = {r["name"]: r["density"] for r in self.per_module() if r["layer"] is None}
        bars.update_layout(title=f"{label} mask: selected weights per layer; outside layers: "
                                 + ", ".join(f"{k} {v:.2%}" for k, v in other.items()),
                           xaxis_title="layer", yaxis_title="selected weights")
        return [heat, bars]

    # ------------------------------------------------------------------ disk
    def save(self, path: str | Path) -> Path:
        """One safetensors file (write, then rename): bitmap or indices per tensor + JSON header."""
        from safetensors.torch import save_file
        from workbench.paths import atomic_path
        tensors, index = {}, {}
        for i, (name, m) in enumerate(self.masks.items()):
            numel, k = m.numel(), int(m.sum())
            idx_dtype = torch.int32 if numel < 2 ** 31 else torch.int64
            idx_bytes = k * (4 if idx_dtype == torch.int32 else 8)
            key = f"t{i}"
            if idx_bytes < (numel + 7) // 8:
                tensors[key] = m.reshape(-1).nonzero().reshape(-1).to(idx_dtype).contiguous()
                enc = "indices"
            else:
                tensors[key] = _pack(m).contiguous()
                enc = "bitmap"
            index[name] = {"key": key, "shape": list(m.shape), "encoding": enc, "count": k}
        header = {"format": MASK_FORMAT, "version": "1", "index": json.dumps(index), "meta": json.dumps(self.meta)}
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=header)
        return path


def load_mask(path: str | Path) -> WeightMask:
    """Read a mask written by WeightMask.save (safetensors + JSON only); errors name the file."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
            if header.get("format") != MASK_FORMAT:
                raise ValueError(f"{path}: not a workbench weight mask (format {header.get('format')!r})")
            index, meta = json.loads(header["index"]), json.loads(header.get("meta", "{}"))
            masks = {}
            for name, e in index.items():
                t = fh.get_tensor(e["key"])
                shape = tuple(int(s) for s in e["shape"])
                numel = 1
                for s in shape:
                    numel *= s
                if e["encoding"] == "bitmap":
                    if t.dtype != torch.uint8 or t.numel() != (numel + 7) // 8:
                        raise ValueError(f"{path}: bitmap of {name!r} has {t.numel()} bytes for {numel} weights")
                    m = _unpack(t, numel)
                elif e["encoding"] == "indices":
                    if t.dim() != 1 or (t.numel() and (int(t.min()) < 0 or int(t.max()) >= numel)):
                        raise ValueError(f"{path}: indices of {name!r} out of range for shape {shape}")
                    m = torch.zeros(numel, dtype=torch.bool)
                    m[t.long()] = True
                else:
                    raise ValueError(f"{path}: unknown encoding {e['encoding']!r} for {name!r}")
                if int(m.sum()) != int(e["count"]):
                    raise ValueError(f"{path}: {name!r} selects {int(m.sum())} weights, header says {e['count']}")
                masks[name] = m.reshape(shape)
    except (json.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"{path}: malformed mask header ({exc})") from None
    except Exception as exc:
        if isinstance(exc, ValueError):
            raise
        raise ValueError(f"{path}: cannot read mask ({type(exc).__name__}: {exc})") from None
    return WeightMask(masks, meta)


# ------------------------------------------------------------------------------------ selection
def _top_k_flat(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of exactly k highest entries of a 1-D tensor (ties: earlier positions first)."""
    n = flat.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool)
    if k >= n:
        return torch.ones(n, dtype=torch.bool)
    thr = torch.kthvalue(flat, n - k + 1).values      # the k-th largest value
    mask = flat > thr
    short = k - int(mask.sum())
    if short > 0:
        ties = (flat == thr).nonzero().reshape(-1)[:short]
        mask[ties] = True
    return mask


def _keep(sparsity: float, n: int) -> int:
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1] (got {sparsity})")
    return int(round((1.0 - sparsity) * n))


def resolve_keep(keep: float | None, sparsity: float | None, default_keep: float) -> float:
    """The share of weights kept for updating from `keep` or the older `sparsity` (= 1 − keep)."""
    if keep is not None and sparsity is not None:
        raise ValueError(f"give keep (share of weights updated) or sparsity (share left out), not both "
                         f"(keep={keep}, sparsity={sparsity})")
    if keep is None:
        keep = default_keep if sparsity is None else 1.0 - float(sparsity)
        if sparsity is not None and not 0.0 <= sparsity <= 1.0:
            raise ValueError(f"sparsity must be in [0, 1] (got {sparsity})")
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"keep must be in [0, 1] (got {keep})")
    return float(keep)


def top_fraction(scores, sparsity: float | None = None, scope: str = "global", meta: dict | None = None,
                 keep: float | None = None) -> WeightMask:
    """Keep the top `keep` share (or 1 − `sparsity`; neither: keep 0.05) of weights by score.

    scores: a WeightScores or a dict name -> tensor. scope: "global" (one ranking over every
    weight, as WAGLE does) or "per_module" (the same share of each tensor). NaN scores rank last.
    """
    from workbench.locate.weights import WeightScores
    keep = resolve_keep(keep, sparsity, 0.05)
    sparsity = 1.0 - keep
    info = {}
    if isinstance(scores, WeightScores):
        info = {"method": scores.method, "model": scores.model, "concept": scores.concept, **{
            k: v for k, v in scores.meta.items() if k in ("mu", "seed", "params")}}
        scores = scores.scores
    if not scores:
        raise ValueError("no scores to build a mask from")
    clean = {n: torch.nan_to_num(t.detach().float().cpu(), nan=-torch.inf) for n, t in scores.items()}
    masks = {}
    if scope == "global":
        flat = torch.cat([t.reshape(-1) for t in clean.values()])
        sel = _top_k_flat(flat, _keep(sparsity, flat.numel()))
        start = 0
        for n, t in clean.items():
            masks[n] = sel[start:start + t.numel()].reshape(t.shape).clone()
            start += t.numel()
    elif scope == "per_module":
        for n, t in clean.items():
            masks[n] = _top_k_flat(t.reshape(-1), _keep(sparsity, t.numel())).reshape(t.shape)
    else:
        raise ValueError(f"scope must be 'global' or 'per_module' (got {scope!r})")
    return WeightMask(masks, {**info, **(meta or {}), "keep": keep, "sparsity": sparsity, "scope": scope})


def build_mask(model, concept=None, method: str = "wagle", sparsity: float | None = None, scope: str = "global",
               params="all", mu: float = 1e-6, seed: int = 0, progress: bool = True, keep: float | None = None,
               **kwargs) -> WeightMask:
    """Score (workbench.locate.weights.attribution_scores) and keep the top share in one call."""
    from workbench.locate.weights import attribution_scores
    ws = attribution_scores(model, concept, method=method, mu=mu, params=params, seed=seed, progress=progress,
                            **kwargs)
    mask = top_fraction(ws, sparsity, scope, meta={"score_seconds": ws.meta["seconds"], "passes": ws.meta["passes"]},
                        keep=keep)
    del ws
    return mask
