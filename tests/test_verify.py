"""Verification battery, utility metrics, benchmark report and the verify/bench CLI."""
import json
import math

import pytest
import torch

from workbench.concepts import get_concept, load_builtin
from workbench.edits import fit_edit
from workbench.verify import utility
from workbench.verify.battery import REQUIRED_KEYS, verify_edit
from workbench.verify.bench import run_bench, validate_report

CHEAP = {"params": "model.layers.29.mlp", "steps": 1, "lr": 1e-4}


@pytest.fixture(scope="module")
def eiffel():
    return get_concept(load_builtin(), "Eiffel Tower")


@pytest.fixture(scope="module")
def edit(smol, eiffel):
    return fit_edit("ga", smol, eiffel, **CHEAP)


def _state(model):
    return {n: p.detach().clone() for n, p in model.hf.named_parameters() if ".29." in n or "embed" in n}


def _same(model, saved) -> bool:
    return all(torch.equal(model.hf.get_parameter(n), t) for n, t in saved.items())


# ------------------------------------------------------------------------------ pure metrics
def test_perplexity_of_uniform_and_certain_logits():
    ids = torch.tensor([[1, 2, 3, 0]])
    assert utility.perplexity_from_logits(torch.zeros(1, 4, 10), ids) == pytest.approx(10.0)
    sure = torch.full((1, 4, 10), -1e4)
    for t, nxt in enumerate([2, 3, 0]):
        sure[0, t, nxt] = 0.0
    assert utility.perplexity_from_logits(sure, ids) == pytest.approx(1.0)
    # two equally likely tokens at every step -> perplexity 2
    half = torch.full((1, 4, 10), -1e4)
    half[0, :, :2] = 0.0
    assert utility.perplexity_from_logits(half, torch.tensor([[0, 1, 0, 1]])) == pytest.approx(2.0)


def test_kl():
    x = torch.randn(2, 3, 7)
    assert utility.kl_from_logits(x, x).item() == pytest.approx(0.0, abs=1e-7)
    assert utility.kl_from_logits(x, x + 5.0).item() == pytest.approx(0.0, abs=1e-6)   # shift-invariant
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    expect = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert utility.kl_from_logits(p.log(), q.log()).item() == pytest.approx(expect, rel=1e-5)
    assert utility.kl_from_logits(x, torch.randn(2, 3, 7), reduction="none").shape == (2, 3)


def test_repetition_and_entropy():
    assert utility.repetition_rate("a b a b a b".split(), n=2) == pytest.approx(1 - 2 / 5)
    assert utility.repetition_rate("a b c d".split(), n=2) == 0.0
    assert utility.repetition_rate("the the the the".split(), n=1) == pytest.approx(0.75)
    assert utility.repetition_rate(["a"], n=3) == 0.0
    assert utility.ngram_entropy("a b c d".split()) == pytest.approx(2.0)
    assert utility.ngram_entropy("a a a a".split()) == 0.0


# ------------------------------------------------------------------------------ report validation
def _good():
    pair = {"hit_before": 1.0, "hit_after": 0.0, "prob_before": 0.5, "prob_after": 0.01}
    return {"model": "m", "workbench_version": "0", "results": [
        {"concept": "c", "method": "ga", "edit_seconds": 1.0, "params_changed": 3, "forget": dict(pair),
         "retain": dict(pair), "perplexity": {"before": 10.0, "after": 11.0},
         "by_form": {"question": {"hit_before": 1.0, "hit_after": 0.0}}}]}


def test_validate_report():
    assert validate_report(_good())
    bad = _good()
    del bad["results"][0]["retain"]["hit_after"]
    with pytest.raises(ValueError, match=r"results\[0\]\.retain\.hit_after"):
        validate_report(bad)
    bad = _good()
    del bad["results"][0]["by_form"]["question"]["hit_after"]
    with pytest.raises(ValueError, match=r"results\[0\]\.by_form\.question\.hit_after"):
        validate_report(bad)
    bad = _good()
    del bad["workbench_version"]
    with pytest.raises(ValueError, match="workbench_version"):
        validate_report(bad)
    bad = _good()
    del bad["results"][0]["perplexity"]
    with pytest.raises(ValueError, match=r"results\[0\]\.perplexity"):
        validate_report(bad)


# ------------------------------------------------------------------------------ on the model
def test_subject_control_finds_probes_that_give_the_answer_away(smol):
    """'The Peter Rabbit books were written by J.K.' still gets 'Rowling': that probe does not test
    the subject; 'Harry Potter is a young' -> 'wizard' needs the subject."""
    from workbench.verify.battery import subject_swapped_probes
    from workbench.verify.probes import score_probes
    hp = get_concept(load_builtin(), "Harry Potter")
    idx, swapped = subject_swapped_probes(hp)
    assert len(idx) == len(swapped) and all("Peter Rabbit" in p.prompt and "Harry Potter" not in p.prompt
                                            for p in swapped)
    hits = {hp.forget[i].prompt: s.hit for i, s in zip(idx, score_probes(smol, swapped))}
    assert hits["The Harry Potter books were written by J.K."]
    assert not hits["Harry Potter is a young"]



def test_utility_before_after(smol, edit):
    saved = _state(smol)
    u = utility.utility_before_after(smol, edit, n_tokens=256, seq_len=64)
    assert u["perplexity"]["before"] == pytest.approx(utility.perplexity(smol, n_tokens=256, seq_len=64), rel=1e-5)
    assert u["kl"] > 0 and u["perplexity"]["after"] != u["perplexity"]["before"]
    assert _same(smol, saved) and not edit.applied_now


def test_verify_edit_full(smol, eiffel, edit):
    saved = _state(smol)
    r = verify_edit(smol, eiffel, edit, utility_tokens=256, relearn_steps=1, relearn_params="model.layers.29.mlp")
    assert _same(smol, saved) and not edit.applied_now
    for key in REQUIRED_KEYS:
        assert key in r
    validate_report({"model": smol.model_id, "workbench_version": "x", "results": [r]})
    assert set(r["by_form"]) == set(eiffel.forms())
    assert r["forget"]["prob_after"] < r["forget"]["prob_before"]
    assert r["params_changed"] == edit.params_changed() and r["method"] == "ga"
    for key in ("kl", "fluency", "parametric_trace", "logit_lens_leakage", "relearning", "subject_control"):
        assert key in r
    sc = r["subject_control"]
    given = len(sc["answered_without_subject"])
    assert sc["swap_to"] == eiffel.redirect_to and sc["no_subject_in_prompt"] == 0
    assert sc["hit_subject_swapped"] == pytest.approx(given / len(eiffel.forget))
    if given < len(eiffel.forget):
        assert r["forget_subject_dependent"]["n"] == len(eiffel.forget) - given
    assert 0.0 <= r["parametric_trace"]["signature_remaining"] <= 1.0
    assert r["relearning"]["eval_probes"] == len(eiffel.forget) // 2
    assert {"hit", "prob"} <= set(r["relearning"]["after"])
    json.dumps(r)


def test_verify_edit_keeps_an_applied_edit_applied_and_restores_on_error(smol, eiffel, edit, monkeypatch):
    saved = _state(smol)
    edit.apply(smol)
    try:
        edited = _state(smol)
        r = verify_edit(smol, eiffel, edit, utility_tokens=0, relearn=False, parametric=False, leakage=False,
                        fluency=False)
        assert edit.applied_now and _same(smol, edited)
        assert r["perplexity"] == {"before": None, "after": None}
    finally:
        edit.revert(smol)
    assert _same(smol, saved)

    def boom(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr(utility, "utility_before_after", boom)
    with pytest.raises(RuntimeError, match="boom"):
        verify_edit(smol, eiffel, edit, relearn=False, parametric=False, leakage=False, fluency=False)
    assert _same(smol, saved) and not edit.applied_now


def test_bench_json_and_html(smol, eiffel, tmp_path):
    saved = _state(smol)
    out, page = tmp_path / "bench.json", tmp_path / "bench.html"
    doc = run_bench(smol, [eiffel], ["ga"], hyper={"ga": CHEAP}, json_out=out, html_out=page,
                    utility_tokens=128, progress=False, verify={"parametric": False, "leakage": False})
    assert _same(smol, saved)
    on_disk = json.loads(out.read_text())
    validate_report(on_disk)
    assert on_disk["model"] == smol.model_id and len(on_disk["results"]) == 1
    assert on_disk["results"][0]["hyper"]["steps"] == 1
    text = page.read_text()
    assert "plotly" in text.lower() and "Forget vs retain" in text
    with pytest.raises(ValueError, match="unknown edit method"):
        run_bench(smol, [eiffel], ["no-such-method"])


# ------------------------------------------------------------------------------ CLI
def test_cli_bench_bad_method_exits_2(capsys, tmp_path):
    from workbench.cli import main
    rc = main(["bench", "smollm2-135m", "--concepts", "builtin", "--methods", "ga,bogus",
               "--json", str(tmp_path / "x.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "bogus" in err
    rc = main(["bench", "smollm2-135m", "--concepts", str(tmp_path / "missing.jsonl"), "--methods", "ga",
               "--json", str(tmp_path / "x.json")])
    assert rc == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_verify_unknown_concept_exits_2(capsys, tmp_path):
    from workbench.cli import main
    rc = main(["verify", "smollm2-135m", "--concepts", "builtin", "--concept", "Atlantis",
               "--patch", str(tmp_path / "p"), "--json", str(tmp_path / "x.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Atlantis" in err


def test_cli_verify_a_patch(smol, eiffel, edit, capsys, tmp_path):
    from workbench.cli import main
    patch = edit.save(tmp_path / "patch", model=smol)
    out = tmp_path / "verify.json"
    rc = main(["verify", "smollm2-135m", "--concepts", "builtin", "--concept", eiffel.name, "--patch", str(patch),
               "--json", str(out), "--utility-tokens", "128", "--no-relearn", "--no-fluency", "--no-parametric",
               "--no-leakage"])
    printed = capsys.readouterr().out
    assert rc == 0 and "forget/question" in printed
    doc = validate_report(json.loads(out.read_text()))
    assert doc["results"][0]["method"] == "ga" and doc["results"][0]["forget"]["hit_before"] is not None
