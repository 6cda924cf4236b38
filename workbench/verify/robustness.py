"""Checks beyond the probes' outputs: is the knowledge gone, or only hidden?

- parametric trace (ConceptVectors, Hong et al. 2024, "Intrinsic Evaluation of Unlearning Using
  Parametric Knowledge Traces"): the MLP value vectors whose vocabulary projection carries the
  concept's tokens, before vs after the edit — their scores, cosine to the originals, and how
  much of the pre-edit top-N signature is still top-N; and the paper's two parametric metrics
  (`evaluate_util.py`): the Jaccard similarity of each vector's top-200 vocabulary projection
  (v·Eᵀ with the output embedding, no final norm; after the edit with the edited model's head, as
  the reference does) before vs after, and the L2 distance ‖v_before − v_after‖. Output-level
  forgetting with an intact trace means the knowledge can come back.
- logit-lens leakage (nostalgebraist 2020; used against unlearning by e.g. Patil et al. 2023,
  "Can Sensitive Information Be Deleted From LLMs?"): the forget answer's first token read out
  of intermediate residual streams, best rank and highest probability over layers.

The relearning attack and membership inference live in workbench.verify.attacks: they train and
score on the concept's FIT texts, never on its evaluation probes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["answer_first_tokens", "lens_leakage", "parametric_signature", "parametric_trace"]


# ------------------------------------------------------------------------------ parametric trace
JACCARD_TOP_K = 200


@torch.no_grad()
def vocab_top_ids(model, vectors: torch.Tensor, k: int = JACCARD_TOP_K) -> torch.Tensor:
    """[n, k] ids of the k largest entries of v · Eᵀ per vector (E: the output embedding)."""
    E = model.hf.get_output_embeddings().weight.detach()
    logits = vectors.to(E.device, torch.float32) @ E.float().T
    return logits.topk(min(k, logits.shape[-1]), dim=-1).indices.cpu()


def jaccard(a, b) -> float:
    a, b = set(int(x) for x in a), set(int(x) for x in b)
    return len(a & b) / len(a | b) if a or b else 1.0


@torch.no_grad()
def parametric_signature(model, concept, top_n: int = 20, jaccard_k: int = JACCARD_TOP_K) -> dict:
    """The pre-edit concept-vector signature: top-N (layer, index) by concept-vector score, their
    vectors and each vector's top-`jaccard_k` vocabulary projection."""
    from workbench.locate.common import concept_token_ids
    from workbench.locate.concept_vectors import scan
    tokens = concept_token_ids(model, concept)
    scores, _, _ = scan(model, tokens)
    flat = scores.flatten()
    top = flat.topk(min(top_n, flat.numel())).indices
    d_mlp = scores.shape[1]
    sites = [(int(i) // d_mlp, int(i) % d_mlp) for i in top]
    vectors = torch.stack([model.value_vectors(L)[i].detach().float().clone() for L, i in sites])
    return {"tokens": tokens, "scores": scores, "sites": sites, "vectors": vectors, "top_n": len(sites),
            "top_ids": vocab_top_ids(model, vectors, jaccard_k), "jaccard_k": jaccard_k}


@torch.no_grad()
def parametric_trace(model, concept, before: dict) -> dict:
    """Compare the current (edited) model with a `parametric_signature` taken before the edit."""
    from workbench.locate.concept_vectors import scan
    scores, _, _ = scan(model, before["tokens"])
    sites = before["sites"]
    d_mlp = scores.shape[1]
    n = len(sites)
    after_top = set(int(i) for i in scores.flatten().topk(n).indices)
    kept = sum((L * d_mlp + i) in after_top for L, i in sites)
    vecs = torch.stack([model.value_vectors(L)[i].detach().float() for L, i in sites])
    cos = F.cosine_similarity(before["vectors"], vecs, dim=-1)
    s_before = torch.stack([before["scores"][L, i] for L, i in sites])
    s_after = torch.stack([scores[L, i] for L, i in sites])
    k = before.get("jaccard_k", JACCARD_TOP_K)
    top_before = before["top_ids"] if "top_ids" in before else vocab_top_ids(model, before["vectors"], k)
    top_after = vocab_top_ids(model, vecs, k)
    jac = [jaccard(a, b) for a, b in zip(top_before, top_after)]
    l2 = (before["vectors"] - vecs).norm(dim=-1)
    return {"top_n": n, "sites": [f"blocks.{L}.mlp.W_out[{i}]" for L, i in sites],
            "score_before": float(s_before.mean()), "score_after": float(s_after.mean()),
            "signature_remaining": kept / n if n else None,
            "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "vectors_changed": int((cos < 1 - 1e-6).sum()),
            "jaccard_k": k, "jaccard_mean": sum(jac) / n if n else None, "jaccard_min": min(jac) if jac else None,
            "l2_mean": float(l2.mean()) if n else None, "l2_max": float(l2.max()) if n else None,
            "per_site": [{"site": f"blocks.{L}.mlp.W_out[{i}]", "jaccard": round(j, 4), "l2": round(float(d), 6),
                          "cosine": round(float(c), 6)} for (L, i), j, d, c in zip(sites, jac, l2, cos)]}


# ------------------------------------------------------------------------------ logit lens
def answer_first_tokens(model, probes) -> tuple[list[str], list[int]]:
    """(rendered prompts, first token id of each probe's first answer as it continues the prompt)."""
    from workbench.concepts import render_prompt
    from workbench.scoring import answer_continuation
    prompts = [render_prompt(model, p) for p in probes]
    ids = [model.tokenizer(answer_continuation(pr, p.answer), add_special_tokens=False)["input_ids"][0]
           for pr, p in zip(prompts, probes)]
    return prompts, ids


@torch.no_grad()
def lens_leakage(model, probes, batch_size: int = 16) -> dict:
    """Logit lens of the first answer token at the last prompt position of every probe.

    Over the intermediate layers (all but the last): best (lowest) rank and highest probability
    per probe. Returns {"best_rank_mean", "max_prob_mean", "top1_share", "top10_share",
    "final_prob_mean", "per_probe": [{"best_rank", "best_layer", "max_prob", "final_rank"}]}.
    """
    prompts, targets = answer_first_tokens(model, probes)
    n_layers = model.n_layers
    sites = [f"blocks.{L}.hook_resid_post" for L in range(n_layers)]
    rows = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        _, cache = model.run_with_cache(chunk, sites=sites, logits_to_keep=1)
        last = cache.mask.sum(-1) - 1                                           # [b]
        ar = torch.arange(len(chunk), device=last.device)
        resid = torch.stack([cache[s][ar, last] for s in sites], 1)             # [b, L, d]
        probs = model.unembed(resid.float()).float().softmax(-1)                # [b, L, V]
        for b in range(len(chunk)):
            t = targets[start + b]
            p = probs[b, :, t]                                                  # [L]
            ranks = (probs[b] > p[:, None]).sum(-1) + 1                         # [L]
            mid_r, mid_p = ranks[:-1], p[:-1]
            best = int(mid_r.argmin())
            rows.append({"best_rank": int(mid_r[best]), "best_layer": best, "max_prob": float(mid_p.max()),
                         "final_rank": int(ranks[-1]), "final_prob": float(p[-1])})
    k = max(len(rows), 1)
    return {"best_rank_mean": sum(r["best_rank"] for r in rows) / k,
            "max_prob_mean": sum(r["max_prob"] for r in rows) / k,
            "top1_share": sum(r["best_rank"] == 1 for r in rows) / k,
            "top10_share": sum(r["best_rank"] <= 10 for r in rows) / k,
            "final_prob_mean": sum(r["final_prob"] for r in rows) / k,
            "per_probe": rows}
