"""Verification battery, utility metrics, benchmark report and the verify/bench CLI."""
import json
import math

import pytest
import torch

from workbench.concepts import get_concept, load_builtin
from workbench.edits import fit_edit
from workbench.verify import utility
from workbench.verify.battery import OTHER_FORMS, REQUIRED_KEYS, verify_edit
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


# ------------------------------------------------------------------------------ per form, paired, world
def _ps(form, hit, prob=0.5, prompt="p"):
    from workbench.verify.probes import ProbeScore
    return ProbeScore(prompt=prompt, form=form, answers=["a"], continuation="", hit=hit, prob=prob,
                      answer_logprob=math.log(prob), answer=" a", n_answer_tokens=1)


def test_by_form_lists_forms_with_three_known_probes_and_pools_the_rest():
    from workbench.verify.battery import by_form
    before = ([_ps("question", True)] * 3 + [_ps("chat", True)] * 2 + [_ps("mcq", True), _ps("mcq", False)]
              + [_ps("cloze", False)] * 4)
    after = [_ps(s.form, False) for s in before]
    bf = by_form(before, after)
    assert list(bf) == ["question", OTHER_FORMS]            # cloze has 4 probes but none known
    assert bf["question"]["n"] == 3 and bf["question"]["hit_before"] == 1.0 and bf["question"]["n_known"] == 3
    other = bf[OTHER_FORMS]
    assert other["forms"] == {"chat": 2, "mcq": 2, "cloze": 4} and other["n"] == 8 and other["n_known"] == 3
    assert other["hit_before"] == pytest.approx(3 / 8) and other["hit_after"] == 0.0
    assert other["hit_before_ci"] == pytest.approx([0.1368, 0.6943], abs=5e-4)    # Wilson 3/8
    assert OTHER_FORMS not in by_form(before[:3], after[:3])


def _result(method, hits, probs, concept="c"):
    pp = [{"prompt": f"q{i}", "form": "completion", "hit_before": True, "hit_after": h, "prob_before": 0.9,
           "prob_after": p} for i, (h, p) in enumerate(zip(hits, probs))]
    return {"concept": concept, "method": method, "forget": {"per_probe": pp}, "retain": {"per_probe": pp[:2]}}


def test_paired_compare():
    from workbench.verify.battery import paired_compare
    a = _result("rocr", [False] * 9 + [True], [0.01] * 10)
    b = _result("ga", [True] * 8 + [False, True], [0.5] * 10)
    r = paired_compare(a, b)
    assert r["methods"] == ["rocr", "ga"] and r["forget"]["n"] == 10
    assert (r["forget"]["mcnemar"]["a_only"], r["forget"]["mcnemar"]["b_only"]) == (0, 8)
    assert r["forget"]["mcnemar"]["p"] == pytest.approx(2 / 256) and r["forget"]["hits_differ"]
    assert r["forget"]["prob"]["diff"] == pytest.approx(-0.49) and r["forget"]["probs_differ"]
    assert paired_compare(a, b, when="before")["forget"]["mcnemar"]["p"] == 1.0
    with pytest.raises(ValueError, match="same concept"):
        paired_compare(a, _result("ga", [True] * 10, [0.5] * 10, concept="other"))
    c = _result("ga", [True] * 10, [0.5] * 10)
    c["forget"]["per_probe"][3]["prompt"] = "changed"
    with pytest.raises(ValueError, match=r"forget.per_probe\[3\] differs"):
        paired_compare(a, c)
    with pytest.raises(ValueError, match="per_probe missing"):
        paired_compare(a, {"concept": "c", "forget": {}, "retain": {}})


def test_world_knowledge_file(tmp_path, eiffel):
    from workbench.concepts.schema import ConceptFileError
    from workbench.verify.world import exclude_concept, load_world_knowledge, summarize_world
    path = tmp_path / "wk.jsonl"
    path.write_text(json.dumps(WORLD[0]) + "\n\n" + json.dumps(WORLD[3]) + "\n")
    probes = load_world_knowledge(path)
    assert [p.prompt for p in probes] == [WORLD[0]["prompt"], WORLD[3]["prompt"]]
    assert probes[0].extra == {"topic": "geography"}
    kept, excluded = exclude_concept(probes, eiffel)
    assert [p.prompt for p in kept] == [WORLD[0]["prompt"]] and excluded == 1
    path.write_text(json.dumps(WORLD[0]) + "\n" + json.dumps({"prompt": "x", "answers": []}) + "\n")
    with pytest.raises(ConceptFileError, match=r"wk.jsonl:2: fact.answers: must be a non-empty list"):
        load_world_knowledge(path)
    path.write_text("{not json\n")
    with pytest.raises(ConceptFileError, match=r"wk.jsonl:1: not valid JSON"):
        load_world_knowledge(path)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_world_knowledge(tmp_path / "missing.jsonl")
    before = [_ps("completion", h, prompt=f"f{i}") for i, h in enumerate([True, True, True, True, False])]
    after = [_ps("completion", h, prompt=f"f{i}") for i, h in enumerate([True, False, True, True, True])]
    w = summarize_world(before, after, excluded=2, n_boot=200)
    assert (w["n"], w["excluded"], w["hit_before"], w["hit_after"], w["ratio"]) == (5, 2, 0.8, 0.8, 1.0)
    assert w["kept"] == 0.75 and w["lost"] == ["f1"] and w["gained"] == 1 and w["mcnemar_p"] == 1.0


def test_independent_utility_reports_why_it_is_skipped(monkeypatch):
    from workbench.verify import battery, utility
    monkeypatch.setattr(utility, "corpus_missing", lambda name: f"{name} is not installed here")
    ppl, kl = battery._independent(None, None, 256, ("wordnet", "kjv"), 100)
    assert ppl == kl and "wordnet: wordnet is not installed here; kjv: kjv is not installed here" in ppl["skipped"]
    assert battery._independent(None, None, 0, "kjv", 100)[0] == {"skipped": "utility_tokens=0"}
    assert "disabled" in battery._independent(None, None, 256, None, 100)[1]["skipped"]


# ------------------------------------------------------------------------------ attacks (tiny model)
MEMBERS = ["the quick brown fox jumps over the lazy dog near the river bank", "seven silver swans swam south",
           "a lonely lighthouse keeper counts the waves at night", "red rockets rise from the northern desert",
           "old maps hide the roads to forgotten towns", "warm bread cools slowly on the kitchen window",
           "tall pines whisper secrets to the passing wind", "blue glass bottles line the dusty shelf"]
OTHERS = ["green parrots argue loudly about the morning weather", "ten copper coins fell into the deep well",
          "the violin case was left on the crowded train", "cold rain drums on the tin roof of the barn",
          "a careful clerk stamps each letter twice", "purple clouds gather over the quiet harbour",
          "the chess players shook hands and left silently", "small boats drift past the sleeping island"]


@pytest.fixture()
def tiny_lm():
    from tests.tiny_models import CharTokenizer, tiny
    from workbench.models.hooked import HookedModel
    return HookedModel(tiny("llama", seed=1), CharTokenizer(), "tiny-llama")


def _tiny_concept():
    from workbench.concepts.schema import Concept, Probe
    return Concept("fox", "fox", forget=[Probe("Where does the fox live?", ["den"])],
                   retain=[Probe("Where do bees live?", ["hive"])])


def test_mia_auc_half_for_identical_sets_and_high_after_fitting_members(tiny_lm):
    from workbench.edits.unlearn import probe_batch, select_params, sequence_nll, train_in_place
    from workbench.verify.attacks import as_fit_probes, membership_inference
    concept = _tiny_concept()
    same = membership_inference(tiny_lm, concept, None, MEMBERS, MEMBERS, n_boot=100)
    assert all(v["auc"] == 0.5 for v in same["before"].values()) and "after" not in same
    before = membership_inference(tiny_lm, concept, None, MEMBERS, OTHERS, n_boot=100)["before"]
    batch = probe_batch(tiny_lm, as_fit_probes(MEMBERS))
    train_in_place(tiny_lm, select_params(tiny_lm, "all"), lambda _: sequence_nll(tiny_lm, batch)[0].mean(), 120, 1e-2,
                   progress=False)
    after = membership_inference(tiny_lm, concept, None, MEMBERS, OTHERS, n_boot=100)["before"]
    for score in ("loss", "zlib", "min_k"):
        assert after[score]["auc"] > 0.9 and after[score]["auc"] > before[score]["auc"], (score, before, after)
        assert after[score]["ci"][0] <= after[score]["auc"] <= after[score]["ci"][1]


def test_relearning_trains_on_fit_texts_only(tiny_lm, monkeypatch):
    from workbench import training
    from workbench.edits.base import Edit
    from workbench.verify.attacks import relearning_attack
    concept = _tiny_concept()
    seen = []
    real = training.probe_batch
    monkeypatch.setattr(training, "probe_batch", lambda model, probes: seen.extend(probes) or real(model, probes))
    saved = {n: p.detach().clone() for n, p in tiny_lm.hf.named_parameters()}
    edit = Edit(method="none", model_id="tiny-llama", concept=concept.name)
    r = relearning_attack(tiny_lm, concept, edit, MEMBERS[:4], steps=4, lr=1e-2, curve=(0, 2, 4), batch_size=2,
                          max_new_tokens=3, progress=False)
    texts = [p.prompt + " " + p.answer for p in seen]
    assert texts == MEMBERS[:4] and r["trained_on"] == [p.prompt for p in seen]
    assert not any(e.prompt in t for e in concept.probes for t in texts)
    assert [c["step"] for c in r["curve"]] == [0, 2, 4] and r["eval_probes"] == 1 and len(r["losses"]) == 4
    assert all(torch.equal(p, saved[n]) for n, p in tiny_lm.hf.named_parameters())   # restored bit-exactly
    with pytest.raises(ValueError, match=r"fit.forget\[1\]: contains an evaluation prompt"):
        relearning_attack(tiny_lm, concept, edit, [MEMBERS[0], "so: Where does the fox live? In a den."], steps=1)


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


# fit texts about the Eiffel Tower, written apart from its evaluation probes (none contains one)
EIFFEL_FIT = {"source": "test", "forget": [
    {"prompt": "Here is a short description of Eiffel Tower:", "form": "fit_text",
     "answers": ["a wrought-iron lattice tower on the Champ de Mars, named after the engineer Gustave Eiffel."]},
    {"prompt": "Facts about Eiffel Tower:", "form": "fit_text",
     "answers": ["it was built from 1887 to 1889 as the entrance arch to the 1889 World's Fair."]},
    {"prompt": "Eiffel Tower is known for", "form": "fit_text",
     "answers": ["being the most visited paid monument in the world and a global cultural icon of France."]},
    {"prompt": "The history of Eiffel Tower", "form": "fit_text",
     "answers": ["began when Gustave Eiffel's company designed it for the centennial of the French Revolution."]}],
    "retain": ["The Statue of Liberty is a colossal neoclassical sculpture on Liberty Island in New York Harbor."]}
WORLD = [{"prompt": "The capital of Germany is", "answers": ["Berlin"], "form": "completion", "topic": "geography"},
         {"prompt": "The largest planet in the solar system is", "answers": ["Jupiter"], "form": "completion"},
         {"prompt": "The opposite of hot is", "answers": ["cold"], "form": "completion", "topic": "language"},
         {"prompt": "The Eiffel Tower was designed by Gustave", "answers": ["Eiffel"], "form": "completion"},
         {"prompt": "The capital of Italy is", "answers": ["Rome"], "form": "completion", "topic": "geography"}]


def _fit(d=EIFFEL_FIT):
    from workbench.concepts.schema import Probe
    return {"source": d["source"], "forget": [Probe.from_dict(x) for x in d["forget"]], "retain": list(d["retain"])}


@pytest.fixture(scope="module")
def world_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("wk") / "world_knowledge.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in WORLD) + "\n\n")
    return path


def test_verify_edit_full(smol, eiffel, edit, world_file):
    from workbench.verify.stats import wilson
    saved = _state(smol)
    r = verify_edit(smol, eiffel, edit, utility_tokens=256, relearn_steps=2, relearn_curve=(0, 1, 2),
                    relearn_batch=2, relearn_params="model.layers.29.mlp", fit=_fit(), world_knowledge=world_file,
                    n_boot=200)
    assert _same(smol, saved) and not edit.applied_now
    for key in REQUIRED_KEYS:
        assert key in r
    validate_report({"model": smol.model_id, "workbench_version": "x", "results": [r]})
    # forms: only those with >= 3 known probes, the rest pooled; every probe counted once
    assert sum(v["n"] for v in r["by_form"].values()) == len(eiffel.forget)
    assert all(v["n_known"] >= 3 for f, v in r["by_form"].items() if f != OTHER_FORMS)
    assert set(r["by_form"]) <= set(eiffel.forms()) | {OTHER_FORMS}
    assert r["forget"]["prob_after"] != r["forget"]["prob_before"]      # held out: a cheap GA moves it, either way
    assert r["params_changed"] == edit.params_changed() and r["method"] == "ga"
    # intervals and per-probe scores
    pp = r["forget"]["per_probe"]
    assert [x["prompt"] for x in pp] == [p.prompt for p in eiffel.forget] and r["forget"]["n"] == len(pp)
    for key in ("hit_before", "hit_after"):
        k = sum(x[key] for x in pp)
        assert r["forget"][key] == k / len(pp) and r["forget"][key + "_ci"] == wilson(k, len(pp))
    lo, hi = r["perplexity"]["ratio_ci"]
    assert r["perplexity"]["ratio"] == pytest.approx(r["perplexity"]["after"] / r["perplexity"]["before"])
    assert lo <= r["perplexity"]["ratio"] <= hi and r["kl_ci"][0] <= r["kl"] <= r["kl_ci"][1]
    # utility on a corpus the edit's statistics never saw (installed by `make corpora`, else skipped)
    from workbench.verify.utility import corpus_missing
    ind, kli = r["perplexity_independent"], r["kl_independent"]
    if corpus_missing("wordnet") is None:
        assert ind["corpus"] == "wordnet" and ind["n_tokens"] == 256 and ind["before"] != r["perplexity"]["before"]
        assert ind["ratio_ci"][0] <= ind["ratio"] <= ind["ratio_ci"][1] and kli["mean"] > 0
    else:
        assert "wordnet" in ind["skipped"] and "wordnet" in kli["skipped"]
    # world knowledge: the probe naming the subject is excluded
    wk = r["world_knowledge"]
    assert wk["n"] == len(WORLD) - 1 and wk["excluded"] == 1 and len(wk["hit_before_ci"]) == 2
    assert wk["hit_before"] >= 0.75 and 0 <= wk["kept"] <= 1
    # attacks on the fit texts
    mia = r["mia"]
    assert mia["members"] == 4 and mia["comparable"] and "neighbour" in mia["nonmember_source"]
    for when in ("before", "after"):
        assert set(mia[when]) == {"loss", "zlib", "min_k"} and all(0 <= v["auc"] <= 1 for v in mia[when].values())
    rl = r["relearning"]
    assert rl["trained_on"] == [x["prompt"] for x in EIFFEL_FIT["forget"]] and rl["train_source"] == "test"
    assert [c["step"] for c in rl["curve"]] == [0, 1, 2] and rl["eval_probes"] == len(eiffel.forget)
    assert len(rl["losses"]) == 2 and {"hit", "prob", "hit_ci"} <= set(rl["after"])
    for key in ("kl", "fluency", "parametric_trace", "logit_lens_leakage", "subject_control"):
        assert key in r
    sc = r["subject_control"]
    given = len(sc["answered_without_subject"])
    assert sc["swap_to"] == eiffel.redirect_to and sc["no_subject_in_prompt"] == 0
    assert sc["hit_subject_swapped"] == pytest.approx(given / len(eiffel.forget))
    if given < len(eiffel.forget):
        assert r["forget_subject_dependent"]["n"] == len(eiffel.forget) - given
    assert 0.0 <= r["parametric_trace"]["signature_remaining"] <= 1.0
    # the same result against itself: identical probes -> no difference
    from workbench.verify.battery import paired_compare
    same = paired_compare(r, r)
    assert same["forget"]["mcnemar"]["p"] == 1.0 and same["forget"]["prob"]["diff"] == 0.0
    json.dumps(r)


def test_verify_edit_keeps_an_applied_edit_applied_and_restores_on_error(smol, eiffel, edit, monkeypatch):
    saved = _state(smol)
    edit.apply(smol)
    try:
        edited = _state(smol)
        r = verify_edit(smol, eiffel, edit, utility_tokens=0, relearn=False, parametric=False, leakage=False,
                        fluency=False, mia=False, world_knowledge=False)
        assert edit.applied_now and _same(smol, edited)
        assert r["perplexity"] == {"before": None, "after": None}
    finally:
        edit.revert(smol)
    assert _same(smol, saved)

    def boom(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr(utility, "utility_before_after", boom)
    with pytest.raises(RuntimeError, match="boom"):
        verify_edit(smol, eiffel, edit, relearn=False, parametric=False, leakage=False, fluency=False, mia=False,
                    world_knowledge=False)
    assert _same(smol, saved) and not edit.applied_now


def test_bench_json_and_html(smol, eiffel, tmp_path):
    saved = _state(smol)
    out, page = tmp_path / "bench.json", tmp_path / "bench.html"
    doc = run_bench(smol, [eiffel], ["ga"], hyper={"ga": CHEAP}, json_out=out, html_out=page,
                    utility_tokens=128, progress=False, verify={"parametric": False, "leakage": False, "mia": False,
                                                           "world_knowledge": False})
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
    assert rc == 0 and "forget/" in printed
    doc = validate_report(json.loads(out.read_text()))
    assert doc["results"][0]["method"] == "ga" and doc["results"][0]["forget"]["hit_before"] is not None


def test_compact_table_shows_intervals_independent_utility_and_world_knowledge():
    from workbench.verify.bench import compact_table
    from workbench.verify.stats import wilson
    pair = lambda k, n: {"hit_before": 1.0, "hit_after": k / n, "prob_before": 0.5, "prob_after": 0.1, "n": n,
                         "hit_before_ci": wilson(n, n), "hit_after_ci": wilson(k, n)}
    r = {"forget": pair(4, 40), "retain": pair(19, 20), "perplexity": {"before": 100.0, "after": 101.0},
         "perplexity_independent": {"corpus": "wordnet", "before": 35.0, "after": 35.5},
         "world_knowledge": {"n": 220, "hit_before": 1.0, "hit_after": 0.95}, "by_form": {}}
    lines = compact_table(r).splitlines()
    lo, hi = wilson(4, 40)
    assert any(l.startswith("  forget hit after: 95 % CI (n=40)") and l.endswith(f"[{lo:.2f}, {hi:.2f}]") for l in lines)
    assert any(l.startswith("perplexity (wordnet, independent)") and l.split()[-2:] == ["35.00", "35.50"] for l in lines)
    assert any(l.startswith("world knowledge hit (220)") and l.split()[-1] == "0.950" for l in lines)


def test_independent_corpus_is_never_one_the_edit_saw():
    """A corpus named in the edit's `cov_sources` is refused as "independent" before any scoring."""
    from types import SimpleNamespace
    from workbench.verify.battery import _independent
    edit = SimpleNamespace(hyper={"cov_sources": "shakespeare+kjv+wordnet"})
    ppl, kl = _independent(None, edit, 256, ("wordnet", "kjv"), 10)
    assert "skipped" in ppl and "wordnet: in the edit's own statistics" in ppl["skipped"]
    assert "kjv: in the edit's own statistics" in ppl["skipped"] and kl == ppl
