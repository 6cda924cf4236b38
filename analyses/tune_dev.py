"""Choose the fine-tuning baselines' budget (lr x steps) on the DEV split only.

For each method and each grid point, fit on every dev concept (fit data only: the fit view) and
score the dev concepts' evaluation probes (forget / retain hit), a sample of the world-knowledge set
and held-out perplexity. The chosen point per method is the one with the lowest mean forget hit
among those that keep retain >= 0.95x, world knowledge >= 0.98x and perplexity <= 1.02x on average;
if none does, the one with the best (retain ratio - forget hit). Writes a JSON
{"chosen": {method: {lr, steps}}, "grid": [...rows...]} that `workbench bench --hyper FILE` reads
(only the "chosen" part is used by the bench: pass `--hyper` the file written with --hyper-out).

    PYTHONPATH=. python analyses/tune_dev.py --methods ga,graddiff,npo,simnpo \
        --json out/tune_dev.json --hyper-out out/dev_hyper.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import time


def _rate(scores) -> float:
    return sum(s.hit for s in scores) / max(1, len(scores))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--methods", default="ga,graddiff,npo,simnpo")
    ap.add_argument("--lrs", default="1e-5,3e-5")
    ap.add_argument("--steps", default="5,10,20")
    ap.add_argument("--concepts", type=int, default=3, help="dev concepts used (first N of the dev split)")
    ap.add_argument("--world", type=int, default=60, help="world-knowledge probes scored")
    ap.add_argument("--ppl-tokens", type=int, default=1024)
    ap.add_argument("--json", required=True)
    ap.add_argument("--hyper-out", default=None)
    args = ap.parse_args(argv)

    import torch
    from tqdm.auto import tqdm
    from workbench import load_model
    from workbench.concepts.suite import load_suite, load_world_knowledge
    from workbench.edits import fit_edit
    from workbench.paths import write_json
    from workbench.verify.probes import score_probes
    from workbench.verify.utility import perplexity

    model = load_model(args.model)
    dev = load_suite("dev")[: args.concepts]
    world_all = load_world_knowledge()
    world = world_all[:: max(1, len(world_all) // args.world)][: args.world]
    base = {}
    for c in dev:
        base[c.name] = (_rate(score_probes(model, c.forget)), _rate(score_probes(model, c.retain)))
    world_before = _rate(score_probes(model, world))
    ppl_before = perplexity(model, n_tokens=args.ppl_tokens)
    rows = []
    grid = list(itertools.product(args.methods.split(","), [float(x) for x in args.lrs.split(",")],
                                  [int(x) for x in args.steps.split(",")]))
    for method, lr, steps in tqdm(grid, desc="dev grid"):
        per = []
        t0 = time.perf_counter()
        for c in dev:
            edit = fit_edit(method, model, c, lr=lr, steps=steps)
            with edit.applied(model):
                f = _rate(score_probes(model, c.forget))
                r = _rate(score_probes(model, c.retain))
                w = _rate(score_probes(model, world))
                p = perplexity(model, n_tokens=args.ppl_tokens)
            per.append({"concept": c.name, "forget_hit": f, "retain_ratio": r / max(1e-9, base[c.name][1]),
                        "world_ratio": w / max(1e-9, world_before), "ppl_ratio": p / ppl_before})
        mean = {k: sum(x[k] for x in per) / len(per) for k in ("forget_hit", "retain_ratio", "world_ratio", "ppl_ratio")}
        rows.append({"method": method, "lr": lr, "steps": steps, **mean, "per_concept": per,
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{method:9s} lr={lr:g} steps={steps:3d}  forget {mean['forget_hit']:.2f}  retain x{mean['retain_ratio']:.2f}"
              f"  world x{mean['world_ratio']:.2f}  ppl x{mean['ppl_ratio']:.3f}", flush=True)
    chosen = {}
    for method in args.methods.split(","):
        mine = [r for r in rows if r["method"] == method]
        ok = [r for r in mine if r["retain_ratio"] >= 0.95 and r["world_ratio"] >= 0.98 and r["ppl_ratio"] <= 1.02]
        best = min(ok, key=lambda r: r["forget_hit"]) if ok else max(mine, key=lambda r: r["retain_ratio"] - r["forget_hit"])
        chosen[method] = {"lr": best["lr"], "steps": best["steps"], "meets_constraints": bool(ok)}
    doc = {"model": model.model_id, "split": "dev", "concepts": [c.name for c in dev], "n_world": len(world),
           "baseline": {"world_hit": world_before, "perplexity": ppl_before, "per_concept": base},
           "chosen": chosen, "grid": rows}
    write_json(args.json, doc)
    if args.hyper_out:
        write_json(args.hyper_out, {m: {"lr": v["lr"], "steps": v["steps"]} for m, v in chosen.items()})
    print(json.dumps(chosen, indent=1))
    torch.set_num_threads(torch.get_num_threads())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
