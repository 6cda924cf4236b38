"""Residual directions: difference of means between concept prompts and control prompts at every
layer's residual stream (last token), as in the refusal-direction work (Arditi et al. 2024), with
a per-layer linear-probe accuracy. The probe is the mean-difference classifier itself
(project onto the direction, threshold at the midpoint of the class means), scored leave-one-out,
which stays honest with a dozen prompts per class.

`causal_layer` chooses the layer by what ablating its direction does (the refusal-direction
selection is likewise by ablation effect, not probe accuracy): for each candidate layer L, the
direction r_L is projected out of every residual writer (`make_edit(r_L)`, applied and reverted
bit-exactly) and the score is

    (mean per-token log P(forget answer) before − after) − (same for the retain answers),

among the candidates whose retain drop stays within `max_retain_drop` nats/token (as the
reference filters candidates by KL on harmless prompts, ≤ 0.1; if none qualifies the best score
overall is taken and flagged), on the concept's own probes — inside `fit_edit` these are the FIT probes, never evaluation ones."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DirectionResult:
    layers: list[int]
    accuracy: list[float]          # leave-one-out probe accuracy per layer
    separation: list[float]        # |mean difference| / pooled std along the direction
    directions: torch.Tensor       # [n_layers, d_model] unit vectors (concept minus control)

    def best_layer(self) -> int:
        score = torch.tensor(self.accuracy) + 1e-3 * torch.tensor(self.separation)
        return self.layers[int(score.argmax())]

    def to_dict(self) -> dict:
        return {"layers": self.layers, "accuracy": self.accuracy, "separation": self.separation}


@torch.no_grad()
def last_token_resid(model, prompts: list[str], site_kind: str = "hook_resid_post") -> torch.Tensor:
    """[n_layers, n_prompts, d_model] residual stream at each prompt's last token (fp32)."""
    sites = [f"blocks.{L}.{site_kind}" for L in range(model.n_layers)]
    _, cache = model.run_with_cache(prompts, sites, logits_to_keep=1)
    last = cache.mask.sum(1) - 1
    idx = torch.arange(len(prompts))
    return torch.stack([cache[s][idx, last].float() for s in sites])


def _loo_accuracy(pos: torch.Tensor, neg: torch.Tensor) -> float:
    x = torch.cat([pos, neg])
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))])
    correct = 0
    for i in range(len(x)):
        keep = torch.arange(len(x)) != i
        xp, xn = x[keep][y[keep] == 1], x[keep][y[keep] == 0]
        d = xp.mean(0) - xn.mean(0)
        mid = ((xp.mean(0) + xn.mean(0)) / 2) @ d
        pred = float(x[i] @ d > mid)
        correct += pred == float(y[i])
    return correct / len(x)


def _mean_token_logprob(model, prompts: list[str], answers: list[str]) -> float:
    from workbench.scoring import answer_logprobs
    rows = answer_logprobs(model, prompts, answers)
    return sum(lp / max(n, 1) for lp, n, _ in rows) / max(len(rows), 1)


@torch.no_grad()
def causal_layer(model, concept, res: DirectionResult, make_edit, max_layer_frac: float = 0.8,
                 stride: int = 1, progress: bool = True, max_retain_drop: float = 0.1) -> dict:
    """The layer whose direction ablation most lowers the forget answers minus the retain drop."""
    from tqdm.auto import tqdm

    from workbench.locate.common import probe_texts
    if not 0 < max_layer_frac <= 1 or stride < 1:
        raise ValueError(f"max_layer_frac={max_layer_frac} must be in (0, 1] and stride={stride} >= 1")
    if not concept.forget or not concept.retain:
        raise ValueError(f"concept {concept.name!r}: the causal layer choice needs forget and retain probes")
    fp, fa = probe_texts(model, concept.forget)
    rp, ra = probe_texts(model, concept.retain)
    base_f, base_r = _mean_token_logprob(model, fp, fa), _mean_token_logprob(model, rp, ra)
    top = max(1, int(max_layer_frac * len(res.layers) + 0.5))
    cands = [L for L in res.layers[:top]][::stride]
    rows = []
    for L in tqdm(cands, desc="direction layer (causal)", disable=not progress, leave=False):
        with make_edit(res.directions[L]).applied(model):
            f, r = _mean_token_logprob(model, fp, fa), _mean_token_logprob(model, rp, ra)
        rows.append({"layer": L, "forget_drop": round(base_f - f, 5), "retain_drop": round(base_r - r, 5),
                     "score": round((base_f - f) - (base_r - r), 5)})
    ok = [row for row in rows if row["retain_drop"] <= max_retain_drop]
    best = max(ok or rows, key=lambda row: row["score"])
    return {"layer": best["layer"], "candidates": rows, "n_forget": len(fp), "n_retain": len(rp),
            "max_retain_drop": max_retain_drop, "within_retain_budget": bool(ok),
            "base_forget_logprob": base_f, "base_retain_logprob": base_r}


def residual_directions(model, concept) -> DirectionResult:
    """Concept (forget prompts) versus control (retain prompts) at every layer."""
    from workbench.locate.common import probe_texts
    fp, _ = probe_texts(model, concept.forget)
    rp, _ = probe_texts(model, concept.retain)
    acts = last_token_resid(model, fp + rp)
    pos, neg = acts[:, :len(fp)], acts[:, len(fp):]
    dirs, acc, sep = [], [], []
    for L in range(model.n_layers):
        d = pos[L].mean(0) - neg[L].mean(0)
        unit = d / d.norm().clamp_min(1e-12)
        dirs.append(unit)
        pp, nn_ = pos[L] @ unit, neg[L] @ unit
        pooled = torch.cat([pp - pp.mean(), nn_ - nn_.mean()]).std().clamp_min(1e-6)
        sep.append(round(float((pp.mean() - nn_.mean()) / pooled), 4))
        acc.append(round(_loo_accuracy(pos[L], neg[L]), 4))
    return DirectionResult(list(range(model.n_layers)), acc, sep, torch.stack(dirs))
