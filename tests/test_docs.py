"""The contracts in docs/: the CLI reference matches the parsers, examples parse with the real
readers, links resolve, and nothing points at a design file outside the repository."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _json_blocks(page: str) -> list[str]:
    return re.findall(r"```json\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), flags=re.S)


def test_cli_reference_is_up_to_date():
    from workbench.cli.docs import render
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == render(), \
        "docs/cli.md is out of date with the CLI parsers: run `python -m workbench.cli.docs`"


def test_cli_reference_check_flags_a_stale_file(tmp_path):
    from workbench.cli.docs import main
    stale = tmp_path / "cli.md"
    stale.write_text("old\n", encoding="utf-8")
    assert main(["--check", "--out", str(stale)]) == 1
    assert main(["--out", str(stale)]) == 0
    assert main(["--check", "--out", str(stale)]) == 0
    text = stale.read_text(encoding="utf-8")
    for command in ("workbench edit", "workbench patch", "workbench bench", "workbench sae train"):
        assert f"`{command}`" in text
    assert "`--concepts` CONCEPTS | required" in text


def test_concept_file_example_is_a_valid_concept():
    from workbench.concepts import parse_concepts
    (block,) = _json_blocks("concept-file.md")
    line = json.dumps(json.loads(block))                 # the page shows it over several lines
    (concept,) = parse_concepts(line, source="docs/concept-file.md")
    assert concept.name == "Harry Potter" and concept.redirect_to == "Peter Rabbit"
    assert [p.form for p in concept.forget] == ["completion", "question"]
    assert concept.split == "test" and concept.neighbors == ["Peter Rabbit", "The Hobbit"]
    assert concept.fit.source == "manual" and len(concept.fit.forget) == 2 and len(concept.fit.retain) == 1


def test_report_example_is_a_valid_document():
    from workbench.verify.battery import validate_report
    (block,) = _json_blocks("report.md")
    doc = json.loads(block)
    assert validate_report(doc) is doc
    del doc["results"][0]["forget"]["hit_after"]
    with pytest.raises(ValueError, match=r"results\[0\]\.forget\.hit_after"):
        validate_report(doc)


def test_patch_page_lists_every_required_manifest_key():
    from workbench.patches.format import validate_manifest
    text = (DOCS / "patch.md").read_text(encoding="utf-8")
    import inspect
    src = inspect.getsource(validate_manifest)
    required = (set(re.findall(r'_need\(m, "(\w+)"', src)) | set(re.findall(r'_text\(m, "(\w+)", label\)', src))
                | set(re.findall(r'_fingerprint_map\(m, "(\w+)", label, required=True\)', src)))
    assert required >= {"schema_version", "base_model", "fingerprints", "tensors_sha256", "tensors"}
    for key in required:
        assert f"| `{key}` | yes |" in text, f"docs/patch.md does not document required key {key!r}"


def test_doc_links_resolve():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+?\.md)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"


def test_nothing_points_at_a_design_file_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    hits = [f for f in files if f.endswith((".py", ".md", ".toml", ".ipynb", "Makefile"))
            and "DESIGN.md" in (ROOT / f).read_text(encoding="utf-8", errors="replace")
            and f != "tests/test_docs.py"]
    assert hits == []


def test_rocr_layer_rules_documented():
    """docs/rocr.md's per-family table is LAYER_RULES, row for row."""
    import re
    from fractions import Fraction
    from workbench.edits.rocr import LAYER_RULES
    text = (ROOT / "docs" / "rocr.md").read_text(encoding="utf-8")
    rows = dict((m, (Fraction(a), Fraction(b))) for m, a, b in
                re.findall(r"^\| (\w+) \| (\d+/\d+) \| (\d+/\d+) \|", text, flags=re.M))
    expect = {m: (Fraction(f).limit_denominator(64), Fraction(s).limit_denominator(64)) for m, (f, s) in LAYER_RULES.items()}
    assert rows == expect, "docs/rocr.md's layer table differs from workbench.edits.rocr.LAYER_RULES"
