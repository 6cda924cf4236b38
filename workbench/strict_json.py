"""The strict-JSON hooks every reader of untrusted JSON uses (patch manifests, concept files).

`json.loads(text, **STRICT_HOOKS)` refuses NaN / Infinity (JSON has neither) and duplicate keys,
raising `StrictJSONError` (a ValueError) whose message says which.
"""
from __future__ import annotations


class StrictJSONError(ValueError):
    """A JSON text uses something strict JSON does not allow (NaN, Infinity, a duplicate key)."""


def reject_constant(name: str):
    raise StrictJSONError(f"{name} is not a finite number (JSON has no NaN or Infinity)")


def no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise StrictJSONError(f"duplicate key {k!r}")
        out[k] = v
    return out


STRICT_HOOKS = {"parse_constant": reject_constant, "object_pairs_hook": no_duplicates}
