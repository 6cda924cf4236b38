"""UCE: Unified Concept Editing (Gandikota et al., WACV 2024; rohitgandikota/unified-concept-editing).

Every cross-attention key/value projection W ([inner, d_text], `attn2.to_k` / `attn2.to_v`) gets the
closed-form minimiser of

    Σ_erase ‖W' c_i − v_i*‖²  +  Σ_preserve ‖W' c_j − W c_j‖²  +  λ ‖W' − W‖²_F

(erase rows weighted by `erase_scale`, preserve rows by `preserve_scale`), i.e.

    W' = (λ W + s_e Σ v_i* c_iᵀ + s_p Σ W c_j c_jᵀ) (λ I + s_e Σ c_i c_iᵀ + s_p Σ c_j c_jᵀ)⁻¹

with c the text-encoder outputs of the erased concept and v* = W c_guide the guide concept's
keys/values ("replace"; "tensor" keeps only the part of W c_guide orthogonal to W c_i). Token rows
follow the reference code (`train-scripts/train_erase.py`, `edit_model`): erased rows run from the
concept's last token to the end of the 77-token context (EOS and padding included), aligned with the
guide's last token; preserved rows are ALL rows of each preserved prompt's context (BOS, content,
EOS, padding: `preserve_tokens="context"`), and the reference's call passes λ = 0.5.
(The 2025 rewrite, `trainscripts/uce_sd_erase.py`, keeps only the last token's row and λ = 0.5.)
Subtracting W·M from the numerator shows ΔW = s_e (V* − C Wᵀ)ᵀ C M⁻¹: its rank is at most the
number of erased rows, so the delta is stored as low-rank factors A = s_e (V* − C Wᵀ)ᵀ, B = C M⁻¹ (solved in fp32).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workbench.edits.base import Edit, TensorDelta
from workbench.edits.registry import EditConfig, register

TOKEN_MODES = ("uce", "eos", "all")
PRESERVE_TOKEN_MODES = ("context",) + TOKEN_MODES


@dataclass
class UCEConfig(EditConfig):
    """Hyper-parameters (defaults of the reference code, `train_erase.py`: its `edit_model` call
    passes lamb=0.5 and preserves every context row of '' + the preserve list)."""
    guide: str | None = None            # None: the concept's redirect_to, else "" (unconditional " ")
    preserve: list[str] | None = None   # None: the concept file's `preserve` list, else none
    lamb: float = 0.5
    erase_scale: float = 1.0
    preserve_scale: float | None = None  # None: max(0.1, 1 / len(preserve)) as in the reference code
    preserve_empty: bool = True         # also preserve the empty prompt (the reference's " " retain text)
    with_to_k: bool = True
    technique: str = "replace"          # "replace" | "tensor"
    tokens: str = "uce"                 # erased rows: "uce" (last token .. end) | "eos" (last token + EOS) | "all"
    preserve_tokens: str = "context"    # preserved rows: "context" (all rows, BOS included: the reference)
                                        # or a `tokens` mode ("uce" | "eos" | "all") for the older behaviour
    store: str = "auto"                 # "auto" (low_rank when it is smaller) | "low_rank" | "dense"


@dataclass
class ErasureSpec:
    """What to erase, towards what, while keeping what."""
    erase: list[str]
    guide: str = ""
    preserve: list[str] = field(default_factory=list)
    name: str | None = None

    def __post_init__(self):
        if not self.erase or not all(isinstance(e, str) and e.strip() for e in self.erase):
            raise ValueError("erase: give at least one non-empty concept string")
        self.preserve = [p for p in self.preserve if p not in self.erase]
        self.name = self.name or ", ".join(self.erase)


def spec_from_concept(concept, guide: str | None = None, preserve: list[str] | None = None) -> ErasureSpec:
    """A workbench Concept -> ErasureSpec: subject (+ extra `erase`), redirect_to / extra `guide`,
    extra `preserve` (else the subjects of the retain probes' extra `subject` keys)."""
    extra = getattr(concept, "extra", {}) or {}
    erase = [concept.subject] + [e for e in extra.get("erase", []) if e != concept.subject]
    if guide is None:
        guide = extra.get("guide", concept.redirect_to if concept.redirect_to is not None else "")
    if preserve is None:
        preserve = list(extra.get("preserve", []))
    return ErasureSpec(erase=erase, guide=guide, preserve=list(preserve), name=concept.name)


# ---------------------------------------------------------------------------------- token rows
def _last_index(model, text: str) -> int:
    """Index of the last content token (BOS for an empty text), as `attention_mask.sum() - 2`."""
    return int(model.tokenize(text)["attention_mask"][0].sum().item()) - 2


@torch.no_grad()
def aligned_rows(model, old: str, new: str, tokens: str = "uce") -> tuple[torch.Tensor, torch.Tensor]:
    """Text-encoder rows of `old` and `new` aligned token by token: ([n, d], [n, d]) fp32."""
    if tokens not in TOKEN_MODES:
        raise ValueError(f"tokens={tokens!r} is not one of {TOKEN_MODES}")
    emb = model.encode([old, new])
    fo, fn = _last_index(model, old), _last_index(model, new)
    T = emb.shape[1]
    if tokens == "all":
        return emb[0, 1:], emb[1, 1:]
    if tokens == "eos":
        return emb[0, [fo, fo + 1]], emb[1, [fn, fn + 1]]
    far = max(fo, fn)
    return emb[0, fo:T - (far - fo)], emb[1, fn:T - (far - fn)]


def preserve_texts(spec: ErasureSpec, cfg: UCEConfig) -> list[str]:
    texts = list(spec.preserve)
    if cfg.preserve_empty and "" not in texts:
        texts.append("")
    return texts


def resolve_scales(texts: list[str], cfg: UCEConfig) -> float:
    if cfg.preserve_scale is not None:
        return float(cfg.preserve_scale)
    return round(max(0.1, 1.0 / len(texts)), 3) if texts else 0.0


# ---------------------------------------------------------------------------------- closed form
def uce_factors(W: torch.Tensor, C: torch.Tensor, V: torch.Tensor, P: torch.Tensor | None,
                lamb: float, erase_scale: float, preserve_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """ΔW = A @ B for one matrix. W [o, d]; C [n, d] erased rows; V [n, o] their targets;
    P [m, d] preserved rows (targets W P). Returns A [o, n], B [n, d] (fp32)."""
    dt = torch.promote_types(W.dtype, torch.float32)        # fp32 at least (fp64 stays fp64)
    W, C, V = W.to(dt), C.to(dt), V.to(dt)
    d = W.shape[1]
    if C.shape[1] != d or V.shape != (C.shape[0], W.shape[0]):
        raise ValueError(f"shape mismatch: W {tuple(W.shape)}, C {tuple(C.shape)}, V {tuple(V.shape)}")
    M = lamb * torch.eye(d, dtype=dt, device=W.device) + erase_scale * C.T @ C
    if P is not None and P.numel() and preserve_scale:
        M = M + preserve_scale * P.to(dt).T @ P.to(dt)
    A = erase_scale * (V - C @ W.T).T                       # [o, n]
    B = torch.linalg.solve(M, C.T).T                        # C M⁻¹ (M symmetric): [n, d]
    return A, B


def uce_reference(W, C, V, P, lamb, erase_scale, preserve_scale) -> torch.Tensor:
    """W' by the reference code's formula (mat1 @ inverse(mat2)), for tests."""
    mat1 = lamb * W + erase_scale * V.T @ C
    mat2 = lamb * torch.eye(W.shape[1], dtype=W.dtype) + erase_scale * C.T @ C
    if P is not None and P.numel() and preserve_scale:
        mat1 = mat1 + preserve_scale * (P @ W.T).T @ P
        mat2 = mat2 + preserve_scale * P.T @ P
    return mat1 @ torch.inverse(mat2)


def _delta(name: str, W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, store: str) -> TensorDelta:
    o, d = W.shape
    r = A.shape[1]
    low = store == "low_rank" or (store == "auto" and r * (o + d) < o * d)
    if low:
        return TensorDelta(name=name, kind="low_rank", shape=tuple(W.shape), dtype=str(W.dtype).removeprefix("torch."),
                           A=A.contiguous(), B=B.contiguous())
    return TensorDelta(name=name, kind="dense", shape=tuple(W.shape), dtype=str(W.dtype).removeprefix("torch."),
                       delta=(A @ B).contiguous())


def erase_targets(model, spec: ErasureSpec, names: list[str], weights: dict[str, torch.Tensor],
                  technique: str, tokens: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(C [n, d], {name: V* [n, o]}): erased rows and their guide targets under `weights`."""
    Cs, Gs = [], []
    for concept in spec.erase:
        c, g = aligned_rows(model, concept, spec.guide, tokens)
        Cs.append(c)
        Gs.append(g)
    C, G = torch.cat(Cs), torch.cat(Gs)
    targets = {}
    for n in names:
        W = weights[n].float()
        v = G @ W.T
        if technique == "tensor":
            u = C @ W.T
            u = u / u.norm()
            v = v - (u * v).sum() * u
        elif technique != "replace":
            raise ValueError(f"technique={technique!r} is not 'replace' or 'tensor'")
        targets[n] = v
    return C, targets


@torch.no_grad()
def preserve_rows(model, texts: list[str], tokens: str = "context") -> torch.Tensor | None:
    """Rows kept in place: "context" = every row of each text's full context (the reference's
    `old_emb` for retain texts, BOS and padding included), else the erased-row mode `tokens`."""
    if tokens not in PRESERVE_TOKEN_MODES:
        raise ValueError(f"preserve_tokens={tokens!r} is not one of {PRESERVE_TOKEN_MODES}")
    if not texts:
        return None
    if tokens == "context":
        emb = model.encode(list(texts))
        return emb.reshape(-1, emb.shape[-1]).float()
    return torch.cat([aligned_rows(model, p, p, tokens)[0] for p in texts])


def uce_edit(model, spec: ErasureSpec, cfg: UCEConfig | None = None) -> Edit:
    """Fit UCE on every cross-attention K/V projection of `model` (a DiffusionModel)."""
    from workbench.diffusion.sites import kv_weight_names
    cfg = cfg or UCEConfig()
    if not hasattr(model, "unet"):
        raise ValueError("uce/rece edit Stable Diffusion pipelines, not language models: load one with "
                         "workbench.diffusion.load_pipeline, or use `workbench diffusion edit uce|rece MODEL ...` "
                         "or the dashboard's Diffusion page")
    if cfg.lamb <= 0:
        raise ValueError(f"lamb={cfg.lamb}: must be > 0 (it keeps the normal equations well posed)")
    names = kv_weight_names(model, ("W_K", "W_V") if cfg.with_to_k else ("W_V",))
    weights = {n: model.hf.get_parameter(n).detach() for n in names}
    texts = preserve_texts(spec, cfg)
    s_p = resolve_scales(texts, cfg)
    C, targets = erase_targets(model, spec, names, weights, cfg.technique, cfg.tokens)
    P = preserve_rows(model, texts, cfg.preserve_tokens)
    deltas = []
    for n in names:
        A, B = uce_factors(weights[n], C, targets[n], P, cfg.lamb, cfg.erase_scale, s_p)
        deltas.append(_delta(n, weights[n], A, B, cfg.store))
    return Edit(method="uce", model_id=model.model_id, deltas=deltas, concept=spec.name,
                hyper={**cfg.to_dict(), "preserve_scale": s_p, "guide": spec.guide, "preserve": spec.preserve},
                provenance={"erase": spec.erase, "guide": spec.guide, "preserve": spec.preserve,
                            "n_erased_vectors": int(C.shape[0]),
                            "n_preserved_vectors": int(P.shape[0]) if P is not None else 0,
                            "matrices": len(names), "tokens": cfg.tokens,
                            "preserve_tokens": cfg.preserve_tokens})


@register("uce", UCEConfig, "UCE closed-form cross-attention K/V edit (diffusion)", kind="diffusion")
def fit_uce(model, concept, report=None, config: UCEConfig | None = None) -> Edit:
    config = config or UCEConfig()
    return uce_edit(model, spec_from_concept(concept, config.guide, config.preserve), config)
