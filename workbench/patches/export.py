"""Exports: a full HF checkpoint with the patch baked in, or a PEFT LoRA adapter.

`export_hf` writes a folder that plain `AutoModelForCausalLM.from_pretrained` loads (config,
tokenizer files when known, safetensors weights); tied embeddings stay tied, because the patched
model is saved by `save_pretrained`. It is also the way to patch a model folder on disk
(`apply_patch_to_folder`). `export_peft` turns a patch whose deltas are all rank-r updates
W + A @ B of nn.Linear weights into a LoRA adapter (Hu et al. 2021, "LoRA"): PEFT computes
W x + lora_B(lora_A(x)) * lora_alpha / r, so lora_A = B [r, in], lora_B = A [out, r] and
lora_alpha = r. Both writes are atomic (temporary sibling folder, then rename).
"""
from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from workbench.edits.base import Edit, _module
from workbench.patches.apply import check_base
from workbench.patches.format import Patch, PatchError, as_patch
from workbench.paths import atomic_path

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt")
_SKIP = {"config.json", "generation_config.json", "workbench_source.json"}


def _resolve(patch_or_edit) -> tuple[Patch | None, Edit]:
    if isinstance(patch_or_edit, Edit):
        patch, edit = None, patch_or_edit
    else:
        patch = as_patch(patch_or_edit)
        edit = patch.edit
    if edit.hooks:
        raise PatchError(f"edit {edit.method!r} has inference-time hook edits ({', '.join(h.kind for h in edit.hooks)}), "
                         "which no weight checkpoint can hold; apply the patch with apply_patch instead")
    return patch, edit


MARKERS = {"hf": "config.json", "peft": "adapter_config.json"}


def check_export_target(out: str | Path, fmt: str = "hf", source: str | Path | None = None) -> Path:
    """Refuse an export folder that may not be written (call it before loading the model).

    `out` may be new, an empty folder or an earlier export of the same format (its marker file:
    config.json / adapter_config.json); never a file, a symlink, another non-empty folder or the
    `source` model folder itself.
    """
    out, marker = Path(out), MARKERS[fmt]
    if out.parent.exists() and not out.parent.is_dir():
        raise PatchError(f"cannot write {out}: {out.parent} is not a directory")
    if out.is_symlink():
        raise PatchError(f"refusing to replace {out}: it is a symlink")
    if source is not None and out.exists() and Path(source).exists() and out.resolve() == Path(source).resolve():
        raise PatchError(f"refusing to write {out}: it is the model folder being read")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / marker).is_file())):
        raise PatchError(f"refusing to replace {out}: it exists and is not an earlier {fmt} export")
    return out


def _check_out(out: Path, marker: str) -> None:
    check_export_target(out, "peft" if marker == "adapter_config.json" else "hf")


def _applied_to(edit: Edit, module) -> bool:
    """Whether `edit` (applied somewhere) is applied to this module: replay it on its originals."""
    if not edit.applied_now:
        return False
    current = dict(edit._originals)
    for d in edit.deltas:
        current[d.name] = d.new_value(current[d.name])
    try:
        return all(torch.equal(module.get_parameter(n).detach(), t.to(module.get_parameter(n).device))
                   for n, t in current.items())
    except AttributeError:
        return False


def _record(patch: Patch | None, edit: Edit) -> dict:
    if patch is not None:
        return patch.manifest
    return {"method": edit.method, "base_model": edit.model_id, "concept": edit.concept,
            "hyper": edit.hyper, "seed": edit.seed, "tensors": [d.meta() for d in edit.deltas]}


def _save_patched(patch: Patch | None, edit: Edit, model, tmp: Path) -> None:
    """Apply (checked against the fingerprints when known), save_pretrained into tmp, restore."""
    module = _module(model)
    if not hasattr(module, "save_pretrained"):
        raise PatchError(f"export_hf needs a transformers model, got {type(module).__name__}")
    if _applied_to(edit, module):
        module.save_pretrained(tmp)
        return
    if patch is not None:
        check_base(patch, model)
        fresh = patch.new_edit()
    else:
        fresh = replace(edit, deltas=list(edit.deltas), _originals=None)
    with fresh.applied(model):
        for n in dict.fromkeys(fresh.names):            # an in-memory Edit is not checked like a loaded patch
            t = module.get_parameter(n)
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise PatchError(f"edit {edit.method!r} makes tensor {n} non-finite (NaN or overflow); nothing written")
        module.save_pretrained(tmp)


def _base_folder(base) -> Path:
    path = Path(base)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PatchError(f"{path}: folder has no config.json, so it is not an HF model folder")
        from workbench.models.loading import check_weights_folder
        check_weights_folder(path)
        return path
    from workbench.models.loading import resolve_model_source
    try:
        _mid, source = resolve_model_source(str(base))
    except Exception as exc:
        raise PatchError(f"{base}: not a model folder ({exc})") from exc
    if not isinstance(source, Path):
        raise PatchError(f"{base}: export_hf needs a local model folder or a loaded model, not a hub id")
    return source


def export_hf(patch_or_edit: Patch | Edit | str | Path, base_folder_or_model, out_dir: str | Path) -> Path:
    """Write an HF checkpoint folder of the base with the patch applied; returns out_dir.

    `base_folder_or_model`: an HF folder (or an embedded model name), or a loaded model
    (HookedModel or transformers model), which is left exactly as it was. A Patch is checked
    against the base's fingerprints first. `workbench_patch.json` in the folder records the patch.
    """
    patch, edit = _resolve(patch_or_edit)
    out = Path(out_dir)
    _check_out(out, "config.json")
    try:
        with atomic_path(out, is_dir=True) as tmp:
            if isinstance(base_folder_or_model, (str, Path)):
                folder = _base_folder(base_folder_or_model)
                from transformers import AutoModelForCausalLM
                model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto", use_safetensors=True)
                for f in sorted(folder.iterdir()):
                    if (f.is_file() and not f.name.startswith(".") and f.name not in _SKIP
                            and not f.name.endswith(_WEIGHT_SUFFIXES) and not f.name.endswith(".index.json")):
                        shutil.copy2(f, tmp / f.name)  # tokenizer, chat template, licence, ...
                _save_patched(patch, edit, model, tmp)
            else:
                _save_patched(patch, edit, base_folder_or_model, tmp)
                tok = getattr(base_folder_or_model, "tokenizer", None)
                if tok is not None:
                    tok.save_pretrained(tmp)
            (tmp / "workbench_patch.json").write_text(json.dumps(_record(patch, edit), indent=2, default=str) + "\n")
    except OSError as exc:
        raise PatchError(f"cannot write {out}: {exc}") from exc
    return out


def apply_patch_to_folder(patch: Patch | str | Path, folder: str | Path, out_dir: str | Path) -> Path:
    """Patch a model folder on disk into a new folder: exactly `export_hf(patch, folder, out_dir)`."""
    return export_hf(patch, folder, out_dir)


def export_peft(patch_or_edit: Patch | Edit | str | Path, model, out_dir: str | Path) -> Path:
    """Write a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors); returns out_dir.

    Needs every delta to be low_rank on an nn.Linear weight (several deltas on one weight are
    concatenated along the rank). `model` is the base (used for module types and shapes only).
    In fp32 the adapter reproduces the patched model to float rounding; in bf16/fp16 the patched
    weights are rounded once, the adapter is not, so they agree only to that precision.
    """
    patch, edit = _resolve(patch_or_edit)
    other = sorted({d.kind for d in edit.deltas} - {"low_rank"})
    if other or not edit.deltas:
        raise PatchError(f"PEFT export needs low-rank deltas; this patch has {', '.join(other) or 'none'} "
                         "— use export_hf for a full checkpoint")
    module = _module(model)
    if patch is not None:
        check_base(patch, model)          # the same fingerprint check as export_hf: refuse a wrong base
    try:
        tied = module.get_input_embeddings().weight
    except (AttributeError, NotImplementedError):
        tied = None
    factors: dict[str, tuple[list, list]] = {}
    for d in edit.deltas:
        path = d.name.removesuffix(".weight")
        try:
            layer = module.get_submodule(path) if d.name.endswith(".weight") else None
        except AttributeError:
            layer = None
        if not isinstance(layer, torch.nn.Linear):
            raise PatchError(f"PEFT export needs nn.Linear weights; {d.name} is not one — use export_hf")
        if tuple(layer.weight.shape) != d.shape:
            raise PatchError(f"{d.name}: the model's weight is {tuple(layer.weight.shape)}, the patch is for {d.shape}")
        if tied is not None and layer.weight is tied:
            raise PatchError(f"{d.name} is tied to the input embeddings; a LoRA on it would not change "
                             "them — use export_hf")
        As, Bs = factors.setdefault(path, ([], []))
        As.append(d.A.detach().to("cpu", torch.float32))
        Bs.append(d.B.detach().to("cpu", torch.float32))
    tensors, ranks = {}, {}
    for path, (As, Bs) in factors.items():
        A, B = torch.cat(As, dim=1), torch.cat(Bs, dim=0)
        tensors[f"base_model.model.{path}.lora_A.weight"] = B.contiguous()
        tensors[f"base_model.model.{path}.lora_B.weight"] = A.contiguous()
        ranks[path] = int(A.shape[1])
    r = Counter(ranks.values()).most_common(1)[0][0]
    pattern = {re.escape(p): k for p, k in ranks.items() if k != r}
    base_id = patch.base_model if patch is not None else edit.model_id
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_id,
        "r": r, "lora_alpha": r, "rank_pattern": pattern, "alpha_pattern": dict(pattern),
        "target_modules": sorted(ranks), "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
        "use_rslora": False, "use_dora": False, "init_lora_weights": True, "inference_mode": True,
        "modules_to_save": None,
    }
    out = Path(out_dir)
    _check_out(out, "adapter_config.json")
    try:
        with atomic_path(out, is_dir=True) as tmp:
            save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
            (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
            if patch is not None:
                (tmp / "workbench_patch.json").write_text(json.dumps(patch.manifest, indent=2, default=str) + "\n")
    except OSError as exc:
        raise PatchError(f"cannot write {out}: {exc}") from exc
    return out


__all__ = ["apply_patch_to_folder", "check_export_target", "export_hf", "export_peft"]
