"""Concept vectors: MLP value vectors whose vocabulary projection carries a concept.

After "Intrinsic Evaluation of Unlearning Using Parametric Knowledge Traces" (ConceptVectors,
Hong et al. 2024): each MLP value vector (what hidden unit i of layer L writes into the residual
stream) is read through the final norm and unembedding; vectors whose projection ranks the
concept's tokens highly are candidates, then validated causally by ablating each one and
measuring the drop of the forget answers' probability against the retain answers'.

The exhaustive scan avoids projecting every vector onto the whole vocabulary: a token's z-score
within a projection needs only the vocabulary mean u_mean and Gram matrix G = UᵀU/|V|
(mean = x·u_mean, E[logit²] = xᵀGx), so all value vectors are scored with one [N, d] x [d, d]
product; full top-k projections are computed only for the shortlist.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from workbench.locate.common import answer_logprobs, concept_token_ids, probe_texts


@dataclass
class ConceptVector:
    layer: int
    index: int
    sign: int                      # +1: the vector promotes the tokens; -1: its negation does
    score: float                   # mean of the best concept-token z-scores in the projection
    token: str                     # the concept token with that z-score
    top_tokens: list[str] = field(default_factory=list)
    concept_in_top: int = 0        # concept tokens among top_tokens
    forget_drop: float | None = None   # relative drop of mean forget answer prob when ablated
    retain_drop: float | None = None
    causal_effect: float | None = None  # forget_drop - retain_drop

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.mlp.W_out[{self.index}]"

    def to_dict(self) -> dict:
        return {"site": self.site, **asdict(self)}


def _projected(model, layers: list[int]) -> torch.Tensor:
    """Value vectors of `layers` through the final norm: [len(layers) * d_mlp, d_model], fp32."""
    norm = model.module(model.family.final_norm)
    with torch.no_grad():
        return torch.cat([norm(model.value_vectors(L).float()) for L in layers])


@torch.no_grad()
def scan(model, token_ids: list[int], layers: list[int] | None = None, top_tokens_summed: int = 2,
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score every value vector: returns (scores, signs, best_token) each [n_layers, d_mlp].

    score = mean of the `top_tokens_summed` highest z-scores of concept tokens within the
    vector's vocabulary projection (for +v and for -v; sign says which): a vector that lifts
    several of the concept's tokens at once outranks one that lifts a single token.
    """
    layers = list(range(model.n_layers)) if layers is None else layers
    U = model.module(model.family.unembed).weight.float()              # [vocab, d]
    x = _projected(model, layers)                                       # [N, d]
    u_mean = U.mean(0)
    gram = (U.T @ U) / U.shape[0]
    mean = x @ u_mean
    second = ((x @ gram) * x).sum(-1)
    std = (second - mean ** 2).clamp_min(1e-12).sqrt()
    z = (x @ U[token_ids].T - mean[:, None]) / std[:, None]              # [N, T]
    top = min(top_tokens_summed, z.shape[1])
    zpos, zneg = z.topk(top, -1), (-z).topk(top, -1)
    spos, sneg = zpos.values.sum(-1), zneg.values.sum(-1)
    signs = torch.where(spos >= sneg, 1, -1)
    scores = torch.maximum(spos, sneg) / top
    best = torch.tensor(token_ids)[torch.where(signs > 0, zpos.indices[:, 0], zneg.indices[:, 0])]
    shape = (len(layers), -1)
    return scores.reshape(shape), signs.reshape(shape), best.reshape(shape)


@torch.no_grad()
def top_tokens(model, layer: int, index: int, sign: int = 1, k: int = 20) -> list[str]:
    """The k tokens the (signed) value vector promotes most, through final norm + unembedding."""
    x = _projected(model, [layer])[index] * sign
    logits = model.module(model.family.unembed).weight.float() @ x
    return [model.tokenizer.decode([int(t)]) for t in logits.topk(k).indices]


@torch.no_grad()
def ablate_vector(model, layer: int, index: int, mode: str = "zero", generator: torch.Generator | None = None):
    """Overwrite one value vector in place; returns a function that restores it bit-exactly."""
    vv = model.value_vectors(layer).detach()
    original = vv[index].clone()
    if mode == "zero":
        new = torch.zeros_like(original)
    elif mode == "noise":
        g = torch.randn(original.shape, generator=generator).to(original)
        new = g / g.norm() * original.norm()
    elif mode == "mean":
        new = vv.mean(0)
    else:
        raise ValueError(f"ablation mode {mode!r} is not one of zero, noise, mean")
    vv[index] = new

    def restore():
        with torch.no_grad():
            vv[index] = original
    return restore


@torch.no_grad()
def validate(model, concept, candidates: list[ConceptVector], mode: str = "zero", seed: int = 0,
             progress: bool = True) -> list[ConceptVector]:
    """Ablate each candidate alone; fill forget/retain relative drops and causal_effect."""
    fp, fa = probe_texts(model, concept.forget)
    rp, ra = probe_texts(model, concept.retain)
    prompts, answers = fp + rp, fa + ra
    n_f = len(fp)

    def means():
        p = answer_logprobs(model, prompts, answers).exp()
        return p[:n_f].mean().item(), p[n_f:].mean().item()

    f0, r0 = means()
    gen = torch.Generator().manual_seed(seed)
    for cv in tqdm(candidates, desc="validating concept vectors", disable=not progress, leave=False):
        restore = ablate_vector(model, cv.layer, cv.index, mode, gen)
        try:
            f1, r1 = means()
        finally:
            restore()
        cv.forget_drop = (f0 - f1) / max(f0, 1e-12)
        cv.retain_drop = (r0 - r1) / max(r0, 1e-12)
        cv.causal_effect = cv.forget_drop - cv.retain_drop
    return candidates


@torch.no_grad()
def activation_contrast(model, concept) -> torch.Tensor:
    """Mean hidden activation of every MLP unit on forget prompts minus on retain prompts
    (signed, averaged over real token positions): [n_layers, d_mlp]."""
    sites = [f"blocks.{L}.mlp.hook_post" for L in range(model.n_layers)]

    def mean_act(probes):
        prompts, _ = probe_texts(model, probes)
        _, cache = model.run_with_cache(prompts, sites, logits_to_keep=1)
        m = cache.mask[..., None].float()
        return torch.stack([(cache[s].float() * m).sum((0, 1)) / m.sum() for s in sites])
    return mean_act(concept.forget) - mean_act(concept.retain)


def locate_concept_vectors(model, concept, shortlist: int = 24, validate_top: int = 8, mode: str = "zero",
                           k: int = 20, seed: int = 0, use_activations: bool = True, pool_size: int = 512,
                           progress: bool = True) -> dict:
    """Exhaustive parametric scan, shortlist, top-k projections and causal validation.

    All value vectors are scored parametrically (`scan`); the best `pool_size` get their full
    top-k projection, and those with a concept token in it come first (ConceptVectors' criterion).
    Within that, with `use_activations`, vectors are ordered by parametric score times how much
    more the unit fires on the concept's prompts than on the retain prompts, in the sign that
    writes the concept (a vector that never fires on the concept cannot carry it there).
    Returns {"vectors": [ConceptVector...] (validated first, by causal effect), "layer_profile":
    per-layer best rank score, "scan_seconds", "validate_seconds", "n_scanned"}.
    """
    tokens = concept_token_ids(model, concept)
    t0 = time.perf_counter()
    scores, signs, best = scan(model, tokens)
    # full projections only for the parametric shortlist: keep vectors with a concept token in top-k
    d_mlp = scores.shape[1]
    pool = scores.flatten().topk(min(pool_size, scores.numel())).indices
    layer_idx, unit_idx = pool // d_mlp, pool % d_mlp
    U = model.module(model.family.unembed).weight.float()
    norm = model.module(model.family.final_norm)
    with torch.no_grad():   # the final norm acts per vector, so gather the rows first
        x = norm(torch.stack([model.value_vectors(int(L))[int(i)] for L, i in zip(layer_idx, unit_idx)]).float())
    x = x * signs[layer_idx, unit_idx, None]
    top_ids = (x @ U.T).topk(k, dim=-1).indices                       # [pool, k]
    in_top = torch.isin(top_ids, torch.tensor(tokens)).sum(-1)
    scan_s = time.perf_counter() - t0
    rank = scores[layer_idx, unit_idx].clone()
    if use_activations:
        contrast = activation_contrast(model, concept)
        usage = (contrast * signs).clamp_min(0)[layer_idx, unit_idx]  # fires more on the concept, in its sign
        rank = rank.clamp_min(0) * usage / usage.max().clamp_min(1e-12)
    rank = torch.where(in_top > 0, rank + 1e6, rank)                  # concept in top-k first
    vectors = []
    for j in rank.topk(min(shortlist, len(rank))).indices.tolist():
        L, i = int(layer_idx[j]), int(unit_idx[j])
        vectors.append(ConceptVector(L, i, int(signs[L, i]), round(float(scores[L, i]), 3),
                                     model.tokenizer.decode([int(best[L, i])]),
                                     [model.tokenizer.decode([int(t)]) for t in top_ids[j]], int(in_top[j])))
    t1 = time.perf_counter()
    validate(model, concept, vectors[:validate_top], mode=mode, seed=seed, progress=progress)
    val_s = time.perf_counter() - t1
    vectors.sort(key=lambda v: (v.causal_effect is None, -(v.causal_effect or 0.0), -v.score))
    return {"vectors": vectors, "layer_profile": scores.max(1).values.tolist(), "scan_seconds": scan_s,
            "validate_seconds": val_s, "n_scanned": scores.numel(), "concept_tokens": len(tokens)}
