"""Locate: concept vectors, residual directions, causal tracing, the report (embedded model)."""
import json
import time

import pytest
import torch

from workbench.concepts import get_concept, load_builtin
from workbench.locate import Evidence, LocalizationReport, locate
from workbench.locate.common import concept_token_ids
from workbench.locate.concept_vectors import ablate_vector, locate_concept_vectors, scan
from workbench.locate.directions import residual_directions
from workbench.locate.tracing import Trace, layer_profile, trace


@pytest.fixture(scope="module")
def concepts():
    return load_builtin()


@pytest.mark.parametrize("name", ["Eiffel Tower", "Sherlock Holmes"])
def test_concept_vectors_carry_concept_tokens_and_matter(smol, concepts, name):
    concept = get_concept(concepts, name)
    res = locate_concept_vectors(smol, concept, validate_top=6, progress=False)
    assert res["n_scanned"] == smol.n_layers * smol.info.d_mlp     # exhaustive
    validated = [v for v in res["vectors"] if v.causal_effect is not None]
    top = validated[0]
    assert top.concept_in_top >= 1                                  # a concept token in its top-20
    assert top.forget_drop > top.retain_drop                        # ablation hurts forget more than retain
    assert len(top.top_tokens) == 20


def test_scan_matches_brute_force_projection(smol, concepts):
    concept = get_concept(concepts, "Eiffel Tower")
    tokens = concept_token_ids(smol, concept)
    scores, signs, _ = scan(smol, tokens, layers=[20], top_tokens_summed=1)
    norm = smol.module("model.norm")
    x = norm(smol.value_vectors(20)[:50].float()) * signs[0, :50, None]
    logits = x @ smol.hf.lm_head.weight.float().T
    z = (logits[:, tokens] - logits.mean(-1, keepdim=True)) / logits.std(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(scores[0, :50], z.max(-1).values, atol=1e-3, rtol=1e-3)


def test_vector_ablation_restores_bit_exactly(smol):
    before = smol.value_vectors(3).clone()
    for mode in ("zero", "noise", "mean"):
        restore = ablate_vector(smol, 3, 7, mode)
        assert not torch.equal(smol.value_vectors(3)[7], before[7])
        restore()
        assert torch.equal(smol.value_vectors(3), before)


def test_causal_trace_peaks_late_at_the_last_token(smol):
    t = trace(smol, "The Eiffel Tower is located in the city of", "Eiffel Tower", "Paris", kind="resid", samples=3)
    assert t.clean_prob > 0.3 and t.corrupt_prob < 0.5 * t.clean_prob
    e = t.effects
    n = smol.n_layers
    # restoring the whole residual stream at the last position late in the network recovers the answer,
    # early in the network it does not (the subject has not been read yet)
    assert e[-3:, -1].mean() > 0.5 * (t.clean_prob - t.corrupt_prob)
    assert e[: n // 3, -1].abs().max() < 0.2 * (t.clean_prob - t.corrupt_prob)
    layer, pos = t.peak()
    assert pos in (len(t.tokens) - 1, t.subject_span[1] - 1) and layer >= n // 2
    assert Trace.from_dict(json.loads(json.dumps(t.to_dict()))).probs == t.probs
    assert len(layer_profile([t])) == n


def test_residual_directions_separate_concept_from_control(smol, concepts):
    res = residual_directions(smol, get_concept(concepts, "Japan"))
    assert len(res.accuracy) == smol.n_layers
    assert max(res.accuracy) >= 0.8
    assert torch.allclose(res.directions.norm(dim=-1), torch.ones(smol.n_layers), atol=1e-4)


def test_report_round_trip_and_figures(smol, concepts):
    rep = locate(smol, get_concept(concepts, "Mount Everest"), kinds=("concept_vectors", "directions"),
                 validate_top=2, progress=False)
    rep.add_evidence([Evidence("sae#3", "sae_feature", 1.5, 12, None, {"note": "plug-in"})])
    d = json.loads(json.dumps(rep.to_dict()))
    back = LocalizationReport.from_dict(d)
    assert back.to_dict() == rep.to_dict()
    assert set(rep.profiles) == {"concept_vector", "residual_direction"}
    assert "concept_vector~residual_direction" in rep.agreement()
    assert rep.figures() and "Mount Everest" in rep.summary()
    with pytest.raises(ValueError, match="profiles"):
        LocalizationReport.from_dict({"model": "m", "concept": "c", "evidence": []})


def test_scan_benchmark_figure_is_reported(smol, concepts):
    """Not a timed test: records the scan time for the notes (printed with -s)."""
    tokens = concept_token_ids(smol, get_concept(concepts, "Japan"))
    scan(smol, tokens)
    t0 = time.perf_counter()
    scores, _, _ = scan(smol, tokens)
    print(f"scan of {scores.numel()} value vectors: {time.perf_counter() - t0:.2f} s")
    assert scores.shape == (smol.n_layers, smol.info.d_mlp)


def test_cli_locate_and_concepts_check(tmp_path):
    import subprocess
    import sys

    from workbench.concepts import write_concepts
    japan = get_concept(load_builtin(), "Japan")
    f = tmp_path / "c.jsonl"
    write_concepts(f, [japan])
    run = lambda *a: subprocess.run([sys.executable, "-m", "workbench.cli", *a], capture_output=True, text=True,
                                    timeout=600)
    r = run("locate", "smollm2-135m", "--concepts", str(f), "--concept", "Japan", "--json", str(tmp_path / "r.json"),
            "--kinds", "directions", "--html", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    rep = LocalizationReport.from_dict(json.loads((tmp_path / "r.json").read_text()))
    assert rep.concept == "Japan" and "residual_direction" in rep.profiles
    assert "plotly" in (tmp_path / "r.html").read_text()[:5000].lower()
    r = run("concepts", "check", "smollm2-135m", "--concepts", str(f))
    assert r.returncode == 0, r.stderr
    assert "Japan" in r.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text(f.read_text() + '{"name": "X", "subject": "X", "forget": [], "retain": []}\n')
    r = run("concepts", "check", "smollm2-135m", "--concepts", str(bad))
    assert r.returncode == 2 and "bad.jsonl:2" in r.stderr and "forget" in r.stderr


def test_causal_trace_single_token_subject_shows_both_bands(smol):
    """ROME's picture: the subject token matters in early layers, the last token in late layers."""
    t = trace(smol, "The capital of Japan is", "Japan", "Tokyo", kind="resid", samples=3)
    gap = t.clean_prob - t.corrupt_prob
    assert gap > 0.2
    e = t.effects / gap
    subj = t.subject_span[1] - 1
    n = smol.n_layers
    assert e[: n // 4, subj].max() > 0.8              # early band at the subject's last token
    assert e[-3:, -1].mean() > 0.8                    # late band at the last position
    assert e[-3:, subj].abs().max() < 0.3             # late layers at the subject no longer matter
    mlp = trace(smol, "The capital of Japan is", "Japan", "Tokyo", kind="mlp", samples=3, last_subject_only=True)
    assert int(torch.tensor(mlp.at_last_subject_token()).argmax()) < n // 2
