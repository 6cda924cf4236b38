"""The README's main job: locate -> ROCR -> verify -> export a patch, on the embedded model."""
from __future__ import annotations

import time
from pathlib import Path


def _table(before: dict, after: dict) -> str:
    lines = [f"{'':<22}{'before':>10}{'after':>10}"]
    for key in ("forget", "retain"):
        for m in ("hit", "prob"):
            lines.append(f"{key + ' ' + m:<22}{before[key][m]:>10.3f}{after[key][m]:>10.3f}")
    if "perplexity" in before:
        lines.append(f"{'perplexity (held-out)':<22}{before['perplexity']:>10.2f}{after['perplexity']:>10.2f}")
    for form in before["forget"]["by_form"]:
        b, a = before["forget"]["by_form"][form], after["forget"]["by_form"][form]
        lines.append(f"{'  forget hit: ' + form:<22}{b['hit']:>10.2f}{a['hit']:>10.2f}")
    return "\n".join(lines)


def run_demo(concept: str = "Japan", out: str | Path = "workbench-demo", model_name: str = "smollm2-135m",
             ppl_tokens: int = 4096) -> int:
    from workbench.cli import _write_html
    from workbench.concepts import get_concept, load_builtin
    from workbench.edits import fit_edit
    from workbench.locate import locate
    from workbench.models import load_model
    from workbench.paths import write_json
    from workbench.verify.probes import score_probes, summarize
    from workbench.verify.utility import perplexity

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1/5] loading {model_name}")
    model = load_model(model_name)
    print(f"      {model!r}")
    c = get_concept(load_builtin(), concept)
    print(f"[2/5] locating {c.name!r} (concept vectors, residual directions, causal tracing)")
    report = locate(model, c, kinds=("concept_vectors", "directions", "tracing"), trace_probes=1, validate_top=6)
    print(report.summary(n=5))
    write_json(out / "localization.json", report.to_dict())

    print("[3/5] scoring the unedited model")

    def measure():
        res = {k: summarize(score_probes(model, getattr(c, k))) for k in ("forget", "retain")}
        res["perplexity"] = perplexity(model, n_tokens=ppl_tokens)
        return res
    before = measure()
    print(f"[4/5] ROCR: redirect {c.subject!r} -> {c.redirect_to!r}")
    layer = report.best_layer("causal_trace_mlp")
    edit = fit_edit("rocr", model, c, report, layer=layer)
    print(f"      layer {edit.provenance['layers']}, {edit.params_changed():,} params, {edit.edit_seconds:.2f} s "
          f"(covariance cached after the first run)")
    with edit.applied(model):
        after = measure()
    print(_table(before, after))
    edit.report = {k: {"hit_before": before[k]["hit"], "hit_after": after[k]["hit"],
                       "prob_before": before[k]["prob"], "prob_after": after[k]["prob"]} for k in ("forget", "retain")}
    edit.report["perplexity"] = {"before": before["perplexity"], "after": after["perplexity"]}
    print("[5/5] exporting")
    patch = edit.save(out / "rocr.patch", model=model)
    _write_html(out / "report.html", report.figures())
    print(f"patch:  {patch}\nreport: {out / 'report.html'}  (localization JSON: {out / 'localization.json'})")
    print(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0
