"""Stacks of patches: a patch fitted on top of another one names it, and stacks apply in order.

A child patch's manifest carries
* `parent`: the parent patch's id (`patch_id`: sha256 of the canonical JSON of its
  `tensors_sha256`, `fingerprints` and `tensors` entries — what it changes and on which base);
* `parent_fingerprints`: fingerprints (`tensor_fingerprint`) of every tensor the parent touches, as
  they are with the parent applied (the state the child was fitted on);
and, as every patch, `fingerprints` of the tensors it touches before it is applied (for tensors the
parent also touches: the parent-applied values).

`apply_stack([P1, P2, ...], model)` checks, patch by patch, that a child follows its parent (or that
its parent state is already on the model when it comes first), then the usual fingerprints, and
applies; on any refusal the patches applied so far are reverted and one line says why.
`revert_stack` undoes in reverse order, bit-exactly (each Edit keeps its originals).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from workbench.edits.base import Edit, _module
from workbench.patches.apply import check_base
from workbench.patches.format import Patch, PatchError, as_patch, tensor_fingerprint


def patch_id(patch_or_manifest) -> str:
    """The id a child patch names as `parent`."""
    m = patch_or_manifest.manifest if isinstance(patch_or_manifest, Patch) else patch_or_manifest
    core = {"tensors_sha256": m["tensors_sha256"], "fingerprints": m["fingerprints"], "tensors": m["tensors"]}
    return hashlib.sha256(json.dumps(core, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _label(patch: Patch) -> str:
    return str(patch.path) if patch.path is not None else f"patch {patch_id(patch)[:12]}"


def _current(model, names) -> dict[str, str]:
    module = _module(model)
    out = {}
    for n in names:
        try:
            out[n] = tensor_fingerprint(module.get_parameter(n))
        except AttributeError:
            raise PatchError(f"the model has no tensor {n}") from None
    return out


def parent_record(parent, model) -> dict:
    """{"parent": id, "parent_fingerprints": ...} for a child fitted on `model` with `parent` applied."""
    parent = as_patch(parent)
    names = list(dict.fromkeys(e["name"] for e in parent.manifest["tensors"]))
    now = _current(model, names)
    if names and all(now[n] == parent.fingerprints.get(n) for n in names):
        raise PatchError(f"{_label(parent)} is not applied to this model (its tensors are the base's); "
                         "apply it before fitting on top of it")
    return {"parent": patch_id(parent), "parent_fingerprints": now}


def on_top_of(edit: Edit, parent, model) -> Edit:
    """Mark `edit` (any method, fitted on `model` with `parent` applied) as the parent's child."""
    edit.parent = parent_record(parent, model)
    return edit


def check_order(patches: list[Patch], model=None) -> None:
    """Raise PatchError (one line) unless the stack can be applied in this order on `model` as it is."""
    ids = [patch_id(p) for p in patches]
    for k, p in enumerate(patches):
        parent = p.manifest.get("parent")
        if parent is None:
            continue
        if parent in ids[k + 1:]:
            j = ids.index(parent)
            raise PatchError(f"wrong order: {_label(p)} is fitted on top of {_label(patches[j])}; "
                             f"apply {_label(patches[j])} first")
        if k > 0 and parent != ids[k - 1]:
            raise PatchError(f"wrong order: {_label(p)} is fitted on top of patch {parent[:12]}, not on "
                             f"{_label(patches[k - 1])} ({ids[k - 1][:12]})")


def apply_stack(patches, model) -> list[Edit]:
    """Apply patches in order (each checked against the state the previous ones leave); returns the Edits."""
    patches = [as_patch(p) for p in patches]
    if not patches:
        raise PatchError("no patches given")
    check_order(patches, model)
    applied: list[Edit] = []
    try:
        for k, p in enumerate(patches):
            pf = p.manifest.get("parent_fingerprints")
            if pf is not None:
                now = _current(model, pf)
                bad = [n for n in pf if now[n] != pf[n]]
                if bad:
                    where = "" if k else " (it comes first: its parent must already be on the model)"
                    raise PatchError(f"{_label(p)} was fitted on top of patch {p.manifest['parent'][:12]}, whose "
                                     f"state is not on the model: tensor {bad[0]} differs{where}")
            try:
                check_base(p, model)
            except PatchError as exc:
                if k:
                    raise PatchError(f"{_label(p)} cannot follow {_label(patches[k - 1])}: {exc}") from None
                raise
            applied.append(p.new_edit().apply(model))
    except BaseException:
        revert_stack(applied, model)
        raise
    return applied


def revert_stack(edits: list[Edit], model) -> None:
    """Undo `apply_stack`, last patch first: every tensor restored bit-exactly."""
    for e in reversed(edits):
        if e.applied_now:
            e.revert(model)


def stacked_patched_fingerprints(patches: list[Patch]) -> dict[str, str]:
    """{tensor: fingerprint} of a checkpoint carrying the whole stack: for each tensor, the patched
    fingerprint recorded by the last patch that touches it (later patches leave it alone)."""
    out: dict[str, str] = {}
    for k, p in enumerate(patches):
        pf = p.patched_fingerprints or {}
        for d in p.edit.deltas:
            if d.name not in pf:
                raise PatchError(f"{_label(p)}: an older patch without patched_fingerprints, so the checkpoint "
                                 "cannot be checked before subtracting; pass --unverified to subtract anyway")
            if d.name in out and p.fingerprints.get(d.name) != out[d.name]:
                raise PatchError(f"{_label(p)} cannot follow {_label(patches[k - 1])}: it was not fitted on the "
                                 f"state they leave {d.name} in (the same patch twice, or another order)")
        out.update({d.name: pf[d.name] for d in p.edit.deltas})
    return out


def revert_stack_folder(patches, patched_folder, out_dir, unverified: bool = False) -> tuple[Path, bool]:
    """Undo a stack on a patched checkpoint folder (subtracting deltas, last patch first).

    As `revert_folder`: the output folder is checked first, then every touched tensor of the
    checkpoint against the stack's patched fingerprints (`unverified=True` skips that), so a
    checkpoint that does not carry the stack is refused, nothing written. Returns (out_dir, exact):
    exact when the result's fingerprints equal the first patch's base fingerprints (on disk the
    originals are gone, so fp32 rounding can make it inexact).
    """
    import torch
    from transformers import AutoModelForCausalLM

    from workbench.models.loading import check_weights_folder
    from workbench.patches.export import check_export_target
    from workbench.patches.revert import check_fingerprints
    from workbench.paths import atomic_path
    out = check_export_target(out_dir, "hf", source=patched_folder)
    patches = [as_patch(p) for p in patches]
    check_order(patches, None)
    for p in patches:
        if p.edit.hooks:
            raise PatchError(f"{_label(p)}: hook edits change no weights; there is nothing to revert in a checkpoint")
        if any(d.kind == "replace_rows" for d in p.edit.deltas):
            raise PatchError(f"{_label(p)}: replace_rows deltas cannot be reverted from a patched checkpoint")
    expected = {} if unverified else stacked_patched_fingerprints(patches)
    folder = Path(patched_folder)
    if not (folder / "config.json").exists():
        raise PatchError(f"{folder}: not an HF checkpoint folder (no config.json)")
    check_weights_folder(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto", use_safetensors=True)
    shapes: dict = {}
    for p in patches:
        shapes.update(p.manifest.get("base_tensors") or {})
    check_fingerprints(expected, shapes, model, folder)
    with torch.no_grad():
        for p in reversed(patches):
            for d in reversed(p.edit.deltas):
                w = model.get_parameter(d.name)
                w.data.copy_((w.float() - d.dense_delta(torch.zeros_like(w))).to(w.dtype))
                if w.is_floating_point() and not bool(torch.isfinite(w).all()):
                    raise PatchError(f"{folder}: reverting makes {d.name} non-finite; nothing written")
    base: dict[str, str] = {}
    for p in patches:
        for n, fp in p.fingerprints.items():
            base.setdefault(n, fp)
    exact = all(tensor_fingerprint(model.get_parameter(n)) == fp for n, fp in base.items())
    with atomic_path(out, is_dir=True) as tmp:
        model.save_pretrained(tmp)
        for f in folder.iterdir():
            if f.is_file() and (f.name.startswith("tokenizer") or f.name in ("special_tokens_map.json", "chat_template.jinja")):
                (tmp / f.name).write_bytes(f.read_bytes())
    return out, exact
