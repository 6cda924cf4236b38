"""Plotly figures for diffusion erasure reports (used by the CLI's --html and the dashboard page)."""
from __future__ import annotations


def alignment_figure(report: dict):
    """Per K/V matrix: distance of the erased concept's keys/values to the guide's, before/after."""
    import plotly.graph_objects as go
    rows = report["alignment"]["per_matrix"]
    labels = [f"{r['matrix']} ({r['concept']})" if len(report.get("erase", [])) > 1 else r["matrix"] for r in rows]
    fig = go.Figure([go.Bar(name="before", x=labels, y=[r["to_guide_before"] for r in rows]),
                     go.Bar(name="after", x=labels, y=[r["to_guide_after"] for r in rows])])
    fig.update_layout(barmode="group", title=f"{report.get('method', '')}: ‖K/V(erased) − K/V(guide)‖ / ‖K/V(guide)‖",
                      yaxis_title="relative distance to guide", xaxis_tickangle=-45, height=420)
    return fig


def movement_figure(report: dict):
    """How far each prompt's keys/values moved: erased vs preserved vs empty vs held-out."""
    import plotly.graph_objects as go
    mv = report["movement"]
    names = ["erased"] + [f"preserve: {p}" for p in mv["preserved"]] + ["empty prompt"] + \
        [f"held-out: {p}" for p in mv["held_out"]]
    vals = [mv["erased"]] + list(mv["preserved"].values()) + [mv["empty_prompt"]] + list(mv["held_out"].values())
    colors = ["crimson"] + ["seagreen"] * len(mv["preserved"]) + ["gray"] + ["steelblue"] * len(mv["held_out"])
    fig = go.Figure(go.Bar(x=names, y=vals, marker_color=colors))
    fig.update_layout(title="K/V movement ‖W'c − Wc‖ / ‖Wc‖ (mean over matrices)", yaxis_title="relative change",
                      xaxis_tickangle=-30, height=420)
    return fig


def weight_figure(report: dict):
    """Rank and relative Frobenius norm of ΔW per matrix."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    rows = report["weight_change"]["per_matrix"]
    x = [r["matrix"] for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("rank(ΔW)", "‖ΔW‖ / ‖W‖"))
    fig.add_trace(go.Bar(x=x, y=[r["rank"] for r in rows], name="rank"), 1, 1)
    fig.add_trace(go.Bar(x=x, y=[r["rel_fro"] for r in rows], name="relative norm"), 1, 2)
    fig.update_layout(showlegend=False, height=380, title="weight change per cross-attention matrix")
    return fig


def recovery_figure(report: dict):
    """RECE: recovery residual of the closed-form embedding before each epoch (higher = safer)."""
    import plotly.graph_objects as go
    epochs = report.get("rece_epochs") or []
    if not epochs:
        return None
    y = [sum(e["recovery_before"]) / len(e["recovery_before"]) for e in epochs]
    y.append(sum(report["recovery"]["residual"]) / len(report["recovery"]["residual"]))
    fig = go.Figure(go.Scatter(x=list(range(len(y))), y=y, mode="lines+markers"))
    fig.update_layout(title="RECE: recovery residual of the derived embedding (0 = concept regenerated)",
                      xaxis_title="epoch (0 = after UCE)", yaxis_title="‖W'c' − Wc‖ / ‖Wc_g − Wc‖", height=360)
    return fig


def image_grid_figure(prompts: list[str], before: list, after: list, title: str = "before / after"):
    """Images (numpy [H, W, 3] in 0..1) as a 2-row grid."""
    import numpy as np
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    n = len(prompts)
    fig = make_subplots(rows=2, cols=n, subplot_titles=[f"before: {p}" for p in prompts] + [f"after: {p}" for p in prompts])
    for i in range(n):
        for r, imgs in ((1, before), (2, after)):
            fig.add_trace(go.Image(z=(np.clip(imgs[i], 0, 1) * 255).astype("uint8")), r, i + 1)
    fig.update_layout(title=title, height=420)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def report_figures(report: dict) -> list:
    figs = [alignment_figure(report), movement_figure(report), weight_figure(report), recovery_figure(report)]
    return [f for f in figs if f is not None]
