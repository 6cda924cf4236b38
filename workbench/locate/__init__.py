"""Locate a concept: concept vectors, residual directions, causal tracing, the fused report."""
from __future__ import annotations

import time

from workbench.locate.report import KINDS, Evidence, LocalizationReport


def locate(model, concept, kinds: tuple[str, ...] = ("concept_vectors", "directions", "tracing"),
           trace_probes: int = 2, validate_top: int = 8, progress: bool = True, sae=None,
           sae_top: int = 8) -> LocalizationReport:
    """Run the evidence kinds and fuse them into one LocalizationReport.

    `sae`: an SAE folder, a loaded SAEHandle or a list of them: adds `sae_feature` evidence (the
    `sae_top` most concept-selective features of each, see workbench.locate.sae).
    """
    report = LocalizationReport(model.model_id, concept.name,
                                meta={"timings": {}, "fit_view": bool(getattr(concept, "is_fit_view", False))})
    timings = report.meta["timings"]
    if getattr(model.family, "is_moe", False) and "concept_vectors" in kinds:
        # MoE: no dense value vectors to scan; expert routing attribution takes their place
        kinds = tuple(k for k in kinds if k != "concept_vectors") + ("expert_routing",)
    if "expert_routing" in kinds:
        from workbench.locate.routing import add_routing_evidence
        t0 = time.perf_counter()
        add_routing_evidence(report, model, concept)
        timings["expert_routing"] = round(time.perf_counter() - t0, 2)
    if "concept_vectors" in kinds:
        from workbench.locate.concept_vectors import locate_concept_vectors
        t0 = time.perf_counter()
        cv = locate_concept_vectors(model, concept, validate_top=validate_top, progress=progress)
        timings["concept_vectors"] = round(time.perf_counter() - t0, 2)
        timings["concept_vector_scan"] = round(cv["scan_seconds"], 3)
        report.add_profile("concept_vector", cv["layer_profile"])
        report.add_evidence([Evidence(v.site, "concept_vector", v.score, v.layer, v.causal_effect,
                                      {"sign": v.sign, "top_tokens": v.top_tokens[:10], "concept_in_top": v.concept_in_top,
                                       "forget_drop": v.forget_drop, "retain_drop": v.retain_drop})
                             for v in cv["vectors"]])
        report.meta["n_value_vectors_scanned"] = cv["n_scanned"]
    if "directions" in kinds:
        from workbench.locate.directions import residual_directions
        t0 = time.perf_counter()
        res = residual_directions(model, concept)
        timings["directions"] = round(time.perf_counter() - t0, 2)
        report.add_profile("residual_direction", res.separation)
        report.add_evidence([Evidence(f"blocks.{L}.hook_resid_post", "residual_direction", res.separation[L], L,
                                      None, {"probe_accuracy": res.accuracy[L]}) for L in res.layers])
    if "tracing" in kinds:
        from workbench.locate import tracing
        t0 = time.perf_counter()
        traces = tracing.trace_concept(model, concept, max_probes=trace_probes, progress=progress)
        timings["tracing"] = round(time.perf_counter() - t0, 2)
        for kind, ts in traces.items():
            prof = tracing.layer_profile(ts)
            report.add_profile(f"causal_trace_{kind}", prof)
            site_kind = tracing.KIND_SITE[kind]
            report.add_evidence([Evidence(f"blocks.{L}.{site_kind}", f"causal_trace_{kind}", prof[L], L, prof[L])
                                 for L in range(model.n_layers)])
            report.traces += [t.to_dict() for t in ts[:1]]
    if "weights" in kinds:                       # WAGLE weight attribution (workbench.locate.weights)
        from workbench.locate.weights import attribution_scores, score_evidence
        ws = attribution_scores(model, concept, method="wagle", progress=progress)
        timings["weights"] = ws.meta["seconds"]
        items, profile = score_evidence(model, ws)
        report.add_profile("weight_attribution", profile)
        report.add_evidence(items)
        report.meta["weight_attribution"] = {"method": ws.method, "mu": ws.meta.get("mu"), "passes": ws.meta["passes"],
                                             "top_weights": ws.top_weights(10)}
        del ws
    if sae is not None:
        from workbench.locate.sae import sae_concept_features, sae_evidence
        from workbench.sae.store import load_sae
        t0 = time.perf_counter()
        for spec in (sae if isinstance(sae, (list, tuple)) else [sae]):
            handle = spec if hasattr(spec, "sae") else load_sae(spec)
            report.add_evidence(sae_evidence(sae_concept_features(model, concept, handle, top=sae_top)))
            report.meta.setdefault("saes", []).append({"name": handle.name, "site": handle.site,
                                                       "sha256": handle.sha256, **handle.source})
        timings["sae"] = round(time.perf_counter() - t0, 2)
    return report


__all__ = ["KINDS", "Evidence", "LocalizationReport", "locate"]
