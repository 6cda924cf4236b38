"""CLI: `workbench sae train|info|features` (thin callers of workbench.sae and workbench.locate.sae)."""
from __future__ import annotations

from workbench.cli.common import load_concept, load_model_from_args, write_html, write_json
from workbench.errors import UsageError


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{what} must be an integer or a comma-separated list of integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise UsageError(f"{what} must be positive, got {text!r}")
    return values


def cmd_sae_train(args) -> int:
    from pathlib import Path

    from workbench.sae import train
    from workbench.sae.store import check_sae_target
    widths = _ints(args.width, "--width") or [2048]
    one = len(args.hook or [None]) == 1 and len(widths) == 1
    out = Path(args.out)
    cfg = train.SAETrainConfig(width=widths[0], k=args.k, tokens=args.tokens, epochs=args.epochs, lr=args.lr,
                               batch_size=args.batch_size, seed=args.seed, source=args.source)
    if one:                                          # before the model loads: --out is the SAE folder
        check_sae_target(out)
    elif out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(f"--out {out}: must be a folder (it holds one SAE folder per hook and width)")
    model = load_model_from_args(args)
    hooks = args.hook or [train.default_site(model)]
    for h in hooks:
        if model.site(h).is_weight:
            raise UsageError(f"--hook {h!r} is a weight, not an activation site")
        for w in ([] if one else widths):
            check_sae_target(out / f"{h}-w{w}")
    if args.runner == "sae-lens":
        if len(hooks) != 1 or len(widths) != 1:
            raise UsageError("--runner sae-lens trains one SAE: give one --hook and one --width")
        records = [train.train_with_runner(model, hooks[0], args.out, cfg)]
    else:
        records = train.train_from_cache(model, hooks, widths, args.out, cfg)
    for r in records:
        m = r["metrics"]
        print(f"{r['name']}: FVU {m['fvu']:.3f} (train {m.get('train_fvu', float('nan')):.3f}), L0 {m['l0']:.1f}, "
              f"dead {m['dead_fraction']:.1%}, {r['seconds']:.0f} s -> {r['path']}")
    return 0


def cmd_sae_info(args) -> int:
    from workbench.sae.store import load_sae
    h = load_sae(args.sae, args.sae_id)
    print(f"{h.name}: site {h.site}, d_in {h.sae.cfg.d_in}, d_sae {h.d_sae}, "
          f"architecture {h.sae.cfg.architecture()}, sha256 {h.sha256}")
    for key, value in (h.meta.get("metrics") or {}).items():
        print(f"  {key:<14} {value:.4g}" if isinstance(value, float) else f"  {key:<14} {value}")
    return 0


def cmd_sae_features(args) -> int:
    from workbench.locate.sae import feature_figure, sae_concept_features
    from workbench.sae.store import load_sae
    concept = load_concept(args)
    model = load_model_from_args(args)
    handle = load_sae(args.sae, args.sae_id)
    feats = sae_concept_features(model, concept, handle, top=args.top, causal=not args.no_causal)
    for f in feats:
        ce = f"{f.causal_effect:+.3f}" if f.causal_effect is not None else "n/a"
        snip = f.snippets[0] if f.snippets else None
        print(f"{f.name}  score {f.score:.3f}  fires concept {f.rate_concept:.0%} / control {f.rate_control:.0%}  "
              f"causal {ce}  promotes {[t for t, _ in f.promoted[:6]]}")
        if snip:
            print(f"    top snippet ({snip['max']:.2f}): {''.join(snip['tokens'])!r}")
    if args.json:
        write_json(args.json, {"model": model.model_id, "concept": concept.name, "sae": handle.name,
                               "sae_sha256": handle.sha256, "features": [f.to_dict() for f in feats]})
    if args.html:
        write_html(args.html, [feature_figure(f) for f in feats])
    return 0
