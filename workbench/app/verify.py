"""Verify and Patches pages of the dashboard: the verification battery under the model's lock,
its headline numbers and plotly figures, benchmark documents, and patches in memory (export to a
.zip download, read an upload with its checksum checked, fingerprint check, base-intact check).

Like the rest of `workbench.app` but `ui`, nothing here imports Streamlit.
"""
from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from workbench.app.core import edited


# ---------------------------------------------------------------------------- verify
def verify(model, concept, edit, utility_tokens: int = 1024, relearn: bool = False, fluency: bool = False,
           parametric: bool = True, leakage: bool = True, max_new_tokens: int = 8) -> dict:
    from workbench.verify.battery import verify_edit
    with edited(model):
        result = verify_edit(model, concept, edit, max_new_tokens=max_new_tokens, utility_tokens=utility_tokens,
                             relearn=relearn, parametric=parametric, leakage=leakage, fluency=fluency)
        if "routing_drift" not in result and model.info.n_experts:
            from workbench.locate.routing import routing_drift_for_edit
            result["routing_drift"] = routing_drift_for_edit(model, concept, edit)
    return result


def headline(result: dict) -> dict:
    """The few numbers the Verify page puts in metric cards."""
    f, r, p = result["forget"], result["retain"], result["perplexity"]
    out = {"forget hit": (f["hit_before"], f["hit_after"]), "retain hit": (r["hit_before"], r["hit_after"]),
           "forget prob": (f["prob_before"], f["prob_after"]), "retain prob": (r["prob_before"], r["prob_after"])}
    if p.get("before") is not None:
        out["perplexity"] = (p["before"], p["after"])
    if "kl" in result:
        out["KL to base"] = (0.0, result["kl"])
    return out


def verify_figures(result: dict) -> dict[str, Any]:
    """Named plotly figures of one verification result; absent parts are absent keys."""
    import plotly.graph_objects as go
    figs = {}
    groups = ["forget", "retain"]
    for m in ("hit", "prob"):
        fig = go.Figure([go.Bar(x=groups, y=[result[g][f"{m}_before"] for g in groups], name="before"),
                         go.Bar(x=groups, y=[result[g][f"{m}_after"] for g in groups], name="after")])
        fig.update_layout(barmode="group", title=f"Forget / retain {m} before and after", yaxis_range=[0, 1.05])
        figs[f"forget_retain_{m}"] = fig
    if result["perplexity"].get("before") is not None:
        p = result["perplexity"]
        figs["perplexity"] = go.Figure(go.Bar(x=["before", "after"], y=[p["before"], p["after"]]))
        figs["perplexity"].update_layout(title="Held-out perplexity")
    for key, title in (("by_form", "Forget hit by probe form"), ("retain_by_form", "Retain hit by probe form")):
        if result.get(key):
            forms = list(result[key])
            fig = go.Figure([go.Bar(x=forms, y=[result[key][f]["hit_before"] for f in forms], name="before"),
                             go.Bar(x=forms, y=[result[key][f]["hit_after"] for f in forms], name="after")])
            fig.update_layout(barmode="group", title=title, yaxis_range=[0, 1.05])
            figs[key] = fig
    pt = result.get("parametric_trace")
    if pt and pt.get("top_n"):
        keys = [("concept-vector score (mean)", pt["score_before"], pt["score_after"]),
                ("cosine to original (mean)", 1.0, pt["cosine_mean"]),
                (f"top-{pt['top_n']} signature kept", 1.0, pt["signature_remaining"])]
        fig = go.Figure([go.Bar(x=[k[0] for k in keys], y=[k[1] for k in keys], name="before"),
                         go.Bar(x=[k[0] for k in keys], y=[k[2] for k in keys], name="after")])
        fig.update_layout(barmode="group", title=f"Parametric trace ({pt['vectors_changed']} of the top-"
                                                 f"{pt['top_n']} concept vectors changed)")
        figs["parametric_trace"] = fig
    rl = result.get("relearning")
    if rl and "losses" in rl:
        fig = go.Figure(go.Scatter(y=rl["losses"], x=list(range(1, len(rl["losses"]) + 1)), mode="lines+markers"))
        fig.update_layout(title=f"Relearning attack: forget NLL per step (held-out forget hit "
                                f"{rl['before']['hit']:.2f} -> {rl['after']['hit']:.2f})",
                          xaxis_title="step", yaxis_title="loss")
        figs["relearning"] = fig
    drift = result.get("routing_drift")
    if isinstance(drift, dict):
        fig = go.Figure()
        for part in ("forget", "retain"):
            per_layer = (drift.get(part) or {}).get("per_layer")
            if isinstance(per_layer, dict) and per_layer:
                fig.add_trace(go.Bar(x=[int(k) for k in per_layer], name=part,
                                     y=[v.get("changed_share") for v in per_layer.values()]))
        if fig.data:
            fig.update_layout(barmode="group", title="Routing drift: share of top-k expert slots changed, by layer",
                              xaxis_title="layer", yaxis_title="changed share")
            figs["routing_drift"] = fig
    return figs


def read_bench(data: bytes | str, source: str = "benchmark JSON") -> dict:
    """A benchmark document (docs/report.md) from bytes/text; ValueError naming what is wrong."""
    from workbench.errors import UsageError
    from workbench.patches.format import strict_json
    from workbench.verify.battery import validate_report
    doc = strict_json(data, source, error=UsageError)     # UTF-8, bounded depth, no NaN / duplicate keys
    if not isinstance(doc, dict):
        raise UsageError(f"{source}: must be a JSON object with model, workbench_version, results")
    try:
        validate_report(doc)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    return doc


# ---------------------------------------------------------------------------- patches
UPLOAD_MAX_MB = 64                  # `workbench dashboard` sets server.maxUploadSize to this
PATCH_MAX_BYTES = 1 << 30           # an uploaded patch may inflate to at most this much


def download_name(text: str | None, suffix: str) -> str:
    """A safe file name for a download (letters, digits, `-`, `_`, `.`; never a path)."""
    import re
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", text or "").strip("_")[:60] or "concept"
    return f"{slug}{suffix}"


def patch_bytes(edit, model, result: dict | None = None) -> bytes:
    """The edit as a patch .zip (manifest + tensors), in memory, for a download button.

    The temporary file has a fixed name: no string from the edit (its method, its concept)
    ever becomes part of a path.
    """
    if result is not None:
        edit.report = result
    with tempfile.TemporaryDirectory() as tmp:
        path = edit.save(Path(tmp) / "patch.zip", model=model)
        return Path(path).read_bytes()


def read_patch_upload(data: bytes, name: str = "upload.zip", max_bytes: int = PATCH_MAX_BYTES) -> tuple[Any, str]:
    """Load an uploaded patch .zip: (Patch, inspect text). Checksums verified, members bounded
    (`max_bytes`); PatchError if bad. The upload is written under a fixed name in a private
    temporary folder, whatever the uploaded file was called."""
    from workbench.patches import PatchError, inspect_patch, load_patch
    if not data:
        raise PatchError(f"{name}: empty file")
    if len(data) > UPLOAD_MAX_MB << 20:
        raise PatchError(f"{name}: {len(data):,} bytes, more than the upload limit of {UPLOAD_MAX_MB} MB")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise PatchError(f"{name}: not a .zip patch (manifest.json + tensors.safetensors)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.zip"
        path.write_bytes(data)
        try:
            patch = load_patch(path, max_bytes=max_bytes)
            text = inspect_patch(path, max_bytes=max_bytes)
        except zipfile.BadZipFile as exc:                 # a damaged archive (e.g. a CRC error)
            raise PatchError(f"{name}: damaged .zip ({exc})") from None
        except PatchError as exc:
            raise PatchError(str(exc).replace(str(path), name)) from None
    patch.path = None
    return patch, text.replace(str(path), name)


def check_patch(patch, model) -> None:
    """Refuse (PatchError) a patch made for another base: fingerprints of the touched tensors."""
    from workbench.patches import check_base
    with edited(model):
        check_base(patch, model)


def base_intact(model, patch) -> bool:
    """True when every tensor the patch touches matches its base fingerprint (nothing applied)."""
    from workbench.patches import tensor_fingerprint
    with edited(model):
        module = getattr(model, "hf", model)
        return all(tensor_fingerprint(module.get_parameter(n)) == fp for n, fp in patch.manifest["fingerprints"].items())
