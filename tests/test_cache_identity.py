"""Caches of derived data are keyed by a model's content (config + weights), not its folder name:
two models that share a name (every `build-moe` dense twin is called `dense`) never share entries."""
from __future__ import annotations

import pytest

from tests.tiny_models import CharTokenizer, tiny


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    return tmp_path


def _model(seed: int, name: str = "dense"):
    from workbench.models.hooked import HookedModel
    return HookedModel(tiny("llama", seed=seed), CharTokenizer(), name)


def test_covariance_cache_is_keyed_by_content(home):
    import torch
    from workbench.locate.stats import _key, mlp_key_second_moment
    a, a_again, b = _model(0), _model(0), _model(1)
    assert _key(a, 256, 16) == _key(a_again, 256, 16) != _key(b, 256, 16)
    assert _key(a, 256, 16).startswith("dense-")
    ca = mlp_key_second_moment(a, 0, n_tokens=256, seq_len=16, progress=False)
    cb = mlp_key_second_moment(b, 0, n_tokens=256, seq_len=16, progress=False)     # same name, new weights
    assert not torch.equal(ca, cb)                                                 # recomputed, not reused
    assert len(list((home / "stats").glob("*.safetensors"))) == 2
    assert torch.equal(mlp_key_second_moment(a_again, 0, n_tokens=256, seq_len=16, progress=False), ca)


def test_activation_cache_is_keyed_by_content(home):
    from workbench.sae import store
    a, b = _model(0), _model(1)
    da = store.cache_activations(a, ["blocks.0.hook_resid_post"], n_tokens=256, seq_len=16, progress=False)
    db = store.cache_activations(b, ["blocks.0.hook_resid_post"], n_tokens=256, seq_len=16, progress=False)
    site = "blocks.0.hook_resid_post"
    assert da[site] != db[site] and da[site].parent.parent.name.startswith("dense-")
    assert not store.load_activations(da[site]).equal(store.load_activations(db[site]))
