"""Utility checks: perplexity on the held-out general-text split the edits never saw."""
from __future__ import annotations

import math

import torch


@torch.no_grad()
def perplexity(model, n_tokens: int = 4096, seq_len: int = 128, batch_size: int = 8) -> float:
    """exp(mean next-token NLL) over the corpus' held-out split (workbench.data.corpus)."""
    from workbench.data.corpus import token_chunks
    chunks = token_chunks(model.tokenizer, "heldout", n_tokens, seq_len)
    total, count = 0.0, 0
    for start in range(0, len(chunks), batch_size):
        ids = chunks[start:start + batch_size].to(model.device)
        logits = model.forward({"input_ids": ids, "attention_mask": torch.ones_like(ids)}).float()
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                ids[:, 1:].reshape(-1), reduction="sum")
        total += float(nll)
        count += ids[:, 1:].numel()
    return math.exp(total / count)
