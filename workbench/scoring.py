"""Probe scoring primitives shared by every stage: prompt rendering, tokenisation of an answer after
a prompt, batched greedy generation and teacher-forced answer log-probabilities.

Rendering (`render_prompt`): a `chat` probe holds the plain user message and goes through the
model's chat template (`model.chat`); every other form is used verbatim. Generation, teacher
forcing, localisation, fit-data derivation and editing all call it, so they see the same prompt.

Tokenisation rule (`answer_tokens`): the rendered prompt is tokenised exactly as generation
tokenises it (`model.tokenizer(prompt)`, special tokens included), and the answer is tokenised
separately without special tokens and appended, so a score is the probability that decoding from
that very prompt emits the answer tokens. The answer gets a leading space unless the prompt ends in
whitespace (e.g. the chat template's trailing newline) or an opening bracket / quote, or the answer
already starts with whitespace (`answer_continuation`).

Generation and teacher forcing are batched (prompts sorted by length to limit padding) and run
through the HookedModel, so hook-based edits and weight edits are both seen. Hit / probability
aggregation (`score_probes`, `summarize`, `is_hit`) lives in `workbench.verify.probes`.

torch is imported inside the functions, so `workbench.concepts` (which re-exports `render_prompt`)
stays importable without it.
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Iterable, Sequence

__all__ = ["CHAT_FORM", "NO_SPACE_AFTER", "answer_continuation", "answer_logprobs", "answer_tokens", "eval_mode",
           "generate_batched", "render_prompt"]

CHAT_FORM = "chat"
NO_SPACE_AFTER = tuple("([{\"'“‘«")


def render_prompt(model, probe) -> str:
    """The exact text a model sees for `probe` (a `workbench.concepts.Probe`).

    'chat' probes go through the model's chat template (`model.chat`, which returns the user
    message unchanged for a model without one); every other form is used verbatim.
    """
    if probe.form == CHAT_FORM:
        return model.chat(probe.prompt)
    return probe.prompt


def answer_continuation(prompt: str, answer: str) -> str:
    """The text appended to `prompt` when scoring `answer` (adds the leading space if needed)."""
    if not prompt or prompt[-1].isspace() or prompt.endswith(NO_SPACE_AFTER) or answer[:1].isspace():
        return answer
    return " " + answer


def chunks(order: list[int], size: int) -> Iterable[list[int]]:
    """Consecutive slices of `order` of at most `size` items."""
    for start in range(0, len(order), size):
        yield order[start:start + size]


def generate_batched(model, prompts: Sequence[str], max_new_tokens: int = 8, batch_size: int = 16) -> list[str]:
    """Greedy continuations of already-rendered prompts, batched by similar length."""
    import torch
    lengths = [len(ids) for ids in model.tokenizer(list(prompts))["input_ids"]] if prompts else []
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    out: list[str] = [""] * len(prompts)
    with torch.no_grad():
        for chunk in chunks(order, batch_size):
            for i, text in zip(chunk, model.generate([prompts[i] for i in chunk], max_new_tokens=max_new_tokens)):
                out[i] = text
    return out


def answer_tokens(model, prompt: str, answer: str) -> tuple[list[int], list[int], str]:
    """(prompt ids as generation sees them, answer ids, answer text scored)."""
    text = answer_continuation(prompt, answer)
    prompt_ids = list(model.tokenizer(prompt)["input_ids"])
    answer_ids = list(model.tokenizer(text, add_special_tokens=False)["input_ids"])
    if not answer_ids:
        raise ValueError(f"answer {answer!r} tokenizes to nothing")
    return prompt_ids, answer_ids, text


def logits_at(model, ids, mask, pos):
    """Logits [batch, k, vocab] at positions pos [batch, k] of a right-padded batch.

    Uses HF's `logits_to_keep` (only those positions go through the unembedding) when the model
    supports it, else slices the full logits of `model.forward`. Both run the same hooked modules.
    """
    import torch
    if "logits_to_keep" in inspect.signature(model.hf.forward).parameters:
        return model.hf(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=pos).logits
    logits = model.forward({"input_ids": ids, "attention_mask": mask})
    return torch.take_along_dim(logits, pos[..., None], dim=1)


def answer_logprobs(model, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 16,
                    ) -> list[tuple[float, int, str]]:
    """Teacher-forced log P(answer | prompt) for rendered prompts, batched (right padding).

    Returns, per pair, (sum of answer-token log-probs, number of answer tokens, answer text).
    Log-softmax is taken in fp32 at the answer positions only.
    """
    import torch
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    toks = [answer_tokens(model, p, a) for p, a in zip(prompts, answers)]
    pad = model.tokenizer.pad_token_id
    pad = 0 if pad is None else pad
    order = sorted(range(len(toks)), key=lambda i: len(toks[i][0]) + len(toks[i][1]))
    out: list[tuple[float, int, str]] = [(0.0, 0, "")] * len(toks)
    with torch.no_grad():
        for chunk in chunks(order, batch_size):
            seqs = [toks[i][0] + toks[i][1] for i in chunk]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for row, s in enumerate(seqs):
                ids[row, :len(s)] = torch.tensor(s)
                mask[row, :len(s)] = 1
            n_max = max(len(toks[i][1]) for i in chunk)
            # positions whose logits predict the answer tokens: len(p)-1 .. len(p)+len(a)-2 (padded by repeats)
            pos = torch.tensor([[len(toks[i][0]) - 1 + min(j, len(toks[i][1]) - 1) for j in range(n_max)]
                                for i in chunk])
            logits = logits_at(model, ids.to(model.device), mask.to(model.device), pos.to(model.device))
            logp = logits.float().log_softmax(-1)                        # [batch, n_max, vocab]
            for row, i in enumerate(chunk):
                a_ids, text = toks[i][1], toks[i][2]
                target = torch.tensor(a_ids, device=logp.device)
                out[i] = (float(logp[row, :len(a_ids)].gather(-1, target[:, None]).sum()), len(a_ids), text)
    return out


@contextmanager
def eval_mode(model):
    """Score in eval mode (no dropout) even right after a training loop; restore the mode after."""
    was_training = model.hf.training
    model.hf.eval()
    try:
        yield
    finally:
        model.hf.train(was_training)
