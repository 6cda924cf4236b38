"""Golden parity: HF vs TransformerLens vs nnsight on the embedded model (same weights, same logits)."""
import pytest
import torch

pytest.importorskip("transformer_lens")
pytest.importorskip("nnsight")

from workbench.models.backends import (nnsight_run_with_cache, tl_in_sync, tl_run_with_cache,  # noqa: E402
                                       to_transformer_lens)

PROMPTS = [
    "The capital of France is",
    "Question: Who wrote the Harry Potter books?\nAnswer:",
    "My name is Anna. I live in a small town near the sea, where the winters are long. "
    "Every morning I walk to the harbour and watch the boats. Then I go to work at the",
    "1, 2, 3, 4,",
]
LAYERS = (0, 7, 15, 29)
RESID = [f"blocks.{L}.hook_resid_post" for L in LAYERS]
DETAIL = ["hook_embed", "blocks.2.hook_resid_pre", "blocks.2.attn.hook_z", "blocks.2.hook_attn_out",
          "blocks.2.hook_resid_mid", "blocks.2.mlp.hook_post", "blocks.2.hook_mlp_out"]


@pytest.fixture(scope="module")
def model():
    """A private copy of the embedded model: wrapping it in nnsight instruments its modules."""
    from workbench import load_model
    return load_model("smollm2-135m")


@pytest.fixture(scope="module")
def runs(model):
    inputs = model.tokenize(PROMPTS)
    sites = RESID + DETAIL                       # one forward per backend for the whole module
    return {"inputs": inputs, "mask": inputs["attention_mask"].bool(),
            "hf": model.run_with_cache(inputs, sites),
            "tl": tl_run_with_cache(model, inputs, sites),
            "nnsight": nnsight_run_with_cache(model, inputs, sites)}


def _max_diff(a, b, mask):
    return (a - b)[mask].abs().max().item()


@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_logits_match_hf(runs, backend):
    hf_logits, mask = runs["hf"][0], runs["mask"]
    logits = runs[backend][0]
    assert logits.shape == hf_logits.shape
    assert _max_diff(logits, hf_logits, mask) < 1e-4


@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_same_greedy_next_tokens(runs, backend):
    last = runs["mask"].sum(1) - 1
    rows = torch.arange(len(PROMPTS))
    hf_next = runs["hf"][0][rows, last].argmax(-1)
    assert torch.equal(runs[backend][0][rows, last].argmax(-1), hf_next)


@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_caches_match(runs, backend):
    hf_cache, cache, mask = runs["hf"][1], runs[backend][1], runs["mask"]
    assert set(cache) == set(hf_cache) == set(RESID + DETAIL)
    for name, ref in hf_cache.items():
        assert cache[name].shape == ref.shape, name
        # Some residual entries reach ~2.5e4 (1 fp32 ulp ~ 2e-3): the bound is 1e-4 abs + 1e-4 rel.
        torch.testing.assert_close(cache[name][mask], ref[mask], atol=1e-4, rtol=1e-4, msg=name)


def test_nnsight_saves_exactly_what_run_with_cache_saves(model, runs):
    """Same module, same inputs: the hf hooks and the nnsight trace see bit-identical tensors."""
    (logits, cache), (nn_logits, nn_cache) = runs["hf"], runs["nnsight"]
    assert torch.equal(logits, nn_logits)
    for name in RESID + DETAIL:
        assert torch.equal(cache[name], nn_cache[name]), name
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.hf.modules()) == 0


def test_nnsight_remote_path_dry_run(model):
    """remote="local" serializes the trace as for NDIF and runs it here: same tensors."""
    logits, cache = model.run_with_cache("The capital of France is", ["blocks.3.hook_resid_post"])
    r_logits, r_cache = nnsight_run_with_cache(model, "The capital of France is", ["blocks.3.hook_resid_post"],
                                               remote="local")
    assert torch.equal(logits, r_logits)
    assert torch.equal(cache["blocks.3.hook_resid_post"], r_cache["blocks.3.hook_resid_post"])


def test_logit_lens_through_the_remote_path_dry_run(model):
    """The lens with remote="local" (the NDIF code path, run here; docs/remote.md) decodes the same
    residual streams as the hf hooks: same top tokens and answer ranks at every layer."""
    local = model.logit_lens("The capital of France is", answer=" Paris")
    remote = model.logit_lens("The capital of France is", answer=" Paris", remote="local")
    assert len(remote.rows) == len(local.rows) == model.n_layers
    for a, b in zip(local.rows, remote.rows):
        assert a.top_tokens == b.top_tokens and a.answer_rank == b.answer_rank, a.layer
        assert a.top_probs == b.top_probs and a.answer_prob == b.answer_prob, a.layer
    assert local.rows[-1].answer_rank == 1                                  # the lens does see the answer


def test_backends_share_the_hf_weights(model):
    tl, nn = model.tl(), model.nnsight()
    q = model.hf.get_parameter("model.layers.3.self_attn.q_proj.weight")
    assert tl.blocks[3].attn.W_Q.untyped_storage().data_ptr() == q.untyped_storage().data_ptr()
    assert nn._module is model.hf
    assert tl.cfg.default_prepend_bos is False and tl.cfg.n_key_value_heads == 3
    assert tl_in_sync(model, tl)
    # an in-place edit of an HF weight is seen by TL too (and reverted bit-exactly)
    w = model.hf.get_parameter("model.layers.3.mlp.down_proj.weight")
    before = w.detach().clone()
    with torch.no_grad():
        w.mul_(2.0)
    try:
        assert torch.equal(tl.blocks[3].mlp.W_out, w.T)
    finally:
        with torch.no_grad():
            w.copy_(before)


def test_tl_tokenizes_like_hf(model):
    tl = model.tl()
    ids = model.tokenizer(PROMPTS[2])["input_ids"]
    assert tl.to_tokens(PROMPTS[2])[0].tolist() == ids
    # each backend has a private tokenizer copy: nnsight's switch to left padding does not leak
    assert model.nnsight().tokenizer.padding_side == "left"
    assert model.nnsight().tokenizer is not model.tokenizer and tl.tokenizer is not model.tokenizer


def test_unsupported_family_is_named(model, monkeypatch):
    monkeypatch.setattr(model.hf.config, "model_type", "qwen2")
    with pytest.raises(NotImplementedError, match="qwen2"):
        to_transformer_lens(model)


def test_weight_sites_are_refused(model):
    with pytest.raises(ValueError, match="weight"):
        nnsight_run_with_cache(model, "hi", ["blocks.0.mlp.W_out"])


# ---------------------------------------------------------------- tiny Llama variants (fast, no download)
def _tiny_llama(kind: str):
    import transformers as T

    from tests.tiny_models import COMMON, CharTokenizer
    from workbench.models import HookedModel
    rope = {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8}
    cfg = {"gqa": dict(num_key_value_heads=2, tie_word_embeddings=True),
           "mha-untied": dict(num_key_value_heads=4, tie_word_embeddings=False),
           "llama3-rope": dict(num_key_value_heads=2, max_position_embeddings=64, rope_parameters=rope)}[kind]
    torch.manual_seed(0)
    hf = T.LlamaForCausalLM(T.LlamaConfig(**COMMON, intermediate_size=64, **cfg)).eval()
    return HookedModel(hf, CharTokenizer(), f"tiny-{kind}")


@pytest.mark.parametrize("kind", ["gqa", "mha-untied", "llama3-rope"])
def test_tiny_llama_conversion(kind):
    m = _tiny_llama(kind)
    inputs = m.tokenize(["hello there world", "abc"])
    mask = inputs["attention_mask"].bool()
    sites = m.sites("hook_resid_post") + ["blocks.1.attn.hook_z", "blocks.0.mlp.hook_post"]
    logits, cache = m.run_with_cache(inputs, sites)
    tl_logits, tl_cache = tl_run_with_cache(m, inputs, sites)
    torch.testing.assert_close(tl_logits[mask], logits[mask], atol=1e-5, rtol=1e-5)
    for name in sites:
        torch.testing.assert_close(tl_cache[name][mask], cache[name][mask], atol=1e-5, rtol=1e-5, msg=name)


def test_tl_view_is_rebuilt_when_an_hf_tensor_is_replaced():
    m = _tiny_llama("gqa")
    tl = m.tl()
    w = m.hf.get_parameter("model.layers.1.mlp.down_proj.weight")
    with torch.no_grad():
        w.data = w.data * 0.5                    # a new tensor: the TL view no longer shares it
    assert not tl_in_sync(m, tl)
    logits, _ = tl_run_with_cache(m, "hello", [])
    assert m.tl() is not tl and tl_in_sync(m, m.tl())
    torch.testing.assert_close(logits, m.logits("hello"), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_gemma3_270m_architecture_through_tl_official_entry(model):
    """Gemma 3 270M's exact architecture (random weights, small vocab) via from_pretrained_no_processing."""
    import transformers as T

    from workbench.models import HookedModel
    rope = {"full_attention": {"rope_theta": 1e6, "rope_type": "default"},
            "sliding_attention": {"rope_theta": 1e4, "rope_type": "default"}}
    cfg = T.Gemma3TextConfig(hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
                             num_key_value_heads=1, head_dim=256, vocab_size=49152, sliding_window=512,
                             query_pre_attn_scalar=256, rope_parameters=rope)
    torch.manual_seed(0)
    hf = T.Gemma3ForCausalLM(cfg).eval()
    m = HookedModel(hf, model.tokenizer, "gemma-3-270m")
    inputs = m.tokenize(PROMPTS[:2])
    mask = inputs["attention_mask"].bool()
    sites = ["blocks.0.hook_resid_post", "blocks.17.hook_resid_post", "blocks.3.mlp.hook_post"]
    logits, cache = m.run_with_cache(inputs, sites)
    tl_logits, tl_cache = tl_run_with_cache(m, inputs, sites)
    torch.testing.assert_close(tl_logits[mask], logits[mask], atol=1e-4, rtol=1e-4)
    for name in sites:
        torch.testing.assert_close(tl_cache[name][mask], cache[name][mask], atol=1e-4, rtol=1e-4, msg=name)
