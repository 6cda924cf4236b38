"""Probe scoring: does the model still produce a fact, and how likely is the answer?

Two measures per probe (docs/report.md):

- `hit`: the greedy continuation (`max_new_tokens` new tokens) contains any acceptable answer,
  compared case-insensitively as a substring; for form 'mcq_letter' the continuation must instead
  START with the answer letter (`is_hit`, the one scoring rule).
- `prob`: the teacher-forced probability of the probe's FIRST acceptable answer: the product of
  the answer tokens' probabilities given the rendered prompt (`answer_logprob` is its log).

These are the two efficacy measures of knowledge-editing evaluations (CounterFact in ROME, Meng
et al. 2022: the target's probability, and whether generation produces it). Chat probes have a
tiny `prob` by construction (the instruct model restates the question before answering), so for
them `hit` is the measure that matters; `summarize` reports both per form.

Rendering, the tokenisation rule for `prob`, batched generation and teacher forcing are the shared
primitives of `workbench.scoring` (re-exported here under their old names); this module turns them
into per-probe scores and summaries.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from workbench.scoring import (NO_SPACE_AFTER, answer_continuation, answer_logprobs,  # noqa: F401 (re-exported)
                               answer_tokens, chunks, eval_mode, generate_batched, logits_at, render_prompt)

from workbench.concepts.schema import MCQ_LETTER_FORM, Concept, Probe, render_prompt
_answer_tokens, _chunks, _eval_mode, _logits_at = answer_tokens, chunks, eval_mode, logits_at   # old private names

__all__ = ["ProbeScore", "answer_continuation", "answer_logprobs", "check_concepts", "concept_baseline",
           "format_check_table", "generate_batched", "is_hit", "score_concepts", "score_probes", "summarize"]


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


_LETTER_END = (")", ".", ":")


def _letter_hit(continuation: str, letter: str) -> bool:
    """The continuation's first non-space text is `letter`, then end, whitespace, ')', '.' or ':'."""
    text, letter = continuation.lstrip(), letter.strip()
    if not letter or not text.startswith(letter):      # case-sensitive: " a dog" is not option A
        return False
    rest = text[len(letter):]
    return not rest or rest[0].isspace() or rest.startswith(_LETTER_END)


def is_hit(continuation: str, answers: Iterable[str], form: str = "completion") -> bool:
    """Does the continuation give an acceptable answer? The one scoring rule, form-aware.

    form 'mcq_letter' (options labelled A-D, answered by the letter): a hit is the continuation's
    first non-space characters being an answer letter, followed by the end, whitespace, ')', '.'
    or ':', case-sensitively (" B", "B)", " B. Paris" hit; " b", " Bonn", " The answer is B" do
    not), so a letter that merely occurs somewhere is no hit. Every other form: any answer occurs in the continuation,
    compared case-insensitively as a substring.
    """
    if form == MCQ_LETTER_FORM:
        return any(_letter_hit(continuation, a) for a in answers)
    text = continuation.casefold()
    return any(a.casefold() in text for a in answers)


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
                       hit=is_hit(cont, p.answers, p.form), prob=math.exp(lp), answer_logprob=lp,
                       answer=text, n_answer_tokens=n)
            for p, cont, (lp, n, text) in zip(probes, continuations, scored)]


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _summary(group: Sequence[ProbeScore]) -> dict:
    """{"hit", "prob", "n", "hit_ci"} of one group of scores (hit_ci: Wilson 95 %, None if empty)."""
    from workbench.verify.stats import rate_ci
    hits = [bool(s.hit) for s in group]
    return {"hit": _mean([float(h) for h in hits]), "prob": _mean([s.prob for s in group]), "n": len(group),
            "hit_ci": rate_ci(hits)}


def summarize(scores: Sequence[ProbeScore]) -> dict:
    """{"hit": mean, "prob": mean, "n": count, "hit_ci": [lo, hi],
    "by_form": {form: {"hit", "prob", "n", "hit_ci"}}}.

    hit_ci is the Wilson 95 % interval of the hit rate (workbench.verify.stats.wilson). Means and
    intervals are None for an empty list; forms keep their first-seen order.
    """
    by_form: dict[str, list[ProbeScore]] = {}
    for s in scores:
        by_form.setdefault(s.form, []).append(s)
    return {**_summary(scores), "by_form": {form: _summary(group) for form, group in by_form.items()}}


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
