"""Patch format primitives (docs/patch.md; the whole format is described in `workbench.patches.format`):
constants and limits, PatchError, strict JSON, canonical JSON and the manifest checksum, `Patch`."""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from workbench.edits.base import Edit
from workbench.errors import LimitError, WorkbenchError
from workbench.strict_json import STRICT_HOOKS


SCHEMA_VERSION = 1
CHECKSUM_VERSION = 2
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
MAX_MANIFEST_BYTES = 32 << 20
MAX_JSON_DEPTH = 64
MAX_ZIP_MEMBERS = 16
DEFAULT_MAX_PATCH_BYTES = 4 << 30
_CHECKSUM_PREFIX = b"workbench-patch-checksum-v2\n"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_METHOD = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_PARAM = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]{0,255}$")
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]{0,127}$")
_SITE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\[\]#{}:-]{0,199}$")
_DTYPES = {"float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool",
           "float8_e4m3fn", "float8_e5m2"}
_CHUNK = 1 << 24


class PatchError(WorkbenchError, ValueError):
    """A patch that cannot be read, written or applied; the message is one line that says why."""


class PatchLimitError(PatchError, LimitError):
    """A patch beyond a resource limit (manifest size, tensors size, zip member size or ratio)."""


def max_patch_bytes() -> int:
    """Ceiling on a patch's tensors file (`WORKBENCH_MAX_PATCH_BYTES`, default 4 GiB)."""
    raw = os.environ.get("WORKBENCH_MAX_PATCH_BYTES")
    if raw is None:
        return DEFAULT_MAX_PATCH_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise PatchError(f"WORKBENCH_MAX_PATCH_BYTES={raw!r} is not a whole number of bytes") from None
    if value <= 0:
        raise PatchError(f"WORKBENCH_MAX_PATCH_BYTES={raw!r} must be positive")
    return value


# ---------------------------------------------------------------------------------- strict JSON
def json_depth(obj) -> int:
    """Deepest nesting of lists / dicts in parsed JSON data (iterative: no recursion limit)."""
    best, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            best = max(best, d)
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            best = max(best, d)
            stack.extend((v, d + 1) for v in o)
    return best


def first_non_finite(obj, where: str = "") -> str | None:
    """Dotted path of the first float in `obj` that is NaN or infinite (None when all are finite)."""
    stack = [(obj, where)]
    while stack:
        o, w = stack.pop()
        if isinstance(o, float) and not math.isfinite(o):
            return w or "(top level)"
        if isinstance(o, dict):
            stack.extend((v, f"{w}.{k}" if w else str(k)) for k, v in reversed(list(o.items())))
        elif isinstance(o, (list, tuple)):
            stack.extend((v, f"{w}[{i}]") for i, v in reversed(list(enumerate(o))))
    return None


def strict_json(raw: bytes | str, label: str, max_depth: int = MAX_JSON_DEPTH, error=None):
    """Parse strict JSON: UTF-8, no NaN/Infinity, no duplicate keys, bounded depth, finite numbers.

    `error` is the exception class raised (default PatchError) with a one-line message naming `label`.
    """
    error = error or PatchError
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
    except UnicodeDecodeError as exc:
        raise error(f"{label}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    text = text.removeprefix("\ufeff")
    try:
        value = json.loads(text, **STRICT_HOOKS)
    except json.JSONDecodeError as exc:
        raise error(f"{label}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise error(f"{label}: JSON nested too deeply (at most {max_depth} levels)") from None
    except ValueError as exc:
        raise error(f"{label}: not valid JSON ({exc})") from None
    depth = json_depth(value)
    if depth > max_depth:
        raise error(f"{label}: JSON nested {depth} levels deep (at most {max_depth})")
    bad = first_non_finite(value)
    if bad is not None:
        raise error(f"{label}: key {bad!r} is not a finite number")
    return value


def canonical_json(obj) -> bytes:
    """The canonical form the v2 checksum hashes (sorted keys, compact, ASCII, finite numbers only)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def manifest_checksum(manifest: dict) -> str:
    """Checksum v2 of a manifest (which holds `tensors_sha256`): see the module docstring."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(_CHECKSUM_PREFIX + canonical_json(body)).hexdigest()


def _plain_text(value: str) -> bool:
    return not any(unicodedata.category(c)[0] == "C" for c in value)


# ---------------------------------------------------------------------------------- Patch
@dataclass
class Patch:
    """A loaded patch: its manifest (plain JSON data) and the Edit rebuilt from it (not applied).

    `checksum_version`: 2 when the manifest and tensors are covered by one checksum, 1 for an
    older patch whose manifest no checksum covers.
    """
    manifest: dict[str, Any]
    edit: Edit
    path: Path | None = None
    checksum_version: int = CHECKSUM_VERSION

    @property
    def base_model(self) -> str:
        return self.manifest["base_model"]

    @property
    def fingerprints(self) -> dict[str, str]:
        return self.manifest["fingerprints"]

    @property
    def patched_fingerprints(self) -> dict[str, str] | None:
        """Fingerprints of the touched tensors with the patch applied (None for older patches)."""
        return self.manifest.get("patched_fingerprints")

    def new_edit(self) -> Edit:
        """A fresh, unapplied copy of the edit (so one Patch can be applied to several models)."""
        return replace(self.edit, deltas=list(self.edit.deltas), hooks=list(self.edit.hooks), _originals=None,
                       _handles=None)


