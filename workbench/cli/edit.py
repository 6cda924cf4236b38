"""`workbench concepts check`, `workbench locate` and `workbench edit` (thin callers of the library)."""
from __future__ import annotations

import dataclasses

from workbench.cli.common import (check_lengths, load_concept, load_concepts, load_model_from_args, parse_set,
                                  read_json_arg, write_html, write_json)
from workbench.errors import UsageError


def cmd_concepts_check(args) -> int:
    from workbench.verify.probes import check_concepts, format_check_table
    concepts = load_concepts(args.concepts)
    model = load_model_from_args(args)
    check_lengths(model, concepts)
    rows = check_concepts(model, concepts, threshold=args.threshold)
    print(format_check_table(rows))
    unknown = [r["concept"] for r in rows if not r["known"]]
    if unknown:
        print(f"not known by {model.model_id} (cannot be unlearned meaningfully): {', '.join(unknown)}")
    if args.json:
        from workbench.paths import write_json as write_quietly
        write_quietly(args.json, rows)
    return 1 if unknown and args.strict else 0


def cmd_locate(args) -> int:
    from workbench.locate import locate
    concept = load_concept(args)
    model = load_model_from_args(args)
    check_lengths(model, concept)
    kinds = tuple(k.strip() for k in args.kinds.split(","))
    report = locate(model, concept, kinds=kinds, trace_probes=args.trace_probes, sae=args.sae)
    print(report.summary())
    write_json(args.json, report.to_dict())
    if args.html:
        write_html(args.html, report.figures())
    return 0


def _read_report(path: str):
    from workbench.locate import LocalizationReport
    data = read_json_arg(path, f"--report {path}")
    try:
        return LocalizationReport.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"--report {path}: not a LocalizationReport from `workbench locate` "
                         f"({type(exc).__name__}: {exc})") from None


def cmd_edit(args) -> int:
    from workbench.concepts import get_concept
    from workbench.edits import fit_edit, get_method
    from workbench.patches.format import check_patch_target
    method = get_method(args.method)                           # fail fast on a bad name
    pool = load_concepts(args.concepts)
    chosen = [get_concept(pool, name) for name in args.concept]
    if len(chosen) > 1 and not method.batch:
        raise UsageError(f"edit method {args.method!r} fits one concept at a time; give one --concept")
    concept = chosen[0] if len(chosen) == 1 else chosen
    hyper = parse_set(args.set)
    method.config_cls.from_dict(hyper)                          # ...and on bad hyper-parameters
    check_patch_target(args.out)                                # ...and on an --out that may not be written
    report = None
    if args.report:
        report = _read_report(args.report)
    if args.parent:
        from workbench.patches import load_patch
        load_patch(args.parent)                                # a bad parent fails before the model loads
    model = load_model_from_args(args)
    for c in chosen:
        check_lengths(model, c)
    parent_edit = None
    if args.parent:                                            # fit on top of the parent patch
        from workbench.patches import apply_patch
        parent_edit = apply_patch(args.parent, model)
        if "parent" in {f.name for f in dataclasses.fields(method.config_cls)}:
            hyper.setdefault("parent", args.parent)
    try:
        edit = fit_edit(args.method, model, concept, report, **hyper)
        if args.parent and edit.parent is None:
            from workbench.patches.stack import on_top_of
            on_top_of(edit, args.parent, model)
        names = ", ".join(repr(c.name) for c in chosen)
        print(f"{args.method} on {names}: {len(edit.deltas)} tensor(s), {edit.params_changed():,} parameters, "
              f"{edit.edit_seconds:.2f} s")
        if args.verify:
            from workbench.verify.bench import compact_table
            from workbench.verify.battery import verify_edit
            edit.report = verify_edit(model, chosen[0], edit, utility_tokens=args.utility_tokens, relearn=False,
                                      fluency=False)
            print(compact_table(edit.report))
        path = edit.save(args.out, model=model)                # fingerprints: the parent-applied tensors
    finally:
        if parent_edit is not None:
            parent_edit.revert(model)
    print(f"wrote patch {path}" + (f" (on top of {args.parent})" if args.parent else ""))
    return 0
