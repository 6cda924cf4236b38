"""The verification battery: one report per (concept, edit) in the shape of docs/report.md.

Required keys: concept, method, edit_seconds, params_changed, forget / retain {hit_before,
hit_after, prob_before, prob_after}, perplexity {before, after}, by_form {form: {...}} (forget
probes). Every hit block also carries `n` and Wilson 95 % intervals `hit_before_ci` /
`hit_after_ci` (workbench.verify.stats); forget / retain carry `per_probe` (prompt, form, hit and
prob before / after of every probe) so two results on the same concept can be compared
probe by probe (`paired_compare`: exact McNemar on hits, paired bootstrap on probabilities).

`by_form` / `retain_by_form` list a form only when it has >= MIN_FORM_KNOWN (3) probes the model
answered before the edit ("known"): a rate over one or two probes says nothing. The probes of the
smaller forms are pooled under OTHER_FORMS ("other (<3 each)"), whose entry names the pooled
forms and their sizes (`forms`), so every probe is still counted once and `sum(n)` over by_form
equals the number of probes.

Extras: kl (mean KL(base || edited) on held-out Shakespeare, with `kl_ci`), perplexity's `ratio`
/ `ratio_ci`; `perplexity_independent` {corpus, before, after, ratio, ratio_ci, n_tokens} and
`kl_independent` {corpus, mean, ci, n_tokens} on a corpus no edit statistic saw (WordNet glosses,
else KJV; `{"skipped": reason}` when neither is installed); `world_knowledge` (general facts kept,
workbench.verify.world); `mia` (membership inference on the fit forget texts,
workbench.verify.attacks) and `relearning` (fine-tuning the edited model on the fit forget texts,
recovery curve on the evaluation forget probes); fluency, parametric_trace, logit_lens_leakage,
retain_by_form, subject_control, verify_seconds (see workbench.verify.utility and
workbench.verify.robustness). Fit texts come from `fit` (argument) or
`workbench.concepts.fit.fit_data(model, concept)`; without either, mia / relearning are
`{"skipped": reason}`.

`subject_control` guards against probes that give their answer away: each forget prompt is scored
on the unedited model with the subject swapped for `redirect_to` (or "it"); a probe still answered
("The Peter Rabbit books were written by J.K." -> "Rowling") does not test the subject's knowledge,
and no subject-targeted edit can be expected to remove it. `forget_subject_dependent` gives the
forget scores on the remaining probes.

The model is left exactly as it came in: an edit that was applied on entry (e.g. by
`workbench.patches.apply_patch`) is reverted for the "before" measurements and re-applied at the
end; every other path applies the edit scoped (`edit.applied`), restored also on exceptions.
"""
from __future__ import annotations

import time
from pathlib import Path

__all__ = ["REQUIRED_KEYS", "PAIR_KEYS", "MIN_FORM_KNOWN", "OTHER_FORMS", "before_after", "by_form",
           "paired_compare", "per_probe", "resolve_fit", "subject_swapped_probes", "verify_edit", "validate_result",
           "validate_report"]

PAIR_KEYS = ("hit_before", "hit_after", "prob_before", "prob_after")
REQUIRED_KEYS = ("concept", "method", "edit_seconds", "params_changed", "forget", "retain", "perplexity", "by_form")
MIN_FORM_KNOWN = 3
OTHER_FORMS = "other (<3 each)"


def before_after(before: dict, after: dict) -> dict:
    """Two `summarize` outputs -> {hit_before, hit_after, prob_before, prob_after, n, hit_before_ci,
    hit_after_ci}."""
    return {"hit_before": before["hit"], "hit_after": after["hit"], "prob_before": before["prob"],
            "prob_after": after["prob"], "n": before["n"], "hit_before_ci": before.get("hit_ci"),
            "hit_after_ci": after.get("hit_ci")}


def per_probe(before: list, after: list) -> list[dict]:
    """Per probe {prompt, form, hit_before, hit_after, prob_before, prob_after} (two ProbeScore lists)."""
    return [{"prompt": b.prompt, "form": b.form, "hit_before": bool(b.hit), "hit_after": bool(a.hit),
             "prob_before": b.prob, "prob_after": a.prob} for b, a in zip(before, after)]


def by_form(before: list, after: list, min_known: int = MIN_FORM_KNOWN) -> dict:
    """Per-form before/after blocks from two ProbeScore lists (same probes, same order).

    A form is listed when >= min_known of its probes were hit before the edit; the others are
    pooled under OTHER_FORMS with `forms` {form: n}. Every block has `n_known`.
    """
    from workbench.verify.probes import summarize
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(before):
        groups.setdefault(s.form, []).append(i)
    out, pooled, pooled_forms = {}, [], {}
    for form, idx in groups.items():
        known = sum(bool(before[i].hit) for i in idx)
        if known >= min_known:
            out[form] = {**before_after(summarize([before[i] for i in idx]), summarize([after[i] for i in idx])),
                         "n_known": known}
        else:
            pooled += idx
            pooled_forms[form] = len(idx)
    if pooled:
        pooled.sort()
        out[OTHER_FORMS] = {**before_after(summarize([before[i] for i in pooled]),
                                           summarize([after[i] for i in pooled])),
                            "n_known": sum(bool(before[i].hit) for i in pooled), "forms": pooled_forms}
    return out


def subject_swapped_probes(concept) -> tuple[list[int], list]:
    """(indices of forget probes whose prompt contains the subject, those probes with the subject
    replaced by `redirect_to`, or by "it" when the concept has none)."""
    from workbench.concepts.schema import Probe
    swap = concept.redirect_to or "it"
    idx = [i for i, p in enumerate(concept.forget) if concept.subject in p.prompt]
    return idx, [Probe(concept.forget[i].prompt.replace(concept.subject, swap), list(concept.forget[i].answers),
                       concept.forget[i].form) for i in idx]


# ------------------------------------------------------------------------------ fit data
def resolve_fit(model, concept, fit=None) -> tuple[dict | None, str | None]:
    """({"forget", "retain", "source"} or None, reason when None) — the texts the attacks may use.

    `fit`: a FitData (or any object / dict with forget, retain, source), or None: then
    `workbench.concepts.fit.fit_data(model, concept)` (derived without evaluation probes, cached),
    else the concept's own `fit` block. Call on the unedited model.
    """
    from workbench.verify.attacks import as_fit_probes
    if fit is None:
        try:
            from workbench.concepts.fit import fit_data
        except ImportError:
            fit_data = None
        if fit_data is not None:
            got = fit_data(model, concept)
            fit, prov = got if isinstance(got, tuple) else (got, None)
            if prov is not None:
                fit = {"forget": fit.forget, "retain": fit.retain, "source": fit.source, "provenance": prov}
        elif getattr(concept, "fit", None) is not None:
            fit = concept.fit
        else:
            return None, ("no fit data: workbench.concepts.fit is not available and the concept has no `fit` "
                          "block (pass fit=...)")
    get = (lambda k, d=None: fit.get(k, d)) if isinstance(fit, dict) else (lambda k, d=None: getattr(fit, k, d))
    forget = as_fit_probes(get("forget", []) or [], "fit.forget")
    retain = as_fit_probes(get("retain", []) or [], "fit.retain")
    if not forget:
        return None, "the fit data has no forget text"
    source = get("source", "given") or "given"
    prov = get("provenance") or {"source": source, "n_forget": len(forget), "n_retain": len(retain)}
    return {"forget": forget, "retain": retain, "source": source, "provenance": prov}, None


# ------------------------------------------------------------------------------ battery
def verify_edit(model, concept, edit, max_new_tokens: int = 8, utility_tokens: int = 4096,
                relearn: bool = True, parametric: bool = True, leakage: bool = True, fluency: bool = True,
                relearn_steps: int = 20, relearn_lr: float = 1e-5, relearn_params: str = "all",
                top_n: int = 20, *, relearn_curve=(0, 5, 10, 20), relearn_batch: int = 8, mia: bool = True,
                fit=None, world_knowledge=True, independent_corpus=("wordnet", "kjv"),
                n_boot: int = 1000) -> dict:
    """Run the battery on `edit` for `concept`; returns the §4 result dict (plus extras).

    utility_tokens=0 skips perplexity/KL on both corpora (perplexity before/after are then None).
    relearn_*: the relearning attack's budget (Adam steps on the fit forget texts, lr, parameters
    trained, steps at which the evaluation forget probes are scored, mini-batch size).
    mia: membership inference on the fit forget texts. fit: the fit data (default: fit_data()).
    world_knowledge: True (built-in file), a path, or False. independent_corpus: corpus name or
    names tried in order (first installed one used), or None. n_boot: bootstrap resamples.
    """
    was_applied = edit.applied_now
    if was_applied:
        edit.revert(model)
    try:
        return _verify(model, concept, edit, max_new_tokens, utility_tokens, relearn, parametric, leakage,
                       fluency, top_n, dict(steps=relearn_steps, lr=relearn_lr, params=relearn_params,
                                            curve=tuple(relearn_curve), batch_size=relearn_batch),
                       mia, fit, world_knowledge, independent_corpus, n_boot)
    finally:
        if edit.applied_now:                       # defensive: a scoped apply always reverts
            edit.revert(model)
        if was_applied:
            edit.apply(model)


def _world_probes(concept, world_knowledge) -> tuple[list, int, str, str | None]:
    """(probes, excluded, source, skip reason)."""
    from workbench.verify.world import DEFAULT_PATH, exclude_concept, load_world_knowledge
    if world_knowledge is False or world_knowledge is None:
        return [], 0, "", "disabled (world_knowledge=False)"
    path = DEFAULT_PATH if world_knowledge is True else Path(world_knowledge)
    if world_knowledge is True and not path.is_file():
        return [], 0, str(path), f"world-knowledge file not found: {path}"
    probes, excluded = exclude_concept(load_world_knowledge(path), concept)
    return probes, excluded, str(path), None


def _independent(model, edit, utility_tokens, corpora, n_boot) -> tuple[dict, dict]:
    from workbench.verify import utility
    if not utility_tokens:
        why = {"skipped": "utility_tokens=0"}
        return dict(why), dict(why)
    if not corpora:
        why = {"skipped": "disabled (independent_corpus=None)"}
        return dict(why), dict(why)
    names = [corpora] if isinstance(corpora, str) else list(corpora)
    seen = set(str((getattr(edit, "hyper", None) or {}).get("cov_sources") or "").split("+")) - {""}
    reasons = [f"{n}: in the edit's own statistics (cov_sources)" for n in names if n in seen]
    for name in [n for n in names if n not in seen]:
        missing = utility.corpus_missing(name)
        if missing is None:
            u = utility.utility_before_after(model, edit, n_tokens=utility_tokens, source=name, n_boot=n_boot)
            return ({"corpus": name, **u["perplexity"], "ratio": u["ratio"], "ratio_ci": u["ratio_ci"],
                     "n_tokens": u["n_tokens"]},
                    {"corpus": name, "mean": u["kl"], "ci": u["kl_ci"], "n_tokens": u["n_tokens"]})
        reasons.append(f"{name}: {missing}")
    why = {"skipped": "no independent corpus installed (make corpora): " + "; ".join(reasons)}
    return dict(why), dict(why)


def _verify(model, concept, edit, max_new_tokens, utility_tokens, relearn, parametric, leakage, fluency,
            top_n, relearn_kw, mia, fit, world_knowledge, independent_corpus, n_boot) -> dict:
    from workbench.verify import attacks, robustness, utility
    from workbench.verify.probes import score_probes, summarize
    from workbench.verify.world import summarize_world
    t0 = time.perf_counter()
    parametric = parametric and not _is_moe(model)   # the concept-vector signature needs dense MLPs
    probes = concept.probes
    n_f, n_p = len(concept.forget), len(concept.probes)
    swap_idx, swapped = subject_swapped_probes(concept)
    wk_probes, wk_excluded, wk_source, wk_skip = _world_probes(concept, world_knowledge)
    n_w = len(wk_probes)

    def score(extra=()):
        s = score_probes(model, probes + wk_probes + list(extra), max_new_tokens=max_new_tokens)
        return s[:n_f], s[n_f:n_p], s[n_p:n_p + n_w], s[n_p + n_w:]

    sf_before, sr_before, sw_before, s_swapped = score(swapped)
    f_before, r_before = summarize(sf_before), summarize(sr_before)
    extras: dict = {}
    fitd, fit_skip = resolve_fit(model, concept, fit) if (mia or relearn) else (None, "not requested")
    if mia:
        extras["mia"] = (attacks.membership_inference(model, concept, edit, fitd["forget"], retain=fitd["retain"],
                                                      n_boot=n_boot, member_source=f"fit forget texts "
                                                                                   f"({fitd['source']})")
                         if fitd else {"skipped": fit_skip})
    signature = robustness.parametric_signature(model, concept, top_n) if parametric else None
    lens_before = robustness.lens_leakage(model, concept.forget) if leakage else None
    flu_before = utility.fluency(model) if fluency else None
    with edit.applied(model):
        sf_after, sr_after, sw_after, _ = score()
        f_after, r_after = summarize(sf_after), summarize(sr_after)
        if parametric:
            extras["parametric_trace"] = robustness.parametric_trace(model, concept, signature)
        if leakage:
            lens_after = robustness.lens_leakage(model, concept.forget)
            keys = ("best_rank_mean", "max_prob_mean", "top1_share", "top10_share", "final_prob_mean")
            extras["logit_lens_leakage"] = {
                "layers": "intermediate (all but the last)",
                "before": {k: lens_before[k] for k in keys}, "after": {k: lens_after[k] for k in keys},
                "per_probe_after": lens_after["per_probe"]}
        flu_after = utility.fluency(model) if fluency else None
    given_away = [i for i, sc in zip(swap_idx, s_swapped) if sc.hit]
    dependent = [i for i in swap_idx if i not in given_away]
    extras["subject_control"] = {
        "swap_to": concept.redirect_to or "it", "n_forget": n_f, "no_subject_in_prompt": n_f - len(swap_idx),
        "answered_without_subject": [concept.forget[i].prompt for i in given_away],
        "hit_subject_swapped": (len(given_away) / len(swap_idx)) if swap_idx else None}
    if dependent:
        extras["forget_subject_dependent"] = before_after(summarize([sf_before[i] for i in dependent]),
                                                          summarize([sf_after[i] for i in dependent]))
    extras["world_knowledge"] = ({"skipped": wk_skip, "source": wk_source} if wk_skip else
                                 summarize_world(sw_before, sw_after, wk_excluded, wk_source, n_boot=n_boot))
    if fluency:
        extras["fluency"] = {"before": {k: flu_before[k] for k in ("repetition", "entropy")},
                             "after": {k: flu_after[k] for k in ("repetition", "entropy")},
                             "n": flu_before["n"], "samples_after": flu_after["samples"]}
    if utility_tokens:
        u = utility.utility_before_after(model, edit, n_tokens=utility_tokens, n_boot=n_boot)
        ppl = {**u["perplexity"], "ratio": u["ratio"], "ratio_ci": u["ratio_ci"], "corpus": u["corpus"],
               "n_tokens": u["n_tokens"]}
        extras["kl"], extras["kl_ci"], extras["utility_tokens"] = u["kl"], u["kl_ci"], u["n_tokens"]
    else:
        ppl = {"before": None, "after": None}
    extras["perplexity_independent"], extras["kl_independent"] = _independent(model, edit, utility_tokens,
                                                                              independent_corpus, n_boot)
    if relearn:
        extras["relearning"] = (attacks.relearning_attack(model, concept, edit, fitd["forget"],
                                                          max_new_tokens=max_new_tokens, fit_source=fitd["source"],
                                                          **relearn_kw)
                                if fitd else {"skipped": fit_skip})
    extras.update(_moe_extras(model, concept, edit))
    if fitd is not None:
        extras["fit"] = (edit.provenance or {}).get("fit") or fitd["provenance"]
    return {"concept": concept.name, "method": edit.method, "split": getattr(concept, "split", None),
            "edit_seconds": edit.edit_seconds, "params_changed": edit.params_changed(),
            "forget": {**before_after(f_before, f_after), "per_probe": per_probe(sf_before, sf_after)},
            "retain": {**before_after(r_before, r_after), "per_probe": per_probe(sr_before, sr_after)},
            "perplexity": ppl, "by_form": by_form(sf_before, sf_after),
            "retain_by_form": by_form(sr_before, sr_after),
            **extras, "hyper": dict(edit.hyper), "max_new_tokens": max_new_tokens,
            "verify_seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------ paired comparison
def paired_compare(result_a: dict, result_b: dict, when: str = "after", n_boot: int = 2000, seed: int = 0) -> dict:
    """Do two edits of the same concept differ? Compares their §4 results probe by probe.

    For forget and retain: hit rates with Wilson intervals, an exact McNemar test on the per-probe
    hits and a paired bootstrap of the per-probe probabilities (a minus b), all at `when`
    ("after", or "before" as a sanity check: the same base model gives identical scores).
    Raises ValueError when the results are of different concepts or probes, or lack `per_probe`.
    """
    from workbench.verify.stats import paired_compare_hits
    if when not in ("before", "after"):
        raise ValueError(f"when={when!r} must be 'before' or 'after'")
    if result_a.get("concept") != result_b.get("concept"):
        raise ValueError(f"paired_compare needs two results of the same concept, got {result_a.get('concept')!r} "
                         f"and {result_b.get('concept')!r}")
    out = {"concept": result_a["concept"], "methods": [result_a.get("method"), result_b.get("method")],
           "when": when}
    for group in ("forget", "retain"):
        pa = result_a.get(group, {}).get("per_probe")
        pb = result_b.get(group, {}).get("per_probe")
        if pa is None or pb is None:
            raise ValueError(f"paired_compare: {group}.per_probe missing (results made before per-probe scores "
                             f"were recorded; re-run the battery)")
        if len(pa) != len(pb):
            raise ValueError(f"paired_compare: {group} has {len(pa)} probes in a but {len(pb)} in b")
        for i, (x, y) in enumerate(zip(pa, pb)):
            if (x["prompt"], x["form"]) != (y["prompt"], y["form"]):
                raise ValueError(f"paired_compare: {group}.per_probe[{i}] differs ({x['prompt']!r} vs "
                                 f"{y['prompt']!r}); the results must score the same probes")
        r = paired_compare_hits([x[f"hit_{when}"] for x in pa], [y[f"hit_{when}"] for y in pb],
                                [x[f"prob_{when}"] for x in pa], [y[f"prob_{when}"] for y in pb],
                                n_boot=n_boot, seed=seed)
        r["hits_differ"] = r["mcnemar"]["p"] < 0.05
        r["probs_differ"] = r["prob"]["p"] is not None and r["prob"]["p"] < 0.05
        out[group] = r
    return out


# ------------------------------------------------------------------------------ MoE
def _is_moe(model) -> bool:
    return bool(getattr(getattr(model, "family", None), "is_moe", False))


def _moe_extras(model, concept, edit) -> dict:
    """Mixture-of-experts models: routing drift on forget / retain tokens (workbench.locate.routing)."""
    if not _is_moe(model):
        return {}
    from workbench.locate.routing import routing_drift_for_edit
    return {"routing_drift": routing_drift_for_edit(model, concept, edit)}


# ------------------------------------------------------------------------------ validation
def _need(d, key: str, path: str):
    if not isinstance(d, dict) or key not in d:
        raise ValueError(f"report is missing {path}{key}" if path else f"report is missing {key}")
    return d[key]


def validate_result(r: dict, path: str = "") -> None:
    """Raise ValueError naming the first missing required key (docs/report.md) (e.g. 'results[0].forget.hit_after')."""
    if not isinstance(r, dict):
        raise ValueError(f"report entry {path.rstrip('.') or 'result'} must be an object")
    for key in REQUIRED_KEYS:
        _need(r, key, path)
    for group in ("forget", "retain"):
        for key in PAIR_KEYS:
            _need(r[group], key, f"{path}{group}.")
    for key in ("before", "after"):
        _need(r["perplexity"], key, f"{path}perplexity.")
    if not isinstance(r["by_form"], dict):
        raise ValueError(f"report {path}by_form must be an object")
    for form, v in r["by_form"].items():
        for key in ("hit_before", "hit_after"):
            _need(v, key, f"{path}by_form.{form}.")


def validate_report(d: dict) -> dict:
    """Check a benchmark document {model, workbench_version, results: [...]}; returns it."""
    for key in ("model", "workbench_version", "results"):
        _need(d, key, "")
    if not isinstance(d["results"], list):
        raise ValueError("report results must be a list")
    for i, r in enumerate(d["results"]):
        validate_result(r, f"results[{i}].")
    return d
