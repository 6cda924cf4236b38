"""The solves behind ROCR and the statistics they use (see `workbench.edits.rocr` for the method).

Updates, all returned as low-rank factors (A [d_out, m], B [m, d_in]) with ΔW = A @ B in HF
Linear layout (W: [d_out, d_in]); K: [d_in, m] keys, R: [d_out, m] wanted output changes:

* `alphaedit_update`  AlphaEdit's null-space form as ORT's ROCR code computes it,
      ΔWᵀ = solve(P (K Kᵀ + K_p K_pᵀ) + L2·I, P K Rᵀ),
  P the projector onto the (near) null space of the keys' second moment on general text. The
  solution lies in P's range (X = P(K Rᵀ − (KKᵀ + K_pK_pᵀ)X)), so ΔW = Xᵀ = Xᵀ P: ΔW u = 0 for every
  input u that P removes, and rank(ΔW) ≤ m because X = solve(·, P K) Rᵀ.
* `rome_update`       ROME/MEMIT's least-change form ΔW = R (KᵀC⁻¹K)⁻¹ KᵀC⁻¹ (maps every key exactly).

Preserved keys K_p (an earlier edit's keys, kept in its patch) are protected in both: for
`alphaedit`, `preserve="exact"` removes span(P K_p) from P (ΔW K_p = 0 to rounding) and
`preserve="penalty"` is ORT/AlphaEdit's K_p K_pᵀ term alone; for `rome` K_p are extra keys whose
wanted change is 0 (exact). Factors keep rank m = the new keys either way.

Statistics (`key_statistics`): C = E[k kᵀ] of down-projection inputs (`blocks.L.mlp.hook_post`)
over a general-text mix (Shakespeare + KJV + WordNet train splits, whichever are installed,
equal token shares), with its eigendecomposition; fp32, one file per layer under
WORKBENCH_HOME/stats/rocr/<model content id>-<sources>-<tokens>-<seq_len>/. The forward pass
stops after the deepest layer asked for.
"""
from __future__ import annotations

import json
import time

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from workbench.paths import atomic_path, cache_dir

COV_SOURCES = ("shakespeare", "kjv", "wordnet")


# ---------------------------------------------------------------------------------- projectors
def null_space_projector(U: torch.Tensor, S: torch.Tensor, threshold: float) -> torch.Tensor:
    """P = U_s U_sᵀ over the eigenvectors whose eigenvalue is < threshold (float64, [d, d])."""
    small = S < threshold
    Us = U[:, small].double()
    return Us @ Us.T


def remove_span(P: torch.Tensor, K: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    """P − Q Qᵀ with Q an orthonormal basis of P K: a projector with (P − QQᵀ) K = 0."""
    if K is None or K.numel() == 0:
        return P
    PK = P @ K.double()
    U, s, _ = torch.linalg.svd(PK, full_matrices=False)
    Q = U[:, s > rtol * max(float(s.max()), 1e-300)]
    return P - Q @ Q.T


# ---------------------------------------------------------------------------------- post-MLP norm
@torch.no_grad()
def through_post_norm(X: torch.Tensor, O: torch.Tensor, R: torch.Tensor, norm) -> torch.Tensor:
    """Change of the down projection's output that moves a post-MLP RMSNorm's output by R.

    Gemma 3 adds `post_feedforward_layernorm(down_proj(k))` to the residual, so a residual-space
    target R is not a down-projection target. X, O, R: [d, m] raw outputs (W0 K), normed outputs,
    wanted change of the normed outputs; `norm`: the RMSNorm module (its gain g [d] is its output on
    a vector of ones). RMSNorm(x) = g x / rms(x) is scale-invariant: x* = c (O + R) / g reaches the
    direction of O + R, not its length (|RMSNorm(x)| is fixed by g and the direction, so a post-norm
    MLP moves the residual by a bounded amount); c keeps rms(x*) = rms(X). Returns x* − X.
    """
    X, O, R = X.double(), O.double(), R.double()
    ones = torch.ones(1, X.shape[0], device=next(norm.parameters()).device)
    g = norm(ones)[0].double().cpu()
    U = (O + R) / torch.where(g.abs() < 1e-6, torch.full_like(g, 1e-6), g)[:, None]
    c = X.pow(2).mean(0).sqrt() / U.pow(2).mean(0).sqrt().clamp_min(1e-30)
    return (U * c - X).float()


# ---------------------------------------------------------------------------------- updates
def alphaedit_update(K: torch.Tensor, R: torch.Tensor, P: torch.Tensor, Kp: torch.Tensor | None = None,
                     L2: float = 1.0, preserve: str = "exact") -> tuple[torch.Tensor, torch.Tensor]:
    """Factors of ΔWᵀ = solve(P'(KKᵀ + K_pK_pᵀ) + L2·I, P' K Rᵀ) (P' = P, minus span(P K_p) when exact).

    Solved through Woodbury's identity with K̃ = [K, K_p], U = P'K̃ (P'K̃K̃ᵀ is rank m + p):
    (L2·I + U K̃ᵀ)⁻¹ P'K = (P'K − U (L2·I + K̃ᵀU)⁻¹ K̃ᵀ P'K) / L2 — O(d² (m+p)), no d×d solve.
    """
    K, R = K.double(), R.double()
    Kp = None if Kp is None or Kp.numel() == 0 else Kp.double()
    Kall = K if Kp is None else torch.cat([K, Kp], 1)
    U = P @ Kall                                                                  # [d_in, m + p]
    if Kp is not None and preserve == "exact":                                   # P' = P − Q Qᵀ, Q = orth(P K_p)
        Uq, s, _ = torch.linalg.svd(U[:, K.shape[1]:], full_matrices=False)
        Q = Uq[:, s > 1e-10 * max(float(s.max()), 1e-300)]
        U = U - Q @ (Q.T @ Kall)
    PK = U[:, : K.shape[1]]
    small = L2 * torch.eye(Kall.shape[1], dtype=U.dtype) + Kall.T @ U
    Y = (PK - U @ torch.linalg.solve(small, Kall.T @ PK)) / L2                   # [d_in, m]
    return R.float().contiguous(), Y.T.float().contiguous()                         # ΔW = R Yᵀ


def alphaedit_update_dense(K, R, P, Kp=None, L2: float = 1.0, preserve: str = "exact"):
    """The same update by the d×d solve ORT writes (reference for tests)."""
    K, R = K.double(), R.double()
    Kp = None if Kp is None or Kp.numel() == 0 else Kp.double()
    if Kp is not None and preserve == "exact":
        P = remove_span(P, Kp)
    M = K @ K.T + (Kp @ Kp.T if Kp is not None else 0)
    X = torch.linalg.solve(P @ M + L2 * torch.eye(K.shape[0], dtype=K.dtype), P @ K @ R.T)
    return X.T


def rome_update(W: torch.Tensor, C: torch.Tensor, K: torch.Tensor, V: torch.Tensor, lambda_reg: float,
                Kp: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors of the least-change update with (W + ΔW) K = V and ΔW K_p = 0 (rank m = K's columns).

    ΔW = [R, 0] (K̃ᵀC⁻¹K̃)⁻¹ K̃ᵀC⁻¹ with K̃ = [K, K_p], R = V − W K; C regularised by
    lambda_reg · mean(diag C) · I.
    """
    C = C.double()
    C = C + lambda_reg * C.diagonal().mean() * torch.eye(C.shape[0], dtype=C.dtype)
    K, V = K.double(), V.double()
    m = K.shape[1]
    Kall = K if Kp is None or Kp.numel() == 0 else torch.cat([K, Kp.double()], 1)
    cinv_k = torch.linalg.solve(C, Kall)                                          # [d_in, m + p]
    R = V - W.double() @ K                                                        # [d_out, m]
    Minv = torch.linalg.inv(Kall.T @ cinv_k)
    return R.float().contiguous(), (Minv[:m] @ cinv_k.T).float().contiguous()


def multi_key_update(W: torch.Tensor, C: torch.Tensor, K: torch.Tensor, V: torch.Tensor, lambda_reg: float,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors (A [d_out, m], B [m, d_in]) of ΔW = R (KᵀC⁻¹K)⁻¹ KᵀC⁻¹, R = V − W K (ROME with m keys)."""
    R, B = rome_update(W, C, K, V, lambda_reg)
    return R, B


def rank_one_update(W: torch.Tensor, C: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lambda_reg: float,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors (A [d_out, 1], B [1, d_in]) of ΔW = (v − W k)(C⁻¹k)ᵀ / (kᵀC⁻¹k), all fp32."""
    return rome_update(W, C, k[:, None], v[:, None], lambda_reg)


# ---------------------------------------------------------------------------------- statistics
def available_sources(sources=COV_SOURCES) -> list[str]:
    """The sources of `sources` installed here (each yields train-split paragraphs)."""
    from workbench.data.corpus import paragraphs
    out = []
    for s in sources:
        try:
            if paragraphs("train", s):
                out.append(s)
        except FileNotFoundError:
            continue
    if not out:
        raise FileNotFoundError(f"none of the corpus sources {list(sources)} is installed (make setup / make corpora)")
    return out


def mixed_chunks(tokenizer, n_tokens: int, seq_len: int, sources: list[str]) -> torch.Tensor:
    """[n, seq_len] token chunks, an equal share of `n_tokens` from each source's train split."""
    from workbench.data.corpus import token_chunks
    share = max(seq_len, n_tokens // len(sources))
    return torch.cat([token_chunks(tokenizer, "train", share, seq_len, source=s) for s in sources])


def _stats_folder(model, n_tokens: int, seq_len: int, sources: list[str]):
    from workbench.models.identity import model_content_id
    return cache_dir("stats", "rocr", f"{model_content_id(model)}-{'+'.join(sources)}-{n_tokens}-{seq_len}")


def key_statistics(model, layers: list[int], n_tokens: int = 16384, seq_len: int = 128,
                   sources=COV_SOURCES, batch_size: int = 8, progress: bool = True) -> dict[int, dict]:
    """{layer: {"C": [d, d], "U": eigenvectors, "S": eigenvalues (ascending)}} for the MLP keys.

    Cached per model content (config + weight fingerprints), source mix, token count and sequence
    length; missing layers are computed in one pass that stops after the deepest of them.
    """
    if n_tokens < seq_len:
        raise ValueError(f"cov_tokens={n_tokens} must be at least cov_seq_len={seq_len}")
    sources = available_sources(sources)
    folder = _stats_folder(model, n_tokens, seq_len, sources)
    out, missing = {}, []
    for L in layers:
        path = folder / f"layer{L}.safetensors"
        if path.is_file():
            out[L] = load_file(str(path))
        else:
            missing.append(L)
    if not missing:
        return out
    chunks = mixed_chunks(model.tokenizer, n_tokens, seq_len, sources)
    sites = {L: f"blocks.{L}.mlp.hook_post" for L in missing}
    d = model.info.d_mlp
    acc = {L: torch.zeros(d, d, dtype=torch.float64) for L in missing}
    t0 = time.perf_counter()

    def accumulate_for(L):
        def fn(act, site):
            k = act.reshape(-1, act.shape[-1]).double().cpu()
            acc[L].addmm_(k.T, k)
        return fn

    count = 0
    with torch.no_grad():
        for start in tqdm(range(0, len(chunks), batch_size), desc="ROCR key statistics", disable=not progress):
            batch = chunks[start:start + batch_size].to(model.device)
            with model.hooks([(s, accumulate_for(L)) for L, s in sites.items()]):
                model.run_with_cache({"input_ids": batch, "attention_mask": torch.ones_like(batch)},
                                     [sites[max(missing)]], logits_to_keep=1, stop_early=True)
            count += batch.numel()
    seconds = time.perf_counter() - t0
    for L in missing:
        C = acc[L] / count
        S, U = torch.linalg.eigh(C)
        stats = {"C": C.float().contiguous(), "U": U.float().contiguous(), "S": S.float().contiguous()}
        with atomic_path(folder / f"layer{L}.safetensors") as tmp:
            save_file(stats, str(tmp), metadata={"tokens": str(count), "sources": "+".join(sources)})
        out[L] = stats
    meta = {"model": model.model_id, "tokens": count, "seq_len": seq_len, "sources": sources,
            "layers_computed": missing, "seconds": round(seconds, 2)}
    with atomic_path(folder / f"run-{'-'.join(map(str, missing))}.json") as tmp:
        tmp.write_text(json.dumps(meta))
    return out


def statistics_cost(model, layers, n_tokens, seq_len, sources=COV_SOURCES) -> dict | None:
    """The recorded one-off cost (seconds, tokens) of the cached statistics for these layers, if any."""
    folder = _stats_folder(model, n_tokens, seq_len, available_sources(sources))
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("run-*.json"))]
    return {"runs": runs, "seconds": sum(r["seconds"] for r in runs)} if runs else None
