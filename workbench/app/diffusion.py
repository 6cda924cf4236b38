"""What the dashboard's Diffusion page calls: fit an erasure, verify it, render before/after samples.

Every edit is applied only inside `with edit.applied(model):` (or the clamp's scoped hook) within
the call, under a lock, so a shared cached pipeline is never left edited between requests.
"""
from __future__ import annotations

import threading

LOCK = threading.Lock()
METHODS = ("uce", "rece", "sae-clamp")


def run_erasure(model, method: str, erase: list[str], guide: str = "", preserve: list[str] | None = None,
                hyper: dict | None = None, steps: int = 2, seed: int = 0, sample_prompts: list[str] | None = None) -> dict:
    """Fit `method`, verify it, generate before/after samples. Returns report, figures and images."""
    from workbench.diffusion.figures import image_grid_figure, report_figures
    from workbench.diffusion.uce import ErasureSpec
    from workbench.diffusion.verify import generation_check, verify_diffusion_edit, verify_sae_clamp
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {METHODS}")
    spec = ErasureSpec(erase=list(erase), guide=guide, preserve=list(preserve or []))
    hyper = dict(hyper or {})
    prompts = sample_prompts or [f"a painting by {spec.erase[0]}"] + [f"a painting by {p}" for p in spec.preserve[:2]]
    with LOCK:
        if method == "sae-clamp":
            from workbench.diffusion.sae import fit_sae_clamp
            clamp = fit_sae_clamp(model, spec.erase, spec.preserve, **hyper)
            report = verify_sae_clamp(model, clamp, spec.erase, steps=steps, seed=seed, generate=False)
            gen = generation_check(model, prompts, clamp=clamp, steps=steps, seed=seed)
            figures, edit = [], clamp
        else:
            from workbench.diffusion.rece import RECEConfig, rece_edit
            from workbench.diffusion.uce import UCEConfig, uce_edit
            from workbench.edits.base import Timer
            with Timer() as t:
                edit = uce_edit(model, spec, UCEConfig.from_dict(hyper)) if method == "uce" else \
                    rece_edit(model, spec, RECEConfig.from_dict(hyper))
            edit.edit_seconds = t.seconds
            report = verify_diffusion_edit(model, spec, edit, steps=steps, seed=seed, generate=False)
            gen = generation_check(model, prompts, edit=edit, steps=steps, seed=seed)
            figures = report_figures(report)
    from workbench.diffusion.image_metrics import image_metrics
    report["generation"] = {k: v for k, v in gen.items() if not k.startswith("images")}
    report["image_metrics"] = image_metrics(prompts, gen["images_before"], gen["images_after"], spec.erase)
    figures.append(image_grid_figure(prompts, gen["images_before"], gen["images_after"],
                                     title=f"{steps}-step samples, seed {seed}: before / after {method}"))
    return {"report": report, "figures": figures, "edit": edit}
