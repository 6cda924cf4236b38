"""Benchmark sweeps: resuming from an existing report (in-process) and `--ray` (each pair a Ray task
on a local 2-CPU cluster, tiny model), merged into the same report as the in-process sweep."""
from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch

from workbench.errors import UsageError
from workbench.verify.bench import run_bench, validate_report

pytestmark = pytest.mark.usefixtures("one_thread")   # as each Ray task gets (cpus_per_task=1); conftest

CONCEPTS = ["Eiffel Tower", "Japan"]
METHODS = ["ga", "rocr"]
HYPER = {"ga": {"steps": 1}, "rocr": {"cov_sources": "shakespeare", "cov_tokens": 2048}}
VERIFY = {"parametric": False, "leakage": False, "mia": False, "world_knowledge": False, "max_new_tokens": 4,
          "independent_corpus": None, "n_boot": 100}            # the cheap battery: the sweep is under test
UTILITY = 128
TIMING = ("edit_seconds", "verify_seconds")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny random Llama saved as an HF folder (with the embedded model's tokenizer), so Ray tasks can load it."""
    from workbench.models.loading import save_tiny_llama
    return save_tiny_llama(tmp_path_factory.mktemp("sweep") / "tiny-llama")


@pytest.fixture(scope="module")
def concepts():
    from workbench.concepts import get_concept, load_builtin
    pool = load_builtin()
    return [get_concept(pool, n) for n in CONCEPTS]


def deterministic(doc: dict) -> dict:
    """The document without wall times (and without the run-specific version string)."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in TIMING}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return {k: strip(v) for k, v in doc.items() if k != "workbench_version"}


def assert_same_numbers(a, b, path="doc"):
    """Equal structure and strings; numbers equal up to float noise (other processes, same thread count)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), path
        for k in a:
            assert_same_numbers(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_numbers(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-6), path
    else:
        assert a == b, path


def pairs(doc):
    return [(r["concept"], r["method"]) for r in doc["results"]]


# ------------------------------------------------------------------ in-process: resume
@pytest.fixture(scope="module")
def local_sweep(tiny_folder, concepts, tmp_path_factory):
    """In-process sweeps, counting fits: one concept first, then the whole grid resuming from that report."""
    import workbench.edits as edits
    from workbench import load_model
    model = load_model(str(tiny_folder))
    out = tmp_path_factory.mktemp("local") / "bench.json"
    calls, real = [], edits.fit_edit

    def counted(name, model, concept, *a, **kw):
        calls.append((concept.name, name))
        return real(name, model, concept, *a, **kw)
    mp = pytest.MonkeyPatch()
    mp.setattr(edits, "fit_edit", counted)
    kw = dict(hyper=HYPER, json_out=out, utility_tokens=UTILITY, verify=VERIFY, resume=True)
    try:
        first = run_bench(model, concepts[:1], METHODS, progress=False, **kw)
        fits_first = list(calls)
        second = run_bench(model, concepts, METHODS, progress=True, **kw)
        fits_second = list(calls)
        third = run_bench(model, concepts, METHODS, progress=False, **kw)
    finally:
        mp.undo()
    return {"out": out, "first": first, "second": second, "third": third, "on_disk": json.loads(out.read_text()),
            "fits": (fits_first, fits_second, list(calls))}


def test_in_process_bench_resumes_from_its_report(local_sweep):
    fits_first, fits_second, fits_third = local_sweep["fits"]
    first, second = local_sweep["first"], local_sweep["second"]
    assert fits_first == [("Eiffel Tower", "ga"), ("Eiffel Tower", "rocr")]
    # the run over the larger grid fits only the two new pairs and keeps the first two as they were
    assert fits_second[2:] == [("Japan", "ga"), ("Japan", "rocr")]
    assert pairs(second) == [(c, m) for c in CONCEPTS for m in METHODS]
    assert second["results"][:2] == first["results"]                # timings included: not rerun
    assert local_sweep["on_disk"]["results"] == json.loads(json.dumps(second["results"]))
    validate_report(local_sweep["on_disk"])
    assert fits_third == fits_second and local_sweep["third"]["results"] == second["results"]


def test_resume_refuses_a_report_it_cannot_continue(tmp_path):
    from workbench.verify.resume import finished_results
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": "m", "results": [}')
    with pytest.raises(UsageError, match="not a benchmark report"):
        finished_results(bad, "m", None, {})
    bad.write_text('{"model": "m", "workbench_version": "0", "results": [{"concept": "x"}]}')
    with pytest.raises(UsageError, match="missing results"):
        finished_results(bad, "m", None, {})
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"model": "other", "workbench_version": "0", "results": []}))
    with pytest.raises(UsageError, match="model 'other'"):
        finished_results(good, "tiny", None, {})
    with pytest.raises(UsageError, match="split 'all', not 'test'"):
        finished_results(good, "other", "test", {})
    assert finished_results(tmp_path / "absent.json", "tiny", None, {}) == []


# ------------------------------------------------------------------ CLI without Ray
def test_cli_ray_flags_fail_in_one_line(monkeypatch, capsys, tmp_path):
    from workbench.cli import main
    base = ["bench", "smollm2-135m", "--concepts", "builtin", "--concept", "Japan", "--methods", "ga",
            "--json", str(tmp_path / "b.json")]
    monkeypatch.setitem(sys.modules, "ray", None)                # as if Ray were not installed
    for extra, words in ((["--ray"], "pip install"), (["--ray", "auto"], "pip install"),
                         (["--ray-cpus-per-task", "2"], "needs --ray"),
                         (["--ray", "--ray-cpus-per-task", "0"], "must be > 0")):
        rc = main(base + extra)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and words in err, (extra, err)
    assert not (tmp_path / "b.json").exists()
    garbage = tmp_path / "old.json"                              # resuming: refused before any model loads
    garbage.write_text("[1, 2")
    rc = main(base[:-1] + [str(garbage)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "not a benchmark report" in err and "--restart" in err
    assert garbage.read_text() == "[1, 2"


# ------------------------------------------------------------------ Ray: a local cluster of 2 workers
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")        # `make setup` installs the [ray] extra, so CI runs these
    from workbench.verify.sweep import init_ray
    init_ray(ray, num_cpus=2)
    yield ray
    ray.shutdown()


def test_ray_sweep_matches_in_process_and_resumes(ray_cluster, tiny_folder, concepts, local_sweep, tmp_path,
                                                   capsys):
    from workbench.verify.sweep import run_bench_ray
    assert ray_cluster.cluster_resources()["CPU"] == 2
    kw = dict(hyper=HYPER, utility_tokens=UTILITY, verify=VERIFY, progress=False)
    local = local_sweep["on_disk"]
    out = tmp_path / "ray.json"
    doc = run_bench_ray(str(tiny_folder), concepts, METHODS, json_out=out, cpus_per_task=1, **kw)
    on_disk = json.loads(out.read_text())
    validate_report(on_disk)
    assert on_disk == json.loads(json.dumps(doc))
    assert not doc["failures"] and pairs(doc) == pairs(local) == [(c, m) for c in CONCEPTS for m in METHODS]
    assert_same_numbers(deterministic(local), deterministic(on_disk))
    # an interrupted sweep: the report holds 3 of the 4 pairs; the rerun submits only the missing one
    on_disk["results"] = on_disk["results"][1:]
    out.write_text(json.dumps(on_disk))
    again = run_bench_ray(str(tiny_folder), concepts, METHODS, json_out=out, **{**kw, "progress": True})
    assert "3 of 4 pairs already finished" in capsys.readouterr().out
    assert pairs(again) == pairs(doc) and again["results"][1:] == on_disk["results"]     # kept, timings too
    assert_same_numbers(deterministic(doc), deterministic(again))
    # the CLI with --ray on the same report: everything finished, nothing submitted, exit 0
    from workbench.cli import main
    rc = main(["bench", str(tiny_folder), "--concepts", "builtin", "--concept", CONCEPTS[0], "--concept", CONCEPTS[1],
               "--methods", ",".join(METHODS), "--hyper", json.dumps(HYPER), "--json", str(out), "--ray",
               "--max-new-tokens", "4", "--utility-tokens", str(UTILITY)])
    assert rc == 0 and "4 of 4 pairs already finished" in capsys.readouterr().out
    assert json.loads(out.read_text())["results"] == again["results"]


def test_ray_task_errors_name_the_pair(ray_cluster, tiny_folder, concepts, tmp_path):
    from workbench.verify.sweep import run_bench_ray
    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    (broken / "tokenizer.json").write_text("not json")           # the driver resolves it; every task fails to load
    out = tmp_path / "b.json"
    doc = run_bench_ray(str(broken), concepts[:1], METHODS, hyper=HYPER, json_out=out, utility_tokens=UTILITY,
                        verify=VERIFY, progress=False)
    assert doc["results"] == [] and [(f["concept"], f["method"]) for f in doc["failures"]] == \
        [(CONCEPTS[0], m) for m in METHODS]
    assert all("Error: " in f["error"] and "\n" not in f["error"] for f in doc["failures"])   # type: message
    assert json.loads(out.read_text())["failures"] == doc["failures"]
    with pytest.raises(RuntimeError, match=f"ga on '{CONCEPTS[0]}'"):
        run_bench_ray(str(broken), concepts[:1], ["ga"], hyper={"ga": HYPER["ga"]}, utility_tokens=UTILITY, verify=VERIFY,
                      progress=False, keep_going=False)
