"""Hostile inputs (issue #20): every case of the issue refused with a one-line error, no traceback,
nothing written outside the named output. Tiny random models only; property-based tests (hypothesis)
for the manifest and concept parsers."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import torch

from workbench.edits.base import Edit, TensorDelta
from workbench.errors import WorkbenchError
from workbench.patches import (PatchError, apply_patch, export_hf, export_peft, inspect_report, load_patch,
                               save_patch, tensor_fingerprint)
from workbench.patches.format import MANIFEST, TENSORS, canonical_json, manifest_checksum

transformers = pytest.importorskip("transformers")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
DOWN0 = "model.layers.0.mlp.down_proj.weight"    # [32, 64]
UP1 = "model.layers.1.mlp.up_proj.weight"        # [64, 32]
SITE = "blocks.1.hook_resid_post"


# ------------------------------------------------------------------------------ helpers
def tiny_llama(seed: int = 0, ctx: int = 64):
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=128, max_position_embeddings=ctx,
                                   tie_word_embeddings=True)
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(cfg).eval()


def hooked(seed: int = 0, ctx: int = 64):
    from tests.tiny_models import CharTokenizer
    from workbench.models.hooked import HookedModel
    return HookedModel(tiny_llama(seed, ctx), CharTokenizer(), "tiny-llama")


def low_rank_edit(scale: float = 0.1, method: str = "rocr", concept: str | None = "Harry Potter") -> Edit:
    g = torch.Generator().manual_seed(1)
    deltas = [TensorDelta(DOWN0, "low_rank", (32, 64), "float32", A=torch.randn(32, 1, generator=g) * scale,
                          B=torch.randn(1, 64, generator=g)),
              TensorDelta(UP1, "dense", (64, 32), "float32", delta=torch.randn(64, 32, generator=g) * scale)]
    return Edit(method=method, model_id="tiny-llama", deltas=deltas, concept=concept, hyper={"lambda_reg": 0.5},
                seed=0, report={"forget": {"hit_before": 1.0, "hit_after": 0.0}})


def state(model):
    return {k: v.detach().clone() for k, v in getattr(model, "hf", model).state_dict().items()}


def same_state(model, before) -> bool:
    return all(torch.equal(v, getattr(model, "hf", model).state_dict()[k]) for k, v in before.items())


def snapshot(root: Path) -> list:
    """Every path under root with size and mtime: 'nothing written' means this does not change."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            st_ = p.lstat()
            out.append((str(p.relative_to(root)), st_.st_size, st_.st_mtime_ns))
    return sorted(out)


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert isinstance(exc_info.value, WorkbenchError), type(exc_info.value)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


def forge(folder: Path, mutate=None, tensors: bytes | None = None, resign: bool = True, raw: bytes | None = None):
    """Rewrite a patch folder as an attacker would: change the manifest / tensors, recompute the checksums."""
    m = json.loads((folder / MANIFEST).read_text())
    if tensors is not None:
        (folder / TENSORS).write_bytes(tensors)
        if resign:
            m["tensors_sha256"] = hashlib.sha256(tensors).hexdigest()
    if mutate is not None:
        mutate(m)
    if resign and isinstance(m.get("checksum"), dict):
        m["checksum"]["sha256"] = manifest_checksum(m)
    (folder / MANIFEST).write_bytes(raw if raw is not None else json.dumps(m).encode())
    return folder


def tensors_with(folder: Path, **replace) -> bytes:
    from safetensors.torch import load, save
    t = load((folder / TENSORS).read_bytes())
    t.update(replace)
    return save(t)


def cli(argv, capsys):
    from workbench.cli import main
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_cli_refused(rc, err, needle: str = ""):
    """Exit 2, no traceback, exactly one error line (progress bars of a model load may precede it)."""
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert rc == 2 and "Traceback" not in err and len(lines) == 1 and lines[0].startswith("workbench "), err
    assert needle.lower() in lines[0].lower(), lines[0]


@pytest.fixture()
def no_model_load(monkeypatch):
    """Fail the test if the CLI loads a model: the checks must come first."""
    import workbench.models

    def boom(*a, **k):
        raise AssertionError("the model was loaded before the input was checked")
    monkeypatch.setattr(workbench.models, "load_model", boom)


@pytest.fixture()
def patch_dir(tmp_path):
    return save_patch(low_rank_edit(), tmp_path / "p", model=tiny_llama(0))


@pytest.fixture(scope="module")
def clean_patch(tmp_path_factory):
    """(manifest dict, tensors bytes) of one valid patch, for the property tests."""
    folder = save_patch(low_rank_edit(), tmp_path_factory.mktemp("clean") / "p", model=tiny_llama(0))
    return json.loads((folder / MANIFEST).read_text()), (folder / TENSORS).read_bytes()


# ------------------------------------------------------------------ 1. path traversal
@pytest.mark.parametrize("method", ["../../evil", "/tmp/evil", "a/b", "..", "x\nrocr", "ROCR;rm", ""])
def test_manifest_method_must_match_a_strict_pattern(patch_dir, method):
    forge(patch_dir, lambda m: m.update(method=method))
    with pytest.raises(PatchError) as e:
        load_patch(patch_dir)
    assert "method" in one_line(e)


@pytest.mark.parametrize("key,value", [("concept", "line1\nline2"), ("concept", "\x1b[2Jclear"),
                                       ("base_model", ""), ("base_model", "x" * 1000)])
def test_manifest_free_text_has_no_control_characters(patch_dir, key, value):
    forge(patch_dir, lambda m: m.update({key: value}))
    with pytest.raises(PatchError) as e:
        load_patch(patch_dir)
    assert key in one_line(e)


@pytest.mark.parametrize("where", ["tensor name", "fingerprint name", "tensor key"])
def test_manifest_names_must_match_strict_patterns(patch_dir, where):
    def mutate(m):
        if where == "tensor name":
            m["tensors"][0]["name"] = "../../x.weight"
        elif where == "fingerprint name":
            m["fingerprints"]["../etc/passwd"] = "0" * 64
        else:
            m["tensors"][0]["keys"]["A"] = "/abs/key"
    forge(patch_dir, mutate)
    with pytest.raises(PatchError) as e:
        load_patch(patch_dir)
    one_line(e)


def test_dashboard_never_builds_a_path_from_a_patch(tmp_path, monkeypatch):
    from workbench.app.verify import download_name, patch_bytes, read_patch_upload
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    (tmp_path / "victim.zip").write_bytes(b"keep me")
    outside = lambda: [s for s in snapshot(tmp_path) if s[0] != "tmp"]   # noqa: E731 — all but the temp dir
    before = outside()
    model = tiny_llama(0)
    with pytest.raises(PatchError) as e:              # the issue's case: a method holding a path
        patch_bytes(low_rank_edit(method=f"../../{tmp_path}/victim"), model)
    assert "method" in one_line(e)
    data = patch_bytes(low_rank_edit(concept="../../etc/passwd"), model)   # free text: fine, never a path
    patch, text = read_patch_upload(data, "../../../victim.zip")
    assert patch.edit.concept == "../../etc/passwd" and "checksum  ok" in text
    assert outside() == before and (tmp_path / "victim.zip").read_bytes() == b"keep me"
    assert list(private.iterdir()) == []                # and the temporaries are gone
    name = download_name("../../etc/passwd.rocr", ".patch.zip")
    assert "/" not in name and ".." not in name.removesuffix(".patch.zip")


# ------------------------------------------------------------------ 2. zip bombs
def bomb_zip(path: Path, manifest: dict, payload: bytes) -> Path:
    manifest = dict(manifest, tensors_sha256=hashlib.sha256(payload).hexdigest())
    manifest["checksum"] = dict(manifest["checksum"], sha256=manifest_checksum(manifest))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(MANIFEST, json.dumps(manifest), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(TENSORS, payload, compress_type=zipfile.ZIP_DEFLATED)
    return path


def test_zip_member_bounded_by_declared_shapes(tmp_path, clean_patch, capsys):
    manifest, _ = clean_patch
    path = bomb_zip(tmp_path / "bomb.zip", manifest, b"\0" * (48 << 20))       # 48 MB of zeros in ~50 KB
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(PatchError) as e:
            load_patch(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "inflates to" in one_line(e) and peak < 8 << 20, peak
    rc, out, err = cli(["patch", "inspect", path], capsys)
    assert_cli_refused(rc, err, "inflates")
    from workbench.app.verify import read_patch_upload
    with pytest.raises(PatchError) as e:
        read_patch_upload(path.read_bytes(), "bomb.zip")
    assert "bomb.zip" in one_line(e)


def test_zip_ceiling_and_compression_ratio(tmp_path, clean_patch, patch_dir, monkeypatch):
    manifest, _ = clean_patch
    big = json.loads(json.dumps(manifest))
    big["tensors"][1]["shape"] = [4096, 4096]           # declares 128 MB: within the shape bound...
    big["base_tensors"][UP1]["shape"] = [4096, 4096]
    with pytest.raises(PatchError) as e:                # ...but 20 MB of zeros compress 1000:1
        load_patch(bomb_zip(tmp_path / "ratio.zip", big, b"\0" * (20 << 20)))
    assert "compressed" in one_line(e)
    monkeypatch.setenv("WORKBENCH_MAX_PATCH_BYTES", "1000")
    with pytest.raises(PatchError) as e:
        load_patch(patch_dir)
    assert "WORKBENCH_MAX_PATCH_BYTES" in one_line(e)


def test_dashboard_upload_limit_is_set():
    from workbench.cli.dashboard import streamlit_command
    from workbench.app.verify import UPLOAD_MAX_MB
    cmd = streamlit_command()
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == str(UPLOAD_MAX_MB) and UPLOAD_MAX_MB <= 64


# ------------------------------------------------------------------ 3. NaN / Inf
@pytest.mark.parametrize("value", ["NaN", "nan", "Infinity", "-inf", "1e999", "[1, NaN]"])
def test_cli_set_refuses_non_finite(tmp_path, capsys, no_model_load, value):
    rc, _, err = cli(["edit", "rocr", "smollm2-135m", "--concepts", "builtin", "--concept", "Japan",
                      "--out", tmp_path / "p", "--set", f"lambda_reg={value}"], capsys)
    assert_cli_refused(rc, err, "finite")
    assert list(tmp_path.iterdir()) == []


def test_edit_config_refuses_non_finite_and_wrong_types():
    from workbench.edits import fit_edit
    from workbench.errors import HyperParameterError
    for bad in ({"lambda_reg": float("nan")}, {"lambda_reg": float("inf")}, {"lambda_reg": "abc"},
                {"layer": 1.5}, {"keys": 3}):
        with pytest.raises(HyperParameterError) as e:
            fit_edit("rocr", None, None, **bad)          # refused before the method runs
        assert next(iter(bad)) in one_line(e)


@pytest.mark.parametrize("case", ["nan", "inf", "overflow", "hyper"])
def test_save_refuses_non_finite(tmp_path, case):
    model, edit = tiny_llama(0), low_rank_edit()
    if case == "nan":
        edit.deltas[1].delta[3, 4] = float("nan")
    elif case == "inf":
        edit.deltas[0].A[0, 0] = float("inf")
    elif case == "overflow":                          # finite delta, non-finite weight
        edit.deltas[1].delta.fill_(3e38)
        edit.deltas.append(TensorDelta(UP1, "dense", (64, 32), "float32", delta=torch.full((64, 32), 3e38)))
    else:
        edit.hyper["lambda_reg"] = float("nan")
    for name in ("p", "p.zip"):
        with pytest.raises(PatchError) as e:
            save_patch(edit, tmp_path / name, model=model)
        one_line(e)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("raw", [b'{"schema_version": NaN}', b'{"x": Infinity}', b'{"x": 1e400}'])
def test_load_refuses_non_finite_json(patch_dir, raw):
    forge(patch_dir, raw=raw)
    with pytest.raises(PatchError) as e:
        load_patch(patch_dir)
    assert "finite" in one_line(e) or "valid JSON" in str(e.value)


def test_load_and_apply_refuse_non_finite_tensors(patch_dir):
    t = torch.zeros(64, 32)
    t[0, 0] = float("nan")
    forge(patch_dir, tensors=tensors_with(patch_dir, **{"1.delta": t}))
    with pytest.raises(PatchError) as e:
        load_patch(patch_dir)
    assert "NaN or infinite" in one_line(e)
    forge(patch_dir, tensors=tensors_with(patch_dir, **{"1.delta": torch.full((64, 32), 3e38)}))
    patch = load_patch(patch_dir)                       # finite, but W + 2 * 3e38 overflows at apply
    patch.edit.deltas.append(patch.edit.deltas[1])
    model = tiny_llama(0)
    before = state(model)
    with pytest.raises(PatchError) as e:
        apply_patch(patch, model)
    assert "non-finite" in one_line(e) and same_state(model, before)
    with pytest.raises(PatchError):
        export_hf(patch, model, patch_dir.parent / "hf")
    assert not (patch_dir.parent / "hf").exists()


# ------------------------------------------------------------------ 4. revert a never-patched checkpoint
@pytest.fixture()
def folders(tmp_path):
    base = tmp_path / "base"
    tiny_llama(0).save_pretrained(base)
    patch = save_patch(low_rank_edit(), tmp_path / "p.zip", model=tiny_llama(0))
    return base, patch


def test_revert_refuses_a_checkpoint_that_does_not_carry_the_patch(folders, capsys):
    from workbench.patches.revert import revert_folder
    base, patch = folders
    before = snapshot(base.parent)
    with pytest.raises(PatchError) as e:
        revert_folder(patch, base, base.parent / "out")
    assert "patched fingerprint" in one_line(e)
    rc, _, err = cli(["patch", "revert", patch, "--model", base, "--out", base.parent / "out"], capsys)
    assert_cli_refused(rc, err, "does not carry this patch")
    assert snapshot(base.parent) == before


def test_revert_of_a_patched_checkpoint_restores_the_base(folders):
    from workbench.patches.revert import revert_folder
    base, patch = folders
    patched = export_hf(patch, base, base.parent / "patched")
    out, exact = revert_folder(patch, patched, base.parent / "reverted")
    reverted = transformers.AutoModelForCausalLM.from_pretrained(out)
    original = tiny_llama(0)
    for n in (DOWN0, UP1):
        assert torch.allclose(reverted.get_parameter(n), original.get_parameter(n), atol=1e-6)
    assert exact == all(tensor_fingerprint(reverted.get_parameter(n)) == tensor_fingerprint(original.get_parameter(n))
                        for n in (DOWN0, UP1))
    with pytest.raises(PatchError) as e:               # reverting twice: no longer the patched state
        revert_folder(patch, out, base.parent / "twice")
    one_line(e)


def test_revert_of_an_older_patch_needs_unverified(tmp_path, folders):
    from workbench.patches.revert import revert_folder
    base, _ = folders
    old = save_patch(low_rank_edit(), tmp_path / "old", model=tiny_llama(0))
    forge(old, lambda m: m.pop("patched_fingerprints"))
    with pytest.raises(PatchError) as e:
        revert_folder(old, base, tmp_path / "out")
    assert "--unverified" in one_line(e) and not (tmp_path / "out").exists()
    out, exact = revert_folder(old, base, tmp_path / "out", unverified=True)
    assert out.is_dir() and not exact


# ------------------------------------------------------------------ 5. unbounded prompts
def concept_line(prompt: str, name: str = "c") -> str:
    return json.dumps({"name": name, "subject": "s", "forget": [{"prompt": prompt, "answers": ["a"]}],
                       "retain": [{"prompt": "r", "answers": ["b"]}]})


def test_parse_time_character_ceiling(tmp_path, capsys, no_model_load):
    from workbench.concepts import ConceptFileError, parse_concepts
    from workbench.concepts.limits import MAX_PROMPT_CHARS
    with pytest.raises(ConceptFileError) as e:
        parse_concepts(concept_line("x" * 100_000), "big.jsonl")
    assert "big.jsonl:1: forget[0].prompt" in one_line(e) and f"{MAX_PROMPT_CHARS:,}" in str(e.value)
    (tmp_path / "big.jsonl").write_text(concept_line("x" * 100_000) + "\n")
    rc, _, err = cli(["locate", "smollm2-135m", "--concepts", tmp_path / "big.jsonl", "--concept", "c",
                      "--json", tmp_path / "out.json"], capsys)
    assert_cli_refused(rc, err, "forget[0].prompt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.jsonl"]


def test_prompt_length_checked_against_the_model_context(monkeypatch):
    from workbench.concepts import parse_concepts
    from workbench.concepts.limits import PromptTooLongError, check_prompt_lengths, context_length
    from workbench.verify import probes as probes_mod
    model = hooked(ctx=64)
    assert context_length(model) == 64
    model.tokenizer.model_max_length = 48
    assert context_length(model) == 48                        # whichever is set; the smaller of the two
    ok, = parse_concepts(concept_line("short prompt"))
    check_prompt_lengths(model, ok)
    long, = parse_concepts(concept_line("y" * 500))           # passes parsing, cannot fit 48 tokens
    with pytest.raises(PromptTooLongError) as e:
        check_prompt_lengths(model, [long])
    assert "concept 'c': forget[0].prompt is 500 tokens" in one_line(e) and "at most 48 tokens" in str(e.value)
    monkeypatch.setattr(probes_mod, "generate_batched", lambda *a, **k: pytest.fail("allocated before the check"))
    with pytest.raises(PromptTooLongError):
        probes_mod.score_probes(model, long.forget)           # scoring uses the same check


def test_dashboard_limits_apply_to_uploaded_concept_files():
    from workbench.app import concepts as app_concepts
    from workbench.app import core
    from workbench.concepts import ConceptFileError
    from workbench.concepts.limits import PromptTooLongError
    with pytest.raises(ConceptFileError) as e:
        app_concepts.parse_concept_text(concept_line("z" * (core.MAX_PROMPT_CHARS + 1)).encode(), "upload.jsonl")
    assert "upload.jsonl" in one_line(e) and "dashboard" in str(e.value)
    with pytest.raises(PromptTooLongError) as e:
        app_concepts.parse_concept_text(concept_line("z" * 300), "upload.jsonl", model=hooked(ctx=64))
    one_line(e)
    with pytest.raises(PromptTooLongError):
        app_concepts.concept_from_form("c", "s", "", [{"prompt": "z" * 300, "answers": "a"}],
                             [{"prompt": "r", "answers": "b"}], model=hooked(ctx=64))


# ------------------------------------------------------------------ 6. --out clobbering
def test_save_refuses_files_and_non_patch_zips(tmp_path):
    model, edit = tiny_llama(0), low_rank_edit()
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "junk.zip").write_text("not a zip")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "an ordinary zip")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("x")
    before = snapshot(tmp_path)
    for target in ("notes.txt", "junk.zip", "other.zip", "data"):
        with pytest.raises(PatchError) as e:
            save_patch(edit, tmp_path / target, model=model)
        assert "refusing to replace" in one_line(e)
    assert snapshot(tmp_path) == before                  # no hidden .notes.txt.old either


def test_cli_checks_out_before_loading_the_model(tmp_path, capsys, no_model_load, patch_dir):
    (tmp_path / "notes.txt").write_text("mine")
    rc, _, err = cli(["edit", "rocr", "smollm2-135m", "--concepts", "builtin", "--concept", "Japan",
                      "--out", tmp_path / "notes.txt"], capsys)
    assert_cli_refused(rc, err, "refusing to replace")
    for action in ("apply", "export"):
        rc, _, err = cli(["patch", action, patch_dir, "--model", "smollm2-135m", "--out", tmp_path / "notes.txt"],
                         capsys)
        assert_cli_refused(rc, err, "refusing to replace")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_replacing_a_patch_folder_is_one_rename_and_stale_temps_go(tmp_path):
    model, edit = tiny_llama(0), low_rank_edit()
    target = save_patch(edit, tmp_path / "p", model=model)
    first = target.stat().st_ino
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".p.wbtmp-{dead.pid}.abcd"
    stale.mkdir()
    (stale / "half.bin").write_bytes(b"x")
    save_patch(edit, target, model=model)
    assert target.stat().st_ino != first and sorted(p.name for p in tmp_path.iterdir()) == ["p"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask            # not 0700 next to a 0644 manifest
    assert (target / MANIFEST).stat().st_mode & 0o777 == 0o666 & ~umask


def test_replacing_a_patch_folder_never_leaves_the_target_missing(tmp_path, monkeypatch):
    """The replace is one atomic exchange (renameat2), not rename-away-then-rename-in."""
    model, edit = tiny_llama(0), low_rank_edit()
    target = save_patch(edit, tmp_path / "p", model=model)
    monkeypatch.setattr(Path, "rename", lambda *a, **k: pytest.fail("the folder was replaced by two renames"))
    save_patch(low_rank_edit(scale=0.2), target, model=model)
    assert load_patch(target).edit.deltas[1].delta.abs().max() > low_rank_edit().deltas[1].delta.abs().max()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


# ------------------------------------------------------------------ 7. one-line errors, not tracebacks
def test_deeply_nested_json_is_one_line(tmp_path, patch_dir, capsys):
    from workbench.concepts import ConceptFileError, parse_concepts
    forge(patch_dir, raw=b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(PatchError) as e:
        load_patch(patch_dir)
    assert "nested" in one_line(e)
    (patch_dir / MANIFEST).write_bytes(b'{"a":' * 100_000)
    rc, _, err = cli(["patch", "inspect", patch_dir], capsys)
    assert_cli_refused(rc, err, "nested")
    for text in ('{"name": ' + "[" * 100_000, '{"name": "c", "extra": ' + "[" * 40 + "]" * 40 + "}"):
        with pytest.raises(ConceptFileError) as e:
            parse_concepts(text, "deep.jsonl")
        assert "deep.jsonl:1" in one_line(e) and "nested" in str(e.value)


@pytest.mark.parametrize("argv,needle", [
    (["edit", "rocr", "smollm2-135m", "--concepts", "builtin", "--concept", "Japan", "--out", "{tmp}/p",
      "--set", "lambda_reg=abc"], "expected float"),
    (["edit", "rocr", "smollm2-135m", "--concepts", "builtin", "--concept", "Japan", "--out", "{tmp}/p",
      "--set", "nosuchkey=1"], "unknown hyper-parameter"),
    (["edit", "nosuchmethod", "smollm2-135m", "--concepts", "builtin", "--concept", "Japan", "--out", "{tmp}/p"],
     "unknown edit method"),
    (["info", "smollm2-135m", "--device", "cuda:99"], "cuda"),
    (["info", "smollm2-135m", "--device", "bogus"], "not a device"),
    (["lens", "smollm2-135m", ""], "empty"),
    (["lens", "smollm2-135m", "abc\udc80def"], "surrogate"),
    (["bench", "smollm2-135m", "--concepts", "builtin", "--methods", "rocr", "--json", "{tmp}/b.json",
      "--hyper", '{"rocr": {"lambda_reg": "abc"}}'], "expected float"),
])
def test_cli_bad_arguments_are_one_line(tmp_path, capsys, no_model_load, argv, needle):
    rc, _, err = cli([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert_cli_refused(rc, err, needle)
    assert list(tmp_path.iterdir()) == []


def test_cuda_without_gpu_is_one_line(capsys, no_model_load):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; cuda:99 above covers the refusal")
    rc, _, err = cli(["info", "smollm2-135m", "--device", "cuda"], capsys)
    assert_cli_refused(rc, err, "no CUDA GPU")


def test_pickle_only_model_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "pickled"
    folder.mkdir()
    tiny_llama(0).config.save_pretrained(folder)
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")
    rc, _, err = cli(["info", folder], capsys)
    assert_cli_refused(rc, err, "pickle")


def test_concept_lone_surrogate_is_one_line():
    from workbench.concepts import ConceptFileError, parse_concepts
    with pytest.raises(ConceptFileError) as e:
        parse_concepts(concept_line("abc\\ud800def").replace("\\\\ud800", "\\ud800"))
    assert "surrogate" in one_line(e)


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only WorkbenchErrors (and missing files) are one-liners; a programming error is re-raised."""
    import workbench.cli.models as info_mod
    from workbench.cli import main
    from workbench.errors import is_user_error
    monkeypatch.setattr(info_mod, "cmd_info", lambda args: int("not a number"))
    with pytest.raises(ValueError, match="invalid literal"):
        main(["info", "x"])
    monkeypatch.setattr(info_mod, "cmd_info", lambda args: {}["k"])
    with pytest.raises(KeyError):
        main(["info", "x"])
    try:
        {}["k"]
    except KeyError as exc:
        assert not is_user_error(exc)
    from workbench.edits.base import hook_class
    try:                                   # a deliberate check with a message, not yet a WorkbenchError
        hook_class("nope")
    except ValueError as exc:
        assert is_user_error(exc)


# ------------------------------------------------------------------ 7/8. hook (SAE clamp) patches
@pytest.fixture()
def clamp(tmp_path, monkeypatch):
    from tests.test_sae import random_topk
    from workbench.edits.sae_clamp import sae_clamp_edit
    from workbench.sae.store import load_sae, save_sae
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    model = hooked()
    save_sae(random_topk(32, 64, 8), tmp_path / "sae", "rand", SITE, model.model_id)
    handle = load_sae(tmp_path / "sae")
    edit = sae_clamp_edit(model, handle, [3, 5], "c", mode="scale", scale=0.0, norm_factor=None)
    return model, edit.save(tmp_path / "clamp.patch"), tmp_path


def apply_refused(model, path, needle):
    before, logits = state(model), model.logits(["hello"])
    with pytest.raises(PatchError) as e:
        apply_patch(path, model)
    assert needle in one_line(e)
    assert same_state(model, before) and torch.equal(model.logits(["hello"]), logits)   # no hook left behind


def test_clamp_feature_out_of_range_refused_before_a_forward(clamp):
    model, path, _ = clamp
    forge(path, tensors=tensors_with(path, **{"h0.features": torch.tensor([3, 999])}))
    apply_refused(model, path, "out of range")


def test_clamp_wrong_width_and_wrong_layer_refused(clamp):
    from tests.test_sae import random_topk
    from workbench.sae.store import load_sae, save_sae
    model, path, tmp = clamp
    save_sae(random_topk(16, 64, 8), tmp / "narrow", "narrow", SITE, "other")
    narrow = load_sae(tmp / "narrow")
    forge(path, lambda m: m["hooks"][0]["sae"].update(path=str(tmp / "narrow"), sha256=narrow.sha256, name="narrow"))
    apply_refused(model, path, "16-wide")
    forge(path, lambda m: m["hooks"][0]["sae"].update(path=str(tmp / "sae"), sha256=load_sae(tmp / "sae").sha256))
    forge(path, lambda m: m["hooks"][0].update(site="blocks.0.hook_resid_post"))
    apply_refused(model, path, "trained at")


@pytest.mark.parametrize("key,value,needle", [("gate", "yes", "gate"), ("gate", [1], "gate"),
                                              ("scale", "big", "scale"), ("mode", "explode", "mode"),
                                              ("norm_limit", -1, "norm_limit"), ("error_term", "no", "error_term")])
def test_clamp_field_types_checked_at_load(clamp, key, value, needle):
    _, path, _ = clamp
    forge(path, lambda m: m["hooks"][0].update({key: value}))
    with pytest.raises(PatchError) as e:
        load_patch(path)
    assert needle in one_line(e)


def test_clamp_nan_scale_refused(clamp):
    _, path, _ = clamp
    raw = (path / MANIFEST).read_text().replace('"scale": 0.0', '"scale": NaN')
    forge(path, raw=raw.encode())
    with pytest.raises(PatchError) as e:
        load_patch(path)
    one_line(e)


def test_hook_patch_with_empty_fingerprints_refused(clamp):
    model, path, _ = clamp
    forge(path, lambda m: m.update(fingerprints={}, patched_fingerprints={}, base_tensors={}))
    with pytest.raises(PatchError) as e:
        load_patch(path)
    assert "fingerprints" in one_line(e) and "any model" in str(e.value)


def test_hook_patch_naming_a_hub_release_refused_offline(clamp, monkeypatch):
    import sae_lens
    _, path, _ = clamp
    monkeypatch.delenv("WORKBENCH_ALLOW_HUB", raising=False)
    monkeypatch.setattr(sae_lens.SAE, "from_pretrained", lambda *a, **k: pytest.fail("contacted the hub"))
    forge(path, lambda m: m["hooks"][0].update(sae={"name": "x", "sha256": "0" * 64, "release": "attacker/repo",
                                                    "sae_id": "blocks.1"}))
    with pytest.raises(PatchError) as e:
        load_patch(path)
    assert "refused offline" in one_line(e) and "attacker/repo" in str(e.value)


# ------------------------------------------------------------------ 9. smaller cases
def test_concepts_with_line_separators_and_bom_round_trip(tmp_path):
    from workbench.concepts import Concept, Probe, read_concepts, write_concepts
    odd = "a\u2028b\u2029c\u0085d\x0ce\x1cf"
    c = Concept("odd", "s", [Probe(f"prompt {odd}", [f"ans{odd}"])], [Probe("r", ["b"])])
    write_concepts(tmp_path / "c.jsonl", [c])
    assert read_concepts(tmp_path / "c.jsonl")[0].to_dict() == c.to_dict()
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "c.jsonl").read_bytes().replace(b"\n", b"\r\n"))
    assert read_concepts(tmp_path / "bom.jsonl")[0].to_dict() == c.to_dict()


@pytest.mark.parametrize("change", ["hyper", "report", "created"])
def test_manifest_is_covered_by_the_checksum(patch_dir, capsys, change):
    value = {"hyper": {"lambda_reg": 99.0}, "report": {"forget": {"hit_before": 1.0, "hit_after": 0.0}, "forged": 1},
             "created": "1999-01-01T00:00:00+00:00"}[change]
    forge(patch_dir, lambda m: m.update({change: value}), resign=False)
    with pytest.raises(PatchError) as e:
        load_patch(patch_dir)
    assert "manifest checksum mismatch" in one_line(e)
    text, problem = inspect_report(patch_dir)
    assert "MISMATCH" in text and problem
    rc, out, err = cli(["patch", "inspect", patch_dir], capsys)
    assert rc == 1 and "MISMATCH" in out and len(err.strip().splitlines()) == 1


def test_tensor_checksum_mismatch_exits_non_zero(patch_dir, capsys):
    blob = bytearray((patch_dir / TENSORS).read_bytes())
    blob[-1] ^= 1
    (patch_dir / TENSORS).write_bytes(bytes(blob))
    rc, out, err = cli(["patch", "inspect", patch_dir], capsys)
    assert rc == 1 and "MISMATCH" in out and "checksum mismatch" in err


def test_v1_patches_still_read_and_say_so(patch_dir, capsys):
    forge(patch_dir, lambda m: m.pop("checksum"), resign=False)
    patch = load_patch(patch_dir)
    assert patch.checksum_version == 1
    rc, out, _ = cli(["patch", "inspect", patch_dir], capsys)
    assert rc == 0 and "manifest not covered" in out
    forge(patch_dir, lambda m: m.update(checksum={"version": 3, "sha256": "0" * 64}), resign=False)
    with pytest.raises(PatchError, match="checksum version 3"):
        load_patch(patch_dir)


def test_unknown_optional_keys_are_tolerated(patch_dir):
    forge(patch_dir, lambda m: m.update(parent="a" * 64, parent_fingerprints={DOWN0: "0" * 64}, future={"x": [1]}))
    assert load_patch(patch_dir).manifest["future"] == {"x": [1]}
    forge(patch_dir, lambda m: m.update(parent="abc"))            # a known optional key is still checked
    with pytest.raises(PatchError, match="parent"):
        load_patch(patch_dir)


def test_peft_export_checks_fingerprints(tmp_path):
    edit = low_rank_edit()
    edit.deltas = edit.deltas[:1]                      # low-rank only: PEFT-exportable
    path = save_patch(edit, tmp_path / "lr", model=tiny_llama(0))
    with pytest.raises(PatchError) as e:
        export_peft(path, tiny_llama(1), tmp_path / "adapter")
    assert "fingerprint" in one_line(e) and not (tmp_path / "adapter").exists()
    assert (export_peft(path, tiny_llama(0), tmp_path / "adapter") / "adapter_config.json").is_file()


@pytest.mark.parametrize("member", [MANIFEST, TENSORS])
def test_symlinks_inside_patch_folders_refused(tmp_path, patch_dir, member):
    elsewhere = tmp_path / f"elsewhere-{member}"
    (patch_dir / member).rename(elsewhere)
    (patch_dir / member).symlink_to(elsewhere)
    with pytest.raises(PatchError) as e:
        load_patch(patch_dir)
    assert "symlink" in one_line(e)


def test_streamlit_host_header_restricted():
    from workbench.cli.dashboard import allowed_hosts, streamlit_command
    cmd = streamlit_command("127.0.0.1", 8501)
    hosts = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--server.allowedHosts"]
    assert hosts == allowed_hosts("127.0.0.1") == ["localhost", "127.0.0.1", "::1"]
    assert cmd[cmd.index("--server.enableXsrfProtection") + 1] == "true"
    assert cmd[cmd.index("--server.enableCORS") + 1] == "true"
    assert "example.org" in allowed_hosts("example.org") and "0.0.0.0" not in allowed_hosts("0.0.0.0")


@pytest.mark.slow       # starts a real Streamlit server (~5 s); the flags are checked above
def test_streamlit_refuses_a_rebound_host_header_live():
    import asyncio
    import socket
    import time

    import httpx
    websockets = pytest.importorskip("websockets")
    from workbench.cli.dashboard import streamlit_command
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen(streamlit_command("127.0.0.1", port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)

        async def handshake(host: str) -> bool:
            try:
                async with websockets.connect(f"ws://{host}:{port}/_stcore/stream", subprotocols=["streamlit"],
                                              sock=socket.create_connection(("127.0.0.1", port)), open_timeout=10):
                    return True
            except websockets.exceptions.InvalidStatus:
                return False
        assert asyncio.run(handshake("127.0.0.1")) and asyncio.run(handshake("localhost"))
        assert not asyncio.run(handshake("rebound.attacker.example"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ------------------------------------------------------------------ audit: stacks, fit, SAEs, diffusion CLI, uploads
@pytest.fixture()
def stack(tmp_path):
    """(base folder, P1, P2 fitted on top of P1, folder patched with P1 + P2, tiny base model)."""
    from workbench.patches.stack import apply_stack, on_top_of, revert_stack
    model = tiny_llama(0)
    model.save_pretrained(tmp_path / "base")
    e1 = low_rank_edit()
    e1.deltas = e1.deltas[:1]                                  # P1: DOWN0 only
    p1 = save_patch(e1, tmp_path / "p1", model=model)
    applied = apply_stack([p1], model)
    e2 = low_rank_edit(scale=0.05, concept="Japan")            # P2: DOWN0 again (on top of P1) and UP1
    on_top_of(e2, p1, model)
    p2 = save_patch(e2, tmp_path / "p2", model=model)
    revert_stack(applied, model)
    edits = apply_stack([p1, p2], model)
    patched = export_hf(edits[-1], model, tmp_path / "patched")
    revert_stack(edits, model)
    return tmp_path / "base", p1, p2, patched, model


def test_stack_revert_refuses_a_checkpoint_that_does_not_carry_the_stack(stack, capsys):
    from workbench.patches.stack import revert_stack_folder
    base, p1, p2, patched, _ = stack
    before = snapshot(base.parent)
    for folder in (base, p1.parent / "p1-only"):
        if folder != base:                                       # carries P1 only, not P2
            export_hf(p1, tiny_llama(0), folder)
            before = snapshot(base.parent)
        with pytest.raises(PatchError) as e:
            revert_stack_folder([p1, p2], folder, base.parent / "out")
        assert "does not carry this patch" in one_line(e)
        rc, _, err = cli(["patch", "revert", p1, p2, "--model", folder, "--out", base.parent / "out"], capsys)
        assert_cli_refused(rc, err, "does not carry this patch")
        assert snapshot(base.parent) == before
    with pytest.raises(PatchError) as e:                        # carries P1 once: [P1, P1] is no stack of it
        revert_stack_folder([p1, p1], p1.parent / "p1-only", base.parent / "out")
    assert "cannot follow" in one_line(e) and snapshot(base.parent) == before


def test_stack_revert_of_a_patched_checkpoint_restores_the_base(stack):
    from workbench.patches.stack import revert_stack_folder
    base, p1, p2, patched, model = stack
    out, _exact = revert_stack_folder([p1, p2], patched, base.parent / "reverted")
    reverted = transformers.AutoModelForCausalLM.from_pretrained(out)
    for n in (DOWN0, UP1):
        assert torch.allclose(reverted.get_parameter(n), model.get_parameter(n), atol=1e-6)
    (base.parent / "mine").mkdir()
    (base.parent / "mine" / "keep.txt").write_text("x")
    before = snapshot(base.parent)
    with pytest.raises(PatchError) as e:                        # the output is checked before the load
        revert_stack_folder([p1, p2], patched, base.parent / "mine")
    assert "refusing to replace" in one_line(e) and snapshot(base.parent) == before


def test_stack_apply_checks_out_before_loading_the_model(stack, capsys, no_model_load):
    base, p1, p2, _, _ = stack
    (base.parent / "notes.txt").write_text("mine")
    rc, _, err = cli(["patch", "apply", p1, p2, "--model", "smollm2-135m", "--out", base.parent / "notes.txt"], capsys)
    assert_cli_refused(rc, err, "refusing to replace")
    assert (base.parent / "notes.txt").read_text() == "mine"


def test_fit_texts_have_the_character_ceiling():
    from workbench.concepts import ConceptFileError, parse_concepts
    from workbench.concepts.limits import MAX_PROMPT_CHARS
    record = json.loads(concept_line("p"))
    record["fit"] = {"forget": ["word " * (MAX_PROMPT_CHARS // 5 + 1)]}
    with pytest.raises(ConceptFileError) as e:
        parse_concepts(json.dumps(record), "fit.jsonl")
    assert "fit.jsonl:1: fit.forget[0]" in one_line(e) and f"{MAX_PROMPT_CHARS:,}" in str(e.value)


def test_fit_edit_checks_prompt_lengths_and_refuses_non_finite_deltas(monkeypatch):
    from workbench.concepts import parse_concepts
    from workbench.concepts.limits import PromptTooLongError
    from workbench.edits import fit_edit, registry
    from workbench.errors import NonFiniteError
    model = hooked(ctx=64)
    monkeypatch.setattr(registry, "_fit_views", lambda m, c: pytest.fail("fit data derived before the check"))
    record = json.loads(concept_line("short"))
    record["fit"] = {"forget": ["a long fit text " * 40]}          # within the file ceiling, not the context
    long, = parse_concepts(json.dumps(record))
    with pytest.raises(PromptTooLongError) as e:
        fit_edit("rocr", model, long)
    assert "fit.forget[0]" in one_line(e)

    def nan_fit(m, concept, report, cfg):
        edit = low_rank_edit()
        edit.deltas[0].A[0, 0] = float("nan")
        return edit
    monkeypatch.setitem(registry._REGISTRY, "nan-fit", registry.Method("nan-fit", registry.EditConfig, nan_fit))
    monkeypatch.setattr(registry, "_fit_views", lambda m, c: (c, {}))
    ok, = parse_concepts(concept_line("short"))
    with pytest.raises(NonFiniteError) as e:
        fit_edit("nan-fit", model, ok)
    assert "NaN or infinite" in one_line(e)


def test_export_of_an_in_memory_non_finite_edit_refused(tmp_path):
    edit = low_rank_edit()
    edit.deltas[1].delta.fill_(3e38)
    edit.deltas.append(edit.deltas[1])                         # finite deltas, W + 2 * 3e38 overflows
    with pytest.raises(PatchError) as e:
        export_hf(edit, tiny_llama(0), tmp_path / "hf")
    assert "non-finite" in one_line(e) and list(tmp_path.iterdir()) == []


def test_sae_outputs_and_non_finite_saes_refused(tmp_path, capsys, no_model_load):
    from tests.test_sae import random_topk
    from workbench.sae.store import SAEStoreError, load_sae, save_sae
    from workbench.sae.train import SAETrainConfig
    from workbench.errors import HyperParameterError
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    before = snapshot(tmp_path)
    with pytest.raises(WorkbenchError) as e:                   # replacing it would delete keep.txt
        save_sae(random_topk(32, 64, 8), tmp_path / "mine", "rand", SITE, "tiny-llama")
    assert "refusing to replace" in one_line(e)
    for argv, needle in ((["--out", tmp_path / "mine"], "refusing to replace"),
                         (["--out", tmp_path / "new", "--lr", "nan"], "finite")):
        rc, _, err = cli(["sae", "train", "smollm2-135m", *argv], capsys)
        assert_cli_refused(rc, err, needle)
    assert snapshot(tmp_path) == before
    with pytest.raises(HyperParameterError):
        SAETrainConfig(epochs=float("inf"))
    bad = random_topk(32, 64, 8)
    bad.W_dec.data[0, 0] = float("nan")
    with pytest.raises(SAEStoreError) as e:
        save_sae(bad, tmp_path / "nan", "nan", SITE, "tiny-llama")
    assert "NaN" in one_line(e) and not (tmp_path / "nan").exists()
    bad.save_model(str(tmp_path / "nan"))                        # written behind the workbench's back
    with pytest.raises(SAEStoreError) as e:
        load_sae(tmp_path / "nan")
    assert "NaN" in one_line(e)
    save_sae(random_topk(32, 64, 8), tmp_path / "deep", "deep", SITE, "tiny-llama")
    (tmp_path / "deep" / "workbench_sae.json").write_text("[" * 100_000)
    with pytest.raises(SAEStoreError) as e:
        load_sae(tmp_path / "deep")
    one_line(e)


@pytest.mark.parametrize("argv", [
    ["diffusion", "edit", "uce", "tiny-sd", "--erase", "Van Gogh", "--out", "{tmp}/notes.txt"],
    ["diffusion", "export", "tiny-sd", "--patch", "{tmp}/p", "--out", "{tmp}/mine"],
    ["diffusion", "make-tiny", "--out", "{tmp}/mine"],
    ["diffusion", "info", "tiny-sd", "--device", "bogus"],
])
def test_diffusion_cli_checks_outputs_and_device_before_loading(tmp_path, capsys, monkeypatch, argv):
    import workbench.diffusion.models as dm
    monkeypatch.setattr(dm, "load_pipeline", lambda *a, **k: pytest.fail("the pipeline was loaded first"))
    monkeypatch.setattr(dm, "tiny_pipeline_folder", lambda *a, **k: pytest.fail("the pipeline was built first"))
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    before = snapshot(tmp_path)
    rc, _, err = cli([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert_cli_refused(rc, err, "not a device" if "bogus" in argv else "refusing to replace")
    assert snapshot(tmp_path) == before


def test_dashboard_bench_upload_is_strict_json():
    from workbench.app.verify import read_bench
    for raw in (b"[" * 100_000, b'{"model": NaN}', b'{"a": 1, "a": 2}', b"\xff"):
        with pytest.raises(WorkbenchError) as e:
            read_bench(raw, "bench.json")
        assert "bench.json" in one_line(e)


# ------------------------------------------------------------------ property-based: the manifest parser
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
TOP_KEYS = ["schema_version", "base_model", "coordinates", "fingerprints", "patched_fingerprints", "base_tensors",
            "tensors", "delta_kinds", "concept", "method", "hyper", "seed", "provenance", "report", "tensors_sha256",
            "checksum", "params_changed", "hooks"]
ENTRY_KEYS = ["name", "kind", "shape", "dtype", "dim", "keys", "fields", "rank"]


def _write(folder: Path, manifest: dict, blob: bytes, raw: bytes | None = None) -> Path:
    folder.mkdir()
    (folder / TENSORS).write_bytes(blob)
    (folder / MANIFEST).write_bytes(raw if raw is not None else json.dumps(manifest).encode())
    return folder


def _load_refused_or_valid(folder: Path, model=None):
    """load_patch either refuses with a one-line WorkbenchError, or gives a patch that still only
    applies to its own base; either way it writes nothing."""
    before = snapshot(folder.parent)
    try:
        patch = load_patch(folder)
    except WorkbenchError as exc:
        assert str(exc) and "\n" not in str(exc), str(exc)
        patch = None
    try:
        text, problem = inspect_report(folder)              # inspect reads what load refuses: never a crash
        assert (problem is None) == (patch is not None) or patch is None
    except WorkbenchError as exc:
        assert "\n" not in str(exc) and patch is None
    assert snapshot(folder.parent) == before
    if patch is not None and model is not None:
        saved = state(model)
        try:
            apply_patch(patch, model)
        except WorkbenchError as exc:
            assert "\n" not in str(exc)
            assert same_state(model, saved)
        else:
            pytest.fail("a tampered patch applied to a model it was not made for")
    return patch


@SETTINGS
@given(key=st.sampled_from(TOP_KEYS), value=json_values, resign=st.booleans())
def test_property_tampered_manifest(clean_patch, key, value, resign):
    manifest, blob = clean_patch
    m = json.loads(json.dumps(manifest))
    m[key] = value
    if resign and isinstance(m.get("checksum"), dict) and isinstance(m["checksum"].get("sha256"), str):
        m["checksum"]["sha256"] = manifest_checksum(m)
    with tempfile.TemporaryDirectory() as tmp:
        patch = _load_refused_or_valid(_write(Path(tmp) / "p", m, blob), tiny_llama(1))
    changed = canonical_json({k: v for k, v in m.items() if k != "checksum"}) != \
        canonical_json({k: v for k, v in manifest.items() if k != "checksum"})
    if changed and not resign:
        assert patch is None, f"an edited manifest ({key}) loaded without a checksum mismatch"


@SETTINGS
@given(index=st.integers(0, 1), key=st.sampled_from(ENTRY_KEYS), value=json_values)
def test_property_tampered_tensor_entry_resigned(clean_patch, index, key, value):
    manifest, blob = clean_patch
    m = json.loads(json.dumps(manifest))
    m["tensors"][index][key] = value
    m["checksum"]["sha256"] = manifest_checksum(m)
    with tempfile.TemporaryDirectory() as tmp:
        _load_refused_or_valid(_write(Path(tmp) / "p", m, blob), tiny_llama(1))


@SETTINGS
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_property_garbage_manifest_bytes(clean_patch, raw):
    manifest, blob = clean_patch
    with tempfile.TemporaryDirectory() as tmp:
        assert _load_refused_or_valid(_write(Path(tmp) / "p", manifest, blob, raw=raw)) is None


@SETTINGS
@given(data=st.binary(max_size=400), names=st.lists(st.sampled_from([MANIFEST, TENSORS, "x/" + MANIFEST, "../evil"]),
                                                   max_size=3))
def test_property_garbage_zips(data, names):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.zip"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for n in names:
                zf.writestr(n, data)
        path.write_bytes(buf.getvalue() if names else data)
        before = snapshot(Path(tmp))
        with pytest.raises(WorkbenchError) as e:
            load_patch(path)
        assert "\n" not in str(e.value) and snapshot(Path(tmp)) == before


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(base_seed=st.integers(0, 3), other_seed=st.integers(4, 7))
def test_property_wrong_base_always_refused(base_seed, other_seed):
    with tempfile.TemporaryDirectory() as tmp:
        path = save_patch(low_rank_edit(), Path(tmp) / "p.zip", model=tiny_llama(base_seed))
        other = tiny_llama(other_seed)
        saved = state(other)
        with pytest.raises(PatchError) as e:
            apply_patch(path, other)
        assert "fingerprint differs" in str(e.value) and same_state(other, saved)


# ------------------------------------------------------------------ property-based: the concept parser
CONCEPT_KEYS = ["name", "subject", "forget", "retain", "redirect_to", "prompt", "answers", "form", "extra"]
records = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(CONCEPT_KEYS) | st.text(max_size=4),
                                                                inner, max_size=5),
    max_leaves=15)
texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(lambda s: s.strip())


@SETTINGS
@given(text=st.text(max_size=200) | st.lists(records, max_size=3).map(
    lambda rs: "\n".join(json.dumps(r) for r in rs)))
def test_property_concept_parser_refuses_in_one_line(text):
    from workbench.concepts import ConceptFileError, read_concepts
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.jsonl"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        before = snapshot(Path(tmp))
        try:
            concepts = read_concepts(path)
        except ConceptFileError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc), str(exc)
        else:
            assert concepts and all(c.forget and c.retain for c in concepts)
        assert snapshot(Path(tmp)) == before


@SETTINGS
@given(name=texts, subject=texts, prompt=texts, answers=st.lists(texts, min_size=1, max_size=3), form=texts)
def test_property_concepts_round_trip(name, subject, prompt, answers, form):
    from workbench.concepts import Concept, Probe, parse_concepts
    from workbench.concepts.files import dumps_concepts
    c = Concept(name, subject, [Probe(prompt, answers, form)], [Probe(prompt, answers)])
    assert parse_concepts(dumps_concepts([c]))[0].to_dict() == c.to_dict()


@SETTINGS
@given(key=st.text(max_size=12).filter(lambda k: "=" not in k), value=st.text(max_size=40) | json_values.map(json.dumps))
def test_property_set_parser(key, value):
    """`--set key=value`: a dict of finite JSON values (or strings), or one HyperParameterError line."""
    from workbench.cli.common import parse_set as _hyper
    from workbench.errors import HyperParameterError
    from workbench.patches.format import first_non_finite
    try:
        out = _hyper([f"{key}={value}"])
    except HyperParameterError as exc:
        assert "\n" not in str(exc)
    else:
        assert list(out) == [key.strip()] and first_non_finite(out) is None
