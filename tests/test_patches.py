"""Patch format, checked apply / bit-exact revert, and HF / PEFT exports, on a tiny random Llama."""
from __future__ import annotations

import json
import zipfile

import pytest
import torch

from workbench.edits.base import Edit, TensorDelta
from workbench.patches import (PatchError, apply_patch, apply_patch_to_folder, export_hf, export_peft,
                               inspect_patch, load_patch, read_manifest, revert_patch, save_patch,
                               tensor_fingerprint)
from workbench.patches import save as patch_save

transformers = pytest.importorskip("transformers")

DOWN0 = "model.layers.0.mlp.down_proj.weight"    # [32, 64]
DOWN1 = "model.layers.1.mlp.down_proj.weight"    # [32, 64]
UP0 = "model.layers.0.mlp.up_proj.weight"        # [64, 32]
O1 = "model.layers.1.self_attn.o_proj.weight"    # [32, 32]
EMBED = "model.embed_tokens.weight"              # [100, 32], tied to lm_head


def tiny(seed: int = 0):
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=100,
                                   max_position_embeddings=64, tie_word_embeddings=True)
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "base"
    tiny(0).save_pretrained(folder)
    (folder / "special_tokens_map.json").write_text("{}\n")  # stands in for tokenizer files
    return folder


def make_edit(kind: str) -> Edit:
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    deltas = {
        "dense": [TensorDelta(UP0, "dense", (64, 32), "float32", delta=r(64, 32))],
        "low_rank": [TensorDelta(DOWN0, "low_rank", (32, 64), "float32", A=r(32, 2), B=r(2, 64)),
                     TensorDelta(DOWN0, "low_rank", (32, 64), "float32", A=r(32, 1), B=r(1, 64)),
                     TensorDelta(DOWN1, "low_rank", (32, 64), "float32", A=r(32, 1), B=r(1, 64))],
        "sparse": [TensorDelta(O1, "sparse", (32, 32), "float32", indices=torch.tensor([0, 5, 77, 1023]),
                               values=r(4))],
        "replace_rows": [TensorDelta(EMBED, "replace_rows", (100, 32), "float32", indices=torch.tensor([3, 7]),
                                     values=r(2, 32), dim=0)],
    }
    chosen = [d for ds in deltas.values() for d in ds] if kind == "mixed" else deltas[kind]
    report = {"forget": {"hit_before": 0.9, "hit_after": 0.0, "prob_before": 0.7, "prob_after": 0.01},
              "perplexity": {"before": 11.2, "after": 11.3}}
    return Edit(method="rocr", model_id="tiny-llama", deltas=chosen, concept="Harry Potter",
                hyper={"layer": 0, "lambda": 0.5}, seed=7, provenance={"probes": 3}, report=report,
                edit_seconds=0.25)


def logits(model, seed: int = 3):
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(input_ids=ids).logits


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------ format
@pytest.mark.parametrize("kind", ["dense", "low_rank", "sparse", "replace_rows", "mixed"])
def test_round_trip_each_kind(tmp_path, kind):
    model, edit = tiny(0), make_edit(kind)
    path = save_patch(edit, tmp_path / "p", model=model)
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "tensors.safetensors"]
    patch = load_patch(path)
    assert len(patch.edit.deltas) == len(edit.deltas)
    for a, b in zip(edit.deltas, patch.edit.deltas):
        assert a.meta() == b.meta()
        assert a.tensors().keys() == b.tensors().keys()
        assert all(torch.equal(a.tensors()[k], b.tensors()[k]) for k in a.tensors())
    m = patch.manifest
    assert m["schema_version"] == 1 and m["coordinates"] == "hf" and m["base_model"] == "tiny-llama"
    assert m["fingerprints"] == {n: tensor_fingerprint(model.get_parameter(n)) for n in edit.names}
    assert ("dense_note" in m) == (kind in ("dense", "mixed"))
    assert m["params_changed"] == edit.params_changed()
    assert set(m["library_versions"]) == {"workbench", "torch", "transformers", "safetensors"}
    e = patch.edit
    assert (e.method, e.concept, e.hyper, e.seed, e.provenance, e.report) == \
           (edit.method, edit.concept, edit.hyper, edit.seed, edit.provenance, edit.report)
    # fingerprints from the originals of an applied edit are the same
    with edit.applied(model):
        again = save_patch(edit, tmp_path / "q")
    assert read_manifest(again)["fingerprints"] == m["fingerprints"]


def test_fingerprint_covers_dtype_and_shape():
    t = torch.zeros(4, 6)
    assert tensor_fingerprint(t) != tensor_fingerprint(t.reshape(6, 4))
    assert tensor_fingerprint(t) != tensor_fingerprint(t.to(torch.int32))
    assert tensor_fingerprint(t.T.contiguous().T) == tensor_fingerprint(t)


def test_zip_round_trip_and_apply(tmp_path):
    model, edit = tiny(0), make_edit("mixed")
    path = save_patch(edit, tmp_path / "p.zip", model=model)
    assert path.is_file() and sorted(zipfile.ZipFile(path).namelist()) == ["manifest.json", "tensors.safetensors"]
    patch = load_patch(path)
    for a, b in zip(edit.deltas, patch.edit.deltas):
        assert all(torch.equal(a.tensors()[k], b.tensors()[k]) for k in a.tensors())
    before = state(model)
    applied = apply_patch(path, model)
    revert_patch(applied, model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_damaged_zip_is_a_patch_error_naming_the_file(tmp_path):
    path = save_patch(make_edit("mixed"), tmp_path / "p.zip", model=tiny(0))
    data = bytearray(path.read_bytes())
    data[10:40] = bytes(30)                          # the first member's local header
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(PatchError, match=r"bad\.zip: damaged zip"):
        load_patch(bad)


# ------------------------------------------------------------------------------ apply / revert
def test_apply_revert_bit_exact(tmp_path):
    model, edit = tiny(0), make_edit("mixed")
    path = save_patch(edit, tmp_path / "p", model=model)
    before = state(model)
    applied = apply_patch(path, model)
    after = model.state_dict()
    touched = set(edit.names) | {"lm_head.weight"}  # lm_head is tied to the edited embedding
    for k, v in before.items():
        assert torch.equal(v, after[k]) == (k not in touched), k
    with pytest.raises(PatchError, match="already patched"):  # a second apply is refused
        apply_patch(path, model)
    revert_patch(applied, model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(PatchError, match="not applied"):
        revert_patch(applied, model)


def test_wrong_base_refused(tmp_path):
    path = save_patch(make_edit("low_rank"), tmp_path / "p", model=tiny(0))
    other = tiny(1)
    before = state(other)
    with pytest.raises(PatchError) as err:
        apply_patch(path, other)
    msg = str(err.value)
    assert "\n" not in msg and "tiny-llama" in msg and "fingerprint differs" in msg and DOWN0 in msg
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in before.items())
    with pytest.raises(PatchError, match="expects float32"):
        apply_patch(path, tiny(0).to(torch.bfloat16))


def test_corrupted_tensors_refused(tmp_path):
    path = save_patch(make_edit("low_rank"), tmp_path / "p", model=tiny(0))
    f = path / "tensors.safetensors"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(PatchError, match=r"tensors\.safetensors checksum mismatch \(expected [0-9a-f]{64}, got"):
        load_patch(path)
    with pytest.raises(PatchError, match="checksum mismatch"):
        apply_patch(path, tiny(0))
    assert "MISMATCH" in inspect_patch(path)


@pytest.mark.parametrize("drop", ["fingerprints", "tensors_sha256", "method"])
def test_malformed_manifest_names_the_key(tmp_path, drop):
    path = save_patch(make_edit("sparse"), tmp_path / "p", model=tiny(0))
    m = json.loads((path / "manifest.json").read_text())
    del m[drop]
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PatchError, match=rf"manifest\.json: missing key '{drop}'"):
        load_patch(path)


def test_malformed_tensor_entry_and_json(tmp_path):
    path = save_patch(make_edit("sparse"), tmp_path / "p", model=tiny(0))
    m = json.loads((path / "manifest.json").read_text())
    del m["tensors"][0]["kind"]
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PatchError, match=r"manifest\.json: missing key 'tensors'\[0\]\.'kind'"):
        load_patch(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(PatchError, match=r"manifest\.json: not valid JSON"):
        load_patch(path)


# ------------------------------------------------------------------------------ exports
def test_export_hf_matches_patched_model(tmp_path, base_folder):
    patch = load_patch(save_patch(make_edit("mixed"), tmp_path / "p.zip", model=tiny(0)))
    model = tiny(0)
    before = state(model)
    out_model = export_hf(patch, model, tmp_path / "from_model")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # left as it was
    out_folder = apply_patch_to_folder(patch, base_folder, tmp_path / "from_folder")
    assert (out_folder / "special_tokens_map.json").exists() and (out_folder / "workbench_patch.json").exists()
    with _applied(patch, model):
        want = logits(model)
    for out in (out_model, out_folder):
        loaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
        assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
        assert torch.allclose(logits(loaded), want, atol=1e-5)
    with pytest.raises(PatchError, match="fingerprint differs"):
        export_hf(patch, tiny(1), tmp_path / "wrong")
    assert not (tmp_path / "wrong").exists()


class _applied:
    """Apply a patch for the duration of a with-block."""

    def __init__(self, patch, model):
        self.patch, self.model = patch, model

    def __enter__(self):
        self.edit = apply_patch(self.patch, self.model)
        return self.model

    def __exit__(self, *exc):
        revert_patch(self.edit, self.model)


def test_export_peft_matches_patched_model(tmp_path):
    peft = pytest.importorskip("peft")
    path = save_patch(make_edit("low_rank"), tmp_path / "p", model=tiny(0))
    out = export_peft(path, tiny(0), tmp_path / "adapter")
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == cfg["lora_alpha"] and cfg["alpha_pattern"] == cfg["rank_pattern"]
    assert sorted([cfg["r"], *cfg["rank_pattern"].values()]) == [1, 3]  # DOWN0: 2 + 1 concatenated
    model = tiny(0)
    with _applied(path, model):
        want = logits(model)
    lora = peft.PeftModel.from_pretrained(tiny(0), out).eval()
    assert torch.allclose(logits(lora), want, atol=1e-5)
    assert not torch.allclose(logits(tiny(0)), want, atol=1e-5)  # the patch does change the logits
    for kind in ("dense", "mixed"):
        with pytest.raises(PatchError, match="PEFT export needs low-rank deltas.*export_hf"):
            export_peft(make_edit(kind), tiny(0), tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


# ------------------------------------------------------------------------------ size, inspect, atomicity
def test_rank_one_patch_is_tiny(tmp_path):
    layer = torch.nn.Linear(1536, 576, bias=False)  # a SmolLM2-sized down projection [576, 1536]
    delta = TensorDelta("weight", "low_rank", (576, 1536), "float32", A=torch.randn(576, 1), B=torch.randn(1, 1536))
    edit = Edit(method="rocr", model_id="standalone", deltas=[delta])
    folder = save_patch(edit, tmp_path / "p", model=layer)
    size = sum(f.stat().st_size for f in folder.iterdir())
    zipped = save_patch(edit, tmp_path / "p.zip", model=layer).stat().st_size
    assert size < 50_000 and zipped < 50_000, (size, zipped)


def test_inspect_summary(tmp_path):
    path = save_patch(make_edit("mixed"), tmp_path / "p.zip", model=tiny(0))
    text = inspect_patch(path)
    for needle in ("rocr", "Harry Potter", "tiny-llama", DOWN0, "low_rank", "rank 2", "replace_rows",
                   "checksum  ok", "forget: hit 0.90 -> 0.00", "perplexity: 11.20 -> 11.30", "dense patch"):
        assert needle in text, needle


def test_nothing_left_behind_on_failure(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    model, edit = tiny(0), make_edit("low_rank")
    with pytest.raises(PatchError, match="not a directory"):
        save_patch(edit, tmp_path / "file" / "p", model=model)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(patch_save.Path, "write_bytes", boom)       # the folder's files
    monkeypatch.setattr(patch_save.zipfile.ZipFile, "writestr", boom)  # the zip's members
    for name in ("p", "p.zip"):
        with pytest.raises(PatchError, match="disk full"):
            save_patch(edit, tmp_path / name, model=model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    with pytest.raises(PatchError, match="needs `model=`"):
        save_patch(edit, tmp_path / "p")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("x")
    monkeypatch.undo()
    with pytest.raises(PatchError, match="not a patch"):
        save_patch(edit, tmp_path / "data", model=model)
    assert (tmp_path / "data" / "keep.txt").exists()
