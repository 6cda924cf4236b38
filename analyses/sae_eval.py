"""SAE study on the embedded model: train (or reuse) the default SAE, find a concept's features,
deactivate them with `sae-clamp` and verify with the same battery as the weight edits.

    PYTHONPATH=. python analyses/sae_eval.py [--concept Japan] [--sae DIR] [--out out/sae_eval]

Writes `sae_eval.json` (training metrics, top features, one result (docs/report.md) per sae-clamp setting) and
`sae_eval.html` (feature figures + the forget/retain bars). Everything is computed by library
functions (workbench.sae, workbench.locate.sae, workbench.edits.sae_clamp, workbench.verify).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--concept", default="Japan")
    ap.add_argument("--sae", default=None, help="SAE folder (default: train/reuse the default one)")
    ap.add_argument("--settings", default="scale:0,clamp:-4,scale:-2",
                    help="sae-clamp settings, mode:number, comma-separated")
    ap.add_argument("--n-features", type=int, default=8)
    ap.add_argument("--utility-tokens", type=int, default=2048)
    ap.add_argument("--full", action="store_true", help="also relearning, fluency, leakage (slow on a CPU)")
    ap.add_argument("--out", default="out/sae_eval")
    args = ap.parse_args(argv)

    from workbench import load_model
    from workbench.reporting import write_html
    from workbench.concepts import get_concept, load_builtin
    from workbench.edits import fit_edit
    from workbench.locate.sae import feature_figure, sae_concept_features
    from workbench.paths import cache_dir, write_json
    from workbench.sae import train
    from workbench.sae.store import load_sae
    from workbench.verify.battery import verify_edit
    from workbench.verify.bench import bench_figures, compact_table

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    concept = get_concept(load_builtin(), args.concept)
    doc: dict = {"model": model.model_id, "concept": concept.name}

    sae_dir = Path(args.sae) if args.sae else cache_dir("sae", "saes") / f"{model.model_id}-default"
    if not (sae_dir / "cfg.json").is_file():
        t0 = time.perf_counter()
        rec = train.train_from_cache(model, [train.default_site(model)], [2048], sae_dir)[0]
        print(f"trained {rec['name']} in {time.perf_counter() - t0:.0f} s: {rec['metrics']}")
    handle = load_sae(sae_dir)
    doc["sae"] = {"name": handle.name, "site": handle.site, "path": str(sae_dir), "sha256": handle.sha256,
                  "metrics": handle.meta.get("metrics"), "training": handle.meta.get("training")}
    print(f"SAE {handle.name}: {handle.meta.get('metrics')}")

    t0 = time.perf_counter()
    feats = sae_concept_features(model, concept, handle, top=max(8, args.n_features))
    doc["features_seconds"] = time.perf_counter() - t0
    doc["features"] = [f.to_dict() for f in feats]
    for f in feats:
        ce = f"{f.causal_effect:+.4f}" if f.causal_effect is not None else "n/a"
        print(f"  {f.name}  score {f.score:.3f}  concept {f.rate_concept:.0%} control {f.rate_control:.0%}  "
              f"causal {ce}  promotes {[t for t, _ in f.promoted[:6]]}")
        if f.snippets:
            print(f"      {''.join(f.snippets[0]['tokens'])!r} (max {f.snippets[0]['max']})")

    results = []
    for setting in args.settings.split(","):
        mode, number = setting.split(":")
        hyper = {"mode": mode, ("value" if mode == "clamp" else "scale"): float(number)}
        edit = fit_edit("sae-clamp", model, concept, sae=str(sae_dir), features=[f.index for f in feats[: args.n_features]],
                        **hyper)
        r = verify_edit(model, concept, edit, utility_tokens=args.utility_tokens, relearn=args.full,
                        fluency=args.full, leakage=args.full, parametric=False)
        r["setting"] = setting
        results.append(r)
        print(f"[{setting}]\n" + compact_table(r))
        for form, v in r["by_form"].items():
            print(f"  forget/{form:<11} hit {v['hit_before']:.2f} -> {v['hit_after']:.2f}")
        write_json(out / "sae_eval.json", {**doc, "results": results})
    figs = [feature_figure(f) for f in feats[:4]]
    try:
        figs += bench_figures({"model": model.model_id,
                               "results": [{**r, "method": f"sae-clamp[{r['setting']}]"} for r in results]})
    except Exception as exc:                         # figures are a convenience; the JSON is the record
        print(f"(bench figures skipped: {exc})")
    print(f"wrote {write_html(out / 'sae_eval.html', figs)}")
    print(json.dumps({r["setting"]: {"forget_hit": [r["forget"]["hit_before"], r["forget"]["hit_after"]],
                                     "retain_hit": [r["retain"]["hit_before"], r["retain"]["hit_after"]],
                                     "ppl": [r["perplexity"]["before"], r["perplexity"]["after"]]}
                      for r in results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
