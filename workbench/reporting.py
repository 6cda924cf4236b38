"""Standalone HTML reports: plotly figures (and an optional plain-text table) on one page.

plotly.js is embedded once, with the first figure, so the page works offline. Written atomically
(a temporary sibling, then rename). The CLI, the benchmark, the demo and the analyses all write
their pages through `write_html`.
"""
from __future__ import annotations

import html
from pathlib import Path

__all__ = ["write_html"]


def write_html(path, figures, title: str = "Concept Workbench report", table: str | None = None) -> Path:
    """Write `figures` (plotly) to a standalone page at `path`; returns the path."""
    from workbench.paths import atomic_path
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                     f"</head><body>\n<h1>{html.escape(title)}</h1>\n")
            if table:
                fh.write(f"<pre>{html.escape(table)}</pre>\n")
            for i, fig in enumerate(figures):
                fh.write(fig.to_html(full_html=False, include_plotlyjs=i == 0))
            fh.write("</body></html>\n")
    return Path(path)
