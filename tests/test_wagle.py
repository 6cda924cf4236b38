"""WAGLE: attribution scores, masks (selection, save/load), masked unlearning (exactly confined to
the mask), the sparse patch, the locate() evidence and the CLI."""
import math

import pytest
import torch

from workbench.concepts import get_concept, load_builtin, render_prompt
from workbench.edits import fit_edit, get_method
from workbench.edits.wagle import WagleConfig, masked_gradients, sparse_deltas, train_masked_in_place
from workbench.locate.masks import WeightMask, load_mask, top_fraction
from workbench.locate.weights import attribution_from_losses, param_layer_module


# ------------------------------------------------------------------------------------ hand-built model
class Linear2(torch.nn.Module):
    """y = W2 tanh(W1 x): small enough to reason about every weight."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.W1 = torch.nn.Parameter(torch.randn(4, 4))
        self.W2 = torch.nn.Parameter(torch.randn(3, 4))

    def forward(self, x):
        return torch.tanh(x @ self.W1.T) @ self.W2.T


def _hand_built():
    """Forget input uses only feature 3 and the forget loss reads output 0 only; W1[:, 3] is zero
    except W1[2, 3] and output 0 reads hidden unit 2 only (W2[0, 2]): the forget loss flows
    through W1[2, 3] and W2[0, 2] alone.
    The retain input avoids feature 3 entirely, so W1[2, 3] does nothing for it."""
    net = Linear2()
    with torch.no_grad():
        net.W1[:, 3] = 0.0
        net.W1[2, 3] = 0.05                   # tiny magnitude: a magnitude mask ranks it last
        net.W1[2, :3] = 0.0                   # hidden unit 2 is fed by feature 3 only
        net.W2[:, 2] = 0.0
        net.W2[0, :] = 0.0                    # output 0 reads hidden unit 2 only
        net.W2[0, 2] = 0.02
    x_f = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    x_r = torch.tensor([[1.0, -1.0, 0.5, 0.0], [0.3, 0.7, -1.0, 0.0]])
    y_r = net(x_r).detach() + 0.1            # retain loss is not at its minimum: nonzero g_r
    return net, (lambda: ((net(x_f)[:, 0] - 3.0) ** 2).mean().backward()), \
        (lambda: ((net(x_r) - y_r) ** 2).mean().backward())


def test_param_layer_module():
    assert param_layer_module("model.layers.3.mlp.down_proj.weight") == (3, "mlp.down_proj")
    assert param_layer_module("transformer.h.11.attn.c_attn.bias") == (11, "attn.c_attn.bias")
    assert param_layer_module("model.embed_tokens.weight") == (None, "model.embed_tokens")


def test_wagle_score_matches_formula_and_ranks_the_carrier_first():
    net, fb, rb = _hand_built()
    params = dict(net.named_parameters())
    s = attribution_from_losses(net, params, fb, rb, "wagle", mu=1e-3)
    # independent autograd computation of |(θ - g_r/μ) g_f|
    x_f = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    g_f = torch.autograd.grad(((net(x_f)[:, 0] - 3.0) ** 2).mean(), [net.W1, net.W2])
    net.zero_grad()
    rb()
    g_r = [net.W1.grad.clone(), net.W2.grad.clone()]
    net.zero_grad(set_to_none=True)
    for (name, p), gf, gr in zip(params.items(), g_f, g_r):
        assert torch.allclose(s[name], ((p.detach() - gr / 1e-3) * gf).abs(), rtol=1e-5, atol=1e-8)
    # the carrier W1[2, 3] outranks every other weight of W1 and both tensors' weights but W2[0, 2]
    w1 = s["W1"].reshape(-1)
    assert int(w1.argmax()) == 2 * 4 + 3
    assert (w1 > 0).sum() == 1                  # no other W1 weight touches the forget loss
    mask = top_fraction(s, sparsity=1 - 2 / 28)  # keep 2 of 28 weights
    assert bool(mask.masks["W1"][2, 3]) and bool(mask.masks["W2"][0, 2]) and mask.selected == 2
    assert set(torch.nonzero(s["W2"]).flatten().tolist()) <= {0, 2}
    # a magnitude mask at half the weights misses the (small) carrier
    mag = attribution_from_losses(net, params, None, None, "magnitude")
    assert not bool(top_fraction(mag, sparsity=0.5).masks["W1"][2, 3])
    assert all(p.grad is None for p in net.parameters()) and all(p.requires_grad for p in net.parameters())


def test_mu_limits():
    """μ → ∞: the score is SNIP |θ g_f|; μ → 0: it is |g_r g_f| / μ (the retain-side term)."""
    net, fb, rb = _hand_built()
    with torch.no_grad():
        net.W1[0, 3] = 0.3                    # forget output also reads hidden unit 0, which retain uses:
        net.W2[0, 0] = 0.4                    # W2[0, 0] gets both a forget and a retain gradient
    params = dict(net.named_parameters())
    snip = attribution_from_losses(net, params, fb, None, "snip")
    big_mu = attribution_from_losses(net, params, fb, rb, "wagle", mu=1e12)
    grad_f = attribution_from_losses(net, params, fb, None, "gradient")
    for n in params:
        assert torch.allclose(snip[n], big_mu[n], rtol=1e-4, atol=1e-12)
    net.zero_grad()
    rb()
    g_r = {n: p.grad.abs().clone() for n, p in params.items()}
    net.zero_grad(set_to_none=True)
    small = attribution_from_losses(net, params, fb, rb, "wagle", mu=1e-9)
    for n in params:                          # where the retain gradient is nonzero it dominates
        on = g_r[n] > 1e-6
        assert torch.allclose(small[n][on] * 1e-9, g_r[n][on] * grad_f[n][on], rtol=1e-3, atol=1e-10)
    assert g_r["W2"][0, 0] > 0 and grad_f["W2"][0, 0] > 0
    # the shared weight W2[0, 0] gains on the forget-only carrier W1[0, 3] as μ shrinks
    assert small["W2"][0, 0] / small["W1"][0, 3] > 1e3 * snip["W2"][0, 0] / snip["W1"][0, 3]
    with pytest.raises(ValueError, match="need the forget"):
        attribution_from_losses(net, params, fb, None, "wagle")


def test_top_fraction_exact_count_scope_and_ties():
    scores = {"a": torch.tensor([[3.0, 1.0], [1.0, 1.0]]), "b": torch.tensor([5.0, 0.0, 1.0, float("nan")])}
    m = top_fraction(scores, sparsity=0.75)             # keep round(0.25 * 8) = 2: 5.0 and 3.0
    assert m.selected == 2 and bool(m.masks["b"][0]) and bool(m.masks["a"][0, 0])
    m = top_fraction(scores, sparsity=0.5)              # keep 4: 5, 3, then two of the 1.0 ties (first ones)
    assert m.selected == 4 and m.masks["a"].reshape(-1).tolist() == [True, True, True, False]
    assert not bool(m.masks["b"][3])                     # NaN ranks last
    p = top_fraction(scores, sparsity=0.5, scope="per_module")
    assert [int(x.sum()) for x in p.masks.values()] == [2, 2]
    assert top_fraction(scores, 0.0).selected == 8 and top_fraction(scores, 1.0).selected == 0
    with pytest.raises(ValueError, match="sparsity"):
        top_fraction(scores, 1.5)
    with pytest.raises(ValueError, match="scope"):
        top_fraction(scores, 0.5, scope="layer")


def _reference_score2mask(scores: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """OPTML-Group/WAGLE `score2mask` on scores already negated (−|s|, as its get_mask does):
    argsort ascending, ranks < int(N · ratio) -> 1; the trainer then does grad *= mask."""
    flat = torch.cat([-t.reshape(-1) for t in scores.values()])
    ranks = torch.argsort(torch.argsort(flat))
    thr = int(len(flat) * ratio)
    out, start = {}, 0
    for n, t in scores.items():
        out[n] = (ranks[start:start + t.numel()] < thr).reshape(t.shape)
        start += t.numel()
    return out


def test_keep_is_the_reference_ratio_of_weights_updated():
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(5, 4, generator=g), "b": torch.rand(20, generator=g)}        # 40 distinct scores
    for ratio in (0.95, 0.6, 0.05):
        ref = _reference_score2mask(scores, ratio)
        m = top_fraction(scores, keep=ratio)
        assert m.selected == int(40 * ratio) and m.meta["keep"] == ratio
        assert all(torch.equal(m.masks[n], ref[n]) for n in scores)
        old = top_fraction(scores, sparsity=1 - ratio)                  # the older name, same mask
        assert all(torch.equal(old.masks[n], ref[n]) for n in scores)
    with pytest.raises(ValueError, match="not both"):
        top_fraction(scores, sparsity=0.5, keep=0.5)
    with pytest.raises(ValueError, match="keep"):
        top_fraction(scores, keep=1.5)


def test_wagle_config_keep_default_and_sparsity_deprecation():
    from workbench.edits.wagle import keep_share
    cfg = WagleConfig()
    assert cfg.keep is None and keep_share(cfg) == 0.95 and cfg.lr == 1e-5 and cfg.steps >= 100
    with pytest.warns(DeprecationWarning, match="keep=0.05"):
        assert abs(keep_share(WagleConfig(sparsity=0.95)) - 0.05) < 1e-12      # the old meaning stays
    assert keep_share(WagleConfig(keep=0.6)) == 0.6
    with pytest.raises(ValueError, match="not both"):
        keep_share(WagleConfig(keep=0.6, sparsity=0.4))


@pytest.mark.parametrize("density", [0.001, 0.5])
def test_mask_save_load_round_trip(tmp_path, density):
    g = torch.Generator().manual_seed(1)
    masks = {"x.weight": torch.rand(301, 53, generator=g) < density, "y": torch.rand(10001, generator=g) < density,
             "empty": torch.zeros(3, 3, dtype=torch.bool)}
    mask = WeightMask(masks, {"method": "random", "sparsity": 1 - density})
    path = mask.save(tmp_path / "m.safetensors")
    back = load_mask(path)
    assert back.meta == mask.meta and list(back.masks) == list(masks)
    for n in masks:
        assert back.masks[n].dtype == torch.bool and torch.equal(back.masks[n], masks[n])
    dense_bytes = sum(m.numel() for m in masks.values())
    assert path.stat().st_size < dense_bytes / 4          # compact: bitmaps or indices, never bool bytes


def test_mask_load_rejects_bad_files(tmp_path):
    from safetensors.torch import save_file
    bad = tmp_path / "bad.safetensors"
    save_file({"t0": torch.zeros(2, dtype=torch.uint8)}, str(bad), metadata={"format": "other"})
    with pytest.raises(ValueError, match="not a workbench weight mask"):
        load_mask(bad)
    with pytest.raises(FileNotFoundError):
        load_mask(tmp_path / "missing.safetensors")
    mask = WeightMask({"w": torch.tensor([True, False, True])}, {})
    assert load_mask(mask.save(tmp_path / "ok.safetensors")).selected == 2
    import json
    index = {"w": {"key": "t0", "shape": [3], "encoding": "bitmap", "count": 3}}     # header disagrees with bits
    save_file({"t0": torch.tensor([0b10100000], dtype=torch.uint8)}, str(bad),
              metadata={"format": "workbench-weight-mask", "index": json.dumps(index), "meta": "{}"})
    with pytest.raises(ValueError, match="bad.safetensors.*header says 3"):
        load_mask(bad)
    index["w"].update(encoding="indices", count=1)
    save_file({"t0": torch.tensor([7], dtype=torch.int32)}, str(bad),
              metadata={"format": "workbench-weight-mask", "index": json.dumps(index), "meta": "{}"})
    with pytest.raises(ValueError, match="out of range"):
        load_mask(bad)
    with pytest.raises(ValueError, match="does not have"):
        mask.check(_tiny_hooked())


def _tiny_hooked():
    from tests.tiny_models import CharTokenizer, tiny
    from workbench.models.hooked import HookedModel
    return HookedModel(tiny("llama"), CharTokenizer(), "tiny-llama")


def test_masked_training_changes_nothing_outside_the_mask():
    """Exact: Adam (wd 0) with masked gradients leaves every unselected weight bit-identical."""
    model = _tiny_hooked()
    params = dict(model.hf.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    g = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=g) < 0.1 for n, p in params.items()}
    ids = torch.randint(1, 120, (4, 12), generator=g)

    def loss_fn(step):
        return -model.hf(input_ids=ids, labels=ids).loss       # gradient ascent: large, dense gradients

    losses = train_masked_in_place(model, params, masks, loss_fn, steps=3, lr=1e-2, max_grad_norm=1.0,
                                   progress=False)
    assert len(losses) == 3
    changed_inside = 0
    for n, p in params.items():
        diff = p.detach() != before[n]
        assert not bool((diff & ~masks[n]).any()), f"{n} changed outside the mask"
        changed_inside += int(diff.sum())
    assert changed_inside > 0.9 * sum(int(m.sum()) for m in masks.values())
    deltas = sparse_deltas(params, before, masks)
    assert all(d.kind == "sparse" and d.indices.dtype == torch.int64 for d in deltas)
    assert sum(d.numel_changed() for d in deltas) == changed_inside
    for d in deltas:                                            # the sparse delta rebuilds the trained tensor
        assert torch.allclose(d.new_value(before[d.name]), params[d.name].detach(), atol=1e-7)
    # without the mask the same training moves (almost) everything: the mask is doing the work
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(before[n])
    assert all(p.grad is None for p in params.values())
    sparse_deltas(params, before, masks)                       # nothing changed now: no error, no deltas
    with masked_gradients({"model.norm.weight": params["model.norm.weight"]},
                          {"model.norm.weight": torch.zeros(32, dtype=torch.bool)}):
        model.hf(input_ids=ids, labels=ids).loss.backward()
    assert torch.count_nonzero(params["model.norm.weight"].grad) == 0
    model.hf.zero_grad(set_to_none=True)


def test_wagle_config_registered():
    meth = get_method("wagle")
    assert meth.config_cls is WagleConfig
    cfg = WagleConfig.from_dict({"loss": "graddiff", "sparsity": 0.9})
    assert WagleConfig.from_dict(cfg.to_dict()) == cfg and cfg.mu == 1e-6
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        WagleConfig.from_dict({"ratio": 0.5})


# ------------------------------------------------------------------------------------ embedded model
@pytest.fixture(scope="module")
def eiffel():
    return get_concept(load_builtin(), "Eiffel Tower")


def _forget_prob(model, concept) -> float:
    from workbench.verify.probes import answer_logprobs
    prompts = [render_prompt(model, p) for p in concept.forget]
    return sum(math.exp(lp) for lp, _, _ in answer_logprobs(model, prompts, [p.answer for p in concept.forget])) \
        / len(prompts)


def test_wagle_edit_on_embedded_model(smol, eiffel, tmp_path):
    """Scores -> mask file -> masked NPO on the late MLPs: forget prob falls, every changed weight is
    inside the mask, the model is restored bit-exactly, and the sparse patch round-trips."""
    from workbench.locate.masks import build_mask
    from workbench.patches import load_patch
    late_mlps = ",".join(f"model.layers.{L}.mlp" for L in range(24, 30))   # short backward pass: fast test
    from workbench.concepts.fit import fit_view
    fit = fit_view(smol, eiffel)             # the edit fits on fit data; so must its mask
    mask = build_mask(smol, fit, method="wagle", sparsity=0.99, params=late_mlps, progress=False)
    assert mask.meta["method"] == "wagle" and mask.meta["passes"] == 2
    assert abs(mask.density - 0.01) < 1e-6 and len(mask.masks) == 18
    assert all(".mlp." in n and int(n.split(".")[2]) >= 24 for n in mask.masks)
    path = mask.save(tmp_path / "eiffel.mask.safetensors")
    before_all = {n: p.detach().clone() for n, p in smol.hf.named_parameters()}
    p0 = _forget_prob(smol, fit)
    edit = fit_edit("wagle", smol, eiffel, mask=str(path), loss="npo", steps=3, lr=1e-3)
    for n, p in smol.hf.named_parameters():
        assert torch.equal(p, before_all[n]), f"{n} not restored"
    assert edit.deltas and all(d.kind == "sparse" for d in edit.deltas)
    loaded = load_mask(path)
    for d in edit.deltas:
        assert bool(loaded.masks[d.name].reshape(-1)[d.indices].all()), f"{d.name}: change outside the mask"
    assert 0 < edit.params_changed() <= loaded.selected
    assert edit.provenance["mask"]["method"] == "wagle" and edit.hyper["mask"] == str(path)
    with edit.applied(smol):
        p1 = _forget_prob(smol, fit)                 # what the masked NPO optimises: the fit forget texts
    assert p1 < 0.5 * p0, f"fit forget prob {p0:.3f} -> {p1:.3f}"
    out = edit.save(tmp_path / "eiffel.patch", model=smol)      # sparse deltas: indices + values only
    back = load_patch(out).new_edit()
    assert [d.name for d in back.deltas] == [d.name for d in edit.deltas]
    for a, b in zip(back.deltas, edit.deltas):
        assert a.kind == "sparse" and torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)
    with back.applied(smol):
        for d in back.deltas:
            p = smol.hf.get_parameter(d.name)
            assert torch.equal(p.reshape(-1)[d.indices], (before_all[d.name].reshape(-1)[d.indices] + d.values))
            outside = torch.ones(p.numel(), dtype=torch.bool)
            outside[d.indices] = False
            assert torch.equal(p.reshape(-1)[outside], before_all[d.name].reshape(-1)[outside])
    for n, p in smol.hf.named_parameters():
        assert torch.equal(p, before_all[n])


def test_locate_weights_kind_on_tiny_model():
    """locate(kinds=("weights",)): weight_attribution profile per layer and evidence per tensor
    under site-grammar names, with head / MLP-unit details."""
    from workbench.concepts.schema import Concept, Probe
    from workbench.locate import locate
    from workbench.locate.weights import attribution_scores
    model = _tiny_hooked()
    concept = Concept("Toy", "abc", forget=[Probe("abc is", ["xyz"]), Probe("abc has", ["qq"])],
                      retain=[Probe("def is", ["uvw"])])
    rep = locate(model, concept, kinds=("weights",), progress=False)
    prof = rep.profiles["weight_attribution"]
    assert len(prof) == model.n_layers and all(v >= 0 for v in prof)
    ev = [e for e in rep.evidence if e.kind == "weight_attribution"]
    names = dict(model.hf.named_parameters())
    assert len(ev) == len(names)
    sites = {e.site for e in ev}
    assert {"blocks.0.mlp.W_out", "blocks.1.attn.W_Q", "embed.W_E"} <= sites
    assert abs(sum(e.score for e in ev) - 1.0) < 1e-6          # shares of the total score mass
    down = next(e for e in ev if e.site == "blocks.1.mlp.W_out")
    assert len(down.details["top_units"]) == 5 and "top_heads" in next(e for e in ev if e.site == "blocks.1.attn.W_Q").details
    assert rep.meta["weight_attribution"]["passes"] == 2 and "weights" in rep.meta["timings"]
    # the aggregate views agree with the raw scores
    ws = attribution_scores(model, concept, progress=False)
    units = ws.units(model, 1)
    heads = model.hf.config.num_attention_heads
    assert len(units["heads"]) == heads and len(units["mlp_units"]) == model.info.d_mlp
    q = ws.scores["model.layers.1.self_attn.q_proj.weight"].double()
    o = ws.scores["model.layers.1.self_attn.o_proj.weight"].double()
    assert abs(sum(units["heads"]) - float(q.sum() + o.sum())) < 1e-6 * float(q.sum() + o.sum())
    top = ws.top_weights(3)
    flat = torch.cat([t.reshape(-1) for t in ws.scores.values()])
    assert top[0]["score"] == pytest.approx(float(flat.max()))
    with_text = attribution_scores(model, concept, retain_text_tokens=256, progress=False)
    assert with_text.meta["retain_text_tokens"] == 256 and with_text.meta["passes"] == 2
    name = "model.layers.1.mlp.down_proj.weight"
    assert not torch.equal(with_text.scores[name], ws.scores[name])   # general text moves the retain gradient
    mods, layers, z = ws.heatmap()
    assert layers == [0, 1] and "mlp.down_proj" in mods and len(z) == len(mods)
    assert len(ws.figures()) == 2 and len(top_fraction(ws, 0.9).figures()) == 2


def test_cli_wagle_mask_and_inspect(tmp_path):
    import subprocess
    import sys
    run = lambda *a: subprocess.run([sys.executable, "-m", "workbench.cli", *a], capture_output=True, text=True,
                                    timeout=600)
    out = tmp_path / "m.safetensors"
    r = run("wagle", "mask", "smollm2-135m", "--concepts", "builtin", "--concept", "Japan", "--method", "magnitude",
            "--params", "model.layers.29.mlp", "--sparsity", "0.9", "--out", str(out), "--json", str(tmp_path / "m.json"),
            "--html", str(tmp_path / "m.html"))
    assert r.returncode == 0, r.stderr
    mask = load_mask(out)
    assert set(mask.masks) == {f"model.layers.29.mlp.{k}_proj.weight" for k in ("gate", "up", "down")}
    assert abs(mask.density - 0.1) < 1e-6 and mask.meta["method"] == "magnitude"
    r = run("wagle", "inspect", str(out))
    assert r.returncode == 0 and "10.000%" in r.stdout
    r = run("wagle", "mask", "smollm2-135m", "--concepts", "builtin", "--concept", "Japan", "--sparsity", "2",
            "--out", str(out))
    assert r.returncode == 2 and "--sparsity" in r.stderr
    r = run("wagle", "inspect", str(tmp_path / "m.json"))
    assert r.returncode == 2 and "m.json" in r.stderr
