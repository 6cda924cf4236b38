"""CLI `workbench diffusion ...`: concept erasure on Stable Diffusion 1.x pipelines.

    workbench diffusion info MODEL
    workbench diffusion edit uce|rece MODEL --erase "Van Gogh" [--guide art] [--preserve "Claude Monet;a dog"]
                                            --out PATCH [--set key=value] [--verify --json OUT --html OUT]
    workbench diffusion edit sae-clamp MODEL --erase "Van Gogh" --out PATCH [--verify --json OUT]
    workbench diffusion verify MODEL --patch PATCH --erase ... [--guide ...] --json OUT [--html OUT]
    workbench diffusion generate MODEL "prompt" [--patch PATCH] --steps 2 --out IMG.png
    workbench diffusion export MODEL --patch PATCH --out DIR          # edited diffusers folder
    workbench diffusion make-tiny --out DIR                           # the tiny random pipeline as a folder

MODEL is `tiny-sd`, `tiny-sd-minilm` (real MiniLM text encoder), a local diffusers folder or a hub id. Erased / preserved concepts come from
--erase / --preserve (';'-separated) or from a concept file (--concepts FILE --concept NAME:
subject, redirect_to = guide, extra keys `erase`, `guide`, `preserve`).
"""
from __future__ import annotations

from workbench.cli.common import load_concept, load_model_from_args, parse_set, write_html, write_json
from workbench.errors import UsageError


def _split(values: list[str] | None) -> list[str]:
    out = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(";") if x.strip())
    return out


def _spec(args):
    from workbench.diffusion.uce import ErasureSpec, spec_from_concept
    if getattr(args, "concepts", None):
        if not args.concept:
            raise UsageError("--concepts needs --concept NAME")
        spec = spec_from_concept(load_concept(args),
                                 guide=args.guide, preserve=_split(args.preserve) or None)
        return spec
    erase = _split(args.erase)
    if not erase:
        raise UsageError("give --erase CONCEPT (or --concepts FILE --concept NAME)")
    return ErasureSpec(erase=erase, guide=args.guide if args.guide is not None else "", preserve=_split(args.preserve))


def _print_report(r: dict) -> None:
    a, mv, w = r["alignment"], r["movement"], r["weight_change"]
    print(f"{r['method']} on {r['model']}: erase {r['erase']} -> guide {r['guide']!r}, preserve {len(r['preserve'])}")
    print(f"  K/V distance to guide      {a['to_guide_before']:.4f} -> {a['to_guide_after']:.4f}")
    pres = list(mv["preserved"].values())
    print(f"  K/V movement: erased {mv['erased']:.4f}  preserved {f'{sum(pres) / len(pres):.4f}' if pres else 'n/a'}  "
          f"empty prompt {mv['empty_prompt']:.4f}  held-out {sum(mv['held_out'].values()) / len(mv['held_out']):.4f}")
    print(f"  weight change: max rank {w['max_rank']} (erased vectors {w['n_erased_vectors']}), "
          f"mean ‖ΔW‖/‖W‖ {w['mean_rel_fro']:.4f}")
    print(f"  recovery residual of a closed-form attack embedding: "
          f"{', '.join(f'{x:.3f}' for x in r['recovery']['residual'])} (0 = concept regenerated)")
    if "generation" in r:
        g = r["generation"]
        print(f"  {g['steps']}-step generation on the edited pipeline: finite={g['finite']}")
    im = r["image_metrics"]
    if im.get("skipped"):
        print(f"  image metrics: skipped — {im['reason']}")
    else:
        for i, p in enumerate(im["prompts"]):
            print(f"  CLIP score {p!r}: prompt {im['clip_score_prompt']['before'][i]:.1f} -> "
                  f"{im['clip_score_prompt']['after'][i]:.1f}, concept {im['clip_score_concept']['before'][i]:.1f} -> "
                  f"{im['clip_score_concept']['after'][i]:.1f}")


def _write_outputs(args, report: dict) -> None:
    if getattr(args, "json", None):
        write_json(args.json, report)
    if getattr(args, "html", None) and "alignment" in report:
        from workbench.diffusion.figures import report_figures
        write_html(args.html, report_figures(report))


def cmd_info(args) -> int:
    model = load_model_from_args(args, kind="diffusion")
    for k, v in model.info().items():
        print(f"{k:>24}: {v}")
    if args.sites:
        from workbench.diffusion.sites import list_sites, resolve_weight
        for site in list_sites(model):
            print(f"  {site}" + (f"  ->  {resolve_weight(model, site)}" if ".W_" in site else ""))
    return 0


def cmd_edit(args) -> int:
    from workbench.diffusion.uce import UCEConfig, uce_edit
    from workbench.edits.base import Timer
    from workbench.patches.format import check_patch_target
    spec = _spec(args)
    hyper = parse_set(args.set)
    check_patch_target(args.out)                      # before the pipeline loads and the edit is fitted
    model = load_model_from_args(args, kind="diffusion")
    if args.method == "sae-clamp":
        from workbench.diffusion.sae import fit_sae_clamp
        from workbench.diffusion.verify import verify_sae_clamp
        known = {"site", "width", "k", "steps", "n_features", "scale", "gate", "margin", "seed"}
        bad = sorted(set(hyper) - known)
        if bad:
            raise UsageError(f"unknown hyper-parameter(s) {bad} for sae-clamp; known: {sorted(known)}")
        with Timer() as t:
            clamp = fit_sae_clamp(model, spec.erase, spec.preserve, progress=True, **hyper)
        print(f"sae-clamp: {len(clamp.features)} feature(s) at {clamp.site} in {t.seconds:.1f}s "
              f"(FVU {clamp.info['sae'].get('fvu', float('nan')):.3f}), gate threshold {clamp.threshold:.3f}")
        from workbench.diffusion.sae import clamp_edit
        edit = clamp_edit(model, clamp)
        edit.edit_seconds = t.seconds
        if args.verify:
            r = verify_sae_clamp(model, clamp, spec.erase, steps=args.steps, clip=args.clip)
            print(f"  gate: TPR {r['gate']['tpr']:.2f}  FPR {r['gate']['fpr']:.2f}   gated-off prompts bit-exact: "
                  f"{r['gated_off_prompts_bit_exact']}")
            edit.report = {k: v for k, v in r.items() if k != "sae"}
            _write_outputs(args, r)
        edit.save(args.out, model=model)              # a hook patch: SAE + features + gate, guarded by fingerprints
        print(f"wrote {args.out}")
        return 0
    if args.method == "uce":
        cfg = UCEConfig.from_dict(hyper)
        with Timer() as t:
            edit = uce_edit(model, spec, cfg)
    elif args.method == "rece":
        from workbench.diffusion.rece import RECEConfig, rece_edit
        cfg = RECEConfig.from_dict(hyper)
        with Timer() as t:
            edit = rece_edit(model, spec, cfg)
    else:
        raise UsageError(f"unknown diffusion edit {args.method!r}; use uce, rece or sae-clamp")
    edit.edit_seconds = t.seconds
    edit.seed = cfg.seed
    print(f"{args.method}: {len(edit.deltas)} matrices, {edit.params_changed():,} parameters, {t.seconds:.2f}s")
    if args.verify:
        from workbench.diffusion.verify import verify_diffusion_edit
        report = verify_diffusion_edit(model, spec, edit, steps=args.steps, clip=args.clip)
        _print_report(report)
        edit.report = {k: v for k, v in report.items() if k not in ("alignment", "weight_change")} | {
            "alignment": {k: v for k, v in report["alignment"].items() if k != "per_matrix"},
            "weight_change": {k: v for k, v in report["weight_change"].items() if k != "per_matrix"}}
        _write_outputs(args, report)
    edit.save(args.out, model=model)
    print(f"wrote {args.out}")
    return 0


def cmd_verify(args) -> int:
    from workbench.diffusion.verify import verify_diffusion_edit
    from workbench.patches import load_patch
    from workbench.patches.apply import check_base
    model = load_model_from_args(args, kind="diffusion")
    patch = load_patch(args.patch)
    check_base(patch, model)
    spec = _spec(args)
    edit = patch.new_edit()
    clamps = [h for h in edit.hooks if h.kind == "diffusion_sae_clamp"]
    if clamps and not edit.deltas:
        from workbench.diffusion.verify import verify_sae_clamp
        report = verify_sae_clamp(model, clamps[0].clamp, spec.erase, steps=args.steps, clip=args.clip)
        print(f"sae-clamp on {report['model']}: gate TPR {report['gate']['tpr']:.2f}  FPR {report['gate']['fpr']:.2f}  "
              f"gated-off prompts bit-exact: {report['gated_off_prompts_bit_exact']}  embedding change concept "
              f"{report['embedding_change']['concept']:.4f} / other {report['embedding_change']['other']:.4f}")
    else:
        report = verify_diffusion_edit(model, spec, edit, steps=args.steps, clip=args.clip)
        _print_report(report)
    _write_outputs(args, report)
    return 0


def cmd_generate(args) -> int:
    from PIL import Image
    model = load_model_from_args(args, kind="diffusion")
    if args.patch:                                    # weight patch (uce/rece) or hook patch (sae-clamp)
        from workbench.patches.apply import apply_patch
        apply_patch(args.patch, model)
    img = model.generate(args.prompt, steps=args.steps, seed=args.seed, size=args.size)[0]
    from workbench.paths import atomic_path
    with atomic_path(args.out) as tmp:
        Image.fromarray((img.clip(0, 1) * 255).astype("uint8")).save(tmp, format="PNG")
    print(f"wrote {args.out} ({img.shape[1]}x{img.shape[0]}, {args.steps} steps)")
    return 0


def cmd_export(args) -> int:
    from workbench.patches import load_patch
    from workbench.patches.apply import apply_patch
    from workbench.paths import atomic_path, check_output_folder
    check_output_folder(args.out, ("model_index.json",), "a diffusers folder", source=args.model)
    patch = load_patch(args.patch)                    # both before the pipeline loads
    model = load_model_from_args(args, kind="diffusion")
    apply_patch(patch, model)
    with atomic_path(args.out, is_dir=True) as tmp:
        model.pipe.save_pretrained(str(tmp), safe_serialization=True)
    print(f"wrote {args.out} (diffusers folder with the edit applied)")
    return 0


def cmd_make_tiny(args) -> int:
    import shutil

    from workbench.diffusion.models import tiny_pipeline_folder
    from workbench.paths import atomic_path, check_output_folder
    check_output_folder(args.out, ("model_index.json",), "a diffusers folder")
    src = tiny_pipeline_folder(args.seed, kind=args.kind)
    with atomic_path(args.out, is_dir=True) as tmp:
        shutil.rmtree(tmp)
        shutil.copytree(src, tmp)
    print(f"wrote {args.out}")
    return 0
