"""Concept file format (docs/concept-file.md): round trip, strict validation with file:line: field errors."""
from __future__ import annotations

import json

import pytest

from workbench.concepts import (Concept, ConceptFileError, ConceptNotFoundError, Probe, builtin_concepts_path,
                                get_concept, load_builtin, parse_concepts, read_concepts, render_prompt,
                                write_concepts)


def good(name: str = "Harry Potter", **over) -> dict:
    d = {"name": name, "subject": "Harry Potter", "redirect_to": "Peter Rabbit",
         "forget": [{"prompt": "The Harry Potter books were written by J.K.", "answers": ["Rowling"],
                     "form": "completion"},
                    {"prompt": "Question: Who wrote Harry Potter?\nAnswer:", "answers": ["Rowling", "J.K. Rowling"],
                     "form": "question"}],
         "retain": [{"prompt": "The Lord of the Rings was written by J.R.R.", "answers": ["Tolkien"],
                     "form": "completion"}]}
    d.update(over)
    return d


def write_lines(path, records) -> None:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def error_for(tmp_path, records) -> ConceptFileError:
    path = tmp_path / "concepts.jsonl"
    write_lines(path, records)
    with pytest.raises(ConceptFileError) as info:
        read_concepts(path)
    return info.value


# ---------------------------------------------------------------- round trip
def test_dict_round_trip():
    c = Concept.from_dict(good())
    assert Concept.from_dict(c.to_dict()) == c
    assert c.to_dict() == good()
    assert c.forget[1].answers == ["Rowling", "J.K. Rowling"] and c.forget[1].answer == "Rowling"
    assert [p.form for p in c.probes] == ["completion", "question", "completion"]


def test_file_round_trip(tmp_path):
    concepts = [Concept.from_dict(good("A")), Concept.from_dict(good("B", redirect_to=None))]
    path = write_concepts(tmp_path / "sub" / "c.jsonl", concepts)
    assert read_concepts(path) == concepts
    assert "redirect_to" not in json.loads(path.read_text().splitlines()[1])   # None is not written
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]     # no temp file left


def test_unknown_keys_kept_and_written_back(tmp_path):
    rec = good(source="wikipedia", tags=["books"])
    rec["forget"][0]["weight"] = 2.5
    rec["retain"][0]["note"] = {"why": "same genre"}
    src = tmp_path / "in.jsonl"
    write_lines(src, [rec])
    (c,) = read_concepts(src)
    assert c.extra == {"source": "wikipedia", "tags": ["books"]}
    assert c.forget[0].extra == {"weight": 2.5} and c.retain[0].extra == {"note": {"why": "same genre"}}
    out = write_concepts(tmp_path / "out.jsonl", [c])
    assert json.loads(out.read_text()) == rec


def test_form_defaults_to_completion_and_blank_lines_allowed(tmp_path):
    rec = good()
    del rec["forget"][0]["form"]
    path = tmp_path / "c.jsonl"
    path.write_text("\n\n" + json.dumps(rec) + "\n   \n" + json.dumps(good("Other")) + "\n")
    a, b = read_concepts(path)
    assert a.forget[0].form == "completion" and b.name == "Other"


def test_parse_concepts_from_text():
    (c,) = parse_concepts(json.dumps(good()), source="pasted")
    assert c.name == "Harry Potter"
    with pytest.raises(ConceptFileError, match=r"^pasted:1: subject: missing required key"):
        parse_concepts(json.dumps({k: v for k, v in good().items() if k != "subject"}), source="pasted")


# ---------------------------------------------------------------- malformed files
def test_bad_json_names_line(tmp_path):
    err = error_for(tmp_path, [good("A"), good("B"), '{"name": "C", "subject": ', good("D")])
    assert err.line == 3
    assert str(err).startswith(f"{tmp_path / 'concepts.jsonl'}:3: invalid JSON")


def test_missing_subject(tmp_path):
    rec = good("B")
    del rec["subject"]
    err = error_for(tmp_path, [good("A"), rec])
    assert (err.line, err.field) == (2, "subject")
    assert str(err).endswith("concepts.jsonl:2: subject: missing required key")


def test_empty_forget(tmp_path):
    err = error_for(tmp_path, [good(forget=[])])
    assert (err.line, err.field) == (1, "forget")
    assert "concepts.jsonl:1: forget: must be a non-empty list of probes" in str(err)


def test_missing_retain(tmp_path):
    rec = good()
    del rec["retain"]
    assert error_for(tmp_path, [rec]).field == "retain"


def test_answers_not_a_list(tmp_path):
    rec = good()
    rec["forget"][1]["answers"] = "Rowling"
    err = error_for(tmp_path, ["", good("A"), rec])
    assert (err.line, err.field) == (3, "forget[1].answers")
    assert "concepts.jsonl:3: forget[1].answers: must be a non-empty list of non-empty strings" in str(err)


@pytest.mark.parametrize("field,value,where", [
    ("answers", [], "retain[0].answers"),
    ("answers", ["Tolkien", ""], "retain[0].answers"),
    ("answers", ["Tolkien", 3], "retain[0].answers"),
    ("prompt", "", "retain[0].prompt"),
    ("prompt", 7, "retain[0].prompt"),
    ("form", 1, "retain[0].form"),
])
def test_wrong_probe_types(tmp_path, field, value, where):
    rec = good()
    rec["retain"][0][field] = value
    err = error_for(tmp_path, [rec])
    assert (err.line, err.field) == (1, where)


@pytest.mark.parametrize("record,field", [
    (good(name=""), "name"),
    (good(name=5), "name"),
    (good(subject=["x"]), "subject"),
    (good(redirect_to=3), "redirect_to"),
    (good(forget={"prompt": "x", "answers": ["y"]}), "forget"),
    (good(forget=["not an object"]), "forget[0]"),
    (good(retain=[{"answers": ["y"]}]), "retain[0].prompt"),
    (good(retain=[{"prompt": "x"}]), "retain[0].answers"),
])
def test_wrong_concept_types(tmp_path, record, field):
    assert error_for(tmp_path, [record]).field == field


def test_not_an_object(tmp_path):
    err = error_for(tmp_path, [good(), "[1, 2]"])
    assert err.line == 2 and "must be a JSON object" in str(err)


def test_duplicate_name(tmp_path):
    err = error_for(tmp_path, [good("A"), good("B"), good("A")])
    assert (err.line, err.field) == (3, "name")
    assert "duplicate concept name 'A' (first on line 1)" in str(err)
    with pytest.raises(ConceptFileError, match="duplicate"):
        write_concepts(tmp_path / "dupes.jsonl", [Concept.from_dict(good("A"))] * 2)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ConceptFileError, match="holds no concepts"):
        read_concepts(tmp_path / "empty.jsonl")
    assert read_concepts(tmp_path / "empty.jsonl", allow_empty=True) == []
    with pytest.raises(ConceptFileError, match="no such concept file"):
        read_concepts(tmp_path / "nope.jsonl")


def test_direct_construction_is_validated():
    with pytest.raises(ConceptFileError, match="answers"):
        Probe("The capital of France is", "Paris")
    with pytest.raises(ConceptFileError, match="retain"):
        Concept("X", "X", forget=[Probe("p", ["a"])], retain=[])


# ---------------------------------------------------------------- lookup, rendering
def test_get_concept():
    concepts = [Concept.from_dict(good("Harry Potter")), Concept.from_dict(good("Star Wars"))]
    assert get_concept(concepts, "Star Wars").name == "Star Wars"
    assert get_concept(concepts, "star wars").name == "Star Wars"
    with pytest.raises(ConceptNotFoundError, match=r"no concept named 'Dune'; available: 'Harry Potter', 'Star Wars'"):
        get_concept(concepts, "Dune")


def test_render_prompt_uses_chat_template_for_chat_probes():
    class FakeModel:
        def chat(self, user):
            return f"<user>{user}</user><assistant>"

    assert render_prompt(FakeModel(), Probe("Who wrote Hamlet?", ["Shakespeare"], "chat")) == \
        "<user>Who wrote Hamlet?</user><assistant>"
    assert render_prompt(FakeModel(), Probe("Hamlet was written by", ["Shakespeare"], "question")) == \
        "Hamlet was written by"


# ---------------------------------------------------------------- built-in file
def test_builtin_file_validates_and_meets_counts():
    assert builtin_concepts_path().is_file()
    concepts = load_builtin()
    assert len(concepts) >= 8
    for c in concepts:
        assert len(c.forget) >= 6, c.name
        assert len(c.retain) >= 6, c.name
        assert len(c.forms()) >= 3, (c.name, c.forms())
        assert c.redirect_to and c.redirect_to != c.name, c.name
        assert c.subject_coverage() >= 0.5, (c.name, c.subject_coverage())
        assert not {p.prompt for p in c.forget} & {p.prompt for p in c.retain}, c.name


def test_builtin_file_is_in_canonical_form(tmp_path):
    """The shipped file is exactly what write_concepts produces (so edits round-trip cleanly)."""
    out = write_concepts(tmp_path / "c.jsonl", load_builtin())
    assert out.read_text(encoding="utf-8") == builtin_concepts_path().read_text(encoding="utf-8")
