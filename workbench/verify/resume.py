"""Benchmark documents built pair by pair: one (concept, method) pair fitted and verified, the
document kept in grid order and rewritten atomically after every pair, and resuming from a report
an earlier (interrupted) run left at the same path.

Used by the in-process sweep (`workbench.verify.bench.run_bench`) and the Ray sweep
(`workbench.verify.sweep.run_bench_ray`), so both write the same document (docs/report.md).

Resume rule: a pair is *finished* when the existing report holds a result for it; it is not
rerun. Pairs listed under "failures" are retried. The existing report must be of the same model
and split, and a finished pair must have been fitted with the hyper-parameters this run asks
for (and scored with the same `max_new_tokens`); otherwise the run refuses in one line rather
than mixing settings in one document. Results of pairs outside this run's grid are kept, after
the grid's own.
"""
from __future__ import annotations

import json
from pathlib import Path

from workbench.errors import UsageError
from workbench.strict_json import STRICT_HOOKS
from workbench.verify.battery import validate_report, verify_edit

FIT_ERRORS = (ValueError, RuntimeError, FloatingPointError)   # a failing fit is recorded, the run goes on
NOT_KNOWN_BELOW = 0.5     # concepts whose forget hit before the edit is lower are listed in doc["not_known"]
RESTART_HINT = "choose another --json, delete it, or pass --restart"


def run_pair(model, concept, method: str, hyper: dict, verify: dict, keep_going: bool = True) -> tuple[str, dict]:
    """Fit `method` on `concept` and verify it: ("result", result) or ("failure", {concept, method, error})."""
    from workbench.edits import fit_edit
    try:
        edit = fit_edit(method, model, concept, **hyper)
    except FIT_ERRORS as exc:
        if not keep_going:
            raise
        return "failure", {"concept": concept.name, "method": method, "error": str(exc)}
    result = verify_edit(model, concept, edit, **verify)
    result.setdefault("split", concept.split)
    result.setdefault("fit", edit.provenance.get("fit"))
    return "result", result


def read_report(path) -> dict | None:
    """The benchmark document at `path` (strict JSON, validated), or None when there is no file."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir():
        raise UsageError(f"{path}: is a folder, not a benchmark report")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"), **STRICT_HOOKS)
        if not isinstance(doc, dict):
            raise ValueError(f"a JSON {type(doc).__name__}, not an object")
        validate_report(doc)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: exists but is not a benchmark report ({exc}); {RESTART_HINT}") from None
    return doc


def finished_results(path, model_id: str, split: str | None, hyper: dict[str, dict],
                     max_new_tokens: int | None = None) -> list[dict]:
    """Results of the report an earlier run left at `path` (empty without one), checked against this run."""
    doc = read_report(path)
    if doc is None:
        return []
    if doc["model"] != model_id:
        raise UsageError(f"{path}: holds a report of model {doc['model']!r}, not {model_id!r}; {RESTART_HINT}")
    if doc.get("split", "all") != (split or "all"):
        raise UsageError(f"{path}: holds a report of split {doc.get('split', 'all')!r}, not {split or 'all'!r}; "
                         f"{RESTART_HINT}")
    for r in doc["results"]:
        fitted = r.get("hyper") or {}
        for key, want in (hyper.get(r["method"]) or {}).items():
            if key in fitted and fitted[key] != want:
                raise UsageError(f"{path}: {r['method']} on {r['concept']!r} was fitted with {key}={fitted[key]!r}, "
                                 f"this run asks {key}={want!r}; {RESTART_HINT}")
        if max_new_tokens is not None and r.get("max_new_tokens") not in (None, max_new_tokens):
            raise UsageError(f"{path}: {r['method']} on {r['concept']!r} was scored with max_new_tokens="
                             f"{r['max_new_tokens']}, this run asks {max_new_tokens}; {RESTART_HINT}")
    return doc["results"]


class ReportBuilder:
    """The benchmark document of one sweep over `keys` [(concept name, method)], grid order.

    `add(kind, item)` records a result or a failure, re-sorts, and rewrites `json_out` atomically
    (validated first), so an interrupted sweep keeps what it measured and can resume from it.
    """

    def __init__(self, model_id: str, split: str | None, keys: list[tuple[str, str]], finished=(),
                 json_out=None):
        import workbench
        self.keys, self.json_out = list(keys), json_out
        self.doc = {"model": model_id, "workbench_version": workbench.__version__, "split": split or "all",
                    "results": list(finished), "failures": []}
        self._sort()

    @property
    def done(self) -> set[tuple[str, str]]:
        return {(r["concept"], r["method"]) for r in self.doc["results"]}

    def todo(self) -> list[tuple[str, str]]:
        done = self.done
        return [k for k in self.keys if k not in done]

    def _sort(self) -> None:
        rank = {k: i for i, k in enumerate(self.keys)}
        for part in ("results", "failures"):        # stable: pairs outside the grid keep their order, last
            self.doc[part].sort(key=lambda r: rank.get((r["concept"], r["method"]), len(rank)))

    def add(self, kind: str, item: dict) -> None:
        if kind not in ("result", "failure"):
            raise ValueError(f"unknown record kind {kind!r}")
        self.doc[kind + "s"].append(item)
        self._sort()
        self.write()

    def write(self) -> None:
        if self.json_out:
            from workbench.paths import write_json
            write_json(self.json_out, validate_report(self.doc))

    def finish(self) -> dict:
        """Add `not_known` (concepts the model did not know before the edit), write, return the document."""
        known = {r["concept"]: r["forget"]["hit_before"] for r in self.doc["results"]}
        self.doc["not_known"] = sorted(n for n, h in known.items() if h is not None and h < NOT_KNOWN_BELOW)
        self.write()
        return validate_report(self.doc)
