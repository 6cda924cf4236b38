"""Concepts on the dashboard: the form editor's fields, pasted or uploaded concept files, and the
prompt limits every source obeys (`check_concept_prompts`)."""
from __future__ import annotations

from workbench.app.core import MAX_PROMPT_CHARS


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
