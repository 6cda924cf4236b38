"""Vector ablation (`ablate`).

'vectors' mode — concept-vector ablation, the "needle" of ConceptVectors (Hong et al. 2024): the
located, causally validated MLP value vectors are zeroed, replaced by Gaussian noise of matching
norm, or replaced by their layer's mean value vector; stored as replaced columns of the HF down
projection.

'direction' mode — weight orthogonalization (Arditi et al. 2024, refusal direction): a residual
direction r (difference of means, concept minus control, at the chosen layer) is projected out of
every matrix that writes into the residual stream (token embedding, attention output and MLP
down projections): W <- W - r̂ r̂ᵀ W. Each change is rank one and stored as low-rank factors.
With tied embeddings, editing the embedding also edits the unembedding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from workbench.edits.base import Edit, TensorDelta
from workbench.edits.registry import EditConfig, register


@dataclass
class AblateConfig(EditConfig):
    target: Literal["vectors", "direction"] = "vectors"
    mode: Literal["zero", "noise", "mean"] = "zero"   # vectors: how the ablated value vectors are replaced
    n_vectors: int = 8             # vectors with a positive causal effect to ablate (at most)
    validate_top: int = 16         # candidates validated causally when locating
    layer: int | None = None       # direction: residual layer; None = best probe layer
    include_embedding: bool = False  # direction: also orthogonalize the token embedding


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def _vector_deltas(model, concept, report, cfg: AblateConfig) -> tuple[list[TensorDelta], dict]:
    from workbench.locate.concept_vectors import locate_concept_vectors
    chosen = []
    if report is not None:
        chosen = [(e.layer, int(e.site.rsplit("[", 1)[1].rstrip("]")), e.causal_effect)
                  for e in report.ranked("concept_vector") if e.causal_effect is not None and e.causal_effect > 0]
        source = "LocalizationReport"
    if not chosen:
        res = locate_concept_vectors(model, concept, validate_top=cfg.validate_top, mode=cfg.mode,
                                     seed=cfg.seed, progress=False)
        chosen = [(v.layer, v.index, v.causal_effect) for v in res["vectors"]
                  if v.causal_effect is not None and v.causal_effect > 0]
        source = "concept-vector location (run now)"
    chosen = chosen[: cfg.n_vectors]
    if not chosen:
        raise ValueError(f"concept {concept.name!r}: no located value vector has a positive causal effect")
    gen = torch.Generator().manual_seed(cfg.seed)
    by_layer: dict[int, list[int]] = {}
    for L, i, _ in chosen:
        by_layer.setdefault(L, []).append(i)
    deltas = []
    for L, idx in sorted(by_layer.items()):
        W = model.param(f"blocks.{L}.mlp.W_out")
        vv = model.value_vectors(L)
        olds = vv[idx].detach().float()                          # [n, d_model]
        if cfg.mode == "zero":
            new = torch.zeros_like(olds)
        elif cfg.mode == "noise":
            g = torch.randn(olds.shape, generator=gen)
            new = g / g.norm(dim=-1, keepdim=True) * olds.norm(dim=-1, keepdim=True)
        elif cfg.mode == "mean":
            new = vv.detach().float().mean(0).expand_as(olds).clone()
        else:
            raise ValueError(f"mode={cfg.mode!r} is not one of zero, noise, mean")
        dim = 0 if model.family.conv1d else 1
        values = new if dim == 0 else new.T.contiguous()         # Linear: columns of [d_model, d_mlp]
        deltas.append(TensorDelta(model.weight_name(f"blocks.{L}.mlp.W_out"), "replace_rows", tuple(W.shape),
                                  _dtype(W), indices=torch.tensor(idx, dtype=torch.long),
                                  values=values.to(W.dtype), dim=dim))
    prov = {"source": source, "vectors": [{"site": f"blocks.{L}.mlp.W_out[{i}]", "causal_effect": ce}
                                          for L, i, ce in chosen]}
    return deltas, prov


def _direction_deltas(model, concept, report, cfg: AblateConfig) -> tuple[list[TensorDelta], dict]:
    from workbench.locate.directions import residual_directions
    if model.family.conv1d:
        raise ValueError("direction ablation is implemented for nn.Linear models (not GPT-2 Conv1D) so far")
    res = residual_directions(model, concept)
    layer = cfg.layer if cfg.layer is not None else res.best_layer()
    r = res.directions[layer].float()
    deltas = []
    writers = [f"blocks.{L}.attn.W_O" for L in range(model.n_layers)]
    if not model.family.is_moe:
        writers += [f"blocks.{L}.mlp.W_out" for L in range(model.n_layers)]
    for site in writers:
        W = model.param(site).detach().float()                  # [d_model, d_in]
        deltas.append(TensorDelta(model.weight_name(site), "low_rank", tuple(W.shape), _dtype(model.param(site)),
                                  A=-r[:, None].clone(), B=(r @ W)[None, :]))
    if cfg.include_embedding:
        E = model.param("embed.W_E").detach().float()           # [vocab, d_model]
        deltas.append(TensorDelta(model.weight_name("embed.W_E"), "low_rank", tuple(E.shape),
                                  _dtype(model.param("embed.W_E")), A=-(E @ r)[:, None], B=r[None, :].clone()))
    prov = {"layer": layer, "probe_accuracy": res.accuracy[layer], "separation": res.separation[layer],
            "source": "given" if cfg.layer is not None else "best residual-probe layer",
            "tied_embeddings_note": "editing the embedding also edits the unembedding" if cfg.include_embedding
            and model.info.tied_embeddings else None}
    return deltas, prov


def fit_ablate(model, concept, report, cfg: AblateConfig) -> Edit:
    if cfg.target == "vectors":
        if model.family.is_moe:
            raise ValueError("value-vector ablation needs a dense MLP; use target='direction' or uoe on MoE models")
        deltas, prov = _vector_deltas(model, concept, report, cfg)
    elif cfg.target == "direction":
        deltas, prov = _direction_deltas(model, concept, report, cfg)
    else:
        raise ValueError(f"target={cfg.target!r} is not one of vectors, direction")
    return Edit("ablate", model.model_id, deltas, concept=concept.name, provenance={"target": cfg.target, **prov})


register("ablate", AblateConfig, "concept-vector ablation or residual-direction orthogonalization")(fit_ablate)
