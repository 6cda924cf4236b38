"""CLI sub-commands `workbench wagle scores|mask|inspect` (weight attribution and masks).

The masked edit itself is `workbench edit wagle MODEL ... --set mask=wagle|random|magnitude|PATH`.
"""
from __future__ import annotations

from workbench.errors import UsageError


def _concept(args):
    from workbench.cli_more import _concept as concept
    return concept(args)


def _load(args):
    from workbench.cli import _load as load
    return load(args)


def _html(path, figures) -> None:
    from workbench.cli import _write_html
    _write_html(path, figures)


def cmd_wagle(args) -> int:
    from workbench.paths import write_json
    if args.wagle_cmd == "inspect":
        from workbench.locate.masks import load_mask
        mask = load_mask(args.mask)
        print(f"{args.mask}: {mask.selected:,} of {mask.numel:,} weights selected ({mask.density:.3%}), "
              f"{len(mask.masks)} tensors; {mask.meta}")
        rows = sorted(mask.per_module(), key=lambda r: -r["selected"])
        for r in rows[:args.top]:
            print(f"  {r['name']:<48} {r['selected']:>10,} / {r['numel']:>10,}  ({r['density']:.2%})")
        if args.html:
            _html(args.html, mask.figures())
        return 0
    from workbench.locate.masks import top_fraction
    from workbench.locate.weights import attribution_scores
    if args.wagle_cmd == "mask":
        from workbench.locate.masks import resolve_keep
        try:
            keep = resolve_keep(args.keep, args.sparsity, 0.05)
        except ValueError as exc:
            raise UsageError(f"--keep / --sparsity: {exc}") from None
    concept = _concept(args)
    model = _load(args)
    ws = attribution_scores(model, concept, method=args.method, mu=args.mu, params=args.params, seed=args.seed)
    if args.wagle_cmd == "scores":
        print(ws.summary(args.top))
        write_json(args.json, ws.to_dict(model))
        print(f"wrote {args.json}")
        if args.html:
            _html(args.html, ws.figures())
        return 0
    mask = top_fraction(ws, None, args.scope, meta={"score_seconds": ws.meta["seconds"],
                                                     "passes": ws.meta["passes"]}, keep=keep)
    del ws
    path = mask.save(args.out)
    print(f"{args.method} mask for {concept.name!r}: {mask.selected:,} of {mask.numel:,} weights "
          f"({mask.density:.2%}, {args.scope}) -> {path}")
    if args.json:
        write_json(args.json, mask.to_dict())
    if args.html:
        _html(args.html, mask.figures())
    return 0


def register(sub, commands) -> None:
    from workbench.locate.weights import SCORE_METHODS
    p = sub.add_parser("wagle", help="weight attribution scores and masks (WAGLE)")
    wsub = p.add_subparsers(dest="wagle_cmd", required=True)

    def scored(name, help_):
        c = wsub.add_parser(name, help=help_)
        c.add_argument("model", help="embedded name, HF folder, .gguf file or hub id")
        c.add_argument("--concepts", required=True, help="concept file (JSON Lines) or 'builtin'")
        c.add_argument("--concept", required=True)
        c.add_argument("--method", default="wagle", choices=SCORE_METHODS)
        c.add_argument("--mu", type=float, default=1e-6, help="WAGLE's μ (retain-gradient scale)")
        c.add_argument("--params", default="all", help="all | mlp | attn | no_embed | comma-separated substrings")
        c.add_argument("--seed", type=int, default=0, help="for --method random")
        c.add_argument("--html", default=None)
        c.add_argument("--top", type=int, default=10)
        c.add_argument("--device", default=None)
        c.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
        return c

    c = scored("scores", "per-weight attribution; writes per-module / per-layer / per-unit aggregates")
    c.add_argument("--json", required=True)
    c = scored("mask", "top `keep` share of weights by score -> compact mask file (safetensors)")
    c.add_argument("--out", required=True, help="mask file (.safetensors)")
    c.add_argument("--keep", type=float, default=None,
                   help="share of weights kept for updating (WAGLE's ratio: 0.95 TOFU, 0.6 WMDP); default 0.05")
    c.add_argument("--sparsity", type=float, default=None, help="deprecated: share left out (= 1 - keep)")
    c.add_argument("--scope", default="global", choices=["global", "per_module"])
    c.add_argument("--json", default=None, help="per-module sparsity table")
    c = wsub.add_parser("inspect", help="summarize a mask file")
    c.add_argument("mask")
    c.add_argument("--top", type=int, default=15)
    c.add_argument("--html", default=None)
    commands["wagle"] = cmd_wagle
