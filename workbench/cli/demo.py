"""The README's main job: locate -> ROCR -> verify -> export a patch, on the embedded model.

Verification is the same battery `workbench verify` and `workbench bench` use
(`workbench.verify.battery.verify_edit`); its result is stored in the patch manifest.
"""
from __future__ import annotations

import time
from pathlib import Path


def run_demo(concept: str = "Japan", out: str | Path = "workbench-demo", model_name: str = "smollm2-135m",
             ppl_tokens: int = 4096) -> int:
    from workbench.reporting import write_html
    from workbench.concepts import get_concept, load_builtin
    from workbench.edits import fit_edit
    from workbench.locate import locate
    from workbench.models import load_model
    from workbench.paths import write_json
    from workbench.verify.battery import verify_edit
    from workbench.verify.bench import bench_figures, compact_table

    t_start = time.perf_counter()

    def elapsed() -> str:
        return f"  [{time.perf_counter() - t_start:.0f} s]"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1/5] loading {model_name}", flush=True)
    model = load_model(model_name)
    print(f"      {model!r}")
    c = get_concept(load_builtin(), concept)
    print(f"[2/5] locating {c.name!r} (concept vectors, residual directions, causal tracing)" + elapsed(), flush=True)
    report = locate(model, c, kinds=("concept_vectors", "directions", "tracing"), trace_probes=1, validate_top=6)
    print(report.summary(n=5))
    write_json(out / "localization.json", report.to_dict())

    print(f"[3/5] ROCR: redirect {c.subject!r} -> {c.redirect_to!r}" + elapsed(), flush=True)
    edit = fit_edit("rocr", model, c, report)
    print(f"      layer {edit.provenance['layers']}, {edit.params_changed():,} params, {edit.edit_seconds:.2f} s "
          f"(covariance cached after the first run)")
    fit = edit.provenance["fit"]
    print(f"      fitted on {fit['n_forget']} forget / {fit['n_retain']} retain FIT texts ({fit['source']}); "
          f"evaluation probes seen by the fit: {fit['overlap_with_eval']}")
    print("[4/5] verifying (probes per form, held-out perplexity and KL, parametric trace, logit-lens leakage)"
          + elapsed(),
          flush=True)
    result = verify_edit(model, c, edit, utility_tokens=ppl_tokens, relearn=False, fluency=False)
    print(compact_table(result))
    edit.report = result
    import workbench
    doc = {"model": model.model_id, "workbench_version": workbench.__version__, "results": [result]}
    write_json(out / "verification.json", doc)
    print("[5/5] exporting" + elapsed(), flush=True)
    patch = edit.save(out / "rocr.patch", model=model)
    print(f"wrote {write_html(out / 'report.html', report.figures() + bench_figures(doc))}")
    print(f"patch:  {patch}\nreport: {out / 'report.html'}  (localization: {out / 'localization.json'}, "
          f"verification: {out / 'verification.json'})")
    print(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0
