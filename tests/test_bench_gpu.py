"""analyses/bench_gpu.py runs on a CPU-only machine (the suite never needs a GPU): every stage on a
tiny random Llama with SmolLM2's tokenizer at the "smallest" preset. Timings are not asserted."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import transformers as T

from workbench.concepts import get_concept, load_builtin
from workbench.models.hooked import HookedModel

SCRIPT = Path(__file__).resolve().parents[1] / "analyses" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_gpu_runs_every_stage_on_cpu(bench, smol):
    torch.manual_seed(0)
    cfg = T.LlamaConfig(vocab_size=len(smol.tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=48, tie_word_embeddings=True)
    model = HookedModel(T.LlamaForCausalLM(cfg).eval(), smol.tokenizer, "tiny-llama-smoltok")
    before = {k: v.clone() for k, v in model.hf.state_dict().items()}
    rows = bench.run(model, get_concept(load_builtin(), "Eiffel Tower"), "smallest", repeats=1)
    assert [r["stage"] for r in rows] == ["capture", "rocr (cold)", "rocr (warm)", "battery", "ga"]
    assert all(math.isfinite(r["seconds"]) and r["seconds"] > 0 for r in rows)
    assert "4 sites, 32 tokens" in rows[0]["detail"] and "n=9" in rows[3]["detail"]
    assert all(torch.equal(before[k], v) for k, v in model.hf.state_dict().items())    # left unedited
    table = bench.markdown(rows, bench.device_name(model.device), model.model_id)
    assert table.splitlines()[0].startswith("device: CPU") and table.count("\n| ") == 1 + len(rows)
    with pytest.raises(ValueError, match="preset 'huge' is not one of cheap, smallest"):
        bench.run(model, None, "huge")


def test_bench_gpu_bad_device_is_one_line(bench, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device exists here")
    assert bench.main(["--device", "cuda", "--preset", "smallest"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench_gpu: ") and "cuda" in err and len(err.splitlines()) == 1
