"""ROCR — Rank-One Concept Redirection (Ye, Zhang, Wu 2025, "LLM Unlearning Should Be
Form-Independent", arXiv 2506.07795).

A training-free, ROME-style rank-one update of one MLP down projection W (HF [d_model, d_mlp]):
the key k* (down-projection input at the subject's last token, averaged over context prefixes)
is mapped to v*, what the same projection outputs for the harmless `redirect_to` concept in the
same contexts, so later layers perceive the harmless concept whatever form the question takes:

    ΔW = (v* − W k*) (C⁻¹ k*)ᵀ / (k*ᵀ C⁻¹ k*)          (exactly rank one; W' k* = v*)

C is the uncentered second moment of down-projection inputs over general text (fp32, cached).

Multi-token subjects (`keys="subject"`, the default): one key per subject token after the first
(aligned from the subject's end, averaged over contexts), each sent to the harmless concept's
last-token state; the least-change update ΔW = R (KᵀC⁻¹K)⁻¹ KᵀC⁻¹ maps all m keys exactly and
has rank m (m = 1, the paper's rank-one update, for a one-token subject or `keys="last"`). On
SmolLM2 the last subject token alone does not carry a multi-token subject's facts (Eiffel Tower:
forget hit 1.0 -> 0.78 with one key, 1.0 -> 0.0 with the subject keys, retain unchanged).
The layer is a fixed depth (15 %, layer 4 of 30) unless given; `layer_from="trace"` takes it
from causal tracing (MLP restoration at the last subject token). With `n_layers` > 1 the update
is spread over consecutive layers (each with its own keys and C) — a simple MEMIT-style spread.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.edits.base import Edit, TensorDelta
from workbench.edits.registry import EditConfig, register

CONTEXTS = ["{}", "I have heard about {}", "Here is a fact about {}", "People often ask about {}",
            "Let me tell you about {}", "The story of {}", "My friend talked about {}", "A question about {}",
            "We read about {}", "Everyone knows {}", "In the news today: {}", "Notes on {}"]


@dataclass
class ROCRConfig(EditConfig):
    layer: int | None = None          # None: chosen by `layer_from`
    layer_from: str = "depth"         # "depth": round(depth * n_layers) (layer 4 of SmolLM2's 30);
                                      # "trace": the report's MLP causal trace (or trace now)
    depth: float = 0.15
    n_layers: int = 1                 # spread over this many consecutive layers (MEMIT-style)
    use_forget_prompts: bool = True   # also average keys over the forget prompts' subject tokens
    cov_tokens: int = 16384           # general-text tokens for C
    cov_seq_len: int = 128
    lambda_reg: float = 1e-2          # C + lambda * mean(diag C) * I
    trace_probes: int = 3             # forget probes traced when the layer must be found
    target: str = "residual"          # "residual": v* makes the layer's residual output at the subject's
                                      # last token equal the harmless concept's (mean over contexts);
                                      # "mlp_out": v* = W k_redirect (the MLP output alone)
    keys: str = "subject"             # "last": one key, the subject's last token (rank one);
                                      # "subject": one key per subject token after the first (rank = that
                                      # count), each sent to the harmless concept's last-token state
    skip_common: int = 100            # keys="subject": subject tokens among the corpus's N most frequent
                                      # (" of", " the", ...) are not used as keys (0: use them all)


def _prefixes(model, concept, use_forget: bool) -> list[str]:
    """Texts that end right after the subject (keys/values are read at their last token)."""
    from workbench.concepts import render_prompt
    texts = [c.format(concept.subject) for c in CONTEXTS]
    if use_forget:
        for p in concept.forget:
            prompt = render_prompt(model, p)
            at = prompt.rfind(concept.subject)
            if at >= 0:
                texts.append(prompt[: at + len(concept.subject)])
    return texts


@torch.no_grad()
def _means_at_last_token(model, texts: list[str], sites: list[str]) -> dict[str, torch.Tensor]:
    """Mean activation at each text's last real token, per site: {site: [d]}. One right-padded run."""
    _, cache = model.run_with_cache(texts, sites, logits_to_keep=1, stop_early=True)
    last = cache.mask.sum(1) - 1
    idx = torch.arange(len(texts))
    return {s: cache[s][idx, last].float().mean(0) for s in sites}


def _mean_at_last_token(model, texts: list[str], site: str) -> torch.Tensor:
    return _means_at_last_token(model, texts, [site])[site]


def common_token_ids(model, n: int, n_tokens: int = 16384, seq_len: int = 128) -> set[int]:
    """The `n` most frequent token ids of the general-text train split (the covariance's corpus)."""
    if n <= 0:
        return set()
    from workbench.data.corpus import token_chunks
    ids = token_chunks(model.tokenizer, "train", n_tokens, seq_len).reshape(-1)
    counts = torch.bincount(ids, minlength=int(ids.max()) + 1)
    return set(counts.topk(min(n, int((counts > 0).sum()))).indices.tolist())


@torch.no_grad()
def _means_by_subject_offset(model, texts: list[str], subject: str, sites: list[str], skip_first: bool = True,
                             skip_ids: set[int] | frozenset = frozenset()) -> tuple[dict[str, torch.Tensor], int, list[str]]:
    """Mean activation at each used subject token, aligned from the subject's end: {site: [m, d]}.

    Texts whose subject tokenizes to a different length than the most common one are left out of
    the mean (their offsets do not line up). Offsets left out as keys: the first subject token when
    `skip_first` and the subject has > 1 token (its early-layer state is mostly the token's identity,
    shared with every other word it starts), and tokens in `skip_ids` (frequent general-text tokens
    such as " of", " the": their keys are close to the keys of ordinary text, so mapping them would
    change the MLP's output everywhere). The last subject token is always kept.
    Returns (means, number of texts used, the used tokens).
    """
    spans = [model.subject_span(t, subject) for t in texts]
    lengths = [b - a for a, b in spans]
    n = max(set(lengths), key=lengths.count)
    keep = [i for i, ln in enumerate(lengths) if ln == n]
    _, cache = model.run_with_cache([texts[i] for i in keep], sites, logits_to_keep=1, stop_early=True)
    ref = keep[-1]
    ids = model.tokenizer(texts[ref])["input_ids"][spans[ref][0]:spans[ref][1]]
    first = 1 if skip_first and n > 1 else 0
    offsets = [j for j in range(first, n) if ids[j] not in skip_ids or j == n - 1]
    out = {}
    for s in sites:
        rows = torch.stack([cache[s][j, [spans[i][0] + o for o in offsets]] for j, i in enumerate(keep)])
        out[s] = rows.float().mean(0)
    return out, len(keep), [model.tokenizer.decode([ids[o]]) for o in offsets]


def multi_key_update(W: torch.Tensor, C: torch.Tensor, K: torch.Tensor, V: torch.Tensor, lambda_reg: float,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors (A [d_out, m], B [m, d_in]) of the least-change update with ΔW K = V − W K.

    ΔW = R (Kᵀ C⁻¹ K)⁻¹ Kᵀ C⁻¹, R = V − W K: the update of smallest C-weighted norm that maps
    every key exactly (ROME's constrained solution with m keys; rank m). K: [d_in, m], V: [d_out, m].
    """
    C = C.double()
    C = C + lambda_reg * C.diagonal().mean() * torch.eye(C.shape[0], dtype=C.dtype)
    K, V = K.double(), V.double()
    cinv_k = torch.linalg.solve(C, K)                          # [d_in, m]
    R = V - W.double() @ K                                     # [d_out, m]
    A = R @ torch.linalg.inv(K.T @ cinv_k)                     # [d_out, m]
    return A.float(), cinv_k.T.contiguous().float()


def choose_layer(model, concept, report=None, probes: int = 3) -> tuple[int, dict]:
    """The ROCR layer: from a LocalizationReport if it has an MLP causal trace, else trace now."""
    from workbench.locate import tracing
    if report is not None:
        layer = report.best_layer("causal_trace_mlp") if hasattr(report, "best_layer") else None
        if layer is not None:
            return layer, {"source": "LocalizationReport", "evidence": "causal_trace_mlp"}
    traces = tracing.trace_concept(model, concept, kinds=("mlp",), max_probes=probes, progress=False,
                                   last_subject_only=True)["mlp"]
    profile = tracing.layer_profile(traces)
    layer = int(torch.tensor(profile).argmax())
    return layer, {"source": "causal tracing (mlp, last subject token)", "profile": [round(x, 4) for x in profile]}


def rank_one_update(W: torch.Tensor, C: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lambda_reg: float,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors (A [d_out, 1], B [1, d_in]) of ΔW = (v − W k)(C⁻¹k)ᵀ / (kᵀC⁻¹k), all fp32.

    W: [d_out, d_in] (HF Linear layout); C: [d_in, d_in]; k: [d_in]; v: [d_out].
    """
    C = C.double()
    C = C + lambda_reg * C.diagonal().mean() * torch.eye(C.shape[0], dtype=C.dtype)
    cinv_k = torch.linalg.solve(C, k.double())
    resid = v.double() - W.double() @ k.double()
    A = resid[:, None]
    B = (cinv_k / (k.double() @ cinv_k))[None, :]
    return A.float(), B.float()


def fit_rocr(model, concept, report, cfg: ROCRConfig) -> Edit:
    from workbench.locate.stats import mlp_key_second_moment
    if model.family.conv1d or model.family.is_moe:
        raise ValueError(f"rocr needs a dense gated/linear MLP; {model.family.name} is not supported yet")
    if not concept.redirect_to:
        raise ValueError(f"concept {concept.name!r} has no redirect_to: ROCR needs a harmless target concept")
    provenance: dict = {}
    if cfg.layer is None and cfg.layer_from == "trace":
        first, why = choose_layer(model, concept, report, cfg.trace_probes)
        provenance["layer_choice"] = why
    elif cfg.layer is None:
        if cfg.layer_from != "depth" or not 0 <= cfg.depth < 1:
            raise ValueError(f"layer_from={cfg.layer_from!r} must be 'depth' or 'trace' and depth in [0, 1)")
        first = int(round(cfg.depth * model.n_layers))
        provenance["layer_choice"] = {"source": f"depth {cfg.depth} of {model.n_layers} layers"}
    else:
        first = cfg.layer
        provenance["layer_choice"] = {"source": "given"}
    if not 0 <= first < model.n_layers:
        raise ValueError(f"layer={first} is outside 0..{model.n_layers - 1}")
    layers = list(range(first, min(model.n_layers, first + cfg.n_layers)))
    subj_texts = _prefixes(model, concept, cfg.use_forget_prompts)
    redirect_texts = [t.replace(concept.subject, concept.redirect_to) for t in subj_texts]
    deltas, details = [], []
    for L in layers:
        site, post = f"blocks.{L}.mlp.hook_post", f"blocks.{L}.hook_resid_post"
        W = model.param(f"blocks.{L}.mlp.W_out")
        W0 = W.detach().float()
        C = mlp_key_second_moment(model, L, cfg.cov_tokens, cfg.cov_seq_len)
        red = _means_at_last_token(model, redirect_texts, [site, post])
        if cfg.keys == "subject":
            subj, n_used, key_tokens = _means_by_subject_offset(
                model, subj_texts, concept.subject, [site, post],
                skip_ids=common_token_ids(model, cfg.skip_common, cfg.cov_tokens, cfg.cov_seq_len))
            K = subj[site].T                                           # [d_mlp, m]
            if cfg.target == "mlp_out":
                V = (W0 @ red[site])[:, None].expand(-1, K.shape[1])
            elif cfg.target == "residual":
                V = W0 @ K + (red[post][None, :] - subj[post]).T / len(layers)
            else:
                raise ValueError(f"target={cfg.target!r} is not one of residual, mlp_out")
            A, B = multi_key_update(W0, C, K, V, cfg.lambda_reg)
            k_star, v_star = K[:, -1], V[:, -1]
        elif cfg.keys == "last":
            subj = _means_at_last_token(model, subj_texts, [site, post])
            k_star = subj[site]
            if cfg.target == "mlp_out":
                v_star = W0 @ red[site]                              # what W writes for the harmless concept
            elif cfg.target == "residual":
                shift = red[post] - subj[post]
                v_star = W0 @ k_star + shift / len(layers)           # spread the residual shift over the layers
            else:
                raise ValueError(f"target={cfg.target!r} is not one of residual, mlp_out")
            A, B = rank_one_update(W0, C, k_star, v_star, cfg.lambda_reg)
        else:
            raise ValueError(f"keys={cfg.keys!r} is not one of last, subject")
        deltas.append(TensorDelta(model.weight_name(f"blocks.{L}.mlp.W_out"), "low_rank", tuple(W.shape),
                                  str(W.dtype).replace("torch.", ""), A=A, B=B))
        details.append({"layer": L, "rank": int(A.shape[1]), "k_norm": float(k_star.norm()),
                        "key_tokens": key_tokens if cfg.keys == "subject" else None,
                        "v_shift": float((v_star - W0 @ k_star).norm())})
    provenance.update({"layers": layers, "n_contexts": len(subj_texts), "redirect_to": concept.redirect_to,
                       "updates": details})
    return Edit("rocr", model.model_id, deltas, concept=concept.name, provenance=provenance)


register("rocr", ROCRConfig, "rank-one concept redirection of one MLP down projection")(fit_rocr)
