"""Site grammar for Stable Diffusion: the text encoder's layers and the UNet's cross-attention.

Text encoder (CLIP; TransformerLens-style names under a `text.` prefix)
    text.blocks.{L}.hook_resid_pre|hook_resid_post   residual stream in/out of encoder layer L
    text.blocks.{L}.mlp.hook_post                    MLP hidden activation (input of fc2)
    text.hook_final                                  after the final LayerNorm: what the UNet reads
UNet cross-attention (`attn2` of every transformer block, in module order: down, mid, up)
    unet.xattn.{i}.W_K | W_V                         weights of attn2.to_k / attn2.to_v  ([inner, d_text])
    unet.xattn.{i}.hook_k | hook_v                   their outputs (keys / values of the text tokens)

`resolve_weight` maps a weight site to the raw HF parameter name inside `DiffusionModel.hf`
(`unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight`); `hooks` installs
scoped forward hooks by site name and removes them on exit, also on exceptions.

Hooks follow the one protocol of the workbench (`workbench.models.hooked.HookFn`): fn(activation,
site) returns None (read only) or the replacement tensor, and a model installs them with
`model.add_hook(site, fn) -> handles` / `with model.hooks([(site, fn), ...])`, as a `HookedModel` does.
"""
from __future__ import annotations

import difflib
import re
from contextlib import contextmanager
from typing import Callable, Iterable

import torch
from torch import nn

from workbench.models.hooked import HookFn
from workbench.models.sites import SiteError

_TEXT = re.compile(r"^text\.(?:blocks\.(\d+)\.(hook_resid_pre|hook_resid_post|mlp\.hook_post)|(hook_final))$")
_XATTN = re.compile(r"^unet\.xattn\.(\d+)\.(W_K|W_V|hook_k|hook_v)$")


def text_transformer(model) -> nn.Module:
    """The CLIP text transformer (transformers 4 nests it as `.text_model`, 5 does not), or a BERT."""
    te = model.text_encoder
    return getattr(te, "text_model", te)


def _text_parts(model) -> tuple[nn.ModuleList, nn.Module, Callable[[nn.Module], nn.Module]]:
    """(layers, module whose output is what the UNet reads, layer -> module whose input is the MLP hidden)."""
    te = text_transformer(model)
    if hasattr(te.encoder, "layers"):                                   # CLIP
        return te.encoder.layers, te.final_layer_norm, lambda layer: layer.mlp.fc2
    if hasattr(te.encoder, "layer"):                                    # BERT (MiniLM): no final norm
        return te.encoder.layer, te.encoder.layer[-1], lambda layer: layer.output.dense
    raise SiteError(f"unsupported text encoder {type(model.text_encoder).__name__} (CLIP or BERT)")


def cross_attention_modules(model) -> list[tuple[str, nn.Module]]:
    """(HF path inside the UNet, attn2 module) for every cross-attention, in module order."""
    out = []
    for name, module in model.unet.named_modules():
        if name.endswith("attn2") and getattr(module, "is_cross_attention", True) and hasattr(module, "to_k"):
            out.append((name, module))
    return out


def cross_attention_sites(model) -> list[str]:
    return [f"unet.xattn.{i}.{k}" for i in range(len(cross_attention_modules(model)))
            for k in ("W_K", "W_V", "hook_k", "hook_v")]


def text_encoder_sites(model) -> list[str]:
    n = int(model.text_encoder.config.num_hidden_layers)
    return [f"text.blocks.{L}.{k}" for L in range(n) for k in ("hook_resid_pre", "hook_resid_post", "mlp.hook_post")] \
        + ["text.hook_final"]


def list_sites(model) -> list[str]:
    return text_encoder_sites(model) + cross_attention_sites(model)


def _unknown(name: str, model) -> SiteError:
    near = difflib.get_close_matches(name, list_sites(model), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    return SiteError(f"unknown diffusion site {name!r}{hint} (grammar: text.blocks.{{L}}.hook_resid_post, "
                     f"text.hook_final, unet.xattn.{{i}}.W_K|W_V|hook_k|hook_v)")


def kv_weight_names(model, which: tuple[str, ...] = ("W_K", "W_V")) -> list[str]:
    """HF parameter names (in `model.hf`) of every cross-attention key/value projection."""
    names = []
    for path, _ in cross_attention_modules(model):
        for w in which:
            names.append(f"unet.{path}.{'to_k' if w == 'W_K' else 'to_v'}.weight")
    return names


def resolve_weight(model, site: str) -> str:
    """`unet.xattn.{i}.W_K|W_V` -> HF parameter name in `model.hf`."""
    m = _XATTN.match(site)
    if not m or not m.group(2).startswith("W_"):
        raise _unknown(site, model)
    mods = cross_attention_modules(model)
    i = int(m.group(1))
    if i >= len(mods):
        raise SiteError(f"{site}: the UNet has {len(mods)} cross-attention layers (0..{len(mods) - 1})")
    return f"unet.{mods[i][0]}.{'to_k' if m.group(2) == 'W_K' else 'to_v'}.weight"


def site_module(model, site: str) -> tuple[nn.Module, str]:
    """(module, 'in'|'out'): the module whose input or output is the activation at `site`."""
    m = _TEXT.match(site)
    if m:
        layers, final, mlp_in = _text_parts(model)
        if m.group(3):
            return final, "out"
        L, kind = int(m.group(1)), m.group(2)
        if L >= len(layers):
            raise SiteError(f"{site}: the text encoder has {len(layers)} layers (0..{len(layers) - 1})")
        if kind == "hook_resid_pre":
            return layers[L], "in"
        if kind == "hook_resid_post":
            return layers[L], "out"
        return mlp_in(layers[L]), "in"
    m = _XATTN.match(site)
    if m and m.group(2).startswith("hook_"):
        mods = cross_attention_modules(model)
        i = int(m.group(1))
        if i >= len(mods):
            raise SiteError(f"{site}: the UNet has {len(mods)} cross-attention layers (0..{len(mods) - 1})")
        return (mods[i][1].to_k if m.group(2) == "hook_k" else mods[i][1].to_v), "out"
    raise _unknown(site, model)


def _first(x):
    return x[0] if isinstance(x, tuple) else x


def add_hook(model, site: str, fn: HookFn) -> list:
    """Install fn at `site` (fn(activation, site) may return a replacement); returns the handles."""
    module, where = site_module(model, site)
    if where == "out":
        def hook(mod, args, output):
            new = fn(_first(output), site)
            if new is None:
                return None
            return (new, *output[1:]) if isinstance(output, tuple) else new
        return [module.register_forward_hook(hook)]

    def pre(mod, args, kwargs):
        new = fn(args[0], site)
        if new is None:
            return None
        return (new, *args[1:]), kwargs
    return [module.register_forward_pre_hook(pre, with_kwargs=True)]


@contextmanager
def hooks(model, fns: Iterable[tuple[str, HookFn]]):
    """Scoped hooks [(site, fn), ...]: fn(activation, site) may return a replacement. Removed on exit/exception."""
    handles: list = []
    try:
        for site, fn in fns:
            handles += add_hook(model, site, fn)
        yield model
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def run_with_cache(model, prompts: list[str] | str, sites: list[str]) -> dict[str, torch.Tensor]:
    """Text-encoder activations at `sites` for `prompts` (text sites only: no denoising run)."""
    cache: dict[str, torch.Tensor] = {}

    def save(x, site):
        cache[site] = x.detach().float().clone()
    for s in sites:
        if not s.startswith("text."):
            raise SiteError(f"{s}: run_with_cache reads text-encoder sites; UNet sites need a denoising step")
    with hooks(model, [(s, save) for s in sites]):
        model.text_forward(model.tokenize(prompts))
    return cache
