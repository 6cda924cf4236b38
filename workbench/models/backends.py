"""Other views of one loaded model: TransformerLens and nnsight over the very same HF weights.

`to_transformer_lens` builds a `HookedTransformer` *without* weight processing (no LayerNorm
folding, no centering; what SAELens expects) whose parameters are views of the HF tensors, so
in-place edits show up in both. `to_nnsight` wraps the same HF module in nnsight's
`TransformersModel` (Fiotto-Kaufman et al. 2024, "NNsight and NDIF"), whose traces also run
remotely on NDIF. `tl_run_with_cache` / `nnsight_run_with_cache` mirror
`HookedModel.run_with_cache` (same site names, same right-padded batch) for parity checks.
"""
from __future__ import annotations

import copy
from typing import Iterable, Sequence

import torch

from workbench.errors import WorkbenchError
from workbench.models.hooked import ActivationCache, HookedModel

TL_N_CTX = 2048          # TransformerLens allocates an [n_ctx, n_ctx] causal mask per layer


class BackendError(WorkbenchError, RuntimeError):
    """A backend could not be built or used for this model; the message says why."""


# --------------------------------------------------------------------------- TransformerLens
def _own_tokenizer(model: HookedModel):
    """A private copy of the tokenizer (same vocabulary), so a backend's padding settings
    never leak into the HookedModel's or another backend's."""
    tok = copy.deepcopy(model.tokenizer)
    tok.padding_side = "right"
    return tok


def _llama_tl_config(model: HookedModel, n_ctx: int):
    from transformer_lens import HookedTransformerConfig

    c, i = model.hf.config, model.info
    if getattr(c, "attention_bias", False) or getattr(c, "mlp_bias", False):
        raise NotImplementedError("Llama checkpoints with attention/MLP biases are not converted")
    rope = dict(getattr(c, "rope_parameters", None) or getattr(c, "rope_scaling", None) or {})
    theta = rope.get("rope_theta", getattr(c, "rope_theta", None)) or 10000.0
    rope_type = rope.get("rope_type", rope.get("type", "default")) or "default"
    extra: dict = {}
    if rope_type == "llama3":
        extra = dict(use_NTK_by_parts_rope=True, NTK_by_parts_factor=rope.get("factor", 8.0),
                     NTK_by_parts_low_freq_factor=rope.get("low_freq_factor", 1.0),
                     NTK_by_parts_high_freq_factor=rope.get("high_freq_factor", 4.0),
                     NTK_original_ctx_len=rope.get("original_max_position_embeddings", 8192))
    elif rope_type != "default":
        raise NotImplementedError(f"rope_type {rope_type!r} is not supported by the TransformerLens view")
    prepends_bos = len(model.tokenizer("")["input_ids"]) > 0
    return HookedTransformerConfig(
        model_name=model.model_id, original_architecture="LlamaForCausalLM",
        d_model=i.d_model, d_head=i.d_head, n_heads=i.n_heads, d_mlp=i.d_mlp, n_layers=i.n_layers,
        n_ctx=min(n_ctx, getattr(c, "max_position_embeddings", n_ctx)), d_vocab=i.d_vocab,
        d_vocab_out=i.d_vocab, act_fn=c.hidden_act, eps=c.rms_norm_eps,
        n_key_value_heads=i.n_kv_heads if i.n_kv_heads != i.n_heads else None,
        normalization_type="RMS", final_rms=True, gated_mlp=True, positional_embedding_type="rotary",
        rotary_dim=i.d_head, rotary_base=theta, rotary_adjacent_pairs=False,
        default_prepend_bos=prepends_bos, tokenizer_prepends_bos=prepends_bos,
        init_weights=False, dtype=model.hf.dtype, device=str(model.device), **extra)


def _llama_views(model: HookedModel, cfg) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """TL state dict as *views* of the HF tensors (plus zero biases) and TL name -> HF name."""
    hf, f, p = model.hf, model.family, model.hf.get_parameter
    n, n_kv = cfg.n_heads, cfg.n_key_value_heads or cfg.n_heads
    kv = "_" if cfg.n_key_value_heads is not None else ""
    src = {"embed.W_E": f"{f.embed}.weight", "ln_final.w": f"{f.final_norm}.weight",
           "unembed.W_U": f"{f.unembed}.weight"}
    for L in range(cfg.n_layers):
        b, t = f"{f.layers}.{L}", f"blocks.{L}"
        src.update({f"{t}.ln1.w": f"{b}.input_layernorm.weight", f"{t}.ln2.w": f"{b}.{f.mid_norm}.weight",
                    f"{t}.attn.W_Q": f"{b}.{f.q_proj}.weight", f"{t}.attn.{kv}W_K": f"{b}.{f.k_proj}.weight",
                    f"{t}.attn.{kv}W_V": f"{b}.{f.v_proj}.weight", f"{t}.attn.W_O": f"{b}.{f.o_proj}.weight",
                    f"{t}.mlp.W_in": f"{b}.{f.w_in}.weight", f"{t}.mlp.W_gate": f"{b}.{f.w_gate}.weight",
                    f"{t}.mlp.W_out": f"{b}.{f.w_out}.weight"})

    def view(tl_name: str, w: torch.Tensor) -> torch.Tensor:
        kind = tl_name.rsplit(".", 1)[-1].lstrip("_")
        if kind == "W_Q":                                    # [n*h, m] -> [n, m, h]
            return w.unflatten(0, (n, -1)).transpose(1, 2)
        if kind in ("W_K", "W_V"):
            return w.unflatten(0, (n_kv, -1)).transpose(1, 2)
        if kind == "W_O":                                    # [m, n*h] -> [n, h, m]
            return w.unflatten(1, (n, -1)).permute(1, 2, 0)
        if kind in ("W_in", "W_gate", "W_out", "W_U"):      # nn.Linear [out, in] -> TL [in, out]
            return w.T
        return w

    with torch.no_grad():
        state = {k: view(k, p(v).detach()) for k, v in src.items()}
    z = dict(dtype=cfg.dtype, device=model.device)
    for L in range(cfg.n_layers):
        t = f"blocks.{L}"
        state.update({f"{t}.attn.b_Q": torch.zeros(n, cfg.d_head, **z),
                      f"{t}.attn.{kv}b_K": torch.zeros(n_kv, cfg.d_head, **z),
                      f"{t}.attn.{kv}b_V": torch.zeros(n_kv, cfg.d_head, **z),
                      f"{t}.attn.b_O": torch.zeros(cfg.d_model, **z),
                      f"{t}.mlp.b_in": torch.zeros(cfg.d_mlp, **z), f"{t}.mlp.b_out": torch.zeros(cfg.d_model, **z)})
    state["unembed.b_U"] = torch.zeros(cfg.d_vocab_out, **z)
    return state, src


def _gemma3_tl(model: HookedModel, n_ctx: int, tl_class):
    """Gemma 3 through TransformerLens's own entry (its config table and weight converter)."""
    from workbench.models.loading import EMBEDDED

    emb = EMBEDDED.get(model.model_id)
    tl_name = emb.tl_name if emb and emb.tl_name else "google/gemma-3-270m"
    i = model.info
    if (i.n_layers, i.d_model) != (18, 640):
        raise NotImplementedError(f"{model.model_id}: only Gemma 3 270M has a TransformerLens config here "
                                  f"(got {i.n_layers} layers, d_model={i.d_model})")
    return tl_class.from_pretrained_no_processing(
        tl_name, hf_model=model.hf, tokenizer=_own_tokenizer(model), device=str(model.device),
        dtype=model.hf.dtype, n_ctx=n_ctx, default_padding_side="right")


def to_transformer_lens(model: HookedModel, n_ctx: int = TL_N_CTX, tl_class=None):
    """A TransformerLens `HookedTransformer` over `model`'s weights, with no weight processing.

    Llama-family checkpoints are converted here (TL's table does not list e.g. SmolLM2): the TL
    parameters are views of the HF tensors (no copy), so in-place edits of HF weights are seen
    by TL too; `tl_run_with_cache` rebuilds the view if an HF tensor was *replaced*. Gemma 3 uses
    TL's official `from_pretrained_no_processing` (a converted copy). The tokenizer is a private
    copy of the HF one, right-padding, prepending BOS exactly when the HF tokenizer does.
    `tl_class` may name a subclass, e.g. sae_lens.HookedSAETransformer (default HookedTransformer).
    """
    family, model_type = model.family.name, model.hf.config.model_type
    if family not in ("llama", "gemma3") or (family == "llama" and model_type != "llama"):
        raise NotImplementedError(f"no TransformerLens conversion for family {family!r} "
                                  f"(model_type {model_type!r}); supported: llama, gemma3")
    if tl_class is None:
        from transformer_lens import HookedTransformer as tl_class
    if family == "gemma3":
        return _gemma3_tl(model, n_ctx, tl_class)
    cfg = _llama_tl_config(model, n_ctx)
    tl = tl_class(cfg, tokenizer=None, move_to_device=False)
    state, src = _llama_views(model, cfg)
    result = tl.load_state_dict(state, strict=False, assign=True)
    params = dict(tl.named_parameters())
    missing = [k for k in result.missing_keys if k in params]      # buffers (masks, rotary) stay TL's
    if missing or result.unexpected_keys:
        raise BackendError(f"TransformerLens conversion of {model.model_id} left parameters unset "
                           f"{missing[:5]} or unused {result.unexpected_keys[:5]}")
    tl.to(model.device, print_details=False)     # buffers (rotary tables, masks); params are views
    tl.tokenizer = _own_tokenizer(model)
    tl.eval()
    tl._workbench_sources = src
    return tl


def tl_in_sync(model: HookedModel, tl) -> bool:
    """Whether every TL weight still shares storage with the HF tensor it was made from."""
    src = getattr(tl, "_workbench_sources", None)
    if src is None:
        return True                              # a converted copy (Gemma 3): nothing to check
    return all(tl.get_parameter(t).untyped_storage().data_ptr()
               == model.hf.get_parameter(h).untyped_storage().data_ptr() for t, h in src.items())


def _inputs(model: HookedModel, prompts) -> dict:
    return prompts if isinstance(prompts, dict) else model.tokenize(prompts, padding_side="right")


def _sites(model: HookedModel, sites: Iterable[str] | None) -> list[str]:
    names = list(sites) if sites is not None else model.sites("hook_resid_post")
    for name in names:
        if model.site(name).is_weight:
            raise ValueError(f"site {name!r} is a weight, not an activation")
    return names


@torch.no_grad()
def tl_run_with_cache(model: HookedModel, prompts: str | Sequence[str] | dict,
                      sites: Iterable[str] | None = None) -> tuple[torch.Tensor, ActivationCache]:
    """`HookedModel.run_with_cache` through TransformerLens (`HookedTransformer.run_with_cache`).

    Site names are TL's own hook names (the workbench grammar is TL's). Same right-padded
    tokens and mask as the hf path; returns logits [batch, pos, vocab] and an ActivationCache.
    """
    tl = model.tl()
    if not tl_in_sync(model, tl):                # an HF tensor was replaced (e.g. `.data =`, `.to()`)
        model._tl = None
        tl = model.tl()
    inputs, names = _inputs(model, prompts), set(_sites(model, sites))
    logits, tl_cache = tl.run_with_cache(inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                         names_filter=lambda n: n in names, return_type="logits")
    cache = ActivationCache({n: tl_cache[n] for n in names})
    cache.tokens, cache.mask = inputs["input_ids"], inputs["attention_mask"]
    return logits, cache


# --------------------------------------------------------------------------- nnsight
def to_nnsight(model: HookedModel):
    """nnsight's `TransformersModel` wrapping this very HF module (shared weights, no copy).

    nnsight 0.8 deprecates `LanguageModel` in favour of `TransformersModel` (same API). It
    installs an inert controller `forward` on every module (a no-op outside a trace) and gets a
    private tokenizer copy, since it switches its tokenizer to left padding.

    Large models run remotely on NDIF with the same code: `model.nnsight().trace(prompt,
    remote=True)` (or `nnsight_run_with_cache(..., remote=True)`) ships the trace to NDIF, which
    runs it on its copy of the checkpoint named by the HF model's `name_or_path` (a hub id, so
    not the embedded GGUF copies; needs `nnsight.CONFIG.set_default_api_key(...)`). A model too
    big to load here is wrapped without weights as `TransformersModel(hub_id)`. Offline, only
    `remote="local"` (serialize, deserialize, run locally: a dry run of that path) is exercised.
    """
    from nnsight import TransformersModel

    return TransformersModel(model.hf, tokenizer=_own_tokenizer(model))


def _locations(model: HookedModel, name: str) -> list[tuple[tuple[int, int], str]]:
    """Execution-ordered nnsight locations (module path + '.input'/'.output') behind a site."""
    site, f = model.site(name), model.family
    L = site.layer
    lay = f"{f.layers}.{L}"
    table = {"hook_embed": [((-1, 0), f"{f.embed}.output")],
             "hook_resid_pre": [((L, 0), f"{lay}.input")],
             "attn.hook_z": [((L, 1), f"{lay}.{f.o_proj}.input")],
             "hook_attn_out": [((L, 2), f"{lay}.{f.attn_out or f.attn}.output")],
             "mlp.hook_post": [((L, 3), f"{lay}.{f.w_out}.input")] if f.w_out else None,
             "hook_mlp_out": [((L, 4), f"{lay}.{f.mlp_out or f.mlp}.output")],
             "hook_resid_post": [((L, 5), f"{lay}.output")]}
    table["hook_resid_mid"] = table["hook_resid_pre"] + table["hook_attn_out"]
    locs = table.get(site.kind)
    if locs is None:
        raise NotImplementedError(f"site {name!r} is not available through nnsight_run_with_cache")
    return locs


@torch.no_grad()
def nnsight_run_with_cache(model: HookedModel, prompts: str | Sequence[str] | dict,
                           sites: Iterable[str] | None = None, remote: bool | str = False,
                           ) -> tuple[torch.Tensor, ActivationCache]:
    """`HookedModel.run_with_cache` as one nnsight trace (default: every hook_resid_post).

    Module outputs/inputs are saved in execution order (nnsight requires it) and assembled into
    the same [batch, pos, ...] tensors; the batch is the hf path's right-padded one. `remote` is
    passed to `trace` (True: NDIF, "local": local dry run of the remote path; see `to_nnsight`).
    """
    nn, inputs, names = model.nnsight(), _inputs(model, prompts), _sites(model, sites)
    wanted = {loc: order for name in names for order, loc in _locations(model, name)}
    plan = sorted(wanted, key=wanted.__getitem__)
    values = _trace_save(nn, inputs, plan, remote)
    logits = values.pop("logits")

    def first(v):
        return v[0] if isinstance(v, tuple) else v

    cache = ActivationCache()
    for name in names:
        acts = [first(values[loc]) for _, loc in _locations(model, name)]
        act = acts[0] + acts[1] if len(acts) == 2 else acts[0]
        if model.site(name).kind == "attn.hook_z":
            act = act.reshape(*act.shape[:-1], model.info.n_heads, model.info.d_head)
        cache[name] = act
    cache.tokens, cache.mask = inputs["input_ids"], inputs["attention_mask"]
    return logits, cache


def _trace_save(nn, inputs: dict, plan: list[str], remote: bool | str = False) -> dict:
    """Run one nnsight trace saving every location in `plan` (already in execution order)."""
    import nnsight

    values: dict = {}
    batch = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    with nn.trace(batch, use_cache=False, **({"remote": remote} if remote else {})):
        for loc in plan:
            values[loc] = nnsight.save(nn.get(loc))
        values["logits"] = nnsight.save(nn.output.logits)
    return values


__all__ = ["BackendError", "nnsight_run_with_cache", "tl_in_sync", "tl_run_with_cache", "to_nnsight",
           "to_transformer_lens"]
