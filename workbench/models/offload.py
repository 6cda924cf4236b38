"""Reading and writing parameters of a model dispatched by accelerate (device maps, offloading).

With a device map, a layer kept on a device holds real tensors (possibly on different GPUs per
layer: every edit computes on the parameter's own device). A layer offloaded to "cpu" (with a GPU
as execution device) or to "disk" holds *meta* parameters; accelerate's `AlignDevicesHook` on each
of its leaf modules loads the real tensors from a `weights_map` for every forward. Copying into a
meta parameter is a silent no-op, so edits go through `read_param` / `write_param` here: for an
offloaded parameter the edited value is put into the loader's in-memory `state_dict` (which has
priority over the offload files: nothing on disk, the checkpoint included, is ever rewritten);
revert writes the original value back the same way (bit-exact).
"""
from __future__ import annotations

import torch


class OffloadError(RuntimeError):
    """A parameter is on the meta device and no accelerate weights map holds it."""


def _offload_slot(module: torch.nn.Module, name: str):
    """(mapping that the forward reads, key in it) for an offloaded parameter, else None."""
    mod_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(mod_name) if mod_name else module
    hook = getattr(owner, "_hf_hook", None)
    hooks = getattr(hook, "hooks", None) or ([hook] if hook is not None else [])
    for h in hooks:
        wmap = getattr(h, "weights_map", None)
        if wmap is None or not getattr(h, "offload", False):
            continue
        prefix = getattr(wmap, "prefix", "")
        data = getattr(wmap, "dataset", wmap)
        key = f"{prefix}{leaf}"
        if hasattr(data, "state_dict") and hasattr(data, "index"):      # OffloadedWeightsLoader
            return data, key
        if isinstance(data, dict):
            return data, key
    return None


def is_offloaded(module: torch.nn.Module, name: str) -> bool:
    return module.get_parameter(name).is_meta and _offload_slot(module, name) is not None


def read_param(module: torch.nn.Module, name: str) -> torch.Tensor:
    """The parameter's current value as a real tensor (from the weights map when offloaded)."""
    p = module.get_parameter(name)
    if not p.is_meta:
        return p.detach()
    slot = _offload_slot(module, name)
    if slot is None:
        raise OffloadError(f"parameter {name} is on the meta device and is not offloaded by accelerate")
    data, key = slot
    return data[key].detach()


def write_param(module: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    """Set the parameter (in place when it is held in memory; via the weights map when offloaded)."""
    p = module.get_parameter(name)
    if not p.is_meta:
        p.data.copy_(value)
        return
    slot = _offload_slot(module, name)
    if slot is None:
        raise OffloadError(f"parameter {name} is on the meta device and is not offloaded by accelerate")
    data, key = slot
    store = data.state_dict if hasattr(data, "state_dict") else data
    if key in store and store[key].shape == value.shape and not store[key].is_meta:
        store[key].copy_(value)
    else:
        store[key] = value.detach().to("cpu").clone()


__all__ = ["OffloadError", "is_offloaded", "read_param", "write_param"]
