"""The site grammar: one TransformerLens-style name for every place in a model, resolved to
the real HF modules of each family (no per-model YAML; one small table per family).

Activation sites
    hook_embed, blocks.{L}.hook_resid_pre|mid|post, blocks.{L}.hook_attn_out,
    blocks.{L}.hook_mlp_out, blocks.{L}.attn.hook_z, blocks.{L}.mlp.hook_post (dense MLPs:
    the down-projection input), blocks.{L}.mlp.router (MoE router logits, read only)
Weight sites (raw HF coordinates, no folding)
    embed.W_E, unembed.W_U, blocks.{L}.attn.W_Q|W_K|W_V|W_O, blocks.{L}.mlp.W_in|W_gate|W_out,
    blocks.{L}.mlp.W_router, blocks.{L}.mlp.experts.{E} (MoE), blocks.{L}.mlp.W_out[{i}]
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from workbench.errors import WorkbenchError

ACT_KINDS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out",
             "hook_mlp_out", "attn.hook_z", "mlp.hook_post", "mlp.router")
WEIGHT_KINDS = ("attn.W_Q", "attn.W_K", "attn.W_V", "attn.W_O", "mlp.W_in", "mlp.W_gate",
                "mlp.W_out", "mlp.W_router")


class SiteError(WorkbenchError, KeyError):
    """A site name that does not exist in this model; the message lists the nearest valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


@dataclass(frozen=True)
class Family:
    """Where a family keeps things. Paths are relative to the causal-LM module or a layer."""
    name: str
    layers: str = "model.layers"
    embed: str = "model.embed_tokens"
    final_norm: str = "model.norm"
    unembed: str = "lm_head"
    attn: str = "self_attn"
    o_proj: str = "self_attn.o_proj"
    q_proj: str | None = "self_attn.q_proj"
    k_proj: str | None = "self_attn.k_proj"
    v_proj: str | None = "self_attn.v_proj"
    mlp: str = "mlp"
    w_in: str | None = "mlp.up_proj"
    w_gate: str | None = "mlp.gate_proj"
    w_out: str | None = "mlp.down_proj"
    mid_norm: str = "post_attention_layernorm"      # its input is resid_mid
    attn_out: str | None = None                     # module whose output is added to the residual
    mlp_out: str | None = None                      # (None: the attn / mlp module itself)
    conv1d: bool = False                            # GPT-2 stores weights as [in, out]
    router: str | None = None                       # MoE router module
    experts: str | None = None                      # fused experts module
    shared_expert: str | None = None

    @property
    def is_moe(self) -> bool:
        return self.router is not None


LLAMA = Family("llama")
GEMMA3 = Family("gemma3", mid_norm="pre_feedforward_layernorm", attn_out="post_attention_layernorm",
                mlp_out="post_feedforward_layernorm")
GPT2 = Family("gpt2", layers="transformer.h", embed="transformer.wte", final_norm="transformer.ln_f",
              attn="attn", o_proj="attn.c_proj", q_proj=None, k_proj=None, v_proj=None,
              w_in="mlp.c_fc", w_gate=None, w_out="mlp.c_proj", mid_norm="ln_2", conv1d=True)
_MOE = dict(w_in=None, w_gate=None, w_out=None, router="mlp.gate", experts="mlp.experts")
MIXTRAL = Family("mixtral", **_MOE)
QWEN2_MOE = Family("qwen2_moe", shared_expert="mlp.shared_expert", **_MOE)
QWEN3_MOE = Family("qwen3_moe", **_MOE)
OLMOE = Family("olmoe", **_MOE)

FAMILIES: dict[str, Family] = {
    "llama": LLAMA, "mistral": LLAMA, "qwen2": LLAMA, "qwen3": LLAMA, "smollm3": LLAMA,
    "gemma3": GEMMA3, "gemma3_text": GEMMA3, "gpt2": GPT2,
    "mixtral": MIXTRAL, "qwen2_moe": QWEN2_MOE, "qwen3_moe": QWEN3_MOE, "olmoe": OLMOE,
}


def family_for(config) -> Family:
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise ValueError(f"model_type {model_type!r} has no site table; supported: {sorted(FAMILIES)}")
    return FAMILIES[model_type]


_SITE_RE = re.compile(
    r"^(?:(?P<embed>hook_embed|embed\.W_E|unembed\.W_U)"
    r"|blocks\.(?P<layer>\d+)\.(?:"
    r"(?P<act>hook_resid_pre|hook_resid_mid|hook_resid_post|hook_attn_out|hook_mlp_out|attn\.hook_z|mlp\.hook_post|mlp\.router)"
    r"|(?P<weight>attn\.W_[QKVO]|mlp\.W_in|mlp\.W_gate|mlp\.W_out|mlp\.W_router)(?:\[(?P<row>\d+)\])?"
    r"|mlp\.experts\.(?P<expert>\d+)))$")


@dataclass(frozen=True)
class Site:
    """A parsed site name."""
    name: str
    kind: str                # e.g. "hook_resid_post", "mlp.W_out", "experts", "hook_embed"
    layer: int | None = None
    index: int | None = None  # value-vector row or expert number

    @property
    def is_weight(self) -> bool:
        return self.kind.startswith(("attn.W_", "mlp.W_", "embed.", "unembed.")) or self.kind == "experts"


def parse_site(name: str, valid: list[str] | None = None) -> Site:
    """Parse a site name; with `valid`, unknown names raise SiteError with the nearest ones."""
    match = _SITE_RE.match(name.strip()) if isinstance(name, str) else None
    if match is None or (valid is not None and _canonical(match, name) not in valid):
        hint = difflib.get_close_matches(str(name), valid or _example_sites(), n=5, cutoff=0.5)
        raise SiteError(f"unknown site {name!r}" + (f"; nearest valid: {', '.join(hint)}" if hint else
                                                     "; see `workbench info MODEL` for the list"))
    if match["embed"]:
        return Site(name, match["embed"])
    layer = int(match["layer"])
    if match["act"]:
        return Site(name, match["act"], layer)
    if match["weight"]:
        row = match["row"]
        if row is not None and match["weight"] != "mlp.W_out":
            raise SiteError(f"site {name!r}: a [row] index is only defined for mlp.W_out (value vectors)")
        return Site(name, match["weight"], layer, int(row) if row is not None else None)
    return Site(name, "experts", layer, int(match["expert"]))


def _canonical(match: re.Match, name: str) -> str:
    """Name used for membership in the valid list (value-vector rows checked separately)."""
    if match["row"] is not None:
        return name[: name.index("[")]
    return name


def _example_sites() -> list[str]:
    return ["hook_embed", "embed.W_E", "unembed.W_U"] + [f"blocks.0.{k}" for k in ACT_KINDS + WEIGHT_KINDS]


def list_sites(family: Family, n_layers: int, n_experts: int = 0) -> list[str]:
    """Every valid site name for a model (value-vector rows are not enumerated)."""
    out = ["hook_embed", "embed.W_E", "unembed.W_U"]
    for layer in range(n_layers):
        kinds = ["hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
                 "attn.hook_z", "attn.W_O"]
        if family.q_proj:
            kinds += ["attn.W_Q", "attn.W_K", "attn.W_V"]
        if family.w_out:
            kinds += ["mlp.hook_post", "mlp.W_in", "mlp.W_out"] + (["mlp.W_gate"] if family.w_gate else [])
        if family.is_moe:
            kinds += ["mlp.router", "mlp.W_router"] + [f"mlp.experts.{e}" for e in range(n_experts)]
        out += [f"blocks.{layer}.{k}" for k in kinds]
    return out
