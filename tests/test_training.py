"""`workbench.training.train_edit`, the one fine-tuning loop (ga/graddiff/npo/simnpo, wagle, rmu, uoe,
ablate's needles and the relearning attack all run on it): gradient masks, extra losses, restore."""
from __future__ import annotations

import contextlib

import pytest
import torch

from tests.test_moe import _concept, _hooked
from workbench.training import ExtraLoss, probe_batch, select_params, sequence_nll, train_edit


@pytest.fixture()
def setup():
    model = _hooked("llama", seed=0)
    batch = probe_batch(model, _concept().forget)
    return model, batch, lambda _step: sequence_nll(model, batch)[0].mean()


def _state(model):
    return {n: p.detach().clone() for n, p in model.hf.named_parameters()}


def test_masked_entries_stay_exactly_unchanged_and_the_model_is_restored(setup):
    model, _batch, objective = setup
    params = select_params(model, "mlp")
    name = next(n for n in params if n.endswith("down_proj.weight"))
    mask = torch.zeros(params[name].shape, dtype=torch.bool)
    mask[:, :5] = True                                          # five columns of one tensor may move
    before = _state(model)
    seen = {}

    def read(trained, originals):
        seen["trained"] = {n: p.detach().clone() for n, p in trained.items()}
        return [n for n, p in trained.items() if not torch.equal(p, originals[n])]

    run = train_edit(model, params, objective, steps=3, lr=1e-2, max_grad_norm=1.0,
                     masks={name: mask, **{n: torch.zeros(p.shape, dtype=torch.bool) for n, p in params.items()
                                           if n != name}}, deltas=read, progress=False)
    assert run.deltas == [name] and list(seen["trained"]) == [name]      # empty masks: not trained at all
    new = seen["trained"][name]
    assert torch.equal(new[~mask], before[name][~mask])                  # masked-out entries bit-identical
    assert not torch.equal(new[mask], before[name][mask])
    assert len(run.losses) == 3 and run.parts == {"objective": run.losses}
    assert all(torch.equal(p, before[n]) for n, p in model.hf.named_parameters())   # restored bit-exactly
    assert all(p.grad is None for p in model.hf.parameters())
    with pytest.raises(ValueError, match="selects no weight"):
        train_edit(model, params, objective, steps=1, lr=1e-2, masks={name: torch.zeros_like(mask)}, progress=False)


def test_extra_losses_add_to_the_objective_and_are_recorded(setup):
    model, _batch, objective = setup
    params = select_params(model, "model.norm")
    entered = []

    @contextlib.contextmanager
    def capture(step):
        entered.append(step)
        yield {"step": step}

    extra = ExtraLoss("l2", 0.5, capture, lambda store, step: sum((p ** 2).sum() for p in params.values()))
    run = train_edit(model, params, objective, steps=2, lr=1e-3, extra_losses=[extra], progress=False,
                     after=lambda: float(model.hf.get_parameter("model.norm.weight").sum()))
    assert entered == [0, 1] and set(run.parts) == {"objective", "l2"}
    for total, obj, l2 in zip(run.losses, run.parts["objective"], run.parts["l2"]):
        assert total == pytest.approx(obj + 0.5 * l2, rel=1e-6)
    assert run.after != pytest.approx(32.0)                 # measured on the trained weights (norm starts at 1s)


def test_weights_are_restored_when_training_fails(setup):
    model, _batch, objective = setup
    params = select_params(model, "all")
    before = _state(model)
    start = lambda trained: trained["model.norm.weight"].data.mul_(3.0)      # runs after the snapshot
    with pytest.raises(FloatingPointError, match="loss became nan"):
        train_edit(model, params, lambda step: objective(step) * float("nan"), steps=2, lr=1e-2, start=start,
                   progress=False)
    assert all(torch.equal(p, before[n]) for n, p in model.hf.named_parameters())
    assert all(p.requires_grad for p in model.hf.parameters()) and all(p.grad is None for p in model.hf.parameters())
