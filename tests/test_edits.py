"""Edits: ROCR is exactly rank one and maps k* to v*; ablation; scoped apply/revert; CLI edit + patch."""
import subprocess
import sys

import pytest
import torch

from workbench.concepts import get_concept, load_builtin
from workbench.edits import fit_edit, get_method, methods
from workbench.edits.rocr import ROCRConfig, _mean_at_last_token, _prefixes
from workbench.patches import apply_patch, load_patch


@pytest.fixture(scope="module")
def eiffel():
    return get_concept(load_builtin(), "Eiffel Tower")


def _snapshot(model):
    return {k: v.clone() for k, v in model.hf.state_dict().items()}


def test_registry_and_config_round_trip():
    assert {"ablate", "rocr", "ga", "graddiff", "npo", "simnpo"} <= set(methods())
    cfg = ROCRConfig(layer=4, n_layers=2)
    assert ROCRConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        ROCRConfig.from_dict({"layr": 3})
    with pytest.raises(ValueError, match="available"):
        get_method("nope")


def test_methods_declare_the_model_kind_they_apply_to():
    """The dashboard's Edit page lists `methods(model)`: no uce/rece for a language model, and fit_edit
    refuses a diffusion method on one before any work."""
    from tests.test_moe import _hooked
    lm, diffusion = set(methods("lm")), set(methods("diffusion"))
    assert {"uce", "rece"} <= diffusion and not ({"uce", "rece"} & lm) and {"rocr", "ga", "wagle"} <= lm
    assert lm | diffusion == set(methods()) and not lm & diffusion
    tiny = _hooked("llama")
    assert set(methods(tiny)) == lm
    with pytest.raises(ValueError, match="applies to diffusion models"):
        fit_edit("uce", tiny, get_concept(load_builtin(), "Japan"))


def test_rocr_is_rank_one_and_maps_key_to_value(smol, eiffel):
    # the earlier form (ROME update, per-layer residual target, plain contexts, one layer); the
    # published default (alphaedit, 3 layers) is tested in tests/test_rocr.py
    edit = fit_edit("rocr", smol, eiffel, layer=5, keys="last", cov_tokens=4096, update="rome", target="residual",
                    n_layers=1, contexts="plain")
    (delta,) = edit.deltas
    assert delta.kind == "low_rank" and delta.A.shape[1] == 1
    W = smol.param("blocks.5.mlp.W_out").detach()
    dense = delta.dense_delta(W)
    assert torch.linalg.matrix_rank(dense.double(), rtol=1e-6) == 1
    from workbench.concepts.fit import fit_view
    texts = _prefixes(smol, fit_view(smol, eiffel), True)          # the method fits on the fit view
    reds = [t.replace(eiffel.subject, eiffel.redirect_to) for t in texts]
    k = _mean_at_last_token(smol, texts, "blocks.5.mlp.hook_post")
    post = "blocks.5.hook_resid_post"
    v = W.float() @ k + _mean_at_last_token(smol, reds, post) - _mean_at_last_token(smol, texts, post)
    new_W = delta.new_value(W).float()
    torch.testing.assert_close(new_W @ k, v, atol=2e-3 * float(v.norm()), rtol=1e-3)
    assert edit.provenance["layer_choice"]["source"] == "given" and edit.params_changed() == W.numel()


def test_apply_revert_is_bit_exact_also_on_exception(smol, eiffel):
    before = _snapshot(smol)
    edit = fit_edit("rocr", smol, eiffel, layer=3, cov_tokens=4096)
    with pytest.raises(RuntimeError, match="inside"):
        with edit.applied(smol):
            assert not torch.equal(smol.param("blocks.3.mlp.W_out"), before["model.layers.3.mlp.down_proj.weight"])
            raise RuntimeError("inside")
    after = _snapshot(smol)
    assert all(torch.equal(before[k], after[k]) for k in before)
    edit.apply(smol)
    with pytest.raises(RuntimeError, match="already applied"):
        edit.apply(smol)
    edit.revert(smol)
    assert all(torch.equal(before[k], v) for k, v in smol.hf.state_dict().items())


def test_ablate_vectors_and_direction(smol, eiffel):
    before = _snapshot(smol)
    edit = fit_edit("ablate", smol, eiffel, n_vectors=3, validate_top=6)
    assert all(d.kind == "replace_rows" and d.dim == 1 for d in edit.deltas)
    with edit.applied(smol):
        for d in edit.deltas:
            W = smol.hf.get_parameter(d.name)
            assert torch.count_nonzero(W[:, d.indices]) == 0
    assert all(torch.equal(before[k], v) for k, v in smol.hf.state_dict().items())


def test_ablate_direction_orthogonalises_every_writer_and_the_embedding(smol, eiffel):
    """Reference weight orthogonalisation: every residual writer AND the (tied) embedding lose r̂,
    each change rank one; the layer is the causal argmax (forget drop − retain drop) on fit probes."""
    before = _snapshot(smol)
    direction = fit_edit("ablate", smol, eiffel, target="direction", layer_stride=8, layer_select="causal",
                         include_embedding=True)            # the reference's choices (not the default here)
    prov = direction.provenance
    search = prov["layer_search"]
    assert [c["layer"] for c in search["candidates"]] == [0, 8, 16]          # < 0.8 · 30 layers, stride 8
    ok = [c for c in search["candidates"] if c["retain_drop"] <= search["max_retain_drop"]]
    assert search["within_retain_budget"] == bool(ok)
    assert prov["layer"] == max(ok or search["candidates"], key=lambda c: c["score"])["layer"]
    emb = smol.weight_name("embed.W_E")
    assert prov["include_embedding"] and emb in direction.names and prov["tied_embeddings_note"]
    assert len(direction.names) == 2 * smol.n_layers + 1
    r = -next(d for d in direction.deltas if d.name != emb).A[:, 0].double()
    assert abs(float(r.norm()) - 1) < 1e-6
    for d in direction.deltas:
        assert d.kind == "low_rank" and d.A.shape[1] == 1
        assert torch.linalg.matrix_rank(d.A.double() @ d.B.double()).item() == 1
    L = prov["layer"]
    with direction.applied(smol):
        for d in direction.deltas:
            W = smol.hf.get_parameter(d.name).detach().double()
            along = W @ r if d.name == emb else r @ W                        # E' r̂ = 0; r̂ᵀ W' = 0
            assert float(along.abs().max()) < 5e-6 * float(W.abs().max()), d.name   # fp32 rounding only
        _, cache = smol.run_with_cache("The Eiffel Tower", [f"blocks.{L}.hook_resid_post", "blocks.20.hook_resid_post"])
    for site in (f"blocks.{L}.hook_resid_post", "blocks.20.hook_resid_post"):
        x = cache[site].double()
        assert float((x @ r).abs().max()) < 1e-4 * float(x.norm(dim=-1).max())   # no r̂ anywhere in the stream
    assert all(torch.equal(before[k], v) for k, v in smol.hf.state_dict().items())
    probe = fit_edit("ablate", smol, eiffel, target="direction")          # defaults: probe layer, no embedding
    assert probe.provenance["layer_search"] is None and len(probe.names) == 2 * smol.n_layers
    with pytest.raises(ValueError, match="layer_select"):
        fit_edit("ablate", smol, eiffel, target="direction", layer_select="nope")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=600)


def test_cli_edit_patch_inspect_apply(tmp_path, smol):
    out = tmp_path / "eiffel.patch"
    r = _cli("edit", "rocr", "smollm2-135m", "--concepts", "builtin", "--concept", "Eiffel Tower",
             "--out", str(out), "--set", "layer=4", "--set", "cov_tokens=4096", "--set", "n_layers=1")
    assert r.returncode == 0, r.stderr
    # one layer, rank 2: factors 2 x (576 + 1536) fp32 plus the preserved keys (2 x 1536) for a child fit
    assert (out / "manifest.json").exists() and (out / "tensors.safetensors").stat().st_size < 40_000
    r = _cli("patch", "inspect", str(out))
    assert r.returncode == 0 and "rocr" in r.stdout
    patch = load_patch(out)
    edit = apply_patch(patch, smol)
    try:
        assert patch.manifest["hyper"]["layer"] == 4
    finally:
        edit.revert(smol)
    r = _cli("edit", "rocr", "smollm2-135m", "--concepts", "builtin", "--concept", "Nope", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "Nope" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("edit", "bogus", "smollm2-135m", "--concepts", "builtin", "--concept", "Japan", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "unknown edit method" in r.stderr


def test_rocr_redirects_a_single_token_subject_across_forms(smol):
    """Japan -> Italy at layer 4: forget answers collapse in every form, retain answers hold."""
    from workbench.verify.probes import score_probes, summarize
    japan = get_concept(load_builtin(), "Japan")
    before_f, before_r = (summarize(score_probes(smol, getattr(japan, k))) for k in ("forget", "retain"))
    edit = fit_edit("rocr", smol, japan, layer=4)
    with edit.applied(smol):
        after_f, after_r = (summarize(score_probes(smol, getattr(japan, k))) for k in ("forget", "retain"))
        redirected = smol.generate("The capital of Japan is", 3)[0]
    assert after_f["prob"] < 0.1 * before_f["prob"]
    assert all(v["hit"] <= 0.2 for v in after_f["by_form"].values()) and len(after_f["by_form"]) >= 3
    assert after_r["hit"] >= 0.9 * before_r["hit"] and after_r["prob"] >= 0.8 * before_r["prob"]
    assert "Rome" in redirected                                    # redirected, not just broken


def test_multi_key_update_maps_every_key_with_rank_m():
    """ΔW K = V − W K exactly, rank(ΔW) = m, and inputs orthogonal to C⁻¹K are mapped as before."""
    from workbench.edits.rocr import multi_key_update
    g = torch.Generator().manual_seed(0)
    d_in, d_out, m = 24, 10, 3
    X = torch.randn(200, d_in, generator=g)
    C = X.T @ X / 200
    W, K, V = torch.randn(d_out, d_in, generator=g), torch.randn(d_in, m, generator=g), torch.randn(d_out, m, generator=g)
    A, B = multi_key_update(W, C, K, V, lambda_reg=0.0)
    assert A.shape == (d_out, m) and B.shape == (m, d_in)
    dW = A.double() @ B.double()
    assert torch.linalg.matrix_rank(dW, rtol=1e-8) == m
    torch.testing.assert_close((W.double() + dW) @ K.double(), V.double(), atol=1e-4, rtol=1e-4)
    z = torch.randn(d_in, generator=g).double()
    # the update only reads inputs through Kᵀ C⁻¹: an input u with Kᵀ C⁻¹ u = 0 is mapped as before
    cinv_k = torch.linalg.solve(C.double(), K.double())
    Q, _ = torch.linalg.qr(cinv_k)
    u = z - Q @ (Q.T @ z)
    assert float((dW @ u).abs().max()) < 1e-4 * float(u.norm())


def test_rocr_subject_keys_have_rank_of_the_later_subject_tokens(smol, eiffel):
    edit = fit_edit("rocr", smol, eiffel, layer=4, keys="subject", cov_tokens=4096, n_layers=1)
    (delta,) = edit.deltas
    n_tokens = len(smol.tokenizer(" " + eiffel.subject, add_special_tokens=False)["input_ids"])
    assert delta.A.shape[1] == n_tokens - 1 == edit.provenance["updates"][0]["rank"]
    W = smol.param("blocks.4.mlp.W_out").detach()
    assert torch.linalg.matrix_rank(delta.dense_delta(W).double(), rtol=1e-6) == n_tokens - 1


def test_parametric_trace_jaccard_and_l2_hand_case(smol, eiffel):
    """ConceptVectors' metrics: no edit -> Jaccard 1, L2 0; replacing one located vector v by −v
    -> its top-200 projection becomes the bottom-200 (Jaccard 0) and L2 = 2‖v‖ exactly."""
    from workbench.edits.base import Edit, TensorDelta
    from workbench.verify.robustness import jaccard, parametric_signature, parametric_trace
    assert jaccard([1, 2, 3], [2, 3, 4]) == 0.5 and jaccard([], []) == 1.0
    sig = parametric_signature(smol, eiffel, top_n=4)
    assert sig["top_ids"].shape == (4, 200)
    same = parametric_trace(smol, eiffel, sig)
    assert same["jaccard_mean"] == 1.0 and same["l2_max"] == 0.0
    L, i = sig["sites"][0]
    W = smol.param(f"blocks.{L}.mlp.W_out")
    v = sig["vectors"][0]
    flip = Edit("test", smol.model_id, [TensorDelta(smol.weight_name(f"blocks.{L}.mlp.W_out"), "replace_rows",
                                                     tuple(W.shape), "float32", indices=torch.tensor([i]),
                                                     values=(-v)[:, None].to(W.dtype), dim=1)])
    with flip.applied(smol):
        tr = parametric_trace(smol, eiffel, sig)
    row = tr["per_site"][0]
    assert row["jaccard"] == 0.0 and abs(row["l2"] - 2 * float(v.norm())) < 1e-5
    assert all(r["jaccard"] == 1.0 and r["l2"] == 0.0 for r in tr["per_site"][1:] if r["site"] != row["site"])
    assert tr["jaccard_min"] == 0.0


def test_ablate_needle_noises_then_trains_only_the_vectors(smol, eiffel):
    """Needle (ConceptVectors forget.py): noise std 0.1 on each located vector, then only those
    vectors are trained on the fit forget texts (NPO); every other weight is untouched."""
    before = _snapshot(smol)
    noised = fit_edit("ablate", smol, eiffel, mode="needle", n_vectors=2, validate_top=4, needle_steps=1,
                      needle_lr=1e-12)                                            # ~ the noised start
    edit = fit_edit("ablate", smol, eiffel, mode="needle", n_vectors=2, validate_top=4, needle_steps=4)
    needle = edit.provenance["needle"]
    assert needle["loss"] == "npo" and needle["noise_std"] == 0.1 and len(needle["losses"]) == 4
    assert needle["losses"][-1] < needle["losses"][0]                            # NPO pushes forget NLL up
    for a, b in zip(edit.deltas, noised.deltas):
        assert a.kind == "replace_rows" and torch.equal(a.indices, b.indices)
        W = before[a.name]
        old = W.index_select(a.dim, a.indices).float()
        noise = (b.values.float() - old)
        assert 0.05 < float(noise.std()) < 0.2                                    # the paper's 0.1 noise
        assert not torch.allclose(a.values.float(), b.values.float(), atol=1e-6)  # then trained
    assert all(torch.equal(before[k], v) for k, v in smol.hf.state_dict().items())
    with edit.applied(smol):
        changed = {k for k, v in smol.hf.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == set(edit.names)


def test_lm_sae_clamp_itd_form_replaces_edited_positions_by_reconstruction():
    """error_term=False (ItD): edited positions -> decode(f'); untouched positions stay x exactly.
    error_term=True (default): x + decode(f') − decode(f)."""
    from types import SimpleNamespace
    from workbench.edits.sae_clamp import SAEClampHook
    g = torch.Generator().manual_seed(0)
    W_enc, W_dec, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g), torch.randn(4, generator=g)

    class Lin:
        def __init__(self):
            self.W_enc = W_enc
        def encode(self, x):
            return torch.relu(x @ W_enc.T)
        def decode(self, f):
            return f @ W_dec + b
    sae = Lin()
    handle = SimpleNamespace(sae=sae, site="blocks.0.hook_resid_post", source={"path": "x"}, sha256="0" * 64,
                             name="toy")
    x = torch.randn(3, 4, generator=g)
    f = sae.encode(x)
    feat = int(f.sum(0).argmax())
    fire = f[:, feat] > 0
    assert bool(fire.any())
    itd = SAEClampHook(handle, [feat], "scale", scale=-8.0, gate=0.0, error_term=False)
    keep = SAEClampHook(handle, [feat], "scale", scale=-8.0, gate=0.0)
    f2 = f.clone()
    f2[fire, feat] = f[fire, feat] * -8.0
    out = itd.edited(x)
    assert torch.allclose(out[fire], sae.decode(f2)[fire], atol=1e-6)
    assert torch.equal(out[~fire], x[~fire])
    torch.testing.assert_close(keep.edited(x), x + sae.decode(f2) - sae.decode(f), rtol=0, atol=1e-6)
    meta, tensors = itd.to_manifest()
    meta["site"] = itd.site
    assert SAEClampHook.from_manifest(meta, tensors, "t").error_term is False
    del meta["error_term"]
    assert SAEClampHook.from_manifest(meta, tensors, "t").error_term is True      # older patches


def test_sae_corpus_mix_interleaves_equal_shares(smol):
    from workbench.data.corpus import token_chunks
    from workbench.sae.train import CORPUS_MIX
    assert CORPUS_MIX == "wordnet+kjv+shakespeare"
    a = token_chunks(smol.tokenizer, n_tokens=512, seq_len=64, source="wordnet")
    b = token_chunks(smol.tokenizer, n_tokens=512, seq_len=64, source="shakespeare")
    mix = token_chunks(smol.tokenizer, n_tokens=1024, seq_len=64, source="wordnet+shakespeare")
    assert mix.shape == (16, 64) and torch.equal(mix[0::2], a) and torch.equal(mix[1::2], b)
    with pytest.raises(ValueError, match="distinct"):
        token_chunks(smol.tokenizer, n_tokens=64, seq_len=32, source="wordnet+wordnet")
