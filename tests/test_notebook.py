"""The analysis notebook walks the whole pipeline and executes without error (small settings)."""
import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "analyses" / "concept_pipeline.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c.get("outputs") and c.get("execution_count") is None for c in code)


def test_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    monkeypatch.setenv("WORKBENCH_NB_FAST", "1")
    monkeypatch.setenv("WORKBENCH_NB_OUT", str(tmp_path))
    monkeypatch.setenv("WORKBENCH_NB_RENDERER", "json")
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "rank 1," in text and "patch applied and reverted bit-exactly" in text
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})
               or "application/json" in o.get("data", {})]
    assert len(figures) >= 4                      # lens, evidence heat map, trade-off, per-form bars
    assert (tmp_path / "rocr.patch" / "manifest.json").exists()
