"""ROCR as published (AlphaEdit null-space update, MEMIT-style spread), batch and sequential
erasure, preserved keys, and stackable patches.

Fast tests run the full fit on a tiny random Llama that uses SmolLM2's tokenizer (so subject spans,
chat contexts and the corpus statistics are real); SmolLM2 checks use the embedded model.
"""
import copy
import subprocess
import sys

import pytest
import torch
import transformers as T

from workbench.concepts import get_concept, load_builtin
from workbench.concepts.schema import Concept, Probe
from workbench.edits import fit_edit
from workbench.edits.rocr import ROCRConfig
from workbench.edits.rocr_math import (alphaedit_update, alphaedit_update_dense, key_statistics,
                                       null_space_projector, rome_update, through_post_norm)
from workbench.models.hooked import HookedModel
from workbench.patches import PatchError, load_patch
from workbench.patches.stack import apply_stack, check_order, patch_id, revert_stack


def _concept(name, subject, redirect):
    return Concept(name=name, subject=subject, redirect_to=redirect,
                   forget=[Probe(f"Tell me where {subject} is", [" x"]), Probe(f"{subject} is famous for", [" y"])],
                   retain=[Probe("The sky is", [" blue"])])


CONCEPTS = [_concept("Eiffel Tower", "Eiffel Tower", "Statue of Liberty"), _concept("Japan", "Japan", "Italy"),
            _concept("Harry Potter", "Harry Potter", "Peter Pan")]
FAST = dict(layer=1, n_layers=2, cov_tokens=2048, cov_seq_len=64)


@pytest.fixture(scope="module")
def tiny(smol):
    torch.manual_seed(0)
    cfg = T.LlamaConfig(vocab_size=len(smol.tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=48, tie_word_embeddings=True)
    return HookedModel(T.LlamaForCausalLM(cfg).eval(), smol.tokenizer, "tiny-llama-smoltok")


def _state(model):
    return {k: v.clone() for k, v in model.hf.state_dict().items()}


def _same(model, state):
    return all(torch.equal(state[k], v) for k, v in model.hf.state_dict().items())


def _keys(edit, L):
    return edit.aux[f"rocr.keys.{L}"].double()


# ---------------------------------------------------------------------------------- config
@pytest.mark.parametrize("bad", [{"keys": "subjet"}, {"update": "memit"}, {"target": "unrelatd"},
                                 {"layer_from": "trce"}, {"cov_sources": "shakespeare+wiki"}, {"L2": 0},
                                 {"n_layers": 0}, {"preserve": "none"}])
def test_config_typos_fail_before_any_work(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"rocr: {name}="):
        fit_edit("rocr", None, CONCEPTS[0], **bad)         # no model: the config fails first


# ---------------------------------------------------------------------------------- math
def _spectrum(d=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    S = torch.logspace(0, -4, d, dtype=torch.float64)
    return U, S, g


def test_alphaedit_update_is_low_rank_null_space_and_matches_the_dense_solve():
    U, S, g = _spectrum()
    P = null_space_projector(U, S, 1e-2)
    kept = U[:, S >= 1e-2]                                            # general-text directions
    d, m, p = 40, 3, 2
    K, R, Kp = (torch.randn(d, m, generator=g, dtype=torch.float64), torch.randn(12, m, generator=g,
                dtype=torch.float64), torch.randn(d, p, generator=g, dtype=torch.float64))
    for preserve in ("exact", "penalty"):
        A, B = alphaedit_update(K, R, P, Kp, L2=1.0, preserve=preserve)
        dW = A.double() @ B.double()
        torch.testing.assert_close(dW, alphaedit_update_dense(K, R, P, Kp, 1.0, preserve), atol=1e-5, rtol=1e-5)
        assert A.shape == (12, m) and torch.linalg.matrix_rank(dW, rtol=1e-6) == m
        assert float((dW @ kept).abs().max()) < 1e-5 * float(dW.abs().max())     # ΔW K0 = 0
    A, B = alphaedit_update(K, R, P, Kp, preserve="exact")
    assert float((A.double() @ B.double() @ Kp).norm()) < 1e-5 * float(R.norm())   # ΔW K_p = 0
    A2, B2 = alphaedit_update(K, R, P, Kp, preserve="penalty")
    assert float((A2.double() @ B2.double() @ Kp).norm()) > 1e-3 * float(R.norm())  # penalty only shrinks it


def test_rome_update_maps_keys_exactly_and_keeps_preserved_keys():
    U, S, g = _spectrum(seed=1)
    C = U @ torch.diag(S + 1e-2) @ U.T
    W, K, V, Kp = (torch.randn(12, 40, generator=g), torch.randn(40, 3, generator=g), torch.randn(12, 3, generator=g),
                   torch.randn(40, 2, generator=g))
    A, B = rome_update(W, C, K, V, 0.0, Kp)
    dW = A.double() @ B.double()
    assert torch.linalg.matrix_rank(dW, rtol=1e-6) == 3
    torch.testing.assert_close((W.double() + dW) @ K.double(), V.double(), atol=1e-4, rtol=1e-4)
    assert float((dW @ Kp.double()).abs().max()) < 1e-4


# ---------------------------------------------------------------------------------- tiny model: batch, sequential
def test_post_norm_target_is_reached_through_gemmas_rmsnorm():
    """Gemma adds RMSNorm(down_proj(k)) to the residual: the down-projection change must be solved
    through the norm (scale-invariant), not taken to be the residual change itself."""
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
    g = torch.Generator().manual_seed(0)
    norm = Gemma3RMSNorm(32)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(32, generator=g))
    X = torch.randn(32, 3, generator=g) * 0.3                      # raw outputs W0 K: [d, m]
    O = norm(X.T).T
    goal = norm(torch.randn(3, 32, generator=g) * 5).T             # a reachable normed output
    R = goal - O
    D = through_post_norm(X, O, R, norm)
    torch.testing.assert_close(norm((X + D).T).T, goal, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(norm((X + R).T).T, goal, atol=1e-2)   # the linear reading misses it
    assert torch.allclose(through_post_norm(X, O, torch.zeros_like(R), norm), torch.zeros_like(X), atol=1e-6)


def test_batch_is_one_edit_with_one_delta_per_layer(tiny):
    before = _state(tiny)
    edit = fit_edit("rocr", tiny, CONCEPTS, **FAST)
    assert _same(tiny, before)                                        # the fit leaves the model as it was
    assert [d.name for d in edit.deltas] == [f"model.layers.{L}.mlp.down_proj.weight" for L in (1, 2)]
    n_keys = sum(len(t) for t in edit.provenance["key_tokens"])
    assert n_keys >= 3 and edit.concept == "Eiffel Tower+Japan+Harry Potter"
    for d in edit.deltas:
        W = tiny.hf.get_parameter(d.name).detach()
        assert d.A.shape[1] == n_keys and torch.linalg.matrix_rank(d.dense_delta(W).double(), rtol=1e-5) == n_keys
    assert all(edit.aux[f"rocr.keys.{L}"].shape == (48, n_keys) for L in (1, 2))
    rome = fit_edit("rocr", tiny, CONCEPTS, update="rome", **FAST)
    for d in rome.deltas:                                             # exact: (W + A B) K = W K + A
        L = int(d.name.split(".")[2])
        torch.testing.assert_close(d.B.double() @ _keys(rome, L), torch.eye(n_keys, dtype=torch.float64),
                                   atol=1e-4, rtol=1e-4)


def test_keys_are_read_in_the_published_chat_contexts(tiny):
    chat = fit_edit("rocr", tiny, CONCEPTS[:1], contexts="chat", use_forget_prompts=False, **FAST)
    assert chat.provenance["n_contexts"] == [6]
    both = fit_edit("rocr", tiny, CONCEPTS[:1], **FAST)
    # 6 chat + 12 plain + the fit view's seed prompts up to the subject (some equal a plain context)
    assert both.provenance["n_contexts"][0] > 6 + 12


@pytest.fixture(scope="module")
def stack_patches(tiny, tmp_path_factory):
    """P1 (two concepts, fitted on the base) and P2 (a third, fitted with P1 applied)."""
    tmp = tmp_path_factory.mktemp("stack")
    base = _state(tiny)
    e1 = fit_edit("rocr", tiny, CONCEPTS[:2], **FAST)
    p1 = e1.save(tmp / "p1.patch", model=tiny)
    applied = apply_stack([p1], tiny)
    try:
        e2 = fit_edit("rocr", tiny, CONCEPTS[2:], parent=str(p1), **FAST)
        p2 = e2.save(tmp / "p2.patch", model=tiny)
        other = fit_edit("rocr", tiny, CONCEPTS[2:], **FAST)      # fitted on top of P1 but not named as child
    finally:
        revert_stack(applied, tiny)
    assert _same(tiny, base)
    e_base = fit_edit("rocr", tiny, CONCEPTS[2:], **FAST)           # the same concept fitted on the base
    p3 = e_base.save(tmp / "p3.patch", model=tiny)
    return {"base": base, "e1": e1, "e2": e2, "p1": p1, "p2": p2, "p3": p3, "other": other}


def test_parent_as_an_applied_edit_object(tiny, stack_patches):
    """`parent=` an applied Edit (the in-memory form of a stack) keeps the same keys as the patch path."""
    applied = stack_patches["e1"].apply(tiny)
    try:
        e2 = fit_edit("rocr", tiny, CONCEPTS[2:], parent=applied, **FAST)
    finally:
        applied.revert(tiny)
    for a, b in zip(e2.deltas, stack_patches["e2"].deltas):
        assert a.name == b.name and torch.allclose(a.new_value(torch.zeros(a.shape)), b.new_value(torch.zeros(b.shape)),
                                                   atol=1e-6)
    with pytest.raises(ValueError, match="not applied"):
        fit_edit("rocr", tiny, CONCEPTS[2:], parent=stack_patches["e1"], **FAST)
    with pytest.raises(ValueError, match="parent must be"):
        fit_edit("rocr", tiny, CONCEPTS[2:], parent=42, **FAST)


def test_sequential_edit_keeps_the_first_batch_keys_mapped(tiny, stack_patches):
    e1, e2 = stack_patches["e1"], stack_patches["e2"]
    for d1, d2 in zip(e1.deltas, e2.deltas):
        L = int(d1.name.split(".")[2])
        Kp = _keys(e1, L)
        W1 = d1.new_value(stack_patches["base"][d1.name]).double()
        W2 = d2.new_value(W1.float()).double()
        # the second update does not move the first batch's keys (float32 factors: ~1e-7 relative)
        assert float((W2 @ Kp - W1 @ Kp).norm()) < 1e-5 * float((W1 @ Kp).norm())
        # and the unconstrained fit would have moved them
        dW = stack_patches["other"].deltas[[d.name for d in stack_patches["other"].deltas].index(d1.name)]
        assert float((dW.A.double() @ (dW.B.double() @ Kp)).norm()) > 1e-3 * float((W1 @ Kp).norm())
        assert torch.equal(e2.aux[f"rocr.keys.{L}"][:, :Kp.shape[1]], e1.aux[f"rocr.keys.{L}"])   # chained
    m = load_patch(stack_patches["p2"]).manifest
    assert m["parent"] == patch_id(load_patch(stack_patches["p1"]))
    assert set(m["parent_fingerprints"]) == set(e1.names) and m["provenance"]["parent"] == m["parent"]


def test_stack_apply_refuses_wrong_order_and_reverts_bit_exactly(tiny, stack_patches):
    base, p1, p2, p3 = (stack_patches[k] for k in ("base", "p1", "p2", "p3"))
    with pytest.raises(PatchError, match="wrong order") as exc:
        apply_stack([p2, p1], tiny)
    assert len(str(exc.value).splitlines()) == 1 and _same(tiny, base)
    with pytest.raises(PatchError, match="fitted on top of patch"):
        apply_stack([p2], tiny)                                       # parent state not on the model
    assert _same(tiny, base)
    with pytest.raises(PatchError, match="cannot follow"):
        apply_stack([p1, p3], tiny)                                   # p3 was fitted on the base
    assert _same(tiny, base)
    edits = apply_stack([p1, p2], tiny)
    e1, e2 = stack_patches["e1"], stack_patches["e2"]
    for d1, d2 in zip(e1.deltas, e2.deltas):
        assert torch.equal(tiny.hf.get_parameter(d1.name).detach(), d2.new_value(d1.new_value(base[d1.name])))
    revert_stack(edits, tiny)
    assert _same(tiny, base)
    check_order([load_patch(p1), load_patch(p2)])


def test_key_statistics_are_cached_per_model_content(tiny):
    first = key_statistics(tiny, [1], 2048, 64, progress=False)[1]
    again = key_statistics(tiny, [1], 2048, 64, progress=False)[1]
    assert torch.equal(first["C"], again["C"]) and first["C"].shape == (48, 48)
    torch.testing.assert_close(first["U"] @ torch.diag(first["S"]) @ first["U"].T, first["C"], atol=1e-5, rtol=1e-4)
    other = HookedModel(copy.deepcopy(tiny.hf), tiny.tokenizer, "tiny-llama-smoltok")   # same name, new weights
    with torch.no_grad():                  # (model_content_id fingerprints the embedding, first/last blocks)
        other.hf.model.embed_tokens.weight.mul_(2.0)
    assert not torch.equal(key_statistics(other, [1], 2048, 64, progress=False)[1]["C"], first["C"])


# ---------------------------------------------------------------------------------- SmolLM2
def _hits(model, concept):
    from workbench.verify.probes import score_probes, summarize
    return summarize(score_probes(model, concept.forget))["hit"], summarize(score_probes(model, concept.retain))["hit"]


SMOL = dict(cov_tokens=4096, use_forget_prompts=False)               # keys from generic contexts: probes held out


def test_smol_batch_then_sequential_erasure(smol, tmp_path):
    """Eiffel Tower + Japan in one edit, then Star Wars on top: every batch stays forgotten."""
    pool = load_builtin()
    eiffel, japan, sw = (get_concept(pool, n) for n in ("Eiffel Tower", "Japan", "Star Wars"))
    base = {c.name: _hits(smol, c) for c in (eiffel, japan, sw)}
    e1 = fit_edit("rocr", smol, [eiffel, japan], **SMOL)
    p1 = e1.save(tmp_path / "p1.patch", model=smol)
    (applied,) = apply_stack([p1], smol)
    try:
        after1 = {c.name: _hits(smol, c) for c in (eiffel, japan)}
        e2 = fit_edit("rocr", smol, [sw], parent=str(p1), **SMOL)
        with e2.applied(smol):
            after2 = {c.name: _hits(smol, c) for c in (eiffel, japan, sw)}
    finally:
        applied.revert(smol)
    for name in ("Eiffel Tower", "Japan"):
        assert after1[name][0] <= 0.2 < base[name][0] and after2[name][0] <= 0.2
        assert after2[name][1] >= 0.8 * base[name][1]
    assert after2["Star Wars"][0] < base["Star Wars"][0]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_batch_edit_and_stack_order(tmp_path):
    p1, p2 = tmp_path / "p1.patch", tmp_path / "p2.patch"
    r = _cli("edit", "rocr", "smollm2-135m", "--concepts", "builtin", "--concept", "Eiffel Tower", "--concept", "Japan",
             "--out", str(p1), "--set", "cov_tokens=4096")
    assert r.returncode == 0, r.stderr
    assert load_patch(p1).manifest["provenance"]["concepts"] == ["Eiffel Tower", "Japan"]
    r = _cli("edit", "rocr", "smollm2-135m", "--concepts", "builtin", "--concept", "Star Wars", "--parent", str(p1),
             "--out", str(p2), "--set", "cov_tokens=4096")
    assert r.returncode == 0, r.stderr
    r = _cli("patch", "apply", str(p2), str(p1), "--model", "smollm2-135m", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "wrong order" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("edit", "ga", "smollm2-135m", "--concepts", "builtin", "--concept", "Japan", "--concept", "Eiffel Tower",
             "--out", str(tmp_path / "y"))
    assert r.returncode == 2 and "one concept at a time" in r.stderr


def test_config_round_trip_keeps_parent_as_text():
    cfg = ROCRConfig(layer=4, n_layers=2, parent="p1.patch")
    assert ROCRConfig.from_dict(cfg.to_dict()) == cfg


def test_projector_cache_never_returns_another_models_projector():
    """The null-space projector is cached per statistics object; a freed object's id() is reused by
    the next one (CPython), so the cache must not hand a 6-dim model the 4-dim model's P."""
    from workbench.edits.rocr import _projector
    for i in range(40):
        d = 4 if i % 2 else 6
        C = torch.eye(d, dtype=torch.float64) * torch.linspace(1e-3, 1.0, d, dtype=torch.float64)
        S, U = torch.linalg.eigh(C)
        P = _projector({"U": U, "S": S}, 0, 2e-2)
        assert P.shape == (d, d)
        del C, S, U, P
