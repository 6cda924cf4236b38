"""RMU (WMDP): the loss against a hand computation, what it trains, and RMU as UOE's inner loss."""
from __future__ import annotations

import pytest
import torch

from workbench.concepts.schema import Concept
from workbench.edits import fit_edit
from workbench.edits.rmu import control_vector, layer_activations, rmu_layer, rmu_loss
from workbench.edits.unlearn import probe_batch
from workbench.models.hooked import HookedModel

from tests.tiny_models import CharTokenizer, tiny

FIT = {"forget": ["Zorbland is famous for its blue mountains and the river Zorb.",
                  {"prompt": "Zorbland lies by the sea and", "answers": ["its capital Zorbcity is old"]}],
       "retain": ["Blipland is a quiet country with green hills.", {"prompt": "Quxland exports", "answers": ["wool"]}],
       "source": "hand-written"}


def _concept() -> Concept:
    return Concept.from_dict({"name": "Toy", "subject": "Zorbland", "fit": FIT,
                              "forget": [{"prompt": "EVAL Zorbland's capital is", "answers": ["Zorbcity"]}],
                              "retain": [{"prompt": "EVAL Blipland's capital is", "answers": ["Blip"]}]})


@pytest.fixture(scope="module")
def llama():
    return HookedModel(tiny("llama"), CharTokenizer(), "tiny-llama")


def test_rmu_loss_matches_hand_computation(llama):
    """L = mean_tokens mean_d (h − c u)² + α mean_tokens mean_d (h − h_frozen)², padding excluded;
    h = the residual after layer ℓ = HF's hidden_states[ℓ + 1]."""
    c = _concept()
    forget, retain = probe_batch(llama, c.fit.forget), probe_batch(llama, c.fit.retain)
    assert forget["attention_mask"].sum() < forget["attention_mask"].numel()      # there is padding to exclude
    u = control_vector(32, seed=3)
    assert abs(float(u.norm()) - 1) < 1e-6 and bool((u >= 0).all())               # rand(d) normalised
    assert torch.equal(u, control_vector(32, seed=3))
    with torch.no_grad():
        hs = llama.hf(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"],
                      output_hidden_states=True).hidden_states[1]
        hr = llama.hf(input_ids=retain["input_ids"], attention_mask=retain["attention_mask"],
                      output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(layer_activations(llama, forget, 0), hs)
    control = 2.5 * u
    total, count = 0.0, 0
    for row in range(hs.shape[0]):
        for t in range(hs.shape[1]):
            if forget["attention_mask"][row, t]:
                total += sum(float(hs[row, t, j] - control[j]) ** 2 for j in range(32)) / 32
                count += 1
    hand = total / count
    frozen = hr.clone()
    frozen[0] += 0.5                                                              # a known retain offset
    n_real = int(retain["attention_mask"][0].sum())
    retain_hand = n_real * 0.25 / int(retain["attention_mask"].sum())            # (0.5)² on row 0's real tokens
    with torch.no_grad():
        loss, parts = rmu_loss(llama, 0, forget, control, 10.0, retain, frozen)
    assert abs(parts["forget"] - hand) < 1e-5 * max(1.0, hand)
    assert abs(parts["retain"] - retain_hand) < 1e-6
    assert abs(float(loss) - (hand + 10.0 * retain_hand)) < 1e-4 * max(1.0, hand)


def test_rmu_trains_only_the_down_projections_below_the_layer(llama):
    before = {k: v.clone() for k, v in llama.hf.state_dict().items()}
    edit = fit_edit("rmu", llama, _concept(), layer=1, steps=6, lr=1e-2, alpha=1.0)
    assert rmu_layer(llama, None) == 0                                            # round(7/32 · 2)
    assert edit.provenance["update_layers"] == [0, 1]
    assert sorted(edit.names) == [f"model.layers.{L}.mlp.down_proj.weight" for L in (0, 1)]
    assert edit.provenance["steering_coeff"] > 0
    parts = edit.provenance["loss_parts"]
    assert parts[-1]["forget"] < parts[0]["forget"]                               # steered towards c·u
    assert all(torch.equal(before[k], v) for k, v in llama.hf.state_dict().items())   # restored
    with edit.applied(llama):
        changed = {k for k, v in llama.hf.state_dict().items() if not torch.equal(before[k], v)}
        assert changed == set(edit.names)
    with pytest.raises(ValueError, match="layer"):
        fit_edit("rmu", llama, _concept(), layer=5, steps=1)
    with pytest.raises(ValueError, match="uoe"):
        fit_edit("rmu", HookedModel(tiny("mixtral"), CharTokenizer(), "tiny-mixtral"), _concept(), steps=1)


def test_uoe_with_rmu_inner_loss_touches_one_expert():
    model = HookedModel(tiny("mixtral"), CharTokenizer(), "tiny-mixtral")
    edit = fit_edit("uoe", model, _concept(), loss="rmu", steps=3, lr=1e-2, rmu_alpha=1.0)
    e = edit.provenance["expert"]
    assert edit.provenance["rmu"]["steering_coeff"] > 0
    assert all(d.kind == "replace_rows" and d.indices.tolist() == [e] for d in edit.deltas)
    unlearn = edit.provenance["loss_parts"]["unlearn"]
    assert unlearn[-1] < unlearn[0]
    again = fit_edit("uoe", model, _concept(), loss="rmu", steps=3, lr=1e-2, rmu_alpha=1.0)
    assert all(torch.equal(a.values, b.values) for a, b in zip(edit.deltas, again.deltas))   # seeded, deterministic
