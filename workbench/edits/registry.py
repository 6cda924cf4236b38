"""Explicit registry of edit methods: name -> (config dataclass, fit function).

Every method is `fit(model, concept, report=None, config) -> Edit`; `fit_edit(name, model, concept,
report=None, **hyper)` builds the config from keyword hyper-parameters (unknown ones are an error)
and hands the method the concept's FIT view (workbench.concepts.fit): inside a method,
`concept.forget` / `concept.retain` are fit data, never evaluation probes.
Registration raises on duplicates (as SAELens' registry does).
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import math
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

from workbench.edits.base import Edit, Timer
from workbench.errors import HyperParameterError, NonFiniteError, check_known_fields


def _literal_choices(hint) -> tuple | None:
    """The allowed values of a `Literal[...]` annotation (also inside `X | None`), else None."""
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        choices = [c for a in typing.get_args(hint) for c in (_literal_choices(a) or ())]
        if choices:
            return tuple(choices) + ((None,) if type(None) in typing.get_args(hint) else ())
    return None


def check_literals(config) -> None:
    """Raise ValueError when a field annotated `Literal[...]` holds a value outside it.

    Runs when a config is built (`EditConfig.__post_init__`), so a typo such as `keys="subjet"`
    fails in one line naming the field and the allowed values, before any model work.
    """
    cls = type(config)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(config):
        choices = _literal_choices(hints.get(f.name))
        if choices is None:
            continue
        value = getattr(config, f.name)
        if not any(value == c and type(value) is type(c) for c in choices):
            shown = ", ".join(repr(c) for c in choices)
            near = difflib.get_close_matches(str(value), [str(c) for c in choices if c is not None], n=1)
            raise ValueError(f"{cls.__name__}: {f.name}={value!r} is not one of {shown}"
                             + (f" (did you mean {near[0]!r}?)" if near else ""))


@dataclass
class EditConfig:
    """Base class of every method's hyper-parameters.

    Fields annotated `Literal[...]` are checked when the config is built (`check_literals`); a
    subclass that defines its own `__post_init__` gets the check run before it.
    """
    seed: int = 0

    def __post_init__(self):
        check_literals(self)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__post_init__")
        if own is not None and not getattr(own, "_checks_literals", False):
            def __post_init__(self, _own=own):
                check_literals(self)
                _own(self)
            __post_init__._checks_literals = True
            cls.__post_init__ = __post_init__

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EditConfig":
        check_known_fields(cls, d, f"hyper-parameter(s) for {cls.__name__}:", HyperParameterError)
        check_hyper(cls, d)
        return cls(**d)


def _non_finite(value, where: str) -> str | None:
    stack = [(value, where)]
    while stack:
        v, w = stack.pop()
        if isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral) and not math.isfinite(float(v)):
            return w
        if isinstance(v, dict):
            stack.extend((x, f"{w}.{k}") for k, x in v.items())
        elif isinstance(v, (list, tuple)):
            stack.extend((x, f"{w}[{i}]") for i, x in enumerate(v))
    return None


def _accepts(hint, value) -> bool | None:
    """Whether `value` fits the type hint (None: a hint this check does not understand)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_accepts(h, value) for h in typing.get_args(hint)]
        return True if any(verdicts) else (None if None in verdicts else False)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return None


def check_hyper(cls: type, d: dict[str, Any]) -> None:
    """Refuse hyper-parameters that are not finite numbers (NaN, inf) or have the wrong type
    (`lambda_reg="abc"` for a float), naming the key; hints it does not understand are not checked."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:          # noqa: BLE001 — an unresolvable annotation: check finiteness only
        hints = {}
    for key, value in d.items():
        bad = _non_finite(value, key)
        if bad is not None:
            raise HyperParameterError(f"hyper-parameter {bad}={value!r} is not a finite number")
        hint = hints.get(key)
        if hint is not None and _accepts(hint, value) is False:
            name = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            raise HyperParameterError(f"hyper-parameter {key}={value!r}: expected {name}, got {type(value).__name__}")


@dataclass(frozen=True)
class Method:
    name: str
    config_cls: type[EditConfig]
    fit: Callable[..., Edit]
    summary: str = ""
    batch: bool = False               # fit accepts a list of concepts (one edit for all)
    kind: str = "lm"                  # the model kind it applies to: "lm" (language model) or "diffusion"


MODEL_KINDS = ("lm", "diffusion")


def model_kind(model) -> str:
    """"lm" for a language model (HookedModel), "diffusion" for a Stable Diffusion pipeline."""
    return "lm" if hasattr(model, "chat") else "diffusion"


_REGISTRY: dict[str, Method] = {}
# modules that register methods when imported (lazy: a broken optional one breaks only itself)
_PROVIDERS = {"ablate": "workbench.edits.ablate", "rocr": "workbench.edits.rocr",
              "ga": "workbench.edits.unlearn", "graddiff": "workbench.edits.unlearn",
              "npo": "workbench.edits.unlearn", "simnpo": "workbench.edits.unlearn",
              "wagle": "workbench.edits.wagle", "uoe": "workbench.edits.uoe", "rmu": "workbench.edits.rmu", "sae-clamp": "workbench.edits.sae_clamp",
              "uce": "workbench.diffusion.uce", "rece": "workbench.diffusion.rece"}
# the model kind of each provided method that is not "lm" (known before its module is imported; `register`
# checks that the module declares the same)
_PROVIDER_KINDS = {"uce": "diffusion", "rece": "diffusion"}


def register(name: str, config_cls: type[EditConfig], summary: str = "", batch: bool = False, kind: str = "lm"):
    """Decorator registering `fit(model, concept, report, config) -> Edit` under `name`, for models of
    `kind` ("lm" or "diffusion")."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"edit method {name!r}: kind={kind!r} is not one of {MODEL_KINDS}")
    if name in _PROVIDERS and _PROVIDER_KINDS.get(name, "lm") != kind:
        raise ValueError(f"edit method {name!r}: registered as kind {kind!r}, listed as {_PROVIDER_KINDS.get(name, 'lm')!r}")

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"edit method {name!r} is already registered")
        _REGISTRY[name] = Method(name, config_cls, fn, summary, batch, kind)
        return fn
    return deco


def methods(kind: str | None = None) -> list[str]:
    """Registered methods and those whose provider module is present; with `kind` ("lm",
    "diffusion", or a model: its kind), only the methods that apply to that kind of model."""
    if kind is not None and kind not in MODEL_KINDS:
        kind = model_kind(kind)
    present = {n for n, mod in _PROVIDERS.items() if importlib.util.find_spec(mod) is not None}
    names = present | set(_REGISTRY)
    if kind is not None:
        names = {n for n in names if (_REGISTRY[n].kind if n in _REGISTRY else _PROVIDER_KINDS.get(n, "lm")) == kind}
    return sorted(names)


def get_method(name: str) -> Method:
    if name not in _REGISTRY and name in _PROVIDERS:
        try:
            importlib.import_module(_PROVIDERS[name])
        except ModuleNotFoundError as exc:
            raise HyperParameterError(f"edit method {name!r} is not available: {exc}") from exc
    if name not in _REGISTRY:
        raise HyperParameterError(f"unknown edit method {name!r}; available: {', '.join(methods())}")
    return _REGISTRY[name]


def _fit_views(model, concept):
    """A concept (or list of them) -> the fit view(s) a method is allowed to see, and provenance."""
    from workbench.concepts.fit import fit_view
    if not hasattr(model, "chat"):       # a diffusion pipeline: its methods take prompts (erase/guide), not probes
        return concept, {"source": "not applicable (diffusion: prompts, no probes)", "overlap_with_eval": 0}
    if isinstance(concept, (list, tuple)):
        if not concept:
            raise ValueError("fit_edit needs at least one concept")
        views = [fit_view(model, c) for c in concept]
        return views, {v.name: v.extra["fit_provenance"] for v in views}
    view = fit_view(model, concept)
    return view, view.extra["fit_provenance"]


def check_finite_edit(edit: Edit, name: str) -> None:
    """Refuse a fitted edit whose delta tensors hold NaN or infinite values (NonFiniteError, one line)."""
    for d in edit.deltas:
        for fld, t in d.tensors().items():
            if t.is_floating_point() and t.numel() and not bool(t.isfinite().all()):
                raise NonFiniteError(f"edit method {name!r}: the fitted delta of {d.name} ({fld}) holds NaN or "
                                     "infinite values; refused (try other hyper-parameters)")


def fit_edit(name: str, model, concept, report=None, **hyper) -> Edit:
    """Fit method `name` on `concept` (or a list of concepts, for methods registered with batch=True:
    one edit for all); records hyper-parameters, seed and wall time in the Edit.

    The method never sees the concept's evaluation probes: it gets `fit_view(model, concept)`
    (workbench.concepts.fit), whose forget/retain are fit data (the concept file's `fit` block or
    data derived from the unedited model), and `edit.provenance["fit"]` records where they came
    from (overlap with evaluation: 0). A LocalizationReport located on evaluation probes is not
    passed on (the method re-locates on the fit data); one located on the fit view is.
    """
    method = get_method(name)
    if isinstance(concept, (list, tuple)):
        if not method.batch:
            raise ValueError(f"edit method {name!r} fits one concept at a time; got {len(concept)}")
        if not concept:
            raise ValueError("no concepts given")
    config = method.config_cls.from_dict(hyper)           # bad hyper-parameters fail first, before the model is read
    if method.kind != model_kind(model):
        raise HyperParameterError(f"edit method {name!r} applies to {method.kind} models; {model.model_id} is "
                                  f"a {'language model' if model_kind(model) == 'lm' else 'diffusion pipeline'} "
                                  f"(methods for it: {', '.join(methods(model_kind(model)))})")
    if method.kind == "lm":                               # one line before any allocation (workbench.concepts.limits)
        from workbench.concepts.limits import check_prompt_lengths
        check_prompt_lengths(model, list(concept) if isinstance(concept, (list, tuple)) else concept)
    with Timer() as t:
        view, fit_prov = _fit_views(model, concept)
        report_note = None
        if report is not None and not (getattr(report, "meta", None) or {}).get("fit_view"):
            report, report_note = None, "ignored: located on evaluation probes (the method used fit data instead)"
        edit = method.fit(model, view, report, config)
    check_finite_edit(edit, name)
    edit.edit_seconds = t.seconds
    edit.hyper = {**config.to_dict(), **edit.hyper}
    edit.seed = config.seed
    edit.concept = edit.concept or (concept.name if not isinstance(concept, (list, tuple))
                                    else "+".join(c.name for c in concept))
    edit.provenance = {**(edit.provenance or {}), "fit": fit_prov}
    if report_note:
        edit.provenance["report"] = report_note
    return edit
