"""ROCR on the built-in suite: default chosen on dev, then 1 / 10 / 17 / 30 concepts erased at once
and sequentially, scored on the test split.

    PYTHONPATH=. python analyses/rocr_batch.py --json out/rocr_batch.json --md analyses/rocr_batch.md

Protocol (issue 16 on the held-out protocol of issue 15):
* every fit goes through `fit_edit`, so ROCR sees the fit view only (derived fit data; its prompts
  are seeds such as "Facts about X:", never an evaluation probe); every scored probe is held out.
* dev: each configuration (the current default and today's variants) edits each dev concept alone;
  the default is the configuration with the lowest pooled forget hit among those with pooled
  retain >= 0.95x and perplexity <= 1.02x (else the best retain).
* test: the dev winner and the runner-up, each on the 17 test concepts one at a time (size 1),
  the first 10 test concepts in one edit, all 17 in one edit, 30 concepts in one edit (the 17 test
  concepts + the first 13 dev ones; scored on the 17 test concepts, the dev part reported apart),
  and sequentially (one patch per concept, each fitted on top of the previous: `parent`) for 10
  and 30.
* forget: hit rate pooled over the scored concepts' forget probes (n = probes) and the
  subject-dependent part (probes the unedited model does NOT answer with the subject swapped for
  the redirect target); retain: pooled over their retain probes, leaving out probes that mention
  another concept erased in the same edit (counted); world knowledge: 220 facts (none about a suite
  concept); utility: perplexity ratio on held-out Shakespeare and on WordNet glosses (not among the
  ROCR statistics' sources). All rates carry Wilson 95 % intervals.
* time: fit seconds per concept with statistics and fit data cached; the one-off statistics cost
  and the one-off fit-data generation are reported apart.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch
from tqdm import tqdm

CONFIGS = {
    "default": {},
    "published": {"keys": "last", "contexts": "chat"},     # ORT: subject-last key, chat contexts only
    "rome": {"update": "rome"},
    "residual": {"target": "residual"},
}


def wilson(k: int, n: int):
    from workbench.verify.stats import wilson as _w
    ci = _w(k, n)
    return None if ci is None else [round(x, 3) for x in ci]


def rate(k: int, n: int) -> dict:
    return {"hit": round(k / n, 3) if n else None, "k": k, "n": n, "ci": wilson(k, n)}


def hits(model, probes) -> list[bool]:
    from workbench.verify.probes import score_probes
    return [bool(s.hit) for s in score_probes(model, probes)]


@torch.no_grad()
def ppl(model, source: str, n_tokens: int) -> float:
    from workbench.verify.utility import heldout_chunks, nll_from_logits
    chunks = heldout_chunks(model, n_tokens, 128, source=source)
    total = count = 0.0
    for s in range(0, len(chunks), 8):
        ids = chunks[s:s + 8].to(model.device)
        t, c = nll_from_logits(model.forward({"input_ids": ids, "attention_mask": torch.ones_like(ids)}), ids)
        total, count = total + t, count + c
    return math.exp(total / count)


class Bench:
    def __init__(self, model, concepts, world, ppl_tokens: int):
        from workbench.verify.battery import subject_swapped_probes
        self.model, self.world, self.ppl_tokens = model, world, ppl_tokens
        self.by_name = {c.name: c for c in concepts}
        self.base, self.dependent = {}, {}
        for c in tqdm(concepts, desc="baseline scores"):
            f, r = hits(model, c.forget), hits(model, c.retain)
            idx, swapped = subject_swapped_probes(c)
            given_away = {i for i, h in zip(idx, hits(model, swapped)) if h}
            self.dependent[c.name] = [i for i in range(len(c.forget)) if i in idx and i not in given_away]
            self.base[c.name] = {"forget": f, "retain": r}
        self.world_base = hits(model, world)
        self.ppl0 = {s: ppl(model, s, ppl_tokens) for s in ("shakespeare", "wordnet")}

    def _retain_kept(self, c, erased) -> list[int]:
        others = [o.subject.casefold() for o in erased if o.name != c.name]
        return [i for i, p in enumerate(c.retain) if not any(s in (p.prompt + " " + " ".join(p.answers)).casefold()
                                                             for s in others)]

    def score(self, scored, erased, world: bool = True, utility: bool = True) -> dict:
        """Pooled rates over `scored` concepts after an edit of `erased` (model currently edited)."""
        m = self.model
        fk = fn = dk = dn = rk = rn = rk0 = dropped = 0
        fk0 = 0
        vec = []
        for c in scored:
            f = hits(m, c.forget)
            vec += [int(x) for x in f]
            keep = self._retain_kept(c, erased)
            r = hits(m, [c.retain[i] for i in keep])
            fk, fn, fk0 = fk + sum(f), fn + len(f), fk0 + sum(self.base[c.name]["forget"])
            dep = self.dependent[c.name]
            dk, dn = dk + sum(f[i] for i in dep), dn + len(dep)
            rk, rn = rk + sum(r), rn + len(r)
            rk0 += sum(self.base[c.name]["retain"][i] for i in keep)
            dropped += len(c.retain) - len(keep)
        out = {"concepts": len(scored), "forget_before": rate(fk0, fn), "forget": rate(fk, fn),
               "forget_subject_dependent": rate(dk, dn), "retain_before": rate(rk0, rn), "retain": rate(rk, rn),
               "retain_ratio": round((rk / rn) / (rk0 / rn), 3) if rk0 else None,
               "retain_left_out_mentioning_erased": dropped, "forget_vector": vec}
        if world:
            w = hits(m, self.world)
            k0 = sum(self.world_base)
            kept = sum(a and b for a, b in zip(self.world_base, w))
            out["world_knowledge_kept"] = rate(kept, k0)
        if utility:
            out["ppl_ratio"] = {s: round(ppl(m, s, self.ppl_tokens) / p0, 4) for s, p0 in self.ppl0.items()}
        return out


def pooled_singles(rows: list[dict]) -> dict:
    def pool(key):
        k, n = sum(r[key]["k"] for r in rows), sum(r[key]["n"] for r in rows)
        return rate(k, n)
    out = {k: pool(k) for k in ("forget_before", "forget", "forget_subject_dependent", "retain_before", "retain")}
    out["retain_ratio"] = round(out["retain"]["k"] / out["retain_before"]["k"], 3) if out["retain_before"]["k"] else None
    if "world_knowledge_kept" in rows[0]:
        out["world_knowledge_kept"] = pool("world_knowledge_kept")
    if "ppl_ratio" in rows[0]:
        out["ppl_ratio_geomean"] = {s: round(math.prod(r["ppl_ratio"][s] for r in rows) ** (1 / len(rows)), 4)
                                    for s in rows[0]["ppl_ratio"]}
        out["ppl_ratio_max"] = {s: max(r["ppl_ratio"][s] for r in rows) for s in rows[0]["ppl_ratio"]}
    out["concepts"] = len(rows)
    out["forget_vector"] = [x for r in rows for x in r["forget_vector"]]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--ppl-tokens", type=int, default=2048)
    ap.add_argument("--json", default="out/rocr_batch.json")
    ap.add_argument("--md", default=None, help="also write the markdown tables here")
    ap.add_argument("--limit", type=int, default=None, help="smoke run: first N dev and N test concepts")
    args = ap.parse_args()
    from workbench import load_model
    from workbench.concepts.fit import fit_view
    from workbench.concepts.suite import load_suite, load_world_knowledge
    from workbench.edits import fit_edit
    from workbench.edits.rocr_math import statistics_cost
    from workbench.paths import write_json
    from workbench.verify.world import exclude_concept
    model = load_model(args.model)
    dev, test = load_suite("dev"), load_suite("test")
    if args.limit:
        dev, test = dev[:args.limit], test[:args.limit]
    world = load_world_knowledge()
    for c in dev + test:
        world, _ = exclude_concept(world, c)
    doc = {"model": model.model_id, "dev": [c.name for c in dev], "test": [c.name for c in test],
           "configs": {k: CONFIGS[k] for k in args.configs.split(",")}, "n_world": len(world),
           "ppl_tokens": args.ppl_tokens, "dev_results": {}, "test_results": {}}
    t = time.perf_counter()
    for c in tqdm(dev + test, desc="fit data (one-off)"):
        fit_view(model, c)
    doc["fit_data_seconds_all"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    e = fit_edit("rocr", model, dev[:1])
    doc["first_fit_seconds_incl_statistics"] = round(time.perf_counter() - t, 1)
    layers = e.provenance["layers"]
    doc["layers"] = layers
    doc["statistics"] = statistics_cost(model, layers, e.hyper["cov_tokens"], e.hyper["cov_seq_len"],
                                        e.hyper["cov_sources"].split("+"))
    bench = Bench(model, dev + test, world, args.ppl_tokens)
    doc["ppl_before"] = {s: round(v, 3) for s, v in bench.ppl0.items()}

    def single(cfg, c, world_=True):
        t0 = time.perf_counter()
        edit = fit_edit("rocr", model, c, **cfg)
        sec = time.perf_counter() - t0
        with edit.applied(model):
            r = bench.score([c], [c], world=world_)
        r["fit_s"] = round(sec, 3)
        return r

    def batch(cfg, erase, scored):
        t0 = time.perf_counter()
        edit = fit_edit("rocr", model, erase, **cfg)
        sec = time.perf_counter() - t0
        with edit.applied(model):
            r = {"scored_test": bench.score(scored, erase)}
            rest = [c for c in erase if c not in scored]
            if rest:
                r["scored_dev_part"] = bench.score(rest, erase, world=False, utility=False)
        r["erased"], r["fit_s_per_concept"] = len(erase), round(sec / len(erase), 3)
        return r

    def sequential(cfg, erase, scored):
        applied, sec = [], 0.0
        try:
            for c in tqdm(erase, desc=f"sequential {len(erase)}", leave=False):
                t0 = time.perf_counter()
                e = fit_edit("rocr", model, c, parent=applied[-1] if applied else None, **cfg)
                sec += time.perf_counter() - t0
                applied.append(e.apply(model))
            r = {"scored_test": bench.score(scored, erase)}
            rest = [c for c in erase if c not in scored]
            if rest:
                r["scored_dev_part"] = bench.score(rest, erase, world=False, utility=False)
            r["erased"], r["fit_s_per_concept"] = len(erase), round(sec / len(erase), 3)
            return r
        finally:
            for e in reversed(applied):
                e.revert(model)

    names = args.configs.split(",")
    for name in names:
        rows = [single(CONFIGS[name], c, world_=False) for c in tqdm(dev, desc=f"dev {name}")]
        doc["dev_results"][name] = {**pooled_singles(rows), "fit_s_median": sorted(r["fit_s"] for r in rows)[len(rows) // 2]}
        print("dev", name, json.dumps(doc["dev_results"][name]), flush=True)
        write_json(args.json, doc)

    def rank(name):
        r = doc["dev_results"][name]
        ok = (r["retain_ratio"] or 0) >= 0.95 and r["ppl_ratio_max"]["shakespeare"] <= 1.02
        return (0 if ok else 1, r["forget"]["hit"] if ok else -(r["retain_ratio"] or 0))
    order = sorted(names, key=rank)
    doc["dev_winner"], doc["test_configs"] = order[0], order[:2]
    print("dev winner:", order[0], flush=True)
    pool30 = test + dev[:13]
    for name in order[:2]:
        cfg = CONFIGS[name]
        rows = [single(cfg, c) for c in tqdm(test, desc=f"test singles {name}")]
        res = {"size_1": {**pooled_singles(rows), "per_concept": {c.name: r for c, r in zip(test, rows)},
                          "fit_s_median": sorted(r["fit_s"] for r in rows)[len(rows) // 2]}}
        doc["test_results"][name] = res
        write_json(args.json, doc)
        for label, erase, scored in (("batch_10", test[:10], test[:10]), ("batch_17", test, test),
                                     ("batch_30", pool30, test)):
            res[label] = batch(cfg, erase, scored)
            print("test", name, label, json.dumps(res[label]["scored_test"]), flush=True)
            write_json(args.json, doc)
        for label, erase, scored in (("sequential_10", test[:10], test[:10]), ("sequential_30", pool30, test)):
            res[label] = sequential(cfg, erase, scored)
            print("test", name, label, json.dumps(res[label]["scored_test"]), flush=True)
            write_json(args.json, doc)
    write_json(args.json, doc)
    if args.md:
        write_md(doc, args.md)
    print(f"wrote {args.json}")
    return 0


def _r(x: dict) -> str:
    ci = x["ci"] or [float("nan")] * 2
    return f"{x['hit']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] n={x['n']}"


def write_md(doc: dict, path: str) -> None:
    lines = ["| config | forget hit | subject-dependent | retain hit (ratio) | ppl Shakespeare (max) | ppl WordNet (max) | fit s |",
             "|---|---|---|---|---|---|---|"]
    for name, r in doc["dev_results"].items():
        lines.append(f"| {name} | {r['forget_before']['hit']:.2f} → {_r(r['forget'])} | {_r(r['forget_subject_dependent'])} | "
                     f"{_r(r['retain'])} ({r['retain_ratio']}×) | {r['ppl_ratio_geomean']['shakespeare']} "
                     f"({r['ppl_ratio_max']['shakespeare']}) | {r['ppl_ratio_geomean']['wordnet']} "
                     f"({r['ppl_ratio_max']['wordnet']}) | {r['fit_s_median']} |")
    dev_table = "\n".join(lines)
    lines = ["| config | mode | forget hit | subject-dependent | retain hit (ratio) | world knowledge kept | "
             "ppl Shakespeare | ppl WordNet | fit s / concept |", "|---|---|---|---|---|---|---|---|---|"]
    for name, res in doc["test_results"].items():
        for label, r in res.items():
            s = r if label == "size_1" else r["scored_test"]
            p = s.get("ppl_ratio_geomean") or s.get("ppl_ratio")
            sec = r.get("fit_s_median") if label == "size_1" else r["fit_s_per_concept"]
            lines.append(f"| {name} | {label} | {s['forget_before']['hit']:.2f} → {_r(s['forget'])} | "
                         f"{_r(s['forget_subject_dependent'])} | {_r(s['retain'])} ({s['retain_ratio']}×) | "
                         f"{_r(s['world_knowledge_kept'])} | {p['shakespeare']} | {p['wordnet']} | {sec} |")
    test_table = "\n".join(lines)
    body = (f"# ROCR on the built-in suite (SmolLM2-135M-Instruct, CPU)\n\nGenerated by `analyses/rocr_batch.py` "
            f"(see its docstring for the protocol). Dev: {len(doc['dev'])} concepts, test: {len(doc['test'])}; "
            f"layers {doc['layers']}; world knowledge n={doc['n_world']} facts; perplexity on {doc['ppl_tokens']} "
            f"held-out tokens per corpus (before: {doc['ppl_before']}). size_1 rows pool the single-concept edits "
            f"(perplexity: geometric mean over edits).\n\n## Dev (single-concept edits; picks the default)\n\n"
            f"{dev_table}\n\nDev winner: **{doc['dev_winner']}**.\n\n## Test\n\n{test_table}\n\n"
            f"One-off costs: statistics {json.dumps(doc['statistics'])}; fit data for all "
            f"{len(doc['dev']) + len(doc['test'])} concepts {doc['fit_data_seconds_all']} s; first fit incl. "
            f"statistics {doc['first_fit_seconds_incl_statistics']} s.\n")
    from workbench.paths import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text(body, encoding="utf-8")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    raise SystemExit(main())
