"""Weight attribution: which individual weights matter for forgetting a concept.

WAGLE (Jia et al., "WAGLE: Strategic Weight Attribution for Effective and Modular Unlearning in
LLMs", NeurIPS 2024; OPTML-Group/WAGLE `snip_advanced`) derives the score from a bi-level view of
unlearning: the upper level is the forget objective, the lower level keeps the retain loss low
(with a diagonal-Hessian proximal term γ = μ). Linearizing the effect of masking weight i on the
forget loss gives the practical score

    S_i = | (θ_i − ∇ℓ_r(θ)_i / μ) · ∇ℓ_f(θ)_i |          (μ = 1e-6 in their configs)

with ℓ_f, ℓ_r the NLL of the forget and retain data. One forward+backward pass over the forget
data and one over the retain data; scores in fp32. The same module also gives the baselines
WAGLE compares against (|∇ℓ_f|, SNIP |θ·∇ℓ_f|, magnitude |θ|, random) and aggregate views per
module, per layer and per attention head / MLP unit, which feed the LocalizationReport as
`weight_attribution` evidence.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

__all__ = ["SCORE_METHODS", "WeightScores", "attribution_scores", "attribution_from_losses", "collect_gradients",
           "combine_scores", "param_layer_module", "score_evidence"]

SCORE_METHODS = ("wagle", "snip", "gradient", "magnitude", "random")
_LAYER_RE = re.compile(r"^(?P<prefix>.*?\.(?:layers|h))\.(?P<layer>\d+)\.(?P<module>.+?)(?:\.(?P<kind>weight|bias))?$")


def param_layer_module(name: str) -> tuple[int | None, str]:
    """('model.layers.3.mlp.down_proj.weight') -> (3, 'mlp.down_proj'); non-layer params -> (None, name)."""
    m = _LAYER_RE.match(name)
    if m is None:
        return None, name.removesuffix(".weight")
    module = m["module"] + (".bias" if m["kind"] == "bias" else "")
    return int(m["layer"]), module


# ------------------------------------------------------------------------------------ gradients
def _mean_nll_grad(model, batch: dict, batch_size: int, desc: str, progress: bool) -> int:
    """Accumulate into p.grad the gradient of the mean label-token NLL of a teacher-forcing batch
    (chunked, one forward+backward per chunk: exactly one pass over the data). Returns #tokens."""
    from workbench.training import rows as _rows, sequence_nll
    n = batch["input_ids"].shape[0]
    total = int((batch["labels"][:, 1:] != -100).sum())
    if total == 0:
        raise ValueError(f"{desc}: no answer tokens to score")
    for start in tqdm(range(0, n, batch_size), desc=desc, leave=False, disable=None if progress else True):
        rows = _rows(batch, range(start, min(n, start + batch_size)))
        nll, _ = sequence_nll(model, rows)
        (nll.sum() / total).backward()
    return total


def text_batch(model, n_tokens: int, seq_len: int = 128, split: str = "train") -> dict[str, torch.Tensor]:
    """General text (workbench.data.corpus, the split no evaluation uses) as a teacher-forcing batch
    with every token a label: extra retain data for the attribution."""
    from workbench.data.corpus import token_chunks
    ids = token_chunks(model.tokenizer, split, n_tokens, seq_len).to(model.device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def collect_gradients(module: torch.nn.Module, params: dict[str, torch.nn.Parameter],
                      backward: Callable[[], Any]) -> dict[str, torch.Tensor]:
    """Run `backward()` (which calls .backward() on one or more losses) with only `params`
    requiring grad; returns name -> fp32 gradient (zeros where none arrived). Module mode,
    requires_grad flags and .grad of every parameter are restored."""
    flags = {n: p.requires_grad for n, p in module.named_parameters()}
    was_training = module.training
    chosen = {id(p) for p in params.values()}
    try:
        module.eval()
        for p in module.parameters():
            p.requires_grad_(id(p) in chosen)
            p.grad = None
        backward()
        return {n: p.grad.float() if p.grad is not None else torch.zeros(p.shape, device=p.device)
                for n, p in params.items()}
    finally:
        for n, p in module.named_parameters():
            p.grad = None
            p.requires_grad_(flags[n])
        module.train(was_training)


def combine_scores(method: str, theta: torch.Tensor, g_f: torch.Tensor | None = None,
                   g_r: torch.Tensor | None = None, mu: float = 1e-6) -> torch.Tensor:
    """The per-weight score of `method` from the weight and the forget / retain gradients (fp32;
    g_f is overwritten): wagle |(θ − g_r/μ)·g_f|, snip |θ·g_f|, gradient |g_f|, magnitude |θ|."""
    if method == "magnitude":
        return theta.detach().float().abs()
    if method == "gradient":
        return g_f.abs_()
    if method == "snip":
        return g_f.mul_(theta.detach().float()).abs_()
    if method == "wagle":
        return g_f.mul_(theta.detach().float() - g_r / mu).abs_()
    raise ValueError(f"combine_scores: unknown method {method!r}")


def attribution_from_losses(module: torch.nn.Module, params: dict[str, torch.nn.Parameter],
                            forget_backward: Callable[[], Any] | None, retain_backward: Callable[[], Any] | None,
                            method: str = "wagle", mu: float = 1e-6, seed: int = 0) -> dict[str, torch.Tensor]:
    """Scores (CPU fp32, shaped like each parameter) for any torch module: `forget_backward` /
    `retain_backward` run .backward() on the forget / retain loss (e.g. mean NLL, possibly in
    chunks). wagle needs both, snip/gradient the forget one, magnitude/random none."""
    if method not in SCORE_METHODS:
        raise ValueError(f"attribution method {method!r} is not one of {SCORE_METHODS}")
    if method == "wagle" and not mu > 0:
        raise ValueError(f"mu must be > 0 (got {mu})")
    if method == "random":
        gen = torch.Generator().manual_seed(seed)
        return {n: torch.rand(p.shape, generator=gen) for n, p in params.items()}
    if method == "magnitude":
        return {n: combine_scores(method, p).cpu() for n, p in params.items()}
    if forget_backward is None or (method == "wagle" and retain_backward is None):
        raise ValueError(f"{method} scores need the forget" + (" and retain" if method == "wagle" else "") + " loss")
    g_f = collect_gradients(module, params, forget_backward)
    g_r = collect_gradients(module, params, retain_backward) if method == "wagle" else {}
    out = {}
    with torch.no_grad():
        for n, p in params.items():
            out[n] = combine_scores(method, p, g_f.pop(n), g_r.pop(n, None), mu).cpu()
    return out


# ------------------------------------------------------------------------------------ scores
@dataclass
class WeightScores:
    """Per-weight attribution scores (fp32, CPU, shaped like each HF parameter; higher = more
    influential for unlearning) and their aggregate views."""
    scores: dict[str, torch.Tensor]
    method: str
    model: str
    concept: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def numel(self) -> int:
        return sum(t.numel() for t in self.scores.values())

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: tuple(t.shape) for n, t in self.scores.items()}

    def total(self) -> float:
        return float(sum(t.double().sum() for t in self.scores.values()))

    def module_table(self) -> list[dict]:
        """One row per parameter: layer, module, numel, sum, mean, max and share of the total score."""
        total = self.total() or 1.0
        rows = []
        for name, t in self.scores.items():
            layer, module = param_layer_module(name)
            s = float(t.double().sum())
            rows.append({"name": name, "layer": layer, "module": module, "numel": t.numel(), "sum": s,
                         "mean": s / max(1, t.numel()), "max": float(t.max()) if t.numel() else 0.0,
                         "share": s / total})
        return rows

    def layer_profile(self, n_layers: int | None = None) -> list[float]:
        """Share of the total score held by each layer's parameters."""
        rows = self.module_table()
        n = n_layers if n_layers is not None else 1 + max((r["layer"] for r in rows if r["layer"] is not None),
                                                           default=-1)
        prof = [0.0] * n
        for r in rows:
            if r["layer"] is not None and r["layer"] < n:
                prof[r["layer"]] += r["share"]
        return prof

    def heatmap(self, stat: str = "mean") -> tuple[list[str], list[int], list[list[float]]]:
        """(module labels, layers, z[module][layer]) of the per-parameter `stat` (mean | sum | share)."""
        rows = [r for r in self.module_table() if r["layer"] is not None]
        modules = list(dict.fromkeys(r["module"] for r in rows))
        layers = sorted({r["layer"] for r in rows})
        z = [[0.0] * len(layers) for _ in modules]
        for r in rows:
            z[modules.index(r["module"])][layers.index(r["layer"])] = r[stat]
        return modules, layers, z

    def units(self, model, layer: int) -> dict[str, list[float]]:
        """Score mass per attention head and per MLP unit of `layer` (dense Llama-style blocks):
        heads: q rows + o columns of the head (k/v rows of its KV group are shared and left out);
        mlp: gate + up rows and down column of unit i (what the unit reads and writes)."""
        f, cfg = model.family, model.hf.config
        pre = f"{f.layers}.{layer}."
        out: dict[str, list[float]] = {}
        get = lambda rel: self.scores.get(f"{pre}{rel}.weight") if rel else None
        n_heads = getattr(cfg, "num_attention_heads", None)
        q, o = get(f.q_proj), get(f.o_proj)
        if n_heads and q is not None and o is not None and not f.conv1d:
            hd = q.shape[0] // n_heads
            heads = q.reshape(n_heads, hd, -1).double().sum((1, 2)) + o.reshape(o.shape[0], n_heads, hd).double().sum((0, 2))
            out["heads"] = heads.tolist()
        down = get(f.w_out)
        if down is not None and not f.conv1d:
            unit = down.double().sum(0)
            for rel in (f.w_in, f.w_gate):
                t = get(rel)
                if t is not None:
                    unit = unit + t.double().sum(1)
            out["mlp_units"] = unit.tolist()
        return out

    def top_weights(self, k: int = 20) -> list[dict]:
        """The k highest-scoring single weights: name, flat index, index tuple, score."""
        cand = []
        for name, t in self.scores.items():
            flat = t.reshape(-1)
            vals, idx = flat.topk(min(k, flat.numel()))
            cand += [(float(v), name, int(i)) for v, i in zip(vals, idx)]
        cand.sort(key=lambda x: -x[0])
        out = []
        for v, name, i in cand[:k]:
            shape = self.scores[name].shape
            index = tuple(int(x) for x in torch.unravel_index(torch.tensor(i), shape)) if shape else ()
            out.append({"name": name, "flat_index": i, "index": list(index), "score": v})
        return out

    def summary(self, n: int = 10) -> str:
        rows = sorted(self.module_table(), key=lambda r: -r["share"])
        lines = [f"weight attribution ({self.method}) for {self.concept!r} in {self.model}: "
                 f"{len(self.scores)} tensors, {self.numel:,} weights, {self.meta.get('seconds', 0):.2f} s, "
                 f"{self.meta.get('passes', 0)} forward+backward pass(es)"]
        for r in rows[:n]:
            lines.append(f"  {r['name']:<45} share {r['share']:6.2%}  mean {r['mean']:.3e}  max {r['max']:.3e}")
        return "\n".join(lines)

    def to_dict(self, model=None, top: int = 20) -> dict:
        """JSON summary (aggregates only; the full scores are as large as the model)."""
        d = {"method": self.method, "model": self.model, "concept": self.concept, "meta": self.meta,
             "numel": self.numel, "modules": self.module_table(), "layer_profile": self.layer_profile(),
             "top_weights": self.top_weights(top)}
        if model is not None:
            d["units"] = {str(L): self.units(model, L) for L in range(model.n_layers)}
        return d

    def figures(self) -> list:
        """Plotly: attribution heat map (module x layer, mean score per weight, log10) and the
        per-layer share of the total score."""
        import plotly.graph_objects as go
        modules, layers, z = self.heatmap("mean")
        zt = torch.tensor(z, dtype=torch.float64)
        zl = torch.log10(zt.clamp_min(zt[zt > 0].min() if (zt > 0).any() else 1e-30)).tolist()
        heat = go.Figure(go.Heatmap(z=zl, x=layers, y=modules, colorscale="Viridis", colorbar_title="log10 mean"))
        heat.update_layout(title=f"Weight attribution ({self.method}) for {self.concept!r}: mean score per weight",
                           xaxis_title="layer", yaxis_title="module")
        prof = go.Figure(go.Bar(x=list(range(len(self.layer_profile()))), y=self.layer_profile()))
        prof.update_layout(title=f"Share of the total {self.method} score by layer", xaxis_title="layer",
                           yaxis_title="share")
        return [heat, prof]


def _select(model, params: str | Sequence[str] | dict):
    from workbench.training import select_params
    if isinstance(params, dict):
        return params
    if isinstance(params, str):
        return select_params(model, params)
    return select_params(model, ",".join(params))


def attribution_scores(model, concept=None, method: str = "wagle", mu: float = 1e-6, params="all",
                       forget=None, retain=None, batch_size: int = 8, seed: int = 0, retain_text_tokens: int = 0,
                       progress: bool = True) -> WeightScores:
    """Score every weight of `params` (spec of workbench.training.select_params, a list of
    name substrings, or a dict of parameters) for unlearning `concept`.

    method: wagle |(θ − g_r/μ)·g_f| · snip |θ·g_f| · gradient |g_f| · magnitude |θ| · random U(0,1).
    forget / retain default to the concept's probes; retain_text_tokens > 0 adds that many tokens
    of general text (corpus train split) to the retain side, as WAGLE's retain set. Cost: wagle two forward+backward passes
    (forget, retain), snip/gradient one, magnitude/random none.
    """
    if method not in SCORE_METHODS:
        raise ValueError(f"attribution method {method!r} is not one of {SCORE_METHODS}")
    if method == "wagle" and not mu > 0:
        raise ValueError(f"mu must be > 0 (got {mu})")
    forget = forget if forget is not None else (concept.forget if concept is not None else None)
    retain = retain if retain is not None else (concept.retain if concept is not None else None)
    if method in ("wagle", "snip", "gradient") and not forget:
        raise ValueError(f"{method} scores need forget probes (give a concept or forget=...)")
    if method == "wagle" and not retain:
        raise ValueError("wagle scores need retain probes (give a concept or retain=...)")
    selected = _select(model, params)
    t0 = time.perf_counter()

    from workbench.training import probe_batch

    def forget_backward():
        _mean_nll_grad(model, probe_batch(model, forget), batch_size, "forget gradient", progress)

    def retain_backward():                       # retain probes (+ general text): one pass, mean NLL of each
        _mean_nll_grad(model, probe_batch(model, retain), batch_size, "retain gradient", progress)
        if retain_text_tokens:
            _mean_nll_grad(model, text_batch(model, retain_text_tokens), batch_size, "retain text gradient", progress)

    scores = attribution_from_losses(model.hf, selected, forget_backward if forget else None,
                                     retain_backward if retain else None, method, mu, seed)
    passes = {"wagle": 2, "snip": 1, "gradient": 1}.get(method, 0)
    meta = {"seconds": round(time.perf_counter() - t0, 3), "passes": passes, "params": params if isinstance(params, str)
            else "custom", "n_forget": len(forget or ()), "n_retain": len(retain or ()) if method == "wagle" else 0,
            "retain_text_tokens": retain_text_tokens if method == "wagle" else 0}
    if method == "wagle":
        meta["mu"] = mu
    if method == "random":
        meta["seed"] = seed
    return WeightScores(scores, method, model.model_id, getattr(concept, "name", None), meta)


# ------------------------------------------------------------------------------------ evidence
def _site_names(model) -> dict[str, str]:
    """HF parameter name -> weight site name (site grammar)."""
    out = {}
    for site in model.sites():
        try:
            out[model.weight_name(site)] = site
        except Exception:                      # activation sites and fused weights have no single tensor
            continue
    return out


def score_evidence(model, ws: WeightScores, top_units: int = 5):
    """`weight_attribution` Evidence per scored tensor (score = share of the total score mass)
    plus the per-layer profile, for LocalizationReport.add_evidence / add_profile."""
    from workbench.locate.report import Evidence
    sites = _site_names(model)
    items = []
    unit_cache: dict[int, dict] = {}
    for r in ws.module_table():
        details = {"param": r["name"], "numel": r["numel"], "mean": r["mean"], "max": r["max"], "method": ws.method}
        L = r["layer"]
        if L is not None:
            if L not in unit_cache:
                unit_cache[L] = ws.units(model, L)
            u = unit_cache[L]
            if r["module"] in (model.family.q_proj, model.family.o_proj) and "heads" in u:
                details["top_heads"] = torch.tensor(u["heads"]).topk(min(top_units, len(u["heads"]))).indices.tolist()
            if r["module"] in (model.family.w_in, model.family.w_gate, model.family.w_out) and "mlp_units" in u:
                details["top_units"] = torch.tensor(u["mlp_units"]).topk(top_units).indices.tolist()
        items.append(Evidence(sites.get(r["name"], r["name"]), "weight_attribution", r["share"], L, None, details))
    return items, ws.layer_profile(model.n_layers)
