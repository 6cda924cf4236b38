"""Dashboard pages under streamlit.testing.v1.AppTest on the embedded model.

Every page renders without an exception; a locate -> edit -> verify flow in one session shows the
expected metrics (ROCR on a short Japan: forget hit drops, retain hit holds); another session never sees
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


class _Clock:
    """Prints the wall time of each step of a long flow (shown by pytest on failure, or with -s)."""
    def __init__(self):
        import time
        self.time, self.t0 = time.perf_counter, time.perf_counter()

    def __call__(self, step: str) -> None:
        t = self.time()
        print(f"{step:<28} {t - self.t0:7.1f} s", flush=True)
        self.t0 = t


def _shared_model():
    from workbench.app import ui
    return ui._load("smollm2-135m")


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
    clock = _Clock()
    model = _shared_model()
    clock("model")
    at = _app("app.py").run()
    at.switch_page("pages/2_Locate.py").run()
    _ok(at)
    assert at.selectbox(key="builtin_concept").value == "Japan"
    # a shorter Japan (4 forget probes, one per form, and 3 retain) through the concept-file path
    from workbench.concepts import get_concept, load_builtin
    full = get_concept(load_builtin(), "Japan").to_dict()
    short = {**full, "name": "Japan (short)", "forget": [full["forget"][i] for i in (0, 3, 5, 8)],
             "retain": [full["retain"][i] for i in (0, 1, 6)]}
    at.radio(key="concept_source").set_value("concept file (JSON Lines)").run()
    at.text_area(key="concept_text").set_value(json.dumps(short))
    next(b for b in at.button if b.label == "Read concepts").click().run()
    next(b for b in at.button if b.label == "Use this concept").click().run()
    _ok(at)
    assert at.session_state["concept"].name == "Japan (short)"
    # location: residual directions and concept vectors (fast); causal tracing has its own tests
    at.checkbox(key="kind_tracing").uncheck()
    at.number_input(key="validate_top").set_value(2)
    next(b for b in at.button if b.label == "Run location").click().run()
    _ok(at)
    assert not _errors(at)
    clock("locate")
    report = at.session_state["report"]
    assert {"residual_direction", "concept_vector"} <= set(report.profiles)
    tables = [d.value for d in at.dataframe]
    assert any("probe accuracy" in t.columns and len(t) == model.n_layers for t in tables)
    assert any("top tokens" in t.columns for t in tables)
    assert any("not available" in i.value or "no " in i.value for i in at.info)

    # edit: ROCR with its defaults (layer from depth: the covariance the edit tests also use)
    at.switch_page("pages/3_Edit.py").run()
    _ok(at)
    assert at.selectbox(key="method").value == "rocr"
    assert at.text_input(key="hp_rocr_depth").value == "0.15"              # defaults shown
    at.button[0].click().run()
    _ok(at)
    assert not _errors(at)
    clock("fit rocr")
    edit = at.session_state["edit"]
    assert edit.method == "rocr" and not edit.applied_now
    names = edit.names
    before = {n: tensor_fingerprint(model.hf.get_parameter(n)) for n in names}
    assert any(f"{edit.params_changed():,}" == m.value for m in at.metric)
    base, edited = [c.value for c in at.code][:2]
    assert "Tokyo" in base and "Tokyo" not in edited                       # side by side, scoped
    next(b for b in at.button if b.label.startswith("Score")).click().run()
    _ok(at)
    clock("probe table")
    probes = at.session_state["probe_rows"]
    forget = [r for r in probes if r["set"] == "forget"]
    assert sum(r["hit after"] for r in forget) < sum(r["hit before"] for r in forget)

    # another session, same process, same shared model: it does not see the edit
    other = _app("pages/1_Model.py").run()
    other.text_area(key="model_prompt").set_value("The capital of Japan is the city of").run()
    _ok(other)
    clock("other session")
    top = next(d.value for d in other.dataframe if "token" in d.value.columns).iloc[0]["token"]
    assert top.strip() == "Tokyo"
    assert {n: tensor_fingerprint(model.hf.get_parameter(n)) for n in names} == before

    # verify: the expected metrics
    at.switch_page("pages/4_Verify.py").run()
    at.number_input(key="v_tokens").set_value(512)
    at.checkbox(key="v_leakage").uncheck()
    at.checkbox(key="v_parametric").uncheck()
    next(b for b in at.button if b.label == "Run verification").click().run()
    _ok(at)
    assert not _errors(at)
    clock("verify")
    result = at.session_state["verify_result"]
    assert result["forget"]["hit_after"] < result["forget"]["hit_before"]
    assert result["retain"]["hit_after"] >= result["retain"]["hit_before"] - 0.25
    cards = {m.label: m.value for m in at.metric}
    assert cards["forget hit"] == f"{result['forget']['hit_after']:.3f}"
    assert "perplexity" in cards and "KL to base" in cards
    assert len(at.get("plotly_chart")) >= 5                                # bars, perplexity, per form, trade-off

    # patches: export, read back, apply (fingerprints match), revert (base intact); wrong base refused
    at.switch_page("pages/5_Patches.py").run()
    _ok(at)
    assert at.get("download_button")
    from workbench.app.verify import patch_bytes
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

    clock("patch apply/revert")
    wrong = _wrong_base_patch(tmp_path, model)
    at.text_input(key="patch_path").set_value(str(wrong))
    next(b for b in at.button if b.label == "Read patch").click().run()
    next(b for b in at.button if b.label.startswith("Apply")).click().run()
    _ok(at)
    errs = _errors(at)
    assert errs and "apply refused" in errs[0] and "patch was made for base tiny-llama" in errs[0]
    assert "edit" not in at.session_state
    assert {n: tensor_fingerprint(model.hf.get_parameter(n)) for n in names} == before
    clock("wrong-base patch")


def test_corrupt_patch_upload_is_refused(tmp_path):
    at = _app("pages/5_Patches.py").run()
    at.text_input(key="patch_path").set_value(str(tmp_path / "missing.zip"))
    next(b for b in at.button if b.label == "Read patch").click().run()
    _ok(at)
    assert _errors(at) and "patch" in _errors(at)[0]
    from workbench.app.verify import read_patch_upload
    from workbench.patches import PatchError
    with pytest.raises(PatchError, match="not a .zip patch"):
        read_patch_upload(b"not a zip", "x.zip")


# ------------------------------------------------------------------ support functions, no browser
def test_optional_views_render_from_evidence_and_say_why_when_missing(smol):
    import importlib.util

    from workbench.app import evidence
    from workbench.locate import Evidence, LocalizationReport
    status = evidence.optional_evidence_status(smol)
    assert status["routing"] and "dense" in status["routing"]            # smol has no experts
    for key, why in status.items():                 # only a missing optional dependency makes a kind unavailable
        dependency = evidence.OPTIONAL_EVIDENCE[key][0]
        missing = dependency is not None and importlib.util.find_spec(dependency) is None
        assert (why is not None and "not installed" in why) == missing
    assert status["weights"] is None and evidence.OPTIONAL_EVIDENCE["sae"][0] == "sae_lens"
    rep = LocalizationReport("m", "c")
    rep.add_evidence([Evidence(f"blocks.{L}.mlp.experts.{E}", "expert_routing", L + E / 10, L, None,
                               {"expert": E, "affinity_forget": 0.5 + E / 10, "affinity_retain": 0.1})
                      for L in (1, 3) for E in range(3)])
    fig = evidence.evidence_heatmap(rep, "expert_routing", "t", value="affinity_forget")
    assert fig.data[0].z[1][2] == pytest.approx(0.7) and list(fig.data[0].y) == [1, 3]
    assert evidence.evidence_heatmap(rep, "weight_attribution", "t") is None
    rep.add_evidence([Evidence("sae#7", "sae_feature", 0.9, 3, 0.2,
                               {"top_tokens": ["Tokyo"], "snippets": [{"tokens": ["<b>", " Tokyo"], "acts": [0.0, 2.0]}]})])
    (feat,) = evidence.sae_snippets(rep)
    assert feat["feature"] == "sae#7" and "&lt;b&gt;" in feat["snippets"][0] and "rgba(255,120,0,1.00)" in feat["snippets"][0]
    result = {"forget": {"hit_before": 1, "hit_after": 0, "prob_before": .5, "prob_after": .1},
              "retain": {"hit_before": 1, "hit_after": 1, "prob_before": .5, "prob_after": .5},
              "perplexity": {"before": None, "after": None}, "by_form": {},
              "routing_drift": {"forget": {"per_layer": {"1": {"changed_share": 0.25}, "3": {"changed_share": 0.5}}},
                                "retain": {"per_layer": {"1": {"changed_share": 0.0}, "3": {"changed_share": 0.1}}}}}
    from workbench.app.verify import verify_figures
    figs = verify_figures(result)
    assert list(figs["routing_drift"].data[0].y) == [0.25, 0.5] and "perplexity" not in figs


def test_hyper_parameter_form_and_concept_form_validation():
    from workbench.app import concepts as app_concepts
    from workbench.app import core
    from workbench.app import edits as app_edits
    from workbench.concepts import ConceptFileError
    fields = {f["name"]: f for f in app_edits.method_fields("rocr")}
    assert fields["depth"]["default"] == 0.15 and fields["layer"]["type"] == "int"
    assert app_edits.coerce_hyper("rocr", {"depth": "0.15", "layer": "None", "n_layers": "2"}) == {"n_layers": 2}
    with pytest.raises(ValueError, match="rocr.layer: 'x' is not an integer"):
        app_edits.coerce_hyper("rocr", {"layer": "x"})
    c = app_concepts.concept_from_form("Q", "Q", "", [{"prompt": "Q is in", "answers": "A | B", "form": None}, {"prompt": ""},
                              {"prompt": float("nan"), "answers": float("nan")}],
                             [{"prompt": "R is in", "answers": "C"}])
    assert c.forget[0].answers == ["A", "B"] and c.forget[0].form == "completion" and len(c.forget) == 1
    with pytest.raises(ConceptFileError, match="forget"):
        app_concepts.concept_from_form("Q", "Q", "", [], [{"prompt": "R", "answers": "C"}])
    with pytest.raises(ValueError, match="over the limit"):
        core.check_prompt("x" * (core.MAX_PROMPT_CHARS + 1))


def test_cli_dashboard_is_headless_on_loopback_and_rejects_bad_ports(capsys):
    from workbench.cli import build_parser, main
    from workbench.cli.dashboard import app_path, streamlit_command
    args = build_parser().parse_args(["dashboard"])
    assert (args.host, args.port) == ("127.0.0.1", 8501)
    cmd = streamlit_command(args.host, args.port)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.headless") + 1] == "true" and str(app_path()) in cmd
    assert main(["dashboard", "--port", "70000"]) == 2
    assert "--port 70000: not a TCP port" in capsys.readouterr().err


def _chart_titles(at: AppTest) -> list[str]:
    titles = []
    for el in at.get("plotly_chart"):
        layout = json.loads(el.proto.spec).get("layout", {})
        titles.append((layout.get("title") or {}).get("text", ""))
    return titles


def test_moe_model_routing_views_and_drift(tmp_path):
    """A built synthetic MoE: routing heat maps (concept vs control) on Locate, UOE on Edit, routing
    drift on Verify; concept vectors (dense-only) are not offered."""
    from workbench.cli import main
    from workbench.models.synthetic import build_synthetic
    built = build_synthetic("tiny", progress=False)                 # cached: test_moe builds the same one
    concepts = tmp_path / "world.jsonl"
    assert main(["world", "concepts", "--model", str(built), "--entities", "1", "--min-acc", "0",
                 "--out", str(concepts)]) == 0
    at = _app("app.py")
    at.session_state["model_name"] = str(built)
    at.run()
    at.switch_page("pages/2_Locate.py").run()
    at.radio(key="concept_source").set_value("concept file (JSON Lines)").run()
    at.text_area(key="concept_text").set_value(concepts.read_text())
    next(b for b in at.button if b.label == "Read concepts").click().run()
    next(b for b in at.button if b.label == "Use this concept").click().run()
    _ok(at)
    keys = {c.key for c in at.checkbox}
    assert "kind_concept_vectors" not in keys and at.checkbox(key="kind_routing").value
    at.checkbox(key="kind_tracing").uncheck()
    next(b for b in at.button if b.label == "Run location").click().run()
    _ok(at)
    assert not _errors(at)
    assert "expert_routing" in at.session_state["report"].profiles
    titles = _chart_titles(at)
    assert any("concept (forget probes)" in t for t in titles) and any("control (retain probes)" in t for t in titles)

    at.switch_page("pages/3_Edit.py").run()
    at.selectbox(key="method").set_value("uoe").run()
    at.text_input(key="hp_uoe_steps").set_value("2")
    at.button[0].click().run()
    _ok(at)
    assert not _errors(at) and at.session_state["edit"].method == "uoe"
    at.switch_page("pages/4_Verify.py").run()
    at.number_input(key="v_tokens").set_value(0)
    next(b for b in at.button if b.label == "Run verification").click().run()
    _ok(at)
    assert not _errors(at)
    assert "routing_drift" in at.session_state["verify_result"]
    assert any(t.startswith("Routing drift") for t in _chart_titles(at))


def test_patch_upload_round_trip_and_scoped_apply_on_a_tiny_model():
    """Download bytes -> upload -> checksum, fingerprints, scoped apply, bit-exact base afterwards."""
    from tests.tiny_models import tiny
    from workbench.app.core import edited
    from workbench.app.verify import base_intact, check_patch, patch_bytes, read_patch_upload
    from workbench.edits import Edit, TensorDelta
    from workbench.patches import PatchError
    m = tiny("llama")
    name = "model.layers.1.mlp.down_proj.weight"
    W = m.get_parameter(name)
    original = W.detach().clone()
    edit = Edit("ablate", "tiny-llama", [TensorDelta(name, "low_rank", tuple(W.shape), "float32",
                                                     A=torch.ones(W.shape[0], 1), B=torch.ones(1, W.shape[1]))],
                concept="X")
    data = patch_bytes(edit, m)
    patch, text = read_patch_upload(data, "x.zip")
    assert "checksum  ok" in text and set(patch.manifest["fingerprints"]) == {name}
    check_patch(patch, m)
    session_edit = patch.new_edit()
    with edited(m, session_edit):
        assert torch.equal(m.get_parameter(name), original + 1)
    assert torch.equal(m.get_parameter(name), original) and base_intact(m, patch)
    with torch.no_grad():
        m.get_parameter(name).add_(1e-3)                              # now the model is not the patch's base
    with pytest.raises(PatchError, match="fingerprint differs"):
        check_patch(patch, m)
    assert not base_intact(m, patch)
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0xFF
    with pytest.raises(PatchError):
        read_patch_upload(bytes(tampered), "x.zip")
