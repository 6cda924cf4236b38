"""The CLIP BPE tokenizer of Stable Diffusion 1.x, rebuilt offline.

SD 1.x conditions on OpenAI CLIP ViT-L/14's text tokenizer: byte-level BPE with 49,408 entries
(256 byte symbols, the same 256 with the end-of-word marker `</w>`, 48,894 merges,
`<|startoftext|>`, `<|endoftext|>`), 77 positions, padded with `<|endoftext|>`. The merge table
ships inside the `open-clip-torch` wheel as `open_clip/bpe_simple_vocab_16e6.txt.gz`; we locate
that file without importing `open_clip` (its import pulls torchvision/timm) and build a
`transformers.CLIPTokenizer` from it, cached under `WORKBENCH_HOME/diffusion/clip-tokenizer`.
"""
from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

from workbench.paths import atomic_path, cache_dir

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2          # as in CLIP's simple_tokenizer: lines[1 : 49152 - 256 - 2 + 1]
VOCAB_SIZE = 49408
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


class TokenizerUnavailable(FileNotFoundError):
    """The BPE file is not installed; the message says which package provides it."""


def bpe_path() -> Path:
    """The BPE merges file inside the installed open-clip-torch package (found, not imported)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerUnavailable("the CLIP BPE vocabulary needs the open-clip-torch wheel: "
                                   "pip install --no-deps open-clip-torch==3.3.0 (it is never imported)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / BPE_FILE
        if path.is_file():
            return path
    raise TokenizerUnavailable(f"open-clip-torch is installed but has no {BPE_FILE}")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def vocab_and_merges(path: str | Path | None = None) -> tuple[dict[str, int], list[str]]:
    """(token -> id, merges as "a b" strings) exactly as CLIP's simple tokenizer builds them."""
    text = gzip.open(path or bpe_path()).read().decode("utf-8")
    lines = text.split("\n")
    merges = lines[1:N_MERGES + 1]
    if len(merges) != N_MERGES or any(len(m.split()) != 2 for m in merges):
        raise ValueError(f"{path or bpe_path()}: expected {N_MERGES} BPE merges of two symbols each")
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"CLIP vocabulary has {len(vocab)} entries, expected {VOCAB_SIZE}")
    return {tok: i for i, tok in enumerate(vocab)}, merges


@lru_cache(maxsize=4)
def clip_tokenizer(model_max_length: int = 77):
    """A `transformers.CLIPTokenizer` (SD 1.x vocabulary, `<|endoftext|>` padding), cached on disk."""
    from transformers import CLIPTokenizer
    folder = cache_dir("diffusion") / f"clip-tokenizer-{model_max_length}"
    if (folder / "tokenizer_config.json").is_file():
        return CLIPTokenizer.from_pretrained(str(folder))
    vocab, merges = vocab_and_merges()
    tok = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split()) for m in merges], model_max_length=model_max_length,
                        bos_token=BOS, eos_token=EOS, unk_token=EOS, pad_token=EOS)
    with atomic_path(folder, is_dir=True) as tmp:
        tok.save_pretrained(str(tmp))
    return tok
