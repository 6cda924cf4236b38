"""Probe scoring: does the model still produce a fact, and how likely is the answer?

Two measures per probe (DESIGN.md §4):

- `hit`: the greedy continuation (`max_new_tokens` new tokens) contains any acceptable answer,
  compared case-insensitively as a substring.
- `prob`: the teacher-forced probability of the probe's FIRST acceptable answer: the product of
  the answer tokens' probabilities given the rendered prompt (`answer_logprob` is its log).

These are the two efficacy measures of knowledge-editing evaluations (CounterFact in ROME, Meng
et al. 2022: the target's probability, and whether generation produces it). Chat probes have a
tiny `prob` by construction (the instruct model restates the question before answering), so for
them `hit` is the measure that matters; `summarize` reports both per form.

Tokenization rule for `prob`: the rendered prompt is tokenized exactly as generation tokenizes it
(`model.tokenizer(prompt)`, special tokens included), and the answer is tokenized separately
without special tokens and appended, so the score is the probability that greedy/sampled
decoding from that very prompt emits the answer tokens. The answer gets a leading space unless
the prompt ends in whitespace (e.g. the chat template's trailing newline) or an opening
bracket/quote, or the answer already starts with whitespace (`answer_continuation`).

Chat-form probes are rendered through the model's chat template (`render_prompt`). Generation and
teacher forcing are batched (prompts sorted by length to limit padding) and run through the
HookedModel, so hook-based edits and weight edits are both seen.
"""
from __future__ import annotations

import inspect
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import torch

from workbench.concepts.schema import Concept, Probe, render_prompt

__all__ = ["ProbeScore", "answer_continuation", "answer_logprobs", "check_concepts", "concept_baseline",
           "format_check_table", "generate_batched", "is_hit", "score_concepts", "score_probes", "summarize"]

NO_SPACE_AFTER = tuple("([{\"'“‘«")


@dataclass
class ProbeScore:
    """The score of one probe: greedy continuation, hit, and the first answer's probability."""
    prompt: str              # the probe's prompt as written (chat probes: the plain user message)
    form: str
    answers: list[str]
    continuation: str        # greedy new text (special tokens dropped)
    hit: bool
    prob: float              # P(first answer | rendered prompt), teacher-forced
    answer_logprob: float    # log of prob (sum of token log-probs), finite even when prob underflows
    answer: str              # the answer text that was scored, leading space included
    n_answer_tokens: int

    def to_dict(self) -> dict:
        return asdict(self)


def answer_continuation(prompt: str, answer: str) -> str:
    """The text appended to `prompt` when scoring `answer` (adds the leading space if needed)."""
    if not prompt or prompt[-1].isspace() or prompt.endswith(NO_SPACE_AFTER) or answer[:1].isspace():
        return answer
    return " " + answer


def is_hit(continuation: str, answers: Iterable[str]) -> bool:
    """True when any answer occurs in the continuation, case-insensitively."""
    text = continuation.casefold()
    return any(a.casefold() in text for a in answers)


def _chunks(order: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(order), size):
        yield order[start:start + size]


@torch.no_grad()
def generate_batched(model, prompts: Sequence[str], max_new_tokens: int = 8, batch_size: int = 16) -> list[str]:
    """Greedy continuations of already-rendered prompts, batched by similar length."""
    lengths = [len(ids) for ids in model.tokenizer(list(prompts))["input_ids"]] if prompts else []
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    out: list[str] = [""] * len(prompts)
    for chunk in _chunks(order, batch_size):
        for i, text in zip(chunk, model.generate([prompts[i] for i in chunk], max_new_tokens=max_new_tokens)):
            out[i] = text
    return out


def _answer_tokens(model, prompt: str, answer: str) -> tuple[list[int], list[int], str]:
    """(prompt ids as generation sees them, answer ids, answer text scored)."""
    text = answer_continuation(prompt, answer)
    prompt_ids = list(model.tokenizer(prompt)["input_ids"])
    answer_ids = list(model.tokenizer(text, add_special_tokens=False)["input_ids"])
    if not answer_ids:
        raise ValueError(f"answer {answer!r} tokenizes to nothing")
    return prompt_ids, answer_ids, text


def _logits_at(model, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Logits [batch, k, vocab] at positions pos [batch, k] of a right-padded batch.

    Uses HF's `logits_to_keep` (only those positions go through the unembedding) when the model
    supports it, else slices the full logits of `model.forward`. Both run the same hooked modules.
    """
    if "logits_to_keep" in inspect.signature(model.hf.forward).parameters:
        return model.hf(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=pos).logits
    logits = model.forward({"input_ids": ids, "attention_mask": mask})
    return torch.take_along_dim(logits, pos[..., None], dim=1)


@torch.no_grad()
def answer_logprobs(model, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 16,
                    ) -> list[tuple[float, int, str]]:
    """Teacher-forced log P(answer | prompt) for rendered prompts, batched (right padding).

    Returns, per pair, (sum of answer-token log-probs, number of answer tokens, answer text).
    Log-softmax is taken in fp32 at the answer positions only.
    """
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    toks = [_answer_tokens(model, p, a) for p, a in zip(prompts, answers)]
    pad = model.tokenizer.pad_token_id
    pad = 0 if pad is None else pad
    order = sorted(range(len(toks)), key=lambda i: len(toks[i][0]) + len(toks[i][1]))
    out: list[tuple[float, int, str]] = [(0.0, 0, "")] * len(toks)
    for chunk in _chunks(order, batch_size):
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
        logits = _logits_at(model, ids.to(model.device), mask.to(model.device), pos.to(model.device))
        logp = logits.float().log_softmax(-1)                        # [batch, n_max, vocab]
        for row, i in enumerate(chunk):
            a_ids, text = toks[i][1], toks[i][2]
            target = torch.tensor(a_ids, device=logp.device)
            out[i] = (float(logp[row, :len(a_ids)].gather(-1, target[:, None]).sum()), len(a_ids), text)
    return out


@contextmanager
def _eval_mode(model):
    """Score in eval mode (no dropout) even right after a training loop; restore the mode after."""
    was_training = model.hf.training
    model.hf.eval()
    try:
        yield
    finally:
        model.hf.train(was_training)


def score_probes(model, probes: Sequence[Probe], max_new_tokens: int = 8, batch_size: int = 16,
                 ) -> list[ProbeScore]:
    """Score probes on a HookedModel: greedy continuation, hit and first-answer probability.

    One batched generation pass and one batched teacher-forcing pass over all probes (run in eval
    mode, the model's train/eval mode restored afterwards); the result is in the order of `probes`.
    """
    probes = list(probes)
    if not probes:
        return []
    from workbench.concepts.limits import check_prompt_lengths
    check_prompt_lengths(model, probes)                 # one line, before any allocation
    rendered = [render_prompt(model, p) for p in probes]
    with _eval_mode(model):
        continuations = generate_batched(model, rendered, max_new_tokens=max_new_tokens, batch_size=batch_size)
        scored = answer_logprobs(model, rendered, [p.answer for p in probes], batch_size=batch_size)
    return [ProbeScore(prompt=p.prompt, form=p.form, answers=list(p.answers), continuation=cont,
                       hit=is_hit(cont, p.answers), prob=math.exp(lp), answer_logprob=lp,
                       answer=text, n_answer_tokens=n)
            for p, cont, (lp, n, text) in zip(probes, continuations, scored)]


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize(scores: Sequence[ProbeScore]) -> dict:
    """{"hit": mean, "prob": mean, "n": count, "by_form": {form: {"hit", "prob", "n"}}}.

    Means are None for an empty list; forms keep their first-seen order.
    """
    by_form: dict[str, list[ProbeScore]] = {}
    for s in scores:
        by_form.setdefault(s.form, []).append(s)

    def agg(group: Sequence[ProbeScore]) -> dict:
        return {"hit": _mean([float(s.hit) for s in group]), "prob": _mean([s.prob for s in group]),
                "n": len(group)}

    return {**agg(scores), "by_form": {form: agg(group) for form, group in by_form.items()}}


def score_concepts(model, concepts: Sequence[Concept], max_new_tokens: int = 8, batch_size: int = 16,
                   ) -> list[dict[str, list[ProbeScore]]]:
    """Per concept {"forget": [ProbeScore], "retain": [ProbeScore]}, all scored in one batched call."""
    probes = [p for c in concepts for p in c.probes]
    scores = score_probes(model, probes, max_new_tokens=max_new_tokens, batch_size=batch_size)
    out, at = [], 0
    for c in concepts:
        nf, nr = len(c.forget), len(c.retain)
        out.append({"forget": scores[at:at + nf], "retain": scores[at + nf:at + nf + nr]})
        at += nf + nr
    return out


def _baseline_row(concept: Concept, scored: dict[str, list[ProbeScore]], threshold: float) -> dict:
    forget, retain = summarize(scored["forget"]), summarize(scored["retain"])
    notes = []
    known = forget["hit"] >= threshold
    if not known:
        notes.append(f"model does not know it (forget hit {forget['hit']:.2f} < {threshold:.2f})")
    if retain["hit"] < threshold:
        notes.append(f"weak retain set (retain hit {retain['hit']:.2f} < {threshold:.2f})")
    if concept.subject_coverage() < 0.5:
        notes.append(f"subject {concept.subject!r} in only {concept.subject_coverage():.0%} of forget prompts")
    return {"concept": concept.name, "known": known, "threshold": threshold, "forget": forget,
            "retain": retain, "notes": notes}


def concept_baseline(model, concept: Concept, threshold: float = 0.5, max_new_tokens: int = 8,
                     batch_size: int = 16) -> dict:
    """Baseline of one concept on an unedited model.

    Returns {"concept", "known" (forget hit >= threshold), "threshold", "forget": summary,
    "retain": summary, "notes": [warnings]} with summaries as returned by `summarize`.
    """
    return check_concepts(model, [concept], threshold, max_new_tokens, batch_size)[0]


def check_concepts(model, concepts: Sequence[Concept], threshold: float = 0.5, max_new_tokens: int = 8,
                   batch_size: int = 16) -> list[dict]:
    """`concept_baseline` for many concepts, scored in one batched pass (`workbench concepts check`)."""
    scored = score_concepts(model, concepts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return [_baseline_row(c, s, threshold) for c, s in zip(concepts, scored)]


def format_check_table(rows: Sequence[dict]) -> str:
    """A plain-text table of `check_concepts` rows, one concept per line, notes underneath."""
    header = ["concept", "forget hit", "forget prob", "retain hit", "retain prob", "known"]
    body = [[r["concept"], f"{r['forget']['hit']:.2f} ({r['forget']['n']})", f"{r['forget']['prob']:.3f}",
             f"{r['retain']['hit']:.2f} ({r['retain']['n']})", f"{r['retain']['prob']:.3f}",
             "yes" if r["known"] else "NO"] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths)))

    lines = [line(header), "  ".join("-" * w for w in widths), *(line(b) for b in body)]
    notes = [f"{r['concept']}: {n}" for r in rows for n in r.get("notes", [])]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)
