"""Small shared pieces for the localisation methods: teacher-forced answer log-probabilities
under optional hooks, and the concept's token set."""
from __future__ import annotations

from typing import Sequence

import torch


def answer_text(prompt: str, answer: str) -> str:
    """How an answer continues a prompt: after whitespace as is, otherwise after one space."""
    return answer if (not prompt or prompt[-1].isspace() or answer[:1].isspace()) else " " + answer


@torch.no_grad()
def answer_logprobs(model, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 16) -> torch.Tensor:
    """log P(answer | prompt) summed over the answer's tokens, teacher-forced: tensor [n].

    Tokenizes prompt and answer separately (so the prompt's tokens are exactly as when generating)
    and runs them concatenated, right-padded. Active hooks on `model` apply.
    """
    tok = model.tokenizer
    out = []
    for start in range(0, len(prompts), batch_size):
        ps, as_ = prompts[start:start + batch_size], answers[start:start + batch_size]
        rows, spans = [], []
        for p, a in zip(ps, as_):
            p_ids = tok(p)["input_ids"]
            a_ids = tok(answer_text(p, a), add_special_tokens=False)["input_ids"]
            rows.append(p_ids + a_ids)
            spans.append((len(p_ids), len(p_ids) + len(a_ids)))
        n = max(len(r) for r in rows)
        pad = tok.pad_token_id or 0
        ids = torch.tensor([r + [pad] * (n - len(r)) for r in rows], device=model.device)
        mask = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows], device=model.device)
        logp = model.forward({"input_ids": ids, "attention_mask": mask}).float().log_softmax(-1)
        for i, (a, b) in enumerate(spans):
            targets = ids[i, a:b]
            out.append(logp[i, a - 1:b - 1].gather(-1, targets[:, None]).sum())
    return torch.stack(out)


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
