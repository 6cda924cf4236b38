"""Ready-made hook functions for `HookedModel.hooks([(site, fn), ...])`.

Each returns fn(act, site) -> tensor | None. `positions` selects sequence positions (int, list or
slice; default all); `index` selects along the last axis (e.g. MLP hidden units, or a head for
attn.hook_z, whose activation is [batch, pos, head, d_head]).
"""
from __future__ import annotations

from typing import Callable

import torch


def _sel(positions):
    return slice(None) if positions is None else positions


def read(store: dict | list, clone: bool = True) -> Callable:
    """Keep the activation: store[site] = act (dict) or store.append(act) (list)."""
    def fn(act, site):
        value = act.detach().clone() if clone else act.detach()
        if isinstance(store, dict):
            store[site] = value
        else:
            store.append(value)
    return fn


def replace(value: torch.Tensor | Callable, positions=None) -> Callable:
    """Set the activation (at positions) to `value` (broadcast), or to value(act) if callable."""
    def fn(act, site):
        out = act.clone()
        new = value(act) if callable(value) else value
        out[:, _sel(positions)] = new.to(act.dtype) if isinstance(new, torch.Tensor) else new
        return out
    return fn


def add(vector: torch.Tensor, positions=None, scale: float = 1.0) -> Callable:
    """act[:, positions] += scale * vector (vector broadcast over the last axes)."""
    def fn(act, site):
        out = act.clone()
        out[:, _sel(positions)] += scale * vector.to(act.dtype)
        return out
    return fn


def zero(positions=None, index=None) -> Callable:
    """Zero the activation, optionally only at positions and/or last-axis index (e.g. a hidden unit)."""
    def fn(act, site):
        out = act.clone()
        if index is None:
            out[:, _sel(positions)] = 0
        elif act.dim() == 4:   # attn.hook_z: [b, pos, head, d_head], index = head
            out[:, _sel(positions), index] = 0
        else:
            out[:, _sel(positions), ..., index] = 0
        return out
    return fn


def project_out(direction: torch.Tensor, positions=None) -> Callable:
    """Remove the component along `direction` (normalised here): x <- x - (x·d̂) d̂."""
    d = direction / direction.norm()

    def fn(act, site):
        out = act.clone()
        part = out[:, _sel(positions)]
        dd = d.to(act.dtype)
        out[:, _sel(positions)] = part - (part @ dd).unsqueeze(-1) * dd
        return out
    return fn


def noise(std: float, positions=None, generator: torch.Generator | None = None) -> Callable:
    """Add Gaussian noise N(0, std²) (causal tracing corruption)."""
    def fn(act, site):
        out = act.clone()
        part = out[:, _sel(positions)]
        out[:, _sel(positions)] = part + std * torch.randn(part.shape, generator=generator).to(act)
        return out
    return fn
