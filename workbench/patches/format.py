"""The edit-patch format (docs/patch.md): a directory, or a `.zip` of one, holding `manifest.json`
and `tensors.safetensors`.

The tensors file stores each TensorDelta's payload under `"{i}.{field}"` (`0.A`, `0.B`, `1.indices`,
…) in raw HF weight coordinates; the manifest says what they mean, fingerprints every tensor the
patch touches as it was *before* the edit (`fingerprints`) and as it is *after* it
(`patched_fingerprints`, so a patched checkpoint can be recognised before it is reverted), and
carries a sha256 of the tensors file. Reading a patch only ever parses JSON and safetensors: no
pickle, no code, no member is ever extracted.

Checksums. `tensors_sha256` is the sha256 of the tensors file. `checksum` (version 2) covers the
manifest and the tensors together: `{"version": 2, "covers": "manifest+tensors", "sha256": H}`
with H = sha256(`b"workbench-patch-checksum-v2\n"` + the canonical JSON of the manifest without
its `checksum` key: keys sorted, separators `(",", ":")`, ASCII only). The manifest holds
`tensors_sha256`, so H covers the tensors too. Patches written before version 2 have no
`checksum`: they are still read, and reported as "manifest not covered". A checksum detects
damage and naive tampering; it is not a signature (anyone can recompute it).

Hostile input. The manifest is strict JSON (no NaN / Infinity, no duplicate keys, at most
`MAX_JSON_DEPTH` levels, at most `MAX_MANIFEST_BYTES`); every number in it must be finite;
`method`, tensor names, tensor keys and sites must match strict patterns, free text (`concept`,
`base_model`) may hold no control characters, and no string from a patch ever becomes part of a
path. The tensors file may be no larger than the manifest's declared shapes allow (and than
`max_patch_bytes()`, `WORKBENCH_MAX_PATCH_BYTES`, default 4 GiB); zip members are checked
against that bound before they are inflated. Every floating tensor must be finite. Symlinks
inside a patch folder are refused. A hook patch must fingerprint at least one base tensor, and
one that names a sae-lens `release` (a hub download) is refused unless `WORKBENCH_ALLOW_HUB=1`.

Fingerprint (`tensor_fingerprint`, defined in `workbench.fingerprint`): the hex sha256 of the ASCII header
`"{dtype}:{d0,d1,...}\\n"` (dtype as torch names it without `torch.`, e.g. `float32:576,1536\\n`;
an empty dim list for a scalar) followed by the tensor's raw bytes, taken from the CPU,
C-contiguous copy of the tensor in native (little-endian) byte order.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from workbench.edits.base import DELTA_KINDS, HOOK_KINDS, Edit, TensorDelta, _module, hook_class
from workbench.fingerprint import dtype_name, file_sha256, tensor_fingerprint  # noqa: F401 (re-exported)
from workbench.errors import LimitError, WorkbenchError
from workbench.paths import atomic_path
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


# ---------------------------------------------------------------------------------- save
def _versions() -> dict[str, str | None]:
    from workbench import __version__
    out: dict[str, str | None] = {"workbench": __version__, "torch": torch.__version__}
    for pkg in ("transformers", "safetensors"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _base_tensors(edit: Edit, model) -> dict[str, torch.Tensor]:
    """name -> the tensor as it was before the edit (from `edit._originals`, else the model)."""
    names = list(dict.fromkeys(edit.names))
    if edit.applied_now:
        missing = [n for n in names if n not in edit._originals]
        if missing:
            raise PatchError(f"edit is applied but keeps no original for {missing[0]}")
        return {n: edit._originals[n] for n in names}
    if model is None:
        raise PatchError("edit is not applied, so save_patch needs `model=` (the unedited base) "
                         "to fingerprint the tensors it touches")
    module = _module(model)
    out = {}
    for n in names:
        try:
            out[n] = module.get_parameter(n)
        except AttributeError as exc:
            raise PatchError(f"model has no tensor {n} touched by the edit") from exc
    return out


def _payload(edit: Edit) -> tuple[list[dict], dict[str, torch.Tensor]]:
    entries, tensors = [], {}
    for i, d in enumerate(edit.deltas):
        meta = d.meta()
        meta["keys"] = {}
        for fld, t in d.tensors().items():
            key = f"{i}.{fld}"
            tensors[key] = t.detach().to("cpu").contiguous().clone()
            meta["keys"][fld] = key
        if d.kind == "low_rank":
            meta["rank"] = int(d.A.shape[1])
        elif d.kind in ("sparse", "replace_rows"):
            meta["count"] = int(d.indices.numel())
        entries.append(meta)
    return entries, tensors


def _hook_payload(edit: Edit) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Hook edits (inference-time, no weight change): JSON meta + tensors under "h{i}.{field}"."""
    entries, tensors = [], {}
    for i, h in enumerate(edit.hooks):
        meta, payload = h.to_manifest()
        meta = {**meta, "kind": h.kind, "site": h.site, "keys": {}}
        for fld, t in payload.items():
            tensors[f"h{i}.{fld}"] = t.detach().to("cpu").contiguous().clone()
            meta["keys"][fld] = f"h{i}.{fld}"
        entries.append(meta)
    return entries, tensors


def _patched_values(edit: Edit, base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """name -> the tensor with every delta on it applied in order (on the CPU, in the base dtype)."""
    current = {n: t.detach().to("cpu") for n, t in base.items()}
    for d in edit.deltas:
        current[d.name] = d.new_value(current[d.name])
    return current


def _check_finite_tensors(tensors: dict[str, torch.Tensor], what: str) -> None:
    for key, t in tensors.items():
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            raise PatchError(f"{what}: tensor {key!r} holds NaN or infinite values")


def build_manifest(edit: Edit, model=None, base_model_id: str | None = None) -> tuple[dict, dict]:
    """(manifest without `tensors_sha256` / `checksum`, safetensors payload) for an edit."""
    base = _base_tensors(edit, model) if edit.deltas else {}
    base_id = base_model_id or getattr(model, "model_id", None) or edit.model_id
    entries, tensors = _payload(edit)
    _check_finite_tensors(tensors, f"edit {edit.method!r}")
    patched = _patched_values(edit, base) if edit.deltas else {}
    for n, t in patched.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise PatchError(f"edit {edit.method!r}: applying it makes tensor {n} non-finite (NaN or overflow)")
    kinds = sorted({d.kind for d in edit.deltas})
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "base_model": base_id,
        "coordinates": "hf",
        "fingerprints": {n: tensor_fingerprint(t) for n, t in base.items()},
        "patched_fingerprints": {n: tensor_fingerprint(t) for n, t in patched.items()},
        "base_tensors": {n: {"shape": list(t.shape), "dtype": dtype_name(t.dtype)} for n, t in base.items()},
        "tensors": entries,
        "delta_kinds": kinds,
    }
    if edit.hooks:                    # inference-time hook edits; their guards fingerprint unchanged base tensors
        hook_entries, hook_tensors = _hook_payload(edit)
        _check_finite_tensors(hook_tensors, f"edit {edit.method!r}")
        manifest["hooks"] = hook_entries
        manifest["hook_kinds"] = sorted({h.kind for h in edit.hooks})
        tensors.update(hook_tensors)
        for h in edit.hooks:
            for n, g in (getattr(h, "guard", None) or {}).items():
                manifest["fingerprints"].setdefault(n, g["fingerprint"])
                manifest["patched_fingerprints"].setdefault(n, g["fingerprint"])   # a hook changes no weight
                manifest["base_tensors"].setdefault(n, {"shape": list(g["shape"]), "dtype": g["dtype"]})
    if edit.aux:                      # side tensors (never applied), e.g. ROCR's preserved keys
        manifest["aux"] = {}
        for name, t in edit.aux.items():
            tensors[f"aux.{name}"] = t.detach().to("cpu").contiguous().clone()
            manifest["aux"][name] = f"aux.{name}"
    if edit.parent:                   # stack: fitted on top of another patch (workbench.patches.stack)
        manifest["parent"] = edit.parent["parent"]
        manifest["parent_fingerprints"] = dict(edit.parent["parent_fingerprints"])
    dense = [d for d in edit.deltas if d.kind == "dense"]
    if dense:
        manifest["dense_note"] = (
            f"dense patch: {len(dense)} tensor(s) stored as full-size deltas "
            f"({sum(d.numel_changed() for d in dense):,} values); a full-model method changes every "
            "entry, so the patch is about as large as the weights it touches")
    manifest.update({
        "concept": edit.concept, "method": edit.method, "hyper": edit.hyper, "seed": edit.seed,
        "provenance": edit.provenance, "report": edit.report, "edit_seconds": edit.edit_seconds,
        "params_changed": edit.params_changed(), "library_versions": _versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    return manifest, tensors


def _json_ready(obj):
    """Plain JSON data of `obj` (tensors, numpy scalars and paths converted), or PatchError."""
    from workbench.paths import _json_default
    try:
        return json.loads(json.dumps(obj, default=_json_default))
    except (TypeError, ValueError, RecursionError) as exc:
        raise PatchError(f"cannot write the manifest: {exc}") from None


def _serialize(manifest: dict, tensors: dict[str, torch.Tensor]) -> tuple[bytes, bytes]:
    """(manifest.json bytes, tensors.safetensors bytes); fills `tensors_sha256` and `checksum`."""
    meta = {"format": "pt", "workbench_patch_schema": str(SCHEMA_VERSION),
            "base_model": str(manifest["base_model"])}
    blob = save_safetensors_bytes(tensors, metadata=meta)
    manifest = _json_ready(manifest)
    manifest.pop("checksum", None)
    manifest["tensors_sha256"] = hashlib.sha256(blob).hexdigest()
    bad = first_non_finite(manifest)
    if bad is not None:
        raise PatchError(f"cannot write the manifest: key {bad!r} is not a finite number")
    validate_manifest(manifest, "the manifest to write")
    manifest["checksum"] = {"version": CHECKSUM_VERSION, "covers": "manifest+tensors",
                            "sha256": manifest_checksum(manifest)}
    return (json.dumps(manifest, indent=2, allow_nan=False) + "\n").encode("utf-8"), blob


def _write_dir(folder: Path, manifest: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Write a patch's two files into an existing (temporary) folder; fills the checksums in `manifest`."""
    manifest_bytes, blob = _serialize(manifest, tensors)
    (folder / TENSORS).write_bytes(blob)
    (folder / MANIFEST).write_bytes(manifest_bytes)
    manifest.clear()
    manifest.update(json.loads(manifest_bytes))


def _is_zip_patch(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n == MANIFEST or n.endswith("/" + MANIFEST) for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def check_patch_target(path: str | Path) -> Path:
    """Refuse an output path a patch may not be written to (before any work is done); returns it.

    A `.zip` target may be new or an existing zip patch; any other target may be new, an empty
    folder or an existing patch folder. Ordinary files, non-patch zips and non-empty folders
    that are not patches are refused, and so are symlinks.
    """
    target = Path(path)
    if target.parent.exists() and not target.parent.is_dir():
        raise PatchError(f"cannot write {target}: {target.parent} is not a directory")
    if target.is_symlink():
        raise PatchError(f"refusing to replace {target}: it is a symlink")
    if not target.exists():
        return target
    if target.suffix.lower() == ".zip":
        if not target.is_file() or not _is_zip_patch(target):
            raise PatchError(f"refusing to replace {target}: it exists and is not a zipped patch")
    elif not target.is_dir():
        raise PatchError(f"refusing to replace {target}: it is a file, not a patch folder")
    elif any(target.iterdir()) and not (target / MANIFEST).is_file():
        raise PatchError(f"refusing to replace {target}: it is a non-empty folder that is not a patch")
    return target


_check_target = check_patch_target


def save_patch(edit: Edit, path: str | Path, model=None, base_model_id: str | None = None) -> Path:
    """Write `edit` as a patch directory, or a zip of one when `path` ends in `.zip`; atomic.

    Fingerprints come from `edit._originals` when the edit is applied, else from `model`'s current
    tensors (then `model` must be the unedited base). Refuses non-finite tensors or hyper-parameters.
    Returns the written path.
    """
    target = Path(path)
    if not edit.deltas and not edit.hooks:
        raise PatchError(f"edit {edit.method!r} has no weight deltas or hook edits to save")
    check_patch_target(target)
    manifest, tensors = build_manifest(edit, model, base_model_id)
    manifest_bytes, blob = _serialize(manifest, tensors)
    try:
        if target.suffix.lower() == ".zip":
            with atomic_path(target) as tmp_zip:
                with zipfile.ZipFile(tmp_zip, "w") as zf:
                    zf.writestr(MANIFEST, manifest_bytes, compress_type=zipfile.ZIP_DEFLATED)
                    zf.writestr(TENSORS, blob, compress_type=zipfile.ZIP_STORED)
        else:
            with atomic_path(target, is_dir=True) as tmp:
                (tmp / TENSORS).write_bytes(blob)
                (tmp / MANIFEST).write_bytes(manifest_bytes)      # last: a folder with a manifest is complete
    except OSError as exc:
        raise PatchError(f"cannot write patch {target}: {exc}") from exc
    return target


# ---------------------------------------------------------------------------------- read
def payload_bound(m: dict) -> int:
    """Most bytes the tensors file of a (validated) manifest can need: its declared shapes, 8 bytes
    per value, plus 1 MiB of header; hooks get 1 MiB each (more for a declared SAE)."""
    total = 1 << 20
    for e in m["tensors"]:
        shape = e["shape"]
        numel = math.prod(shape)
        kind = e["kind"]
        if kind == "dense":
            n = numel
        elif kind == "low_rank":
            r = min(shape) if len(shape) == 2 else 0
            if isinstance(e.get("rank"), int) and not isinstance(e.get("rank"), bool) and 0 <= e["rank"] < r:
                r = e["rank"]
            n = (sum(shape) if len(shape) == 2 else 0) * r
        elif kind == "sparse":
            n = 2 * numel
        else:
            dim = e["dim"]
            n = numel + (shape[dim] if 0 <= dim < len(shape) else 0)
        total += 8 * n + 4096
    for h in m.get("hooks") or []:
        total += 1 << 20
        cfg = h.get("sae_config")
        if isinstance(cfg, dict) and all(isinstance(cfg.get(k), int) and 0 < cfg[k] <= 1 << 20 for k in ("d_in", "width")):
            total += 8 * (2 * cfg["d_in"] * cfg["width"] + cfg["d_in"] + cfg["width"])
    return total


def _limit(m: dict, label: str, max_bytes: int | None) -> int:
    ceiling = max_patch_bytes() if max_bytes is None else max_bytes
    return min(payload_bound(m), ceiling)


def _open(path: Path, max_bytes: int | None = None) -> tuple[dict, str, Any, int]:
    """(manifest, label, tensors bytes, size on disk), every bound checked before reading."""
    if path.is_dir():
        mpath, tpath = path / MANIFEST, path / TENSORS
        for p in (mpath, tpath):
            if p.is_symlink():
                raise PatchError(f"{path}: {p.name} is a symlink; a patch folder holds plain files only")
            if not p.is_file():
                raise PatchError(f"{path}: not a patch, {p.name} is missing")
        label = str(mpath)
        msize, tsize = mpath.stat().st_size, tpath.stat().st_size
        if msize > MAX_MANIFEST_BYTES:
            raise PatchLimitError(f"{label}: {msize:,} bytes, more than a manifest may hold ({MAX_MANIFEST_BYTES:,})")
        manifest = _parse_manifest(mpath.read_bytes(), label)
        limit = _limit(manifest, label, max_bytes)
        if tsize > limit:
            raise PatchLimitError(f"{tpath}: {tsize:,} bytes, more than the manifest's shapes or the ceiling allow "
                             f"({limit:,}; WORKBENCH_MAX_PATCH_BYTES)")
        with open(tpath, "rb") as fh:
            source = fh.read(limit + 1)
        return manifest, label, source, msize + tsize
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            return _open_zip(path, max_bytes)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError,
                RuntimeError) as exc:
            raise PatchError(f"{path}: damaged zip ({exc})") from exc
        except OSError as exc:
            raise PatchError(f"{path}: cannot read the zip ({exc})") from exc
    if path.exists():
        raise PatchError(f"{path}: a patch is a folder or a .zip of one")
    raise PatchError(f"{path}: no such patch")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, label: str) -> bytes:
    if info.file_size > limit:
        raise PatchLimitError(f"{label}: member {info.filename} inflates to {info.file_size:,} bytes, more than "
                         f"the manifest's shapes or the ceiling allow ({limit:,}; WORKBENCH_MAX_PATCH_BYTES)")
    if info.file_size > (16 << 20) and info.file_size > 100 * max(info.compress_size, 1):
        raise PatchLimitError(f"{label}: member {info.filename} is compressed {info.file_size // max(info.compress_size, 1):,}:1 "
                         "(a zip bomb?); patches store their tensors uncompressed")
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise PatchLimitError(f"{label}: member {info.filename} inflates beyond {limit:,} bytes")
    return data


def _open_zip(path: Path, max_bytes: int | None = None) -> tuple[dict, str, Any, int]:
    """Manifest and tensors bytes of a zipped patch (the zip itself or a zip of the folder)."""
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise PatchError(f"{path}: {len(infos)} zip members; a patch has {MANIFEST} and {TENSORS} only")
        by_name = {i.filename: i for i in infos}
        prefix = ""
        if MANIFEST not in by_name:  # a zip of the folder itself: one top-level directory
            tops = {n.split("/", 1)[0] for n in by_name if "/" in n}
            if len(tops) == 1 and f"{next(iter(tops))}/{MANIFEST}" in by_name:
                prefix = f"{next(iter(tops))}/"
        for member in (MANIFEST, TENSORS):
            if prefix + member not in by_name:
                raise PatchError(f"{path}: not a patch, {member} is missing from the zip")
        label = f"{path}!{MANIFEST}"
        raw = _read_member(zf, by_name[prefix + MANIFEST], MAX_MANIFEST_BYTES, str(path))
        manifest = _parse_manifest(raw, label)
        source = _read_member(zf, by_name[prefix + TENSORS], _limit(manifest, label, max_bytes), str(path))
    return manifest, label, source, path.stat().st_size


def _parse_manifest(raw: bytes, label: str) -> dict:
    manifest = strict_json(raw, label)
    if not isinstance(manifest, dict):
        raise PatchError(f"{label}: top level must be a JSON object")
    validate_manifest(manifest, label)
    return manifest


def _need(m: dict, key: str, types, label: str, where: str = ""):
    if key not in m:
        raise PatchError(f"{label}: missing key {where}{key!r}")
    value = m[key]
    if not isinstance(value, types) or (isinstance(value, bool) and types is int):
        raise PatchError(f"{label}: key {where}{key!r} has the wrong type ({type(m[key]).__name__})")
    return value


def _match(value, pattern: re.Pattern, label: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        shown = value if isinstance(value, str) and len(value) <= 80 else f"{str(value)[:80]}…"
        raise PatchError(f"{label}: {what} {shown!r} is not allowed (pattern {pattern.pattern})")
    return value


def _text(m: dict, key: str, label: str, optional: bool = False, limit: int = 512) -> None:
    value = m.get(key)
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip() or len(value) > limit or not _plain_text(value):
        raise PatchError(f"{label}: key {key!r} must be a non-empty single-line string of at most {limit} "
                         "characters without control characters")


def _finite_number(h: dict, key: str, label: str, where: str, optional: bool = False) -> None:
    value = h.get(key)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PatchError(f"{label}: key {where}{key!r} must be a finite number"
                         + (" or null" if optional else "") + f", got {type(value).__name__}")


def _fingerprint_map(m: dict, key: str, label: str, required: bool) -> dict:
    if key not in m and not required:
        return {}
    fps = _need(m, key, dict, label)
    for name, fp in fps.items():
        _match(name, _PARAM, label, f"tensor name in {key!r}")
        if not isinstance(fp, str) or not _HEX64.match(fp):
            raise PatchError(f"{label}: key {key!r}[{name!r}] is not a sha256 hex digest")
    return fps


def _validate_hook(h: dict, label: str, where: str) -> None:
    """Type checks for the hook kinds the workbench knows (their loaders check the rest)."""
    if h["kind"] == "sae_clamp":
        sae = _need(h, "sae", dict, label, where)
        if not isinstance(sae.get("sha256"), str) or not _HEX64.match(sae["sha256"]):
            raise PatchError(f"{label}: key {where}'sae'.'sha256' is not a sha256 hex digest")
        has_path = isinstance(sae.get("path"), str) and sae["path"].strip()
        has_release = isinstance(sae.get("release"), str) and isinstance(sae.get("sae_id"), str)
        if not (has_path or has_release):
            raise PatchError(f"{label}: key {where}'sae' must record a path or a release + sae_id")
        for key in ("path", "release", "sae_id", "name"):
            if sae.get(key) is not None and (not isinstance(sae[key], str) or not _plain_text(sae[key])):
                raise PatchError(f"{label}: key {where}'sae'.{key!r} must be a string without control characters")
        if h.get("mode") not in ("scale", "clamp"):
            raise PatchError(f"{label}: key {where}'mode' is {h.get('mode')!r}, not 'scale' or 'clamp'")
        for key in ("scale", "value"):
            _finite_number(h, key, label, where)
        _finite_number(h, "gate", label, where, optional=True)
        _finite_number(h, "norm_limit", label, where, optional=True)
        if h.get("norm_limit") is not None and h["norm_limit"] <= 0:
            raise PatchError(f"{label}: key {where}'norm_limit' must be positive")
    elif h["kind"] == "diffusion_sae_clamp":
        for key in ("scale", "threshold"):
            _finite_number(h, key, label, where)
        if not isinstance(h.get("gate"), bool):
            raise PatchError(f"{label}: key {where}'gate' must be true or false, got {type(h.get('gate')).__name__}")
        cfg = h.get("sae_config")
        if not isinstance(cfg, dict) or not all(isinstance(cfg.get(k), int) and not isinstance(cfg.get(k), bool)
                                                and 0 < cfg[k] <= 1 << 20 for k in ("d_in", "width", "k")):
            raise PatchError(f"{label}: key {where}'sae_config' needs positive ints d_in, width and k")
        feats = h.get("features")
        if not isinstance(feats, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                  and 0 <= i < cfg["width"] for i in feats):
            raise PatchError(f"{label}: key {where}'features' must be feature indices in [0, {cfg['width']})")


def validate_manifest(m: dict, label: str = MANIFEST) -> None:
    """Raise PatchError naming `label` and the key when the manifest is malformed.

    Unknown optional keys are accepted (newer writers may add some, e.g. `parent`); the keys
    this reader uses are checked strictly.
    """
    version = _need(m, "schema_version", int, label)
    if version != SCHEMA_VERSION:
        raise PatchError(f"{label}: schema_version {version} is not supported (this workbench reads {SCHEMA_VERSION})")
    _text(m, "base_model", label)
    if _need(m, "coordinates", str, label) != "hf":
        raise PatchError(f"{label}: key 'coordinates' is {m['coordinates']!r}; only 'hf' is supported")
    _match(_need(m, "method", str, label), _METHOD, label, "method")
    _text(m, "concept", label, optional=True)
    fps = _fingerprint_map(m, "fingerprints", label, required=True)
    if not fps:
        raise PatchError(f"{label}: key 'fingerprints' is empty; a patch must fingerprint the base tensors "
                         "it was made for, or it would apply to any model")
    _fingerprint_map(m, "patched_fingerprints", label, required=False)
    if not _HEX64.match(_need(m, "tensors_sha256", str, label)):
        raise PatchError(f"{label}: key 'tensors_sha256' is not a sha256 hex digest")
    if "checksum" in m:
        c = m["checksum"]
        if not isinstance(c, dict) or not isinstance(c.get("sha256"), str) or not _HEX64.match(c["sha256"]):
            raise PatchError(f"{label}: key 'checksum' must be an object with a sha256 hex digest")
        if c.get("version") != CHECKSUM_VERSION:
            raise PatchError(f"{label}: checksum version {c.get('version')!r} is not supported "
                             f"(this workbench reads {CHECKSUM_VERSION})")
    entries = _need(m, "tensors", list, label)
    hooks = m.get("hooks")
    if hooks is not None:
        if not isinstance(hooks, list):
            raise PatchError(f"{label}: key 'hooks' must be a list")
        for i, h in enumerate(hooks):
            where = f"'hooks'[{i}]."
            if not isinstance(h, dict):
                raise PatchError(f"{label}: key 'hooks'[{i}] must be an object")
            if _need(h, "kind", str, label, where) not in HOOK_KINDS:
                raise PatchError(f"{label}: key {where}'kind' is {h['kind']!r}, not one of {sorted(HOOK_KINDS)}")
            _match(_need(h, "site", str, label, where), _SITE, label, f"{where}'site'")
            keys = _need(h, "keys", dict, label, where)
            if not all(isinstance(k, str) and _KEY.match(k) and isinstance(v, str) and _KEY.match(v)
                       for k, v in keys.items()):
                raise PatchError(f"{label}: key {where}'keys' must map field names to tensor keys")
            _validate_hook(h, label, where)
    if not entries and not hooks:
        raise PatchError(f"{label}: key 'tensors' is empty (and there are no 'hooks')")
    for i, e in enumerate(entries):
        where = f"'tensors'[{i}]."
        if not isinstance(e, dict):
            raise PatchError(f"{label}: key 'tensors'[{i}] must be an object")
        name = _match(_need(e, "name", str, label, where), _PARAM, label, f"{where}'name'")
        if _need(e, "kind", str, label, where) not in DELTA_KINDS:
            raise PatchError(f"{label}: key {where}'kind' is {e['kind']!r}, not one of {DELTA_KINDS}")
        shape = _need(e, "shape", list, label, where)
        if len(shape) > 8 or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 1 << 31
                                     for s in shape):
            raise PatchError(f"{label}: key {where}'shape' must be a list of at most 8 non-negative ints")
        if dtype_name(_need(e, "dtype", str, label, where)) not in _DTYPES:
            raise PatchError(f"{label}: key {where}'dtype' is {e['dtype']!r}, not a tensor dtype")
        _need(e, "dim", int, label, where)
        keys = _need(e, "keys", dict, label, where)
        if not all(isinstance(k, str) and _KEY.match(k) and isinstance(v, str) and _KEY.match(v)
                   for k, v in keys.items()):
            raise PatchError(f"{label}: key {where}'keys' must map field names to tensor keys")
        if name not in fps:
            raise PatchError(f"{label}: key 'fingerprints' has no entry for touched tensor {name!r}")
    for key in ("hyper", "provenance", "base_tensors"):
        if m.get(key) is not None and not isinstance(m[key], dict):
            raise PatchError(f"{label}: key {key!r} must be an object")
    if m.get("delta_kinds") is not None and not (isinstance(m["delta_kinds"], list)
                                                 and all(k in DELTA_KINDS for k in m["delta_kinds"])):
        raise PatchError(f"{label}: key 'delta_kinds' must be a list of {DELTA_KINDS}")
    for name, info in (m.get("base_tensors") or {}).items():
        _match(name, _PARAM, label, "tensor name in 'base_tensors'")
        if not (isinstance(info, dict) and isinstance(info.get("shape"), list) and isinstance(info.get("dtype"), str)
                and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in info["shape"])):
            raise PatchError(f"{label}: key 'base_tensors'[{name!r}] needs a 'shape' list and a 'dtype' string")
    aux = m.get("aux")
    if aux is not None and not (isinstance(aux, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                              for k, v in aux.items())):
        raise PatchError(f"{label}: key 'aux' must map names to tensor keys")
    if "parent" in m or "parent_fingerprints" in m:
        if not isinstance(m.get("parent"), str) or not _HEX64.match(m["parent"]):
            raise PatchError(f"{label}: key 'parent' is not a sha256 hex digest (the parent patch's id)")
        pf = m.get("parent_fingerprints")
        if not isinstance(pf, dict) or not all(isinstance(v, str) and _HEX64.match(v) for v in pf.values()):
            raise PatchError(f"{label}: key 'parent_fingerprints' must map tensor names to sha256 hex digests")


_FIELDS = {"dense": ("delta",), "low_rank": ("A", "B"), "sparse": ("indices", "values"),
           "replace_rows": ("indices", "values")}


def _delta(e: dict, tensors: dict[str, torch.Tensor], label: str, i: int) -> TensorDelta:
    where = f"{label}: tensors[{i}] ({e['name']}, {e['kind']})"
    payload = {}
    for fld in _FIELDS[e["kind"]]:
        key = e["keys"].get(fld)
        if key is None:
            raise PatchError(f"{where}: key 'keys' has no {fld!r}")
        if key not in tensors:
            raise PatchError(f"{where}: tensor {key!r} is not in {TENSORS}")
        payload[fld] = tensors[key]
    shape, kind = tuple(e["shape"]), e["kind"]
    numel = 1
    for s in shape:
        numel *= s
    bad = None
    if kind == "dense" and tuple(payload["delta"].shape) != shape:
        bad = f"delta has shape {tuple(payload['delta'].shape)}"
    elif kind == "low_rank":
        A, B = payload["A"], payload["B"]
        if len(shape) != 2 or A.dim() != 2 or B.dim() != 2 or A.shape[0] != shape[0] \
                or B.shape[1] != shape[1] or A.shape[1] != B.shape[0]:
            bad = f"factors A {tuple(A.shape)} and B {tuple(B.shape)} do not make {shape}"
    elif kind in ("sparse", "replace_rows"):
        idx, val = payload["indices"], payload["values"]
        if idx.dim() != 1 or idx.dtype != torch.int64:
            bad = f"indices must be 1-D int64, got {idx.dtype} {tuple(idx.shape)}"
        elif kind == "sparse":
            if tuple(val.shape) != tuple(idx.shape):
                bad = f"values {tuple(val.shape)} do not match indices {tuple(idx.shape)}"
            elif idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= numel):
                bad = "indices out of range"
        else:
            dim = e["dim"]
            if not 0 <= dim < len(shape):
                bad = f"dim {dim} out of range"
            elif tuple(val.shape) != shape[:dim] + (idx.numel(),) + shape[dim + 1:]:
                bad = f"values {tuple(val.shape)} do not fit {shape} along dim {dim}"
            elif idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= shape[dim]):
                bad = "indices out of range"
    if bad:
        raise PatchError(f"{where}: {bad}")
    return TensorDelta(name=e["name"], kind=kind, shape=shape, dtype=e["dtype"], dim=e["dim"], **payload)


def read_manifest(path: str | Path) -> dict:
    """The validated manifest of a patch (no tensors parsed, checksums not checked)."""
    return _open(Path(path))[0]


@dataclass
class ChecksumStatus:
    """What `checksum_status` found: the tensors' sha256 and, for v2 patches, the manifest's."""
    manifest: dict
    tensors_expected: str
    tensors_actual: str
    manifest_expected: str | None      # None: an older (v1) patch, its manifest no checksum covers
    manifest_actual: str
    size: int

    @property
    def version(self) -> int:
        return 1 if self.manifest_expected is None else CHECKSUM_VERSION

    @property
    def ok(self) -> bool:
        return self.tensors_expected == self.tensors_actual and self.manifest_expected in (None, self.manifest_actual)

    def problem(self) -> str | None:
        """One line saying what does not match (None when everything the checksums cover matches)."""
        if self.tensors_expected != self.tensors_actual:
            return (f"{TENSORS} checksum mismatch (expected {self.tensors_expected}, got {self.tensors_actual})")
        if self.manifest_expected is not None and self.manifest_expected != self.manifest_actual:
            return (f"manifest checksum mismatch: the manifest was changed after the patch was written "
                    f"(expected {self.manifest_expected}, got {self.manifest_actual})")
        return None

    def line(self) -> str:
        if not self.ok:
            return f"MISMATCH: {self.problem()}"
        if self.version == 1:
            return "tensors ok; manifest not covered (a v1 patch: no checksum v2 over manifest + tensors)"
        return "ok (v2: manifest + tensors)"


def _status(manifest: dict, source: bytes, size: int) -> ChecksumStatus:
    c = manifest.get("checksum")
    return ChecksumStatus(manifest, manifest["tensors_sha256"], hashlib.sha256(source).hexdigest(),
                          c["sha256"] if isinstance(c, dict) else None, manifest_checksum(manifest), size)


def checksum_status(path: str | Path, max_bytes: int | None = None) -> ChecksumStatus:
    """The checksums of a patch as recorded and as computed, for inspection (raises on malformed input)."""
    manifest, _label, source, size = _open(Path(path), max_bytes)
    return _status(manifest, source, size)


def _hub_allowed() -> bool:
    return os.environ.get("WORKBENCH_ALLOW_HUB") == "1" and os.environ.get("HF_HUB_OFFLINE") != "1"


def load_patch(path: str | Path, max_bytes: int | None = None) -> Patch:
    """Read a patch folder or zip: validate the manifest, verify the checksums, then the tensors.

    `max_bytes` caps the tensors file (default `max_patch_bytes()`).
    """
    path = Path(path)
    manifest, label, source, size = _open(path, max_bytes)
    status = _status(manifest, source, size)
    if not status.ok:
        raise PatchError(f"{path}: {status.problem()}")
    for i, h in enumerate(manifest.get("hooks") or []):
        sae = h.get("sae") if isinstance(h.get("sae"), dict) else {}
        if "release" in sae and not _hub_allowed():
            raise PatchError(f"{label}: hooks[{i}] asks to download SAE release {sae['release']!r} / "
                             f"{sae.get('sae_id')!r} from the hub; refused offline (load that SAE from a local "
                             "folder, or set WORKBENCH_ALLOW_HUB=1 to allow the download)")
    try:
        tensors = load_safetensors_bytes(source)
    except Exception as exc:  # safetensors raises its own error types
        raise PatchError(f"{path}: {TENSORS} is not a readable safetensors file ({exc})") from exc
    _check_finite_tensors(tensors, f"{path}: {TENSORS}")
    deltas = [_delta(e, tensors, label, i) for i, e in enumerate(manifest["tensors"])]
    hooks = []
    for i, h in enumerate(manifest.get("hooks") or []):
        missing = [k for k in h["keys"].values() if k not in tensors]
        if missing:
            raise PatchError(f"{label}: hooks[{i}]: tensor {missing[0]!r} is not in {TENSORS}")
        try:
            hooks.append(hook_class(h["kind"]).from_manifest(h, {f: tensors[k] for f, k in h["keys"].items()},
                                                              f"{label}: hooks[{i}]"))
        except PatchError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise PatchError(f"{label}: hooks[{i}]: {exc}") from None

    aux = {}
    for name, key in (manifest.get("aux") or {}).items():
        if key not in tensors:
            raise PatchError(f"{label}: aux {name!r}: tensor {key!r} is not in {TENSORS}")
        aux[name] = tensors[key]
    parent = ({"parent": manifest["parent"], "parent_fingerprints": manifest["parent_fingerprints"]}
              if "parent" in manifest else None)
    edit = Edit(method=manifest["method"], model_id=manifest["base_model"], deltas=deltas, hooks=hooks, aux=aux,
                parent=parent,
                concept=manifest.get("concept"), hyper=manifest.get("hyper") or {},
                seed=manifest.get("seed"), provenance=manifest.get("provenance") or {},
                report=manifest.get("report"), edit_seconds=manifest.get("edit_seconds"))
    return Patch(manifest=manifest, edit=edit, path=path, checksum_version=status.version)


def as_patch(patch_or_path: Patch | str | Path) -> Patch:
    return patch_or_path if isinstance(patch_or_path, Patch) else load_patch(patch_or_path)
