"""CLI: `workbench sae train|info|features` (thin callers of workbench.sae and workbench.locate.sae)."""
from __future__ import annotations

from workbench.errors import UsageError


def _load(args):
    from workbench.cli import _load as load
    return load(args)


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
    from workbench.sae import train
    widths = _ints(args.width, "--width") or [2048]
    model = _load(args)
    hooks = args.hook or [train.default_site(model)]
    for h in hooks:
        if model.site(h).is_weight:
            raise UsageError(f"--hook {h!r} is a weight, not an activation site")
    cfg = train.SAETrainConfig(width=widths[0], k=args.k, tokens=args.tokens, epochs=args.epochs, lr=args.lr,
                               batch_size=args.batch_size, seed=args.seed, source=args.source)
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
    from workbench.cli_more import _concept
    from workbench.locate.sae import feature_figure, sae_concept_features
    from workbench.sae.store import load_sae
    concept = _concept(args)
    model = _load(args)
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
        from workbench.paths import write_json
        write_json(args.json, {"model": model.model_id, "concept": concept.name, "sae": handle.name,
                               "sae_sha256": handle.sha256, "features": [f.to_dict() for f in feats]})
        print(f"wrote {args.json}")
    if args.html:
        from workbench.cli import _write_html
        _write_html(args.html, [feature_figure(f) for f in feats])
    return 0


def register(sub, commands) -> None:
    p = sub.add_parser("sae", help="sparse autoencoders: train, inspect, find a concept's features")
    ssub = p.add_subparsers(dest="sae_command", required=True)

    def with_model(name, help_):
        q = ssub.add_parser(name, help=help_)
        q.add_argument("model", help="embedded name (smollm2-135m, ...), HF folder, .gguf file or hub id")
        q.add_argument("--device", default=None)
        q.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
        return q

    t = with_model("train", "train TopK SAEs (cache activations once, one SAE per hook x width)")
    t.add_argument("--hook", action="append", default=None, metavar="SITE",
                   help="activation site, e.g. blocks.15.hook_resid_post (repeatable; default: mid-layer residual)")
    t.add_argument("--width", default=None, help="SAE width(s): 2048 or 1024,2048 (default 2048)")
    t.add_argument("--tokens", type=int, default=100_000, help="corpus tokens to cache and train on")
    t.add_argument("--k", type=int, default=32, help="TopK: active features per token")
    t.add_argument("--epochs", type=float, default=4.0)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--source", choices=["shakespeare", "kjv", "wordnet"], default="shakespeare",
                   help="training corpus (kjv / wordnet: `make corpora`)")
    t.add_argument("--runner", choices=["cache", "sae-lens"], default="cache",
                   help="cache: cached activations + sae-lens SAETrainer (several SAEs per forward); "
                        "sae-lens: sae-lens's LanguageModelSAETrainingRunner on the TransformerLens view")
    t.add_argument("--out", required=True, help="SAE folder (with several hooks/widths: parent folder)")

    i = ssub.add_parser("info", help="describe an SAE folder or a pretrained sae-lens release")
    i.add_argument("sae", help="SAE folder, or a sae-lens release with --sae-id")
    i.add_argument("--sae-id", default=None)

    f = with_model("features", "the concept's most selective SAE features (snippets, logit effects, causal)")
    f.add_argument("--sae", required=True)
    f.add_argument("--sae-id", default=None)
    f.add_argument("--concepts", required=True)
    f.add_argument("--concept", required=True)
    f.add_argument("--top", type=int, default=8)
    f.add_argument("--no-causal", action="store_true")
    f.add_argument("--json", default=None)
    f.add_argument("--html", default=None)

    def dispatch(args) -> int:
        return {"train": cmd_sae_train, "info": cmd_sae_info, "features": cmd_sae_features}[args.sae_command](args)

    commands["sae"] = dispatch
