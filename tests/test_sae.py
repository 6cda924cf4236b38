"""SAEs: training on a tiny model, planted-feature search, sae-clamp exactness and patch round trip."""
from __future__ import annotations

import json

import pytest
import torch

from tests.tiny_models import CharTokenizer, tiny
from workbench.concepts.schema import Concept, Probe


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "wbhome"))
    return tmp_path


def tiny_model():
    from workbench.models.hooked import HookedModel
    return HookedModel(tiny("llama"), CharTokenizer(), "tiny-llama")


def random_topk(d_in: int, d_sae: int, k: int, seed: int = 0):
    """An inference TopK SAE with random weights (the error term makes any SAE exact)."""
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    torch.manual_seed(seed)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, metadata=SAEMetadata(hook_name="x")))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae) / d_in ** 0.5)
        sae.W_dec.copy_(sae.W_enc.T * 0.5)
        sae.b_enc.copy_(torch.randn(d_sae) * 0.1)
    return sae.requires_grad_(False).eval()


def saved_random_sae(folder, model, site: str, d_sae: int = 256, k: int = 16):
    from workbench.sae.store import load_sae, save_sae
    sae = random_topk(model.info.d_model, d_sae, k)
    save_sae(sae, folder, f"random/{site}", site, model.model_id)
    return load_sae(folder)


# ----------------------------------------------------------------------------- training
def test_sae_trains_and_reduces_reconstruction_error_on_tiny_model(home):
    from workbench.sae import store, train
    model = tiny_model()
    site = "blocks.1.hook_resid_post"
    cfg = train.SAETrainConfig(width=64, k=8, tokens=6144, seq_len=32, epochs=6, batch_size=256, lr=2e-3,
                               heldout_tokens=2048)
    out = home / "sae"
    rec = train.train_from_cache(model, site, 64, out, cfg, progress=False)[0]
    # the cache: first positions excluded, one row per remaining token
    acts_dir = store.activation_dir(store.model_cache_id(model), site, store.cache_key("shakespeare", "train", 6144, 32))
    meta = store.read_cache_meta(acts_dir)
    assert meta["first_position_excluded"] and meta["n_tokens"] == (6144 // 32) * 31
    held = store.load_activations(store.activation_dir(store.model_cache_id(model), site,
                                                       store.cache_key("shakespeare", "heldout", 2048, 32)))
    untrained = train._to_inference(train._training_sae(held.shape[1], cfg, site, model.model_id))
    before = train.evaluate(untrained, held)["fvu"]
    after = rec["metrics"]["fvu"]
    assert after < 0.5 * before and after < 0.5, (before, after)
    assert abs(rec["metrics"]["l0"] - 8) < 1e-6                     # TopK: exactly k active (ties aside)
    h = store.load_sae(out)                                         # round trip: same weights, same metrics
    assert h.site == site and h.d_sae == 64 and h.sha256 == json.loads((out / store.WB_META).read_text())["sha256"]
    assert train.evaluate(h.sae, held)["fvu"] == pytest.approx(after, rel=1e-5)
    # a second width reuses the cache (no forward pass): the model is not even called
    model.hf.forward = None
    import dataclasses
    rec2 = train.train_from_cache(model, site, [32], home / "sae2", dataclasses.replace(cfg, epochs=3), progress=False)
    assert rec2[0]["metrics"]["fvu"] < before


def test_sae_lens_runner_path_on_the_transformer_lens_view(home):
    """sae-lens's LanguageModelSAETrainingRunner with override_model = the TL view, in-memory dataset."""
    from workbench.sae import store, train
    model = tiny_model()
    site = "blocks.1.hook_resid_post"
    cfg = train.SAETrainConfig(width=64, k=8, tokens=4096, seq_len=32, epochs=4, batch_size=256, lr=2e-3,
                               heldout_tokens=1024)
    rec = train.train_with_runner(model, site, home / "runner_sae", cfg, progress=False)
    h = store.load_sae(home / "runner_sae")
    assert h.site == site and h.meta["training"]["runner"] == "sae-lens"
    assert tuple(h.sae.cfg.metadata.seqpos_slice) == (1, None)
    assert rec["metrics"]["fvu"] < 0.5 and rec["metrics"]["l0"] == pytest.approx(8)


def test_load_sae_errors_name_the_folder(tmp_path):
    from workbench.sae.store import SAEStoreError, load_sae
    with pytest.raises(SAEStoreError, match="no such SAE folder"):
        load_sae(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SAEStoreError, match="cfg.json is missing"):
        load_sae(tmp_path / "empty")


# ----------------------------------------------------------------------------- feature search
def test_feature_search_ranks_a_planted_feature_first():
    from workbench.locate.sae import rank_features
    from workbench.sae.store import SAEHandle, weights_sha256
    model = tiny_model()
    site = "blocks.1.hook_resid_post"
    concept = Concept("at", "@@", forget=[Probe("the @@ sign is", ["at"]), Probe("one writes @@ for", ["at"]),
                                          Probe("mail to me @@ home", ["x"])],
                      retain=[Probe("the plus sign is", ["plus"]), Probe("one writes & for", ["and"]),
                              Probe("mail to me at home", ["x"])])
    # the planted feature reads the direction that separates '@' positions from every other position
    _, cache = model.run_with_cache([p.prompt for p in concept.probes], sites=[site])
    ids, x = cache.tokens, cache[site]
    at = ids == CharTokenizer()("@")["input_ids"][0]
    real = cache.mask.bool() & ~at
    real[:, 0] = False
    u = x[at].mean(0) - x[real].mean(0)
    u = u / u.norm()
    proj_at, proj_other = (x[at] @ u).min(), (x[real] @ u).max()
    assert proj_at > proj_other                      # the construction separates them
    sae = random_topk(32, 48, k=48, seed=1)          # k = d_sae: a plain ReLU SAE
    planted = 17
    with torch.no_grad():
        sae.W_enc[:, planted] = u
        sae.b_enc[planted] = -float(proj_at + proj_other) / 2 + float(sae.b_dec @ u)
    handle = SAEHandle(sae, "planted", site, {"path": "<memory>"}, weights_sha256(sae))
    ranked = rank_features(model, concept, handle, control_tokens=0)
    assert ranked[0].index == planted and ranked[0].name == "planted#17"
    assert ranked[0].rate_concept == 1.0 and ranked[0].rate_control == 0.0
    assert ranked[0].score > 1.0 and all(f.score < ranked[0].score for f in ranked[1:])
    # through locate(): SAE evidence in the LocalizationReport, described and round-tripped
    from workbench.locate import LocalizationReport, locate
    from workbench.locate.sae import feature_figure
    report = locate(model, concept, kinds=(), sae=handle, sae_top=3)
    ev = [e for e in report.evidence if e.kind == "sae_feature"]
    assert len(ev) == 3 and max(ev, key=lambda e: e.score).site == "planted#17"
    top = max(ev, key=lambda e: e.score)
    assert top.layer == 1 and top.causal_effect is not None and len(top.details["top_tokens"]) == 10
    assert top.details["histogram"]["n_tokens"] > 0 and report.meta["saes"][0]["name"] == "planted"
    assert LocalizationReport.from_dict(json.loads(json.dumps(report.to_dict()))).evidence[0].site == ev[0].site


# ----------------------------------------------------------------------------- sae-clamp
@pytest.fixture(scope="module")
def smol_sae(tmp_path_factory, smol):
    return saved_random_sae(tmp_path_factory.mktemp("sae") / "rand", smol, "blocks.6.hook_resid_post")


PROMPTS = ["The Eiffel Tower is in the city of", "Paris is the capital of France, and Berlin is"]


def test_sae_clamp_without_features_leaves_logits_identical(smol, smol_sae):
    from workbench.edits.sae_clamp import sae_clamp_edit
    base = smol.logits(PROMPTS)
    for feats, kw in (([], {"mode": "scale", "scale": 0.0}), ([0, 5, 9], {"mode": "scale", "scale": 1.0})):
        edit = sae_clamp_edit(smol, smol_sae, feats, norm_factor=None, **kw)
        with edit.applied(smol):
            assert torch.equal(smol.logits(PROMPTS), base)      # error term added back exactly
    # the hook does act when features change, and leaves nothing behind (also after an exception)
    f = smol_sae.encode(smol.run_with_cache(PROMPTS, sites=[smol_sae.site])[1][smol_sae.site])
    firing = f[0, 1:].amax(0).topk(4).indices.tolist()
    edit = sae_clamp_edit(smol, smol_sae, firing, mode="clamp", value=-5.0, norm_factor=None)
    with edit.applied(smol):
        assert not torch.equal(smol.logits(PROMPTS), base)
    with pytest.raises(RuntimeError, match="boom"):
        with edit.applied(smol):
            raise RuntimeError("boom")
    assert torch.equal(smol.logits(PROMPTS), base) and not edit.applied_now


def test_sae_clamp_gate_and_norm_limit_leave_positions_alone(smol, smol_sae):
    from workbench.edits.sae_clamp import SAEClampHook
    _, cache = smol.run_with_cache(PROMPTS[:1], sites=[smol_sae.site])
    x = cache[smol_sae.site]
    firing = smol_sae.encode(x)[0, 1:].amax(0).topk(3).indices.tolist()
    hook = SAEClampHook(smol_sae, firing, mode="scale", scale=0.0)
    assert not torch.equal(hook.edited(x), x)
    assert torch.equal(SAEClampHook(smol_sae, firing, "scale", 0.0, gate=1e9).edited(x), x)
    norms = x[0].norm(dim=-1)
    assert norms[0] > 5 * norms[1:].median()                 # the first position is an attention sink
    limit = float(norms[0]) * 0.99
    limited = SAEClampHook(smol_sae, firing, "scale", 0.0, norm_limit=limit).edited(x)[0]
    out = norms > limit
    assert out[0] and torch.equal(limited[out], x[0][out])
    assert torch.allclose(limited[~out], hook.edited(x)[0][~out], atol=1e-4)


def test_sae_clamp_patch_round_trip(smol, smol_sae, tmp_path):
    from workbench.edits import fit_edit
    from workbench.patches import PatchError, apply_patch, export_hf, inspect_patch, load_patch, revert_patch
    from workbench.concepts import get_concept, load_builtin
    concept = get_concept(load_builtin(), "Eiffel Tower")
    edit = fit_edit("sae-clamp", smol, concept, sae=smol_sae.source["path"], features=[3, 7, 11], mode="scale",
                    scale=-2.0)
    assert edit.params_changed() == 0 and edit.deltas == [] and edit.hooks[0].norm_limit > 0
    base = smol.logits(PROMPTS)
    with edit.applied(smol):
        edited = smol.logits(PROMPTS)
    path = edit.save(tmp_path / "clamp.patch")
    m = json.loads((path / "manifest.json").read_text())
    hook = m["hooks"][0]
    assert hook["kind"] == "sae_clamp" and hook["sae"]["sha256"] == smol_sae.sha256
    assert hook["features"] == [f"{smol_sae.name}#{i}" for i in (3, 7, 11)] and hook["scale"] == -2.0
    assert m["tensors"] == [] and all(n.startswith("model.layers.6.") for n in m["fingerprints"])
    assert "hook edit sae_clamp at blocks.6.hook_resid_post" in inspect_patch(path)
    applied = apply_patch(path, smol)
    try:
        assert torch.equal(smol.logits(PROMPTS), edited)
    finally:
        revert_patch(applied, smol)
    assert torch.equal(smol.logits(PROMPTS), base)
    with pytest.raises(PatchError, match="hook edits"):
        export_hf(load_patch(path), smol, tmp_path / "hf")
    # another base model is refused; so is a different SAE behind the recorded path
    with pytest.raises(PatchError, match="fingerprint|no tensor|shape"):
        apply_patch(path, tiny_model())
    from workbench.sae.store import save_sae
    save_sae(random_topk(smol.info.d_model, 256, 16, seed=5), smol_sae.source["path"], smol_sae.name,
             smol_sae.site, smol.model_id)
    try:
        with pytest.raises(ValueError, match="content hash"):
            apply_patch(path, smol)
        assert torch.equal(smol.logits(PROMPTS), base)           # nothing half-applied
    finally:
        save_sae(smol_sae.sae, smol_sae.source["path"], smol_sae.name, smol_sae.site, smol.model_id)


@pytest.mark.slow      # ~2 min on a busy 2-core CPU; the hook-edit mechanics it relies on are covered above
def test_sae_clamp_runs_through_the_verification_battery(smol, smol_sae):
    from workbench.concepts import get_concept, load_builtin
    from workbench.edits.sae_clamp import sae_clamp_edit
    from workbench.verify.battery import validate_result, verify_edit
    full = get_concept(load_builtin(), "Eiffel Tower")
    concept = Concept(full.name, full.subject, forget=full.forget[:2], retain=full.retain[:1])
    edit = sae_clamp_edit(smol, smol_sae, list(range(0, 256, 2)), concept.name, mode="scale", scale=-3.0)
    r = verify_edit(smol, concept, edit, max_new_tokens=4, utility_tokens=128, relearn=False, parametric=False,
                    leakage=False, fluency=False)
    validate_result(r)
    assert r["method"] == "sae-clamp" and r["params_changed"] == 0
    assert r["perplexity"]["after"] != r["perplexity"]["before"] and r["kl"] > 0
    assert sum(v["n"] for v in r["by_form"].values()) == len(concept.forget)   # small forms pooled, none lost
