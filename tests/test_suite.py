"""The built-in dev/test suite, the world-knowledge set, their loaders and the mcq_letter rule."""
from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from workbench.concepts import (KINDS, KNOWN_FORMS, SPLITS, Concept, ConceptError, ConceptFileError, Probe,
                                load_builtin, load_suite, load_world_knowledge, parse_concepts, suite_path,
                                world_knowledge_path)
from workbench.concepts.suite import concept_tag
from workbench.verify.probes import is_hit, score_probes


# ------------------------------------------------------------------------------------ mcq_letter rule
@pytest.mark.parametrize("continuation", ["B", " B", "B)", " B)", " B.", " B. Paris", " B: Paris", "\nB\n",
                                          "  B Paris", "\tB", " B\n\nThe answer is: B"])
def test_mcq_letter_hit_when_the_letter_starts_the_continuation(continuation):
    assert is_hit(continuation, ["B"], "mcq_letter")


@pytest.mark.parametrize("continuation", ["", " ", " b", " b)", " Bonn", " The answer is B", " BB", " (B)", " A",
                                          " B-", " B,", " C. B", "B's", " Option B"])
def test_mcq_letter_miss_when_the_letter_does_not_start_it(continuation):
    assert not is_hit(continuation, ["B"], "mcq_letter")


def test_mcq_letter_any_of_several_letters_and_other_forms_keep_substring_rule():
    assert is_hit(" C. Moon", ["A", "C"], "mcq_letter")
    assert not is_hit(" D. Moon", ["A", "C"], "mcq_letter")
    for form in ("completion", "mcq", "chat", "fill_blank", "reverse"):
        assert is_hit(" The answer is B", ["b"], form)        # substring, case-insensitive
        assert not is_hit(" The answer is C", ["B"], form)
    assert is_hit(" The answer is B", ["B"])                 # default form: completion


# ------------------------------------------------------------------------------------ the suite
SUITE = load_suite()
WORLD = load_world_knowledge()


def _forms(concept: Concept) -> Counter:
    return Counter(p.form for p in concept.forget)


def _names(concepts) -> list[str]:
    out = []
    for c in concepts:
        out += [c.name, c.subject, *concept_tag(c, "neighbors"), *([c.redirect_to] if c.redirect_to else [])]
    return list(dict.fromkeys(out))


def _pattern(names) -> re.Pattern:
    alts = sorted({re.escape(n) for n in names}, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(alts) + r")(?:s|es)?(?!\w)", re.IGNORECASE)


def test_suite_size_splits_and_kinds():
    assert len(SUITE) >= 32
    assert len({c.name for c in SUITE}) == len(SUITE)
    pairs = Counter((concept_tag(c, "split"), concept_tag(c, "kind")) for c in SUITE)
    for split in SPLITS:
        for kind in KINDS:
            assert pairs[(split, kind)] >= 1, (split, kind)
    dev, test = load_suite("dev"), load_suite("test")
    assert {c.name for c in dev} | {c.name for c in test} == {c.name for c in SUITE}
    assert not {c.name for c in dev} & {c.name for c in test}
    assert len(dev) >= 15 and len(test) >= 15


def test_suite_holds_the_builtin_concepts_by_name_subject_and_redirect():
    suite = {c.name: c for c in SUITE}
    # "The Lord of the Rings": the model answers too few of its candidate probes (14 in >= 3 forms of
    # fewer than 6; see analyses/build_suite.py's report), so the builder drops it rather than keep a
    # concept the model does not know.
    missing = [b.name for b in load_builtin() if b.name not in suite]
    assert missing == ["The Lord of the Rings"], missing
    for b in load_builtin():
        if b.name in missing:
            continue
        assert suite[b.name].subject == b.subject
        assert suite[b.name].redirect_to == b.redirect_to or b.name == "Star Wars"   # suite: 'Titanic' (same kind)


@pytest.mark.parametrize("concept", SUITE, ids=lambda c: c.name)
def test_suite_concept_meets_the_probe_requirements(concept):
    forms = _forms(concept)
    assert set(forms) <= set(KNOWN_FORMS)
    assert all(n >= 3 for n in forms.values()), forms          # every form present is reportable
    assert len(forms) >= 6 and len(concept.forget) >= 20
    assert len({(p.prompt, p.form) for p in concept.forget}) == len(concept.forget)
    for p in concept.forget:
        if p.form == "mcq_letter":
            assert len(p.answers) == 1 and p.answers[0] in "ABCD"
        elif p.form != "mcq":        # the answer is not given away in the prompt (mcq lists options)
            assert not any(a.casefold() in p.prompt.casefold() for a in p.answers), p.prompt
    assert len(concept.retain) >= 12


@pytest.mark.parametrize("concept", SUITE, ids=lambda c: c.name)
def test_suite_neighbours_and_redirect(concept):
    neighbors = concept_tag(concept, "neighbors")
    assert len(set(neighbors)) == len(neighbors) >= 6
    assert concept.redirect_to and concept.redirect_to not in neighbors
    assert concept.subject not in neighbors and concept.name not in neighbors
    mentioned = Counter()
    redirect, subject = _pattern([concept.redirect_to]), _pattern([concept.subject, concept.name])
    for p in concept.retain:
        about = [n for n in neighbors if n.casefold() in p.prompt.casefold()]
        assert about, f"retain probe about no neighbour: {p.prompt!r}"
        mentioned.update(about)
        for text in [p.prompt, *p.answers]:
            assert not redirect.search(text), f"redirect_to {concept.redirect_to!r} in retain probe {text!r}"
            assert not subject.search(text), f"subject in retain probe {text!r}"
    assert set(mentioned) == set(neighbors)
    kinds = {c.name: concept_tag(c, "kind") for c in SUITE}
    for other in [*neighbors, concept.redirect_to]:       # same kind, where the other is itself a suite concept
        assert kinds.get(other, concept_tag(concept, "kind")) == concept_tag(concept, "kind"), other


# ------------------------------------------------------------------------------------ world knowledge
def test_world_knowledge_size_format_and_exclusions():
    assert len(WORLD) >= 200
    assert len({p.prompt for p in WORLD}) == len(WORLD)
    assert all(p.form == "completion" and p.extra["topic"].strip() for p in WORLD)
    for line in world_knowledge_path().read_text(encoding="utf-8").splitlines():
        assert set(json.loads(line)) == {"prompt", "answers", "form", "topic"}
    pat = _pattern(_names(SUITE))
    bad = [t for p in WORLD for t in [p.prompt, *p.answers] if pat.search(t)]
    assert not bad, bad[:5]
    assert len(Counter(p.extra["topic"] for p in WORLD)) >= 5


def test_world_knowledge_exclusion_check_catches_a_mention():
    pat = _pattern(_names(SUITE))
    assert pat.search("The capital of JAPAN is")           # case-insensitive, the check is not vacuous
    assert pat.search("Who founded microsoft?")
    assert not pat.search("The capital of Norway is")


# ------------------------------------------------------------------------------------ loader errors
def _write(tmp_path, name, lines) -> str:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def _record(**over) -> str:
    d = {"name": "X", "subject": "X", "split": "dev", "kind": "place", "neighbors": ["Y"],
         "forget": [{"prompt": "X is in", "answers": ["Z"]}], "retain": [{"prompt": "Y is in", "answers": ["W"]}]}
    d.update(over)
    return json.dumps({k: v for k, v in d.items() if v is not None})


def test_load_suite_bad_split_argument():
    with pytest.raises(ConceptError, match=r"load_suite: split .*'train'"):
        load_suite("train")


def test_unknown_split_in_any_concept_file_names_file_line_and_field(tmp_path):
    with pytest.raises(ConceptFileError, match=r"f.jsonl:2: split: must be one of \['dev', 'test'\]"):
        parse_concepts(_record() + "\n" + _record(name="X2", split="train"), source="f.jsonl")


@pytest.mark.parametrize("over, field", [({"split": "validation"}, "split"), ({"split": None}, "split"),
                                         ({"kind": "animal"}, "kind"), ({"kind": None}, "kind"),
                                         ({"neighbors": "Y"}, "neighbors"), ({"neighbors": []}, "neighbors"),
                                         ({"neighbors": ["Y", ""]}, "neighbors")])
def test_load_suite_file_errors(tmp_path, over, field):
    path = _write(tmp_path, "s.jsonl", [_record(name="A"), "", _record(**over)])
    with pytest.raises(ConceptFileError, match=rf"s.jsonl:3: {field}: ") as e:
        load_suite(path=path)
    assert (e.value.line, e.value.field) == (3, field)
    assert [c.name for c in load_suite("dev", path=_write(tmp_path, "ok.jsonl", [_record()]))] == ["X"]
    assert load_suite("test", path=_write(tmp_path, "ok.jsonl", [_record()])) == []


@pytest.mark.parametrize("line, field", [("{not json", None), ('["a"]', None),
                                         ('{"prompt": "p", "answers": ["a"], "form": "completion"}', "topic"),
                                         ('{"prompt": "p", "answers": ["a"], "topic": ""}', "topic"),
                                         ('{"prompt": "p", "topic": "math"}', "fact.answers"),
                                         ('{"prompt": "p", "answers": [], "topic": "math"}', "fact.answers")])
def test_load_world_knowledge_errors_name_file_and_line(tmp_path, line, field):
    good = '{"prompt": "The opposite of up is", "answers": ["down"], "form": "completion", "topic": "language"}'
    path = _write(tmp_path, "wk.jsonl", [good, line])
    with pytest.raises(ConceptFileError, match=r"wk.jsonl:2: ") as e:
        load_world_knowledge(path)
    assert e.value.field == field
    assert [p.answers for p in load_world_knowledge(_write(tmp_path, "ok.jsonl", [good]))] == [["down"]]
    with pytest.raises(ConceptFileError, match="no such world-knowledge file"):
        load_world_knowledge(tmp_path / "missing.jsonl")


def test_default_paths_are_the_shipped_files():
    assert suite_path().name == "suite.jsonl" and suite_path().exists()
    assert world_knowledge_path().name == "world_knowledge.jsonl" and world_knowledge_path().exists()


# ------------------------------------------------------------------------------------ against the model
def _sample(n: int, seed: int) -> list[Probe]:
    rng = random.Random(seed)
    probes = [p for c in SUITE for p in c.probes]
    return rng.sample(probes, n) + rng.sample(WORLD, n)


def test_sampled_probes_are_known_and_letter_rule_applies_in_scoring(smol):
    """A small sample of suite and world-knowledge probes hits at baseline; score_probes uses the
    form's rule (a letter that is in the continuation but does not start it is no mcq_letter hit)."""
    sample = _sample(8, seed=1)
    letter_prompt = ("Question: Which animal barks?\nA. cat\nB. dog\nC. cow\nD. fish\nAnswer: B\n\n"
                     "Question: What is the capital of Norway?\nA. Oslo\nB. Rome\nC. Lima\nD. Cairo\nAnswer:")
    scores = score_probes(smol, [*sample, Probe(letter_prompt, ["T"], "mcq_letter"),
                                 Probe(letter_prompt, ["T"], "completion")])
    assert all(s.hit for s in scores[:-2]), [(s.prompt[-60:], s.continuation) for s in scores[:-2] if not s.hit]
    cont = scores[-1].continuation
    first = cont.lstrip()[:1]
    assert "t" in cont.casefold() and first != "T", cont          # the case this test is about
    assert scores[-1].hit and not scores[-2].hit


@pytest.mark.slow
def test_random_sample_of_40_suite_and_40_world_probes_all_hit(smol):
    seed = random.randrange(10 ** 6)
    sample = _sample(40, seed=seed)
    misses = [(p.form, p.prompt[-70:], s.continuation) for p, s in zip(sample, score_probes(smol, sample))
              if not s.hit]
    assert not misses, (seed, misses)
