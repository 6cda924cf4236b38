"""`workbench patch inspect|apply|revert|export` (one patch or a stack) and `workbench demo`."""
from __future__ import annotations

import sys
from pathlib import Path

from workbench.cli.common import load_model_from_args
from workbench.errors import UsageError


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
            model = load_model_from_args(args)
            edit = patches.apply_patch(args.patch, model)
            try:
                out = patches.export_hf(edit, model, args.out)
            finally:
                edit.revert(model)
        print(f"applied {args.patch} -> {out}")
        return 0
    if args.action == "export":
        model = load_model_from_args(args)
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
    from workbench.patches.export import check_export_target
    from workbench.paths import write_json
    check_export_target(args.out, "hf", source=args.model)    # before anything is loaded
    loaded = [patches.load_patch(p) for p in stack]
    if args.action == "apply":
        st.check_order(loaded)                                 # a wrong order fails before the model loads
        model = load_model_from_args(args)
        edits = st.apply_stack(loaded, model)
        try:
            out = patches.export_hf(edits[-1], model, args.out)
            write_json(Path(out) / "workbench_stack.json",
                       [{"patch": p, "id": st.patch_id(x)} for p, x in zip(stack, loaded)])
        finally:
            st.revert_stack(edits, model)
        print(f"applied {' + '.join(stack)} -> {out}")
        return 0
    if args.action == "revert":
        out, exact = st.revert_stack_folder(loaded, args.model, args.out, unverified=args.unverified)
        print(f"reverted {' + '.join(reversed(stack))} -> {out} "
              f"({'bit-exact: fingerprints match the base' if exact else 'fingerprints differ from the base (rounding)'})")
        return 0
    raise UsageError(f"patch {args.action} takes one patch, got {len(stack)}")


def cmd_demo(args) -> int:
    from workbench.cli.demo import run_demo
    return run_demo(concept=args.concept, out=args.out, model_name=args.model)
