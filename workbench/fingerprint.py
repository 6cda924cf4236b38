"""Content hashes: the tensor fingerprint patches and SAEs are identified by, and file checksums.

Fingerprint (`tensor_fingerprint`): the hex sha256 of the ASCII header `"{dtype}:{d0,d1,...}\\n"`
(dtype as torch names it without `torch.`, e.g. `float32:576,1536\\n`; an empty dim list for a
scalar) followed by the tensor's raw bytes, taken from the CPU, C-contiguous copy of the tensor in
native (little-endian) byte order (docs/patch.md). Shared by patches (base-tensor fingerprints),
SAEs (content hash of the weights), hook-edit guards and model identities.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

__all__ = ["dtype_name", "file_sha256", "tensor_fingerprint"]

_CHUNK = 1 << 24


def dtype_name(dtype: torch.dtype | str) -> str:
    """`torch.float32` / `"torch.float32"` / `"float32"` -> `"float32"`."""
    return str(dtype).removeprefix("torch.")


def tensor_fingerprint(t: torch.Tensor) -> str:
    """sha256 (hex) of `"{dtype}:{shape}\\n"` + the raw bytes of the contiguous CPU tensor."""
    t = t.detach().to("cpu").contiguous()
    h = hashlib.sha256(f"{dtype_name(t.dtype)}:{','.join(str(s) for s in t.shape)}\n".encode("ascii"))
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in 16 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
