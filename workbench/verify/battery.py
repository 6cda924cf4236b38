"""The verification battery: one report per (concept, edit) in the shape of docs/report.md.

Required keys: concept, method, edit_seconds, params_changed, forget / retain {hit_before,
hit_after, prob_before, prob_after}, perplexity {before, after}, by_form {form: {...}} (forget
probes). Extras: kl (mean KL(base || edited) on held-out text), fluency, parametric_trace,
logit_lens_leakage, relearning, retain_by_form, subject_control, verify_seconds (see
workbench.verify.utility and workbench.verify.robustness for what each measures).

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

__all__ = ["REQUIRED_KEYS", "PAIR_KEYS", "before_after", "subject_swapped_probes", "verify_edit", "validate_result",
           "validate_report"]

PAIR_KEYS = ("hit_before", "hit_after", "prob_before", "prob_after")
REQUIRED_KEYS = ("concept", "method", "edit_seconds", "params_changed", "forget", "retain", "perplexity", "by_form")


def before_after(before: dict, after: dict) -> dict:
    """Two `summarize` outputs -> {hit_before, hit_after, prob_before, prob_after, n}."""
    return {"hit_before": before["hit"], "hit_after": after["hit"], "prob_before": before["prob"],
            "prob_after": after["prob"], "n": before["n"]}


def _by_form(before: dict, after: dict) -> dict:
    return {form: before_after(b, after["by_form"][form]) for form, b in before["by_form"].items()}


def subject_swapped_probes(concept) -> tuple[list[int], list]:
    """(indices of forget probes whose prompt contains the subject, those probes with the subject
    replaced by `redirect_to`, or by "it" when the concept has none)."""
    from workbench.concepts.schema import Probe
    swap = concept.redirect_to or "it"
    idx = [i for i, p in enumerate(concept.forget) if concept.subject in p.prompt]
    return idx, [Probe(concept.forget[i].prompt.replace(concept.subject, swap), list(concept.forget[i].answers),
                       concept.forget[i].form) for i in idx]


def verify_edit(model, concept, edit, max_new_tokens: int = 8, utility_tokens: int = 4096,
                relearn: bool = True, parametric: bool = True, leakage: bool = True, fluency: bool = True,
                relearn_steps: int = 5, relearn_lr: float = 1e-5, relearn_params: str = "all",
                top_n: int = 20) -> dict:
    """Run the battery on `edit` for `concept`; returns the result dict of docs/report.md (plus extras).

    utility_tokens=0 skips perplexity/KL (perplexity before/after are then None).
    """
    was_applied = edit.applied_now
    if was_applied:
        edit.revert(model)
    try:
        return _verify(model, concept, edit, max_new_tokens, utility_tokens, relearn, parametric, leakage,
                       fluency, relearn_steps, relearn_lr, relearn_params, top_n)
    finally:
        if edit.applied_now:                       # defensive: a scoped apply always reverts
            edit.revert(model)
        if was_applied:
            edit.apply(model)


def _verify(model, concept, edit, max_new_tokens, utility_tokens, relearn, parametric, leakage, fluency,
            relearn_steps, relearn_lr, relearn_params, top_n) -> dict:
    from workbench.verify import robustness, utility
    from workbench.verify.probes import score_probes, summarize
    t0 = time.perf_counter()
    parametric = parametric and not _is_moe(model)   # the concept-vector signature needs dense MLPs
    probes = concept.probes
    n_f = len(concept.forget)
    swap_idx, swapped = subject_swapped_probes(concept)

    def score(extra=()):
        s = score_probes(model, probes + list(extra), max_new_tokens=max_new_tokens)
        return s[:n_f], s[n_f:len(probes)], s[len(probes):]

    sf_before, sr_before, s_swapped = score(swapped)
    f_before, r_before = summarize(sf_before), summarize(sr_before)
    extras: dict = {}
    signature = robustness.parametric_signature(model, concept, top_n) if parametric else None
    lens_before = robustness.lens_leakage(model, concept.forget) if leakage else None
    flu_before = utility.fluency(model) if fluency else None
    with edit.applied(model):
        sf_after, sr_after, _ = score()
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
    if fluency:
        extras["fluency"] = {"before": {k: flu_before[k] for k in ("repetition", "entropy")},
                             "after": {k: flu_after[k] for k in ("repetition", "entropy")},
                             "n": flu_before["n"], "samples_after": flu_after["samples"]}
    if utility_tokens:
        u = utility.utility_before_after(model, edit, n_tokens=utility_tokens)
        ppl, extras["kl"], extras["utility_tokens"] = u["perplexity"], u["kl"], u["n_tokens"]
    else:
        ppl = {"before": None, "after": None}
    if relearn:
        extras["relearning"] = robustness.relearning(model, concept, edit, steps=relearn_steps, lr=relearn_lr,
                                                     params=relearn_params, max_new_tokens=max_new_tokens)
    extras.update(_moe_extras(model, concept, edit))
    return {"concept": concept.name, "method": edit.method,
            "edit_seconds": edit.edit_seconds, "params_changed": edit.params_changed(),
            "forget": before_after(f_before, f_after), "retain": before_after(r_before, r_after),
            "perplexity": ppl, "by_form": _by_form(f_before, f_after),
            "retain_by_form": _by_form(r_before, r_after),
            **extras, "hyper": dict(edit.hyper), "max_new_tokens": max_new_tokens,
            "verify_seconds": time.perf_counter() - t0}


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
