"""Training primitives shared by the fine-tuning methods, weight attribution and the relearning
attack: teacher-forcing batches of probes, per-sequence answer NLL, parameter selection, snapshot /
restore, the in-place Adam loop, and `train_edit`: THE fine-tuning loop of every method.

`train_edit(model, params, objective, ...)` snapshots the parameters, trains them on
`objective(step) -> loss` (plus optional `ExtraLoss` terms such as uoe's router anchor, and
optional gradient masks that keep every masked-out entry bit-identical), reads the change off
(`deltas(params, originals)`), and restores the weights bit-exactly, also on errors. Each method
(ga / graddiff / npo / simnpo, wagle, rmu, uoe, ablate's needles, the relearning attack) is a
parameter selection + an objective + a delta format on top of it.

Batches (`probe_batch`) are tokenised exactly as `workbench.scoring` scores `prob`: the rendered
prompt with special tokens, then the answer separately without, so a loss is the NLL of the very
continuation the scorer measures. `train_in_place` trains only the selected parameters (Adam, weight
decay 0: decoupled weight decay would move every parameter the optimizer holds), in eval mode (no
dropout), restoring requires_grad flags and the train/eval mode but not the weights: callers take a
`snapshot` first and `restore` it (bit-exact) after reading off the change.
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench.scoring import answer_continuation, render_prompt

__all__ = ["ExtraLoss", "TrainResult", "cycle", "masked_gradients", "probe_batch", "restore", "rows", "select_params",
           "sequence_nll", "snapshot", "train_edit", "train_in_place"]


# ------------------------------------------------------------------------------------ data
def probe_batch(model, probes) -> dict[str, torch.Tensor]:
    """Right-padded teacher-forcing batch of rendered prompt + first answer.

    Tokenized exactly as workbench.scoring scores `prob` (prompt with special tokens, answer
    separately without). Returns input_ids, attention_mask [n, T] and labels [n, T] (-100 except
    on answer tokens, unshifted: labels[t] is the token at position t).
    """
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


def rows(batch: dict, idx: Sequence[int]) -> dict:
    """The sub-batch of rows `idx` of a `probe_batch`."""
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


# ------------------------------------------------------------------------------------ parameters
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
    """Copies of the parameters' current values (for `restore`)."""
    return {n: p.detach().clone() for n, p in params.items()}


@torch.no_grad()
def restore(params: dict[str, torch.nn.Parameter], saved: dict[str, torch.Tensor]) -> None:
    """Copy `snapshot` values back into the parameters, bit-exactly."""
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


def cycle(n: int, size: int, step: int) -> list[int]:
    """Indices of mini-batch `step` when cycling over n items in batches of `size`."""
    if n <= size:
        return list(range(n))
    start = (step * size) % n
    return [(start + j) % n for j in range(size)]


# ------------------------------------------------------------------------------------ the loop
@contextmanager
def masked_gradients(params: dict[str, torch.nn.Parameter], masks: dict[str, torch.Tensor]):
    """While active, every gradient reaching params[name] is zeroed outside masks[name] (bool or 0/1;
    hooks on the leaf tensors: the mask applies before accumulation, clipping and the optimizer step).
    With Adam and weight decay 0 the masked-out entries then do not move at all."""
    handles = []
    try:
        for name, p in params.items():
            off = ~masks[name].to(p.device, torch.bool)          # bool: 1 byte per weight, not a float copy
            handles.append(p.register_hook(lambda g, off=off: g.masked_fill(off, 0.0)))
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class ExtraLoss:
    """A term added to the objective: weight * value(captured, step).

    capture(step) is a context manager active while the objective runs (e.g. a hook that records
    router logits); what it yields is handed to value(). Its per-step values are kept in
    TrainResult.parts[name]."""
    name: str
    weight: float
    capture: Callable[[int], ContextManager]
    value: Callable[[Any, int], torch.Tensor]


@dataclass
class TrainResult:
    losses: list[float]                              # total loss per step
    parts: dict[str, list[float]] = field(default_factory=dict)   # "objective" + each extra loss, per step
    deltas: Any = None                               # what deltas(params, originals) returned
    after: Any = None                                # what after() returned (on the trained weights)


def train_edit(model, params: dict[str, torch.nn.Parameter], objective: Callable[[int], torch.Tensor], *,
               steps: int, lr: float, max_grad_norm: float = 0.0, masks: dict[str, torch.Tensor] | None = None,
               extra_losses: Sequence[ExtraLoss] = (), start: Callable[[dict], None] | None = None,
               deltas: Callable[[dict, dict], Any] | None = None, after: Callable[[], Any] | None = None,
               desc: str = "train", progress: bool = True) -> TrainResult:
    """The one fine-tuning loop: train `params` in place on objective(step) (+ extra losses), read
    the change off, restore the weights bit-exactly (also on errors).

    masks: {name: bool tensor}; only parameters with a non-empty mask are trained, and their
    gradients are zeroed outside the mask (`masked_gradients`). start(params): runs after the
    snapshot, before the first step (e.g. set starting values). deltas(params, originals): reads the
    change off the trained weights; after(): any measurement on the trained model. Both run before
    the weights are restored. Adam, weight decay 0, eval mode (`train_in_place`); progress via tqdm.
    """
    if masks is not None:
        params = {n: p for n, p in params.items() if n in masks and bool(masks[n].any())}
        if not params:
            raise ValueError("the mask selects no weight of the chosen parameters")
    parts: dict[str, list[float]] = {"objective": [], **{e.name: [] for e in extra_losses}}

    def loss_fn(step: int) -> torch.Tensor:
        with ExitStack() as stack:
            captured = [stack.enter_context(e.capture(step)) for e in extra_losses]
            loss = objective(step)
        if extra_losses:
            parts["objective"].append(loss.item())
        for e, c in zip(extra_losses, captured):
            value = e.value(c, step)
            parts[e.name].append(value.item())
            loss = loss + e.weight * value
        return loss

    originals = snapshot(params)
    try:
        if start is not None:
            start(params)
        with masked_gradients(params, masks) if masks is not None else nullcontext():
            losses = train_in_place(model, params, loss_fn, steps, lr, max_grad_norm, desc=desc, progress=progress)
        result = TrainResult(losses, parts if extra_losses else {"objective": list(losses)})
        result.after = after() if after is not None else None
        result.deltas = deltas(params, originals) if deltas is not None else None
    finally:
        restore(params, originals)
    return result
