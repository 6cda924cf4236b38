"""Edit time side by side: each method fitted on one concept in one process, median of `--repeats`.

    PYTHONPATH=. python analyses/edit_time.py --concept Japan --methods rocr,ablate,ga,graddiff,npo,simnpo

Reports seconds per fit and the ratio to the first method. One-off caches (ROCR's covariance
C, built once per model and shared by every concept) are warmed before timing and reported apart.
Fits only: verification is not timed here (see `workbench bench`).
"""
from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--concepts", default="builtin")
    ap.add_argument("--concept", default="Japan")
    ap.add_argument("--methods", default="rocr,ga,graddiff,npo,simnpo")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from workbench import load_model
    from workbench.concepts import get_concept, load_builtin, read_concepts
    from workbench.edits import fit_edit
    from workbench.locate.stats import mlp_key_second_moment

    model = load_model(args.model)
    concepts = load_builtin() if args.concepts == "builtin" else read_concepts(args.concepts)
    concept = get_concept(concepts, args.concept)
    methods = [m for m in args.methods.split(",") if m]
    t0 = time.perf_counter()
    mlp_key_second_moment(model, 0)                       # one-off per model: cached on disk
    warm = time.perf_counter() - t0
    rows = []
    for method in methods:
        secs, params = [], 0
        for _ in range(args.repeats):
            edit = fit_edit(method, model, concept)
            secs.append(edit.edit_seconds)
            params = edit.params_changed()
        rows.append({"method": method, "median_s": statistics.median(secs), "runs_s": secs, "params": params})
    base = rows[0]["median_s"]
    print(f"{args.model} / {concept.name}: covariance cache load {warm:.2f} s (built once per model otherwise)")
    print(f"{'method':10s} {'median s':>10s} {'x ' + rows[0]['method']:>10s} {'params':>14s}")
    for r in rows:
        r["ratio"] = r["median_s"] / base
        print(f"{r['method']:10s} {r['median_s']:10.2f} {r['ratio']:10.1f} {r['params']:14,d}")
    if args.json:
        from workbench.paths import write_json
        write_json(args.json, {"model": args.model, "concept": concept.name, "rows": rows, "cov_load_s": warm})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
