"""Writing a patch (docs/patch.md): the manifest of an Edit, its tensors, a folder or `.zip`, written then renamed."""
from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors_bytes

from workbench.edits.base import Edit, _module
from workbench.fingerprint import dtype_name, tensor_fingerprint
from workbench.paths import atomic_path
from workbench.patches.core import (CHECKSUM_VERSION, MANIFEST, PatchError, SCHEMA_VERSION, TENSORS,
                                    first_non_finite, manifest_checksum)
from workbench.patches.validate import validate_manifest


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


