"""Plain functions behind the Streamlit dashboard (`dashboards/`): every number the pages show.

The pages only lay out widgets; everything they display comes from here or from the library
modules these functions call (models, locate, edits, verify, patches). Nothing here imports
Streamlit, so all of it is testable without a browser.

Sessions never see each other's edits: the dashboard shares one loaded model per process
(`st.cache_resource`) and never leaves it mutated. A session's edit lives in its own session
state as an *unapplied* `Edit`; every computation that needs the edited model runs inside
`edited(model, edit)`, which takes the model's lock and applies the edit scoped
(`with edit.applied(model)`), restoring the weights bit-exactly on exit, also on exceptions.
"""
from __future__ import annotations

import dataclasses
import json
import importlib.util
import threading
import typing
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

MAX_PROMPT_CHARS = 2000
MAX_NEW_TOKENS = 64
BASE_LOCATE_KINDS = {"concept_vectors": "concept vectors", "directions": "residual directions",
                     "tracing": "causal tracing"}
# optional evidence: (module that provides it, the report's Evidence kind, locate()'s kind names)
OPTIONAL_EVIDENCE = {
    "sae": ("workbench.locate.sae", "sae_feature", ()),               # locate(..., sae=folder)
    "routing": ("workbench.locate.routing", "expert_routing", ("expert_routing",)),
    "weights": ("workbench.locate.weights", "weight_attribution", ("weights",)),
}
OPTIONAL_LABELS = {"sae": "SAE features", "routing": "MoE routing", "weights": "weight attribution"}

_LOCKS: dict[int, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


# ---------------------------------------------------------------------------- input checks
def check_prompt(prompt: str, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """A non-empty prompt of at most `max_chars` characters, or ValueError saying what is wrong."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt: write some text first")
    if len(prompt) > max_chars:
        raise ValueError(f"prompt: {len(prompt):,} characters is over the limit of {max_chars:,}")
    return prompt


def one_line(exc: BaseException) -> str:
    """The message an inline error shows: the exception's first line (its type when it has none)."""
    text = str(exc).strip()
    if isinstance(exc, KeyError) and text.startswith(("'", '"')):
        text = text.strip("'\"")
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------- models
def model_choices() -> list[str]:
    """Embedded model names plus built checkpoints (e.g. synthetic MoEs) under WORKBENCH_HOME."""
    from workbench.models import EMBEDDED
    return list(EMBEDDED) + [str(p) for p in built_models()]


def built_models() -> list[Path]:
    """HF folders (config.json) under WORKBENCH_HOME/{models/synthetic,moe,built} (built synthetic
    MoEs and the like) up to two levels deep; the dequantized embedded models are not listed."""
    from workbench.paths import home
    root = home()
    found = []
    for sub in ("models/synthetic", "moe", "built"):
        base = root / sub
        if base.is_dir():
            found += [p.parent for p in sorted(base.glob("*/config.json")) + sorted(base.glob("*/*/config.json"))]
    return found


def model_lock(model) -> threading.RLock:
    """One re-entrant lock per loaded model object, shared by every session of the process."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(id(model), threading.RLock())


@contextmanager
def edited(model, edit=None):
    """Hold the model's lock; inside, the model carries `edit` (if any). Restored on exit."""
    with model_lock(model):
        with (edit.applied(model) if edit is not None else nullcontext(model)):
            yield model


def model_summary(model) -> dict:
    """{"info": ModelInfo dict, "parameters": [(group, count)], "sites": {kind: count}, "n_sites"}."""
    groups: dict[str, int] = {}
    for name, p in model.hf.named_parameters():
        key = "transformer blocks" if ".layers." in name or ".h." in name else name.rsplit(".", 1)[0]
        groups[key] = groups.get(key, 0) + p.numel()
    kinds: dict[str, int] = {}
    names = model.sites()
    for s in names:
        kind = s.split(".", 2)[-1] if s.startswith("blocks.") else s
        if ".experts." in s:
            kind = "mlp.experts.{E}" + (s.split(".experts.", 1)[1].split(".", 1)[1:] or [""])[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return {"info": model.info.to_dict(), "parameters": list(groups.items()), "sites": kinds, "n_sites": len(names),
            "is_moe": bool(model.info.n_experts)}


@torch.no_grad()
def next_token_table(model, prompt: str, k: int = 10, edit=None) -> list[dict]:
    """Top-k next tokens after `prompt`: [{"rank", "token", "prob", "logit"}]."""
    check_prompt(prompt)
    with edited(model, edit):
        logits = model.forward(model.tokenize(prompt), logits_to_keep=1)[0, -1].float()
    probs = logits.softmax(-1)
    top = probs.topk(k)
    return [{"rank": r + 1, "token": model.tokenizer.decode([int(i)]), "prob": round(float(p), 4),
             "logit": round(float(logits[i]), 3)} for r, (p, i) in enumerate(zip(top.values, top.indices))]


def lens(model, prompt: str, k: int = 5, answer: str | None = None, edit=None):
    """The LogitLens of `prompt` (its `.figure()` is the heat map)."""
    check_prompt(prompt)
    with edited(model, edit):
        return model.logit_lens(prompt, k=k, answer=answer or None)


def generate_pair(model, prompt: str, edit=None, max_new_tokens: int = 24) -> dict:
    """Greedy continuation of `prompt` by the base model and, if given, the edited one."""
    check_prompt(prompt)
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max new tokens must be between 1 and {MAX_NEW_TOKENS}")
    with edited(model):
        out = {"base": model.generate(prompt, max_new_tokens=max_new_tokens)[0]}
    if edit is not None:
        with edited(model, edit):
            out["edited"] = model.generate(prompt, max_new_tokens=max_new_tokens)[0]
    return out


# ---------------------------------------------------------------------------- concepts
def check_concept_prompts(concepts, model=None, source: str = "concept") -> None:
    """The dashboard's prompt limits for concepts from any source (form, pasted or uploaded file):
    every prompt at most MAX_PROMPT_CHARS characters, and (with a model) within its context."""
    from workbench.concepts.schema import ConceptFileError
    for c in concepts:
        for part in ("forget", "retain"):
            for i, p in enumerate(getattr(c, part)):
                if len(p.prompt) > MAX_PROMPT_CHARS:
                    raise ConceptFileError(f"{len(p.prompt):,} characters is over the dashboard's limit of "
                                           f"{MAX_PROMPT_CHARS:,}", f"concept {c.name!r}: {part}[{i}].prompt", source)
    if model is not None:
        from workbench.concepts.limits import check_prompt_lengths
        check_prompt_lengths(model, list(concepts))


def concept_from_form(name: str, subject: str, redirect_to: str, forget: list[dict], retain: list[dict],
                      model=None):
    """A Concept from the form editor's fields; rows with an empty prompt are dropped, answers are
    comma- or '|'-separated. Raises ConceptFileError naming the field (e.g. 'forget[1].answers')."""
    from workbench.concepts.schema import Concept

    def text(value) -> str:                      # empty data-editor cells arrive as None or NaN
        return value if isinstance(value, str) else ""

    def probes(rows):
        out = []
        for row in rows or []:
            prompt = text(row.get("prompt"))
            if not prompt.strip():
                continue
            raw = row.get("answers")
            answers = raw if isinstance(raw, list) else [a.strip() for a in text(raw).replace("|", ",").split(",")]
            out.append({"prompt": prompt, "answers": [a for a in answers if a],
                        "form": text(row.get("form")).strip() or "completion"})
        return out

    d = {"name": name.strip(), "subject": subject, "forget": probes(forget), "retain": probes(retain)}
    if redirect_to and redirect_to.strip():
        d["redirect_to"] = redirect_to.strip()
    concept = Concept.from_dict(d)
    check_concept_prompts([concept], model, "form")
    return concept


def concept_rows(concept) -> tuple[list[dict], list[dict]]:
    """(forget rows, retain rows) for the form editor."""
    row = lambda p: {"prompt": p.prompt, "answers": ", ".join(p.answers), "form": p.form}
    return [row(p) for p in concept.forget], [row(p) for p in concept.retain]


def parse_concept_text(text: str | bytes, source: str = "pasted concept file", model=None):
    """Concepts from JSON Lines text or uploaded bytes; errors name the source, line and field.
    The same prompt limits as the form editor apply (`check_concept_prompts`)."""
    from workbench.concepts.files import parse_concepts
    concepts = parse_concepts(text, source=source)
    check_concept_prompts(concepts, model, source)
    return concepts


# ---------------------------------------------------------------------------- locate
def optional_evidence_status(model) -> dict[str, str | None]:
    """For each optional evidence kind: None when it can run, else why not (shown in its tab)."""
    out = {}
    for key, (module, _, _) in OPTIONAL_EVIDENCE.items():
        if importlib.util.find_spec(module) is None:
            out[key] = f"not built yet: {module} is not part of this installation"
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


# ---------------------------------------------------------------------------- edits
def method_fields(name: str) -> list[dict]:
    """Hyper-parameters of a method with their defaults and types: [{"name", "default", "type"}]."""
    from workbench.edits import get_method
    cls = get_method(name).config_cls
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out.append({"name": f.name, "default": default, "type": _type_name(hints.get(f.name, str))})
    return out


def _type_name(tp) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if args else tp
    return getattr(base, "__name__", str(base))


def coerce_hyper(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Form values -> hyper-parameters that differ from the defaults, typed. Text 'None'/'' means
    None for optional fields. Raises ValueError naming the field."""
    fields = {f["name"]: f for f in method_fields(name)}
    out = {}
    for key, raw in values.items():
        if key not in fields:
            raise ValueError(f"{name}: unknown hyper-parameter {key!r}; known: {sorted(fields)}")
        f = fields[key]
        val = raw
        if isinstance(raw, str):
            text = raw.strip()
            if text in ("", "None", "none"):
                val = None
            elif f["type"] == "int":
                try:
                    val = int(text)
                except ValueError:
                    raise ValueError(f"{name}.{key}: {text!r} is not an integer") from None
            elif f["type"] == "float":
                try:
                    val = float(text)
                except ValueError:
                    raise ValueError(f"{name}.{key}: {text!r} is not a number") from None
            elif f["type"] == "bool":
                val = text.lower() in ("1", "true", "yes")
            else:
                val = text
        if val != f["default"]:
            out[key] = val
    return out


def fit(model, method: str, concept, report=None, hyper: dict | None = None):
    """Fit an edit under the model's lock; returns the (unapplied) Edit."""
    from workbench.edits import fit_edit
    with edited(model):
        edit = fit_edit(method, model, concept, report, **(hyper or {}))
    if edit.applied_now:                                 # a method must hand back an unapplied edit
        with model_lock(model):
            edit.revert(model)
    return edit


def edit_summary(edit) -> dict:
    return {"method": edit.method, "concept": edit.concept, "params changed": edit.params_changed(),
            "tensors": len(edit.deltas), "delta kinds": sorted({d.kind for d in edit.deltas}),
            "seconds": None if edit.edit_seconds is None else round(edit.edit_seconds, 2),
            "hyper": dict(edit.hyper)}


def probe_table(model, concept, edit=None, max_new_tokens: int = 8) -> list[dict]:
    """Every forget and retain probe scored on the base model and (if given) the edited one."""
    from workbench.verify.probes import score_probes
    with edited(model):
        before = score_probes(model, concept.probes, max_new_tokens=max_new_tokens)
    after = None
    if edit is not None:
        with edited(model, edit):
            after = score_probes(model, concept.probes, max_new_tokens=max_new_tokens)
    rows = []
    n_f = len(concept.forget)
    for i, b in enumerate(before):
        row = {"set": "forget" if i < n_f else "retain", "form": b.form, "prompt": b.prompt,
               "answer": b.answers[0], "hit before": b.hit, "p before": round(b.prob, 4),
               "output before": b.continuation}
        if after is not None:
            a = after[i]
            row.update({"hit after": a.hit, "p after": round(a.prob, 4), "output after": a.continuation})
        rows.append(row)
    return rows


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
