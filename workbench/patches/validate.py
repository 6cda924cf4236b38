"""Checking a patch manifest field by field (docs/patch.md, "Hostile input" in `workbench.patches.format`)
and rebuilding TensorDeltas from the tensors file."""
from __future__ import annotations

import math
import re

import torch

from workbench.edits.base import DELTA_KINDS, HOOK_KINDS, TensorDelta
from workbench.fingerprint import dtype_name
from workbench.patches.core import (CHECKSUM_VERSION, MANIFEST, PatchError, SCHEMA_VERSION, TENSORS, _DTYPES,
                                    _HEX64, _KEY, _METHOD, _PARAM, _SITE, _plain_text, strict_json)


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
    if h.get("error_term") is not None and not isinstance(h["error_term"], bool):
        raise PatchError(f"{label}: key {where}'error_term' must be true or false, got {type(h['error_term']).__name__}")
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


