"""The Edit protocol: every method returns an `Edit` that knows exactly which tensors it changes
and how, applies permanently or scoped (context manager, restored also on exceptions), reverts
bit-exactly (originals are kept, not recomputed) and turns into a patch (workbench.patches).

Deltas live in raw HF weight coordinates (nn.Linear weights are [out, in]).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from workbench.edits.hooks import HOOK_KINDS, HookEdit, hook_class  # noqa: F401 (re-exported)

DELTA_KINDS = ("dense", "low_rank", "sparse", "replace_rows")


def _module(model):
    """Accept a HookedModel or a plain torch module."""
    return getattr(model, "hf", model)


@dataclass
class TensorDelta:
    """A change to one HF parameter.

    dense:        W + delta                       (delta: shape of W)
    low_rank:     W + A @ B                       (A: [out, r], B: [r, in]; 2-D W only)
    sparse:       W.view(-1)[indices] += values   (indices: int64 [n], values: [n])
    replace_rows: W.index_select(dim, indices) := values   (values: W's shape with `dim` of size n)
    """
    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    delta: torch.Tensor | None = None
    A: torch.Tensor | None = None
    B: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    values: torch.Tensor | None = None
    dim: int = 0

    def __post_init__(self):
        if self.kind not in DELTA_KINDS:
            raise ValueError(f"delta kind {self.kind!r} is not one of {DELTA_KINDS}")
        self.shape = tuple(int(s) for s in self.shape)

    def new_value(self, weight: torch.Tensor) -> torch.Tensor:
        """The edited tensor (computed in fp32, cast back to the weight's dtype)."""
        if tuple(weight.shape) != self.shape:
            raise ValueError(f"{self.name}: delta is for shape {self.shape}, tensor has {tuple(weight.shape)}")
        w = weight.detach()
        if self.kind == "dense":
            return (w.float() + self.delta.to(w.device).float()).to(w.dtype)
        if self.kind == "low_rank":
            return (w.float() + self.A.to(w.device).float() @ self.B.to(w.device).float()).to(w.dtype)
        if self.kind == "sparse":
            flat = w.float().reshape(-1).clone()
            flat[self.indices.to(w.device)] += self.values.to(w.device).float()
            return flat.reshape(w.shape).to(w.dtype)
        return w.index_copy(self.dim, self.indices.to(w.device), self.values.to(w.device, w.dtype))

    def numel_changed(self) -> int:
        """Parameters this delta touches (its support)."""
        if self.kind == "sparse":
            return int(self.indices.numel())
        if self.kind == "replace_rows":
            return int(self.values.numel())
        n = 1
        for s in self.shape:
            n *= s
        return n

    def dense_delta(self, weight: torch.Tensor) -> torch.Tensor:
        return self.new_value(weight).float() - weight.detach().float()

    def tensors(self) -> dict[str, torch.Tensor]:
        """The payload tensors, keyed by field name."""
        out = {}
        for key in ("delta", "A", "B", "indices", "values"):
            t = getattr(self, key)
            if t is not None:
                out[key] = t
        return out

    def meta(self) -> dict:
        return {"name": self.name, "kind": self.kind, "shape": list(self.shape), "dtype": self.dtype,
                "dim": self.dim, "fields": sorted(self.tensors())}


@dataclass
class Edit:
    """A fitted edit. `deltas` are weight changes; `hooks` are inference-time hook edits."""
    method: str
    model_id: str
    deltas: list[TensorDelta] = field(default_factory=list)
    concept: str | None = None
    hyper: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    edit_seconds: float | None = None
    hooks: list[HookEdit] = field(default_factory=list)
    # named side tensors a patch carries but never applies (e.g. ROCR's preserved keys "rocr.keys.L")
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    # stack record when fitted on top of a patch: {"parent": patch id, "parent_fingerprints": {...}}
    parent: dict[str, Any] | None = None
    _originals: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    _handles: list | None = field(default=None, repr=False)

    # -------------------------------------------------------------- bookkeeping
    @property
    def names(self) -> list[str]:
        return [d.name for d in self.deltas]

    def params_changed(self) -> int:
        return sum(d.numel_changed() for d in self.deltas)

    @property
    def applied_now(self) -> bool:
        return self._originals is not None

    # -------------------------------------------------------------- apply / revert
    @torch.no_grad()
    def apply(self, model) -> "Edit":
        """Apply permanently (in place). Keeps the original tensors for a bit-exact revert()."""
        if self._originals is not None:
            raise RuntimeError(f"edit {self.method!r} is already applied; revert() it first")
        from workbench.models.offload import read_param, write_param   # device-mapped / offloaded models
        module = _module(model)
        originals: dict[str, torch.Tensor] = {}
        try:
            for d in self.deltas:
                current = read_param(module, d.name)
                if d.name not in originals:
                    originals[d.name] = current.clone()
                write_param(module, d.name, d.new_value(current))
        except BaseException:
            for name, t in originals.items():
                write_param(module, name, t)
            raise
        handles: list = []
        try:
            for h in self.hooks:
                handles += h.install(model)
        except BaseException:
            for handle in handles:
                handle.remove()
            for name, t in originals.items():
                write_param(module, name, t)
            raise
        self._originals, self._handles = originals, handles
        return self

    @torch.no_grad()
    def revert(self, model) -> None:
        """Restore every touched tensor bit-exactly."""
        if self._originals is None:
            raise RuntimeError(f"edit {self.method!r} is not applied")
        for handle in self._handles or []:
            handle.remove()
        from workbench.models.offload import write_param
        module = _module(model)
        for name, t in self._originals.items():
            write_param(module, name, t)
        self._originals, self._handles = None, None

    @contextmanager
    def applied(self, model):
        """`with edit.applied(model): ...` — the model is restored on exit, also on exceptions."""
        self.apply(model)
        try:
            yield model
        finally:
            self.revert(model)

    # -------------------------------------------------------------- patches
    def save(self, path, **kwargs):
        """Write a patch directory (or .zip); see workbench.patches."""
        from workbench.patches import save_patch
        return save_patch(self, path, **kwargs)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
