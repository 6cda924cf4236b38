"""Reverting a patch on a checkpoint folder (no originals in memory).

In a live process, `Edit.revert` restores the kept originals bit-exactly. On disk, a patched
checkpoint is reverted by subtracting the deltas (dense / low_rank / sparse). Before anything is
subtracted, every touched tensor of the checkpoint is checked against the manifest's
`patched_fingerprints` (the tensors as the patch leaves them), so a checkpoint that never carried
the patch (or carries it twice, or is another model) is refused instead of being anti-edited.
Patches written before `patched_fingerprints` existed cannot be checked: they are refused unless
`unverified=True` (CLI `--unverified`). The result is then fingerprinted against the base
fingerprints, which says whether the revert is bit-exact (usually only up to fp32 rounding).
`replace_rows` deltas cannot be undone without the original rows.
"""
from __future__ import annotations

from pathlib import Path

import torch


def check_fingerprints(expected: dict, base_tensors: dict, model, folder) -> None:
    """Raise PatchError unless every tensor named in `expected` ({name: fingerprint}) of `model` has
    that fingerprint (and the shape / dtype `base_tensors` records for it)."""
    from workbench.patches.format import PatchError, dtype_name, tensor_fingerprint
    for name, fp in expected.items():
        try:
            t = model.get_parameter(name)
        except AttributeError:
            raise PatchError(f"{folder}: the checkpoint has no tensor {name}; it is not the patched model") from None
        info = base_tensors.get(name) or {}
        if info and (list(t.shape) != list(info.get("shape", t.shape)) or dtype_name(t.dtype) != info.get("dtype")):
            raise PatchError(f"{folder}: tensor {name} is {dtype_name(t.dtype)} {list(t.shape)}, the patch is for "
                             f"{info.get('dtype')} {info.get('shape')}; nothing written")
        if tensor_fingerprint(t) != fp:
            raise PatchError(f"{folder}: tensor {name} does not match the patched fingerprint — this checkpoint "
                             "does not carry this patch (never patched, patched twice, another base, or patched "
                             "on another device with other rounding); nothing written (--unverified to subtract anyway)")


def check_patched(patch, model, folder) -> None:
    """Raise PatchError unless every touched tensor of `model` matches `patched_fingerprints`."""
    from workbench.patches.format import PatchError
    expected = patch.patched_fingerprints or {}
    for d in patch.edit.deltas:
        if d.name not in expected:
            raise PatchError(f"{folder}: the patch records no patched fingerprint for {d.name}")
    check_fingerprints(expected, patch.manifest.get("base_tensors") or {}, model, folder)


def revert_folder(patch_path, patched_folder, out_dir, unverified: bool = False) -> tuple[Path, bool]:
    from transformers import AutoModelForCausalLM

    from workbench.models.loading import check_weights_folder
    from workbench.patches import PatchError, load_patch, tensor_fingerprint
    from workbench.patches.export import check_export_target
    out = check_export_target(out_dir, "hf", source=patched_folder)
    patch = load_patch(patch_path)
    if patch.edit.hooks:
        raise PatchError(f"{patch_path}: hook edits change no weights; there is nothing to revert in a checkpoint")
    kinds = {d.kind for d in patch.edit.deltas}
    if "replace_rows" in kinds:
        raise PatchError(f"{patch_path}: replace_rows deltas cannot be reverted from a patched checkpoint; "
                         "use the base checkpoint")
    if not patch.patched_fingerprints and not unverified:
        raise PatchError(f"{patch_path}: an older patch without patched_fingerprints, so the checkpoint cannot be "
                         "checked before subtracting; pass --unverified to subtract anyway")
    folder = Path(patched_folder)
    if not (folder / "config.json").exists():
        raise PatchError(f"{folder}: not an HF checkpoint folder (no config.json)")
    check_weights_folder(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto", use_safetensors=True)
    if not unverified:
        check_patched(patch, model, folder)
    with torch.no_grad():
        for d in reversed(patch.edit.deltas):
            p = model.get_parameter(d.name)
            p.data.copy_((p.float() - d.dense_delta(torch.zeros_like(p))).to(p.dtype))
            if p.is_floating_point() and not bool(torch.isfinite(p).all()):
                raise PatchError(f"{folder}: reverting makes {d.name} non-finite; nothing written")
    exact = all(tensor_fingerprint(model.get_parameter(n)) == fp for n, fp in patch.fingerprints.items())
    from workbench.paths import atomic_path
    with atomic_path(out, is_dir=True) as tmp:
        model.save_pretrained(tmp)
        for f in folder.iterdir():
            if (f.is_file() and not f.is_symlink()
                    and (f.name.startswith("tokenizer") or f.name in ("special_tokens_map.json", "chat_template.jinja"))):
                (tmp / f.name).write_bytes(f.read_bytes())
    return out, exact
