"""World knowledge kept: general facts the model knows, scored before and after every edit.

The set lives in `workbench/concepts/builtin/world_knowledge.jsonl`, one JSON object per line:
{"prompt": str, "answers": [str, ...], "form": str (default "completion"), "topic": str (optional)}
(any other key is kept in the probe's `extra`). Blank lines are skipped; a malformed line fails
with the file, line and field named (`ConceptFileError`).

For a given concept the probes that mention its subject or name (in the prompt or an answer,
case-insensitively) are excluded: they are not "other" knowledge. `summarize_world` turns the
before/after scores into the battery's `world_knowledge` block: hit rates with Wilson intervals,
their ratio with a paired bootstrap interval, the share of the facts known before that are still
known after ("kept"), an exact McNemar p-value of before vs after, and the prompts lost.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

__all__ = ["DEFAULT_PATH", "exclude_concept", "load_world_knowledge", "summarize_world"]

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "concepts" / "builtin" / "world_knowledge.jsonl"
MAX_LOST_LISTED = 20
_CACHE: dict[tuple[str, float, int], list] = {}


def load_world_knowledge(path: str | Path | None = None) -> list:
    """The world-knowledge probes of `path` (default: the built-in file) as Probe objects.

    Raises FileNotFoundError when the file is missing and ConceptFileError ("<file>:<line>: <field>:
    <reason>") on a malformed line. Parsed files are remembered by (path, mtime, size).
    """
    from workbench.concepts.schema import ConceptFileError, Probe
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.is_file():
        raise FileNotFoundError(f"world-knowledge file not found: {path}")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime, st.st_size)
    if key in _CACHE:
        return list(_CACHE[key])
    probes = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConceptFileError(f"not valid JSON ({exc.msg})", None, str(path), line_no) from None
        try:
            if isinstance(d, dict) and "topic" in d and not isinstance(d["topic"], str):
                raise ConceptFileError(f"must be a string, got {type(d['topic']).__name__}", "topic")
            probes.append(Probe.from_dict(d, field="fact"))
        except ConceptFileError as exc:
            raise exc.located(str(path), line_no) from None
    if not probes:
        raise ConceptFileError("holds no fact", None, str(path), None)
    _CACHE[key] = probes
    return list(probes)


def _mentions(probe, needles: Sequence[str]) -> bool:
    text = " ".join([probe.prompt, *probe.answers]).casefold()
    return any(n.casefold() in text for n in needles if n and n.strip())


def exclude_concept(probes: Sequence, concept) -> tuple[list, int]:
    """(probes that do not mention the concept's subject or name, number excluded)."""
    needles = [concept.subject, concept.name]
    kept = [p for p in probes if not _mentions(p, needles)]
    return kept, len(probes) - len(kept)


def summarize_world(before: Sequence, after: Sequence, excluded: int = 0, source: str = "",
                    n_boot: int = 2000, seed: int = 0) -> dict:
    """The `world_knowledge` block from per-probe ProbeScores before / after the edit (same order)."""
    from workbench.verify.stats import bootstrap_ci, mcnemar_exact, rate_ci
    import numpy as np
    hb = [bool(s.hit) for s in before]
    ha = [bool(s.hit) for s in after]
    n = len(hb)
    if n == 0:
        return {"skipped": "no world-knowledge probe left after excluding the concept's subject",
                "n": 0, "excluded": excluded, "source": source}
    known = [i for i in range(n) if hb[i]]
    kept = [ha[i] for i in known]

    def ratio(b, a):
        return float(a.sum() / b.sum()) if b.sum() else float("nan")

    return {"source": source, "n": n, "excluded": excluded,
            "hit_before": sum(hb) / n, "hit_after": sum(ha) / n,
            "hit_before_ci": rate_ci(hb), "hit_after_ci": rate_ci(ha),
            "ratio": (sum(ha) / sum(hb)) if sum(hb) else None,
            "ratio_ci": bootstrap_ci(ratio, np.array(hb, float), np.array(ha, float), n_boot=n_boot, seed=seed),
            "n_known_before": len(known), "kept": (sum(kept) / len(kept)) if kept else None,
            "kept_ci": rate_ci(kept) if kept else None,
            "mcnemar_p": mcnemar_exact(hb, ha)["p"],
            "lost": [before[i].prompt for i in known if not ha[i]][:MAX_LOST_LISTED],
            "gained": sum(a and not b for a, b in zip(ha, hb))}
