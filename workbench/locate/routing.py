"""Expert routing in mixture-of-experts models: capture, expert attribution, routing drift.

Capture: a forward hook on every layer's router module (`mlp.gate` in the HF Mixtral, Qwen2-MoE,
Qwen3-MoE and OLMoE classes) records, per token and layer, the router logits, their softmax
g_{i,t}(l) (the router probabilities) and the experts selected (top-k). Layers whose MLP is dense
(Qwen-MoE `mlp_only_layers`, `decoder_sparse_step`) are skipped; shared experts are not routed
and never ranked.

Attribution follows UOE / SEUF (Zhuang et al., "SEUF: Is Unlearning One Expert Enough for
Mixture-of-Experts LLMs?", ACL 2025, arXiv 2411.18797): the affinity of expert i in layer l to a
data set is s_i(l) = mean over sequences of the mean over tokens of g_{i,t}(l). We compute it on
the concept's forget sequences and on its retain sequences, plus the selection frequency (share of
tokens routing to i in their top-k), and rank (layer, expert) pairs by forget affinity minus retain
affinity (`contrast="difference"`, default: what the concept engages more than its neighbours) or
by forget affinity alone (`contrast="none"`, the paper's rule).

Routing drift between two models (before / after an edit) is the share of top-k slots whose
expert changed, per layer and overall, on forget and on retain tokens, plus the mean total
variation between the router distributions. UOE reports that even a frozen router drifts, because
earlier layers change the router's inputs.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

__all__ = ["RoutingTrace", "ExpertScore", "moe_layers", "capture_routing", "router_logits_hook", "sequence_batch",
           "expert_attribution", "routing_drift", "routing_drift_for_edit", "add_routing_evidence", "selection_rate"]


def _hf(model):
    return getattr(model, "hf", model)


def moe_layers(model) -> list[int]:
    """Indices of the layers that have a router (the sparse MoE layers)."""
    fam = getattr(model, "family", None)
    if fam is None or not fam.is_moe:
        raise ValueError(f"{getattr(model, 'model_id', type(model).__name__)} is not a mixture-of-experts model")
    out = []
    for layer in range(model.n_layers):
        try:
            router = model.layer(layer).get_submodule(fam.router)
        except AttributeError:
            continue
        if getattr(router, "weight", None) is not None and router.weight.dim() == 2:
            out.append(layer)
    if not out:
        raise ValueError(f"{model.model_id}: no layer has a router module at '{fam.router}'")
    return out


def _top_k(model) -> int:
    return int(getattr(_hf(model).config, "num_experts_per_tok", 0) or 1)


@dataclass
class RoutingTrace:
    """Routing of one padded batch. probs/logits: [n_layers_moe, batch, pos, n_experts] (fp32);
    selected: [n_layers_moe, batch, pos, k]; mask: [batch, pos] (1 = real token); layers: the MoE
    layer index of each first-dim slot."""
    layers: list[int]
    logits: torch.Tensor
    probs: torch.Tensor
    selected: torch.Tensor
    mask: torch.Tensor
    tokens: torch.Tensor

    @property
    def n_experts(self) -> int:
        return int(self.probs.shape[-1])

    def selection_onehot(self) -> torch.Tensor:
        """[L, batch, pos, n_experts]: 1 where the expert is among the token's selected experts."""
        one = torch.zeros_like(self.probs)
        return one.scatter_(-1, self.selected, 1.0)

    def affinity(self) -> torch.Tensor:
        """s_i(l): mean over sequences of the per-sequence mean router prob [L, n_experts]."""
        return _seq_mean(self.probs, self.mask)

    def frequency(self) -> torch.Tensor:
        """Share of tokens (mean over sequences of the per-sequence share) selecting each expert [L, E]."""
        return _seq_mean(self.selection_onehot(), self.mask)

    def layer_slot(self, layer: int) -> int:
        if layer not in self.layers:
            raise ValueError(f"layer {layer} has no router (MoE layers: {self.layers})")
        return self.layers.index(layer)


def _seq_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x [L, B, T, E], mask [B, T] -> mean over sequences of the masked token mean [L, E]."""
    m = mask.to(x.dtype)[None, :, :, None]
    per_seq = (x * m).sum(2) / m.sum(2).clamp_min(1)                        # [L, B, E]
    return per_seq.mean(1)


@contextmanager
def router_logits_hook(model, layers: list[int] | None = None, keep_grad: bool = False):
    """Scoped hooks on the router modules: yields {layer: [logits [n_tokens, E], ...]} filled on
    every forward (logits keep their graph when keep_grad). Removed on exit, also on exceptions."""
    layers = moe_layers(model) if layers is None else layers
    store: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    handles = []

    def make(layer):
        def hook(_mod, _args, out):
            logits = out[0] if isinstance(out, tuple) else out
            store[layer].append(logits if keep_grad else logits.detach())
        return hook

    try:
        for layer in layers:
            handles.append(model.layer(layer).get_submodule(model.family.router).register_forward_hook(make(layer)))
        yield store
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def capture_routing(model, inputs: dict | list[str] | str, layers: list[int] | None = None) -> RoutingTrace:
    """Run `inputs` (a tokenized batch {input_ids, attention_mask} or prompts) once and record the
    routing of every MoE layer. Selected experts are the router's own top-k when it returns them
    (HF TopKRouter modules), else the top-k of its softmax."""
    if not isinstance(inputs, dict):
        inputs = model.tokenize(inputs)
    layers = moe_layers(model) if layers is None else list(layers)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    B, T = ids.shape
    k = _top_k(model)
    selected: dict[int, torch.Tensor] = {}
    handles = []

    def make(layer):
        def hook(_mod, _args, out):
            if isinstance(out, tuple) and len(out) >= 3 and out[2].dtype in (torch.int64, torch.int32):
                selected[layer] = out[2].detach().long()
        return hook

    try:
        for layer in layers:
            handles.append(model.layer(layer).get_submodule(model.family.router).register_forward_hook(make(layer)))
        with router_logits_hook(model, layers) as store:
            _hf(model)(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    logits = torch.stack([store[layer][-1].float().reshape(B, T, -1) for layer in layers])
    probs = torch.softmax(logits, dim=-1)
    sel = torch.stack([selected[layer].reshape(B, T, -1) if layer in selected else probs[i].topk(k, -1).indices
                       for i, layer in enumerate(layers)])
    return RoutingTrace(layers, logits, probs, sel, mask.detach(), ids.detach())


def sequence_batch(model, probes) -> dict:
    """Teacher-forced sequences (rendered prompt + first answer) of `probes`, as the unlearning
    losses see them (workbench.training.probe_batch)."""
    from workbench.training import probe_batch
    return probe_batch(model, probes)


def selection_rate(model, probes, layer: int, expert: int) -> float:
    """Share of the probes' tokens (prompt + answer) that route to `expert` in `layer`."""
    tr = capture_routing(model, sequence_batch(model, probes), layers=[layer])
    return float(tr.frequency()[0, expert])


# ------------------------------------------------------------------------------ attribution
@dataclass
class ExpertScore:
    layer: int
    expert: int
    score: float
    affinity_forget: float
    affinity_retain: float
    freq_forget: float
    freq_retain: float

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.mlp.experts.{self.expert}"


@dataclass
class ExpertAttribution:
    ranking: list[ExpertScore]
    layers: list[int]
    affinity_forget: torch.Tensor       # [L, E]
    affinity_retain: torch.Tensor
    freq_forget: torch.Tensor
    freq_retain: torch.Tensor
    contrast: str
    meta: dict = field(default_factory=dict)

    @property
    def top(self) -> ExpertScore:
        return self.ranking[0]

    def layer_profile(self, n_layers: int) -> list[float]:
        """Best score per layer (0 for dense layers), for LocalizationReport.add_profile."""
        prof = [0.0] * n_layers
        for s in self.ranking:
            prof[s.layer] = max(prof[s.layer], s.score)
        return prof

    def to_dict(self, top: int = 20) -> dict:
        return {"contrast": self.contrast, "layers": self.layers,
                "top": [{"site": s.site, **{k: round(v, 6) if isinstance(v, float) else v for k, v in vars(s).items()}}
                        for s in self.ranking[:top]], **self.meta}

    def figure(self):
        """Plotly heat map of the attribution score per (layer, expert)."""
        import plotly.graph_objects as go
        z = [[0.0] * self.affinity_forget.shape[1] for _ in self.layers]
        for s in self.ranking:
            z[self.layers.index(s.layer)][s.expert] = s.score
        fig = go.Figure(go.Heatmap(z=z, y=[f"layer {l}" for l in self.layers], colorscale="RdBu", zmid=0,
                                   colorbar_title="score"))
        fig.update_layout(title=f"Expert attribution ({self.contrast}): forget vs retain router affinity",
                          xaxis_title="expert")
        return fig


def expert_attribution(model, concept, contrast: str = "difference", probes: str = "all") -> ExpertAttribution:
    """Rank (layer, expert) pairs by their engagement on the concept's forget sequences.

    contrast: 'difference' (forget affinity - retain affinity, default) or 'none' (forget
    affinity only, SEUF's rule). probes: 'all' forget probes or a comma-separated list of forms.
    """
    if contrast not in ("difference", "none"):
        raise ValueError(f"contrast={contrast!r} must be 'difference' or 'none'")
    forget = _pick(concept.forget, probes)
    tf = capture_routing(model, sequence_batch(model, forget))
    tr = capture_routing(model, sequence_batch(model, concept.retain))
    af, ar, ff, fr = tf.affinity(), tr.affinity(), tf.frequency(), tr.frequency()
    score = af - ar if contrast == "difference" else af
    ranking = []
    for li, layer in enumerate(tf.layers):
        for e in range(tf.n_experts):
            ranking.append(ExpertScore(layer, e, float(score[li, e]), float(af[li, e]), float(ar[li, e]),
                                       float(ff[li, e]), float(fr[li, e])))
    ranking.sort(key=lambda s: -s.score)
    return ExpertAttribution(ranking, tf.layers, af, ar, ff, fr, contrast,
                             {"n_forget": len(forget), "n_retain": len(concept.retain), "probes": probes})


def _pick(probes, forms: str):
    if forms == "all":
        return list(probes)
    wanted = {f.strip() for f in forms.split(",") if f.strip()}
    out = [p for p in probes if p.form in wanted]
    if not out:
        raise ValueError(f"probes={forms!r}: no forget probe has one of these forms")
    return out


def add_routing_evidence(report, model, concept, contrast: str = "difference", top: int = 16) -> ExpertAttribution:
    """Add kind 'expert_routing' evidence (sites blocks.L.mlp.experts.E) and its per-layer profile
    to a LocalizationReport; returns the attribution."""
    from workbench.locate.report import Evidence
    att = expert_attribution(model, concept, contrast=contrast)
    report.add_profile("expert_routing", att.layer_profile(model.n_layers))
    report.add_evidence([Evidence(s.site, "expert_routing", s.score, s.layer, None,
                                  {"expert": s.expert, "affinity_forget": s.affinity_forget,
                                   "affinity_retain": s.affinity_retain, "freq_forget": s.freq_forget,
                                   "freq_retain": s.freq_retain, "contrast": contrast})
                         for s in att.ranking[:top]])
    report.meta["expert_attribution"] = att.to_dict(top)
    return att


# ------------------------------------------------------------------------------ drift
def routing_drift(a: RoutingTrace, b: RoutingTrace) -> dict:
    """Drift from trace a to trace b of the same inputs: share of top-k slots whose expert changed
    (per layer and mean), share of tokens whose top-1 changed, mean total variation of the router
    distribution, and the per-expert selection frequency change of the largest mover."""
    if a.tokens.shape != b.tokens.shape or not torch.equal(a.tokens, b.tokens) or a.layers != b.layers:
        raise ValueError("routing_drift needs two traces of the same inputs and layers")
    m = a.mask.bool()
    oa, ob = a.selection_onehot(), b.selection_onehot()
    k = a.selected.shape[-1]
    kept = (oa * ob).sum(-1) / k                                            # [L, B, T]
    changed = (1 - kept)[:, m]                                              # [L, n_tokens]
    top1 = (a.selected[..., 0] != b.selected[..., 0])[:, m].float()
    tv = 0.5 * (a.probs - b.probs).abs().sum(-1)[:, m]
    dfreq = b.frequency() - a.frequency()                                   # [L, E]
    flat = dfreq.abs().flatten().argmax()
    li, e = divmod(int(flat), dfreq.shape[1])
    return {"changed_share": float(changed.mean()), "top1_changed_share": float(top1.mean()),
            "tv_mean": float(tv.mean()), "n_tokens": int(m.sum()),
            "per_layer": {str(layer): {"changed_share": float(changed[i].mean()), "tv_mean": float(tv[i].mean())}
                          for i, layer in enumerate(a.layers)},
            "largest_frequency_change": {"site": f"blocks.{a.layers[li]}.mlp.experts.{e}",
                                         "before": float(a.frequency()[li, e]), "after": float(b.frequency()[li, e])}}


def routing_drift_for_edit(model, concept, edit) -> dict:
    """Routing drift on the concept's forget and retain sequences caused by `edit` (applied scoped)."""
    f_in, r_in = sequence_batch(model, concept.forget), sequence_batch(model, concept.retain)
    before = (capture_routing(model, f_in), capture_routing(model, r_in))
    with edit.applied(model):
        after = (capture_routing(model, f_in), capture_routing(model, r_in))
    return {"forget": routing_drift(before[0], after[0]), "retain": routing_drift(before[1], after[1])}
