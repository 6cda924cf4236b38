"""RECE: Reliable and Efficient Concept Erasure (Gong et al., ECCV 2024; CharlesGong12/RECE).

After a UCE edit, an attacker can still look for a text embedding c' that makes the *edited*
cross-attention reproduce the original keys/values of the concept. RECE finds it in closed form,

    c' = argmin Σ_l ‖W'_l c' − W_l c‖² + γ ‖c' − c_0‖²  =  (Σ W'ᵀW' + γI)⁻¹ (Σ W'ᵀ W c + γ c_0)

(sum over every edited K and V matrix; c_0 = 0 "regzero", or the old target concept's embedding
"standard"), per token of the concept's full 77-token embedding, then erases c' towards the guide
with a UCE step on the current weights (all 77 rows, `preserve_scale` 0.1; the empty prompt is
preserved when nothing else is). A few epochs. The accumulated delta is the concatenation of the
per-step low-rank factors, so it stays exact and reverts bit-exactly through the Edit protocol.

`recovery` measures what the derived embedding achieves: ‖W'c' − Wc‖ / ‖W c_guide − W c‖ over the
concept's tokens (0: the concept is fully regenerated; 1: no closer than the guide).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.diffusion.uce import (ErasureSpec, UCEConfig, _delta, preserve_texts, spec_from_concept, uce_edit,
                                     uce_factors)
from workbench.edits.base import Edit
from workbench.edits.registry import register


@dataclass
class RECEConfig(UCEConfig):
    epochs: int = 3
    regular_scale: float = 1e-3         # γ of the closed-form embedding
    emb: str = "regzero"                # "regzero" (c_0 = 0) | "standard" (c_0 = guide embedding)
    rece_preserve_scale: float = 0.1    # preserve weight in the RECE steps (reference default)


@torch.no_grad()
def derive_embedding(current: dict[str, torch.Tensor], original: dict[str, torch.Tensor], c: torch.Tensor,
                     gamma: float, c0: torch.Tensor | None = None) -> torch.Tensor:
    """Closed-form c' [T, d] whose edited K/V best match the original K/V of c [T, d]."""
    names = list(current)
    d = c.shape[-1]
    mat1 = gamma * torch.eye(d, dtype=torch.float64)
    mat2 = torch.zeros(d, d, dtype=torch.float64)
    for n in names:
        Wc, Wo = current[n].double(), original[n].double()
        mat1 += Wc.T @ Wc
        mat2 += Wc.T @ Wo
    rhs = mat2 @ c.double().T
    if c0 is not None:
        rhs = rhs + gamma * c0.double().T
    return torch.linalg.solve(mat1, rhs).T.float()


@torch.no_grad()
def recovery(current: dict[str, torch.Tensor], original: dict[str, torch.Tensor], c: torch.Tensor,
             c_adv: torch.Tensor, c_guide: torch.Tensor) -> float:
    """‖W'c' − Wc‖ / ‖W c_guide − W c‖ summed over all K/V matrices (rows: the given tokens)."""
    num = den = 0.0
    for n in current:
        Wc, Wo = current[n].float(), original[n].float()
        num += float(((c_adv @ Wc.T - c @ Wo.T) ** 2).sum())
        den += float(((c_guide @ Wo.T - c @ Wo.T) ** 2).sum())
    return (num / den) ** 0.5 if den > 0 else float("nan")


def concept_rows(model, text: str) -> slice:
    """Token positions that carry a prompt: its content tokens through the end of the context."""
    return slice(1, model.max_length)


def rece_edit(model, spec: ErasureSpec, cfg: RECEConfig | None = None, base: Edit | None = None) -> Edit:
    """UCE (or `base`, an unapplied UCE edit), then `cfg.epochs` RECE rounds; one Edit with the total delta."""
    cfg = cfg or RECEConfig()
    if cfg.emb not in ("regzero", "standard"):
        raise ValueError(f"emb={cfg.emb!r} is not 'regzero' or 'standard'")
    if cfg.epochs < 0:
        raise ValueError("epochs must be >= 0")
    base = base or uce_edit(model, spec, cfg)
    names = base.names
    original = {n: model.hf.get_parameter(n).detach().float().clone() for n in names}
    factors: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    current = {}
    for d in base.deltas:
        W = original[d.name]
        D = d.dense_delta(model.hf.get_parameter(d.name)).float()
        factors[d.name] = [(d.A.float(), d.B.float())] if d.kind == "low_rank" else [(D, None)]
        current[d.name] = W + D
    concept_emb = model.encode(spec.erase)                         # [k, T, d]
    guide_emb = model.encode([spec.guide])[0]                      # [T, d]
    preserve = preserve_texts(spec, cfg) or [""]
    P = model.encode(preserve).reshape(-1, concept_emb.shape[-1])  # all rows of each preserved prompt
    rows = concept_rows(model, spec.erase[0])
    log = []
    for epoch in range(cfg.epochs):
        advs, rec = [], []
        for k in range(len(spec.erase)):
            c = concept_emb[k]
            adv = derive_embedding(current, original, c, cfg.regular_scale,
                                   guide_emb if cfg.emb == "standard" else None)
            rec.append(recovery(current, original, c[rows], adv[rows], guide_emb[rows]))
            advs.append(adv)
        C = torch.cat(advs)                                           # [k*T, d]
        G = torch.cat([guide_emb] * len(spec.erase))
        for n in names:
            V = G @ current[n].T
            A, B = uce_factors(current[n], C, V, P, cfg.lamb, cfg.erase_scale, cfg.rece_preserve_scale)
            factors[n].append((A, B))
            current[n] = current[n] + A @ B
        log.append({"epoch": epoch, "recovery_before": rec})
    final = []
    for k in range(len(spec.erase)):
        c = concept_emb[k]
        adv = derive_embedding(current, original, c, cfg.regular_scale,
                               guide_emb if cfg.emb == "standard" else None)
        final.append(recovery(current, original, c[rows], adv[rows], guide_emb[rows]))
    deltas = []
    for n in names:
        W = model.hf.get_parameter(n).detach()
        parts = factors[n]
        if any(B is None for _, B in parts):                         # a dense UCE part: keep it dense
            D = sum((A if B is None else A @ B) for A, B in parts)
            deltas.append(_delta(n, W, D, torch.eye(W.shape[1]), "dense"))
        else:
            deltas.append(_delta(n, W, torch.cat([A for A, _ in parts], 1), torch.cat([B for _, B in parts], 0),
                                 cfg.store))
    prov = dict(base.provenance)
    prov.update({"epochs": log, "recovery_after": final, "uce_recovery": log[0]["recovery_before"] if log else final})
    return Edit(method="rece", model_id=model.model_id, deltas=deltas, concept=spec.name,
                hyper={**cfg.to_dict(), **{k: v for k, v in base.hyper.items() if k in ("preserve_scale",)},
                       "guide": spec.guide, "preserve": spec.preserve}, provenance=prov)


@register("rece", RECEConfig, "RECE: UCE + closed-form adversarial embeddings erased in a few epochs (diffusion)")
def fit_rece(model, concept, report=None, config: RECEConfig | None = None) -> Edit:
    config = config or RECEConfig()
    return rece_edit(model, spec_from_concept(concept, config.guide, config.preserve), config)
