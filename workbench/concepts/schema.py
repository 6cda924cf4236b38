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
CONCEPT_KEYS = ("name", "subject", "redirect_to", "forget", "retain")


from workbench.errors import WorkbenchError  # noqa: E402


class ConceptError(WorkbenchError, ValueError):
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
class Concept:
    """A concept to locate and edit out.

    name: display name, unique within a file. subject: the string as it appears in the prompts
    (the subject tokens used by ROCR and concept vectors). redirect_to: the harmless concept a
    redirection edit maps to (optional). forget / retain: non-empty probe lists.
    extra: unknown keys from the file, kept and written back.
    """
    name: str
    subject: str
    forget: list[Probe]
    retain: list[Probe]
    redirect_to: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

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
        return cls(name=name, subject=subject, forget=probes["forget"], retain=probes["retain"],
                   redirect_to=redirect, extra={k: v for k, v in d.items() if k not in CONCEPT_KEYS})


def render_prompt(model, probe: Probe) -> str:
    """The exact text a model sees for `probe`.

    'chat' probes go through the model's chat template (`model.chat`, which returns the user
    message unchanged for a model without one); every other form is used verbatim. Generation,
    teacher forcing, localisation and editing all call this, so they see the same prompt.
    """
    if probe.form == CHAT_FORM:
        return model.chat(probe.prompt)
    return probe.prompt
