"""CLI sub-commands `workbench wagle scores|mask|inspect` (weight attribution and masks).

The masked edit itself is `workbench edit wagle MODEL ... --set mask=wagle|random|magnitude|PATH`.
"""
from __future__ import annotations

from workbench.cli.common import load_concept, load_model_from_args, write_html, write_json
from workbench.errors import UsageError


def cmd_wagle(args) -> int:
    if args.wagle_cmd == "inspect":
        from workbench.locate.masks import load_mask
        mask = load_mask(args.mask)
        print(f"{args.mask}: {mask.selected:,} of {mask.numel:,} weights selected ({mask.density:.3%}), "
              f"{len(mask.masks)} tensors; {mask.meta}")
        rows = sorted(mask.per_module(), key=lambda r: -r["selected"])
        for r in rows[:args.top]:
            print(f"  {r['name']:<48} {r['selected']:>10,} / {r['numel']:>10,}  ({r['density']:.2%})")
        if args.html:
            write_html(args.html, mask.figures())
        return 0
    from workbench.locate.masks import top_fraction
    from workbench.locate.weights import attribution_scores
    if args.wagle_cmd == "mask":
        from workbench.locate.masks import resolve_keep
        try:
            keep = resolve_keep(args.keep, args.sparsity, 0.05)
        except ValueError as exc:
            raise UsageError(f"--keep / --sparsity: {exc}") from None
    concept = load_concept(args)
    model = load_model_from_args(args)
    ws = attribution_scores(model, concept, method=args.method, mu=args.mu, params=args.params, seed=args.seed)
    if args.wagle_cmd == "scores":
        print(ws.summary(args.top))
        write_json(args.json, ws.to_dict(model))
        if args.html:
            write_html(args.html, ws.figures())
        return 0
    mask = top_fraction(ws, None, args.scope, meta={"score_seconds": ws.meta["seconds"],
                                                     "passes": ws.meta["passes"]}, keep=keep)
    del ws
    path = mask.save(args.out)
    print(f"{args.method} mask for {concept.name!r}: {mask.selected:,} of {mask.numel:,} weights "
          f"({mask.density:.2%}, {args.scope}) -> {path}")
    if args.json:
        from workbench.paths import write_json as write_quietly
        write_quietly(args.json, mask.to_dict())
    if args.html:
        write_html(args.html, mask.figures())
    return 0
