"""The verification battery: one report per (concept, edit) in the DESIGN.md §4 shape.

Required keys: concept, method, edit_seconds, params_changed, forget / retain {hit_before,
hit_after, prob_before, prob_after}, perplexity {before, after}, by_form {form: {...}} (forget
probes). Extras: kl (mean KL(base || edited) on held-out text), fluency, parametric_trace,
logit_lens_leakage, relearning, retain_by_form, verify_seconds (see workbench.verify.utility and
workbench.verify.robustness for what each measures).

The model is left exactly as it came in: an edit that was applied on entry (e.g. by
`workbench.patches.apply_patch`) is reverted for the "before" measurements and re-applied at the
end; every other path applies the edit scoped (`edit.applied`), restored also on exceptions.
"""
from __future__ import annotations

import time

__all__ = ["REQUIRED_KEYS", "PAIR_KEYS", "before_after", "verify_edit", "validate_result", "validate_report"]

PAIR_KEYS = ("hit_before", "hit_after", "prob_before", "prob_after")
REQUIRED_KEYS = ("concept", "method", "edit_seconds", "params_changed", "forget", "retain", "perplexity", "by_form")


def before_after(before: dict, after: dict) -> dict:
    """Two `summarize` outputs -> {hit_before, hit_after, prob_before, prob_after, n}."""
    return {"hit_before": before["hit"], "hit_after": after["hit"], "prob_before": before["prob"],
            "prob_after": after["prob"], "n": before["n"]}


def _by_form(before: dict, after: dict) -> dict:
    return {form: before_after(b, after["by_form"][form]) for form, b in before["by_form"].items()}


def verify_edit(model, concept, edit, max_new_tokens: int = 8, utility_tokens: int = 4096,
                relearn: bool = True, parametric: bool = True, leakage: bool = True, fluency: bool = True,
                relearn_steps: int = 5, relearn_lr: float = 1e-5, relearn_params: str = "all",
                top_n: int = 20) -> dict:
    """Run the battery on `edit` for `concept`; returns the §4 result dict (plus extras).

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
    probes = concept.probes
    n_f = len(concept.forget)

    def score():
        s = score_probes(model, probes, max_new_tokens=max_new_tokens)
        return summarize(s[:n_f]), summarize(s[n_f:])

    f_before, r_before = score()
    extras: dict = {}
    signature = robustness.parametric_signature(model, concept, top_n) if parametric else None
    lens_before = robustness.lens_leakage(model, concept.forget) if leakage else None
    flu_before = utility.fluency(model) if fluency else None
    with edit.applied(model):
        f_after, r_after = score()
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
    return {"concept": concept.name, "method": edit.method,
            "edit_seconds": edit.edit_seconds, "params_changed": edit.params_changed(),
            "forget": before_after(f_before, f_after), "retain": before_after(r_before, r_after),
            "perplexity": ppl, "by_form": _by_form(f_before, f_after),
            "retain_by_form": _by_form(r_before, r_after),
            **extras, "hyper": dict(edit.hyper), "max_new_tokens": max_new_tokens,
            "verify_seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------ validation
def _need(d, key: str, path: str):
    if not isinstance(d, dict) or key not in d:
        raise ValueError(f"report is missing {path}{key}" if path else f"report is missing {key}")
    return d[key]


def validate_result(r: dict, path: str = "") -> None:
    """Raise ValueError naming the first missing §4 key (e.g. 'results[0].forget.hit_after')."""
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
