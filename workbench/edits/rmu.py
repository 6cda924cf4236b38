"""`rmu`: Representation Misdirection for Unlearning (Li et al. 2024, "The WMDP Benchmark",
arXiv 2403.03218; reference `centerforaisafety/wmdp`, `rmu/unlearn.py`).

The representation-level fine-tuning baseline. With h_θ(x) the residual stream after layer ℓ
(the reference's `forward_with_cache` on `model.layers[layer_id]`) and u a fixed random unit
vector (the reference: `torch.rand(1, 1, d)` normalised, seeded),

    L = mean_{forget tokens} ‖h_θ(x_f) − c·u‖² / d  +  α · mean_{retain tokens} ‖h_θ(x_r) − h_θ0(x_r)‖² / d

(each term an MSE over the hidden dimension, as `F.mse_loss`), h_θ0 the frozen model. Only the MLP
down projections of layers ℓ−2, ℓ−1, ℓ are trained (the reference's `layer_ids=[5,6,7]`,
`param_ids=[6]` on Zephyr-7B: `mlp.down_proj.weight`), AdamW there with lr 5e-5 (weight decay 0
here, METHODS.md). Reference values: ℓ = 7 of 32 layers, c = 6.5 and α = 1200 for Zephyr-7B;
for other models ℓ keeps the relative depth (round(7/32 · n_layers)) and c defaults to
`steer_scale` (default 1.0; the reference's 6.5 is several × Zephyr's layer-7 norm only because of
its scale) × the mean per-token norm of the frozen forget activations at ℓ, recorded in the
provenance. Padding positions are masked out (the reference averages over padded positions too).

Inside `fit_edit` the forget texts are the concept's FIT forget texts (prompt + continuation) and
the retain texts the FIT retain texts; the evaluation probes are never seen.
`rmu_loss` is also the `loss="rmu"` inner loss of `uoe` (workbench.edits.uoe).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.edits.base import Edit
from workbench.edits.registry import register
from workbench.edits.unlearn import UnlearnConfig, check_schedule, dense_deltas
from workbench.training import cycle, probe_batch, rows, train_edit

__all__ = ["RMUConfig", "RMUObjective", "fit_rmu", "layer_activations", "control_vector", "rmu_loss", "rmu_layer"]

REFERENCE_LAYER, REFERENCE_DEPTH = 7, 32


@dataclass
class RMUConfig(UnlearnConfig):
    layer: int | None = None          # steer layer ℓ; None = round(7/32 · n_layers) (reference depth)
    n_update_layers: int = 3          # train layers ℓ-2..ℓ (reference layer_ids = [ℓ-2, ℓ-1, ℓ])
    steering_coeff: float | None = None   # c; None = steer_scale × mean frozen forget norm at ℓ
    steer_scale: float = 1.0
    alpha: float = 1200.0             # retain weight (reference: 1200 for Zephyr-7B)
    lr: float = 5e-5
    steps: int = 80                   # reference max_num_batches = 80
    batch_size: int = 4               # reference batch_size = 4
    params: str = "rmu"               # (fixed: the down projections of the update layers)
    max_grad_norm: float = 0.0


def rmu_layer(model, layer: int | None) -> int:
    L = round(REFERENCE_LAYER / REFERENCE_DEPTH * model.n_layers) if layer is None else int(layer)
    if not 0 <= L < model.n_layers:
        raise ValueError(f"rmu: layer={L} is not in 0..{model.n_layers - 1}")
    return L


def layer_activations(model, batch: dict, layer: int) -> torch.Tensor:
    """Residual stream after `layer` [n, T, d] for a tokenized batch (differentiable; the forward
    stops after that layer)."""
    from workbench.models.hooked import _StopForward
    store = {}

    def grab(act, _name):
        store["h"] = act
        raise _StopForward

    with model.hooks([(f"blocks.{layer}.hook_resid_post", grab)]):
        try:
            model.hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        except _StopForward:
            pass
    if "h" not in store:
        raise RuntimeError(f"rmu: blocks.{layer}.hook_resid_post did not fire")
    return store["h"]


def control_vector(d: int, seed: int, device=None) -> torch.Tensor:
    """The reference's fixed random direction: uniform [0, 1)^d, normalised (seeded)."""
    g = torch.Generator().manual_seed(int(seed))
    u = torch.rand(d, generator=g)
    return (u / u.norm()).to(device)


def masked_mse(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean over real tokens of mean_d (h − target)², i.e. F.mse_loss restricted to the mask."""
    m = mask.to(h.dtype)[..., None]
    return (((h.float() - target.float()) ** 2) * m).sum() / (m.sum() * h.shape[-1]).clamp_min(1)


def rmu_loss(model, layer: int, forget: dict, control: torch.Tensor, alpha: float,
             retain: dict | None = None, frozen_retain: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """(L, {"forget": ..., "retain": ...}) for one forget (and retain) batch; `control` = c·u [d]."""
    hf = layer_activations(model, forget, layer)
    lf = masked_mse(hf, control.expand_as(hf), forget["attention_mask"])
    loss, parts = lf, {"forget": float(lf.detach())}
    if retain is not None and alpha:
        hr = layer_activations(model, retain, layer)
        lr_ = masked_mse(hr, frozen_retain, retain["attention_mask"])
        loss = loss + alpha * lr_
        parts["retain"] = float(lr_.detach())
    return loss, parts


class RMUObjective:
    """objective(step) -> `rmu_loss` on mini-batch `step` of the forget (and retain) batches, the
    retain targets being the frozen model's activations (computed here once); parts per step kept."""

    def __init__(self, model, layer: int, forget: dict, retain: dict | None, control: torch.Tensor, alpha: float,
                 batch_size: int):
        self.model, self.layer, self.forget, self.retain = model, layer, forget, retain
        self.control, self.alpha, self.batch_size = control, alpha, batch_size
        with torch.no_grad():
            self.frozen = layer_activations(model, retain, layer).detach() if retain is not None else None
        self.n_forget = forget["input_ids"].shape[0]
        self.n_retain = retain["input_ids"].shape[0] if retain is not None else 0
        self.parts: list[dict] = []

    def forget_rows(self, step: int) -> dict:
        return rows(self.forget, cycle(self.n_forget, self.batch_size, step))

    def __call__(self, step: int) -> torch.Tensor:
        rb = fr = None
        if self.retain is not None:
            ridx = cycle(self.n_retain, self.batch_size, step)
            rb, fr = rows(self.retain, ridx), self.frozen[torch.as_tensor(ridx, device=self.frozen.device)]
        loss, p = rmu_loss(self.model, self.layer, self.forget_rows(step), self.control, self.alpha, rb, fr)
        self.parts.append({k: round(v, 6) for k, v in p.items()})
        return loss


@torch.no_grad()
def mean_token_norm(model, batch: dict, layer: int) -> float:
    h = layer_activations(model, batch, layer).float()
    m = batch["attention_mask"].bool()
    return float(h.norm(dim=-1)[m].mean())


def update_params(model, layer: int, n_update_layers: int) -> dict[str, torch.nn.Parameter]:
    if model.family.is_moe:
        raise ValueError("rmu updates dense MLP down projections; on a mixture-of-experts model use "
                         "`uoe` with loss='rmu'")
    lo = max(0, layer - n_update_layers + 1)
    names = [model.weight_name(f"blocks.{L}.mlp.W_out") for L in range(lo, layer + 1)]
    return {n: model.hf.get_parameter(n) for n in names}


@register("rmu", RMUConfig, "RMU (WMDP): steer layer-ℓ forget activations to a random c·u, keep retain ones; "
                            "trains the ℓ-2..ℓ MLP down projections")
def fit_rmu(model, concept, report, cfg: RMUConfig) -> Edit:
    check_schedule("rmu", cfg)
    if cfg.n_update_layers < 1:
        raise ValueError(f"rmu: n_update_layers={cfg.n_update_layers} must be >= 1")
    if not concept.forget:
        raise ValueError(f"rmu on {concept.name!r}: no forget texts")
    torch.manual_seed(cfg.seed)
    layer = rmu_layer(model, cfg.layer)
    params = update_params(model, layer, cfg.n_update_layers)
    forget = probe_batch(model, concept.forget)
    retain = probe_batch(model, concept.retain) if cfg.alpha and concept.retain else None
    with torch.no_grad():
        c = cfg.steering_coeff if cfg.steering_coeff is not None else cfg.steer_scale * mean_token_norm(model, forget, layer)
    d_model = model.info.d_model
    objective = RMUObjective(model, layer, forget, retain, c * control_vector(d_model, cfg.seed, model.device),
                             cfg.alpha, cfg.batch_size)
    run = train_edit(model, params, objective, steps=cfg.steps, lr=cfg.lr, max_grad_norm=cfg.max_grad_norm,
                     deltas=dense_deltas, desc="rmu")
    if not run.deltas:
        raise ValueError(f"rmu on {concept.name!r}: no parameter changed (lr={cfg.lr}, steps={cfg.steps})")
    prov = {"layer": layer, "update_layers": list(range(max(0, layer - cfg.n_update_layers + 1), layer + 1)),
            "params": list(params), "steering_coeff": float(c), "control_seed": cfg.seed, "d_model": d_model,
            "losses": [round(x, 6) for x in run.losses], "loss_parts": objective.parts,
            "n_forget": objective.n_forget, "n_retain": objective.n_retain}
    return Edit(method="rmu", model_id=model.model_id, deltas=run.deltas, concept=concept.name, provenance=prov)
