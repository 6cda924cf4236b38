"""Residual directions: difference of means between concept prompts and control prompts at every
layer's residual stream (last token), as in the refusal-direction work (Arditi et al. 2024), with
a per-layer linear-probe accuracy. The probe is the mean-difference classifier itself
(project onto the direction, threshold at the midpoint of the class means), scored leave-one-out,
which stays honest with a dozen prompts per class."""
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
