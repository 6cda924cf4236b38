"""Reading a patch (docs/patch.md): bounded opening of a folder or `.zip`, checksums, `load_patch`."""
from __future__ import annotations

import hashlib
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load as load_safetensors_bytes

from workbench.edits.base import Edit, hook_class
from workbench.patches.core import (CHECKSUM_VERSION, MANIFEST, MAX_MANIFEST_BYTES, MAX_ZIP_MEMBERS, Patch,
                                    PatchError, PatchLimitError, TENSORS, manifest_checksum, max_patch_bytes)
from workbench.patches.validate import _delta, _parse_manifest
from workbench.patches.save import _check_finite_tensors


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
