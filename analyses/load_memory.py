"""Peak memory of loading a model vs its checkpoint size (issue 18: no two copies of the weights).

Each load runs in a fresh subprocess: it imports torch + transformers + workbench, records its RSS
(the baseline: the libraries' own memory), loads the model, and reports the peak RSS
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`, after reading every weight once, so lazily
memory-mapped tensors count too) and the RSS after loading (psutil). The ratio is
(peak - baseline) / size of the safetensors files actually read (after dtype conversion: a bf16
load of an fp32 checkpoint should need about half the checkpoint). Goal: <= 1.2.

    python analyses/load_memory.py [--model smollm2-135m] [--dtype float32 bfloat16] [--device-map none auto]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import gc, json, resource, sys, time
import psutil, torch, transformers  # noqa: F401  (imported before the baseline)
import workbench.models as wm
from workbench.models.loading import resolve_model_source
name, dtype, device_map = sys.argv[1], sys.argv[2], sys.argv[3]
_, folder = resolve_model_source(name)        # dequantized copy already cached: not measured here
gc.collect()
proc = psutil.Process()
base = proc.memory_info().rss
base_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter()
if dtype == "tokenizer":
    from transformers import AutoTokenizer
    AutoTokenizer.from_pretrained(folder)
    print(json.dumps({"baseline_rss": base, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
    raise SystemExit(0)
m = wm.load_model(name, dtype=dtype, device="cpu" if device_map == "none" else None,
                  device_map=None if device_map == "none" else device_map)
seconds = time.perf_counter() - t0
with torch.no_grad():                          # touch every weight: lazily mapped pages count too
    for p in m.hf.parameters():
        p.sum()
gc.collect()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
after = proc.memory_info().rss
ckpt = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
weights = sum(p.numel() * p.element_size() for p in m.hf.parameters())
print(json.dumps({"model": name, "dtype": dtype, "device_map": device_map, "seconds": round(seconds, 2),
                  "checkpoint_bytes": ckpt, "weight_bytes": weights, "baseline_rss": base,
                  "baseline_peak": base_peak, "peak_rss": peak, "rss_after": after}))
"""


def _run(model: str, dtype: str, device_map: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, model, dtype, device_map], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"load of {model} ({dtype}, device_map={device_map}) failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(model: str, dtype: str, device_map: str, tokenizer_bytes: int = 0) -> dict:
    row = _run(model, dtype, device_map)
    grown = row["peak_rss"] - row["baseline_rss"]
    row["tokenizer_bytes"] = tokenizer_bytes
    row["peak_over_checkpoint"] = round(grown / row["checkpoint_bytes"], 3)
    row["peak_over_weights"] = round(grown / row["weight_bytes"], 3)
    row["weights_peak_over_weights"] = round((grown - tokenizer_bytes) / row["weight_bytes"], 3)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--device-map", nargs="+", default=["none", "auto"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    tok = _run(args.model, "tokenizer", "none")
    tok_bytes = tok["peak_rss"] - tok["baseline_rss"]
    rows = [measure(args.model, d, dm, tok_bytes) for d in args.dtype for dm in args.device_map]
    mb = 1 / 2 ** 20
    print(f"tokenizer alone: +{tok_bytes * mb:.0f} MB peak RSS (counted in 'peak', subtracted in the last ratio)")
    print(f"{'model':<14} {'dtype':<9} {'device_map':<10} {'ckpt MB':>8} {'weights MB':>10} {'base MB':>8} "
          f"{'peak MB':>8} {'(peak-base)/ckpt':>17} {'(peak-base)/weights':>20} {'minus tokenizer':>16} {'load s':>7}")
    for r in rows:
        print(f"{r['model']:<14} {r['dtype']:<9} {r['device_map']:<10} {r['checkpoint_bytes'] * mb:8.0f} "
              f"{r['weight_bytes'] * mb:10.0f} {r['baseline_rss'] * mb:8.0f} {r['peak_rss'] * mb:8.0f} "
              f"{r['peak_over_checkpoint']:17.2f} {r['peak_over_weights']:20.2f} "
              f"{r['weights_peak_over_weights']:16.2f} {r['seconds']:7.1f}")
    if args.json:
        from workbench.paths import write_json
        write_json(args.json, {"rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
