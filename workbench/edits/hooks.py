"""Hook edits: inference-time edits at an activation site (no weight change), and their registry.

A hook-edit kind registers itself where it is defined (`@register_hook_kind` on the class), the way
edit methods register with `workbench.edits.registry.register`; `_PROVIDERS` names, per kind, the
module that registers it, so a patch naming a kind imports only that module, lazily (a broken
optional dependency breaks only its own kind). `HOOK_KINDS` is a live read-only view of the known
kinds (registered or provided), kept for the code that tests `kind in HOOK_KINDS`.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Iterator

import torch

__all__ = ["HOOK_KINDS", "HookEdit", "hook_class", "hook_kinds", "register_hook_kind"]


class HookEdit:
    """An inference-time edit at one activation site (no weight changes), e.g. an SAE clamp.

    Subclasses set `kind` and `site` and implement `install(model) -> handles` (PyTorch hook
    handles, removed on revert), `to_manifest() -> (json_meta, tensors)` and
    `from_manifest(meta, tensors, label)`. `guard` maps HF parameter names to
    {"fingerprint", "shape", "dtype"} of base tensors a patch checks before applying (the hook
    was fitted for that base), without changing them.
    """
    kind: str = ""
    site: str = ""
    guard: dict[str, dict]

    def install(self, model) -> list:
        raise NotImplementedError

    def to_manifest(self) -> tuple[dict, dict[str, torch.Tensor]]:
        raise NotImplementedError

    @classmethod
    def from_manifest(cls, meta: dict, tensors: dict[str, torch.Tensor], label: str) -> "HookEdit":
        raise NotImplementedError


_REGISTRY: dict[str, type[HookEdit]] = {}
# kind -> module that registers it when imported
_PROVIDERS = {"sae_clamp": "workbench.edits.sae_clamp", "diffusion_sae_clamp": "workbench.diffusion.sae"}


def register_hook_kind(cls: type[HookEdit]) -> type[HookEdit]:
    """Class decorator: register a HookEdit subclass under its `kind` (a duplicate kind is an error)."""
    if not (isinstance(cls, type) and issubclass(cls, HookEdit)) or not cls.kind:
        raise TypeError(f"{cls!r} must be a HookEdit subclass with a non-empty `kind`")
    if cls.kind in _REGISTRY and _REGISTRY[cls.kind] is not cls:
        raise ValueError(f"hook edit kind {cls.kind!r} is already registered by {_REGISTRY[cls.kind].__qualname__}")
    _REGISTRY[cls.kind] = cls
    return cls


def hook_kinds() -> list[str]:
    """Every known hook-edit kind: registered ones and those a provider module would register."""
    return sorted(set(_PROVIDERS) | set(_REGISTRY))


def hook_class(kind: str) -> type[HookEdit]:
    """The class implementing hook-edit `kind`, importing its provider module on first use."""
    if kind not in _REGISTRY and kind in _PROVIDERS:
        importlib.import_module(_PROVIDERS[kind])
    if kind not in _REGISTRY:
        raise ValueError(f"hook edit kind {kind!r} is not one of {hook_kinds()}")
    return _REGISTRY[kind]


class _KnownKinds(Mapping):
    """kind -> provider module ('' when registered without one); iterates the known kinds."""

    def __getitem__(self, kind: str) -> str:
        if kind in _PROVIDERS:
            return _PROVIDERS[kind]
        if kind in _REGISTRY:
            return _REGISTRY[kind].__module__
        raise KeyError(kind)

    def __iter__(self) -> Iterator[str]:
        return iter(hook_kinds())

    def __len__(self) -> int:
        return len(hook_kinds())

    def __repr__(self) -> str:
        return f"HOOK_KINDS({hook_kinds()})"


HOOK_KINDS: Mapping[str, str] = _KnownKinds()
