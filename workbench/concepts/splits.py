"""Dev / test splits of a concept file: defaults are chosen on `dev`, results quoted on `test`."""
from __future__ import annotations

from typing import Sequence

from workbench.concepts.schema import SPLITS, Concept, ConceptError


def select_split(concepts: Sequence[Concept], split: str | None, source: str = "concepts") -> list[Concept]:
    """The concepts of `split` ("dev" | "test"), or all of them for None / "all".

    An unknown split name is an error naming the argument; so is a file in which some concept has
    no `split` (a concept must never silently fall out of, or into, the test set), and a split that
    selects nothing.
    """
    if split in (None, "all"):
        return list(concepts)
    if split not in SPLITS:
        raise ConceptError(f"--split: {split!r} is not one of {', '.join((*SPLITS, 'all'))}")
    missing = [c.name for c in concepts if c.split is None]
    if missing:
        raise ConceptError(f"{source}: --split {split} needs a `split` on every concept; none on "
                           f"{', '.join(repr(n) for n in missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    out = [c for c in concepts if c.split == split]
    if not out:
        raise ConceptError(f"{source}: no concept has split {split!r}")
    return out
