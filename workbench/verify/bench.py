"""Benchmark: every (concept, method) pair fitted and verified into one JSON document (docs/report.md), plus an
HTML page with the forget-vs-retain trade-off and the per-form breakdown (plotly, offline).

Any registered method name works (`workbench.edits.methods()`); a pair that fails to fit is
recorded under "failures" (concept, method, error) instead of aborting the run.
"""
from __future__ import annotations

from typing import Sequence

from workbench.reporting import write_html  # noqa: F401 (re-exported: the bench's page writer)
from workbench.verify.battery import validate_report, validate_result, verify_edit  # noqa: F401 (re-exported)
from workbench.verify.resume import NOT_KNOWN_BELOW  # noqa: F401 (re-exported)

__all__ = ["run_bench", "check_grid", "bench_figures", "write_html", "validate_report", "validate_result", "format_table",
           "compact_table"]

CHEAP_VERIFY = {"relearn": False, "fluency": False}


def run_bench(model, concepts: Sequence, methods: Sequence[str], hyper: dict[str, dict] | None = None,
              json_out=None, html_out=None, progress: bool = True, verify: dict | None = None,
              utility_tokens: int = 4096, keep_going: bool = True, split: str | None = None,
              resume: bool = False) -> dict:
    """Fit and verify each method on each concept.

    hyper: {method: {hyper-parameter: value}}. verify: keyword arguments for `verify_edit`
    (default: no relearning and no fluency, to keep time down). Perplexity/KL are measured on
    `utility_tokens` held-out tokens. keep_going=False re-raises a failing fit. `json_out` is
    rewritten (atomically) after every pair, so an interrupted run keeps what it measured;
    resume=True keeps the results an earlier run left in `json_out` and does not rerun those pairs
    (`workbench.verify.resume`; `workbench bench` resumes unless given --restart).
    split: "dev" | "test" keeps only the concepts of that split (workbench.concepts.splits) and is
    recorded in the document. Each result also records the concept's `split` and the edit's `fit`
    provenance (source, n_forget, n_retain, overlap_with_eval). Results are in grid order
    (concept-major). The same sweep on a Ray cluster: `workbench.verify.sweep.run_bench_ray`.
    Returns {"model", "workbench_version", "split", "results": [...], "failures": [...], "not_known"}.
    """
    from tqdm.auto import tqdm
    from workbench.concepts.splits import select_split
    from workbench.verify.resume import ReportBuilder, finished_results, run_pair
    hyper = check_grid(methods, hyper)
    concepts = select_split(concepts, split)
    vkw = {**CHEAP_VERIFY, "utility_tokens": utility_tokens, **(verify or {})}
    by_name = {c.name: c for c in concepts}
    keys = [(c.name, m) for c in concepts for m in methods]
    finished = finished_results(json_out, model.model_id, split, hyper, vkw.get("max_new_tokens")) \
        if json_out and resume else []
    report = ReportBuilder(model.model_id, split, keys, finished, json_out)
    todo = report.todo()
    if progress and len(todo) < len(keys):
        print(f"resuming {json_out}: {len(keys) - len(todo)} of {len(keys)} pairs already finished")
    for name, method in tqdm(todo, desc="bench", disable=not progress):
        report.add(*run_pair(model, by_name[name], method, hyper.get(method, {}), vkw, keep_going))
    doc = report.finish()
    if html_out:
        write_html(html_out, bench_figures(doc), title="Concept Workbench benchmark", table=format_table(doc["results"]))
    return doc


def check_grid(methods: Sequence[str], hyper: dict[str, dict] | None) -> dict[str, dict]:
    """Fail fast on unknown method names and on hyper-parameters for methods not in the grid."""
    from workbench.edits import get_method
    hyper = hyper or {}
    for m in methods:
        get_method(m)
    unknown = sorted(set(hyper) - set(methods))
    if unknown:
        raise ValueError(f"hyper-parameters given for method(s) not benchmarked: {unknown}")
    return hyper


def bench_figures(doc: dict) -> list:
    """[trade-off scatter (hit), trade-off scatter (prob), per-form forget hit_after bars]."""
    import plotly.graph_objects as go
    results = doc["results"]
    methods = list(dict.fromkeys(r["method"] for r in results))
    figs = []
    for measure in ("hit", "prob"):
        fig = go.Figure()
        for m in methods:
            rs = [r for r in results if r["method"] == m]
            fig.add_trace(go.Scatter(
                x=[r["forget"][f"{measure}_after"] for r in rs], y=[r["retain"][f"{measure}_after"] for r in rs],
                mode="markers+text", name=m, text=[r["concept"] for r in rs], textposition="top center",
                marker={"size": 11}))
        fig.update_layout(title=f"Forget vs retain ({measure} after the edit; ideal: top left) — {doc['model']}",
                          xaxis_title=f"forget {measure} after (lower is better)",
                          yaxis_title=f"retain {measure} after (higher is better)",
                          xaxis_range=[-0.05, 1.05], yaxis_range=[-0.05, 1.1])
        figs.append(fig)
    forms = list(dict.fromkeys(f for r in results for f in r["by_form"]))
    fig = go.Figure()
    base = {}
    for f in forms:
        vals = [r["by_form"][f]["hit_before"] for r in results if f in r["by_form"]]
        base[f] = sum(vals) / len(vals)
    fig.add_trace(go.Bar(x=forms, y=[base[f] for f in forms], name="before (unedited)", marker_color="lightgray"))
    for m in methods:
        ys = []
        for f in forms:
            vals = [r["by_form"][f]["hit_after"] for r in results if r["method"] == m and f in r["by_form"]]
            ys.append(sum(vals) / len(vals) if vals else None)
        fig.add_trace(go.Bar(x=forms, y=ys, name=m))
    fig.update_layout(barmode="group", title="Forget hit rate by probe form (mean over concepts)",
                      xaxis_title="probe form", yaxis_title="forget hit", yaxis_range=[0, 1.05])
    figs.append(fig)
    return figs


def _f(x, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def format_table(results: Sequence[dict]) -> str:
    """Plain-text before -> after table, one row per result."""
    header = ["concept", "method", "forget hit", "subj-dep hit", "forget prob", "retain hit", "retain prob",
              "perplexity", "edit s", "params"]
    body = []
    for r in results:
        f, rt, p = r["forget"], r["retain"], r["perplexity"]
        sd = r.get("forget_subject_dependent") or {}
        body.append([r["concept"], r["method"], f"{_f(f['hit_before'])} -> {_f(f['hit_after'])}",
                     f"{_f(sd.get('hit_before'))} -> {_f(sd.get('hit_after'))}",
                     f"{_f(f['prob_before'], '.3f')} -> {_f(f['prob_after'], '.3f')}",
                     f"{_f(rt['hit_before'])} -> {_f(rt['hit_after'])}",
                     f"{_f(rt['prob_before'], '.3f')} -> {_f(rt['prob_after'], '.3f')}",
                     f"{_f(p['before'])} -> {_f(p['after'])}", _f(r.get("edit_seconds"), ".1f"),
                     f"{r['params_changed']:,}"])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]

    def line(cells):
        return "  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(b) for b in body)])


def compact_table(result: dict) -> str:
    """Before/after table of one verify_edit result: forget, retain, perplexity, KL, per form."""
    rows = [("", "before", "after")]
    for key in ("forget", "retain"):
        for m in ("hit", "prob"):
            rows.append((f"{key} {m}", f"{result[key][f'{m}_before']:.3f}", f"{result[key][f'{m}_after']:.3f}"))
    for key in ("forget", "retain"):
        g = result[key]
        if g.get("hit_after_ci"):
            lo, hi = g["hit_after_ci"]
            rows.append((f"  {key} hit after: 95 % CI (n={g.get('n')})", "", f"[{lo:.2f}, {hi:.2f}]"))
    ppl = result["perplexity"]
    if ppl["before"] is not None:
        rows.append(("perplexity (held-out)", f"{ppl['before']:.2f}", f"{ppl['after']:.2f}"))
    ind = result.get("perplexity_independent") or {}
    if ind.get("before") is not None:
        rows.append((f"perplexity ({ind.get('corpus')}, independent)", f"{ind['before']:.2f}", f"{ind['after']:.2f}"))
    wk = result.get("world_knowledge") or {}
    if wk.get("hit_before") is not None:
        rows.append((f"world knowledge hit ({wk.get('n')})", f"{wk['hit_before']:.3f}", f"{wk['hit_after']:.3f}"))
    if "kl" in result:
        rows.append(("KL to unedited (nats)", "0", f"{result['kl']:.4f}"))
    for form, v in result["by_form"].items():
        rows.append((f"  forget hit: {form}", f"{v['hit_before']:.2f}", f"{v['hit_after']:.2f}"))
    for form, v in result.get("retain_by_form", {}).items():
        rows.append((f"  retain hit: {form}", f"{v['hit_before']:.2f}", f"{v['hit_after']:.2f}"))
    if "forget_subject_dependent" in result:
        sd, n_given = result["forget_subject_dependent"], len(result["subject_control"]["answered_without_subject"])
        rows.append((f"forget hit, subject-dependent ({sd['n']})", f"{sd['hit_before']:.2f}", f"{sd['hit_after']:.2f}"))
        rows.append(("  probes answered w/o subject", str(n_given), ""))
    if "parametric_trace" in result:
        pt = result["parametric_trace"]
        rows.append((f"concept vectors kept (top {pt['top_n']})", "1.00", f"{pt['signature_remaining']:.2f}"))
    if "logit_lens_leakage" in result:
        lk = result["logit_lens_leakage"]
        rows.append(("lens: answer top-10 share", f"{lk['before']['top10_share']:.2f}",
                     f"{lk['after']['top10_share']:.2f}"))
    if "routing_drift" in result:                        # MoE models (workbench.locate.routing)
        for split in ("forget", "retain"):
            rows.append((f"routing: top-k changed ({split})", "0", f"{result['routing_drift'][split]['changed_share']:.3f}"))
    width = max(len(r[0]) for r in rows) + 2
    return "\n".join(f"{a:<{width}}{b:>10}{c:>14}" for a, b, c in rows)
