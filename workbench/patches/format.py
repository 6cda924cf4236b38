"""The edit-patch format (DESIGN.md §5): a directory, or a `.zip` of one, holding `manifest.json`
and `tensors.safetensors`.

The tensors file stores each TensorDelta's payload under `"{i}.{field}"` (`0.A`, `0.B`, `1.indices`,
…) in raw HF weight coordinates; the manifest says what they mean, fingerprints every tensor the
patch touches as it was *before* the edit, and carries a sha256 of the tensors file. Reading a
patch only ever parses JSON and safetensors: no pickle, no code. The checksum is verified before
any tensor is read.

Fingerprint (`tensor_fingerprint`): the hex sha256 of the ASCII header
`"{dtype}:{d0,d1,...}\\n"` (dtype as torch names it without `torch.`, e.g. `float32:576,1536\\n`;
an empty dim list for a scalar) followed by the tensor's raw bytes, taken from the CPU,
C-contiguous copy of the tensor in native (little-endian) byte order.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import load_file, save_file

from workbench.edits.base import DELTA_KINDS, HOOK_KINDS, Edit, TensorDelta, _module, hook_class
from workbench.paths import atomic_path, write_json

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 24


class PatchError(ValueError):
    """A patch that cannot be read, written or applied; the message is one line that says why."""


# ---------------------------------------------------------------------------------- fingerprints
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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------- Patch
@dataclass
class Patch:
    """A loaded patch: its manifest (plain JSON data) and the Edit rebuilt from it (not applied)."""
    manifest: dict[str, Any]
    edit: Edit
    path: Path | None = None

    @property
    def base_model(self) -> str:
        return self.manifest["base_model"]

    @property
    def fingerprints(self) -> dict[str, str]:
        return self.manifest["fingerprints"]

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


def build_manifest(edit: Edit, model=None, base_model_id: str | None = None) -> tuple[dict, dict]:
    """(manifest without `tensors_sha256`, safetensors payload) for an edit."""
    base = _base_tensors(edit, model) if edit.deltas else {}
    base_id = base_model_id or getattr(model, "model_id", None) or edit.model_id
    entries, tensors = _payload(edit)
    kinds = sorted({d.kind for d in edit.deltas})
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "base_model": base_id,
        "coordinates": "hf",
        "fingerprints": {n: tensor_fingerprint(t) for n, t in base.items()},
        "base_tensors": {n: {"shape": list(t.shape), "dtype": dtype_name(t.dtype)} for n, t in base.items()},
        "tensors": entries,
        "delta_kinds": kinds,
    }
    if edit.hooks:                    # inference-time hook edits; their guards fingerprint unchanged base tensors
        hook_entries, hook_tensors = _hook_payload(edit)
        manifest["hooks"] = hook_entries
        manifest["hook_kinds"] = sorted({h.kind for h in edit.hooks})
        tensors.update(hook_tensors)
        for h in edit.hooks:
            for n, g in (getattr(h, "guard", None) or {}).items():
                manifest["fingerprints"].setdefault(n, g["fingerprint"])
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


def _write_dir(folder: Path, manifest: dict, tensors: dict[str, torch.Tensor]) -> None:
    meta = {"format": "pt", "workbench_patch_schema": str(SCHEMA_VERSION),
            "base_model": str(manifest["base_model"])}
    save_file(tensors, str(folder / TENSORS), metadata=meta)
    manifest["tensors_sha256"] = file_sha256(folder / TENSORS)
    write_json(folder / MANIFEST, manifest)


def _check_target(target: Path) -> None:
    if target.parent.exists() and not target.parent.is_dir():
        raise PatchError(f"cannot write {target}: {target.parent} is not a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST).exists():
        raise PatchError(f"refusing to replace {target}: it is a non-empty folder that is not a patch")


def save_patch(edit: Edit, path: str | Path, model=None, base_model_id: str | None = None) -> Path:
    """Write `edit` as a patch directory, or a zip of one when `path` ends in `.zip`; atomic.

    Fingerprints come from `edit._originals` when the edit is applied, else from `model`'s current
    tensors (then `model` must be the unedited base). Returns the written path.
    """
    target = Path(path)
    if not edit.deltas and not edit.hooks:
        raise PatchError(f"edit {edit.method!r} has no weight deltas or hook edits to save")
    _check_target(target)
    manifest, tensors = build_manifest(edit, model, base_model_id)
    try:
        if target.suffix.lower() == ".zip":
            with atomic_path(target) as tmp_zip:
                stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.stage.", dir=target.parent))
                try:
                    _write_dir(stage, manifest, tensors)
                    with zipfile.ZipFile(tmp_zip, "w") as zf:
                        zf.write(stage / MANIFEST, MANIFEST, compress_type=zipfile.ZIP_DEFLATED)
                        zf.write(stage / TENSORS, TENSORS, compress_type=zipfile.ZIP_STORED)
                finally:
                    shutil.rmtree(stage, ignore_errors=True)
        else:
            with atomic_path(target, is_dir=True) as tmp:
                _write_dir(tmp, manifest, tensors)
    except (OSError, TypeError) as exc:  # TypeError: a hyper/provenance/report value JSON cannot hold
        raise PatchError(f"cannot write patch {target}: {exc}") from exc
    return target


# ---------------------------------------------------------------------------------- read
def _open(path: Path) -> tuple[dict, str, Any, int]:
    """(manifest, label, tensors source, size on disk). The source is a file path or zip bytes."""
    if path.is_dir():
        mpath, tpath = path / MANIFEST, path / TENSORS
        for p in (mpath, tpath):
            if not p.is_file():
                raise PatchError(f"{path}: not a patch, {p.name} is missing")
        raw, label = mpath.read_bytes(), str(mpath)
        size = mpath.stat().st_size + tpath.stat().st_size
        source: Any = tpath
    elif path.is_file() and zipfile.is_zipfile(path):
        try:
            return _open_zip(path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError) as exc:
            raise PatchError(f"{path}: damaged zip ({exc})") from exc
    elif path.exists():
        raise PatchError(f"{path}: a patch is a folder or a .zip of one")
    else:
        raise PatchError(f"{path}: no such patch")
    return _parse_manifest(raw, label, source, size)


def _open_zip(path: Path) -> tuple[dict, str, Any, int]:
    """Manifest and tensors bytes of a zipped patch (the zip itself or a zip of the folder)."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        prefix = ""
        if MANIFEST not in names:  # a zip of the folder itself: one top-level directory
            tops = {n.split("/", 1)[0] for n in names if "/" in n}
            if len(tops) == 1 and f"{next(iter(tops))}/{MANIFEST}" in names:
                prefix = f"{next(iter(tops))}/"
        for member in (MANIFEST, TENSORS):
            if prefix + member not in names:
                raise PatchError(f"{path}: not a patch, {member} is missing from the zip")
        raw, source = zf.read(prefix + MANIFEST), zf.read(prefix + TENSORS)
    label, size = f"{path}!{MANIFEST}", path.stat().st_size
    return _parse_manifest(raw, label, source, size)


def _parse_manifest(raw: bytes, label: str, source: Any, size: int) -> tuple[dict, str, Any, int]:
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PatchError(f"{label}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise PatchError(f"{label}: top level must be a JSON object")
    validate_manifest(manifest, label)
    return manifest, label, source, size


def _need(m: dict, key: str, types, label: str, where: str = ""):
    if key not in m:
        raise PatchError(f"{label}: missing key {where}{key!r}")
    value = m[key]
    if not isinstance(value, types) or (isinstance(value, bool) and types is int):
        raise PatchError(f"{label}: key {where}{key!r} has the wrong type ({type(m[key]).__name__})")
    return value


def validate_manifest(m: dict, label: str = MANIFEST) -> None:
    """Raise PatchError naming `label` and the key when the manifest is malformed."""
    version = _need(m, "schema_version", int, label)
    if version != SCHEMA_VERSION:
        raise PatchError(f"{label}: schema_version {version} is not supported (this workbench reads {SCHEMA_VERSION})")
    _need(m, "base_model", str, label)
    if _need(m, "coordinates", str, label) != "hf":
        raise PatchError(f"{label}: key 'coordinates' is {m['coordinates']!r}; only 'hf' is supported")
    _need(m, "method", str, label)
    fps = _need(m, "fingerprints", dict, label)
    for name, fp in fps.items():
        if not isinstance(fp, str) or not _HEX64.match(fp):
            raise PatchError(f"{label}: key 'fingerprints'[{name!r}] is not a sha256 hex digest")
    if not _HEX64.match(_need(m, "tensors_sha256", str, label)):
        raise PatchError(f"{label}: key 'tensors_sha256' is not a sha256 hex digest")
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
            _need(h, "site", str, label, where)
            keys = _need(h, "keys", dict, label, where)
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
                raise PatchError(f"{label}: key {where}'keys' must map field names to tensor keys")
    if not entries and not hooks:
        raise PatchError(f"{label}: key 'tensors' is empty (and there are no 'hooks')")
    for i, e in enumerate(entries):
        where = f"'tensors'[{i}]."
        if not isinstance(e, dict):
            raise PatchError(f"{label}: key 'tensors'[{i}] must be an object")
        name = _need(e, "name", str, label, where)
        if _need(e, "kind", str, label, where) not in DELTA_KINDS:
            raise PatchError(f"{label}: key {where}'kind' is {e['kind']!r}, not one of {DELTA_KINDS}")
        shape = _need(e, "shape", list, label, where)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise PatchError(f"{label}: key {where}'shape' must be a list of non-negative ints")
        _need(e, "dtype", str, label, where)
        _need(e, "dim", int, label, where)
        keys = _need(e, "keys", dict, label, where)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
            raise PatchError(f"{label}: key {where}'keys' must map field names to tensor keys")
        if name not in fps:
            raise PatchError(f"{label}: key 'fingerprints' has no entry for touched tensor {name!r}")
    for name, info in (m.get("base_tensors") or {}).items():
        if not (isinstance(info, dict) and isinstance(info.get("shape"), list) and isinstance(info.get("dtype"), str)):
            raise PatchError(f"{label}: key 'base_tensors'[{name!r}] needs a 'shape' list and a 'dtype' string")
    for key in ("hyper", "provenance", "base_tensors"):
        if m.get(key) is not None and not isinstance(m[key], dict):
            raise PatchError(f"{label}: key {key!r} must be an object")
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
    """The validated manifest of a patch (no tensors read, checksum not checked)."""
    return _open(Path(path))[0]


def checksum_status(path: str | Path) -> tuple[dict, str, str, int]:
    """(manifest, expected sha256, actual sha256, size on disk) — for inspection."""
    manifest, _label, source, size = _open(Path(path))
    got = file_sha256(source) if isinstance(source, Path) else hashlib.sha256(source).hexdigest()
    return manifest, manifest["tensors_sha256"], got, size


def load_patch(path: str | Path) -> Patch:
    """Read a patch folder or zip: validate the manifest, verify the checksum, then the tensors."""
    path = Path(path)
    manifest, label, source, _size = _open(path)
    expected = manifest["tensors_sha256"]
    got = file_sha256(source) if isinstance(source, Path) else hashlib.sha256(source).hexdigest()
    if got != expected:
        raise PatchError(f"{path}: {TENSORS} checksum mismatch (expected {expected}, got {got})")
    try:
        tensors = load_file(str(source)) if isinstance(source, Path) else load_safetensors_bytes(source)
    except Exception as exc:  # safetensors raises its own error types
        raise PatchError(f"{path}: {TENSORS} is not a readable safetensors file ({exc})") from exc
    deltas = [_delta(e, tensors, label, i) for i, e in enumerate(manifest["tensors"])]
    hooks = []
    for i, h in enumerate(manifest.get("hooks") or []):
        missing = [k for k in h["keys"].values() if k not in tensors]
        if missing:
            raise PatchError(f"{label}: hooks[{i}]: tensor {missing[0]!r} is not in {TENSORS}")
        hooks.append(hook_class(h["kind"]).from_manifest(h, {f: tensors[k] for f, k in h["keys"].items()},
                                                          f"{label}: hooks[{i}]"))
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
    return Patch(manifest=manifest, edit=edit, path=path)


def as_patch(patch_or_path: Patch | str | Path) -> Patch:
    return patch_or_path if isinstance(patch_or_path, Patch) else load_patch(patch_or_path)
