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


def test_saes_are_offered_only_for_the_model_they_were_trained_on(home):
    pytest.importorskip("sae_lens")
    from tests.test_sae import random_topk
    from workbench.models.identity import model_content_id
    from workbench.sae.store import save_sae, saes_for
    a, b = _model(0), _model(1)
    site = "blocks.0.hook_resid_post"
    sae = random_topk(a.info.d_model, 16, 4)
    save_sae(sae, home / "sae" / "mine", "dense/x", site, a.model_id, model_content=model_content_id(a))
    save_sae(sae, home / "sae" / "old", "dense/y", site, a.model_id)              # written before content ids
    assert saes_for(a) == [home / "sae" / "mine", home / "sae" / "old"]
    assert saes_for(b) == [home / "sae" / "old"]                                  # same name, other weights
    from workbench.app.evidence import available_saes
    assert available_saes(b) == saes_for(b)
