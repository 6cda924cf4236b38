"""WAGLE evaluation: attribution-guided masks vs no mask vs random vs magnitude masks, at the same
unlearning loss, learning rate, steps and keep share (Jia et al., NeurIPS 2024, Tables 2-3 in spirit).

Held-out protocol: the attribution scores and the edit see only the concept's FIT view
(workbench.concepts.fit.fit_view); the battery scores the evaluation probes. Rates carry n and a
95 % Wilson interval.

For each concept and each mask kind: score the weights (timed: attribution cost in forward+backward
passes and seconds), keep the top (1 - sparsity) share, run the masked unlearning edit
(workbench.edits.wagle) and verify it (workbench.verify.battery: forget / retain hit and prob, per
form, held-out perplexity and KL). Writes one JSON document (docs/report.md results, method
"wagle:<mask>", plus a summary table) and an HTML page: the forget-vs-utility trade-off, per-form
bars, the attribution heat map (layer x module) and the mask sparsity per module.

    python analyses/wagle_eval.py --concept "Eiffel Tower" --concept Japan \
        --masks wagle,none,random,magnitude --json out/wagle_eval.json --html out/wagle_eval.html
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def wilson(k: float, n: int) -> list[float] | None:
    """workbench.verify.stats.wilson (95 %), rounded for the table."""
    from workbench.verify.stats import wilson as _wilson
    ci = _wilson(int(k), n)
    return None if ci is None else [round(x, 4) for x in ci]


def _summary_row(r: dict, mask: str, steps: int) -> dict:
    ppl = r["perplexity"]
    n_f, n_r = r["forget"].get("n"), r["retain"].get("n")
    ci = lambda rate, n: wilson(round(rate * n), n) if rate is not None and n else None
    return {"concept": r["concept"], "mask": mask, "steps": steps, "n_forget": n_f, "n_retain": n_r,
            "forget_hit_ci": [ci(r["forget"]["hit_before"], n_f), ci(r["forget"]["hit_after"], n_f)],
            "retain_hit_ci": [ci(r["retain"]["hit_before"], n_r), ci(r["retain"]["hit_after"], n_r)],
            "forget_hit": [r["forget"]["hit_before"], r["forget"]["hit_after"]],
            "forget_prob": [r["forget"]["prob_before"], r["forget"]["prob_after"]],
            "retain_hit": [r["retain"]["hit_before"], r["retain"]["hit_after"]],
            "retain_prob": [r["retain"]["prob_before"], r["retain"]["prob_after"]],
            "perplexity": [ppl["before"], ppl["after"]], "kl": r.get("kl"),
            "params_changed": r["params_changed"], "edit_seconds": r["edit_seconds"],
            "attribution_seconds": r["attribution"]["seconds"], "attribution_passes": r["attribution"]["passes"]}


def format_summary(rows: list[dict]) -> str:
    head = (f"{'concept':<14} {'mask':<10} {'steps':>5} {'forget hit':>11} {'forget prob':>13} {'retain hit':>11} "
            f"{'retain prob':>13} {'ppl':>13} {'KL':>7} {'changed':>11} {'fit s':>6} {'attr s':>6} passes")
    lines = [head, "-" * len(head)]
    f = lambda ab, fmt: f"{ab[0]:{fmt}}->{ab[1]:{fmt}}" if None not in ab else "n/a"
    for r in rows:
        lines.append(f"{r['concept'][:14]:<14} {r['mask']:<10} {r['steps']:>5} {f(r['forget_hit'], '.2f'):>11} "
                     f"{f(r['forget_prob'], '.3f'):>13} {f(r['retain_hit'], '.2f'):>11} {f(r['retain_prob'], '.3f'):>13} "
                     f"{f(r['perplexity'], '.2f'):>13} {(r['kl'] or 0):7.4f} {r['params_changed']:>11,} "
                     f"{r['edit_seconds']:6.1f} {r['attribution_seconds']:6.1f} {r['attribution_passes']:>3}")
    return "\n".join(lines)


def tradeoff_figure(rows: list[dict]):
    import plotly.graph_objects as go
    fig = go.Figure()
    for mask in dict.fromkeys(r["mask"] for r in rows):
        rs = [r for r in rows if r["mask"] == mask]
        fig.add_trace(go.Scatter(x=[r["forget_prob"][1] for r in rs],
                                 y=[(r["perplexity"][1] or 0) / (r["perplexity"][0] or 1) for r in rs],
                                 mode="markers+text", text=[f"{r['concept']} ({r['steps']} steps)" for r in rs],
                                 textposition="top center",
                                 name=mask, marker={"size": 12}))
    fig.update_layout(title="Forget/utility trade-off at the same loss, steps and sparsity "
                            "(lower-left is better)",
                      xaxis_title="forget prob after (teacher-forced answer probability)",
                      yaxis_title="held-out perplexity after / before")
    return fig


def run(args) -> dict:
    import torch
    import workbench
    from tqdm.auto import tqdm
    from workbench.concepts import get_concept, load_builtin, read_concepts
    from workbench.concepts.fit import fit_view
    from workbench.edits import fit_edit
    from workbench.locate.masks import top_fraction
    from workbench.locate.weights import attribution_scores
    from workbench.models import load_model
    from workbench.paths import write_json
    from workbench.reporting import write_html
    from workbench.verify.battery import verify_edit
    from workbench.verify.bench import bench_figures

    pool = load_builtin() if args.concepts == "builtin" else read_concepts(args.concepts)
    concepts = [get_concept(pool, n) for n in (args.concept or ["Eiffel Tower"])]
    masks = [m.strip() for m in args.masks.split(",") if m.strip()]
    steps_list = [int(x) for x in str(args.steps).split(",") if x.strip()]
    torch.manual_seed(args.seed)
    model = load_model(args.model)
    hyper = {"loss": args.loss, "lr": args.lr, "steps": steps_list[0], "keep": args.keep, "scope": args.scope,
             "params": args.params, "mu": args.mu, "seed": args.seed,
             "retain_text_tokens": args.retain_text_tokens}
    doc = {"model": model.model_id, "workbench_version": workbench.__version__,
           "setup": {**hyper, "steps": steps_list},
           "results": [], "summary": [], "failures": []}
    figures = []
    tmp = Path(tempfile.mkdtemp(prefix="wagle_eval_"))
    for concept in concepts:
        for mask_kind in tqdm(masks, desc=concept.name):
            t0 = time.perf_counter()
            attribution = {"method": mask_kind, "seconds": 0.0, "passes": 0}
            if mask_kind == "none":
                mask_arg = "none"
            else:
                ws = attribution_scores(model, fit_view(model, concept), method=mask_kind, mu=args.mu,
                                        params=args.params, seed=args.seed, retain_text_tokens=args.retain_text_tokens)
                attribution.update(seconds=ws.meta["seconds"], passes=ws.meta["passes"])
                mask = top_fraction(ws, None, args.scope, keep=args.keep)
                if concept is concepts[0] and mask_kind == "wagle":
                    figures += ws.figures() + mask.figures()
                    attribution["top_weights"] = ws.top_weights(10)
                    attribution["layer_profile"] = ws.layer_profile(model.n_layers)
                del ws
                attribution["mask_seconds"] = round(time.perf_counter() - t0 - attribution["seconds"], 2)
                attribution["mask_by_module"] = {r["name"]: round(r["density"], 5) for r in mask.per_module()}
                mask_arg = str(mask.save(tmp / f"{mask_kind}.safetensors"))
                del mask
            for steps in steps_list:
                try:
                    edit = fit_edit("wagle", model, concept, **{**hyper, "steps": steps, "mask": mask_arg})
                except (ValueError, RuntimeError, FloatingPointError) as exc:
                    doc["failures"].append({"concept": concept.name, "mask": mask_kind, "steps": steps,
                                            "error": str(exc)})
                    continue
                edit.hyper["mask"] = mask_kind
                r = verify_edit(model, concept, edit, relearn=args.relearn, fluency=False, parametric=False,
                                leakage=False, utility_tokens=args.utility_tokens)
                r["method"] = f"wagle:{mask_kind}" + (f"@{steps}" if len(steps_list) > 1 else "")
                r["attribution"] = attribution
                doc["results"].append(r)
                doc["summary"].append(_summary_row(r, mask_kind, steps))
                print(format_summary(doc["summary"][-1:]).splitlines()[-1], flush=True)
                write_json(args.json, doc)                    # an interrupted run keeps what it measured
                del edit
    shutil.rmtree(tmp, ignore_errors=True)
    print(format_summary(doc["summary"]))
    if args.html:
        figs = [tradeoff_figure(doc["summary"])] + bench_figures(doc) + figures
        write_html(args.html, figs, title="WAGLE evaluation", table=format_summary(doc["summary"]))
        print(f"wrote {args.html}")
    write_json(args.json, doc)
    print(f"wrote {args.json}")
    return doc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--concepts", default="builtin")
    p.add_argument("--concept", action="append", default=None, help="repeatable; default: Eiffel Tower")
    p.add_argument("--masks", default="wagle,none,random,magnitude",
                   help="comma-separated: wagle, none, random, magnitude, gradient, snip")
    p.add_argument("--loss", default="npo", choices=["npo", "graddiff", "simnpo", "ga"])
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--steps", default="20", help="steps, or a comma-separated list for a trade-off curve")
    p.add_argument("--keep", type=float, default=0.95, help="share of weights kept for updating (WAGLE ratio)")
    p.add_argument("--scope", default="global", choices=["global", "per_module"])
    p.add_argument("--params", default="all")
    p.add_argument("--mu", type=float, default=1e-6)
    p.add_argument("--retain-text-tokens", type=int, default=0, help="general text added to the retain gradient")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--utility-tokens", type=int, default=2048)
    p.add_argument("--relearn", action="store_true")
    p.add_argument("--json", default="wagle_eval.json")
    p.add_argument("--html", default=None)
    args = p.parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
