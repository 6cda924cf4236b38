"""`uoe`: unlearning one expert (UOE / SEUF, Zhuang et al., ACL 2025, arXiv 2411.18797).

On a mixture-of-experts model, forgetting is confined to the single expert most engaged by the
concept: (1) expert attribution (workbench.locate.routing, or the `expert_routing` evidence of a
LocalizationReport when one is given) ranks every (layer, expert) pair by
router affinity on the forget sequences (contrasted with retain sequences by default) and picks
the top one; (2) only that expert's slices of the fused expert tensors (gate_up_proj[e],
down_proj[e]) and, optionally, its router row (gate.weight[e]) are trained with an unlearning loss
from workbench.edits.unlearn (ga / graddiff / npo / simnpo) or RMU's representation loss
(`loss="rmu"`, workbench.edits.rmu: the expert layer's output on forget tokens steered to a fixed
random c·u, retain outputs kept at the frozen model's, weight `rmu_alpha`) plus SEUF's router anchor loss

    L = L_unlearn + anchor * mean_t || g_t(l) - a ||^2 ,   a = one-hot(e),

over the forget tokens t at the target layer l, which keeps the router sending forget tokens to
the expert being unlearned — without it, unlearning can "succeed" by routing around the expert,
and the knowledge returns as soon as routing shifts back.

The loop is `workbench.training.train_edit` with the method's objective (`UnlearningObjective` or
`RMUObjective`), the anchor as an `ExtraLoss` and gradient masks on the expert's slices.
Confinement is exact: gradients outside the chosen slices are zeroed by tensor hooks and Adam runs
with weight decay 0 (a zero gradient gives a zero Adam step), and the Edit stores only the
changed slices as `replace_rows` deltas along the expert dimension, so applying the patch cannot
touch any other parameter. `params_changed` counts one expert (plus one router row).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from workbench.edits.base import Edit, TensorDelta
from workbench.edits.registry import register
from workbench.edits.unlearn import UnlearnConfig, UnlearningObjective, check_schedule
from workbench.training import ExtraLoss, probe_batch, train_edit

__all__ = ["UOEConfig", "fit_uoe", "expert_tensors", "router_anchor", "row_deltas", "slice_masks"]


@dataclass
class UOEConfig(UnlearnConfig):
    loss: Literal["ga", "graddiff", "npo", "simnpo", "rmu"] = "npo"
    rmu_alpha: float = 1200.0      # loss=rmu: retain-activation weight (RMU reference)
    rmu_steering_coeff: float | None = None  # loss=rmu: c; None = mean frozen forget norm at the layer
    layer: int = -1                # -1: from expert attribution
    expert: int = -1               # -1: from expert attribution
    anchor: float = 1.0            # weight of the router anchor loss (SEUF: 1)
    train_router: bool = True      # also train the expert's router row
    contrast: Literal["difference", "none"] = "difference"   # attribution: forget - retain affinity, or forget only
    tensors: str = "all"           # the expert's tensors to train: all | comma-separated names (e.g. down_proj)
    params: str = "expert"         # (fixed: uoe trains only the chosen expert; see `tensors`)
    lr: float = 1e-3
    steps: int = 30
    alpha: float = 1.0             # retain-loss weight (graddiff / npo / simnpo)
    beta: float = 0.1


def expert_tensors(model, layer: int, router: bool = True) -> dict[str, torch.nn.Parameter]:
    """HF parameters holding layer `layer`'s routed experts (fused, expert dim first) and its router."""
    fam = model.family
    prefix = f"{fam.layers}.{layer}"
    experts = model.layer(layer).get_submodule(fam.experts)
    out = {f"{prefix}.{fam.experts}.{n}": p for n, p in experts.named_parameters(recurse=False)}
    if not out:
        raise ValueError(f"layer {layer}: {fam.experts} holds no fused expert tensors")
    if router:
        out[f"{prefix}.{fam.router}.weight"] = model.layer(layer).get_submodule(fam.router).weight
    return out


def slice_masks(params: dict[str, torch.nn.Parameter], index: int) -> dict[str, torch.Tensor]:
    """Gradient masks selecting slice `index` of the first (expert) dimension of every tensor."""
    masks = {}
    for name, p in params.items():
        m = torch.zeros(p.shape, dtype=torch.bool, device=p.device)
        m[index] = True
        masks[name] = m
    return masks


@torch.no_grad()
def row_deltas(params: dict[str, torch.nn.Parameter], originals: dict[str, torch.Tensor], index: int) -> list[TensorDelta]:
    """`replace_rows` deltas of slice `index` (dim 0) of the tensors whose slice changed."""
    deltas = []
    for name, p in params.items():
        new, old = p.data[index], originals[name][index]
        if torch.equal(new, old):
            continue
        deltas.append(TensorDelta(name, "replace_rows", tuple(p.shape), str(p.dtype).replace("torch.", ""),
                                  indices=torch.tensor([index]), values=new.unsqueeze(0).detach().cpu().clone(), dim=0))
    return deltas


def router_anchor(model, layer: int, expert: int, forget_rows, weight: float) -> ExtraLoss:
    """SEUF's anchor: mean over the forget batch's real tokens of ||softmax(router logits) - one-hot(expert)||²
    at `layer` (the logits of the objective's first forward pass, i.e. the forget batch)."""
    from workbench.locate.routing import router_logits_hook
    target = torch.zeros(model.info.n_experts, device=model.device)
    target[expert] = 1.0

    def value(store, step: int) -> torch.Tensor:
        keep = forget_rows(step)["attention_mask"].reshape(-1).bool()
        g = torch.softmax(store[layer][0].float(), -1)[keep]
        return ((g - target) ** 2).sum(-1).mean()

    return ExtraLoss("anchor", weight, lambda step: router_logits_hook(model, [layer], keep_grad=True), value)


@register("uoe", UOEConfig, "unlearn one expert (SEUF): top-attributed expert + router anchor; MoE models only")
def fit_uoe(model, concept, report, cfg: UOEConfig) -> Edit:
    from workbench.locate.routing import expert_attribution, moe_layers
    if not getattr(model.family, "is_moe", False):
        raise ValueError(f"uoe needs a mixture-of-experts model; {model.model_id} is {model.family.name}")
    if cfg.loss not in ("ga", "graddiff", "npo", "simnpo", "rmu"):
        raise ValueError(f"uoe: loss={cfg.loss!r} must be one of ga, graddiff, npo, simnpo, rmu")
    check_schedule("uoe", cfg)
    torch.manual_seed(cfg.seed)
    attribution = None
    routed = report.ranked("expert_routing") if report is not None else []
    if (cfg.layer < 0 or cfg.expert < 0) and routed:          # a LocalizationReport with routing evidence
        layer, expert = routed[0].layer, int(routed[0].details["expert"])
    elif cfg.layer < 0 or cfg.expert < 0:
        attribution = expert_attribution(model, concept, contrast=cfg.contrast)
        layer, expert = attribution.top.layer, attribution.top.expert
    else:
        layer, expert = cfg.layer, cfg.expert
    layers = moe_layers(model)
    n_exp = model.info.n_experts
    if layer not in layers or not 0 <= expert < n_exp:
        raise ValueError(f"uoe: layer={layer}, expert={expert} is not a routed expert (MoE layers {layers}, "
                         f"{n_exp} experts)")

    params = expert_tensors(model, layer, router=cfg.train_router)
    if cfg.tensors != "all":
        wanted = {t.strip() for t in cfg.tensors.split(",") if t.strip()}
        known = {n.rsplit(".", 1)[-1] for n in params if ".gate." not in n}
        if not wanted or not wanted <= known:
            raise ValueError(f"uoe: tensors={cfg.tensors!r}; the experts hold {sorted(known)}")
        params = {n: p for n, p in params.items() if n.rsplit(".", 1)[-1] in wanted or n.endswith(".gate.weight")}
    rmu_state = None
    if cfg.loss == "rmu":
        from workbench.edits.rmu import RMUObjective, control_vector, mean_token_norm
        forget = probe_batch(model, concept.forget)
        retain = probe_batch(model, concept.retain) if cfg.rmu_alpha and concept.retain else None
        with torch.no_grad():
            c = cfg.rmu_steering_coeff if cfg.rmu_steering_coeff is not None else mean_token_norm(model, forget, layer)
        rmu_state = {"steering_coeff": float(c)}
        objective = RMUObjective(model, layer, forget, retain, c * control_vector(model.info.d_model, cfg.seed,
                                                                                 model.device), cfg.rmu_alpha,
                                 cfg.batch_size)
    else:
        objective = UnlearningObjective(model, concept, cfg.loss, cfg)
    n_f, n_r = objective.n_forget, objective.n_retain
    anchor = router_anchor(model, layer, expert, objective.forget_rows, cfg.anchor)

    def rate() -> float:
        from workbench.locate.routing import capture_routing
        return float(capture_routing(model, objective.forget, layers=[layer]).frequency()[0, expert])

    rate_before = rate()
    run = train_edit(model, params, objective, steps=cfg.steps, lr=cfg.lr, max_grad_norm=cfg.max_grad_norm,
                     masks=slice_masks(params, expert), extra_losses=[anchor], after=rate, desc="uoe",
                     deltas=lambda trained, originals: row_deltas(trained, originals, expert))
    deltas, losses, rate_after = run.deltas, run.losses, run.after
    parts = {"unlearn": [round(x, 5) for x in run.parts["objective"]],
             "anchor": [round(x, 5) for x in run.parts["anchor"]]}
    if not deltas:
        raise ValueError(f"uoe on {concept.name!r}: no parameter changed (lr={cfg.lr}, steps={cfg.steps})")
    total = sum(p.numel() for p in model.hf.parameters())
    prov = {"layer": layer, "expert": expert, "site": f"blocks.{layer}.mlp.experts.{expert}",
            "losses": [round(x, 5) for x in losses], "loss_parts": parts, "n_forget": n_f, "n_retain": n_r,
            "selection_rate_forget": {"before": rate_before, "after": rate_after},
            "fraction_params_changed": sum(d.numel_changed() for d in deltas) / total}
    if rmu_state is not None:
        prov["rmu"] = {"steering_coeff": rmu_state["steering_coeff"], "alpha": cfg.rmu_alpha, "control_seed": cfg.seed}
    if attribution is not None:
        prov["attribution"] = attribution.to_dict(top=8)
    return Edit(method="uoe", model_id=model.model_id, deltas=deltas, concept=concept.name, provenance=prov,
                hyper={"layer": layer, "expert": expert})
