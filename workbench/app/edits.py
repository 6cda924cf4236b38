"""The Edit page: a method's hyper-parameter fields, typed form values, fitting under the model's lock,
the edit's summary and the probe table before / after."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

from workbench.app.core import edited, model_lock


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
