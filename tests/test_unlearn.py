"""Fine-tuning unlearning baselines (workbench.edits.unlearn): losses, parameter selection, and
that each method lowers the forget probability and leaves the model bit-identical."""
import math

import pytest
import torch

from workbench.concepts import get_concept, load_builtin, render_prompt
from workbench.edits import fit_edit, get_method
from workbench.edits.unlearn import (GradDiffConfig, NPOConfig, SimNPOConfig, probe_batch, select_params,
                                     sequence_nll, unlearning_loss)
from workbench.verify.probes import answer_logprobs

METHODS = ("ga", "graddiff", "npo", "simnpo")


@pytest.fixture(scope="module")
def eiffel():
    return get_concept(load_builtin(), "Eiffel Tower")


def _watch(model):
    names = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
             "model.layers.15.mlp.down_proj.weight", "model.layers.29.mlp.up_proj.weight", "model.norm.weight"]
    return {n: model.hf.get_parameter(n).detach().clone() for n in names}


def _token_nll(model, concept) -> float:
    """Mean per-token NLL of the forget answers. The fit texts are 32-token continuations, whose
    sequence probabilities are ~1e-6 and dominated by one text, so they are compared in log space."""
    prompts = [render_prompt(model, p) for p in concept.forget]
    scored = answer_logprobs(model, prompts, [p.answer for p in concept.forget])
    return -sum(lp for lp, _, _ in scored) / sum(k for _, k, _ in scored)


def test_registered_with_configs():
    for m in METHODS:
        meth = get_method(m)
        cfg = meth.config_cls.from_dict({"steps": 3})
        assert meth.config_cls.from_dict(cfg.to_dict()) == cfg
    assert SimNPOConfig().beta == 4.5 and SimNPOConfig().gamma == 0.125 and SimNPOConfig().delta == 0.0
    assert NPOConfig().beta == 0.1 and GradDiffConfig().alpha == 1.0
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        get_method("ga").config_cls.from_dict({"learning_rate": 1.0})


def test_loss_formulas():
    nll = torch.tensor([2.0, 4.0])
    n = torch.tensor([1, 2])
    retain = torch.tensor([1.0, 3.0])
    assert unlearning_loss("ga", nll, n, GradDiffConfig(alpha=0.0)).item() == pytest.approx(-3.0)
    assert unlearning_loss("graddiff", nll, n, GradDiffConfig(alpha=0.5), nll_r=retain).item() == pytest.approx(-2.0)
    # NPO at the reference point: (2/β) log 2; rises as NLL_θ falls below the reference
    cfg = NPOConfig(alpha=0.0)
    at_ref = unlearning_loss("npo", nll, n, cfg, nll_ref=nll).item()
    assert at_ref == pytest.approx(2 / 0.1 * math.log(2), rel=1e-6)
    assert unlearning_loss("npo", nll + 1, n, cfg, nll_ref=nll).item() < at_ref
    # SimNPO: (2/β) mean -log σ(β (NLL/|y| - δ)); per-token NLL is 2 for both rows here
    s = SimNPOConfig(alpha=0.0, gamma=1.0)
    expect = 2 / 4.5 * -math.log(1 / (1 + math.exp(-4.5 * 2.0)))
    assert unlearning_loss("simnpo", nll, n, s).item() == pytest.approx(expect, rel=1e-5)
    assert unlearning_loss("simnpo", nll * 2, n, s).item() < expect     # forgetting lowers the loss


def test_select_params_dedups_tied_embeddings(smol):
    everything = select_params(smol, "all")
    ids = [id(p) for p in everything.values()]
    assert len(ids) == len(set(ids))
    assert sum(p.numel() for p in everything.values()) == sum(p.numel() for p in smol.hf.parameters())
    mlp = select_params(smol, "mlp")
    assert mlp and all(".mlp." in n for n in mlp)
    no_embed = select_params(smol, "no_embed")
    assert "model.embed_tokens.weight" in everything and "model.embed_tokens.weight" not in no_embed
    with pytest.raises(ValueError, match="selects no parameter"):
        select_params(smol, "no-such-module")


def test_sequence_nll_matches_probe_scoring(smol, eiffel):
    batch = probe_batch(smol, eiffel.forget)
    with torch.no_grad():
        nll, lengths = sequence_nll(smol, batch)
    prompts = [render_prompt(smol, p) for p in eiffel.forget]
    ref = answer_logprobs(smol, prompts, [p.answer for p in eiffel.forget])
    assert torch.allclose(nll, torch.tensor([-lp for lp, _, _ in ref]), atol=1e-4)
    assert lengths.tolist() == [k for _, k, _ in ref]


@pytest.mark.parametrize("method", METHODS)
def test_baseline_forgets_and_restores(smol, eiffel, method):
    from workbench.concepts.fit import fit_view
    watch = _watch(smol)
    fit = fit_view(smol, eiffel)      # what the method trains on (held-out efficacy is the benchmark's job)
    before = _token_nll(smol, fit)
    # SimNPO's forget gradient is scaled by 1 - sigmoid(beta * per-token NLL) (about 0.02 at these
    # fit texts' NLL of 0.84) and weighted by gamma = 0.125, so in 2 steps its retain term wins and
    # the fit texts' NLL goes DOWN (measured 0.842 -> 0.813); its forget term alone must raise it.
    extra = {"alpha": 0.0} if method == "simnpo" else {}
    edit = fit_edit(method, smol, eiffel, params="mlp", steps=2, lr=5e-5, **extra)
    for name, t in watch.items():
        assert torch.equal(smol.hf.get_parameter(name), t), f"{method} left {name} changed"
    assert edit.deltas and all(d.kind == "dense" and d.dtype == "float32" for d in edit.deltas)
    assert all(".mlp." in d.name for d in edit.deltas)
    assert edit.provenance["dense"] is True and edit.hyper["steps"] == 2
    assert edit.params_changed() == sum(p.numel() for p in select_params(smol, "mlp").values())
    with edit.applied(smol):
        after = _token_nll(smol, fit)
    assert after > before + 0.05, f"{method}: fit forget per-token NLL {before:.3f} -> {after:.3f}"
    for name, t in watch.items():
        assert torch.equal(smol.hf.get_parameter(name), t)


def test_requires_grad_flags_and_mode_restored(smol, eiffel):
    flags = {n: p.requires_grad for n, p in smol.hf.named_parameters()}
    training = smol.hf.training
    fit_edit("ga", smol, eiffel, params="model.layers.29.mlp.down_proj", steps=1, lr=1e-5)
    assert {n: p.requires_grad for n, p in smol.hf.named_parameters()} == flags
    assert smol.hf.training == training
    assert all(p.grad is None for p in smol.hf.parameters())
