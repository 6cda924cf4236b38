"""User-facing errors: one base class, `WorkbenchError`, for everything that means "bad input".

Every error the workbench raises on purpose for bad input (a malformed concept file or patch,
a bad command-line argument or hyper-parameter, a model or SAE that cannot be loaded, a site
that does not exist, ...) derives from `WorkbenchError`; the CLI prints it in one line and exits
non-zero, the dashboard shows it inline. Any other exception is a programming bug and keeps its
traceback.

Two legacy allowances keep old code one-line while it migrates: missing / unreadable files
(`FileNotFoundError`, `PermissionError`, ... raised for a path the user gave) and a plain
`ValueError` raised by an explicit `raise` statement inside the workbench's own code (a check
with a message, e.g. "layer 99 out of range"). A `ValueError` or `KeyError` from anywhere else
(`int("abc")`, a library) is a bug and is shown with its traceback.

This module imports nothing of the workbench, so every module can import it.
"""
from __future__ import annotations

import traceback
import unicodedata
from pathlib import Path


class WorkbenchError(Exception):
    """Base of every user-facing error; the message is one line that says what is wrong and where."""


class UsageError(WorkbenchError, ValueError):
    """A bad command-line argument or option value (also the dashboard's equivalent inputs)."""


class HyperParameterError(UsageError):
    """A hyper-parameter that is unknown, of the wrong type, or not a finite number."""


class DeviceError(UsageError):
    """A device or dtype that does not exist or is not available on this machine."""


class NonFiniteError(WorkbenchError, ValueError):
    """A number or tensor that is NaN or infinite where only finite values make sense (a fitted edit)."""


class LimitError(WorkbenchError, ValueError):
    """Input beyond a resource limit (file size, nesting depth, prompt length, zip member size)."""


# OSErrors about a path the user named: reported in one line (the path is in the message).
_FILE_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)
USER_ERRORS: tuple[type[BaseException], ...] = (WorkbenchError, *_FILE_ERRORS)
_ROOTS = tuple(str(Path(__file__).resolve().parent.parent / d) for d in ("workbench", "dashboards"))


def _explicit_workbench_raise(exc: BaseException) -> bool:
    """A plain ValueError raised by a `raise` statement in the workbench's own source."""
    if type(exc) is not ValueError or exc.__traceback__ is None:
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    last = frames[-1]
    try:
        inside = str(Path(last.filename).resolve()).startswith(_ROOTS)
    except (OSError, ValueError):
        return False
    return inside and (last.line or "").lstrip().startswith("raise ")


def is_user_error(exc: BaseException) -> bool:
    """Whether `exc` reports bad input (one line) rather than a bug (traceback); see the module doc."""
    return isinstance(exc, USER_ERRORS) or _explicit_workbench_raise(exc)


def one_line(exc: BaseException | str, limit: int = 2000) -> str:
    """The first non-empty line of the message, control characters escaped, at most `limit` chars."""
    text = str(exc).strip()
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if not first:
        return type(exc).__name__ if isinstance(exc, BaseException) else ""
    safe = "".join(c if unicodedata.category(c)[0] != "C" or c == " " else repr(c)[1:-1] for c in first)
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def check_known_fields(cls, d: dict, what: str, error: type[Exception] = ValueError) -> None:
    """Refuse keys of `d` that are not fields of the dataclass `cls`, naming them and the known ones."""
    import dataclasses
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise error(f"unknown {what} {unknown}; known: {sorted(names)}")


def read_json_file(path: str | Path, missing: str):
    """Parse the JSON file at `path`; a missing file raises FileNotFoundError(`path: missing`), bad JSON
    a ValueError naming the file and line."""
    import json
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {missing}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise ValueError(f"{path}: not valid JSON (nested too deeply)") from None
