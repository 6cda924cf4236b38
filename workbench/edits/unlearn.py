"""Fine-tuning unlearning baselines: `ga`, `graddiff`, `npo`, `simnpo` (OpenUnlearning's losses).

The model is fine-tuned on the concept's forget probes (rendered prompt + first answer, teacher
forced; NLL of a sequence = sum of its answer-token losses):

- GA (gradient ascent):  L = -γ mean NLL_f
- GradDiff:              L = -γ mean NLL_f + α mean NLL_r                  (retain probes)
- NPO (Zhang et al. 2024, arXiv 2404.05868):
                         L = γ (2/β) mean -log σ(β (NLL_θ - NLL_ref)) + α mean NLL_r
  with NLL_ref from the unedited model (computed once before training), β = 0.1.
- SimNPO (Fan et al. 2024, arXiv 2410.07163), reference-free, length-normalized:
                         L = γ (2/β) mean -log σ(β (NLL_θ/|y| - δ)) + α mean NLL_r
  β = 4.5, δ = 0, γ = 0.125 (OpenUnlearning's defaults).

Minimizing -log σ(β x) pushes x (the forget NLL) up, saturating once the answer is unlikely —
the reason NPO/SimNPO collapse the model more slowly than plain GA.

The training runs in place on the selected parameters only (Adam, weight decay 0: METHODS.md,
decoupled weight decay would move every parameter the optimizer holds); the dense difference
new - old of every changed tensor becomes the Edit, and the model is restored bit-exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench.edits.base import Edit, TensorDelta
from workbench.edits.registry import EditConfig, register

__all__ = ["UnlearnConfig", "GAConfig", "GradDiffConfig", "NPOConfig", "SimNPOConfig", "probe_batch",
           "sequence_nll", "select_params", "snapshot", "restore", "train_in_place", "unlearning_loss"]


@dataclass
class UnlearnConfig(EditConfig):
    """Shared hyper-parameters of the fine-tuning baselines."""
    lr: float = 1e-5
    steps: int = 10
    batch_size: int = 16          # forget (and retain) sequences per step; cycles over the probes
    params: str = "all"           # "all" | "mlp" | "attn" | "no_embed" | comma-separated name substrings
    alpha: float = 0.0            # retain-loss weight
    gamma: float = 1.0            # forget-loss weight
    beta: float = 0.1             # NPO / SimNPO inverse temperature
    delta: float = 0.0            # SimNPO margin
    max_grad_norm: float = 1.0    # 0 = no clipping


@dataclass
class GAConfig(UnlearnConfig):
    pass


@dataclass
class GradDiffConfig(UnlearnConfig):
    alpha: float = 1.0


@dataclass
class NPOConfig(UnlearnConfig):
    alpha: float = 1.0
    beta: float = 0.1


@dataclass
class SimNPOConfig(UnlearnConfig):
    lr: float = 2e-5
    alpha: float = 1.0
    beta: float = 4.5
    gamma: float = 0.125


# ------------------------------------------------------------------------------------ data
def probe_batch(model, probes) -> dict[str, torch.Tensor]:
    """Right-padded teacher-forcing batch of rendered prompt + first answer.

    Tokenized exactly as workbench.verify.probes scores `prob` (prompt with special tokens, answer
    separately without). Returns input_ids, attention_mask [n, T] and labels [n, T] (-100 except
    on answer tokens, unshifted: labels[t] is the token at position t).
    """
    from workbench.concepts import render_prompt
    from workbench.verify.probes import answer_continuation
    seqs = []
    for p in probes:
        prompt = render_prompt(model, p)
        p_ids = list(model.tokenizer(prompt)["input_ids"])
        a_ids = list(model.tokenizer(answer_continuation(prompt, p.answer), add_special_tokens=False)["input_ids"])
        seqs.append((p_ids, a_ids))
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    width = max(len(a) + len(b) for a, b in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for row, (p_ids, a_ids) in enumerate(seqs):
        n = len(p_ids) + len(a_ids)
        ids[row, :n] = torch.tensor(p_ids + a_ids)
        mask[row, :n] = 1
        labels[row, len(p_ids):n] = torch.tensor(a_ids)
    dev = model.device
    return {"input_ids": ids.to(dev), "attention_mask": mask.to(dev), "labels": labels.to(dev)}


def _rows(batch: dict, idx: Sequence[int]) -> dict:
    idx_t = torch.as_tensor(list(idx), device=batch["input_ids"].device)
    return {k: v.index_select(0, idx_t) for k, v in batch.items()}


def sequence_nll(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(NLL per sequence = sum of answer-token losses [n], answer lengths [n]); differentiable."""
    labels = batch["labels"][:, 1:]
    keep = labels != -100                                              # [n, T-1]
    head, base = model.hf.get_output_embeddings(), getattr(model.hf, "base_model", None)
    if head is None or base is None or base is model.hf:
        logits = model.hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          use_cache=False).logits[:, :-1][keep]
    else:                      # unembed only the answer positions: the vocab matmul is the costliest one
        hidden = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      use_cache=False).last_hidden_state
        logits = head(hidden[:, :-1][keep])
        softcap = getattr(model.hf.config, "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
    token_loss = F.cross_entropy(logits.float(), labels[keep], reduction="none")
    losses = torch.zeros(keep.shape, dtype=token_loss.dtype, device=token_loss.device).masked_scatter(keep, token_loss)
    return losses.sum(-1), keep.sum(-1)


def unlearning_loss(method: str, nll_f: torch.Tensor, len_f: torch.Tensor, cfg: UnlearnConfig,
                    nll_ref: torch.Tensor | None = None, nll_r: torch.Tensor | None = None) -> torch.Tensor:
    """The OpenUnlearning objective of `method` (see the module docstring); all inputs [n]."""
    if method in ("ga", "graddiff"):
        forget = -nll_f.mean()
    elif method == "npo":
        forget = -F.logsigmoid(cfg.beta * (nll_f - nll_ref)).mean() * 2 / cfg.beta
    elif method == "simnpo":
        forget = -F.logsigmoid(cfg.beta * (nll_f / len_f.clamp_min(1) - cfg.delta)).mean() * 2 / cfg.beta
    else:
        raise ValueError(f"unknown unlearning loss {method!r}")
    loss = cfg.gamma * forget
    if method != "ga" and cfg.alpha and nll_r is not None:
        loss = loss + cfg.alpha * nll_r.mean()
    return loss


# ------------------------------------------------------------------------------------ params
def select_params(model, spec: str = "all") -> dict[str, torch.nn.Parameter]:
    """Named parameters to train, each once (tied embeddings appear under one name, as
    `named_parameters` lists them). spec: all | mlp | attn | no_embed | comma-separated substrings."""
    named = dict(model.hf.named_parameters())          # deduplicated by identity already
    if spec == "all":
        out = named
    elif spec == "mlp":
        out = {n: p for n, p in named.items() if ".mlp." in n}
    elif spec == "attn":
        out = {n: p for n, p in named.items() if ".self_attn." in n or ".attn." in n}
    elif spec == "no_embed":
        embeds = {id(m.weight) for m in (model.hf.get_input_embeddings(), model.hf.get_output_embeddings())
                  if m is not None}
        out = {n: p for n, p in named.items() if id(p) not in embeds}
    else:
        keys = [k.strip() for k in spec.split(",") if k.strip()]
        out = {n: p for n, p in named.items() if any(k in n for k in keys)}
    if not out:
        raise ValueError(f"params={spec!r} selects no parameter")
    return out


def snapshot(params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in params.items()}


@torch.no_grad()
def restore(params: dict[str, torch.nn.Parameter], saved: dict[str, torch.Tensor]) -> None:
    for n, t in saved.items():
        params[n].data.copy_(t)


def train_in_place(model, params: dict[str, torch.nn.Parameter], loss_fn: Callable[[int], torch.Tensor],
                   steps: int, lr: float, max_grad_norm: float = 0.0, desc: str = "train",
                   progress: bool = True) -> list[float]:
    """Adam (weight decay 0) over `params` only, `steps` steps of loss_fn(step). Eval mode (no
    dropout); requires_grad flags and train/eval mode are restored. Does NOT restore weights."""
    names = list(params)
    flags = {n: p.requires_grad for n, p in model.hf.named_parameters()}
    was_training = model.hf.training
    losses = []
    try:
        model.hf.eval()
        for n, p in model.hf.named_parameters():
            p.requires_grad_(n in params)
        plist = [params[n] for n in names]
        opt = torch.optim.Adam(plist, lr=lr, weight_decay=0.0)
        bar = tqdm(range(steps), desc=desc, leave=False, disable=None if progress else True)
        for step in bar:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(step)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: loss became {float(loss)} at step {step}")
            loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(plist, max_grad_norm)
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        del opt
    finally:
        for p in params.values():
            p.grad = None
        for n, p in model.hf.named_parameters():
            p.requires_grad_(flags[n])
        model.hf.train(was_training)
    return losses


def _cycle(n: int, size: int, step: int) -> list[int]:
    """Indices of mini-batch `step` when cycling over n items in batches of `size`."""
    if n <= size:
        return list(range(n))
    start = (step * size) % n
    return [(start + j) % n for j in range(size)]


# ------------------------------------------------------------------------------------ fit
def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def _fit(method: str, model, concept, report, cfg: UnlearnConfig) -> Edit:
    if cfg.steps < 1 or cfg.lr <= 0:
        raise ValueError(f"{method}: steps must be >= 1 and lr > 0 (got steps={cfg.steps}, lr={cfg.lr})")
    torch.manual_seed(cfg.seed)
    params = select_params(model, cfg.params)
    forget = probe_batch(model, concept.forget)
    retain = probe_batch(model, concept.retain) if method != "ga" and cfg.alpha else None
    nll_ref = None
    if method == "npo":
        with torch.no_grad():
            nll_ref = sequence_nll(model, forget)[0].detach()
    n_f = forget["input_ids"].shape[0]
    n_r = retain["input_ids"].shape[0] if retain is not None else 0

    def loss_fn(step: int) -> torch.Tensor:
        idx = _cycle(n_f, cfg.batch_size, step)
        nll_f, len_f = sequence_nll(model, _rows(forget, idx))
        nll_r = sequence_nll(model, _rows(retain, _cycle(n_r, cfg.batch_size, step)))[0] if retain else None
        ref = nll_ref[idx] if nll_ref is not None else None
        return unlearning_loss(method, nll_f, len_f, cfg, nll_ref=ref, nll_r=nll_r)

    originals = snapshot(params)
    try:
        losses = train_in_place(model, params, loss_fn, cfg.steps, cfg.lr, cfg.max_grad_norm, desc=method)
        deltas = []
        with torch.no_grad():
            for name, p in params.items():
                old = originals[name]
                if torch.equal(p.data, old):
                    continue
                deltas.append(TensorDelta(name, "dense", tuple(p.shape), _dtype(p),
                                          delta=(p.data.float() - old.float()).cpu()))
    finally:
        restore(params, originals)
    if not deltas:
        raise ValueError(f"{method} on {concept.name!r}: no parameter changed (lr={cfg.lr}, steps={cfg.steps})")
    prov = {"dense": True, "note": "full-model fine-tuning; dense patch" if cfg.params == "all"
            else f"fine-tuning of params={cfg.params!r}; dense patch",
            "losses": [round(x, 5) for x in losses], "n_forget": n_f, "n_retain": n_r}
    if not all(math.isfinite(x) for x in losses):
        prov["warning"] = "non-finite loss"
    return Edit(method=method, model_id=model.model_id, deltas=deltas, concept=concept.name, provenance=prov)


@register("ga", GAConfig, "gradient ascent on the forget probes (full fine-tuning, dense patch)")
def fit_ga(model, concept, report, config: GAConfig) -> Edit:
    return _fit("ga", model, concept, report, config)


@register("graddiff", GradDiffConfig, "gradient ascent on forget + descent on retain probes")
def fit_graddiff(model, concept, report, config: GradDiffConfig) -> Edit:
    return _fit("graddiff", model, concept, report, config)


@register("npo", NPOConfig, "negative preference optimization against the unedited model (+ retain NLL)")
def fit_npo(model, concept, report, config: NPOConfig) -> Edit:
    return _fit("npo", model, concept, report, config)


@register("simnpo", SimNPOConfig, "reference-free, length-normalized NPO (+ retain NLL)")
def fit_simnpo(model, concept, report, config: SimNPOConfig) -> Edit:
    return _fit("simnpo", model, concept, report, config)
