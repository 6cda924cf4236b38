"""Concepts and their probes: the dataclasses behind the concept file (DESIGN.md §3).

A `Concept` names a subject to forget and carries two probe sets: `forget` probes whose answers
should disappear after an edit and `retain` probes on neighbouring concepts that must survive.
Validation is strict and names the field at fault (`forget[1].answers: ...`); unknown keys are
kept in `extra` and written back unchanged, so files made by newer tools survive a round trip.

Probe forms are free labels used for per-form breakdowns, with one exception: a `chat` probe holds
the plain user question in `prompt` and is rendered through the model's chat template at scoring
time. `render_prompt(model, probe)` is the one place that rule lives; every scorer calls it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHAT_FORM = "chat"
KNOWN_FORMS = ("completion", "question", "paraphrase", "cloze", "mcq", "chat")

PROBE_KEYS = ("prompt", "answers", "form")
CONCEPT_KEYS = ("name", "subject", "redirect_to", "forget", "retain", "split", "neighbors", "fit")
SPLITS = ("dev", "test")
FIT_KEYS = ("forget", "retain", "source")


class ConceptError(ValueError):
    """Base class of the concept errors (bad files, unknown names)."""


class ConceptFileError(ConceptError):
    """A concept file or record is malformed; the message names file, line and field.

    Attributes: `source` (file name or '<dict>'), `line` (1-based, or None), `field` (dotted path
    such as 'forget[1].answers', or None) and `reason`.
    """

    def __init__(self, reason: str, field: str | None = None, source: str | None = None,
                 line: int | None = None):
        self.reason, self.field, self.source, self.line = reason, field, source, line
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(f"{where}{field + ': ' if field else ''}{reason}")

    def located(self, source: str, line: int | None) -> "ConceptFileError":
        """The same error, now naming the file and line it came from."""
        return ConceptFileError(self.reason, self.field, source, line)


class ConceptNotFoundError(ConceptError, LookupError):
    """`get_concept` found no concept of that name; the message lists the available ones."""


def _check_str(value: Any, field: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ConceptFileError(f"must be a string, got {type(value).__name__}", field)
    if not allow_empty and not value.strip():
        raise ConceptFileError("must be a non-empty string", field)
    return value


@dataclass
class Probe:
    """One prompt and the answers that count as the model knowing the fact.

    prompt: the text the model continues (for form 'chat': the plain user message).
    answers: acceptable answers, matched case-insensitively as substrings of the continuation;
        the first one is the answer whose teacher-forced probability is reported.
    form: a label for per-form breakdowns ('completion', 'question', 'paraphrase', 'cloze',
        'mcq', 'chat', or any other string); only 'chat' changes how the prompt is rendered.
    extra: unknown keys from the file, kept and written back.
    """
    prompt: str
    answers: list[str]
    form: str = "completion"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _check_str(self.prompt, "prompt")
        if (not isinstance(self.answers, list) or not self.answers
                or not all(isinstance(a, str) and a.strip() for a in self.answers)):
            raise ConceptFileError("must be a non-empty list of non-empty strings", "answers")
        _check_str(self.form, "form")
        if not isinstance(self.extra, dict):
            raise ConceptFileError("must be a dict", "extra")

    @property
    def answer(self) -> str:
        """The first acceptable answer (the one whose probability is scored)."""
        return self.answers[0]

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "answers": list(self.answers), "form": self.form, **self.extra}

    @classmethod
    def from_dict(cls, d: Any, field: str = "probe") -> "Probe":
        """Build from a parsed JSON object; errors name `field` (e.g. 'forget[1]') and the key."""
        if not isinstance(d, dict):
            raise ConceptFileError(f"must be an object with keys {list(PROBE_KEYS)}, got {type(d).__name__}",
                                   field)
        for key in ("prompt", "answers"):
            if key not in d:
                raise ConceptFileError("missing required key", f"{field}.{key}")
        try:
            return cls(prompt=d["prompt"], answers=d["answers"], form=d.get("form", "completion"),
                       extra={k: v for k, v in d.items() if k not in PROBE_KEYS})
        except ConceptFileError as e:
            raise ConceptFileError(e.reason, f"{field}.{e.field}") from None


@dataclass
class FitData:
    """What a method may fit or train on for a concept (never the evaluation probes).

    forget: texts about the subject as probes (prompt + answers, the first answer being the
        continuation a method trains or reads keys on); retain: general text and texts about other
        entities, same shape. source: where they came from ("file", "derived:<recipe>", ...).
    Either list may be empty in a file's `fit` block (then that part is derived); a method that
    needs forget texts and gets none raises.
    """
    forget: list[Probe]
    retain: list[Probe]
    source: str = "file"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"forget": [p.to_dict() for p in self.forget], "retain": [p.to_dict() for p in self.retain],
                "source": self.source, **self.extra}

    @classmethod
    def from_dict(cls, d: Any, field: str = "fit") -> "FitData":
        """Parse a `fit` block: {"forget": [probe|text, ...], "retain": [...], "source"?: str}.

        A plain string item is a text: its first ~third (at a word boundary) becomes the prompt and
        the rest the answer, so texts and probes train the same way.
        """
        if not isinstance(d, dict):
            raise ConceptFileError(f"must be an object with keys {list(FIT_KEYS)}, got {type(d).__name__}", field)
        unknown = sorted(set(d) - set(FIT_KEYS))
        if unknown:
            raise ConceptFileError(f"unknown key(s) {unknown}; known: {list(FIT_KEYS)}", field)
        lists: dict[str, list[Probe]] = {}
        for key in ("forget", "retain"):
            raw = d.get(key, [])
            if not isinstance(raw, list):
                raise ConceptFileError(f"must be a list of probes or texts, got {type(raw).__name__}",
                                       f"{field}.{key}")
            items = []
            for i, item in enumerate(raw):
                where = f"{field}.{key}[{i}]"
                if isinstance(item, str):
                    items.append(text_probe(item, where))
                else:
                    probe = Probe.from_dict(item, where)
                    items.append(probe)
            lists[key] = items
        if not lists["forget"] and not lists["retain"]:
            raise ConceptFileError("needs at least one forget or retain item", field)
        source = d.get("source", "file")
        _check_str(source, f"{field}.source")
        return cls(forget=lists["forget"], retain=lists["retain"], source=source)


def text_probe(text: str, field: str = "text", form: str = "fit_text") -> Probe:
    """A plain text as a fit probe: the prompt is its first ~third (cut at a space), the answer the rest."""
    _check_str(text, field)
    text = text.strip()
    cut = text.find(" ", max(1, len(text) // 3))
    if cut <= 0 or cut >= len(text) - 1:
        raise ConceptFileError("a fit text needs at least two words", field)
    return Probe(prompt=text[:cut], answers=[text[cut:].strip()], form=form)


def check_split(value: Any, field: str = "split") -> str | None:
    """None or one of SPLITS; anything else is a ConceptFileError naming the field."""
    if value is None:
        return None
    if value not in SPLITS:
        raise ConceptFileError(f"must be one of {list(SPLITS)}, got {value!r}", field)
    return value


@dataclass
class Concept:
    """A concept to locate and edit out.

    name: display name, unique within a file. subject: the string as it appears in the prompts
    (the subject tokens used by ROCR and concept vectors). redirect_to: the harmless concept a
    redirection edit maps to (optional). forget / retain: non-empty EVALUATION probe lists (no
    method fits on them). split: "dev" (defaults are chosen on these) or "test" (results are quoted
    on these), or None. neighbors: names of same-kind entities (retain fit texts are derived about
    them). fit: the data a method may fit on (FitData), or None (derived: workbench.concepts.fit).
    extra: unknown keys from the file, kept and written back.
    """
    name: str
    subject: str
    forget: list[Probe]
    retain: list[Probe]
    redirect_to: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    split: str | None = None
    neighbors: list[str] = field(default_factory=list)
    fit: FitData | None = None

    def __post_init__(self):
        _check_str(self.name, "name")
        _check_str(self.subject, "subject")
        if self.redirect_to is not None:
            _check_str(self.redirect_to, "redirect_to")
        for key in ("forget", "retain"):
            probes = getattr(self, key)
            if not isinstance(probes, list) or not probes:
                raise ConceptFileError("must be a non-empty list of probes", key)
            for i, p in enumerate(probes):
                if not isinstance(p, Probe):
                    raise ConceptFileError(f"must be a Probe, got {type(p).__name__}", f"{key}[{i}]")
        if not isinstance(self.extra, dict):
            raise ConceptFileError("must be a dict", "extra")
        check_split(self.split)
        if (not isinstance(self.neighbors, list)
                or not all(isinstance(n, str) and n.strip() for n in self.neighbors)):
            raise ConceptFileError("must be a list of non-empty strings", "neighbors")
        if self.fit is not None and not isinstance(self.fit, FitData):
            raise ConceptFileError(f"must be a FitData, got {type(self.fit).__name__}", "fit")

    @property
    def is_fit_view(self) -> bool:
        """True for the view a method fits on (its forget/retain are fit data, not evaluation probes)."""
        return bool(self.extra.get("fit_view"))

    @property
    def probes(self) -> list[Probe]:
        """forget + retain, in that order."""
        return [*self.forget, *self.retain]

    def forms(self) -> list[str]:
        """The distinct forms of the forget probes, in first-seen order."""
        return list(dict.fromkeys(p.form for p in self.forget))

    def subject_coverage(self) -> float:
        """Share of forget prompts in which `subject` occurs verbatim."""
        return sum(self.subject in p.prompt for p in self.forget) / len(self.forget)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "subject": self.subject}
        if self.redirect_to is not None:
            d["redirect_to"] = self.redirect_to
        d["forget"] = [p.to_dict() for p in self.forget]
        d["retain"] = [p.to_dict() for p in self.retain]
        if self.split is not None:
            d["split"] = self.split
        if self.neighbors:
            d["neighbors"] = list(self.neighbors)
        if self.fit is not None:
            d["fit"] = self.fit.to_dict()
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "Concept":
        """Build from a parsed JSON object; raises ConceptFileError naming the field at fault."""
        if not isinstance(d, dict):
            raise ConceptFileError(f"a concept must be a JSON object, got {type(d).__name__}")
        for key in ("name", "subject", "forget", "retain"):
            if key not in d:
                raise ConceptFileError("missing required key", key)
        name = _check_str(d["name"], "name")
        subject = _check_str(d["subject"], "subject")
        redirect = d.get("redirect_to")
        if redirect is not None:
            _check_str(redirect, "redirect_to")
        probes = {}
        for key in ("forget", "retain"):
            raw = d[key]
            if not isinstance(raw, list) or not raw:
                raise ConceptFileError("must be a non-empty list of probes", key)
            probes[key] = [Probe.from_dict(p, f"{key}[{i}]") for i, p in enumerate(raw)]
        split = check_split(d.get("split"))
        neighbors = d.get("neighbors", [])
        if (not isinstance(neighbors, list)
                or not all(isinstance(n, str) and n.strip() for n in neighbors)):
            raise ConceptFileError("must be a list of non-empty strings", "neighbors")
        fit = FitData.from_dict(d["fit"]) if d.get("fit") is not None else None
        return cls(name=name, subject=subject, forget=probes["forget"], retain=probes["retain"],
                   redirect_to=redirect, extra={k: v for k, v in d.items() if k not in CONCEPT_KEYS},
                   split=split, neighbors=list(neighbors), fit=fit)


def render_prompt(model, probe: Probe) -> str:
    """The exact text a model sees for `probe`.

    'chat' probes go through the model's chat template (`model.chat`, which returns the user
    message unchanged for a model without one); every other form is used verbatim. Generation,
    teacher forcing, localisation and editing all call this, so they see the same prompt.
    """
    if probe.form == CHAT_FORM:
        return model.chat(probe.prompt)
    return probe.prompt
