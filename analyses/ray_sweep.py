"""Benchmark: wall time of one `workbench bench` grid as a Ray sweep with 1 vs 2 workers (and in-process).

The same grid (concepts x methods, the cheap battery) runs
  in-process (`run_bench`, one torch thread) | Ray, local cluster of 1 CPU | Ray, local cluster of 2 CPUs
(each Ray task requests 1 CPU, so the cluster size is the number of workers), round-robin over
`--repeats`, after one in-process warm-up that fills the caches every configuration then shares
(fit data, ROCR key statistics). Cluster start-up is timed apart from the sweep; the sweep time
includes starting the worker processes and each worker loading the model (a real cost of a sweep).
Every configuration's report is checked to hold the same pairs.

    python analyses/ray_sweep.py                              # tiny random Llama, 4 concepts x 2 methods
    python analyses/ray_sweep.py --model smollm2-135m --concepts 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

VERIFY = {"parametric": False, "leakage": False, "mia": False, "world_knowledge": False, "max_new_tokens": 4,
          "independent_corpus": None, "n_boot": 100}
HYPER = {"ga": {"steps": 1}, "rocr": {"cov_sources": "shakespeare", "cov_tokens": 2048}}


def tiny_model_folder(root: Path) -> Path:
    """A tiny random Llama (2 layers, d=32) with the embedded model's tokenizer, as an HF folder."""
    from workbench.models.loading import save_tiny_llama
    return save_tiny_llama(root / "tiny-llama")


def held(doc: dict) -> tuple[list, list]:
    """(result pairs, failure pairs), sorted."""
    return (sorted((r["concept"], r["method"]) for r in doc["results"]),
            sorted((f["concept"], f["method"]) for f in doc["failures"]))


def temporary_home(root: Path) -> None:
    """A throw-away WORKBENCH_HOME (the Ray workers inherit it) sharing only the embedded models' folders."""
    real = Path(os.environ.get("WORKBENCH_HOME") or Path.home() / ".cache" / "workbench")
    home = root / "home"
    (home / "models").mkdir(parents=True)
    for name in ("smollm2-135m", "gemma-3-270m"):
        if (real / "models" / name).is_dir():
            (home / "models" / name).symlink_to(real / "models" / name, target_is_directory=True)
    os.environ["WORKBENCH_HOME"] = str(home)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="MODEL (default: a tiny random Llama folder)")
    ap.add_argument("--concepts", type=int, default=4, help="first N built-in concepts")
    ap.add_argument("--methods", default="ga,rocr")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--utility-tokens", type=int, default=128)
    ap.add_argument("--json", default=None, help="also write the timings here")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ray-sweep-"))
    temporary_home(root)
    import ray
    import torch
    torch.set_num_threads(1)
    from workbench import load_model
    from workbench.concepts import load_builtin
    from workbench.verify.bench import run_bench
    from workbench.verify.sweep import init_ray, run_bench_ray

    model = args.model or str(tiny_model_folder(root))
    concepts = load_builtin()[:args.concepts]
    methods = [m for m in args.methods.split(",") if m]
    hyper = {m: h for m, h in HYPER.items() if m in methods}
    kw = dict(hyper=hyper, utility_tokens=args.utility_tokens, verify=VERIFY, progress=False)
    grid = [(c.name, m) for c in concepts for m in methods]

    t = time.perf_counter()
    loaded = load_model(model)
    run_bench(loaded, concepts, methods, **kw)                    # warm-up: fills the shared caches
    warm_up = time.perf_counter() - t
    times: dict[str, list[float]] = {"in-process": [], "ray 1 worker": [], "ray 2 workers": []}
    starts: dict[str, list[float]] = {"ray 1 worker": [], "ray 2 workers": []}
    for rep in range(args.repeats):
        t = time.perf_counter()
        doc = run_bench(loaded, concepts, methods, json_out=root / f"local{rep}.json", **kw)
        times["in-process"].append(time.perf_counter() - t)
        for workers in (1, 2):
            name = f"ray {workers} worker{'s' if workers > 1 else ''}"
            t = time.perf_counter()
            init_ray(ray, num_cpus=workers)
            starts[name].append(time.perf_counter() - t)
            try:
                t = time.perf_counter()
                got = run_bench_ray(model, concepts, methods, json_out=root / f"ray{workers}-{rep}.json",
                                    cpus_per_task=1, **kw)
                times[name].append(time.perf_counter() - t)
            finally:
                ray.shutdown()
            assert held(got) == held(doc), f"{name}: other pairs than in-process"
            print(f"repeat {rep + 1}: {name}: {times[name][-1]:.1f} s (cluster start {starts[name][-1]:.1f} s)",
                  flush=True)
        print(f"repeat {rep + 1}: in-process: {times['in-process'][-1]:.1f} s", flush=True)

    load = os.getloadavg()
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / "
               f"{load[2]:.1f} at the end, torch {torch.__version__}, ray {ray.__version__}")
    print(f"\nmodel {model if args.model else 'tiny random Llama (2 layers, d=32)'}; grid {len(concepts)} concepts x "
          f"{methods} = {len(grid)} pairs; warm-up {warm_up:.1f} s; {machine}")
    print("| configuration | sweep wall time, median (s) | all repeats (s) | cluster start (s) | speed-up vs 1 worker |")
    print("|---|---|---|---|---|")
    one = statistics.median(times["ray 1 worker"])
    for name, ts in times.items():
        med = statistics.median(ts)
        st = f"{statistics.median(starts[name]):.1f}" if name in starts else "-"
        print(f"| {name} | {med:.1f} | {', '.join(f'{x:.1f}' for x in ts)} | {st} | {one / med:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model or "tiny", "pairs": len(grid), "times": times,
                                               "cluster_start": starts, "warm_up": warm_up, "machine": machine},
                                              indent=2) + "\n")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
