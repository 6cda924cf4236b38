"""Dashboard pages under streamlit.testing.v1.AppTest on the embedded model.

Every page renders without an exception; a locate -> edit -> verify flow in one session shows the
expected metrics (ROCR on Japan: forget hit drops, retain hit holds); another session never sees
that edit and the shared model's weights are untouched afterwards; bad input (malformed concept,
huge prompt, wrong-base patch) is an inline error, never a traceback.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent / "dashboards"
PAGES = ["app.py", "pages/1_Model.py", "pages/2_Locate.py", "pages/3_Edit.py", "pages/4_Verify.py",
         "pages/5_Patches.py"]
TIMEOUT = 600


def _app(page: str = "app.py") -> AppTest:
    return AppTest.from_file(str(ROOT / page), default_timeout=TIMEOUT)


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def _shared_model():
    from workbench import dashboard_ui
    return dashboard_ui._load("smollm2-135m")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(page):
    at = _app(page).run()
    _ok(at)
    assert not _errors(at)


def test_model_page_shows_structure_next_tokens_and_lens():
    at = _app("pages/1_Model.py").run()
    _ok(at)
    model = _shared_model()
    assert any(f"{model.info.n_params:,}" == m.value for m in at.metric)
    tables = [d.value for d in at.dataframe]
    next_tokens = next(t for t in tables if "token" in t.columns and "prob" in t.columns)
    assert next_tokens.iloc[0]["token"].strip() == "Paris"          # SmolLM2 knows where the tower is
    assert (next_tokens["prob"].diff().dropna() <= 0).all()
    assert any("top-1 from layer" in c.value for c in at.caption)


def test_huge_prompt_and_unknown_model_are_inline_errors():
    at = _app("pages/1_Model.py").run()
    at.text_area(key="model_prompt").set_value("word " * 1000).run()
    _ok(at)
    assert any("over the limit" in e for e in _errors(at))
    at.text_input[0].set_value("/no/such/checkpoint").run()
    at.button[0].click().run()
    _ok(at)
    assert any("/no/such/checkpoint" in e for e in _errors(at))


def test_malformed_concept_is_refused_with_its_line_and_field():
    at = _app("pages/2_Locate.py").run()
    at.radio(key="concept_source").set_value("concept file (JSON Lines)").run()
    good = json.dumps({"name": "X", "subject": "X", "forget": [{"prompt": "X is", "answers": ["y"]}],
                       "retain": [{"prompt": "Z is", "answers": ["w"]}]})
    bad = json.dumps({"name": "Y", "subject": "Y", "forget": [{"prompt": "Y is", "answers": []}], "retain": []})
    at.text_area(key="concept_text").set_value(good + "\n" + bad).run()
    at.button[0].click().run()
    _ok(at)
    errs = _errors(at)
    assert errs and "pasted concept file:2" in errs[0] and "forget[0].answers" in errs[0]
    # the form editor: an empty subject names the field
    at.radio(key="concept_source").set_value("form editor").run()
    at.text_input(key="form_subject").set_value("  ")
    at.button[0].click().run()
    _ok(at)
    assert any("subject" in e for e in _errors(at))


def _wrong_base_patch(tmp_path, model) -> Path:
    """A patch whose tensor name exists in SmolLM2 but was made for a different (tiny) base."""
    from tests.tiny_models import tiny
    from workbench.edits import Edit, TensorDelta
    t = tiny("llama")
    name = "model.layers.0.mlp.down_proj.weight"
    W = t.get_parameter(name)
    edit = Edit("ablate", "tiny-llama", [TensorDelta(name, "low_rank", tuple(W.shape), "float32",
                                                     A=torch.ones(W.shape[0], 1), B=torch.ones(1, W.shape[1]))],
                concept="Japan")
    assert model.hf.get_parameter(name).shape != W.shape
    return edit.save(tmp_path / "wrong.patch", model=t, base_model_id="tiny-llama")


def test_locate_edit_verify_patch_flow_is_scoped_to_its_session(tmp_path):
    from workbench.patches import tensor_fingerprint
    model = _shared_model()
    at = _app("app.py").run()
    at.switch_page("pages/2_Locate.py").run()
    _ok(at)
    assert at.selectbox(key="builtin_concept").value == "Japan"
    # location: residual directions and concept vectors (fast); causal tracing has its own tests
    at.checkbox(key="kind_tracing").uncheck()
    at.number_input(key="validate_top").set_value(2)
    next(b for b in at.button if b.label == "Run location").click().run()
    _ok(at)
    assert not _errors(at)
    report = at.session_state["report"]
    assert {"residual_direction", "concept_vector"} <= set(report.profiles)
    tables = [d.value for d in at.dataframe]
    assert any("probe accuracy" in t.columns and len(t) == model.n_layers for t in tables)
    assert any("top tokens" in t.columns for t in tables)
    assert any("not built yet" in i.value or "not available" in i.value or "no " in i.value for i in at.info)

    # edit: ROCR with its defaults (layer from depth: the covariance the edit tests also use)
    at.switch_page("pages/3_Edit.py").run()
    _ok(at)
    assert at.selectbox(key="method").value == "rocr"
    assert at.text_input(key="hp_rocr_depth").value == "0.15"              # defaults shown
    at.button[0].click().run()
    _ok(at)
    assert not _errors(at)
    edit = at.session_state["edit"]
    assert edit.method == "rocr" and not edit.applied_now
    names = edit.names
    before = {n: tensor_fingerprint(model.hf.get_parameter(n)) for n in names}
    assert any(f"{edit.params_changed():,}" == m.value for m in at.metric)
    base, edited = [c.value for c in at.code][:2]
    assert "Tokyo" in base and "Tokyo" not in edited                       # side by side, scoped
    next(b for b in at.button if b.label.startswith("Score")).click().run()
    _ok(at)
    probes = at.session_state["probe_rows"]
    forget = [r for r in probes if r["set"] == "forget"]
    assert sum(r["hit after"] for r in forget) < sum(r["hit before"] for r in forget)

    # another session, same process, same shared model: it does not see the edit
    other = _app("pages/1_Model.py").run()
    other.text_area(key="model_prompt").set_value("The capital of Japan is the city of").run()
    _ok(other)
    top = next(d.value for d in other.dataframe if "token" in d.value.columns).iloc[0]["token"]
    assert top.strip() == "Tokyo"
    assert {n: tensor_fingerprint(model.hf.get_parameter(n)) for n in names} == before

    # verify: the expected metrics
    at.switch_page("pages/4_Verify.py").run()
    at.number_input(key="v_tokens").set_value(512)
    at.checkbox(key="v_leakage").uncheck()
    next(b for b in at.button if b.label == "Run verification").click().run()
    _ok(at)
    assert not _errors(at)
    result = at.session_state["verify_result"]
    assert result["forget"]["hit_after"] < result["forget"]["hit_before"]
    assert result["retain"]["hit_after"] >= result["retain"]["hit_before"] - 0.25
    cards = {m.label: m.value for m in at.metric}
    assert cards["forget hit"] == f"{result['forget']['hit_after']:.3f}"
    assert "perplexity" in cards and "KL to base" in cards
    assert len(at.get("plotly_chart")) >= 5

    # patches: export, read back, apply (fingerprints match), revert (base intact); wrong base refused
    at.switch_page("pages/5_Patches.py").run()
    _ok(at)
    assert at.get("download_button")
    from workbench.dashboard_support import patch_bytes
    path = tmp_path / "japan.zip"
    path.write_bytes(patch_bytes(edit, model, result))
    at.text_input(key="patch_path").set_value(str(path))
    next(b for b in at.button if b.label == "Read patch").click().run()
    _ok(at)
    assert any("checksum  ok" in c.value for c in at.code)
    next(b for b in at.button if b.label.startswith("Apply")).click().run()
    assert any("every fingerprint matches" in s.value for s in at.success)
    assert at.session_state["edit_origin"] == "patch"
    next(b for b in at.button if b.label == "Revert").click().run()
    assert any("reverted" in s.value for s in at.success)
    assert "edit" not in at.session_state

    wrong = _wrong_base_patch(tmp_path, model)
    at.text_input(key="patch_path").set_value(str(wrong))
    next(b for b in at.button if b.label == "Read patch").click().run()
    next(b for b in at.button if b.label.startswith("Apply")).click().run()
    _ok(at)
    errs = _errors(at)
    assert errs and "apply refused" in errs[0] and "patch was made for base tiny-llama" in errs[0]
    assert "edit" not in at.session_state
    assert {n: tensor_fingerprint(model.hf.get_parameter(n)) for n in names} == before


def test_corrupt_patch_upload_is_refused(tmp_path):
    at = _app("pages/5_Patches.py").run()
    at.text_input(key="patch_path").set_value(str(tmp_path / "missing.zip"))
    next(b for b in at.button if b.label == "Read patch").click().run()
    _ok(at)
    assert _errors(at) and "patch" in _errors(at)[0]
    from workbench.dashboard_support import read_patch_upload
    from workbench.patches import PatchError
    with pytest.raises(PatchError, match="not a .zip patch"):
        read_patch_upload(b"not a zip", "x.zip")
