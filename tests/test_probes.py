"""Probe scoring on the embedded model: hit, teacher-forced prob, summaries, built-in baselines."""
from __future__ import annotations

import math

import pytest
import torch

from workbench.concepts import Concept, Probe, load_builtin, render_prompt
from workbench.verify.probes import (ProbeScore, answer_continuation, answer_logprobs, check_concepts,
                                     concept_baseline, format_check_table, is_hit, score_probes, summarize)

QD = "Question: What color is a ripe banana?\nAnswer: Yellow\n\n"

PROBES = [
    Probe("The capital of France is", ["Paris"], "completion"),
    Probe("The capital of France is", ["Berlin"], "completion"),
    Probe("What is the capital of France?", ["Paris"], "chat"),
    Probe("The Mona Lisa was painted by", ["Leonardo da Vinci", "Leonardo"], "completion"),
    Probe(QD + "Question: What is the capital of Germany?\nAnswer:", ["Berlin"], "question"),
]


@pytest.fixture(scope="module")
def model():
    from workbench import load_model
    return load_model("smollm2-135m")


@pytest.fixture(scope="module")
def scores(model):
    # batch_size=2 mixes prompt lengths across batches and exercises the re-ordering
    return score_probes(model, PROBES, max_new_tokens=8, batch_size=2)


def manual_prob(model, prompt: str, answer: str) -> float:
    """P(answer | prompt) from one unpadded forward pass, product of per-token probabilities."""
    p_ids = model.tokenizer(prompt)["input_ids"]
    a_ids = model.tokenizer(answer, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model.hf(input_ids=torch.tensor([p_ids + a_ids], device=model.device)).logits[0].float()
    probs = logits.softmax(-1)
    return math.prod(float(probs[len(p_ids) - 1 + j, t]) for j, t in enumerate(a_ids))


# ---------------------------------------------------------------- no model needed
def test_answer_continuation_rule():
    assert answer_continuation("The capital of France is", "Paris") == " Paris"
    assert answer_continuation("written by J.K.", "Rowling") == " Rowling"
    assert answer_continuation("Answer:", "Paris") == " Paris"
    assert answer_continuation("<|im_start|>assistant\n", "Paris") == "Paris"      # chat template ends in \n
    assert answer_continuation("The capital is ", "Paris") == "Paris"
    assert answer_continuation('The answer is "', "Paris") == "Paris"
    assert answer_continuation("The capital is", " Paris") == " Paris"


def test_is_hit_case_insensitive_substring():
    assert is_hit(" PARIS, France", ["paris"])
    assert is_hit(" the Himalayas.", ["Himalaya"])
    assert not is_hit(" Berlin", ["Paris", "France"])


def _score(form: str, hit: bool, prob: float) -> ProbeScore:
    return ProbeScore(prompt="p", form=form, answers=["a"], continuation="", hit=hit, prob=prob,
                      answer_logprob=math.log(prob), answer=" a", n_answer_tokens=1)


def test_summarize():
    s = summarize([_score("completion", True, 0.5), _score("chat", False, 0.1), _score("completion", False, 0.3)])
    assert s["n"] == 3 and s["hit"] == pytest.approx(1 / 3) and s["prob"] == pytest.approx(0.3)
    assert list(s["by_form"]) == ["completion", "chat"]
    assert s["by_form"]["completion"] == {"hit": 0.5, "prob": pytest.approx(0.4), "n": 2,
                                          "hit_ci": pytest.approx([0.0945, 0.9055], abs=5e-4)}   # Wilson 1/2
    assert s["hit_ci"] == pytest.approx([0.0615, 0.7923], abs=5e-4)                            # Wilson 1/3
    assert s["by_form"]["chat"]["hit_ci"] == pytest.approx([0.0, 0.7935], abs=5e-4)             # Wilson 0/1
    assert summarize([]) == {"hit": None, "prob": None, "n": 0, "hit_ci": None, "by_form": {}}


def test_format_check_table():
    row = {"concept": "Harry Potter", "known": False, "threshold": 0.5,
           "forget": {"hit": 0.25, "prob": 0.1234, "n": 8, "by_form": {}},
           "retain": {"hit": 1.0, "prob": 0.5, "n": 6, "by_form": {}}, "notes": ["model does not know it"]}
    table = format_check_table([row])
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["concept", "forget", "hit"]
    assert "Harry Potter" in lines[2] and "0.25 (8)" in lines[2] and "0.123" in lines[2] and "NO" in lines[2]
    assert lines[-1] == "Harry Potter: model does not know it"


# ---------------------------------------------------------------- embedded model
def test_hit_for_known_fact_and_miss_for_wrong_answer(scores):
    paris, berlin, chat, mona, question = scores
    assert paris.hit and "paris" in paris.continuation.lower()
    assert not berlin.hit
    assert paris.prob > 0.3 > berlin.prob
    assert chat.hit and question.hit and mona.hit
    assert [s.form for s in scores] == [p.form for p in PROBES]          # order preserved
    assert score_probes(None, []) == []


def test_prob_is_product_of_answer_token_probabilities(model, scores):
    paris, _, chat, mona, _ = scores
    assert (paris.answer, chat.answer, mona.answer) == (" Paris", "Paris", " Leonardo da Vinci")
    assert mona.n_answer_tokens > 1
    for probe, score in [(PROBES[0], paris), (PROBES[2], chat), (PROBES[3], mona)]:
        expected = manual_prob(model, render_prompt(model, probe), score.answer)
        assert score.prob == pytest.approx(expected, abs=1e-5)
        assert score.answer_logprob == pytest.approx(math.log(expected), abs=1e-4)


def test_teacher_forcing_does_not_depend_on_batching(model):
    prompts = [render_prompt(model, p) for p in PROBES]
    answers = [p.answer for p in PROBES]
    one = answer_logprobs(model, prompts, answers, batch_size=1)
    many = answer_logprobs(model, prompts, answers, batch_size=16)
    for (lp1, n1, t1), (lp2, n2, t2) in zip(one, many):
        assert (n1, t1) == (n2, t2) and lp1 == pytest.approx(lp2, abs=1e-4)


def test_concept_baseline(model):
    concept = Concept("France", "France", forget=PROBES[:2], retain=[PROBES[4]])
    model.hf.train()
    try:
        row = concept_baseline(model, concept, threshold=0.5)
        assert model.hf.training                                      # mode restored after scoring
    finally:
        model.hf.eval()
    assert row["concept"] == "France" and row["known"] is True
    assert row["forget"]["hit"] == 0.5 and row["forget"]["n"] == 2 and row["retain"]["hit"] == 1.0
    assert concept_baseline(model, concept, threshold=0.75)["known"] is False


def test_builtin_concepts_are_known(model):
    """Baseline on every built-in concept: the embedded model knows the facts it is asked to forget."""
    concepts = load_builtin()
    rows = check_concepts(model, concepts, threshold=0.5)
    print("\n" + format_check_table(rows))
    forget = [r["forget"]["hit"] for r in rows]
    retain = [r["retain"]["hit"] for r in rows]
    assert sum(forget) / len(forget) >= 0.6
    assert sum(retain) / len(retain) >= 0.6
    assert all(r["known"] for r in rows), [r["concept"] for r in rows if not r["known"]]
