"""The LocalizationReport: every kind of evidence about where a concept lives, fused.

Each piece of evidence names a site (site grammar), its kind, a score and, where measured, a
causal effect. Per-layer profiles of every kind sit side by side (the layer x evidence heat map)
and `agreement()` says how well the kinds agree on the layers. SAE features, expert routing and
weight attribution add themselves through `add_evidence` / `add_profile` with their own kinds.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

KINDS = ("concept_vector", "residual_direction", "causal_trace_resid", "causal_trace_mlp", "causal_trace_attn",
         "sae_feature", "expert_routing", "weight_attribution")


@dataclass
class Evidence:
    site: str
    kind: str
    score: float
    layer: int | None = None
    causal_effect: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class LocalizationReport:
    model: str
    concept: str
    evidence: list[Evidence] = field(default_factory=list)
    profiles: dict[str, list[float]] = field(default_factory=dict)   # kind -> per-layer score
    traces: list[dict] = field(default_factory=list)                 # Trace.to_dict()
    meta: dict[str, Any] = field(default_factory=dict)

    def add_evidence(self, items: list[Evidence]) -> None:
        self.evidence.extend(items)

    def add_profile(self, kind: str, values: list[float]) -> None:
        self.profiles[kind] = [float(v) for v in values]

    def ranked(self, kind: str | None = None) -> list[Evidence]:
        """Evidence sorted by causal effect (where measured) then score."""
        items = [e for e in self.evidence if kind is None or e.kind == kind]
        return sorted(items, key=lambda e: (e.causal_effect is None, -(e.causal_effect or 0.0), -e.score))

    def best_layer(self, kind: str) -> int | None:
        prof = self.profiles.get(kind)
        return None if not prof else int(torch.tensor(prof).argmax())

    def agreement(self) -> dict[str, float]:
        """Spearman rank correlation between the per-layer profiles of each pair of kinds."""
        out = {}
        kinds = sorted(self.profiles)
        for i, a in enumerate(kinds):
            for b in kinds[i + 1:]:
                pa, pb = torch.tensor(self.profiles[a]), torch.tensor(self.profiles[b])
                if len(pa) != len(pb) or len(pa) < 3:
                    continue
                ra, rb = pa.argsort().argsort().float(), pb.argsort().argsort().float()
                ra, rb = ra - ra.mean(), rb - rb.mean()
                out[f"{a}~{b}"] = round(float((ra @ rb) / (ra.norm() * rb.norm()).clamp_min(1e-12)), 4)
        return out

    def to_dict(self) -> dict:
        return {"model": self.model, "concept": self.concept, "evidence": [asdict(e) for e in self.evidence],
                "profiles": self.profiles, "traces": self.traces, "meta": self.meta,
                "agreement": self.agreement()}

    @classmethod
    def from_dict(cls, d: dict) -> "LocalizationReport":
        for key in ("model", "concept", "evidence", "profiles"):
            if key not in d:
                raise ValueError(f"localization report: missing key {key!r}")
        return cls(d["model"], d["concept"], [Evidence(**e) for e in d["evidence"]],
                   {k: list(v) for k, v in d["profiles"].items()}, list(d.get("traces", [])), dict(d.get("meta", {})))

    def figures(self) -> list:
        """Plotly figures: layer x evidence heat map (each row scaled to its max) and causal traces."""
        import plotly.graph_objects as go
        figs = []
        if self.profiles:
            kinds = list(self.profiles)
            z = []
            for k in kinds:
                t = torch.tensor(self.profiles[k])
                z.append((t / t.abs().max().clamp_min(1e-12)).tolist())
            fig = go.Figure(go.Heatmap(z=z, y=kinds, colorscale="RdBu", zmid=0, colorbar_title="scaled"))
            fig.update_layout(title=f"Where is {self.concept!r}? evidence by layer ({self.model})",
                              xaxis_title="layer")
            figs.append(fig)
        from workbench.locate.tracing import Trace
        figs += [Trace.from_dict(t).figure() for t in self.traces]
        return figs

    def summary(self, n: int = 10) -> str:
        lines = [f"LocalizationReport: {self.concept} in {self.model}"]
        for kind, prof in self.profiles.items():
            best = int(torch.tensor(prof).argmax())
            lines.append(f"  {kind:<22} best layer {best:>3}  (score {prof[best]:.3f})")
        lines.append(f"  agreement: {self.agreement()}")
        lines.append(f"  top evidence:")
        for e in self.ranked()[:n]:
            ce = f"{e.causal_effect:+.3f}" if e.causal_effect is not None else "   n/a"
            lines.append(f"    {e.site:<28} {e.kind:<20} score {e.score:7.3f}  causal {ce}  {e.details.get('top_tokens', '')}")
        return "\n".join(lines)
