"""Reading and writing concept files (JSON Lines, one concept per line; docs/concept-file.md).

Every malformed line is an error that names the file, the 1-based line and the field
(`concepts.jsonl:3: forget[1].answers: must be a non-empty list of non-empty strings`); nothing
is skipped except blank lines. Writing is atomic (write a sibling, then rename).

Lines are split on "\n" only (a JSON string may hold U+2028, U+2029 or U+0085 verbatim; a
trailing "\r" is tolerated), a leading UTF-8 BOM is ignored, and hostile input is bounded: at
most `MAX_FILE_BYTES` per file, `MAX_LINE_CHARS` per line, `MAX_JSON_DEPTH` levels of nesting,
`MAX_PROMPT_CHARS` per prompt (and per plain fit text) and `MAX_ANSWER_CHARS` per answer, no
NaN / Infinity, no duplicate keys and no lone surrogates (which no tokenizer can encode).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

from workbench.concepts.limits import MAX_ANSWER_CHARS, MAX_PROMPT_CHARS
from workbench.concepts.schema import Concept, ConceptFileError, ConceptNotFoundError
from workbench.paths import atomic_path
from workbench.strict_json import STRICT_HOOKS, StrictJSONError

MAX_FILE_BYTES = 64 << 20
MAX_LINE_CHARS = 4 << 20
MAX_JSON_DEPTH = 32

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


class _LineError(Exception):
    def __init__(self, reason: str, field: str | None = None):
        self.reason, self.field = reason, field


def _check_record(record) -> None:
    """Depth, finite numbers, no lone surrogates, and the prompt / answer ceilings (iterative)."""
    stack = [(record, "", 1)]
    while stack:
        o, where, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _LineError(f"nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(o, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k), depth + 1) for k, v in o.items())
            for k in o:
                if any(0xD800 <= ord(ch) <= 0xDFFF for ch in k):
                    raise _LineError("key holds a lone surrogate (not encodable text)", where or None)
        elif isinstance(o, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(o))
        elif isinstance(o, float) and not math.isfinite(o):
            raise _LineError("must be a finite number", where or None)
        elif isinstance(o, str):
            if any(0xD800 <= ord(ch) <= 0xDFFF for ch in o):
                raise _LineError("holds a lone surrogate (\\ud800-\\udfff), which is not encodable text", where or None)
            leaf = where.rsplit(".", 1)[-1]
            fit_text = where.startswith(("fit.forget[", "fit.retain[")) and "." not in where[4:]   # a plain text
            if (leaf == "prompt" or fit_text) and len(o) > MAX_PROMPT_CHARS:
                raise _LineError(f"{len(o):,} characters, more than the limit of {MAX_PROMPT_CHARS:,}", where)
            if ".answers[" in where and len(o) > MAX_ANSWER_CHARS:
                raise _LineError(f"{len(o):,} characters, more than the limit of {MAX_ANSWER_CHARS:,}", where)


def _lines(text: str):
    """(1-based line number, line) split on "\n" only; a trailing "\r" is dropped."""
    for lineno, line in enumerate(text.split("\n"), start=1):
        yield lineno, line[:-1] if line.endswith("\r") else line


def parse_concepts(text: str, source: str = "<string>", allow_empty: bool = False) -> list[Concept]:
    """Parse JSON Lines text into concepts; `source` is the name used in error messages."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) > MAX_FILE_BYTES:
            raise ConceptFileError(f"{len(text):,} bytes, more than a concept file may hold ({MAX_FILE_BYTES:,})",
                                   None, source)
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConceptFileError(f"not UTF-8 text ({e.reason} at byte {e.start})", None, source) from None
    if len(text) > MAX_FILE_BYTES:
        raise ConceptFileError(f"{len(text):,} characters, more than a concept file may hold ({MAX_FILE_BYTES:,})",
                               None, source)
    text = text.removeprefix("\ufeff")
    concepts: list[Concept] = []
    first_line: dict[str, int] = {}
    for lineno, line in _lines(text):
        if not line.strip(" \t\r\f\v"):
            continue
        if len(line) > MAX_LINE_CHARS:
            raise ConceptFileError(f"line of {len(line):,} characters, more than {MAX_LINE_CHARS:,}", None,
                                   source, lineno)
        try:
            record = json.loads(line, **STRICT_HOOKS)
            _check_record(record)
        except json.JSONDecodeError as e:
            raise ConceptFileError(f"invalid JSON: {e.msg} (column {e.colno})", None, source, lineno) from None
        except RecursionError:
            raise ConceptFileError(f"nested more than {MAX_JSON_DEPTH} levels deep", None, source, lineno) from None
        except _LineError as e:
            raise ConceptFileError(e.reason, e.field, source, lineno) from None
        except StrictJSONError as e:
            raise ConceptFileError(f"invalid JSON: {e}", None, source, lineno) from None
        except ValueError as e:                   # e.g. an integer of more than 4300 digits
            raise ConceptFileError(f"invalid JSON: {e}", None, source, lineno) from None
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
        size = path.stat().st_size
        if path.is_file() and size > MAX_FILE_BYTES:
            raise ConceptFileError(f"{size:,} bytes, more than a concept file may hold ({MAX_FILE_BYTES:,})",
                                   None, str(path))
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConceptFileError("no such concept file", None, str(path)) from None
    except IsADirectoryError:
        raise ConceptFileError("is a directory, not a concept file", None, str(path)) from None
    except PermissionError:
        raise ConceptFileError("cannot be read (permission denied)", None, str(path)) from None
    return parse_concepts(data, source=str(path), allow_empty=allow_empty)


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
