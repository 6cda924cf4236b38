"""The Locate page: which kinds of evidence can run (optional ones need their optional dependency),
`run_locate` one kind at a time with progress, and the tables, heat maps and SAE snippets it shows."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from workbench.app.core import edited

BASE_LOCATE_KINDS = {"concept_vectors": "concept vectors", "directions": "residual directions",
                     "tracing": "causal tracing"}
# optional evidence: (the optional dependency it needs or None, the report's Evidence kind, locate()'s kind names)
OPTIONAL_EVIDENCE = {
    "sae": ("sae_lens", "sae_feature", ()),                            # locate(..., sae=folder)
    "routing": (None, "expert_routing", ("expert_routing",)),
    "weights": (None, "weight_attribution", ("weights",)),
}
INSTALL_HINT = {"sae_lens": "pip install sae-lens==6.54.12"}
OPTIONAL_LABELS = {"sae": "SAE features", "routing": "MoE routing", "weights": "weight attribution"}


def optional_evidence_status(model) -> dict[str, str | None]:
    """For each optional evidence kind: None when it can run, else why not (shown in its tab)."""
    out = {}
    for key, (dependency, _, _) in OPTIONAL_EVIDENCE.items():
        if dependency is not None and importlib.util.find_spec(dependency) is None:
            out[key] = (f"not available: it needs {dependency}, which is not installed "
                        f"({INSTALL_HINT.get(dependency, 'pip install ' + dependency)})")
        elif key == "routing" and not model.info.n_experts:
            out[key] = f"not available for this model: {model.model_id} is dense (no experts to route to)"
        else:
            out[key] = None
    return out


def locate_kinds(model) -> dict[str, str]:
    """Kinds the Locate page offers: the three built-in ones plus the optional ones present."""
    status = optional_evidence_status(model)
    base = {k: v for k, v in BASE_LOCATE_KINDS.items() if not (k == "concept_vectors" and model.info.n_experts)}
    return {**base, **{k: OPTIONAL_LABELS[k] for k, why in status.items() if why is None}}


def default_locate_kinds(model) -> set[str]:
    """Ticked by default: the built-in kinds (MoE: routing instead of concept vectors)."""
    kinds = set(BASE_LOCATE_KINDS)
    if model.info.n_experts:
        kinds = (kinds - {"concept_vectors"}) | ({"routing"} if optional_evidence_status(model)["routing"] is None else set())
    return kinds


def available_saes(model) -> list[Path]:
    """Trained SAE folders for this model under WORKBENCH_HOME/sae (`workbench.sae.store.saes_for`)."""
    from workbench.sae.store import saes_for
    return saes_for(model)


def run_locate(model, concept, kinds: list[str], trace_probes: int = 1, validate_top: int = 6, on_step=None,
               sae: str | Path | None = None):
    """Run `locate` one kind at a time (so the page can show progress) and fuse the reports.

    on_step(i, n, kind) is called before each kind. `sae`: the SAE folder for the 'sae' kind."""
    from workbench.locate import LocalizationReport, locate
    if not kinds:
        raise ValueError("choose at least one kind of evidence")
    unknown = [k for k in kinds if k not in BASE_LOCATE_KINDS and k not in OPTIONAL_EVIDENCE]
    if unknown:
        raise ValueError(f"unknown evidence kind(s) {unknown}; known: {list(BASE_LOCATE_KINDS) + list(OPTIONAL_EVIDENCE)}")
    if "sae" in kinds and not sae:
        raise ValueError("SAE features: choose a trained SAE folder (train one with `workbench sae train MODEL`)")
    fused = LocalizationReport(model.model_id, concept.name, meta={"timings": {}})
    with edited(model):
        for i, kind in enumerate(kinds):
            if on_step:
                on_step(i, len(kinds), kind)
            names = (kind,) if kind in BASE_LOCATE_KINDS else OPTIONAL_EVIDENCE[kind][2]
            part = locate(model, concept, kinds=names, trace_probes=trace_probes, validate_top=validate_top,
                          progress=False, sae=sae if kind == "sae" else None)
            fused.add_evidence(part.evidence)
            fused.profiles.update(part.profiles)
            fused.traces += part.traces
            fused.meta["timings"].update(part.meta.get("timings", {}))
            fused.meta.update({k: v for k, v in part.meta.items() if k != "timings"})
            if kind in OPTIONAL_EVIDENCE and not any(e.kind == OPTIONAL_EVIDENCE[kind][1] for e in part.evidence):
                fused.meta.setdefault("unavailable", {})[kind] = f"locate() produced no {OPTIONAL_EVIDENCE[kind][1]} evidence"
    if on_step:
        on_step(len(kinds), len(kinds), None)
    return fused


def concept_vector_rows(report, n: int = 20) -> list[dict]:
    rows = []
    for e in report.ranked("concept_vector")[:n]:
        rows.append({"site": e.site, "layer": e.layer, "score": round(e.score, 4),
                     "causal effect": None if e.causal_effect is None else round(e.causal_effect, 4),
                     "forget drop": e.details.get("forget_drop"), "retain drop": e.details.get("retain_drop"),
                     "top tokens": " ".join(repr(t) for t in e.details.get("top_tokens", [])[:8])})
    return rows


def direction_rows(report) -> list[dict]:
    return [{"layer": e.layer, "probe accuracy": round(e.details.get("probe_accuracy", float("nan")), 4),
             "separation": round(e.score, 4)} for e in report.evidence if e.kind == "residual_direction"]


def evidence_rows(report, kind: str, n: int = 30) -> list[dict]:
    """Generic table of one evidence kind (used for SAE / routing / weight attribution)."""
    rows = []
    for e in report.ranked(kind)[:n]:
        row = {"site": e.site, "layer": e.layer, "score": round(float(e.score), 5),
               "causal effect": None if e.causal_effect is None else round(float(e.causal_effect), 5)}
        for k, v in e.details.items():
            if isinstance(v, (int, float, str, bool)) or v is None:
                row[k] = v
            elif isinstance(v, (list, tuple)) and len(v) <= 12 and all(isinstance(x, (int, float, str)) for x in v):
                row[k] = ", ".join(str(x) for x in v)
        rows.append(row)
    return rows


def direction_figure(report):
    import plotly.graph_objects as go
    rows = direction_rows(report)
    fig = go.Figure(go.Scatter(x=[r["layer"] for r in rows], y=[r["probe accuracy"] for r in rows],
                               mode="lines+markers", name="probe accuracy"))
    fig.update_layout(title="Residual direction: leave-one-out probe accuracy by layer", xaxis_title="layer",
                      yaxis_title="accuracy", yaxis_range=[0, 1.05])
    return fig


def trace_figures(report) -> list:
    from workbench.locate.tracing import Trace
    return [Trace.from_dict(t).figure() for t in report.traces]


def evidence_heatmap(report, kind: str, title: str, value: str = "score"):
    """Layer x (expert | module | feature) heat map of one evidence kind, coloured by the evidence
    score or by `details[value]` (e.g. routing's affinity_forget vs affinity_retain).

    Columns come from details["expert"], details["module"] or the site's last part."""
    import plotly.graph_objects as go
    items = [e for e in report.evidence if e.kind == kind and e.layer is not None]
    if not items:
        return None
    def col(e):
        for key in ("expert", "module", "feature", "unit"):
            if key in e.details:
                return str(e.details[key])
        if e.site.startswith("blocks."):
            return e.site.split(".", 2)[-1]
        parts = e.site.split(".")                          # raw HF name: what follows the layer index
        idx = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        rest = [p for p in parts[idx + 1:] if p not in ("weight", "bias")] if idx is not None else parts
        return ".".join(rest) or e.site
    cols = list(dict.fromkeys(col(e) for e in items))
    layers = sorted({e.layer for e in items})
    z = [[None] * len(cols) for _ in layers]
    for e in items:
        v = e.score if value == "score" else e.details.get(value)
        z[layers.index(e.layer)][cols.index(col(e))] = None if v is None else float(v)
    fig = go.Figure(go.Heatmap(z=z, x=cols, y=layers, colorscale="Viridis"))
    fig.update_layout(title=title, yaxis_title="layer")
    return fig


def snippet_html(tokens: list[str], acts: list[float]) -> str:
    """Tokens as HTML spans shaded by activation (max of the snippet = full colour); escaped."""
    import html
    top = max([a for a in acts if a is not None] + [1e-12])
    spans = []
    for t, a in zip(tokens, acts):
        alpha = max(0.0, min(1.0, (a or 0.0) / top))
        spans.append(f"<span title='{a:.3f}' style='background: rgba(255,120,0,{alpha:.2f}); "
                     f"border-radius: 3px; white-space: pre'>{html.escape(t)}</span>")
    return "<div style='font-family: monospace; line-height: 1.9'>" + "".join(spans) + "</div>"


def sae_snippets(report, n_features: int = 5) -> list[dict]:
    """[{"feature", "score", "causal effect", "promotes", "suppresses", "snippets": [html]}] for the
    top SAE-feature evidence that carries top-activating snippets."""
    out = []
    for e in report.ranked("sae_feature")[:n_features]:
        snips = [snippet_html(s["tokens"], s["acts"]) for s in e.details.get("snippets") or []
                 if isinstance(s, dict) and "tokens" in s and "acts" in s]
        out.append({"feature": e.site, "score": e.score, "causal effect": e.causal_effect,
                    "promotes": e.details.get("top_tokens", []), "suppresses": e.details.get("suppressed_tokens", []),
                    "snippets": snips})
    return out
