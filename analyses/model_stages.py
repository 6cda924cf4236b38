"""Stage times of the main job (load -> locate -> ROCR -> verify -> patch -> export) per model.

    python analyses/model_stages.py [--models smollm2-135m gemma-3-270m] [--concept "Eiffel Tower"]
                                    [--json out.json]

Each stage is timed once, in one process, after the model's caches (dequantized checkpoint, MLP key
covariance, derived fit data) exist, unless --cold; the first run of a model includes building them
(reported separately by the `cold` column of a --cold run). ROCR fits on fit data only
(`fit_edit`); the verification is the small battery (no relearning/fluency) with 1024 held-out tokens.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def run_stages(model_name: str, concept_name: str, out_dir: Path, utility_tokens: int = 1024) -> dict:
    from workbench.concepts import get_concept, load_builtin
    from workbench.edits import fit_edit
    from workbench.locate import locate
    from workbench.models import load_model
    from workbench.patches import export_hf
    from workbench.verify.battery import verify_edit

    times: dict[str, float] = {}

    def timed(stage, fn):
        t0 = time.perf_counter()
        out = fn()
        times[stage] = round(time.perf_counter() - t0, 2)
        return out

    model = timed("load", lambda: load_model(model_name))
    concept = get_concept(load_builtin(), concept_name)
    report = timed("locate", lambda: locate(model, concept, kinds=("concept_vectors", "directions", "tracing"),
                                            trace_probes=1, validate_top=6, progress=False))
    edit = timed("rocr", lambda: fit_edit("rocr", model, concept, report))
    result = timed("verify", lambda: verify_edit(model, concept, edit, utility_tokens=utility_tokens,
                                                 relearn=False, fluency=False))
    patch = timed("patch", lambda: edit.save(out_dir / f"{model_name}.patch", model=model))
    timed("export", lambda: export_hf(patch, model, out_dir / f"{model_name}-hf"))
    return {"model": model_name, "concept": concept_name, "times": times, "rocr_layer": edit.provenance.get("layers"),
            "forget": result["forget"], "retain": result["retain"], "perplexity": result["perplexity"],
            "kl": result.get("kl")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma-3-270m"])
    ap.add_argument("--concept", default="Eiffel Tower")
    ap.add_argument("--utility-tokens", type=int, default=1024)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rows.append(run_stages(name, args.concept, Path(tmp), args.utility_tokens))
    stages = list(rows[0]["times"])
    print(f"concept {args.concept!r}; seconds per stage (one run each)")
    print(f"{'model':<14}" + "".join(f"{s:>9}" for s in stages) + f"{'layer':>8}{'forget hit':>16}{'retain hit':>16}"
          f"{'ppl':>16}")
    for r in rows:
        f, rt, p = r["forget"], r["retain"], r["perplexity"]
        print(f"{r['model']:<14}" + "".join(f"{r['times'][s]:9.1f}" for s in stages) + f"{str(r['rocr_layer']):>8}"
              f"{f['hit_before']:>8.2f}->{f['hit_after']:.2f}{rt['hit_before']:>10.2f}->{rt['hit_after']:.2f}"
              f"{(p['before'] or 0):>9.1f}->{(p['after'] or 0):.1f}")
    if args.json:
        from workbench.paths import write_json
        write_json(args.json, {"rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
