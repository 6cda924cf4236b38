"""Benchmark: what does it cost to capture activations, per backend?

Measures tokens/s on one fixed batch (8 English passages x 64 tokens, no padding) for
  plain HF forward | workbench run_with_cache (every hook_resid_post, PyTorch hooks) |
  TransformerLens run_with_cache (names_filter on hook_resid_post) | nnsight trace saving the
  same decoder-layer outputs | plain HF forward on the nnsight-instrumented module.
Methods run round-robin (so machine load hits them alike) after a warm-up; medians are reported.

    python analyses/bench_hooks.py --model smollm2-135m --repeats 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch

PASSAGES = [
    "The history of the city begins with a small fishing village on the northern bank of the river. "
    "Over the centuries, merchants arrived from distant lands, bringing spices, cloth and new ideas. "
    "By the twelfth century the village had grown into a busy market town with stone walls and a cathedral.",
    "Photosynthesis is the process by which green plants use sunlight to turn water and carbon dioxide "
    "into sugar and oxygen. It takes place mainly in the leaves, inside small structures called "
    "chloroplasts, which contain the green pigment chlorophyll that absorbs light energy.",
    "When she opened the door, the kitchen smelled of fresh bread and coffee. Her grandmother was "
    "standing by the window, humming an old song, while the cat slept on a chair in the sun. Nothing "
    "had changed in twenty years, and for a moment she felt like a child again.",
    "To install the software, first download the latest release from the project website. Unpack the "
    "archive into a folder of your choice, then open a terminal in that folder and run the setup script. "
    "The script checks your system, installs the missing libraries and creates a configuration file.",
    "The football match was decided in the final minutes. After a long period of pressure, the home team "
    "won a corner kick, and their tall defender rose above everyone to head the ball into the net. The "
    "crowd erupted, and the coach ran along the touchline with both arms in the air.",
    "Economists disagree about the causes of inflation. Some point to the amount of money in circulation, "
    "others to rising costs of energy and labour, and still others to the expectations of households and "
    "firms. In practice, several of these forces usually act at the same time.",
    "The mountain trail climbs steeply through a forest of pine and birch before reaching open meadows. "
    "In early summer the meadows are covered with wild flowers, and on a clear day you can see the lakes "
    "in the valley below and the snowy peaks on the far side of the border.",
    "Learning a new language takes patience. Most people start with simple words and phrases, then move on "
    "to grammar and longer conversations. Reading books, watching films and talking with native speakers "
    "every day helps far more than memorising long lists of vocabulary.",
]


def fixed_batch(model, batch: int, n_tokens: int) -> dict:
    rows = []
    for i in range(batch):                       # passage i, continued by passage i+1 if short
        text = PASSAGES[i % len(PASSAGES)] + " " + PASSAGES[(i + 1) % len(PASSAGES)]
        ids = model.tokenizer(text)["input_ids"]
        if len(ids) < n_tokens:
            raise SystemExit(f"passage has only {len(ids)} tokens; use --tokens <= {len(ids)}")
        rows.append(ids[:n_tokens])
    ids = torch.tensor(rows, device=model.device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads (1 keeps ratios stable on a shared machine)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    from workbench import load_model
    from workbench.models.backends import nnsight_run_with_cache

    model = load_model(args.model, device=args.device)        # hf + hooks + TL view
    wrapped = load_model(args.model, device=args.device)      # a second copy, instrumented by nnsight
    inputs = fixed_batch(model, args.batch, args.tokens)
    tl, names = model.tl(), set(model.sites("hook_resid_post"))
    wrapped.nnsight()

    with torch.no_grad():
        methods = {
            "plain HF forward": lambda: model.forward(inputs),
            "workbench run_with_cache": lambda: model.run_with_cache(inputs),
            "TransformerLens run_with_cache": lambda: tl.run_with_cache(
                inputs["input_ids"], names_filter=lambda n: n in names),
            "nnsight trace (save resid_post)": lambda: nnsight_run_with_cache(wrapped, inputs),
            "plain HF forward, nnsight-wrapped": lambda: wrapped.forward(inputs),
        }
        times: dict[str, list[float]] = {k: [] for k in methods}
        for r in range(args.warmup + args.repeats):
            for name, fn in methods.items():
                _sync(model.device)
                t0 = time.perf_counter()
                fn()
                _sync(model.device)
                if r >= args.warmup:
                    times[name].append(time.perf_counter() - t0)

    n_tok = args.batch * args.tokens
    base = statistics.median(times["plain HF forward"])
    rows = [{"method": k, "median_s": statistics.median(v), "min_s": min(v),
             "tokens_per_s": n_tok / statistics.median(v), "vs_plain": base / statistics.median(v)}
            for k, v in times.items()]
    print(f"model={args.model} device={model.device} threads={torch.get_num_threads()} "
          f"batch={args.batch}x{args.tokens} tokens, repeats={args.repeats} (median), "
          f"sites: {len(names)} x hook_resid_post")
    print(f"{'method':36s} {'s/batch':>9s} {'(min)':>7s} {'tokens/s':>10s} {'vs plain':>9s}")
    for row in rows:
        print(f"{row['method']:36s} {row['median_s']:9.3f} {row['min_s']:7.3f} {row['tokens_per_s']:10.0f} "
              f"{row['vs_plain']:8.2f}x")
    result = {"model": args.model, "device": str(model.device), "threads": torch.get_num_threads(),
              "batch": args.batch, "tokens": args.tokens, "repeats": args.repeats, "results": rows}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
