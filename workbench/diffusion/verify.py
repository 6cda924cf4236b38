"""Verification of diffusion concept erasure without image-quality models.

For a weight edit of the cross-attention K/V projections (UCE, RECE), on the exact token rows
the edit targets:
- alignment: distance of the erased concept's keys/values to the guide's, relative to the guide's
  norm, before and after (‖W c_e − W c_g‖ / ‖W c_g‖ -> ‖W' c_e − W c_g‖ / ‖W c_g‖), per matrix;
- movement: ‖W' c − W c‖ / ‖W c‖ for the erased concept, each preserved concept, the empty prompt
  and held-out unrelated prompts (preserved ones should move much less than erased ones);
- weight change: rank (SVD, relative tolerance) and Frobenius norm (absolute and relative);
- recovery (RECE's attack): a closed-form embedding c' for the edited weights, and how close
  its K/V come to the original concept's, ‖W'c' − Wc‖ / ‖W c_g − W c‖ (0: fully regenerated);
- a short generation (2 DDIM steps by default) on the edited pipeline: finite images, and the
  mean pixel change for erased vs preserved prompts under the same seed.
CLIP score (`image_metrics.py`) runs when a CLIP model is given (`clip=` / `WORKBENCH_CLIP`), else it
is reported as skipped with the reason.
"""
from __future__ import annotations

import numpy as np
import torch

from workbench.diffusion.image_metrics import image_metrics
from workbench.diffusion.rece import derive_embedding, recovery
from workbench.diffusion.uce import ErasureSpec, aligned_rows

HELD_OUT = ("a bowl of soup on a table", "a red bicycle leaning on a wall", "a snowy mountain at sunrise",
            "a portrait of an astronaut")


def _weights(model, edit) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """({name: W}, {name: W'}) fp32 for every tensor the edit touches (model left unchanged)."""
    if edit.applied_now:
        before = {n: edit._originals[n].float() for n in edit.names}
    else:
        before = {n: model.hf.get_parameter(n).detach().float() for n in edit.names}
    after = {}
    for d in edit.deltas:
        after[d.name] = d.new_value(before[d.name]).float()
    return before, after


def _site_label(model, name: str) -> str:
    from workbench.diffusion.sites import cross_attention_modules
    for i, (path, _) in enumerate(cross_attention_modules(model)):
        if name.startswith(f"unet.{path}."):
            return f"unet.xattn.{i}.{'W_K' if '.to_k.' in name else 'W_V'}"
    return name


def numerical_rank(delta: torch.Tensor, weight: torch.Tensor) -> int:
    """Rank of an applied weight change, above the fp32 rounding noise of storing W + ΔW
    (singular values > 8 · eps32 · ‖W‖_F; rounding adds at most eps/2 per entry)."""
    s = torch.linalg.svdvals(delta.double())
    tol = 8 * torch.finfo(torch.float32).eps * float(weight.double().norm())
    return int((s > tol).sum())


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    den = float(b.norm())
    return float((a - b).norm()) / den if den > 0 else float("nan")


@torch.no_grad()
def kv_report(model, spec: ErasureSpec, edit, tokens: str = "uce", held_out=HELD_OUT) -> dict:
    """Alignment, movement, weight-change and recovery numbers for a K/V weight edit."""
    before, after = _weights(model, edit)
    names = [n for n in edit.names if ".attn2." in n]
    rows = []
    erased_moves, guide_before, guide_after = [], [], []
    for concept in spec.erase:
        c, g = aligned_rows(model, concept, spec.guide, tokens)
        for n in names:
            W, W2 = before[n], after[n]
            kg = g @ W.T
            rows.append({"matrix": _site_label(model, n), "name": n, "concept": concept,
                         "to_guide_before": _rel(c @ W.T, kg), "to_guide_after": _rel(c @ W2.T, kg),
                         "moved": _rel(c @ W2.T, c @ W.T)})
    for r in rows:
        guide_before.append(r["to_guide_before"])
        guide_after.append(r["to_guide_after"])
        erased_moves.append(r["moved"])

    def moved(text: str) -> float:
        c = aligned_rows(model, text, text, tokens)[0]
        return float(np.mean([_rel(c @ after[n].T, c @ before[n].T) for n in names]))

    weight = []
    for n in names:
        D = after[n] - before[n]
        weight.append({"matrix": _site_label(model, n), "rank": numerical_rank(D, before[n]), "fro": float(D.norm()),
                       "rel_fro": float(D.norm() / before[n].norm()), "shape": list(D.shape)})
    rec = []
    guide_full = model.encode([spec.guide])[0]
    for k, concept in enumerate(spec.erase):
        c = model.encode([concept])[0]
        adv = derive_embedding({n: after[n] for n in names}, {n: before[n] for n in names}, c, 1e-3)
        rec.append(recovery({n: after[n] for n in names}, {n: before[n] for n in names}, c[1:], adv[1:], guide_full[1:]))
    n_erased = int(edit.provenance.get("n_erased_vectors", 0)) if edit.provenance else 0
    return {
        "alignment": {"to_guide_before": float(np.mean(guide_before)), "to_guide_after": float(np.mean(guide_after)),
                      "per_matrix": rows},
        "movement": {"erased": float(np.mean(erased_moves)),
                     "preserved": {p: moved(p) for p in spec.preserve},
                     "empty_prompt": moved(""),
                     "held_out": {p: moved(p) for p in held_out}},
        "weight_change": {"max_rank": max(w["rank"] for w in weight), "n_erased_vectors": n_erased,
                          "fro_total": float(np.sqrt(sum(w["fro"] ** 2 for w in weight))),
                          "mean_rel_fro": float(np.mean([w["rel_fro"] for w in weight])), "per_matrix": weight},
        "recovery": {"residual": rec, "note": "‖W'c' − Wc‖ / ‖W c_guide − W c‖ for the closed-form embedding "
                                               "c' (RECE's attack, γ=1e-3); 0 = the concept is fully regenerated"},
    }


@torch.no_grad()
def generation_check(model, prompts: list[str], edit=None, clamp=None, steps: int = 2, seed: int = 0) -> dict:
    """Generate `prompts` before and after (same seed); images + mean |Δpixel| per prompt."""
    before = [model.generate(p, steps=steps, seed=seed)[0] for p in prompts]
    if edit is not None:
        with edit.applied(model):
            after = [model.generate(p, steps=steps, seed=seed)[0] for p in prompts]
    elif clamp is not None:
        with clamp.applied(model):
            after = [model.generate(p, steps=steps, seed=seed)[0] for p in prompts]
    else:
        raise ValueError("give an edit or a clamp")
    return {"steps": steps, "seed": seed, "prompts": list(prompts),
            "finite": bool(all(np.isfinite(a).all() for a in after)),
            "pixel_change": {p: float(np.abs(a - b).mean()) for p, a, b in zip(prompts, after, before)},
            "images_before": before, "images_after": after}


def image_metrics_status(reason: str = "no generation was run") -> dict:
    return {"skipped": True, "reason": f"{reason}; CLIP score is skipped"}


def verify_diffusion_edit(model, spec: ErasureSpec, edit, steps: int = 2, seed: int = 0, generate: bool = True,
                          tokens: str | None = None, clip: str | None = None) -> dict:
    """The whole report for a UCE/RECE edit (JSON-serialisable; images dropped)."""
    tokens = tokens or (edit.hyper or {}).get("tokens", "uce")
    out = {"model": model.model_id, "method": edit.method, "concept": spec.name, "erase": spec.erase,
           "guide": spec.guide, "preserve": spec.preserve, "edit_seconds": edit.edit_seconds,
           "params_changed": edit.params_changed(), **kv_report(model, spec, edit, tokens)}
    if edit.method == "rece" and edit.provenance:
        out["rece_epochs"] = edit.provenance.get("epochs")
    if generate:
        prompts = [f"a painting by {e}" for e in spec.erase] + [f"a painting by {p}" for p in spec.preserve[:2]] \
            + [HELD_OUT[0]]
        g = generation_check(model, prompts, edit=edit, steps=steps, seed=seed)
        out["generation"] = {k: v for k, v in g.items() if not k.startswith("images")}
        out["image_metrics"] = image_metrics(prompts, g["images_before"], g["images_after"], spec.erase, clip)
    else:
        out["image_metrics"] = image_metrics_status()
    return out


def verify_sae_clamp(model, clamp, erase: list[str], others: list[str] | None = None, steps: int = 2,
                     seed: int = 0, generate: bool = True, clip: str | None = None) -> dict:
    """Gate TPR/FPR on held-out templates, exactness on gated-off prompts, embedding change."""
    from workbench.diffusion.sae import HELD_OUT_TEMPLATES, gate_rates, prompts_for
    others = others or ["a dog", "a mountain lake", "Claude Monet", "a sunflower field", "a city at night",
                        "an astronaut", "Paul Gauguin", "a bowl of cherries"]
    pc, po = prompts_for(erase, HELD_OUT_TEMPLATES), prompts_for(others, HELD_OUT_TEMPLATES)
    rates = gate_rates(clamp, model, pc, po)
    e_before = model.encode(pc + po)
    with clamp.applied(model):
        e_after = model.encode(pc + po)
        gate = clamp.last_gate.clone()
    closed = ~gate
    untouched = bool(all(torch.equal(e_before[i], e_after[i]) for i in range(len(gate)) if closed[i]))
    change = [_rel(e_after[i], e_before[i]) for i in range(len(gate))]
    out = {"model": model.model_id, "method": "sae-clamp", "erase": list(erase), "site": clamp.site,
           "features": clamp.features, "threshold": clamp.threshold, "gate": rates,
           "gated_off_prompts_bit_exact": untouched,
           "embedding_change": {"concept": float(np.mean(change[:len(pc)])),
                                "other": float(np.mean(change[len(pc):]))},
           "sae": clamp.info.get("sae", {})}
    if generate:
        g = generation_check(model, [pc[0], po[0]], clamp=clamp, steps=steps, seed=seed)
        out["generation"] = {k: v for k, v in g.items() if not k.startswith("images")}
        out["image_metrics"] = image_metrics([pc[0], po[0]], g["images_before"], g["images_after"], list(erase), clip)
    else:
        out["image_metrics"] = image_metrics_status()
    return out
