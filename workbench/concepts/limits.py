"""Prompt length limits: the one check of prompts against a model's context window.

`check_prompt_lengths(model, concepts)` is called wherever probes meet a model: scoring
(`workbench.verify.probes.score_probes`), fitting (`workbench.edits.fit_edit`, the concept's fit
block included), the CLI (after loading the model, before any work) and the dashboard (concept
files and form edits). A probe is too long when its rendered prompt plus
its longest answer plus `GENERATION_MARGIN` generated tokens do not fit the model's context
(`config.max_position_embeddings`, or the tokenizer's `model_max_length`, whichever is set;
the smaller when both are). Independently of any model, concept files are refused at parse time
when a prompt or answer is longer than `MAX_PROMPT_CHARS` characters (workbench.concepts.files).
"""
from __future__ import annotations

from typing import Iterable

from workbench.concepts.schema import ConceptError, render_prompt

MAX_PROMPT_CHARS = 20_000         # parse-time ceiling, generous: ~5k tokens of English
MAX_ANSWER_CHARS = 2_000
GENERATION_MARGIN = 64            # tokens left for the greedy continuation (scoring uses <= 64);
                                  # at most a quarter of the context (tiny test models have 64)
_UNSET = 10 ** 9                  # transformers' "no limit" model_max_length is ~1e30


class PromptTooLongError(ConceptError):
    """A probe that cannot fit the model's context window; the message names concept, probe and limit."""


def context_length(model) -> int | None:
    """Tokens the model can attend over (None when neither config nor tokenizer says)."""
    hf = getattr(model, "hf", model)
    cfg = getattr(hf, "config", None)
    found = []
    n = getattr(cfg, "max_position_embeddings", None)
    if isinstance(n, int) and 0 < n < _UNSET:
        found.append(n)
    n = getattr(getattr(model, "tokenizer", None), "model_max_length", None)
    if isinstance(n, int) and 0 < n < _UNSET:
        found.append(n)
    return min(found) if found else None


def _n_tokens(model, texts: list[str]) -> list[int]:
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        return [len(t.encode("utf-8")) for t in texts]      # upper bound for byte-level tokenizers
    ids = tok(texts)["input_ids"]
    return [len(x) for x in ids]


def _probe_sets(concept) -> Iterable[tuple[str, list]]:
    yield "forget", concept.forget
    yield "retain", concept.retain
    fit = getattr(concept, "fit", None)
    if fit is not None:
        yield "fit.forget", list(getattr(fit, "forget", []) or [])
        yield "fit.retain", list(getattr(fit, "retain", []) or [])


def check_prompt_lengths(model, concepts, margin: int | None = None) -> None:
    """Raise PromptTooLongError for the first probe whose prompt + answer + margin exceed the context.

    `concepts`: a Concept, a list of them, or a list of Probes. Cheap: only prompts long enough
    to possibly overflow (more than a quarter of the context in characters) are tokenized.
    """
    ctx = context_length(model)
    if ctx is None:
        return
    if margin is None:
        margin = min(GENERATION_MARGIN, ctx // 4)
    if not isinstance(concepts, (list, tuple)):
        concepts = [concepts]
    items: list[tuple[str, str, str]] = []         # (where, prompt text, longest answer)
    for c in concepts:
        if hasattr(c, "prompt") and hasattr(c, "answers"):            # a bare Probe
            sets, name = [("probes", [c])], None
        else:
            sets, name = list(_probe_sets(c)), c.name
        for part, probes in sets:
            for i, p in enumerate(probes):
                text = render_prompt(model, p)
                answer = max(p.answers, key=len)
                if 4 * (len(text) + len(answer)) + margin > ctx:      # can a byte-level tokenizer overflow?
                    where = f"concept {name!r}: {part}[{i}]" if name is not None else f"{part}[{i}]"
                    items.append((where, text, answer))
    if not items:
        return
    lengths = _n_tokens(model, [t for _, t, _ in items])
    answers = _n_tokens(model, [a for _, _, a in items])
    for (where, _text, _a), n, a in zip(items, lengths, answers):
        if n + a + margin > ctx:
            raise PromptTooLongError(f"{where}.prompt is {n:,} tokens (+ {a:,} answer, + {margin} generated); "
                                     f"{getattr(model, 'model_id', 'the model')} reads at most {ctx:,} tokens")
