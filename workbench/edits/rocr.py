"""ROCR — Rank-One Concept Redirection (Ye, Zhang, Wu 2025, "LLM Unlearning Should Be
Form-Independent", arXiv 2506.07795), as published, plus the workbench's earlier ROME variant.

What the official code does (Acruxos/ORT, read at 38cc704), step by step: docs/rocr.md, "The reference".

This implementation (`update="alphaedit"`, the published update; `update="rome"`: the earlier
workbench form ΔW = R (KᵀC⁻¹K)⁻¹KᵀC⁻¹, exact on the keys):
* layers: `layer_from="family"` uses the published relative depth of the model's family (table
  LAYER_RULES: first = round(f·n), count = round(s·n); SmolLM2, model_type llama, 30 layers: 4, 5, 6);
  "depth" uses `depth`; "trace" the MLP causal trace (report or traced now); `layer` fixes the first.
* contexts (`contexts`): "chat" (the 6 published chat contexts, user turn "<starter> <subject>."),
  "plain" (12 generic templates), "both" (default); plus, with `use_forget_prompts`, the forget
  probes' prompts up to the subject. Inside `fit_edit` a concept's forget probes are its FIT probes
  (fit view), never evaluation probes. Texts end right after the subject (causal: the same keys).
* keys: "last" (published: subject's last token, mean over contexts) or "subject" (one key per
  subject token after the first, skipping the corpus's most frequent tokens; rank = that count).
* target: "unrelated" (published: z = the redirect subject's layer-output at the last edited layer,
  mean over the same contexts — ORT uses the first context only and reads z_current in a bare
  prompt; we read both in the same contexts), "residual" (earlier workbench target: each layer moves
  its own output 1/n of the way to the redirect's), "mlp_out" (v = W k_redirect). The redirect
  subject is `unrelated_subject` when given, else the concept's `redirect_to`.
* batch: many concepts in one edit (keys and residuals concatenated; one delta per layer, rank =
  all keys). Sequential: with `parent` (a patch fitted earlier and applied now), its stored keys K_p
  (patch aux tensors `rocr.keys.L`) are preserved: `preserve="exact"` (default) removes span(P K_p)
  from P so ΔW K_p = 0; "penalty" is ORT's K_p K_pᵀ term alone. The new patch stores K_p and its own
  keys (recomputed on the edited model, as ORT does), so a chain keeps every earlier batch.
* statistics: C on `cov_tokens` tokens of Shakespeare + KJV by default (`rocr_math.key_statistics`),
  cached per model; WordNet stays unseen as the battery's independent utility corpus (docs/rocr.md).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from workbench.edits.base import Edit, TensorDelta
from workbench.edits.registry import EditConfig, register
from workbench.edits.rocr_math import (COV_SOURCES, alphaedit_update, key_statistics, multi_key_update,  # noqa: F401
                                       null_space_projector, rank_one_update, rome_update, through_post_norm)

CONTEXTS = ["{}", "I have heard about {}", "Here is a fact about {}", "People often ask about {}",
            "Let me tell you about {}", "The story of {}", "My friend talked about {}", "A question about {}",
            "We read about {}", "Everyone knows {}", "In the news today: {}", "Notes on {}"]
CHAT_STARTERS = ["", "Please answer the question about", "Choose the best answer about", "Write the answer about",
                 "Tell me about", "Write something about"]           # ORT's get_context_templates
# model_type -> (first edited layer / n_layers, edited layers / n_layers), from ORT's rocr_hparams/*.json
LAYER_RULES = {"llama": (4 / 32, 3 / 32), "mistral": (4 / 32, 3 / 32), "qwen2": (4 / 28, 5 / 28),
               "qwen3": (4 / 28, 5 / 28), "phi3": (4 / 32, 5 / 32), "gemma3_text": (4 / 32, 3 / 32)}
CHOICES = {"update": ("alphaedit", "rome"), "keys": ("last", "subject"), "target": ("unrelated", "residual", "mlp_out"),
           "layer_from": ("family", "depth", "trace"), "contexts": ("chat", "plain", "both"),
           "preserve": ("exact", "penalty")}


@dataclass
class ROCRConfig(EditConfig):
    update: str = "alphaedit"         # "alphaedit": null-space form (published); "rome": C⁻¹ least-change form
    keys: str = "subject"             # "last": subject's last token; "subject": every subject token after the first
    target: str = "unrelated"         # "unrelated" (published), "residual" (per layer), "mlp_out"
    layer: int | None = None          # first edited layer; None: from `layer_from`
    layer_from: str = "family"        # "family": LAYER_RULES; "depth": round(depth * n_layers); "trace"
    depth: float = 0.15
    n_layers: int | None = None       # consecutive layers; None: the family rule's count
    contexts: str = "both"            # "chat" (published), "plain", "both"
    use_forget_prompts: bool = True   # also the (fit) forget prompts up to the subject
    unrelated_subject: str | None = None   # one redirect subject for every concept (ORT: "Donald Trump")
    L2: float = 1.0                   # alphaedit ridge
    nullspace_threshold: float = 2e-2  # alphaedit: eigenvalues of C below this span P
    preserve: str = "exact"           # parent keys: "exact" (ΔW K_p = 0) or "penalty" (ORT's term)
    parent: Any = None                # patch path, Patch or applied Edit fitted before, applied now (checked below)
    lambda_reg: float = 1e-2          # rome: C + lambda * mean(diag C) * I
    cov_tokens: int = 16384           # general-text tokens for C
    cov_seq_len: int = 128
    cov_sources: str = "shakespeare+kjv"   # WordNet glosses stay unseen: the battery's independent utility corpus
    trace_probes: int = 3
    skip_common: int = 100            # keys="subject": skip subject tokens among the corpus's N most frequent

    def __post_init__(self):
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"rocr: {name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if not 0 <= self.depth < 1:
            raise ValueError(f"rocr: depth={self.depth!r} must be in [0, 1)")
        for name in ("layer", "n_layers"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "layer" else 1)):
                raise ValueError(f"rocr: {name}={v!r} must be {'a non-negative' if name == 'layer' else 'a positive'} integer")
        if not (isinstance(self.cov_seq_len, int) and self.cov_seq_len > 0 and isinstance(self.cov_tokens, int)
                and self.cov_tokens >= self.cov_seq_len):
            raise ValueError(f"rocr: cov_tokens={self.cov_tokens!r} must be an int >= cov_seq_len={self.cov_seq_len!r} > 0")
        for name in ("L2", "nullspace_threshold"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) <= 0:
                raise ValueError(f"rocr: {name}={getattr(self, name)!r} must be a positive number")
        if not isinstance(self.lambda_reg, (int, float)) or self.lambda_reg < 0:
            raise ValueError(f"rocr: lambda_reg={self.lambda_reg!r} must be >= 0")
        bad = [s for s in str(self.cov_sources).split("+") if s not in COV_SOURCES]
        if bad or not self.cov_sources:
            raise ValueError(f"rocr: cov_sources={self.cov_sources!r}: use '+'-joined names from {', '.join(COV_SOURCES)}")
        if self.parent is not None and not isinstance(self.parent, (str, Path, Edit)) and not hasattr(self.parent, "manifest"):
            raise ValueError(f"rocr: parent must be a patch path, a Patch or an Edit, got {type(self.parent).__name__}")

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        p = self.parent
        d["parent"] = None if p is None else str(p) if isinstance(p, (str, Path)) else \
            str(getattr(p, "path", None) or f"<{type(p).__name__}>")
        return d


# ---------------------------------------------------------------------------------- layers
def family_rule(model) -> tuple[float, float, str]:
    mt = getattr(getattr(model.hf, "config", None), "model_type", None) or model.family.name
    f, s = LAYER_RULES.get(mt, LAYER_RULES["llama"])
    return f, s, mt if mt in LAYER_RULES else f"{mt} (no published rule: llama's)"


def choose_layer(model, concept, report=None, probes: int = 3) -> tuple[int, dict]:
    """The first ROCR layer from a LocalizationReport's MLP causal trace, else trace now."""
    from workbench.locate import tracing
    if report is not None:
        layer = report.best_layer("causal_trace_mlp") if hasattr(report, "best_layer") else None
        if layer is not None:
            return layer, {"source": "LocalizationReport", "evidence": "causal_trace_mlp"}
    profile = tracing.layer_profile(tracing.trace_concept(model, concept, kinds=("mlp",), max_probes=probes,
                                                          progress=False, last_subject_only=True)["mlp"])
    layer = int(torch.tensor(profile).argmax())
    return layer, {"source": "causal tracing (mlp, last subject token)", "profile": [round(x, 4) for x in profile]}


def edit_layers(model, concept, report, cfg: ROCRConfig) -> tuple[list[int], dict]:
    (f, s, rule), n = family_rule(model), model.n_layers
    count = cfg.n_layers or max(1, int(round(s * n)))
    if cfg.layer is not None:
        first, why = cfg.layer, {"source": "given"}
    elif cfg.layer_from == "trace":
        first, why = choose_layer(model, concept, report, cfg.trace_probes)
    elif cfg.layer_from == "depth":
        first, why = int(round(cfg.depth * n)), {"source": f"depth {cfg.depth} of {n} layers"}
    else:
        first, why = int(round(f * n)), {"source": f"family rule {rule}: first {f:.3f}, count {s:.3f} of {n} layers"}
    if not 0 <= first < n:
        raise ValueError(f"rocr: layer={first} is outside 0..{n - 1}")
    return list(range(first, min(n, first + count))), why


# ---------------------------------------------------------------------------------- contexts and activations
def chat_contexts(model) -> list[str]:
    """ORT's chat contexts: one user turn '<starter> {}.' in the model's chat template."""
    return [model.chat(f"{s} {{}}.") for s in CHAT_STARTERS]


def subject_texts(model, concept, cfg: ROCRConfig) -> list[str]:
    """Texts that end right after the subject (keys are read at subject tokens; causal)."""
    from workbench.concepts import render_prompt
    templates = (chat_contexts(model) if cfg.contexts in ("chat", "both") else []) + \
        (CONTEXTS if cfg.contexts in ("plain", "both") else [])
    texts = []
    for t in templates:
        at = t.index("{}")
        texts.append(t[:at] + concept.subject)
    if cfg.use_forget_prompts:
        for p in concept.forget:                  # inside fit_edit: the fit view's probes
            prompt = render_prompt(model, p)
            at = prompt.rfind(concept.subject)
            if at >= 0:
                texts.append(prompt[: at + len(concept.subject)])
    return list(dict.fromkeys(texts))


def _prefixes(model, concept, use_forget: bool) -> list[str]:
    """The plain contexts (+ forget prompts) — the earlier default, kept for callers."""
    return subject_texts(model, concept, ROCRConfig(contexts="plain", use_forget_prompts=use_forget))


_COMMON: dict = {}


def common_token_ids(model, n: int, n_tokens: int = 16384, seq_len: int = 128) -> set[int]:
    """The `n` most frequent token ids of the general-text train split (cached per tokenizer)."""
    if n <= 0:
        return set()
    key = (id(model.tokenizer), n, n_tokens, seq_len)
    if key not in _COMMON:
        from workbench.data.corpus import token_chunks
        ids = token_chunks(model.tokenizer, "train", n_tokens, seq_len).reshape(-1)
        counts = torch.bincount(ids, minlength=int(ids.max()) + 1)
        _COMMON[key] = set(counts.topk(min(n, int((counts > 0).sum()))).indices.tolist())
    return _COMMON[key]


@torch.no_grad()
def _acts(model, texts: list[str], sites: list[str], batch: int = 48) -> list[dict[str, torch.Tensor]]:
    """Per text: {site: [n_tokens, d]} (real tokens only); forward stops after the deepest site."""
    out = []
    for i in range(0, len(texts), batch):
        chunk = texts[i:i + batch]
        _, cache = model.run_with_cache(chunk, sites, logits_to_keep=1, stop_early=True)
        lens = cache.mask.sum(1).tolist()
        for j, n in enumerate(lens):
            out.append({s: cache[s][j, :n].float().cpu() for s in sites})
    return out


@torch.no_grad()
def _mean_at_last_token(model, texts: list[str], site: str) -> torch.Tensor:
    return torch.stack([a[site][-1] for a in _acts(model, texts, [site])]).mean(0)


def _span(model, text: str, subject: str) -> tuple[int, int]:
    """Token span of the subject at the end of `text` (by offsets; by prefix lengths as ORT does
    for tokenizers without offset mappings)."""
    try:
        return model.subject_span(text, subject)
    except (KeyError, TypeError, NotImplementedError):
        n = len(model.tokenizer(text)["input_ids"])
        return min(n - 1, len(model.tokenizer(text[: text.rfind(subject)].rstrip())["input_ids"])), n


class _Item:
    """One concept's texts and the subject token offsets its keys are read at."""

    def __init__(self, model, concept, cfg: ROCRConfig):
        self.concept = concept
        self.redirect = cfg.unrelated_subject or concept.redirect_to
        if not self.redirect:
            raise ValueError(f"concept {concept.name!r} has no redirect_to: ROCR needs a harmless target "
                             "(or set unrelated_subject)")
        texts = subject_texts(model, concept, cfg)
        spans = [_span(model, t, concept.subject) for t in texts]
        if cfg.keys == "last":
            self.texts, self.pos = texts, [[b - 1] for _a, b in spans]
            self.tokens = [model.tokenizer.decode([model.tokenizer(texts[-1])["input_ids"][spans[-1][1] - 1]])]
        else:
            lengths = [b - a for a, b in spans]
            n = max(set(lengths), key=lengths.count)
            keep = [i for i, ln in enumerate(lengths) if ln == n]
            ref = keep[-1]
            ids = model.tokenizer(texts[ref])["input_ids"][spans[ref][0]:spans[ref][1]]
            skip = common_token_ids(model, cfg.skip_common, cfg.cov_tokens, cfg.cov_seq_len)
            first = 1 if n > 1 else 0
            offsets = [j for j in range(first, n) if ids[j] not in skip or j == n - 1]
            self.texts = [texts[i] for i in keep]
            self.pos = [[spans[i][0] + o for o in offsets] for i in keep]
            self.tokens = [model.tokenizer.decode([ids[o]]) for o in offsets]
        self.red_texts = [t.replace(concept.subject, self.redirect) for t in self.texts]

    @property
    def m(self) -> int:
        return len(self.pos[0])


def _means(acts: list[dict], items: list[_Item], site: str) -> list[torch.Tensor]:
    """Per item: [m, d] mean over its texts of `site` at its key positions."""
    out, i = [], 0
    for it in items:
        rows = [acts[i + j][site][pos] for j, pos in enumerate(it.pos)]
        out.append(torch.stack(rows).mean(0))
        i += len(it.texts)
    return out


def _red_last(model, items: list[_Item], sites: list[str]) -> list[dict[str, torch.Tensor]]:
    acts = _acts(model, [t for it in items for t in it.red_texts], sites)
    out, i = [], 0
    for it in items:
        n = len(it.red_texts)
        out.append({s: torch.stack([a[s][-1] for a in acts[i:i + n]]).mean(0) for s in sites})
        i += n
    return out


# ---------------------------------------------------------------------------------- parent (sequential)
def _parent(cfg: ROCRConfig, model):
    """(preserved keys {layer: [d_in, p]}, stack record or None) of cfg.parent."""
    if cfg.parent is None:
        return {}, None
    from workbench.patches import stack
    p = cfg.parent
    if isinstance(p, Edit):
        edit, record = p, None
        if not p.applied_now:
            raise ValueError("rocr: parent edit is not applied; apply it, then fit on top of it")
    else:
        from workbench.patches.format import as_patch
        patch = as_patch(p)
        edit, record = patch.edit, stack.parent_record(patch, model)
    keys = {int(k.rsplit(".", 1)[1]): v for k, v in (edit.aux or {}).items() if k.startswith("rocr.keys.")}
    return keys, record


# ---------------------------------------------------------------------------------- fit
_P_CACHE: dict = {}


def _projector(stats: dict, L: int, threshold: float) -> torch.Tensor:
    # The entry holds U itself: an id() alone is reused once U is freed (another model's P came back).
    key = (id(stats["U"]), L, threshold)
    hit = _P_CACHE.get(key)
    if hit is None or hit[0] is not stats["U"]:
        if len(_P_CACHE) > 16:
            _P_CACHE.clear()
        hit = _P_CACHE[key] = (stats["U"], null_space_projector(stats["U"], stats["S"], threshold))
    return hit[1]


_STATS: dict = {}


def _stats(model, layers, cfg):
    from workbench.models.identity import model_content_id
    key = (model_content_id(model), tuple(layers), cfg.cov_tokens, cfg.cov_seq_len, cfg.cov_sources)
    if key not in _STATS:
        if len(_STATS) > 4:
            _STATS.clear()
        _STATS[key] = key_statistics(model, layers, cfg.cov_tokens, cfg.cov_seq_len, cfg.cov_sources.split("+"))
    return _STATS[key]


def fit_rocr(model, concept, report, cfg: ROCRConfig) -> Edit:
    if model.family.conv1d or model.family.is_moe:
        raise ValueError(f"rocr needs a dense gated/linear MLP; {model.family.name} is not supported yet")
    concepts = list(concept) if isinstance(concept, (list, tuple)) else [concept]
    if not concepts:
        raise ValueError("rocr: no concepts given")
    items = [_Item(model, c, cfg) for c in concepts]
    layers, why = edit_layers(model, concepts[0], report, cfg)
    preserved, record = _parent(cfg, model)
    stats = _stats(model, layers, cfg)
    z_site = f"blocks.{layers[-1]}.hook_resid_post"
    normed = model.family.mlp_out is not None and cfg.target != "mlp_out"        # Gemma: a norm after the MLP
    z_red = [r[z_site] for r in _red_last(model, items, [z_site])] if cfg.target == "unrelated" else None
    params = {L: model.param(f"blocks.{L}.mlp.W_out") for L in layers}
    originals, deltas, details, aux = {L: p.detach().clone() for L, p in params.items()}, [], [], {}
    try:
        for i, L in enumerate(layers):
            key_site, post, out = f"blocks.{L}.mlp.hook_post", f"blocks.{L}.hook_resid_post", f"blocks.{L}.hook_mlp_out"
            sites = list(dict.fromkeys([key_site, z_site if cfg.target == "unrelated" else post] + [out] * normed))
            acts = _acts(model, [t for it in items for t in it.texts], sites)
            Ks = _means(acts, items, key_site)                               # per item [m, d_mlp]
            W0 = params[L].detach().float().cpu()
            if cfg.target == "unrelated":
                cur = _means(acts, items, z_site)
                Rs = [(z[None, :] - c).T / (len(layers) - i) for z, c in zip(z_red, cur)]
            elif cfg.target == "residual":
                red = _red_last(model, items, [post])
                Rs = [(r[post][None, :] - c).T / len(layers) for r, c in zip(red, _means(acts, items, post))]
            else:
                red = _red_last(model, items, [key_site])
                Rs = [(W0 @ r[key_site])[:, None] - W0 @ k.T for r, k in zip(red, Ks)]
            K, R = torch.cat([k.T for k in Ks], 1), torch.cat(Rs, 1)          # [d_mlp, m], [d_model, m]
            if normed:                                                       # R: residual space -> down_proj output
                R = through_post_norm(W0 @ K, torch.cat([o.T for o in _means(acts, items, out)], 1), R,
                                      model._lmod(L, model.family.mlp_out))
            Kp = preserved.get(L)
            if cfg.update == "alphaedit":
                P = _projector(stats[L], L, cfg.nullspace_threshold)
                A, B = alphaedit_update(K, R, P, Kp, cfg.L2, cfg.preserve)
            else:
                A, B = rome_update(W0, stats[L]["C"], K, W0 @ K + R, cfg.lambda_reg, Kp)
            with torch.no_grad():
                params[L].data.copy_((W0 + A @ B).to(params[L].device, params[L].dtype))
            reached = (A.double() @ (B.double() @ K.double()))
            deltas.append(TensorDelta(model.weight_name(f"blocks.{L}.mlp.W_out"), "low_rank", tuple(W0.shape),
                                      str(params[L].dtype).replace("torch.", ""), A=A, B=B))
            details.append({"layer": L, "rank": int(A.shape[1]), "k_norm": float(K.norm(dim=0).mean()),
                            "target_norm": float(R.norm(dim=0).mean()),
                            "reached": float((reached * R.double()).sum() / R.double().pow(2).sum().clamp_min(1e-30)),
                            "preserved_keys": 0 if Kp is None else int(Kp.shape[1])})
            # ORT adds K Kᵀ of the edited model's keys to cache_c; layer L's keys depend only on the
            # layers before it, all updated by now, so they are this K
            aux[f"rocr.keys.{L}"] = (K if Kp is None else torch.cat([Kp.float(), K], 1)).contiguous()
        for L, K in preserved.items():
            aux.setdefault(f"rocr.keys.{L}", K.float().contiguous())
    finally:
        with torch.no_grad():
            for L, p in params.items():
                p.data.copy_(originals[L])
    provenance = {"layer_choice": why, "layers": layers, "update": cfg.update, "target": cfg.target,
                  "concepts": [c.name for c in concepts], "redirect_to": [it.redirect for it in items],
                  "n_contexts": [len(it.texts) for it in items], "key_tokens": [it.tokens for it in items],
                  "updates": details, "parent": record["parent"] if record else None}
    edit = Edit("rocr", model.model_id, deltas, concept="+".join(c.name for c in concepts), provenance=provenance)
    edit.aux = aux
    if record:
        edit.parent = record
    return edit


register("rocr", ROCRConfig, "rank-one concept redirection of MLP down projections (AlphaEdit null-space form)",
         batch=True)(fit_rocr)
