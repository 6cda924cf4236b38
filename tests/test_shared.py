"""The shared primitives that stages import downwards (docs/architecture.md): each lives in one
module, and the old import paths still give the very same objects."""
from __future__ import annotations

import hashlib

import pytest
import torch


def test_fingerprint_is_the_documented_hash_and_reexported(tmp_path):
    from workbench import fingerprint
    from workbench.patches import format as fmt
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    expected = hashlib.sha256(b"float32:2,3\n" + t.numpy().tobytes()).hexdigest()
    assert fingerprint.tensor_fingerprint(t) == expected
    assert fingerprint.tensor_fingerprint(t.t().contiguous().t()) == expected     # layout does not matter
    assert fingerprint.tensor_fingerprint(t.double()) != expected                 # dtype does
    assert fingerprint.tensor_fingerprint(torch.tensor(1.0)) == hashlib.sha256(
        b"float32:\n" + torch.tensor(1.0).numpy().tobytes()).hexdigest()
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc" * 1000)
    assert fingerprint.file_sha256(f) == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert fmt.tensor_fingerprint is fingerprint.tensor_fingerprint
    assert fmt.file_sha256 is fingerprint.file_sha256 and fmt.dtype_name is fingerprint.dtype_name


def test_write_html_embeds_plotly_once_and_escapes(tmp_path):
    go = pytest.importorskip("plotly.graph_objects")
    from workbench.reporting import write_html
    from workbench.verify import bench
    figs = [go.Figure(go.Bar(x=[1, 2], y=[3, 4])), go.Figure(go.Scatter(x=[1], y=[2]))]
    out = write_html(tmp_path / "r.html", figs, title="a <b> & c", table="x < y")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<title>a &lt;b&gt; &amp; c</title>" in text and "<pre>x &lt; y</pre>" in text
    assert text.count("plotly.js v") == 1                                         # the library, embedded once
    assert text.count('class="plotly-graph-div"') == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]               # no temporary left behind
    assert bench.write_html is write_html


def test_hook_kinds_register_themselves(monkeypatch):
    from workbench.edits import base, hooks
    assert "workbench.edits.sae_clamp" not in open(base.__file__).read()     # base names no leaf module
    assert base.HOOK_KINDS is hooks.HOOK_KINDS and base.HookEdit is hooks.HookEdit
    assert {"sae_clamp", "diffusion_sae_clamp"} <= set(hooks.HOOK_KINDS)
    from workbench.edits.sae_clamp import SAEClampHook
    assert hooks.hook_class("sae_clamp") is SAEClampHook
    with pytest.raises(ValueError, match=r"hook edit kind 'nope' is not one of \['diffusion_sae_clamp'"):
        hooks.hook_class("nope")
    monkeypatch.setattr(hooks, "_REGISTRY", dict(hooks._REGISTRY))

    @hooks.register_hook_kind
    class Probe(hooks.HookEdit):
        kind = "probe_kind"

    assert "probe_kind" in hooks.HOOK_KINDS and hooks.hook_class("probe_kind") is Probe
    assert hooks.HOOK_KINDS["probe_kind"] == __name__
    with pytest.raises(ValueError, match="already registered"):
        hooks.register_hook_kind(type("Other", (hooks.HookEdit,), {"kind": "probe_kind"}))
    with pytest.raises(TypeError):
        hooks.register_hook_kind(type("Nameless", (hooks.HookEdit,), {}))
