"""Reverting a patch on a checkpoint folder (no originals in memory).

In a live process, `Edit.revert` restores the kept originals bit-exactly. On disk, a patched
checkpoint is reverted by subtracting the deltas (dense / low_rank / sparse); the result is then
fingerprinted against the manifest, which says whether the revert is bit-exact (it usually is
only up to fp32 rounding). `replace_rows` deltas cannot be undone without the original rows.
"""
from __future__ import annotations

from pathlib import Path

import torch


def revert_folder(patch_path, patched_folder, out_dir) -> tuple[Path, bool]:
    from transformers import AutoModelForCausalLM

    from workbench.patches import PatchError, load_patch, tensor_fingerprint
    patch = load_patch(patch_path)
    kinds = {d.kind for d in patch.edit.deltas}
    if "replace_rows" in kinds:
        raise PatchError(f"{patch_path}: replace_rows deltas cannot be reverted from a patched checkpoint; "
                         "use the base checkpoint")
    folder = Path(patched_folder)
    if not (folder / "config.json").exists():
        raise PatchError(f"{folder}: not an HF checkpoint folder (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
    with torch.no_grad():
        for d in patch.edit.deltas:
            p = model.get_parameter(d.name)
            p.data.copy_((p.float() - d.dense_delta(torch.zeros_like(p))).to(p.dtype))
    exact = all(tensor_fingerprint(model.get_parameter(n)) == fp for n, fp in patch.fingerprints.items())
    from workbench.paths import atomic_path
    out = Path(out_dir)
    with atomic_path(out, is_dir=True) as tmp:
        model.save_pretrained(tmp)
        for f in folder.iterdir():
            if f.is_file() and (f.name.startswith("tokenizer") or f.name in ("special_tokens_map.json", "chat_template.jinja")):
                (tmp / f.name).write_bytes(f.read_bytes())
    return out, exact
