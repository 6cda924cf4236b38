"""Reading and writing concept files (JSON Lines, one concept per line; docs/concept-file.md).

Every malformed line is an error that names the file, the 1-based line and the field
(`concepts.jsonl:3: forget[1].answers: must be a non-empty list of non-empty strings`); nothing
is skipped except blank lines. Writing is atomic (write a sibling, then rename).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from workbench.concepts.schema import Concept, ConceptFileError, ConceptNotFoundError
from workbench.paths import atomic_path

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


def parse_concepts(text: str, source: str = "<string>", allow_empty: bool = False) -> list[Concept]:
    """Parse JSON Lines text into concepts; `source` is the name used in error messages."""
    concepts: list[Concept] = []
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConceptFileError(f"invalid JSON: {e.msg} (column {e.colno})", None, source, lineno) from None
        try:
            concept = Concept.from_dict(record)
        except ConceptFileError as e:
            raise e.located(source, lineno) from None
        if concept.name in first_line:
            raise ConceptFileError(f"duplicate concept name {concept.name!r} (first on line "
                                   f"{first_line[concept.name]})", "name", source, lineno)
        first_line[concept.name] = lineno
        concepts.append(concept)
    if not concepts and not allow_empty:
        raise ConceptFileError("holds no concepts", None, source)
    return concepts


def read_concepts(path: str | Path, allow_empty: bool = False) -> list[Concept]:
    """Read and validate a concept file; raises ConceptFileError (file, line, field) on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConceptFileError("no such concept file", None, str(path)) from None
    except IsADirectoryError:
        raise ConceptFileError("is a directory, not a concept file", None, str(path)) from None
    except UnicodeDecodeError as e:
        raise ConceptFileError(f"not UTF-8 text ({e.reason} at byte {e.start})", None, str(path)) from None
    return parse_concepts(text, source=str(path), allow_empty=allow_empty)


def dumps_concepts(concepts: Iterable[Concept]) -> str:
    """JSON Lines text for `concepts` (one compact object per line, non-ASCII kept)."""
    concepts = list(concepts)
    names = [c.name for c in concepts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConceptFileError(f"duplicate concept names {dupes}", "name")
    return "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in concepts)


def write_concepts(path: str | Path, concepts: Iterable[Concept]) -> Path:
    """Write concepts as JSON Lines, atomically; returns the path."""
    text = dumps_concepts(concepts)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def builtin_concepts_path() -> Path:
    """The concept file shipped with the package."""
    return BUILTIN_DIR / "concepts.jsonl"


def load_builtin() -> list[Concept]:
    """The built-in concepts (facts the embedded smollm2-135m demonstrably knows)."""
    return read_concepts(builtin_concepts_path())


def get_concept(concepts: Iterable[Concept], name: str) -> Concept:
    """The concept called `name` (exact match, else a unique case-insensitive match)."""
    concepts = list(concepts)
    for c in concepts:
        if c.name == name:
            return c
    folded = [c for c in concepts if c.name.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0]
    available = ", ".join(repr(c.name) for c in concepts) or "none"
    raise ConceptNotFoundError(f"no concept named {name!r}; available: {available}")
