"""Apply, revert and inspect patches.

`apply_patch` first checks every touched tensor against the manifest (shape, dtype, then the
sha256 fingerprint of the tensor as it was before the edit) and refuses with one line when the
model is not the base the patch was made for, or already carries the patch. It then applies
through `Edit.apply`, which keeps the originals, so `revert_patch` restores them bit-exactly.
"""
from __future__ import annotations

from pathlib import Path

from workbench.edits.base import Edit, _module
import unicodedata

import torch

from workbench.patches.format import (Patch, PatchError, as_patch, checksum_status, dtype_name,
                                      tensor_fingerprint)


def check_base(patch: Patch, model) -> None:
    """Raise PatchError unless every tensor the patch touches matches the manifest's fingerprint."""
    module = _module(model)
    m = patch.manifest
    base = m["base_model"]
    expected = {e["name"]: (tuple(e["shape"]), dtype_name(e["dtype"])) for e in m["tensors"]}
    for name, info in (m.get("base_tensors") or {}).items():
        expected[name] = (tuple(info["shape"]), dtype_name(info["dtype"]))
    for name, fp in m["fingerprints"].items():
        try:
            t = module.get_parameter(name)
        except AttributeError:
            raise PatchError(f"patch was made for base {base}; the model has no tensor {name}") from None
        shape, dtype = expected.get(name, (tuple(t.shape), dtype_name(t.dtype)))
        if tuple(t.shape) != shape:
            raise PatchError(f"patch was made for base {base}; tensor {name} has shape "
                             f"{tuple(t.shape)}, the patch expects {shape}")
        if dtype_name(t.dtype) != dtype:
            raise PatchError(f"patch was made for base {base}; tensor {name} is {dtype_name(t.dtype)}, "
                             f"the patch expects {dtype} (load the model in {dtype})")
        if tensor_fingerprint(t) != fp:
            raise PatchError(f"patch was made for base {base}; tensor {name} fingerprint differs "
                             "— wrong base model or already patched")
    check_result_finite(patch, model)
    for i, h in enumerate(patch.edit.hooks):
        check = getattr(h, "check_model", None)
        if check is not None:
            try:
                check(model)
            except PatchError:
                raise
            except (ValueError, TypeError, KeyError) as exc:     # the hook's own checks, in one line
                raise PatchError(f"hooks[{i}] ({h.kind} at {h.site}): {exc}") from None


@torch.no_grad()
def check_result_finite(patch: Patch, model) -> None:
    """Refuse a patch whose deltas would make a tensor NaN / infinite on this model (overflow in
    the model's dtype, e.g. a large fp32 delta on an fp16 weight)."""
    module = _module(model)
    current: dict = {}
    for d in patch.edit.deltas:
        if d.name not in current:
            current[d.name] = module.get_parameter(d.name).detach()
        current[d.name] = d.new_value(current[d.name])
        t = current[d.name]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise PatchError(f"patch would make tensor {d.name} non-finite (NaN or overflow in "
                             f"{dtype_name(t.dtype)}); refused")


def apply_patch(patch_or_path: Patch | str | Path, model) -> Edit:
    """Check the fingerprints, then apply in place; returns the applied Edit (for revert_patch)."""
    patch = as_patch(patch_or_path)
    check_base(patch, model)
    return patch.new_edit().apply(model)


def revert_patch(edit: Edit, model) -> None:
    """Undo `apply_patch`: restore every touched tensor bit-exactly."""
    if not edit.applied_now:
        raise PatchError(f"edit {edit.method!r} is not applied, nothing to revert")
    edit.revert(model)


# ---------------------------------------------------------------------------------- inspect
def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def _count(n) -> str:
    return f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else "?"


def _headline(report) -> list[str]:
    """A few numbers from a verification report (docs/report.md), if it has them."""
    if not isinstance(report, dict):
        return []
    if isinstance(report.get("results"), list) and report["results"]:
        report = report["results"][0] if isinstance(report["results"][0], dict) else {}
    lines = []
    for part in ("forget", "retain"):
        r = report.get(part)
        if isinstance(r, dict):
            bits = [f"{k} {r[k + '_before']:.2f} -> {r[k + '_after']:.2f}" for k in ("hit", "prob")
                    if isinstance(r.get(k + "_before"), (int, float)) and isinstance(r.get(k + "_after"), (int, float))]
            if bits:
                lines.append(f"  {part}: " + ", ".join(bits))
    ppl = report.get("perplexity")
    if isinstance(ppl, dict) and isinstance(ppl.get("before"), (int, float)) and isinstance(ppl.get("after"), (int, float)):
        lines.append(f"  perplexity: {ppl['before']:.2f} -> {ppl['after']:.2f}")
    return lines


def _safe(value, limit: int = 200) -> str:
    """`value` as one printable line: control characters escaped (no terminal escapes), truncated."""
    s = str(value)
    s = "".join(c if unicodedata.category(c)[0] != "C" else repr(c)[1:-1] for c in s)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def inspect_report(path: str | Path, max_bytes: int | None = None) -> tuple[str, str | None]:
    """(human summary, problem): problem is one line when a checksum does not match, else None."""
    path = Path(path)
    status = checksum_status(path, max_bytes)
    m, size = status.manifest, status.size
    v = m.get("library_versions") or {}
    lines = [
        f"patch     {_safe(path, 400)} ({'zip' if path.is_file() else 'folder'}, {_size(size)} on disk)",
        f"method    {m['method']}    concept {_safe(m.get('concept'))}    seed {_safe(m.get('seed'))}",
        f"base      {_safe(m['base_model'])}    coordinates {m['coordinates']}    schema {m['schema_version']}",
        f"changes   {len(m['tensors'])} delta(s), kinds {', '.join(_safe(k) for k in (m.get('delta_kinds') or []))}, "
        f"params changed {_count(m.get('params_changed'))}",
    ]
    for e in m["tensors"]:
        extra = {"low_rank": f"  rank {_safe(e.get('rank', '?'))}", "sparse": f"  {_safe(e.get('count', '?'))} entries",
                 "replace_rows": f"  {_safe(e.get('count', '?'))} slices along dim {e['dim']}"}.get(e["kind"], "")
        lines.append(f"  {e['name']}  {e['kind']}  {e['shape']}  {e['dtype']}{extra}")
    for h in m.get("hooks") or []:
        lines.append(f"  hook edit {h['kind']} at {h['site']}" + (f"  ({_safe(h['summary'])})" if h.get("summary") else ""))
    if m.get("dense_note"):
        lines.append(f"note      {_safe(m['dense_note'], 400)}")
    lines.append(f"checksum  {status.line()}")
    if not m.get("patched_fingerprints") and m["tensors"]:
        lines.append("revert    no patched_fingerprints (an older patch): `patch revert` cannot check the checkpoint")
    if isinstance(m.get("hyper"), dict) and m["hyper"]:
        lines.append("hyper     " + ", ".join(f"{_safe(k, 60)}={_safe(val, 80)}" for k, val in m["hyper"].items()))
    head = _headline(m.get("report"))
    lines += (["report"] + head) if head else ["report    none" if m.get("report") is None else "report    (no headline numbers)"]
    lines.append(f"created   {_safe(m.get('created'))}    "
                 + ", ".join(f"{_safe(k, 40)} {_safe(val, 40)}" for k, val in (v.items() if isinstance(v, dict) else [])))
    return "\n".join(lines), status.problem()


def inspect_patch(path: str | Path, max_bytes: int | None = None) -> str:
    """A human summary: method, concept, base, tensors, size, checksum, report headline."""
    return inspect_report(path, max_bytes)[0]
