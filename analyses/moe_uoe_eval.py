"""UOE vs. the same unlearning loss on all experts of the attributed layer and on the full model.

On a `workbench build-moe` model, for several entities the model knows: fit
  - uoe    : the top-attributed expert only (+ its router row, router anchor loss), and
  - layer  : the same loss on every routed expert of that layer (params = fused expert tensors),
  - full   : the same loss on every parameter,
training on the entity's training-phrasing (completion) probes only, then verify on all forms:
forget hit (training phrasing), held-out-phrasing forget hit (paraphrase / reversed / question
phrasings the model never saw in training), retain hit on other entities, held-out perplexity,
routing drift on forget and retain tokens, fraction of parameters changed, wall time.

The SEUF paper's qualitative claim (arXiv 2411.18797): full-model unlearning on an MoE shifts the
routing and loses utility; unlearning one expert forgets as well with far less utility loss.

    PYTHONPATH=. python analyses/moe_uoe_eval.py --model DIR --entities 3 --json out/moe_uoe.json --html out/moe_uoe.html
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

SCOPES = ("uoe", "uoe_down", "uoe_noanchor", "layer", "full")
# uoe_down: only the expert's down projection (+ router row); uoe_noanchor: uoe without the router anchor loss



def evaluate(model, world, names: list[str], loss: str = "npo", steps: int = 30, lr: float = 1e-3,
             lr_full: float | None = None, lr_uoe: float | None = None, utility_tokens: int = 2048, max_new_tokens: int = 6,
             scopes: tuple[str, ...] = ("uoe", "layer", "full"), world_retain: bool = True) -> dict:
    from workbench.concepts.schema import Concept
    from workbench.data.world import concepts_for
    from workbench.edits import fit_edit
    from workbench.verify.battery import verify_edit
    from workbench.verify.probes import score_probes, summarize
    total = sum(p.numel() for p in model.hf.parameters())
    rows = []
    for rec in concepts_for(world, names):
        full_c = Concept.from_dict(rec)
        train_c = Concept.from_dict({**rec, "forget": [p for p in rec["forget"] if p["form"] == "completion"]})
        held = [p for p in full_c.forget if p.extra.get("held_out")]
        layer = None
        for scope in scopes:
            t0 = time.perf_counter()
            if scope == "uoe":
                edit = fit_edit("uoe", model, train_c, loss=loss, steps=steps, lr=lr_uoe or lr)
                layer = edit.hyper["layer"]
            elif scope == "uoe_noanchor":
                edit = fit_edit("uoe", model, train_c, loss=loss, steps=steps, lr=lr_uoe or lr, anchor=0.0)
            elif scope == "uoe_down":
                edit = fit_edit("uoe", model, train_c, loss=loss, steps=steps, lr=lr_uoe or lr, tensors="down_proj")
            elif scope == "layer":
                if layer is None:
                    from workbench.locate.routing import expert_attribution
                    layer = expert_attribution(model, train_c).top.layer
                edit = fit_edit(loss, model, train_c, steps=steps, lr=lr, params=f".layers.{layer}.mlp.experts.")
            else:
                edit = fit_edit(loss, model, train_c, steps=steps, lr=lr_full or lr, params="all")
            fit_s = time.perf_counter() - t0
            res = verify_edit(model, full_c, edit, max_new_tokens=max_new_tokens, utility_tokens=utility_tokens,
                              relearn=False, leakage=False, fluency=False)
            with edit.applied(model):
                held_after = summarize(score_probes(model, held, max_new_tokens=max_new_tokens)) if held else None
            held_before = summarize(score_probes(model, held, max_new_tokens=max_new_tokens)) if held else None
            world_acc = None
            if world_retain:                  # every other entity's trained facts: the world knowledge kept
                from workbench.models.synthetic import completion_accuracy
                with edit.applied(model):
                    acc = completion_accuracy(model, world)
                others = [e for e in world.entities if e.name != full_c.name]
                world_acc = sum(acc[e.name] * len(e.facts) for e in others) / sum(len(e.facts) for e in others)
            bf = res["by_form"]
            row = {"entity": full_c.name, "scope": scope, "loss": loss, "layer": layer,
                   "site": edit.provenance.get("site"), "edit_seconds": round(edit.edit_seconds, 2),
                   "fit_seconds": round(fit_s, 2),
                   "params_changed": edit.params_changed(), "fraction_params_changed": edit.params_changed() / total,
                   "forget_hit_training_phrasing": (bf["completion"]["hit_before"], bf["completion"]["hit_after"]),
                   "forget_hit_held_out": (held_before["hit"], held_after["hit"]) if held else None,
                   "forget_hit_all": (res["forget"]["hit_before"], res["forget"]["hit_after"]),
                   "retain_hit": (res["retain"]["hit_before"], res["retain"]["hit_after"]),
                   "forget_prob": (res["forget"]["prob_before"], res["forget"]["prob_after"]),
                   "perplexity": (res["perplexity"]["before"], res["perplexity"]["after"]),
                   "kl": res.get("kl"), "world_retain_accuracy_after": world_acc,
                   "routing_drift_forget": res["routing_drift"]["forget"]["changed_share"],
                   "routing_drift_retain": res["routing_drift"]["retain"]["changed_share"],
                   "by_form": {f: (v["hit_before"], v["hit_after"]) for f, v in bf.items()}}
            if scope.startswith("uoe"):
                row["selection_rate_forget"] = edit.provenance["selection_rate_forget"]
            rows.append(row)
            print(f"{full_c.name:<18} {scope:<5} forget {row['forget_hit_training_phrasing'][0]:.2f}->"
                  f"{row['forget_hit_training_phrasing'][1]:.2f}  held-out "
                  f"{(row['forget_hit_held_out'] or (float('nan'),) * 2)[0]:.2f}->"
                  f"{(row['forget_hit_held_out'] or (float('nan'),) * 2)[1]:.2f}  retain {row['retain_hit'][0]:.2f}->"
                  f"{row['retain_hit'][1]:.2f}  world {world_acc if world_acc is not None else float('nan'):.3f}  ppl {row['perplexity'][0]:.1f}->{row['perplexity'][1]:.1f}  "
                  f"drift f/r {row['routing_drift_forget']:.3f}/{row['routing_drift_retain']:.3f}  "
                  f"params {row['fraction_params_changed']:.2%}  {row['edit_seconds']:.1f}s", flush=True)
    return {"rows": rows, "summary": summarize_rows(rows)}


def summarize_rows(rows: list[dict]) -> dict:
    out = {}
    for scope in SCOPES:
        rs = [r for r in rows if r["scope"] == scope]
        if not rs:
            continue
        mean = lambda xs: statistics.fmean(xs) if xs else None  # noqa: E731
        out[scope] = {
            "n": len(rs),
            "forget_hit_training_phrasing_after": mean([r["forget_hit_training_phrasing"][1] for r in rs]),
            "forget_hit_training_phrasing_before": mean([r["forget_hit_training_phrasing"][0] for r in rs]),
            "forget_hit_held_out_after": mean([r["forget_hit_held_out"][1] for r in rs if r["forget_hit_held_out"]]),
            "forget_hit_held_out_before": mean([r["forget_hit_held_out"][0] for r in rs if r["forget_hit_held_out"]]),
            "retain_hit_after": mean([r["retain_hit"][1] for r in rs]),
            "world_retain_accuracy_after": mean([r["world_retain_accuracy_after"] for r in rs
                                                 if r["world_retain_accuracy_after"] is not None]),
            "retain_hit_before": mean([r["retain_hit"][0] for r in rs]),
            "perplexity_after": mean([r["perplexity"][1] for r in rs if r["perplexity"][1] is not None]),
            "perplexity_before": mean([r["perplexity"][0] for r in rs if r["perplexity"][0] is not None]),
            "routing_drift_forget": mean([r["routing_drift_forget"] for r in rs]),
            "routing_drift_retain": mean([r["routing_drift_retain"] for r in rs]),
            "fraction_params_changed": mean([r["fraction_params_changed"] for r in rs]),
            "edit_seconds": mean([r["edit_seconds"] for r in rs]),
        }
    if "uoe" in out and "full" in out and out["full"]["edit_seconds"]:
        out["wall_time_ratio_uoe_over_full"] = out["uoe"]["edit_seconds"] / out["full"]["edit_seconds"]
    return out


def figure(summary: dict):
    import plotly.graph_objects as go
    metrics = [("forget_hit_training_phrasing_after", "forget hit (trained phrasing)"),
               ("forget_hit_held_out_after", "forget hit (held-out phrasings)"),
               ("retain_hit_after", "retain hit"), ("world_retain_accuracy_after", "other entities' facts"), ("routing_drift_retain", "routing drift (retain)"),
               ("routing_drift_forget", "routing drift (forget)")]
    fig = go.Figure()
    for scope in SCOPES:
        if scope in summary:
            fig.add_bar(name=scope, x=[m[1] for m in metrics], y=[summary[scope][m[0]] for m in metrics])
    fig.update_layout(barmode="group", title="UOE vs layer-experts vs full-model unlearning (after edit; lower "
                      "forget = better, higher retain = better, lower drift = better)")
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a build-moe folder")
    ap.add_argument("--entities", type=int, default=3)
    ap.add_argument("--min-acc", type=float, default=1.0)
    ap.add_argument("--loss", default="npo", choices=["ga", "graddiff", "npo", "simnpo"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-uoe", type=float, default=None, help="lr of the uoe runs (default: --lr)")
    ap.add_argument("--lr-full", type=float, default=None, help="lr of the full-model run (default: --lr)")
    ap.add_argument("--utility-tokens", type=int, default=2048)
    ap.add_argument("--no-world-retain", action="store_true", help="skip scoring every other entity's facts")
    ap.add_argument("--scopes", default="uoe,layer,full", help=f"comma-separated, from {','.join(SCOPES)}")
    ap.add_argument("--json", required=True)
    ap.add_argument("--html", default=None)
    args = ap.parse_args(argv)
    from workbench.models.synthetic import completion_accuracy, known_entities
    from workbench.data.world import World
    from workbench.models import load_model
    from workbench.paths import write_json
    torch.manual_seed(0)
    folder = Path(args.model)
    world = World.load(folder / "world.json")
    model = load_model(str(folder))
    acc = completion_accuracy(model, world)
    n_facts = {e.name: len(e.facts) for e in world.entities}
    fact_acc = sum(acc[k] * n_facts[k] for k in acc) / sum(n_facts.values())
    print(f"completion (training phrasing) greedy accuracy over {sum(n_facts.values())} facts: {fact_acc:.3f}; "
          f"entities fully known: {sum(v == 1.0 for v in acc.values())}/{len(acc)}")
    names = known_entities(model, world, args.entities, min_acc=args.min_acc, accuracy=acc)
    if not names:
        print(f"{folder}: no entity reaches completion accuracy {args.min_acc}", file=sys.stderr)
        return 2
    print(f"entities: {names}")
    doc = evaluate(model, world, names, loss=args.loss, steps=args.steps, lr=args.lr, lr_full=args.lr_full, lr_uoe=args.lr_uoe,
                   utility_tokens=args.utility_tokens, scopes=tuple(args.scopes.split(",")),
                   world_retain=not args.no_world_retain)
    doc.update({"model": str(folder), "entities": names, "args": vars(args),
                "completion_accuracy": fact_acc})
    if "full" in doc["summary"]:
        doc["summary"]["world_retain_accuracy_before"] = fact_acc
    build = folder / "build.json"
    if build.exists():
        doc["build"] = json.loads(build.read_text())
    write_json(args.json, doc)
    print(json.dumps(doc["summary"], indent=1))
    if args.html:
        from workbench.reporting import write_html
        print(f"wrote {write_html(args.html, [figure(doc['summary'])])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
