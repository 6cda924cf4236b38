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


def _word_pieces(model, text: str, min_chars: int) -> list[int]:
    out = []
    for t in model.tokenizer(" " + text.strip(), add_special_tokens=False)["input_ids"]:
        piece = model.tokenizer.decode([t])
        if piece[:1].isspace() and sum(ch.isalpha() for ch in piece) >= min_chars:
            out.append(t)
    return out


def salient_fit_tokens(model, concept, min_chars: int = 3, k: int = 8) -> list[int]:
    """For a fit view: the word-initial tokens most over-represented in the forget fit texts
    relative to the retain fit texts (count_forget / (1 + count_retain), seen in >= 2 forget
    texts), at most `k` — the answers a generated description keeps coming back to (" Paris",
    " France" for the Eiffel Tower)."""
    from collections import Counter
    cf, cr = Counter(), Counter()
    for probes, counter in ((concept.forget, cf), (concept.retain, cr)):
        for p in probes:
            counter.update(set(_word_pieces(model, " ".join(p.answers), min_chars)))
    subject = set(_word_pieces(model, concept.subject, min_chars))
    scored = sorted(((n / (1 + cr[t]), t) for t, n in cf.items() if n >= 2 and t not in subject), reverse=True)
    return [t for _, t in scored[:k]]


def concept_token_ids(model, concept, min_chars: int = 3) -> list[int]:
    """Token ids that spell the concept: the word-initial pieces (" Paris", " Tower") of the
    subject and of every forget answer, with at least `min_chars` letters. Word-internal pieces
    ("iffel") are left out: they sit high in many unrelated projections.

    On a fit view (workbench.concepts.fit: the forget "answers" are generated descriptions), the
    answers' tokens are replaced by `salient_fit_tokens`."""
    if getattr(concept, "is_fit_view", False):
        strings_ids = _word_pieces(model, concept.subject, min_chars) + salient_fit_tokens(model, concept, min_chars)
    else:
        strings_ids = [t for s in [concept.subject] + [a for p in concept.forget for a in p.answers]
                       for t in _word_pieces(model, s, min_chars)]
    ids = dict.fromkeys(strings_ids)
    if not ids:
        raise ValueError(f"concept {concept.name!r}: subject and answers yield no token of >= {min_chars} letters")
    return list(ids)
