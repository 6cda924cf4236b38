"""Small shared pieces for the localisation methods: teacher-forced answer log-probabilities
under optional hooks, and the concept's token set."""
from __future__ import annotations

from typing import Sequence

import torch


def answer_text(prompt: str, answer: str) -> str:
    """How an answer continues a prompt (the rule of workbench.verify.probes)."""
    from workbench.verify.probes import answer_continuation
    return answer_continuation(prompt, answer)


@torch.no_grad()
def answer_logprobs(model, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 16) -> torch.Tensor:
    """Teacher-forced log P(answer | prompt) as a tensor [n] (active hooks apply)."""
    from workbench.verify.probes import answer_logprobs as _lp
    return torch.tensor([lp for lp, _, _ in _lp(model, prompts, answers, batch_size=batch_size)])


def probe_texts(model, probes) -> tuple[list[str], list[str]]:
    """(rendered prompts, first answers) for a list of concept probes."""
    from workbench.concepts import render_prompt
    return [render_prompt(model, p) for p in probes], [p.answers[0] for p in probes]


def concept_token_ids(model, concept, min_chars: int = 3) -> list[int]:
    """Token ids that spell the concept: the word-initial pieces (" Paris", " Tower") of the
    subject and of every forget answer, with at least `min_chars` letters. Word-internal pieces
    ("iffel") are left out: they sit high in many unrelated projections."""
    strings = [concept.subject] + [a for p in concept.forget for a in p.answers]
    ids: dict[int, None] = {}
    for s in strings:
        for t in model.tokenizer(" " + s.strip(), add_special_tokens=False)["input_ids"]:
            piece = model.tokenizer.decode([t])
            if piece[:1].isspace() and sum(ch.isalpha() for ch in piece) >= min_chars:
                ids[t] = None
    if not ids:
        raise ValueError(f"concept {concept.name!r}: subject and answers yield no token of >= {min_chars} letters")
    return list(ids)
