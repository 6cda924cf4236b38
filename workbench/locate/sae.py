"""SAE features of a concept: which sparse-autoencoder features are selective for it.

Each text's activation of a feature is its maximum over real token positions (the first position,
an attention sink excluded from SAE training, is skipped). Concept texts are the forget prompts and
the prompts followed by their answers; control texts are the retain prompts (with answers) and
held-out corpus snippets. Selectivity of feature i:

    score_i = (rate_concept - rate_control) + (mean_concept - mean_control) / max_i

(rate: share of texts where it fires; mean: mean max-activation; max_i: its largest activation
over all these texts), in [-2, 2]. For the top features we add the top-activating held-out corpus
snippets with per-token activations, the decoder direction's promoted / suppressed tokens through
the unembedding (direct logit effect, as in Bricken et al. 2023), an activation histogram and,
optionally, a causal effect: the drop of the forget answers' probability minus that of the retain
answers when the feature alone is zeroed (SAE error added back). Features are named
`{sae_name}#{index}`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch

from workbench.locate.report import Evidence


@dataclass
class SAEFeature:
    name: str
    index: int
    site: str
    layer: int | None
    score: float
    rate_concept: float
    rate_control: float
    mean_concept: float
    mean_control: float
    causal_effect: float | None = None
    promoted: list[tuple[str, float]] = field(default_factory=list)
    suppressed: list[tuple[str, float]] = field(default_factory=list)
    snippets: list[dict] = field(default_factory=list)   # {"tokens": [...], "acts": [...], "max": float}
    histogram: dict = field(default_factory=dict)        # {"edges", "counts", "fire_rate", "n_tokens"}

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def text_activations(model, handle, texts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
    """Max-over-positions feature activations [n_texts, d_sae] (first position skipped)."""
    out = []
    for i in range(0, len(texts), batch_size):
        _, cache = model.run_with_cache(list(texts[i:i + batch_size]), sites=[handle.site], logits_to_keep=1)
        x, mask = cache[handle.site], cache.mask.bool().clone()
        mask[:, 0] = False
        f = handle.encode(x.float())
        f = torch.where(mask.unsqueeze(-1), f, torch.zeros((), dtype=f.dtype))
        out.append(f.amax(1))
    return torch.cat(out)


def selectivity(concept_acts: torch.Tensor, control_acts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-feature selectivity from max activations [n_concept, d_sae] and [n_control, d_sae]."""
    rate_c, rate_o = (concept_acts > 0).float().mean(0), (control_acts > 0).float().mean(0)
    mean_c, mean_o = concept_acts.mean(0), control_acts.mean(0)
    scale = torch.cat([concept_acts, control_acts]).amax(0).clamp_min(1e-6)
    return {"score": (rate_c - rate_o) + (mean_c - mean_o) / scale, "rate_concept": rate_c,
            "rate_control": rate_o, "mean_concept": mean_c, "mean_control": mean_o}


def concept_texts(model, concept) -> tuple[list[str], list[str]]:
    """(concept texts, control texts): probes, and probes followed by their first answer."""
    from workbench.locate.common import answer_text, probe_texts
    fp, fa = probe_texts(model, concept.forget)
    rp, ra = probe_texts(model, concept.retain)
    return (fp + [p + answer_text(p, a) for p, a in zip(fp, fa)],
            rp + [p + answer_text(p, a) for p, a in zip(rp, ra)])


def corpus_texts(model, n_tokens: int = 4096, seq_len: int = 64, split: str = "heldout") -> list[str]:
    from workbench.data.corpus import token_chunks
    chunks = token_chunks(model.tokenizer, split=split, n_tokens=n_tokens, seq_len=seq_len)
    return [model.tokenizer.decode(c) for c in chunks]


def rank_features(model, concept, handle, control_tokens: int = 2048) -> list[SAEFeature]:
    """All features with positive selectivity, best first (no snippets / histograms yet)."""
    c_texts, o_texts = concept_texts(model, concept)
    if control_tokens:
        o_texts += corpus_texts(model, control_tokens)
    s = selectivity(text_activations(model, handle, c_texts), text_activations(model, handle, o_texts))
    order = s["score"].argsort(descending=True)
    layer = model.site(handle.site).layer
    return [SAEFeature(handle.feature(int(i)), int(i), handle.site, layer, float(s["score"][i]),
                       float(s["rate_concept"][i]), float(s["rate_control"][i]), float(s["mean_concept"][i]),
                       float(s["mean_control"][i])) for i in order if s["score"][i] > 0]


@torch.no_grad()
def logit_effects(model, handle, index: int, k: int = 10) -> tuple[list, list]:
    """Top promoted / suppressed tokens of the decoder direction through the unembedding."""
    w_u = model.module(model.family.unembed).weight.float()          # [vocab, d_model]
    logits = w_u @ handle.sae.W_dec[index].float()
    top, bot = logits.topk(k), (-logits).topk(k)
    dec = model.tokenizer.decode
    return ([(dec([int(t)]), round(float(v), 4)) for v, t in zip(top.values, top.indices)],
            [(dec([int(t)]), round(-float(v), 4)) for v, t in zip(bot.values, bot.indices)])


@torch.no_grad()
def corpus_activations(model, handle, n_tokens: int = 8192, seq_len: int = 64, batch_size: int = 16):
    """(token ids [n, seq_len], feature activations [n, seq_len, d_sae] with position 0 zeroed)."""
    from workbench.data.corpus import token_chunks
    ids = token_chunks(model.tokenizer, split="heldout", n_tokens=n_tokens, seq_len=seq_len)
    acts = []
    for i in range(0, ids.shape[0], batch_size):
        b = ids[i:i + batch_size].to(model.device)
        _, cache = model.run_with_cache({"input_ids": b, "attention_mask": torch.ones_like(b)},
                                        sites=[handle.site], logits_to_keep=1)
        f = handle.encode(cache[handle.site].float())
        f[:, 0] = 0
        acts.append(f)
    return ids, torch.cat(acts)


def describe(model, handle, features: list[SAEFeature], n_tokens: int = 8192, n_snippets: int = 5,
             window: int = 12, bins: int = 20) -> None:
    """Fill snippets, logit effects and histograms of `features` in place (one corpus pass)."""
    ids, acts = corpus_activations(model, handle, n_tokens)
    dec = model.tokenizer.decode
    for feat in features:
        a = acts[..., feat.index]                                      # [n, seq]
        feat.promoted, feat.suppressed = logit_effects(model, handle, feat.index)
        fired = a[a > 0]
        feat.histogram = {"fire_rate": float((a > 0).float().mean()), "n_tokens": int(a[:, 1:].numel())}
        if fired.numel():
            counts, edges = torch.histogram(fired.float().cpu(), bins=bins)
            feat.histogram.update(counts=counts.int().tolist(), edges=[round(float(e), 4) for e in edges])
        flat = a.reshape(-1)
        top = flat.topk(min(n_snippets, int((flat > 0).sum()))).indices if (flat > 0).any() else []
        feat.snippets = []
        for t in top:
            row, pos = divmod(int(t), a.shape[1])
            lo, hi = max(1, pos - window), min(a.shape[1], pos + 4)
            feat.snippets.append({"tokens": [dec([int(x)]) for x in ids[row, lo:hi]],
                                  "acts": [round(float(v), 3) for v in a[row, lo:hi]],
                                  "max": round(float(a[row, pos]), 3), "at": pos - lo})


@torch.no_grad()
def causal_effects(model, concept, handle, features: list[SAEFeature]) -> None:
    """Per feature: zero it alone (error term kept); effect = forget prob drop - retain prob drop."""
    from workbench.locate.common import answer_logprobs, probe_texts
    from workbench.sae.clamp import edit_features
    fp, fa = probe_texts(model, concept.forget)
    rp, ra = probe_texts(model, concept.retain)
    base_f, base_r = answer_logprobs(model, fp, fa).exp(), answer_logprobs(model, rp, ra).exp()
    for feat in features:
        def zero(act, _name, i=feat.index):
            return edit_features(handle.sae, act, [i], mode="scale", scale=0.0)
        with model.hooks([(handle.site, zero)]):
            f, r = answer_logprobs(model, fp, fa).exp(), answer_logprobs(model, rp, ra).exp()
        feat.causal_effect = float((base_f - f).mean() - (base_r - r).mean())


def sae_concept_features(model, concept, handle, top: int = 8, causal: bool = True, n_tokens: int = 8192,
                         progress: bool = False) -> list[SAEFeature]:
    """The `top` most selective features of `concept` in one SAE, fully described."""
    feats = rank_features(model, concept, handle)[:top]
    describe(model, handle, feats, n_tokens=n_tokens)
    if causal:
        causal_effects(model, concept, handle, feats)
    return feats


def sae_evidence(features: list[SAEFeature]) -> list[Evidence]:
    return [Evidence(f.name, "sae_feature", f.score, f.layer, f.causal_effect,
                     {"sae_site": f.site, "index": f.index, "rate_concept": f.rate_concept,
                      "rate_control": f.rate_control, "mean_concept": f.mean_concept,
                      "mean_control": f.mean_control, "top_tokens": [t for t, _ in f.promoted[:10]],
                      "suppressed_tokens": [t for t, _ in f.suppressed[:10]], "snippets": f.snippets,
                      "histogram": f.histogram}) for f in features]


def feature_figure(feat: SAEFeature):
    """Plotly figure: activation histogram and the top snippet's per-token activations."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    fig = make_subplots(rows=1, cols=2, subplot_titles=("activation histogram (held-out, when firing)",
                                                        "top snippet, per-token activation"))
    h = feat.histogram
    if h.get("counts"):
        mids = [(a + b) / 2 for a, b in zip(h["edges"][:-1], h["edges"][1:])]
        fig.add_trace(go.Bar(x=mids, y=h["counts"], name="count"), row=1, col=1)
    if feat.snippets:
        s = feat.snippets[0]
        fig.add_trace(go.Bar(x=list(range(len(s["tokens"]))), y=s["acts"], text=s["tokens"], name="activation"),
                      row=1, col=2)
    fig.update_layout(title=f"{feat.name}: score {feat.score:.2f}; promotes {[t for t, _ in feat.promoted[:5]]}",
                      showlegend=False)
    return fig
