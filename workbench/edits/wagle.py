"""`wagle`: unlearning restricted to the weights a mask selects (Jia et al., NeurIPS 2024).

WAGLE scores every weight with its bi-level attribution |(θ − ∇ℓ_r/μ)·∇ℓ_f|
(workbench.locate.weights), keeps the top `keep` share FOR UPDATING in one global ranking
(workbench.locate.masks; the reference's `ratio`: 0.95 for TOFU, 0.6 for WMDP, trained at lr 1e-5
for hundreds of steps — the defaults here are keep 0.95, lr 1e-5, 100 steps), and runs an ordinary unlearning loss (GradDiff, NPO, SimNPO, GA;
workbench.edits.unlearn) with every gradient multiplied by the mask before the optimizer step.
Adam without weight decay then leaves every weight outside the mask bit-identical (its moments
stay exactly zero), and the edit is a sparse patch: indices + values of the weights that moved.
The loop is `workbench.training.train_edit` with `masks=` and the `UnlearningObjective` of
workbench.edits.unlearn.

`sparsity` (the share left OUT, = 1 − keep) is deprecated: it still works, with a
DeprecationWarning, and `sparsity=0.95` keeps meaning "update 5 %" (the former default regime:
sparsity 0.95, lr 3e-4, 4 steps). The baselines of the paper are the same edit with another mask
at the same share:
mask=random, mask=magnitude (|θ|), mask=gradient (|∇ℓ_f|), mask=snip (|θ·∇ℓ_f|); mask=none
trains every weight of `params` (still written as a sparse patch). A saved mask file (`workbench
wagle mask`) is accepted as mask=PATH.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch

from workbench.edits.base import Edit, TensorDelta
from workbench.edits.registry import EditConfig, register
from workbench.edits.unlearn import UnlearningObjective, check_schedule
from workbench.training import masked_gradients, select_params, train_edit, train_in_place

__all__ = ["WagleConfig", "masked_gradients", "train_masked_in_place", "sparse_deltas", "fit_wagle"]

LOSSES = ("graddiff", "npo", "simnpo", "ga")
MASKS = ("wagle", "random", "magnitude", "gradient", "snip", "none")


@dataclass
class WagleConfig(EditConfig):
    """Hyper-parameters: the unlearning loss and its settings (None = that loss's default from
    workbench.edits.unlearn), and the mask (kind or saved file, keep share, scope, μ)."""
    loss: Literal["graddiff", "npo", "simnpo", "ga"] = "npo"
    mask: str = "wagle"           # wagle | random | magnitude | gradient | snip | none | path to a mask file
    keep: float | None = None     # share of eligible weights KEPT FOR UPDATING (reference ratio); None: 0.95
    sparsity: float | None = None  # DEPRECATED: share left out (= 1 - keep); sparsity=0.95 updates 5 %
    scope: Literal["global", "per_module"] = "global"
    mu: float = 1e-6              # WAGLE's μ (the Hessian-diagonal proxy γ of the paper)
    retain_text_tokens: int = 0   # general-text tokens added to the retain side of the attribution
    params: str = "all"           # eligible parameters (select_params spec)
    lr: float = 1e-5              # reference configs
    steps: int = 100              # reference: 400 (TOFU NPO) / 500 (WMDP); fewer here for CPU budgets
    batch_size: int = 16
    alpha: float | None = None
    gamma: float | None = None
    beta: float | None = None
    delta: float | None = None
    max_grad_norm: float = 1.0


def _loss_config(cfg: WagleConfig):
    from workbench.edits import unlearn
    cls = {"ga": unlearn.GAConfig, "graddiff": unlearn.GradDiffConfig, "npo": unlearn.NPOConfig,
           "simnpo": unlearn.SimNPOConfig}[cfg.loss]
    base = cls()
    over = {k: getattr(cfg, k) for k in ("alpha", "gamma", "beta", "delta") if getattr(cfg, k) is not None}
    return cls(**{**base.to_dict(), **over, "lr": cfg.lr, "steps": cfg.steps, "batch_size": cfg.batch_size,
                  "params": cfg.params, "max_grad_norm": cfg.max_grad_norm, "seed": cfg.seed})


# ------------------------------------------------------------------------------------ masked training
def train_masked_in_place(model, params: dict[str, torch.nn.Parameter], masks: dict[str, torch.Tensor],
                          loss_fn: Callable[[int], torch.Tensor], steps: int, lr: float, max_grad_norm: float = 0.0,
                          desc: str = "masked train", progress: bool = True) -> list[float]:
    """`train_in_place` (Adam, weight decay 0) over the parameters with a non-empty mask, gradients
    multiplied by the mask: weights outside the mask do not change (exactly). Does NOT restore."""
    active = {n: p for n, p in params.items() if n in masks and bool(masks[n].any())}
    if not active:
        raise ValueError("the mask selects no weight of the chosen parameters")
    with masked_gradients(active, masks):
        return train_in_place(model, active, loss_fn, steps, lr, max_grad_norm, desc=desc, progress=progress)


@torch.no_grad()
def sparse_deltas(params: dict[str, torch.nn.Parameter], originals: dict[str, torch.Tensor],
                  masks: dict[str, torch.Tensor] | None = None) -> list[TensorDelta]:
    """Sparse TensorDeltas (flat int64 indices + fp32 values) of the entries that changed; with
    `masks`, raises if any changed entry lies outside its mask."""
    out = []
    for name, p in params.items():
        old = originals[name]
        changed = (p.data != old).reshape(-1)
        if masks is not None:
            outside = changed & ~masks[name].to(changed.device).reshape(-1)
            if bool(outside.any()):
                raise RuntimeError(f"{name}: {int(outside.sum())} weight(s) outside the mask changed")
        idx = changed.nonzero().reshape(-1)
        if idx.numel() == 0:
            continue
        vals = p.data.reshape(-1)[idx].float() - old.reshape(-1)[idx].float()
        out.append(TensorDelta(name, "sparse", tuple(p.shape), str(p.dtype).replace("torch.", ""),
                               indices=idx.cpu().to(torch.int64), values=vals.cpu()))
    return out


# ------------------------------------------------------------------------------------ fit
DEFAULT_KEEP = 0.95


def keep_share(cfg: WagleConfig) -> float:
    """The share of weights updated: `keep`, or 1 − the deprecated `sparsity` (with a warning)."""
    import warnings

    from workbench.locate.masks import resolve_keep
    if cfg.sparsity is not None and cfg.keep is None:
        warnings.warn(f"wagle: sparsity={cfg.sparsity} is deprecated; it means keep={1 - cfg.sparsity:g} "
                      f"(the share of weights updated). Pass keep= instead.", DeprecationWarning, stacklevel=3)
    return resolve_keep(cfg.keep, cfg.sparsity, DEFAULT_KEEP)


def _mask_for(model, concept, cfg: WagleConfig, params: dict):
    from workbench.locate.masks import WeightMask, build_mask, load_mask
    if cfg.mask == "none":
        return WeightMask({n: torch.ones(p.shape, dtype=torch.bool) for n, p in params.items()},
                          {"method": "none", "keep": 1.0, "sparsity": 0.0, "scope": "global"})
    if cfg.mask in MASKS:
        return build_mask(model, concept, method=cfg.mask, keep=keep_share(cfg), scope=cfg.scope, params=params,
                          mu=cfg.mu, seed=cfg.seed, retain_text_tokens=cfg.retain_text_tokens)
    path = Path(cfg.mask)
    if not path.exists():
        raise ValueError(f"mask={cfg.mask!r} is neither one of {MASKS} nor an existing mask file")
    mask = load_mask(path)
    mask.check(model)
    return mask


def fit_wagle(model, concept, report, cfg: WagleConfig) -> Edit:
    if cfg.loss not in LOSSES:
        raise ValueError(f"wagle: loss must be one of {LOSSES} (got {cfg.loss!r})")
    check_schedule("wagle", cfg)
    lcfg = _loss_config(cfg)
    torch.manual_seed(cfg.seed)
    params = select_params(model, cfg.params)
    mask = _mask_for(model, concept, cfg, params)
    if any(n not in params for n in mask.masks):     # a saved mask may cover other params than `params`
        params = {**params, **mask.check(model)}
    masks = {n: m for n, m in mask.masks.items() if bool(m.any())}
    objective = UnlearningObjective(model, concept, cfg.loss, lcfg)
    n_f, n_r = objective.n_forget, objective.n_retain
    run = train_edit(model, {n: params[n] for n in masks}, objective, steps=cfg.steps, lr=cfg.lr,
                     max_grad_norm=cfg.max_grad_norm, masks=masks, desc=f"wagle/{cfg.loss}",
                     deltas=lambda trained, originals: sparse_deltas(trained, originals, masks))
    deltas, losses = run.deltas, run.losses
    if not deltas:
        raise ValueError(f"wagle on {concept.name!r}: no weight changed (lr={cfg.lr}, steps={cfg.steps})")
    prov = {"loss": cfg.loss, "mask": {k: v for k, v in mask.meta.items()}, "mask_selected": mask.selected,
            "mask_numel": mask.numel, "losses": [round(x, 5) for x in losses], "n_forget": n_f, "n_retain": n_r,
            "loss_hyper": {k: getattr(lcfg, k) for k in ("alpha", "gamma", "beta", "delta")}}
    if not all(math.isfinite(x) for x in losses):
        prov["warning"] = "non-finite loss"
    return Edit(method="wagle", model_id=model.model_id, deltas=deltas, concept=concept.name, provenance=prov)


register("wagle", WagleConfig, "unlearning loss (npo/graddiff/simnpo) on WAGLE-attributed weights only; "
         "sparse patch")(fit_wagle)
