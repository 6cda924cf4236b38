"""Fine-tuning unlearning baselines: `ga`, `graddiff`, `npo`, `simnpo` (OpenUnlearning's losses).

The model is fine-tuned on the concept's forget probes (rendered prompt + first answer, teacher
forced; NLL of a sequence = sum of its answer-token losses):

- GA (gradient ascent):  L = -γ mean NLL_f
- GradDiff:              L = -γ mean NLL_f + α mean NLL_r                  (retain probes)
- NPO (Zhang et al. 2024, arXiv 2404.05868):
                         L = γ (2/β) mean -log σ(β (NLL_θ - NLL_ref)) + α mean NLL_r
  with NLL_ref from the unedited model (computed once before training), β = 0.1.
- SimNPO (Fan et al. 2024, arXiv 2410.07163), reference-free, length-normalized:
                         L = γ (2/β) mean -log σ(β (NLL_θ/|y| - δ)) + α mean NLL_r
  β = 4.5, δ = 0, γ = 0.125 (OpenUnlearning's defaults).

Minimizing -log σ(β x) pushes x (the forget NLL) up, saturating once the answer is unlikely —
the reason NPO/SimNPO collapse the model more slowly than plain GA.

The training is `workbench.training.train_edit` (the one fine-tuning loop) on the selected
parameters only (Adam, weight decay 0: decoupled weight decay would move every parameter the
optimizer holds) with `UnlearningObjective`; the dense difference new - old of every changed
tensor becomes the Edit (`dense_deltas`), and the model is restored bit-exactly. `wagle` and
`uoe` use the same objective with a gradient mask / a router anchor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workbench.edits.base import Edit, TensorDelta
from workbench.edits.registry import EditConfig, register
from workbench.training import (cycle, probe_batch, restore, rows, select_params,  # noqa: F401 (re-exported)
                                sequence_nll, snapshot, train_edit, train_in_place)

_rows, _cycle = rows, cycle          # old private names (other branches import them from here)

__all__ = ["UnlearnConfig", "GAConfig", "GradDiffConfig", "NPOConfig", "SimNPOConfig", "probe_batch",
           "sequence_nll", "select_params", "snapshot", "restore", "train_in_place", "unlearning_loss",
           "UnlearningObjective", "dense_deltas", "check_schedule"]


@dataclass
class UnlearnConfig(EditConfig):
    """Shared hyper-parameters of the fine-tuning baselines."""
    lr: float = 1e-5
    steps: int = 10
    batch_size: int = 16          # forget (and retain) sequences per step; cycles over the probes
    params: str = "all"           # "all" | "mlp" | "attn" | "no_embed" | comma-separated name substrings
    alpha: float = 0.0            # retain-loss weight
    gamma: float = 1.0            # forget-loss weight
    beta: float = 0.1             # NPO / SimNPO inverse temperature
    delta: float = 0.0            # SimNPO margin
    max_grad_norm: float = 1.0    # 0 = no clipping


@dataclass
class GAConfig(UnlearnConfig):
    pass


@dataclass
class GradDiffConfig(UnlearnConfig):
    alpha: float = 1.0


@dataclass
class NPOConfig(UnlearnConfig):
    alpha: float = 1.0
    beta: float = 0.1


@dataclass
class SimNPOConfig(UnlearnConfig):
    lr: float = 2e-5
    alpha: float = 1.0
    beta: float = 4.5
    gamma: float = 0.125


def unlearning_loss(method: str, nll_f: torch.Tensor, len_f: torch.Tensor, cfg: UnlearnConfig,
                    nll_ref: torch.Tensor | None = None, nll_r: torch.Tensor | None = None) -> torch.Tensor:
    """The OpenUnlearning objective of `method` (see the module docstring); all inputs [n]."""
    if method in ("ga", "graddiff"):
        forget = -nll_f.mean()
    elif method == "npo":
        forget = -F.logsigmoid(cfg.beta * (nll_f - nll_ref)).mean() * 2 / cfg.beta
    elif method == "simnpo":
        forget = -F.logsigmoid(cfg.beta * (nll_f / len_f.clamp_min(1) - cfg.delta)).mean() * 2 / cfg.beta
    else:
        raise ValueError(f"unknown unlearning loss {method!r}")
    loss = cfg.gamma * forget
    if method != "ga" and cfg.alpha and nll_r is not None:
        loss = loss + cfg.alpha * nll_r.mean()
    return loss


class UnlearningObjective:
    """objective(step) -> the `loss` objective (ga / graddiff / npo / simnpo) on mini-batch `step`
    of the forget probes (cycled, cfg.batch_size) and, when the loss uses them (alpha > 0, not ga),
    of the retain probes. NPO's reference NLL is the unedited model's, computed here once."""

    def __init__(self, model, concept, loss: str, cfg: UnlearnConfig):
        self.model, self.loss, self.cfg = model, loss, cfg
        self.forget = probe_batch(model, concept.forget)
        use_retain = loss != "ga" and cfg.alpha and concept.retain
        self.retain = probe_batch(model, concept.retain) if use_retain else None
        self.nll_ref = None
        if loss == "npo":
            with torch.no_grad():
                self.nll_ref = sequence_nll(model, self.forget)[0].detach()
        self.n_forget = self.forget["input_ids"].shape[0]
        self.n_retain = self.retain["input_ids"].shape[0] if self.retain is not None else 0

    def forget_rows(self, step: int) -> dict:
        """The forget mini-batch of `step` (its first forward pass is the objective's first)."""
        return rows(self.forget, cycle(self.n_forget, self.cfg.batch_size, step))

    def __call__(self, step: int) -> torch.Tensor:
        idx = cycle(self.n_forget, self.cfg.batch_size, step)
        nll_f, len_f = sequence_nll(self.model, rows(self.forget, idx))
        nll_r = None
        if self.retain is not None:
            nll_r = sequence_nll(self.model, rows(self.retain, cycle(self.n_retain, self.cfg.batch_size, step)))[0]
        ref = self.nll_ref[idx] if self.nll_ref is not None else None
        return unlearning_loss(self.loss, nll_f, len_f, self.cfg, nll_ref=ref, nll_r=nll_r)


# ------------------------------------------------------------------------------------ fit
def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


@torch.no_grad()
def dense_deltas(params: dict[str, torch.nn.Parameter], originals: dict[str, torch.Tensor]) -> list[TensorDelta]:
    """Dense TensorDeltas (new - old, fp32) of the parameters that changed."""
    deltas = []
    for name, p in params.items():
        old = originals[name]
        if torch.equal(p.data, old):
            continue
        deltas.append(TensorDelta(name, "dense", tuple(p.shape), _dtype(p), delta=(p.data.float() - old.float()).cpu()))
    return deltas


def check_schedule(method: str, cfg) -> None:
    """steps >= 1 and lr > 0, or ValueError naming the method."""
    if cfg.steps < 1 or cfg.lr <= 0:
        raise ValueError(f"{method}: steps must be >= 1 and lr > 0 (got steps={cfg.steps}, lr={cfg.lr})")


def _fit(method: str, model, concept, report, cfg: UnlearnConfig) -> Edit:
    check_schedule(method, cfg)
    torch.manual_seed(cfg.seed)
    params = select_params(model, cfg.params)
    objective = UnlearningObjective(model, concept, method, cfg)
    run = train_edit(model, params, objective, steps=cfg.steps, lr=cfg.lr, max_grad_norm=cfg.max_grad_norm,
                     deltas=dense_deltas, desc=method)
    deltas, losses = run.deltas, run.losses
    if not deltas:
        raise ValueError(f"{method} on {concept.name!r}: no parameter changed (lr={cfg.lr}, steps={cfg.steps})")
    prov = {"dense": True, "note": "full-model fine-tuning; dense patch" if cfg.params == "all"
            else f"fine-tuning of params={cfg.params!r}; dense patch",
            "losses": [round(x, 5) for x in losses], "n_forget": objective.n_forget, "n_retain": objective.n_retain}
    if not all(math.isfinite(x) for x in losses):
        prov["warning"] = "non-finite loss"
    return Edit(method=method, model_id=model.model_id, deltas=deltas, concept=concept.name, provenance=prov)


@register("ga", GAConfig, "gradient ascent on the forget probes (full fine-tuning, dense patch)")
def fit_ga(model, concept, report, config: GAConfig) -> Edit:
    return _fit("ga", model, concept, report, config)


@register("graddiff", GradDiffConfig, "gradient ascent on forget + descent on retain probes")
def fit_graddiff(model, concept, report, config: GradDiffConfig) -> Edit:
    return _fit("graddiff", model, concept, report, config)


@register("npo", NPOConfig, "negative preference optimization against the unedited model (+ retain NLL)")
def fit_npo(model, concept, report, config: NPOConfig) -> Edit:
    return _fit("npo", model, concept, report, config)


@register("simnpo", SimNPOConfig, "reference-free, length-normalized NPO (+ retain NLL)")
def fit_simnpo(model, concept, report, config: SimNPOConfig) -> Edit:
    return _fit("simnpo", model, concept, report, config)
