"""Causal tracing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT", ROME).

Corrupt the subject's token embeddings with Gaussian noise, then restore
the clean hidden state at one (layer, position) at a time and measure how much of the answer's
probability comes back. The 'mlp' and 'attn' variants restore a window of MLP / attention
outputs around the layer instead of the whole residual stream.

The noise level follows ROME (`collect_embedding_std` in kmeng01/rome): `noise` (3 by default)
times the std of the embedding module's *outputs* over the subject's tokens, i.e. of what the
first block actually reads. Gemma multiplies token embeddings by sqrt(d_model) inside its
embedding module, so the std of the weight matrix would make the corruption ~sqrt(d) too weak
there. The MLP trace at the subject's
last token is what picks the layer for ROCR (EasyEdit hard-codes it per model instead).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

KIND_SITE = {"resid": "hook_resid_post", "mlp": "hook_mlp_out", "attn": "hook_attn_out"}


@dataclass
class Trace:
    prompt: str
    answer: str
    kind: str
    tokens: list[str]
    subject_span: tuple[int, int]
    clean_prob: float
    corrupt_prob: float
    probs: list[list[float]] = field(default_factory=list)    # [n_layers][n_pos] restored answer prob
    noise_std: float | None = None                             # std of the Gaussian noise that was added

    @property
    def effects(self) -> torch.Tensor:
        """Indirect effect [n_layers, n_pos]: restored prob minus corrupted prob."""
        return torch.tensor(self.probs) - self.corrupt_prob

    def at_last_subject_token(self) -> list[float]:
        return self.effects[:, self.subject_span[1] - 1].tolist()

    def peak(self) -> tuple[int, int]:
        e = self.effects
        flat = int(e.argmax())
        return divmod(flat, e.shape[1])

    def to_dict(self) -> dict:
        return {**self.__dict__, "subject_span": list(self.subject_span)}

    @classmethod
    def from_dict(cls, d: dict) -> "Trace":
        return cls(**{**d, "subject_span": tuple(d["subject_span"])})

    def figure(self):
        import plotly.graph_objects as go
        labels = [f"{i}:{t}" + ("*" if self.subject_span[0] <= i < self.subject_span[1] else "")
                  for i, t in enumerate(self.tokens)]
        fig = go.Figure(go.Heatmap(z=self.effects.T.tolist(), y=labels, colorscale="Purples",
                                   colorbar_title="effect"))
        fig.update_layout(title=f"Causal trace ({self.kind}): {self.prompt!r} -> {self.answer!r}",
                          xaxis_title="layer", yaxis=dict(autorange="reversed"))
        return fig


def embedding_weight_std(model) -> float:
    """Std of the token-embedding matrix entries (NOT the noise scale: see `embedding_output_std`)."""
    return float(model.module(model.family.embed).weight.detach().float().std())


@torch.no_grad()
def embedding_output_std(model, texts, spans=None) -> float:
    """Std of the embedding module's outputs (after any scaling, e.g. Gemma's sqrt(d_model)),
    pooled over every token of `texts` or, with `spans` [(start, end), ...], over those positions
    of each text: ROME's `collect_embedding_std` (its noise is 3x this over the subjects)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    rows = []
    for i, text in enumerate(texts):
        ids = model.tokenizer(text, return_tensors="pt")["input_ids"].to(model.device)
        _, cache = model.run_with_cache({"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                                        ["hook_embed"], logits_to_keep=1, stop_early=False)
        emb = cache["hook_embed"][0].float()
        if spans is not None:
            s0, s1 = spans[i]
            emb = emb[s0:s1]
        rows.append(emb.reshape(-1).cpu())
    return float(torch.cat(rows).std())


def embedding_std(model, subjects=None) -> float:
    """Std of embedding outputs over `subjects` (each tokenized alone, as ROME does), or over
    the embeddings of the first 1024 vocabulary ids when none are given."""
    if subjects:
        return embedding_output_std(model, subjects)
    ids = torch.arange(min(1024, model.info.d_vocab), device=model.device)
    with torch.no_grad():
        return float(model.module(model.family.embed)(ids[None]).float().std())


@torch.no_grad()
def trace(model, prompt: str, subject: str, answer: str, kind: str = "resid", window: int | None = None,
          samples: int = 5, noise: float | None = None, seed: int = 0, progress: bool = False,
          last_subject_only: bool = False, noise_std: float | None = None) -> Trace:
    """One causal trace. The subject's embeddings get Gaussian noise of std `noise` (default 3)
    x the std of the clean embedding outputs at the subject's tokens in this prompt, or of std
    `noise_std` when given (absolute, e.g. 3 * `embedding_std(model, subjects)` pooled over
    many subjects, as ROME does). `window` (default 1 for resid, max(1, n_layers // 6) for mlp/attn) restores
    layers [L - window//2, L + window//2]; `samples` noise draws are averaged. With
    `last_subject_only` only the subject's last token is restored (the column ROCR needs; the
    other columns of the grid are then the corrupted probability, i.e. zero effect)."""
    if kind not in KIND_SITE:
        raise ValueError(f"trace kind {kind!r} is not one of {sorted(KIND_SITE)}")
    from workbench.locate.common import answer_text
    tok = model.tokenizer
    window = window or (1 if kind == "resid" else max(1, model.n_layers // 6))
    ids = tok(prompt)["input_ids"]
    target = tok(answer_text(prompt, answer), add_special_tokens=False)["input_ids"][0]
    s0, s1 = model.subject_span(prompt, subject)
    n_pos, n_layers = len(ids), model.n_layers
    base = torch.tensor([ids], device=model.device)
    mask = torch.ones_like(base)
    site_kind = KIND_SITE[kind]
    clean_sites = [f"blocks.{L}.{site_kind}" for L in range(n_layers)]
    clean_logits, clean = model.run_with_cache({"input_ids": base, "attention_mask": mask},
                                               ["hook_embed"] + clean_sites, logits_to_keep=1)
    if noise_std is None:
        noise_std = (noise if noise is not None else 3.0) * float(clean["hook_embed"][0, s0:s1].float().std())
    std = float(noise_std)
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(samples, s1 - s0, model.info.d_model, generator=gen) * std

    def corrupt_embed(act, _site):
        out = act.clone()
        out[:, s0:s1] += eps.repeat(out.shape[0] // samples, 1, 1).to(device=act.device, dtype=act.dtype)
        return out

    def prob(inputs, hooks) -> torch.Tensor:
        with model.hooks(hooks):
            logits = model.forward(inputs, logits_to_keep=1)
        return logits[:, -1].float().softmax(-1)[:, target]

    clean_p = float(clean_logits[0, -1].float().softmax(-1)[target])
    rep = {"input_ids": base.repeat(samples, 1), "attention_mask": mask.repeat(samples, 1)}
    corrupt_p = float(prob(rep, [("hook_embed", corrupt_embed)]).mean())

    # one batch per layer: row block p restores position p (samples rows each)
    positions = [s1 - 1] if last_subject_only else list(range(n_pos))
    n_rest = len(positions)
    batch = {"input_ids": base.repeat(samples * n_rest, 1), "attention_mask": mask.repeat(samples * n_rest, 1)}
    rows = torch.tensor(positions).repeat_interleave(samples)
    grid = []
    for L in tqdm(range(n_layers), desc=f"causal trace ({kind})", disable=not progress, leave=False):
        lo, hi = max(0, L - window // 2), min(n_layers, L - window // 2 + window)

        def restore(act, site, _rows=rows):
            out = act.clone()
            out[torch.arange(len(_rows)), _rows] = clean[site][0, _rows].to(device=act.device, dtype=act.dtype)
            return out

        hooks = [("hook_embed", corrupt_embed)] + [(clean_sites[j], restore) for j in range(lo, hi)]
        p = prob(batch, hooks).reshape(n_rest, samples).mean(-1)
        row = [round(corrupt_p, 5)] * n_pos
        for j, pos in enumerate(positions):
            row[pos] = round(float(p[j]), 5)
        grid.append(row)
    return Trace(prompt, answer, kind, [tok.decode([i]) for i in ids], (s0, s1), clean_p, corrupt_p, grid,
                 noise_std=std)


def trace_concept(model, concept, kinds: tuple[str, ...] = ("resid", "mlp", "attn"), max_probes: int = 4,
                  samples: int = 5, seed: int = 0, progress: bool = True,
                  last_subject_only: bool = False) -> dict[str, list[Trace]]:
    """Trace the concept's forget probes that contain the subject verbatim (non-chat first)."""
    from workbench.concepts import render_prompt
    probes = [p for p in concept.forget if concept.subject in p.prompt]
    probes.sort(key=lambda p: p.form == "chat")
    probes = probes[:max_probes]
    if not probes:
        raise ValueError(f"concept {concept.name!r}: no forget prompt contains the subject {concept.subject!r}")
    out: dict[str, list[Trace]] = {k: [] for k in kinds}
    total = len(kinds) * len(probes)
    with tqdm(total=total, desc=f"causal tracing {concept.name}", disable=not progress) as bar:
        for kind in kinds:
            for p in probes:
                out[kind].append(trace(model, render_prompt(model, p), concept.subject, p.answers[0], kind=kind,
                                       samples=samples, seed=seed, last_subject_only=last_subject_only))
                bar.update()
    return out


def layer_profile(traces: list[Trace]) -> list[float]:
    """Mean indirect effect at the subject's last token, per layer, normalised by the clean-corrupt gap."""
    rows = []
    for t in traces:
        gap = max(t.clean_prob - t.corrupt_prob, 1e-6)
        rows.append(torch.tensor(t.at_last_subject_token()) / gap)
    return torch.stack(rows).mean(0).tolist()


def best_layer(traces: list[Trace], lo_frac: float = 0.0, hi_frac: float = 1.0) -> int:
    """The layer whose restoration at the last subject token recovers most (within a band)."""
    prof = torch.tensor(layer_profile(traces))
    n = len(prof)
    lo, hi = int(lo_frac * n), max(int(hi_frac * n), int(lo_frac * n) + 1)
    return lo + int(prof[lo:hi].argmax())
