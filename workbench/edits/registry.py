"""Explicit registry of edit methods: name -> (config dataclass, fit function).

Every method is `fit(model, concept, report=None, config) -> Edit`; `fit_edit(name, model, concept,
report=None, **hyper)` builds the config from keyword hyper-parameters (unknown ones are an error)
and hands the method the concept's FIT view (workbench.concepts.fit): inside a method,
`concept.forget` / `concept.retain` are fit data, never evaluation probes.
Registration raises on duplicates (as SAELens' registry does).
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

from workbench.edits.base import Edit, Timer


@dataclass
class EditConfig:
    """Base class of every method's hyper-parameters."""
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EditConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown hyper-parameter(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
        return cls(**d)


@dataclass(frozen=True)
class Method:
    name: str
    config_cls: type[EditConfig]
    fit: Callable[..., Edit]
    summary: str = ""


_REGISTRY: dict[str, Method] = {}
# modules that register methods when imported (lazy: a broken optional one breaks only itself)
_PROVIDERS = {"ablate": "workbench.edits.ablate", "rocr": "workbench.edits.rocr",
              "ga": "workbench.edits.unlearn", "graddiff": "workbench.edits.unlearn",
              "npo": "workbench.edits.unlearn", "simnpo": "workbench.edits.unlearn",
              "wagle": "workbench.edits.wagle", "uoe": "workbench.edits.uoe", "rmu": "workbench.edits.rmu", "sae-clamp": "workbench.edits.sae_clamp",
              "uce": "workbench.diffusion.uce", "rece": "workbench.diffusion.rece"}


def register(name: str, config_cls: type[EditConfig], summary: str = ""):
    """Decorator registering `fit(model, concept, report, config) -> Edit` under `name`."""
    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"edit method {name!r} is already registered")
        _REGISTRY[name] = Method(name, config_cls, fn, summary)
        return fn
    return deco


def methods() -> list[str]:
    """Registered methods and those whose provider module is present."""
    present = {n for n, mod in _PROVIDERS.items() if importlib.util.find_spec(mod) is not None}
    return sorted(present | set(_REGISTRY))


def get_method(name: str) -> Method:
    if name not in _REGISTRY and name in _PROVIDERS:
        try:
            importlib.import_module(_PROVIDERS[name])
        except ModuleNotFoundError as exc:
            raise ValueError(f"edit method {name!r} is not available: {exc}") from exc
    if name not in _REGISTRY:
        raise ValueError(f"unknown edit method {name!r}; available: {', '.join(methods())}")
    return _REGISTRY[name]


def _fit_views(model, concept):
    """A concept (or list of them) -> the fit view(s) a method is allowed to see, and provenance."""
    from workbench.concepts.fit import fit_view
    if isinstance(concept, (list, tuple)):
        if not concept:
            raise ValueError("fit_edit needs at least one concept")
        views = [fit_view(model, c) for c in concept]
        return views, {v.name: v.extra["fit_provenance"] for v in views}
    view = fit_view(model, concept)
    return view, view.extra["fit_provenance"]


def fit_edit(name: str, model, concept, report=None, **hyper) -> Edit:
    """Fit method `name` on `concept`; records hyper-parameters, seed and wall time in the Edit.

    The method never sees the concept's evaluation probes: it gets `fit_view(model, concept)`
    (workbench.concepts.fit), whose forget/retain are fit data (the concept file's `fit` block or
    data derived from the unedited model), and `edit.provenance["fit"]` records where they came
    from (overlap with evaluation: 0). A LocalizationReport located on evaluation probes is not
    passed on (the method re-locates on the fit data); one located on the fit view is.
    """
    method = get_method(name)
    config = method.config_cls.from_dict(hyper)
    with Timer() as t:
        view, fit_prov = _fit_views(model, concept)
        report_note = None
        if report is not None and not (getattr(report, "meta", None) or {}).get("fit_view"):
            report, report_note = None, "ignored: located on evaluation probes (the method used fit data instead)"
        edit = method.fit(model, view, report, config)
    edit.edit_seconds = t.seconds
    edit.hyper = {**config.to_dict(), **edit.hyper}
    edit.seed = config.seed
    edit.concept = edit.concept or (concept.name if not isinstance(concept, (list, tuple))
                                    else "+".join(c.name for c in concept))
    edit.provenance = {**(edit.provenance or {}), "fit": fit_prov}
    if report_note:
        edit.provenance["report"] = report_note
    return edit
