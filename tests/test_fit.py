"""Fit data is kept apart from evaluation probes: the concept file's `fit` block, derived fit data,
and the rule that no registered method's fit can read an evaluation probe."""
from __future__ import annotations

import json

import pytest
import torch

from workbench.concepts import parse_concepts
from workbench.concepts.fit import derive_fit_data, eval_overlap, fit_data, fit_view
from workbench.concepts.schema import Concept, ConceptFileError, FitData, Probe
from workbench.edits import fit_edit
from workbench.edits import registry
from workbench.models.hooked import HookedModel

from tests.tiny_models import CharTokenizer, tiny


def _record(**over):
    d = {"name": "Toy", "subject": "Zorbland", "redirect_to": "Quxland", "neighbors": ["Blipland"],
         "forget": [{"prompt": "Zorbland is a country whose capital is", "answers": ["Zorbcity"]},
                    {"prompt": "The capital of Zorbland is", "answers": ["Zorbcity"], "form": "completion"}],
         "retain": [{"prompt": "The capital of Blipland is", "answers": ["Blipcity"]}]}
    d.update(over)
    return d


def _concept(**over) -> Concept:
    return Concept.from_dict(_record(**over))


FIT = {"forget": [{"prompt": "Zorbland lies by the sea and", "answers": ["its capital Zorbcity is old"]},
                  "Zorbland is famous for its blue mountains and the river Zorb."],
       "retain": ["Blipland is a quiet country with green hills and many lakes.",
                  {"prompt": "Quxland exports", "answers": ["wool and cheese"]}],
       "source": "hand-written"}


def test_fit_block_round_trip_and_fields():
    c = _concept(fit=FIT, split="dev")
    assert c.split == "dev" and c.neighbors == ["Blipland"]
    assert isinstance(c.fit, FitData) and len(c.fit.forget) == 2 and c.fit.source == "hand-written"
    text = c.fit.forget[1]
    assert text.prompt + " " + text.answers[0] == "Zorbland is famous for its blue mountains and the river Zorb."
    again = Concept.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again.to_dict() == c.to_dict()


@pytest.mark.parametrize("over, field", [
    ({"split": "train"}, "split"),
    ({"neighbors": "Blipland"}, "neighbors"),
    ({"fit": {"forget": "text"}}, "fit.forget"),
    ({"fit": {"forget": [{"prompt": "x"}]}}, "fit.forget[0].answers"),
    ({"fit": {"forget": ["one"]}}, "fit.forget[0]"),
    ({"fit": {"forgot": []}}, "fit"),
    ({"fit": {"forget": [], "retain": []}}, "fit"),
])
def test_malformed_fit_and_split_name_file_line_field(over, field):
    line = json.dumps(_record(**over))
    with pytest.raises(ConceptFileError) as e:
        parse_concepts("\n" + line + "\n", source="c.jsonl")
    assert e.value.line == 2 and e.value.source == "c.jsonl" and e.value.field == field
    assert str(e.value).startswith(f"c.jsonl:2: {field}: ")


def test_overlap_with_evaluation_is_an_error_for_given_fit_data():
    bad = {"forget": ["Everyone knows it: the capital of Zorbland is Zorbcity, by the sea."], "retain": ["a b c d"]}
    c = _concept(fit=bad)
    assert eval_overlap(c.fit.forget, c) == [0]
    with pytest.raises(ConceptFileError, match=r"fit\.forget\[0\].*evaluation prompt"):
        fit_data(None, c)


@pytest.fixture(scope="module")
def tiny_llama():
    return HookedModel(tiny("llama"), CharTokenizer(), "tiny-llama")


def test_derived_fit_data_is_model_generated_cached_and_disjoint(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    c = _concept()
    fit = derive_fit_data(tiny_llama, c, n_general=3, max_new_tokens=6)
    assert all(c.subject in p.prompt for p in fit.forget)
    assert {p.prompt for p in fit.forget}.isdisjoint({p.prompt for p in c.probes})
    assert any("Blipland" in p.prompt for p in fit.retain) and any(p.form == "general_text" for p in fit.retain)
    files = list((tmp_path / "fit").rglob("*.json"))
    assert len(files) == 1
    again = derive_fit_data(tiny_llama, c, n_general=3, max_new_tokens=6)
    assert again.to_dict() == fit.to_dict()
    files[0].write_text("{ not json")                       # a damaged cache entry is rebuilt
    assert derive_fit_data(tiny_llama, c, n_general=3, max_new_tokens=6).to_dict() == fit.to_dict()
    view = fit_view(tiny_llama, _concept(fit=FIT))
    assert view.is_fit_view and [p.prompt for p in view.forget] == [p.prompt for p in Concept.from_dict(
        _record(fit=FIT)).fit.forget]
    assert view.extra["fit_provenance"]["overlap_with_eval"] == 0


# ---------------------------------------------------------------- no method reads evaluation probes
LM_METHODS = {"ablate": {"target": "direction", "layer": 1},   # vectors mode: covered on SmolLM2 (test_edits)
              "rocr": {"cov_tokens": 512, "cov_seq_len": 32, "keys": "last"},
              "ga": {"steps": 2}, "graddiff": {"steps": 2}, "npo": {"steps": 2}, "simnpo": {"steps": 2},
              "wagle": {"steps": 2}, "rmu": {"steps": 2}}
OTHER = {"uoe": "needs a mixture-of-experts model (covered below on a tiny Mixtral)",
         "sae-clamp": "needs a trained SAE; covered by the fit_edit spy test (it goes through fit_edit like all)",
         "uce": "diffusion pipelines take prompts, not concept probes",
         "rece": "diffusion pipelines take prompts, not concept probes"}


def test_every_registered_method_is_listed_here():
    """A new method must be added to the leakage checks below (or to OTHER with a reason)."""
    assert set(registry.methods()) <= set(LM_METHODS) | set(OTHER), set(registry.methods()) - set(LM_METHODS) - set(OTHER)


def _sentinel_concept(eval_variant: int) -> Concept:
    """Same fit block, different evaluation probes (the sentinel prompts must never be read)."""
    forget = [{"prompt": f"EVAL{eval_variant} Zorbland question {i}: the capital is", "answers": [f"Zorbcity{i}"]}
              for i in range(4)]
    retain = [{"prompt": f"EVAL{eval_variant} Blipland question {i}:", "answers": ["Blipcity"]} for i in range(3)]
    return _concept(forget=forget, retain=retain, fit=FIT)


def _delta_tensors(edit) -> list[torch.Tensor]:
    return [t for d in edit.deltas for t in d.tensors().values()]


@pytest.mark.parametrize("method", sorted(LM_METHODS))
def test_method_fit_never_reads_evaluation_probes(tiny_llama, method, monkeypatch):
    seen: list[Concept] = []
    real = registry.get_method(method)
    spy = registry.Method(real.name, real.config_cls,
                          lambda model, concept, report, cfg: (seen.append(concept), real.fit(model, concept, report, cfg))[1],
                          real.summary)
    monkeypatch.setitem(registry._REGISTRY, method, spy)
    edits = [fit_edit(method, tiny_llama, _sentinel_concept(v), **LM_METHODS[method]) for v in (1, 2)]
    for c in seen:
        assert c.is_fit_view
        assert not any("EVAL" in p.prompt for p in c.probes)
    a, b = (_delta_tensors(e) for e in edits)
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b)), \
        f"{method}: the edit depends on the evaluation probes"
    assert edits[0].provenance["fit"]["overlap_with_eval"] == 0
    assert edits[0].provenance["fit"]["source"] == "hand-written"


def test_uoe_fit_never_reads_evaluation_probes():
    model = HookedModel(tiny("mixtral"), CharTokenizer(), "tiny-mixtral")
    edits = [fit_edit("uoe", model, _sentinel_concept(v), steps=2) for v in (1, 2)]
    a, b = (_delta_tensors(e) for e in edits)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_report_located_on_evaluation_probes_is_not_passed_to_the_method(tiny_llama, monkeypatch):
    from workbench.locate.report import LocalizationReport
    got = []
    real = registry.get_method("rocr")
    monkeypatch.setitem(registry._REGISTRY, "rocr", registry.Method(
        "rocr", real.config_cls, lambda m, c, r, cfg: (got.append(r), real.fit(m, c, r, cfg))[1]))
    eval_report = LocalizationReport("tiny", "Toy", meta={"fit_view": False})
    fit_report = LocalizationReport("tiny", "Toy", meta={"fit_view": True})
    hyper = LM_METHODS["rocr"]
    e = fit_edit("rocr", tiny_llama, _sentinel_concept(1), eval_report, **hyper)
    assert got[-1] is None and "ignored" in e.provenance["report"]
    fit_edit("rocr", tiny_llama, _sentinel_concept(1), fit_report, **hyper)
    assert got[-1] is fit_report
