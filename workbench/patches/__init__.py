"""Edit patches (docs/patch.md): save / load / inspect, checked apply and bit-exact revert,
and exports to a full HF checkpoint or a PEFT LoRA adapter.

    path = save_patch(edit, "hp.zip")            # manifest.json + tensors.safetensors
    edit = apply_patch("hp.zip", model)          # refuses a model that is not the patch's base
    revert_patch(edit, model)
    export_hf("hp.zip", "path/to/base", "out/")  # also: apply_patch_to_folder
    export_peft("hp.zip", model, "adapter/")     # low-rank patches only

transformers / peft are imported only inside the exports that need them.
"""
from __future__ import annotations

from workbench.patches.apply import apply_patch, check_base, inspect_patch, inspect_report, revert_patch
from workbench.patches.export import apply_patch_to_folder, check_export_target, export_hf, export_peft
from workbench.patches.format import (SCHEMA_VERSION, Patch, PatchError, check_patch_target, load_patch,
                                      read_manifest, save_patch, tensor_fingerprint)

__all__ = ["SCHEMA_VERSION", "Patch", "PatchError", "apply_patch", "apply_patch_to_folder", "check_base",
           "check_export_target", "check_patch_target", "export_hf", "export_peft", "inspect_patch",
           "inspect_report", "load_patch", "read_manifest", "revert_patch", "save_patch", "tensor_fingerprint"]
