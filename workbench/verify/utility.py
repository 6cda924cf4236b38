"""Utility checks: what an edit costs the model outside the concept.

- perplexity on the held-out general-text split the edits never saw (workbench.data.corpus);
- mean KL(base || edited) of the next-token distributions over the same held-out tokens (the
  "neighbourhood / general capability" drift measure of unlearning benchmarks such as MUSE);
- the same two on an INDEPENDENT corpus (`INDEPENDENT_CORPORA`: WordNet glosses, else the KJV
  Bible, Debian packages `wordnet-base` / `bible-kjv`, `make corpora`): edit statistics such as
  ROCR's covariance come from the Shakespeare train split, so a Shakespeare held-out figure is
  in-domain for them; the independent one is text they never saw, of another register;
  `utility_before_after` returns the perplexity ratio after/before with a paired percentile
  bootstrap interval over chunks and the mean KL with its bootstrap interval;
- fluency of free generations: repeated n-gram share and n-gram entropy (ROME, Meng et al. 2022,
  measures generation fluency by n-gram entropy; repetition is the typical collapse of
  gradient-ascent unlearning).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["FLUENCY_PROMPTS", "INDEPENDENT_CORPORA", "corpus_missing", "fluency", "heldout_chunks", "kl_from_logits", "mean_kl", "ngram_entropy",
           "nll_from_logits", "perplexity", "perplexity_from_logits", "repetition_rate", "utility_before_after"]

FLUENCY_PROMPTS = (
    "The history of the city begins",
    "My favourite recipe for a rainy day is",
    "In the morning, the scientist walked into the laboratory and",
    "The best way to learn a new language is",
    "Once upon a time, in a small village,",
    "The weather report for tomorrow says",
)


# ------------------------------------------------------------------------------ pure metrics
def nll_from_logits(logits: torch.Tensor, ids: torch.Tensor) -> tuple[float, int]:
    """(summed next-token NLL, number of predicted tokens) for logits [b, s, V] of ids [b, s]."""
    nll = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                          reduction="sum")
    return float(nll), ids[:, 1:].numel()


def perplexity_from_logits(logits: torch.Tensor, ids: torch.Tensor) -> float:
    """exp(mean next-token NLL); logits [b, s, V] predict ids [b, s] shifted by one."""
    total, count = nll_from_logits(logits, ids)
    return math.exp(total / count)


def kl_from_logits(ref_logits: torch.Tensor, logits: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """KL(p_ref || p) per position over the last (vocab) axis, in nats, computed in fp32.

    ref_logits, logits: [..., V]. reduction "mean" -> scalar, "sum" -> scalar, "none" -> [...].
    """
    ref = ref_logits.float().log_softmax(-1)
    cur = logits.float().log_softmax(-1)
    kl = (ref.exp() * (ref - cur)).sum(-1).clamp_min(0.0)
    if reduction == "none":
        return kl
    return kl.sum() if reduction == "sum" else kl.mean()


def _ngrams(tokens: Sequence[Hashable], n: int) -> list[tuple]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def repetition_rate(tokens: Sequence[Hashable], n: int = 3) -> float:
    """Share of n-grams that repeat an earlier n-gram of the same text: 1 - distinct/total (0 if none)."""
    grams = _ngrams(list(tokens), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def ngram_entropy(tokens: Sequence[Hashable], n: int = 1) -> float:
    """Entropy (bits) of the n-gram frequency distribution of one text (0 for a single n-gram)."""
    counts = Counter(_ngrams(list(tokens), n))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


# ------------------------------------------------------------------------------ on a model
INDEPENDENT_CORPORA = ("wordnet", "kjv")


def heldout_chunks(model, n_tokens: int = 4096, seq_len: int = 128, source: str = "shakespeare") -> torch.Tensor:
    """Token chunks [n, seq_len] of the held-out split of `source` (deterministic)."""
    from workbench.data.corpus import token_chunks
    return token_chunks(model.tokenizer, "heldout", n_tokens, seq_len, source=source)


def corpus_missing(source: str) -> str | None:
    """None when corpus `source` can be read here, else the one-line reason (e.g. package missing)."""
    from workbench.data.corpus import paragraphs
    try:
        if not paragraphs("heldout", source):
            return f"corpus {source!r} has an empty held-out split"
    except (FileNotFoundError, OSError, ValueError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    except Exception as exc:             # e.g. `bible` failing: report it, never hide it
        return f"corpus {source!r} unreadable: {type(exc).__name__}: {exc}".splitlines()[0]
    return None


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    ids = ids.to(model.device)
    return model.forward({"input_ids": ids, "attention_mask": torch.ones_like(ids)})


@torch.no_grad()
def perplexity(model, n_tokens: int = 4096, seq_len: int = 128, batch_size: int = 8,
               source: str = "shakespeare") -> float:
    """exp(mean next-token NLL) over the held-out split of corpus `source` (workbench.data.corpus)."""
    chunks = heldout_chunks(model, n_tokens, seq_len, source=source)
    total, count = 0.0, 0
    for start in range(0, len(chunks), batch_size):
        ids = chunks[start:start + batch_size]
        t, c = nll_from_logits(_logits(model, ids), ids.to(model.device))
        total, count = total + t, count + c
    return math.exp(total / count)


@torch.no_grad()
def mean_kl(ref, model, n_tokens: int = 4096, seq_len: int = 128, batch_size: int = 8) -> float:
    """Mean KL(ref || model) per held-out token position.

    ref: another HookedModel over the same tokenizer, or reference logits [n_chunks, seq_len, V]
    computed on `heldout_chunks(model, n_tokens, seq_len)` (large: prefer utility_before_after,
    which streams base and edited logits batch by batch).
    """
    chunks = heldout_chunks(model, n_tokens, seq_len)
    total, count = 0.0, 0
    for start in range(0, len(chunks), batch_size):
        ids = chunks[start:start + batch_size]
        ref_logits = ref[start:start + batch_size] if torch.is_tensor(ref) else _logits(ref, ids)
        logits = _logits(model, ids)
        total += float(kl_from_logits(ref_logits.to(logits.device), logits, reduction="sum"))
        count += ids.numel()
    return total / count


@torch.no_grad()
def utility_before_after(model, edit, n_tokens: int = 4096, seq_len: int = 128, batch_size: int = 8,
                         source: str = "shakespeare", n_boot: int = 2000, seed: int = 0) -> dict:
    """Perplexity and KL(base || edited) on the held-out split of `source`.

    Returns {"perplexity": {"before", "after"}, "kl": mean KL per token, "n_tokens", "corpus",
    "n_chunks", "ratio": after/before perplexity, "ratio_ci": paired percentile bootstrap 95 %
    interval over chunks, "kl_ci": bootstrap interval of the mean KL over chunks}.
    Streams: per batch the base logits, then the same batch with the edit applied (scoped via
    `edit.applied`, restored also on exceptions). `edit` must not be applied on entry.
    """
    import numpy as np
    from workbench.verify.stats import bootstrap_ci
    chunks = heldout_chunks(model, n_tokens, seq_len, source=source)
    nll_b, nll_a, kl_c, n_pred, n_pos = [], [], [], [], []       # per chunk
    for start in range(0, len(chunks), batch_size):
        ids = chunks[start:start + batch_size].to(model.device)
        base = _logits(model, ids)
        with edit.applied(model):
            cur = _logits(model, ids)
        for row in range(ids.shape[0]):
            nll_b.append(nll_from_logits(base[row:row + 1], ids[row:row + 1])[0])
            t, c = nll_from_logits(cur[row:row + 1], ids[row:row + 1])
            nll_a.append(t)
            n_pred.append(c)
        kl_c.extend(float(x) for x in kl_from_logits(base, cur, reduction="none").sum(-1))
        n_pos.extend([ids.shape[1]] * ids.shape[0])
    nb, na, cnt = np.array(nll_b), np.array(nll_a), np.array(n_pred, float)
    kl, pos = np.array(kl_c), np.array(n_pos, float)
    ppl_b, ppl_a = math.exp(nb.sum() / cnt.sum()), math.exp(na.sum() / cnt.sum())
    return {"perplexity": {"before": ppl_b, "after": ppl_a},
            "kl": float(kl.sum() / pos.sum()), "n_tokens": int(pos.sum()), "corpus": source, "n_chunks": len(nb),
            "ratio": ppl_a / ppl_b,
            "ratio_ci": bootstrap_ci(lambda b, a, c: math.exp((a.sum() - b.sum()) / c.sum()), nb, na, cnt,
                                     n_boot=n_boot, seed=seed),
            "kl_ci": bootstrap_ci(lambda k, p: k.sum() / p.sum(), kl, pos, n_boot=n_boot, seed=seed)}


@torch.no_grad()
def fluency(model, prompts: Sequence[str] = FLUENCY_PROMPTS, max_new_tokens: int = 32, n: int = 3) -> dict:
    """Greedy free generations: {"repetition": mean repeated-n-gram share, "entropy": mean token
    (unigram) entropy in bits, "samples": [text]} over token ids of the new text."""
    from workbench.scoring import generate_batched
    texts = generate_batched(model, list(prompts), max_new_tokens=max_new_tokens)
    toks = [model.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    k = max(len(toks), 1)
    return {"repetition": sum(repetition_rate(t, n) for t in toks) / k,
            "entropy": sum(ngram_entropy(t, 1) for t in toks) / k,
            "n": n, "max_new_tokens": max_new_tokens, "samples": texts}
