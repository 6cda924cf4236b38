"""The hooked-model facade: one object over an HF causal LM that speaks the site grammar.

`run_with_cache` and the scoped `hooks(...)` context manager (after TransformerLens) install
plain PyTorch hooks on the HF modules — the fastest path, and the one every analysis uses.
The same loaded weights can be viewed through nnsight (`model.nnsight()`) or a TransformerLens
`HookedTransformer` without weight processing (`model.tl()`); see `workbench.models.backends`.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

import torch

from workbench.models.sites import Family, Site, SiteError, family_for, list_sites, parse_site

HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    family: str
    architecture: str
    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_vocab: int
    n_experts: int
    experts_per_token: int
    n_params: int
    tied_embeddings: bool

    def to_dict(self) -> dict:
        return asdict(self)


class ActivationCache(dict):
    """site name -> tensor [batch, pos, ...]; `.tokens` and `.mask` are the padded inputs."""
    tokens: torch.Tensor
    mask: torch.Tensor


def _info(model_id: str, hf, family: Family) -> ModelInfo:
    c = hf.config
    d_model = getattr(c, "hidden_size", None) or c.n_embd
    n_heads = getattr(c, "num_attention_heads", None) or c.n_head
    n_layers = getattr(c, "num_hidden_layers", None) or c.n_layer
    d_mlp = (getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * d_model)
    if family.is_moe:
        d_mlp = getattr(c, "moe_intermediate_size", None) or d_mlp
    n_experts = getattr(c, "num_local_experts", None) or getattr(c, "num_experts", None) or 0
    return ModelInfo(
        model_id=model_id, family=family.name, architecture=type(hf).__name__, n_layers=n_layers,
        d_model=d_model, d_mlp=d_mlp, n_heads=n_heads,
        n_kv_heads=getattr(c, "num_key_value_heads", None) or n_heads,
        d_head=getattr(c, "head_dim", None) or d_model // n_heads, d_vocab=c.vocab_size,
        n_experts=n_experts if family.is_moe else 0,
        experts_per_token=getattr(c, "num_experts_per_tok", 0) if family.is_moe else 0,
        n_params=sum(p.numel() for p in hf.parameters()),
        tied_embeddings=hf.get_output_embeddings().weight is hf.get_input_embeddings().weight)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _with_first(out, new):
    return (new,) + tuple(out[1:]) if isinstance(out, tuple) else new


class _StopForward(Exception):
    """Raised by run_with_cache(stop_early=True) once every wanted activation is cached."""


class HookedModel:
    """An HF causal LM plus the site grammar, caching, scoped hooks, logit lens and generation."""

    def __init__(self, hf_model, tokenizer, model_id: str = "model"):
        self.hf = hf_model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.family = family_for(hf_model.config)
        self.info = _info(model_id, hf_model, self.family)
        self._site_names = list_sites(self.family, self.info.n_layers, self.info.n_experts)
        self._site_set = set(self._site_names)
        self._tl = None
        self._nnsight = None

    # ------------------------------------------------------------------ structure
    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def n_layers(self) -> int:
        return self.info.n_layers

    def sites(self, kind: str | None = None) -> list[str]:
        """All site names, or those whose kind (e.g. 'hook_resid_post', 'mlp.W_out') matches."""
        if kind is None:
            return list(self._site_names)
        return [s for s in self._site_names if s.endswith(kind)]

    def site(self, name: str) -> Site:
        site = parse_site(name, self._site_names)
        if site.kind == "mlp.W_out" and site.index is not None and site.index >= self.info.d_mlp:
            raise SiteError(f"site {name!r}: value-vector index must be < d_mlp={self.info.d_mlp}")
        return site

    def module(self, path: str) -> torch.nn.Module:
        return self.hf.get_submodule(path)

    def layer(self, layer: int) -> torch.nn.Module:
        return self.module(f"{self.family.layers}.{layer}")

    def _lmod(self, layer: int, rel: str) -> torch.nn.Module:
        return self.layer(layer).get_submodule(rel)

    def weight_name(self, name: str) -> str:
        """HF parameter name behind a weight site (e.g. 'model.layers.3.mlp.down_proj.weight')."""
        site = self.site(name)
        f = self.family
        if site.kind == "embed.W_E":
            return f"{f.embed}.weight"
        if site.kind == "unembed.W_U":
            return f"{f.unembed}.weight"
        rel = {"attn.W_Q": f.q_proj, "attn.W_K": f.k_proj, "attn.W_V": f.v_proj, "attn.W_O": f.o_proj,
               "mlp.W_in": f.w_in, "mlp.W_gate": f.w_gate, "mlp.W_out": f.w_out,
               "mlp.W_router": f.router}.get(site.kind)
        if rel is None:
            raise SiteError(f"site {name!r} is not a single weight tensor in a {f.name} model")
        return f"{f.layers}.{site.layer}.{rel}.weight"

    def param(self, name: str) -> torch.nn.Parameter:
        """The HF parameter behind a weight site (raw coordinates: Linear weights are [out, in])."""
        return self.hf.get_parameter(self.weight_name(name))

    def expert_params(self, layer: int, expert: int) -> dict[str, torch.Tensor]:
        """Views of one expert's slices in the fused expert tensors: name -> tensor."""
        if not self.family.is_moe:
            raise SiteError(f"{self.model_id} is not a mixture-of-experts model")
        experts = self._lmod(layer, self.family.experts)
        prefix = f"{self.family.layers}.{layer}.{self.family.experts}"
        return {f"{prefix}.{n}[{expert}]": p[expert] for n, p in experts.named_parameters(recurse=False)}

    def value_vectors(self, layer: int) -> torch.Tensor:
        """Value vectors of a dense MLP: [d_mlp, d_model]; row i is what hidden unit i writes.

        A view of the HF down projection (its columns for nn.Linear, its rows for GPT-2's Conv1D).
        """
        w = self.param(f"blocks.{layer}.mlp.W_out")
        return w if self.family.conv1d else w.T

    # ------------------------------------------------------------------ tokens
    def tokenize(self, prompts: str | Sequence[str], padding_side: str = "right") -> dict:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("no prompts given")
        self.tokenizer.padding_side = padding_side
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True)
        return {"input_ids": enc["input_ids"].to(self.device),
                "attention_mask": enc["attention_mask"].to(self.device)}

    def to_str_tokens(self, prompt: str) -> list[str]:
        ids = self.tokenizer(prompt)["input_ids"]
        return [self.tokenizer.decode([i]) for i in ids]

    def chat(self, user: str) -> str:
        """The prompt string for one user turn in the model's chat template (if it has one)."""
        if not getattr(self.tokenizer, "chat_template", None):
            return user
        return self.tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                  add_generation_prompt=True)

    def subject_span(self, prompt: str, subject: str) -> tuple[int, int]:
        """Token positions [start, end) of the last occurrence of `subject` in `prompt`."""
        at = prompt.rfind(subject)
        if at < 0:
            raise ValueError(f"subject {subject!r} does not occur in prompt {prompt!r}")
        enc = self.tokenizer(prompt, return_offsets_mapping=True)
        hits = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > at and a < at + len(subject) and b > a]
        if not hits:
            raise ValueError(f"subject {subject!r} maps to no token in {prompt!r}")
        return hits[0], hits[-1] + 1

    # ------------------------------------------------------------------ hooks
    def _hook_points(self, site: Site, fn: HookFn) -> list:
        """Register PyTorch hooks that route `site`'s activation through fn; return handles."""
        f, name, handles = self.family, site.name, []

        def out_hook(transform=None, untransform=None):
            def hook(_mod, _args, out):
                act = _first(out)
                view = transform(act) if transform else act
                new = fn(view, name)
                if new is None:
                    return None
                return _with_first(out, untransform(new, act) if untransform else new)
            return hook

        def pre_hook(transform=None, untransform=None):
            def hook(_mod, args, kwargs):
                if args:
                    act = args[0]
                else:
                    act = kwargs["hidden_states"]
                new = fn(transform(act) if transform else act, name)
                if new is None:
                    return None
                new = untransform(new, act) if untransform else new
                if args:
                    return (new,) + tuple(args[1:]), kwargs
                return args, {**kwargs, "hidden_states": new}
            return hook

        kind, layer = site.kind, site.layer
        if kind == "hook_embed":
            handles.append(self.module(f.embed).register_forward_hook(out_hook()))
        elif kind == "hook_resid_pre":
            handles.append(self.layer(layer).register_forward_pre_hook(pre_hook(), with_kwargs=True))
        elif kind == "hook_resid_post":
            handles.append(self.layer(layer).register_forward_hook(out_hook()))
        elif kind == "hook_attn_out":
            handles.append(self._lmod(layer, f.attn_out or f.attn).register_forward_hook(out_hook()))
        elif kind == "hook_mlp_out":
            handles.append(self._lmod(layer, f.mlp_out or f.mlp).register_forward_hook(out_hook()))
        elif kind == "hook_resid_mid":
            # resid_mid = resid_pre + attn_out; writing it means rewriting attn_out.
            state: dict = {}

            def remember(_mod, args, kwargs):
                state["pre"] = args[0] if args else kwargs["hidden_states"]

            handles.append(self.layer(layer).register_forward_pre_hook(remember, with_kwargs=True))
            handles.append(self._lmod(layer, f.attn_out or f.attn).register_forward_hook(
                out_hook(lambda a: state["pre"] + a, lambda new, a: new - state["pre"])))
        elif kind == "attn.hook_z":
            h, d = self.info.n_heads, self.info.d_head
            handles.append(self._lmod(layer, f.o_proj).register_forward_pre_hook(pre_hook(
                lambda a: a.reshape(*a.shape[:-1], h, d), lambda new, a: new.reshape(a.shape)), with_kwargs=True))
        elif kind == "mlp.hook_post":
            handles.append(self._lmod(layer, f.w_out).register_forward_pre_hook(pre_hook(), with_kwargs=True))
        elif kind == "mlp.router":
            shape: dict = {}

            def remember_shape(_mod, args, kwargs):
                shape["bs"] = (args[0] if args else kwargs["hidden_states"]).shape[:-1]

            def router_hook(_mod, _args, out):
                logits = _first(out)
                if fn(logits.reshape(*shape["bs"], logits.shape[-1]), name) is not None:
                    raise SiteError(f"site {name!r} is read-only (edit blocks.{layer}.mlp.W_router instead)")

            handles.append(self._lmod(layer, f.mlp).register_forward_pre_hook(remember_shape, with_kwargs=True))
            handles.append(self._lmod(layer, f.router).register_forward_hook(router_hook))
        else:
            raise SiteError(f"site {name!r} is a weight, not an activation; use model.param()")
        return handles

    def add_hook(self, name: str, fn: HookFn) -> list:
        """Route site `name`'s activation through fn(activation, site) -> replacement | None; returns
        the PyTorch handles (remove them to uninstall). The protocol every hooked model kind shares."""
        return self._hook_points(self.site(name), fn)

    @contextmanager
    def hooks(self, hooks: Iterable[tuple[str, HookFn]]):
        """Scoped hooks: `with model.hooks([(site, fn), ...]): ...`.

        fn(activation, site) returns None (read only) or the replacement tensor. attn.hook_z is
        given as [batch, pos, head, d_head]. Every hook is removed on exit, also on exceptions.
        """
        handles: list = []
        try:
            for name, fn in hooks:
                handles += self._hook_points(self.site(name), fn)
            yield self
        finally:
            for handle in handles:
                handle.remove()

    # ------------------------------------------------------------------ running
    def forward(self, inputs: dict, logits_to_keep: int = 0) -> torch.Tensor:
        """Logits [batch, pos, vocab] for tokenized inputs (only the last `logits_to_keep`
        positions when > 0: the unembedding is the costliest matmul of a small model)."""
        kw = {"logits_to_keep": logits_to_keep} if logits_to_keep else {}
        return self.hf(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                       use_cache=False, **kw).logits

    @torch.no_grad()
    def logits(self, prompts: str | Sequence[str]) -> torch.Tensor:
        return self.forward(self.tokenize(prompts))

    @torch.no_grad()
    def run_with_cache(self, prompts: str | Sequence[str] | dict, sites: Iterable[str] | None = None,
                       logits_to_keep: int = 0, stop_early: bool = False,
                       ) -> tuple[torch.Tensor | None, ActivationCache]:
        """Run once, keep the activations at `sites` (default: every hook_resid_post).

        Returns logits [batch, pos, vocab] and an ActivationCache of [batch, pos, ...] tensors;
        batches are right-padded, `cache.mask` marks real tokens. `logits_to_keep=1` skips the
        unembedding of all but the last position when only activations are wanted.
        `stop_early=True` ends the forward pass once the deepest layer among `sites` is done
        (like TransformerLens's `stop_at_layer`); the logits are then None.
        """
        inputs = prompts if isinstance(prompts, dict) else self.tokenize(prompts)
        sites = list(sites) if sites is not None else self.sites("hook_resid_post")
        cache = ActivationCache()

        def save(act, name):
            cache[name] = act.detach()

        hooks = [(s, save) for s in sites]
        layers = [self.site(s).layer for s in sites]
        stop = stop_early and sites and all(L is not None for L in layers)
        if stop:
            def halt(act, name):
                raise _StopForward
            hooks.append((f"blocks.{max(layers)}.hook_resid_post", halt))   # fires after the layer's inner sites
        logits = None
        with self.hooks(hooks):
            try:
                logits = self.forward(inputs, logits_to_keep)
            except _StopForward:
                pass
        cache.tokens, cache.mask = inputs["input_ids"], inputs["attention_mask"]
        return logits, cache

    def unembed(self, resid: torch.Tensor) -> torch.Tensor:
        """Final norm + unembedding of residual-stream vectors [..., d_model] -> [..., vocab]."""
        norm = self.module(self.family.final_norm)
        logits = self.module(self.family.unembed)(norm(resid))
        softcap = getattr(self.hf.config, "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return logits

    @torch.no_grad()
    def generate(self, prompts: str | Sequence[str], max_new_tokens: int = 16) -> list[str]:
        """Greedy continuations (decoded new text only), batched with left padding."""
        inputs = self.tokenize(prompts, padding_side="left")
        out = self.hf.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                               pad_token_id=self.tokenizer.pad_token_id)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in new]

    def logit_lens(self, prompt: str, k: int = 5, answer: str | None = None, remote: bool | str = False):
        """Logit lens at the last position of `prompt` over every layer (see workbench.models.lens)."""
        from workbench.models.lens import logit_lens
        return logit_lens(self, prompt, k=k, answer=answer, remote=remote)

    # ------------------------------------------------------------------ other backends
    def tl(self):
        """A TransformerLens HookedTransformer over the same weights (no processing), cached."""
        if self._tl is None:
            from workbench.models.backends import to_transformer_lens
            self._tl = to_transformer_lens(self)
        return self._tl

    def nnsight(self):
        """An nnsight LanguageModel wrapping this very HF model (shared weights), cached."""
        if self._nnsight is None:
            from workbench.models.backends import to_nnsight
            self._nnsight = to_nnsight(self)
        return self._nnsight

    def __repr__(self) -> str:
        i = self.info
        return (f"HookedModel({i.model_id}: {i.architecture}, {i.n_layers} layers, d_model={i.d_model}, "
                f"d_mlp={i.d_mlp}, {i.n_params / 1e6:.1f}M params)")
