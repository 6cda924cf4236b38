"""CLI sub-commands for concepts, locate, edit, patch and demo (thin callers of the library)."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from workbench.errors import UsageError


def _concepts(path: str):
    """'builtin' (the 10 classic concepts), 'suite' (the dev/test suite) or a concept file."""
    from workbench.concepts import load_builtin, read_concepts
    if path == "suite":
        from workbench.concepts.suite import load_suite
        return load_suite()
    return load_builtin() if path == "builtin" else read_concepts(path)


def _concept(args):
    from workbench.concepts import get_concept
    return get_concept(_concepts(args.concepts), args.concept)


def _load(args):
    from workbench.cli import _load as load
    return load(args)


def cmd_concepts_check(args) -> int:
    from workbench.verify.probes import check_concepts, format_check_table
    concepts = _concepts(args.concepts)
    model = _load(args)
    _check_lengths(model, concepts)
    rows = check_concepts(model, concepts, threshold=args.threshold)
    print(format_check_table(rows))
    unknown = [r["concept"] for r in rows if not r["known"]]
    if unknown:
        print(f"not known by {model.model_id} (cannot be unlearned meaningfully): {', '.join(unknown)}")
    if args.json:
        from workbench.paths import write_json
        write_json(args.json, rows)
    return 1 if unknown and args.strict else 0


def cmd_locate(args) -> int:
    from workbench.cli import _write_html
    from workbench.locate import locate
    from workbench.paths import write_json
    concept = _concept(args)
    model = _load(args)
    _check_lengths(model, concept)
    kinds = tuple(k.strip() for k in args.kinds.split(","))
    report = locate(model, concept, kinds=kinds, trace_probes=args.trace_probes, sae=args.sae)
    print(report.summary())
    write_json(args.json, report.to_dict())
    print(f"wrote {args.json}")
    if args.html:
        _write_html(args.html, report.figures())
    return 0


def _hyper(items: list[str]) -> dict:
    """`--set key=value` items -> {key: value}: the value as JSON when it parses (numbers, lists,
    true/false/null), else the plain string; NaN / Infinity and overflowing numbers are refused."""
    import math

    from workbench.errors import HyperParameterError
    out = {}
    for item in items or []:
        if "=" not in item:
            raise HyperParameterError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        if not key.strip().isidentifier():
            raise HyperParameterError(f"--set {item!r}: {key!r} is not a hyper-parameter name")
        if value.strip().lstrip("+-").lower() in ("nan", "inf", "infinity"):
            raise HyperParameterError(f"--set {item!r}: not a finite number")
        try:
            parsed = json.loads(value, parse_constant=lambda c: math.nan)
        except (json.JSONDecodeError, RecursionError):
            parsed = value
        from workbench.patches.format import first_non_finite
        if first_non_finite(parsed) is not None:
            raise HyperParameterError(f"--set {item!r}: not a finite number")
        out[key.strip()] = parsed
    return out


def _check_lengths(model, concepts) -> None:
    from workbench.concepts.limits import check_prompt_lengths
    check_prompt_lengths(model, concepts)


def _read_report(path: str):
    from workbench.locate import LocalizationReport
    from workbench.patches.format import strict_json
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"--report {path}: cannot read it ({exc.strerror or exc})") from None
    data = strict_json(raw, f"--report {path}", error=UsageError)
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
    pool = _concepts(args.concepts)
    chosen = [get_concept(pool, name) for name in args.concept]
    if len(chosen) > 1 and not method.batch:
        raise UsageError(f"edit method {args.method!r} fits one concept at a time; give one --concept")
    concept = chosen[0] if len(chosen) == 1 else chosen
    hyper = _hyper(args.set)
    method.config_cls.from_dict(hyper)                          # ...and on bad hyper-parameters
    check_patch_target(args.out)                                # ...and on an --out that may not be written
    report = None
    if args.report:
        report = _read_report(args.report)
    if args.parent:
        from workbench.patches import load_patch
        load_patch(args.parent)                                # a bad parent fails before the model loads
    model = _load(args)
    for c in chosen:
        _check_lengths(model, c)
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


def cmd_patch(args) -> int:
    from workbench import patches
    from workbench.patches.export import check_export_target
    stack = args.patch
    if len(stack) > 1 and args.action in ("inspect", "export"):
        raise UsageError(f"patch {args.action} takes one patch, got {len(stack)}")
    args.patch = stack[0]
    if args.action == "inspect":
        text, problem = patches.inspect_report(args.patch)
        print(text)
        if problem:
            print(f"workbench patch: error: {args.patch}: {problem}", file=sys.stderr)
            return 1
        return 0
    if not args.model or not args.out:
        raise UsageError(f"patch {args.action} needs --model and --out")
    if len(stack) > 1:
        return _patch_stack(args, stack)
    if args.action in ("apply", "export"):                  # before the model is loaded
        check_export_target(args.out, args.format if args.action == "export" else "hf", source=args.model)
        patches.load_patch(args.patch)                      # and before it is loaded: a bad patch fails fast
    if args.action == "apply":
        folder = Path(args.model)
        if folder.is_dir():
            out = patches.apply_patch_to_folder(args.patch, folder, args.out)
        else:
            model = _load(args)
            edit = patches.apply_patch(args.patch, model)
            try:
                out = patches.export_hf(edit, model, args.out)
            finally:
                edit.revert(model)
        print(f"applied {args.patch} -> {out}")
        return 0
    if args.action == "export":
        model = _load(args)
        if args.format == "peft":
            out = patches.export_peft(args.patch, model, args.out)
        else:
            out = patches.export_hf(args.patch, model, args.out)
        print(f"exported ({args.format}) -> {out}")
        return 0
    if args.action == "revert":
        from workbench.patches.revert import revert_folder
        out, exact = revert_folder(args.patch, args.model, args.out, unverified=args.unverified)
        print(f"reverted -> {out} ({'bit-exact: fingerprints match the base' if exact else 'fingerprints differ from the base (rounding); load the base checkpoint for a bit-exact original'})")
        return 0
    raise UsageError(f"unknown patch action {args.action!r}")


def _patch_stack(args, stack: list[str]) -> int:
    """`patch apply P1 P2 ...` (in order, each on top of the previous) / `patch revert P1 P2 ...`."""
    from workbench import patches
    from workbench.patches import stack as st
    loaded = [patches.load_patch(p) for p in stack]
    if args.action == "apply":
        st.check_order(loaded)                                 # a wrong order fails before the model loads
        model = _load(args)
        edits = st.apply_stack(loaded, model)
        try:
            out = patches.export_hf(edits[-1], model, args.out)
            (Path(out) / "workbench_stack.json").write_text(json.dumps(
                [{"patch": p, "id": st.patch_id(x)} for p, x in zip(stack, loaded)], indent=2) + "\n")
        finally:
            st.revert_stack(edits, model)
        print(f"applied {' + '.join(stack)} -> {out}")
        return 0
    if args.action == "revert":
        out, exact = st.revert_stack_folder(loaded, args.model, args.out)
        print(f"reverted {' + '.join(reversed(stack))} -> {out} "
              f"({'bit-exact: fingerprints match the base' if exact else 'fingerprints differ from the base (rounding)'})")
        return 0
    raise ValueError(f"patch {args.action} takes one patch, got {len(stack)}")


def cmd_demo(args) -> int:
    from workbench.demo import run_demo
    return run_demo(concept=args.concept, out=args.out, model_name=args.model)


def register(sub, commands) -> None:
    def model_cmd(name, help_, func, model=True):
        p = sub.add_parser(name, help=help_)
        if model:
            p.add_argument("model", help="embedded name, HF folder, .gguf file or hub id")
            p.add_argument("--device", default=None)
            p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
        commands[name] = func
        return p

    p = sub.add_parser("concepts", help="concept files")
    csub = p.add_subparsers(dest="concepts_cmd", required=True)
    c = csub.add_parser("check", help="baseline hit rates per concept; flags unknown ones")
    c.add_argument("model")
    c.add_argument("--concepts", required=True, help="concept file (JSON Lines), 'builtin' or 'suite' (the dev/test suite)")
    c.add_argument("--threshold", type=float, default=0.5)
    c.add_argument("--json", default=None)
    c.add_argument("--strict", action="store_true", help="exit 1 when a concept is not known")
    c.add_argument("--device", default=None)
    c.add_argument("--dtype", default=None)
    commands["concepts"] = cmd_concepts_check

    p = model_cmd("locate", "locate a concept: concept vectors, residual directions, causal tracing", cmd_locate)
    p.add_argument("--concepts", required=True)
    p.add_argument("--concept", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--html", default=None)
    p.add_argument("--kinds", default="concept_vectors,directions,tracing")
    p.add_argument("--trace-probes", type=int, default=2)
    p.add_argument("--sae", action="append", default=None, metavar="DIR",
                   help="SAE folder (`workbench sae train`): adds SAE-feature evidence (repeatable)")

    p = sub.add_parser("edit", help="fit an edit method and write a patch")
    p.add_argument("method")
    p.add_argument("model")
    p.add_argument("--concepts", required=True)
    p.add_argument("--concept", required=True, action="append",
                   help="concept name; repeat it to erase several in one edit (methods with batch support, e.g. rocr)")
    p.add_argument("--out", required=True)
    p.add_argument("--parent", default=None, metavar="PATCH",
                   help="fit on top of this patch (applied first); the new patch names it as its parent")
    p.add_argument("--report", default=None, help="LocalizationReport JSON from `workbench locate`")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="hyper-parameter (repeatable)")
    p.add_argument("--verify", action="store_true",
                   help="run the verification battery (probes per form, perplexity, KL, trace, leakage); "
                        "stored in the patch")
    p.add_argument("--utility-tokens", type=int, default=2048, help="held-out tokens for perplexity/KL with --verify")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    commands["edit"] = cmd_edit

    p = sub.add_parser("patch", help="inspect | apply | revert | export a patch")
    p.add_argument("action", choices=["inspect", "apply", "revert", "export"])
    p.add_argument("patch", nargs="+", help="patch (apply / revert: several = a stack, in the order fitted)")
    p.add_argument("--model", default=None, help="base model (embedded name, folder, .gguf)")
    p.add_argument("--out", default=None)
    p.add_argument("--format", default="hf", choices=["hf", "peft"])
    p.add_argument("--unverified", action="store_true",
                   help="revert: subtract even when the checkpoint cannot be checked against patched_fingerprints")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    commands["patch"] = cmd_patch

    p = sub.add_parser("demo", help="the README's main job: locate -> ROCR -> verify -> export")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--concept", default="Japan")
    p.add_argument("--out", default="workbench-demo")
    commands["demo"] = cmd_demo
