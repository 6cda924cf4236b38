"""Benchmark sweeps on Ray: every (concept, method) pair as one Ray task, merged into the same
benchmark document as the in-process sweep (docs/report.md), resumable.

    workbench bench MODEL --concepts FILE --methods m1,m2 --json OUT --ray            # local cluster
    workbench bench MODEL ... --ray ray://head:10001 --ray-gpus-per-task 1            # a cluster

Ray is an optional extra (`pip install 'concept-workbench[ray]'`); without it `--ray` fails in
one line and `workbench bench` runs in-process as before. Each task loads the model itself by the
name / folder / hub id given (a model object is never shipped; a worker process keeps the last
model it loaded for its next task), receives its concept as a plain dict (`Concept.to_dict`),
fits and verifies the pair (`workbench.verify.resume.run_pair`) and returns the result. The
driver collects results as they finish (`ray.wait`), keeps the document in grid order and
rewrites `--json` atomically after every finished task, so an interrupted sweep resumes: pairs
the report already holds are not submitted again. A pair whose task raised or whose worker died
is recorded under "failures" with the pair named (and retried by the next resume).

On a cluster of several machines, MODEL must resolve to the same weights on every node (an
embedded name, a hub id, or a folder at the same path); each task checks the model id it loaded.
"""
from __future__ import annotations

from typing import Sequence

from workbench.errors import UsageError, one_line

INSTALL_HINT = "--ray needs Ray, which is not installed: pip install 'concept-workbench[ray]' (or ray==2.60.0)"
_WORKER_MODEL: dict = {}          # in a Ray worker process: {model spec key: HookedModel}, the last one loaded


def import_ray():
    """The `ray` module, or a one-line UsageError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


def _worker_model(spec: dict):
    key = tuple(sorted(spec.items()))
    if key not in _WORKER_MODEL:
        _WORKER_MODEL.clear()                      # one model per worker process
        from workbench.models import load_model
        _WORKER_MODEL[key] = load_model(spec["model"], backend=spec.get("backend") or "hf",
                                        dtype=spec.get("dtype"), device=spec.get("device"))
    return _WORKER_MODEL[key]


def pair_task(spec: dict, concept: dict, method: str, hyper: dict, verify: dict) -> tuple[str, dict]:
    """One Ray task: load the model (cached per worker), fit + verify `method` on `concept`."""
    from workbench.concepts.limits import check_prompt_lengths
    from workbench.concepts.schema import Concept
    from workbench.verify.resume import FIT_ERRORS, run_pair
    model = _worker_model(spec)
    c = Concept.from_dict(concept)
    if spec.get("model_id") and model.model_id != spec["model_id"]:
        raise UsageError(f"this node loads {spec['model']!r} as {model.model_id!r}, the driver as {spec['model_id']!r}")
    try:
        check_prompt_lengths(model, c)
    except FIT_ERRORS as exc:
        return "failure", {"concept": c.name, "method": method, "error": str(exc)}
    return run_pair(model, c, method, hyper, verify)


def _task_error(exc: BaseException) -> str:
    """One line for a failed Ray task: the original exception where Ray kept it."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {one_line(cause)}"
    return f"{type(exc).__name__}: {one_line(exc)}"


def init_ray(ray, address: str | None = None, num_cpus: int | None = None, attempts: int = 3) -> None:
    """`ray.init`: connect to `address`, or start a local cluster of `num_cpus` CPUs (local workers
    inherit this process's environment: WORKBENCH_HOME, ...). Ray gives a new local node 30 s to
    register, which a loaded machine can miss: a local start is tried `attempts` times. A failure is
    one line (UsageError)."""
    kw = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address is None:
        kw["num_cpus"] = num_cpus
    elif num_cpus is not None:
        raise UsageError("--ray-num-cpus sizes a local cluster; a cluster at an address has its own")
    for _ in range(1 if address else attempts):
        try:
            ray.init(address=address, **kw)
            return
        except Exception as exc:                    # ray.init raises bare Exception on a start-up timeout
            ray.shutdown()
            error = exc
    where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
    raise UsageError(f"--ray: cannot start or reach {where}: {one_line(error)}") from None


def _connect(ray, address: str | None, num_cpus: int | None) -> bool:
    """`init_ray` unless a Ray session is open already (the caller's own, e.g. a notebook, used as it
    is); True when this call started one."""
    if ray.is_initialized():
        return False
    init_ray(ray, address, num_cpus)
    return True


def run_bench_ray(model: str, concepts: Sequence, methods: Sequence[str], hyper: dict[str, dict] | None = None,
                  json_out=None, html_out=None, progress: bool = True, verify: dict | None = None,
                  utility_tokens: int = 4096, split: str | None = None, resume: bool = True,
                  address: str | None = None, num_cpus: int | None = None, cpus_per_task: float = 1.0,
                  gpus_per_task: float = 0.0, dtype: str | None = None, device: str | None = None,
                  backend: str = "hf", keep_going: bool = True) -> dict:
    """`run_bench` with each (concept, method) pair as a Ray task; the same document, in the same order.

    model: the name / folder / hub id each task loads (not a model object). address: a Ray cluster
    address (`ray.init(address=...)`), None to start a local cluster of `num_cpus` CPUs (default:
    all). cpus_per_task / gpus_per_task: the resources each task requests (two tasks run side by
    side on 2 CPUs at the default 1). resume: skip the pairs an existing report at `json_out`
    holds. keep_going=False raises on the first failed pair (naming it) instead of recording it.
    A Ray session the caller already opened (`ray.init` before) is used as it is and left open.
    """
    from workbench.verify.bench import CHEAP_VERIFY, bench_figures, check_grid, format_table, write_html
    from workbench.verify.resume import ReportBuilder, finished_results
    if not cpus_per_task > 0 or not gpus_per_task >= 0:
        raise UsageError(f"--ray-cpus-per-task must be > 0 and --ray-gpus-per-task >= 0 "
                         f"(got {cpus_per_task}, {gpus_per_task})")
    if str(device or "").startswith("cuda") and not gpus_per_task:
        raise UsageError(f"--device {device}: a Ray task sees no GPU unless it requests one (--ray-gpus-per-task)")
    if num_cpus is not None and num_cpus < 1:
        raise UsageError(f"--ray-num-cpus {num_cpus}: must be at least 1")
    ray = import_ray()
    from workbench.concepts.splits import select_split
    from workbench.models.loading import resolve_model_source
    hyper = check_grid(methods, hyper)
    concepts = select_split(concepts, split)
    model_id = resolve_model_source(model)[0]      # also dequantizes an embedded model once, before the workers
    vkw = {**CHEAP_VERIFY, "utility_tokens": utility_tokens, **(verify or {})}
    by_name = {c.name: c for c in concepts}
    keys = [(c.name, m) for c in concepts for m in methods]
    finished = finished_results(json_out, model_id, split, hyper, vkw.get("max_new_tokens")) \
        if json_out and resume else []
    report = ReportBuilder(model_id, split, keys, finished, json_out)
    todo = report.todo()
    if progress and len(todo) < len(keys):
        print(f"resuming {json_out}: {len(keys) - len(todo)} of {len(keys)} pairs already finished")
    if todo:
        _run_tasks(ray, report, todo, by_name, hyper, vkw, progress, keep_going,
                   spec={"model": str(model), "model_id": model_id, "dtype": dtype, "device": device,
                         "backend": backend},
                   connect=(address, num_cpus), resources={"num_cpus": cpus_per_task, "num_gpus": gpus_per_task})
    doc = report.finish()
    if html_out:
        write_html(html_out, bench_figures(doc), title="Concept Workbench benchmark", table=format_table(doc["results"]))
    return doc


def _run_tasks(ray, report, todo, by_name, hyper, vkw, progress, keep_going, spec, connect, resources) -> None:
    from tqdm.auto import tqdm
    started = _connect(ray, *connect)
    try:
        task = ray.remote(pair_task).options(max_retries=0, **resources)
        refs = {task.remote(spec, by_name[name].to_dict(), method, hyper.get(method, {}), vkw): (name, method)
                for name, method in todo}
        pending = list(refs)
        with tqdm(total=len(report.keys), initial=len(report.keys) - len(todo), desc="bench (ray)",
                  disable=not progress) as bar:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    name, method = refs[ref]
                    try:
                        kind, item = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        if not keep_going:
                            raise RuntimeError(f"{method} on {name!r}: {_task_error(exc)}") from exc
                        kind, item = "failure", {"concept": name, "method": method, "error": _task_error(exc)}
                    report.add(kind, item)          # rewrites --json atomically: resumable from here
                    bar.update(1)
    finally:
        if started:
            ray.shutdown()


def sweep_from_args(args, concepts, methods, hyper, verify) -> dict | None:
    """`workbench bench`: check the Ray flags and an existing --json report (before any model loads);
    with --ray [ADDRESS] run the sweep on Ray and return its document, without it return None."""
    given = [f for f, v, d in (("--ray-num-cpus", args.ray_num_cpus, None), ("--ray-cpus-per-task",
             args.ray_cpus_per_task, 1.0), ("--ray-gpus-per-task", args.ray_gpus_per_task, 0.0)) if v != d]
    if args.ray is None and given:
        raise UsageError(f"{given[0]} needs --ray")
    if not args.restart:
        from workbench.verify.resume import read_report
        read_report(args.json)                      # a file that is not a report: refused now, not after loading
    if args.ray is None:
        return None
    return run_bench_ray(args.model, concepts, methods, hyper=hyper, json_out=args.json, html_out=args.html,
                         verify=verify, utility_tokens=args.utility_tokens, split=args.split,
                         resume=not args.restart, address=None if args.ray == "local" else args.ray,
                         num_cpus=args.ray_num_cpus, cpus_per_task=args.ray_cpus_per_task,
                         gpus_per_task=args.ray_gpus_per_task, dtype=args.dtype, device=args.device,
                         backend=getattr(args, "backend", None) or "hf")
