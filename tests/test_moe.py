"""MoE: synthetic world + build-moe, routing capture/attribution/drift, single-expert unlearning (uoe)."""
from __future__ import annotations

import json

import pytest
import torch

from tests.tiny_models import CharTokenizer, tiny
from workbench.concepts.schema import Concept, Probe
from workbench.models import HookedModel

MOE_FAMILIES = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe"]
PROMPTS = ["The Zorblax tower stands in", "a b c", "Question: who?\nAnswer:"]


def _hooked(family: str, seed: int = 0) -> HookedModel:
    return HookedModel(tiny(family, seed), CharTokenizer(), f"tiny-{family}")


# ------------------------------------------------------------------------------ world
def test_world_is_seeded_and_holds_out_phrasings():
    from workbench.data.world import HELD_OUT_FORMS, concepts_for, make_world
    w1, w2 = make_world(200, seed=3), make_world(200, seed=3)
    assert w1.to_dict() == w2.to_dict()
    assert make_world(200, seed=4).to_dict() != w1.to_dict()
    assert len(w1.entities) == 200 and {e.kind for e in w1.entities} == {"person", "place", "organisation"}
    assert all(4 <= len(e.facts) <= 6 for e in w1.entities)
    names = [e.name for e in w1.entities]
    assert len(set(names)) == 200
    train = set(w1.training_sentences())
    for e in w1.entities[:40]:
        for p in w1.phrasings(e):
            sentence = f"{p['prompt']} {p['answer']}."
            assert (sentence in train) == (not p["held_out"]), sentence
            if p["form"] == "completion":
                assert not p["held_out"]
    held = {p["form"] for e in w1.entities for p in w1.phrasings(e) if p["held_out"]}
    assert held == set(HELD_OUT_FORMS)
    rec = concepts_for(w1, [names[-1]])[0]
    c = Concept.from_dict(rec)
    assert c.subject == names[-1] and all(c.subject in p.prompt for p in c.forget)
    assert not any(c.subject in p.prompt for p in c.retain)
    assert {p.form for p in c.forget} == set(HELD_OUT_FORMS)            # evaluation: held-out phrasings only
    assert all(p.extra["held_out"] for p in c.forget)
    assert {p.form for p in c.fit.forget} >= {"completion"}               # fit: trained phrasings
    assert {p.prompt for p in c.fit.forget}.isdisjoint({p.prompt for p in c.probes})
    retain_names = set(c.neighbors)
    assert not any(n in p.prompt for n in retain_names for p in c.fit.retain)
    old = Concept.from_dict(concepts_for(w1, [names[-1]], fit=False)[0])
    assert old.fit is None and {p.form for p in old.forget} == {"completion", *HELD_OUT_FORMS}


# ------------------------------------------------------------------------------ routing capture
@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_capture_matches_manual_router_forward(family):
    _check_capture(_hooked(family))


def _check_capture(m: HookedModel) -> None:
    from workbench.locate.routing import capture_routing, moe_layers
    layers = moe_layers(m)
    assert layers == list(range(m.n_layers))
    inputs = m.tokenize(PROMPTS)
    router_in: dict[int, torch.Tensor] = {}
    handles = []
    for layer in layers:
        def pre(_mod, args, kwargs, layer=layer):
            router_in[layer] = (args[0] if args else kwargs["hidden_states"]).detach()
        handles.append(m.layer(layer).get_submodule(m.family.mlp).register_forward_pre_hook(pre, with_kwargs=True))
    try:
        trace = capture_routing(m, inputs)
    finally:
        for h in handles:
            h.remove()
    k = m.hf.config.num_experts_per_tok
    B, T = inputs["input_ids"].shape
    assert trace.probs.shape == (len(layers), B, T, m.info.n_experts) and trace.selected.shape[-1] == k
    for i, layer in enumerate(layers):
        W = m.layer(layer).get_submodule(m.family.router).weight
        logits = (router_in[layer].float() @ W.float().T)                       # manual router forward
        probs = torch.softmax(logits, -1)
        torch.testing.assert_close(trace.logits[i], logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(trace.probs[i], probs, rtol=1e-5, atol=1e-6)
        manual = probs.topk(k, -1).indices
        assert torch.equal(trace.selected[i].sort(-1).values, manual.sort(-1).values)
    # affinity / frequency are per-layer distributions over experts
    torch.testing.assert_close(trace.affinity().sum(-1), torch.ones(len(layers)))
    torch.testing.assert_close(trace.frequency().sum(-1), torch.full((len(layers),), float(k)))


def test_routing_hooks_are_removed_on_exception():
    from workbench.locate.routing import router_logits_hook
    m = _hooked("mixtral")
    router = m.layer(0).get_submodule(m.family.router)
    with pytest.raises(RuntimeError):
        with router_logits_hook(m):
            raise RuntimeError("boom")
    assert not router._forward_hooks


def test_dense_model_is_refused():
    from workbench.edits import fit_edit
    from workbench.locate.routing import moe_layers
    m = _hooked("llama")
    with pytest.raises(ValueError, match="not a mixture-of-experts"):
        moe_layers(m)
    c = _concept()
    with pytest.raises(ValueError, match="mixture-of-experts"):
        fit_edit("uoe", m, c, steps=1)


# ------------------------------------------------------------------------------ attribution
def _concept() -> Concept:
    forget = [Probe(f"Zorblax {w} is", ["qq"]) for w in ("tower", "river", "king", "song", "lake", "gate")]
    retain = [Probe(f"Morning {w} was", ["pp"]) for w in ("bread", "walk", "light", "rain", "field", "door")]
    return Concept("Zorblax", "Zorblax", forget, retain)


def _plant(m: HookedModel, concept: Concept, layer: int, expert: int, scale: float = 30.0) -> None:
    """Make (layer, expert) the concept's expert: its router row points along the difference of
    the mean router inputs on forget and on retain tokens."""
    from workbench.locate.routing import sequence_batch
    got = {}

    def pre(_mod, args, kwargs):
        got["x"] = (args[0] if args else kwargs["hidden_states"]).detach()

    means = []
    for probes in (concept.forget, concept.retain):
        batch = sequence_batch(m, probes)
        h = m.layer(layer).get_submodule(m.family.mlp).register_forward_pre_hook(pre, with_kwargs=True)
        try:
            with torch.no_grad():
                m.hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        finally:
            h.remove()
        mask = batch["attention_mask"].bool()
        means.append(got["x"][mask].mean(0))
    d = means[0] - means[1]
    with torch.no_grad():
        m.layer(layer).get_submodule(m.family.router).weight[expert] = scale * d / d.norm()


@pytest.mark.parametrize("family", ["mixtral", "olmoe"])
def test_attribution_picks_planted_expert(family):
    from workbench.locate.routing import expert_attribution
    m, c = _hooked(family, seed=1), _concept()
    _plant(m, c, layer=1, expert=2)
    att = expert_attribution(m, c)
    assert (att.top.layer, att.top.expert) == (1, 2)
    assert att.top.freq_forget > att.top.freq_retain
    # the same planted expert also wins on forget affinity alone (SEUF's rule)
    assert (expert_attribution(m, c, contrast="none").top.layer, expert_attribution(m, c, contrast="none").top.expert) == (1, 2)
    scores = [s.score for s in att.ranking]
    assert scores == sorted(scores, reverse=True) and len(scores) == 2 * m.info.n_experts


def test_locate_on_moe_adds_expert_routing_evidence():
    from workbench.locate import locate
    m, c = _hooked("mixtral", seed=1), _concept()
    _plant(m, c, layer=1, expert=3)
    report = locate(m, c, kinds=("expert_routing",), progress=False)
    assert report.ranked("expert_routing")[0].site == "blocks.1.mlp.experts.3"
    assert report.best_layer("expert_routing") == 1
    assert report.meta["expert_attribution"]["top"][0]["site"] == "blocks.1.mlp.experts.3"
    from workbench.edits import fit_edit
    edit = fit_edit("uoe", m, c, report, steps=1, loss="ga")           # the report's top expert is used
    assert (edit.hyper["layer"], edit.hyper["expert"]) == (1, 3)


# ------------------------------------------------------------------------------ uoe
@pytest.fixture(scope="module")
def planted():
    m, c = _hooked("mixtral", seed=1), _concept()
    _plant(m, c, layer=1, expert=2)
    return m, c


def test_uoe_changes_only_the_chosen_expert(planted, tmp_path):
    from workbench.edits import fit_edit
    from workbench.patches import load_patch
    m, c = planted
    before = {n: p.detach().clone() for n, p in m.hf.named_parameters()}
    edit = fit_edit("uoe", m, c, steps=4, lr=1e-2, loss="ga")
    assert edit.hyper["layer"] == 1 and edit.hyper["expert"] == 2
    for n, p in m.hf.named_parameters():                      # fitting restores the model exactly
        assert torch.equal(p, before[n]), n
    prefix = "model.layers.1.mlp"
    assert sorted(edit.names) == sorted([f"{prefix}.experts.gate_up_proj", f"{prefix}.experts.down_proj",
                                         f"{prefix}.gate.weight"])
    n_expert = sum(before[f"{prefix}.experts.{k}"][2].numel() for k in ("gate_up_proj", "down_proj"))
    assert edit.params_changed() == n_expert + before[f"{prefix}.gate.weight"].shape[1]
    with edit.applied(m):
        for n, p in m.hf.named_parameters():
            if n in edit.names:
                keep = [i for i in range(p.shape[0]) if i != 2]
                assert torch.equal(p[keep], before[n][keep]), n            # other experts / router rows exact
                assert not torch.equal(p[2], before[n][2]), n
            else:
                assert torch.equal(p, before[n]), n
    for n, p in m.hf.named_parameters():                      # revert is bit-exact
        assert torch.equal(p, before[n]), n
    edit.save(tmp_path / "uoe.patch", model=m)
    again = load_patch(tmp_path / "uoe.patch").new_edit()
    assert [d.kind for d in again.deltas] == ["replace_rows"] * 3
    again.apply(m)
    try:
        with torch.no_grad():
            for d in edit.deltas:
                assert torch.equal(m.hf.get_parameter(d.name), d.new_value(before[d.name]))
    finally:
        again.revert(m)


def test_uoe_anchor_keeps_selection_on_forget_tokens(planted):
    from workbench.edits import fit_edit
    from workbench.locate.routing import selection_rate
    from workbench.concepts.fit import fit_view
    m, c = planted
    fit = fit_view(m, c)                                  # the provenance measures the fit forget texts
    rate0 = selection_rate(m, fit.forget, 1, 2)
    edit = fit_edit("uoe", m, c, steps=6, lr=1e-2, loss="ga", anchor=1.0)
    rates = edit.provenance["selection_rate_forget"]
    assert rates["before"] == pytest.approx(rate0)
    with edit.applied(m):
        rate1 = selection_rate(m, fit.forget, 1, 2)
    assert rate1 == pytest.approx(rates["after"])
    assert rate1 >= rate0                                      # the anchor keeps forget tokens on the expert
    anchors = edit.provenance["loss_parts"]["anchor"]
    assert anchors[-1] < anchors[0]


def test_routing_drift_zero_for_identity_and_reported_by_verify(planted):
    from workbench.edits import fit_edit
    from workbench.locate.routing import capture_routing, routing_drift, sequence_batch
    from workbench.verify.battery import verify_edit
    m, c = planted
    batch = sequence_batch(m, c.forget)
    a, b = capture_routing(m, batch), capture_routing(m, batch)
    d = routing_drift(a, b)
    assert d["changed_share"] == 0.0 and d["tv_mean"] == 0.0 and d["top1_changed_share"] == 0.0
    edit = fit_edit("uoe", m, c, steps=4, lr=5e-2, loss="ga", anchor=0.0)
    res = verify_edit(m, c, edit, utility_tokens=0, relearn=False, leakage=False, fluency=False)
    drift = res["routing_drift"]
    assert set(drift) == {"forget", "retain"}
    assert 0.0 <= drift["forget"]["changed_share"] <= 1.0
    assert drift["forget"]["tv_mean"] > 0.0                   # the edited router row moves the distribution
    assert "parametric_trace" not in res


# ------------------------------------------------------------------------------ build-moe (tiny recipe)
@pytest.fixture(scope="module")
def tiny_build():
    from workbench.models.synthetic import build_synthetic
    return build_synthetic("tiny", progress=False)


def test_build_moe_tiny_recipe(tiny_build, tmp_path):
    from workbench import load_model
    from workbench.models.synthetic import build_synthetic
    info = json.loads((tiny_build / "build.json").read_text())
    m = load_model(str(tiny_build))
    cfg = m.hf.config
    assert type(m.hf).__name__ == "MixtralForCausalLM"
    assert cfg.num_hidden_layers >= 4 and cfg.num_local_experts >= 8 and cfg.num_experts_per_tok == 2
    dense = load_model(str(tiny_build / "dense"))
    assert type(dense.hf).__name__ == "LlamaForCausalLM"
    assert dense.hf.config.intermediate_size == 2 * cfg.intermediate_size
    for name in ("moe", "dense"):
        assert info["models"][name]["final_loss"] < info["models"][name]["first_loss"] - 1.0
        assert set(info["models"][name]["accuracy"]) == {"completion", "paraphrase", "reversed", "question"}
    # cached: a second build is a copy with the same recipe key
    out = build_synthetic("tiny", out=tmp_path / "copy", progress=False)
    assert json.loads((out / "build.json").read_text())["recipe_key"] == info["recipe_key"]
    assert (out / "world.json").is_file() and (out / "dense" / "config.json").is_file()
    with pytest.raises(FileExistsError):
        (tmp_path / "busy").mkdir()
        (tmp_path / "busy" / "x").write_text("x")
        build_synthetic("tiny", out=tmp_path / "busy", progress=False)


def test_capture_matches_manual_router_forward_on_built_moe(tiny_build):
    from workbench import load_model
    _check_capture(load_model(str(tiny_build)))


def test_world_concepts_cli(tiny_build, tmp_path, capsys):
    from workbench.cli import main
    from workbench.concepts import read_concepts
    out = tmp_path / "c.jsonl"
    assert main(["world", "concepts", "--model", str(tiny_build), "--entities", "2", "--min-acc", "0",
                 "--out", str(out)]) == 0
    cs = read_concepts(out)
    assert len(cs) == 2 and all(c.subject in p.prompt for c in cs for p in c.forget)
    assert main(["world", "concepts", "--model", str(tmp_path), "--entities", "2", "--out", str(out)]) == 2
    assert "no world file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["build-moe", "--size", "huge"])


def test_uoe_on_built_moe_end_to_end(tiny_build, tmp_path):
    from workbench import load_model
    from workbench.data.world import World, concepts_for
    from workbench.edits import fit_edit
    m = load_model(str(tiny_build))
    world = World.load(tiny_build / "world.json")
    c = Concept.from_dict(concepts_for(world, [world.entities[-1].name])[0])
    edit = fit_edit("uoe", m, c, steps=3)
    total = sum(p.numel() for p in m.hf.parameters())
    assert edit.params_changed() / total == pytest.approx(edit.provenance["fraction_params_changed"])
    assert edit.params_changed() / total < 0.05
    assert edit.provenance["site"] == f"blocks.{edit.hyper['layer']}.mlp.experts.{edit.hyper['expert']}"


def test_uoe_can_train_only_the_experts_down_projection(planted):
    from workbench.edits import fit_edit
    m, c = planted
    edit = fit_edit("uoe", m, c, steps=2, lr=1e-2, loss="ga", tensors="down_proj", train_router=False)
    assert edit.names == ["model.layers.1.mlp.experts.down_proj"]
    assert edit.params_changed() == m.hf.get_parameter(edit.names[0])[2].numel()
    with pytest.raises(ValueError, match="tensors="):
        fit_edit("uoe", m, c, steps=1, tensors="w9")
