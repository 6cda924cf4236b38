"""Stage timings on a GPU (CUDA when available, else CPU): hook capture, a ROCR edit, the
verification battery at cheap settings and a fine-tuning baseline (`ga`, a few steps).

Prints a markdown table headed by the device name (and writes it as JSON with --json). Stages:

* capture   `run_with_cache` of every `hook_resid_post` on a fixed batch (8 x 64 tokens), median of
            `--repeats` runs after a warm-up, with tokens/s
* rocr      `fit_edit("rocr")` cold (key statistics computed) and warm (statistics cached)
* battery   `verify_edit` with the preset's budget (perplexity/KL tokens, relearning steps, ...)
* ga        `fit_edit("ga", steps=...)`

Presets: "cheap" (default: 4k-token key statistics, 1k-token perplexity, 2 relearning steps, world
knowledge on, 10 GA steps) and "smallest" (for the CPU smoke test: everything at its minimum).
Timings are this script's output, never asserted by tests.

    python analyses/bench_gpu.py [--model smollm2-135m] [--device cuda] [--preset cheap] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

PRESETS = {
    "cheap": dict(batch=8, tokens=64, rocr=dict(cov_tokens=4096), ga_steps=10,
                  battery=dict(utility_tokens=1024, relearn_steps=2, relearn_curve=(0, 2), fluency=False,
                               n_boot=200, independent_corpus=("wordnet", "kjv"), world_knowledge=True)),
    "smallest": dict(batch=2, tokens=16, rocr=dict(cov_tokens=256, cov_seq_len=32), ga_steps=1,
                     battery=dict(utility_tokens=0, relearn=False, parametric=False, leakage=False, fluency=False,
                                  mia=False, world_knowledge=False, independent_corpus=None)),
}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    return f"CPU {platform.machine()} {platform.processor() or ''} ({os.cpu_count()} cores, torch {torch.__version__})"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device, fn):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def _batch(model, batch: int, n_tokens: int) -> dict:
    text = " ".join(["The history of the city begins with a small fishing village on the river bank."] * 16)
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][:n_tokens]
    ids = torch.tensor([ids] * batch, device=model.device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def run(model, concept, preset: str = "cheap", repeats: int = 3) -> list[dict]:
    """[{stage, seconds, detail}] for one loaded model and concept; the model is left unedited."""
    from workbench.edits import fit_edit
    from workbench.verify.battery import verify_edit
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r} is not one of {', '.join(PRESETS)}")
    cfg, dev, rows = PRESETS[preset], model.device, []
    inputs = _batch(model, cfg["batch"], cfg["tokens"])
    sites = model.sites("hook_resid_post")
    model.run_with_cache(inputs, sites)                                       # warm-up
    times = [_timed(dev, lambda: model.run_with_cache(inputs, sites))[0] for _ in range(max(1, repeats))]
    n_tok = int(inputs["input_ids"].numel())
    med = statistics.median(times)
    rows.append({"stage": "capture", "seconds": med,
                 "detail": f"{len(sites)} sites, {n_tok} tokens, {n_tok / med:,.0f} tok/s (median of {len(times)})"})
    cold, edit = _timed(dev, lambda: fit_edit("rocr", model, concept, **cfg["rocr"]))
    warm, edit = _timed(dev, lambda: fit_edit("rocr", model, concept, **cfg["rocr"]))
    layers = edit.provenance["layers"]
    rows.append({"stage": "rocr (cold)", "seconds": cold, "detail": f"layers {layers}, key statistics computed"})
    rows.append({"stage": "rocr (warm)", "seconds": warm, "detail": f"{edit.params_changed():,} params, statistics cached"})
    secs, result = _timed(dev, lambda: verify_edit(model, concept, edit, **cfg["battery"]))
    f = result["forget"]
    rows.append({"stage": "battery", "seconds": secs, "detail": f"preset {preset}: forget hit {f['hit_before']:.2f} -> "
                 f"{f['hit_after']:.2f} (n={f['n']})"})
    secs, ga = _timed(dev, lambda: fit_edit("ga", model, concept, steps=cfg["ga_steps"]))
    rows.append({"stage": "ga", "seconds": secs, "detail": f"{cfg['ga_steps']} steps, {ga.params_changed():,} params"})
    return rows


def markdown(rows: list[dict], device: str, model_id: str) -> str:
    lines = [f"device: {device}", f"model: {model_id}", "", "| stage | seconds | detail |", "|---|---:|---|"]
    lines += [f"| {r['stage']} | {r['seconds']:.3f} | {r['detail']} |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--concept", default="Eiffel Tower")
    ap.add_argument("--preset", default="cheap", choices=sorted(PRESETS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from workbench import load_model
    from workbench.concepts import get_concept, load_builtin
    from workbench.errors import WorkbenchError
    from workbench.paths import resolve_device
    try:
        device = resolve_device(args.device)                  # cuda when available (then mps), else cpu
        concept = get_concept(load_builtin(), args.concept)
        model = load_model(args.model, device=device)
    except (WorkbenchError, KeyError, ValueError) as exc:
        print(f"bench_gpu: {exc}", file=sys.stderr)
        return 2
    rows = run(model, concept, args.preset, args.repeats)
    name = device_name(device)
    print(markdown(rows, name, model.model_id))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": name, "model": model.model_id, "preset": args.preset, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
