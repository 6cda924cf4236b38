"""ROCR batch and sequential erasure benchmark: alphaedit (published) vs rome, dev choice, test numbers.

    PYTHONPATH=. python analyses/rocr_batch.py --concepts builtin --json out/rocr_batch.json

Split: concepts' `split` field when the file has one; otherwise (the 10 built-in concepts) a
stand-in: even positions dev, odd positions test. Fits use fit data only (`fit_edit` hands ROCR
the fit view) and, here, no forget prompts at all (`use_forget_prompts=False`), so every scored
probe is held out. For each update: the dev batch (all dev concepts in one edit) picks the default
(lowest forget hit among configurations with retain >= 0.95x and perplexity <= 1.02x, else the
best retain); on test: each concept alone (size 1), all test concepts in one edit (batch) and one
edit per concept stacked with `parent` (sequential). Reported: forget / retain hit pooled over the
probes with Wilson 95 % intervals (n = probes), perplexity ratio on the held-out split, fit seconds
per concept (statistics cached), and the one-off statistics cost.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch


def wilson(k: int, n: int) -> list[float] | None:
    """workbench.verify.stats.wilson, rounded for the table."""
    from workbench.verify.stats import wilson as _wilson
    ci = _wilson(k, n)
    return None if ci is None else [round(x, 3) for x in ci]


def hits(model, probes) -> tuple[int, int]:
    from workbench.verify.probes import score_probes
    s = score_probes(model, probes)
    return sum(bool(x.hit) for x in s), len(s)


def score(model, concepts) -> dict:
    fk = fn = rk = rn = 0
    for c in concepts:
        a, b = hits(model, c.forget)
        fk, fn = fk + a, fn + b
        a, b = hits(model, c.retain)
        rk, rn = rk + a, rn + b
    return {"forget": [fk, fn], "retain": [rk, rn]}


def summary(before: dict, after: dict, ppl0: float, ppl: float, seconds: float, n_concepts: int) -> dict:
    fk, fn = after["forget"]
    rk, rn = after["retain"]
    r0 = before["retain"][0] / max(1, before["retain"][1])
    return {"concepts": n_concepts, "forget_hit": round(fk / fn, 3), "forget_ci": wilson(fk, fn), "forget_n": fn,
            "forget_hit_before": round(before["forget"][0] / before["forget"][1], 3),
            "retain_hit": round(rk / rn, 3), "retain_ci": wilson(rk, rn), "retain_n": rn,
            "retain_ratio": round((rk / rn) / r0, 3) if r0 else None,
            "ppl_ratio": round(ppl / ppl0, 4), "fit_s_per_concept": round(seconds / n_concepts, 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--concepts", default="builtin")
    ap.add_argument("--updates", default="alphaedit,rome")
    ap.add_argument("--ppl-tokens", type=int, default=2048)
    ap.add_argument("--cov-tokens", type=int, default=16384)
    ap.add_argument("--json", default="out/rocr_batch.json")
    args = ap.parse_args()
    from workbench import load_model
    from workbench.concepts import load_builtin, read_concepts
    from workbench.edits import fit_edit
    from workbench.edits.rocr_math import statistics_cost
    from workbench.paths import write_json
    from workbench.verify.utility import perplexity
    model = load_model(args.model)
    pool = load_builtin() if args.concepts == "builtin" else read_concepts(args.concepts)
    splits = [getattr(c, "split", None) for c in pool]
    if any(splits):
        dev = [c for c in pool if c.split == "dev"]
        test = [c for c in pool if c.split == "test"]
        split_note = "concept file split"
    else:
        dev, test = pool[0::2], pool[1::2]
        split_note = "stand-in: even positions dev, odd positions test (no split in the file)"
    base_kw = dict(use_forget_prompts=False, cov_tokens=args.cov_tokens)
    t0 = time.perf_counter()
    fit_edit("rocr", model, dev[:1], **base_kw)                   # statistics + fit data, one-off
    warm_s = time.perf_counter() - t0
    layers = fit_edit("rocr", model, dev[:1], **base_kw).provenance["layers"]
    cost = statistics_cost(model, layers, args.cov_tokens, 128)
    ppl0 = perplexity(model, args.ppl_tokens)
    base = {c.name: score(model, [c]) for c in dev + test}

    def merged(cs):
        return {k: [sum(base[c.name][k][i] for c in cs) for i in (0, 1)] for k in ("forget", "retain")}

    def run_batch(cs, update):
        t = time.perf_counter()
        e = fit_edit("rocr", model, cs, update=update, **base_kw)
        sec = time.perf_counter() - t
        with e.applied(model):
            return summary(merged(cs), score(model, cs), ppl0, perplexity(model, args.ppl_tokens), sec, len(cs))

    def run_sequential(cs, update):
        applied, sec = [], 0.0
        try:
            for c in cs:
                t = time.perf_counter()
                e = fit_edit("rocr", model, [c], update=update, parent=applied[-1] if applied else None, **base_kw)
                sec += time.perf_counter() - t
                applied.append(e.apply(model))
            return summary(merged(cs), score(model, cs), ppl0, perplexity(model, args.ppl_tokens), sec, len(cs))
        finally:
            for e in reversed(applied):
                e.revert(model)

    def run_single(cs, update):
        rows = [run_batch([c], update) for c in cs]
        after = {"forget": [round(r["forget_hit"] * r["forget_n"]) for r in rows],
                 "retain": [round(r["retain_hit"] * r["retain_n"]) for r in rows]}
        agg = {k: [sum(after[k]), sum(r[f"{k}_n"] for r in rows)] for k in ("forget", "retain")}
        s = summary(merged(cs), agg, ppl0, ppl0 * math.prod(r["ppl_ratio"] for r in rows) ** (1 / len(rows)),
                    sum(r["fit_s_per_concept"] for r in rows), len(cs))
        s["ppl_ratio_note"] = "geometric mean over the single-concept edits"
        s["per_concept"] = {c.name: r for c, r in zip(cs, rows)}
        return s

    updates = args.updates.split(",")
    doc = {"model": model.model_id, "split": split_note, "dev": [c.name for c in dev], "test": [c.name for c in test],
           "layers": layers, "statistics": cost, "first_fit_seconds_incl_statistics_and_fit_data": round(warm_s, 1),
           "ppl_before": round(ppl0, 3), "dev_results": {}, "test_results": {}}
    for u in updates:
        doc["dev_results"][u] = run_batch(dev, u)
        print("dev", u, doc["dev_results"][u], flush=True)

    def rank(r):
        ok = r["retain_ratio"] is not None and r["retain_ratio"] >= 0.95 and r["ppl_ratio"] <= 1.02
        return (0 if ok else 1, r["forget_hit"] if ok else -(r["retain_ratio"] or 0))
    doc["default"] = min(updates, key=lambda u: rank(doc["dev_results"][u]))
    print("default on dev:", doc["default"], flush=True)
    for u in updates:
        res = {"single": run_single(test, u), "batch": run_batch(test, u), "sequential": run_sequential(test, u)}
        doc["test_results"][u] = res
        print("test", u, json.dumps(res), flush=True)
        write_json(args.json, doc)
    write_json(args.json, doc)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    raise SystemExit(main())
