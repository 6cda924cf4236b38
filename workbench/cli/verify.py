"""CLI sub-commands `verify` (a patch against its concept) and `bench` (methods x concepts)."""
from __future__ import annotations

from workbench.cli.common import check_lengths, load_concepts, load_model_from_args, write_json
from workbench.errors import UsageError


def _hyper(text: str | None, methods: list[str]) -> dict:
    """--hyper '{"ga": {"steps": 5}}' (JSON object of objects) or a path to such a JSON file."""
    if not text:
        return {}
    from pathlib import Path
    from workbench.patches.format import strict_json
    raw = Path(text).read_bytes() if not text.lstrip().startswith("{") else text
    d = strict_json(raw, "--hyper", error=UsageError)
    if not isinstance(d, dict) or not all(isinstance(v, dict) for v in d.values()):
        raise UsageError('--hyper must be a JSON object {"method": {"key": value}}')
    from workbench.edits import get_method
    for m, h in d.items():
        get_method(m).config_cls.from_dict(h)       # unknown / wrong-type / non-finite: before any work
    return d


def cmd_verify(args) -> int:
    from workbench.concepts import get_concept
    from workbench.patches import load_patch
    from workbench.patches.apply import check_base
    from workbench.verify.battery import verify_edit
    from workbench.verify.bench import format_table
    concept = get_concept(load_concepts(args.concepts), args.concept)
    patch = load_patch(args.patch)                      # checksum verified here
    model = load_model_from_args(args)
    check_lengths(model, concept)
    check_base(patch, model)                            # fingerprints: refuse a wrong base model
    edit = patch.new_edit()
    result = verify_edit(model, concept, edit, max_new_tokens=args.max_new_tokens,
                         utility_tokens=args.utility_tokens, relearn=not args.no_relearn,
                         parametric=not args.no_parametric, leakage=not args.no_leakage,
                         fluency=not args.no_fluency)
    result.setdefault("split", concept.split)
    result.setdefault("fit", (edit.provenance or {}).get("fit"))
    print(format_table([result]))
    for form, v in result["by_form"].items():
        print(f"  forget/{form:<11} hit {v['hit_before']:.2f} -> {v['hit_after']:.2f}   "
              f"prob {v['prob_before']:.3f} -> {v['prob_after']:.3f}")
    if "kl" in result:
        print(f"  KL(base || edited) on held-out text: {result['kl']:.4f} nats/token")
    if "relearning" in result and "after" in result["relearning"]:
        rl = result["relearning"]
        print(f"  relearning ({rl['steps']} steps on {rl['train_probes']} probes): held-out forget hit "
              f"{rl['before']['hit']:.2f} -> {rl['after']['hit']:.2f}")
    if "parametric_trace" in result:
        pt = result["parametric_trace"]
        print(f"  parametric trace: {pt['signature_remaining']:.0%} of the top-{pt['top_n']} concept vectors "
              f"remain, cosine {pt['cosine_mean']:.3f}")
    import workbench
    doc = {"model": model.model_id, "workbench_version": workbench.__version__, "patch": str(args.patch),
           "results": [result]}
    write_json(args.json, doc)
    return 0


def cmd_bench(args) -> int:
    from workbench.concepts import get_concept
    from workbench.edits import get_method
    from workbench.verify.bench import format_table, run_bench
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise UsageError("--methods: give at least one method name")
    for m in methods:
        get_method(m)                                   # fail fast, before loading the model
    from workbench.concepts.splits import select_split
    pool = load_concepts(args.concepts)
    concepts = [get_concept(pool, n) for n in args.concept] if args.concept else pool
    concepts = select_split(concepts, args.split, source=args.concepts)      # before loading the model
    hyper = _hyper(args.hyper, methods)
    verify = {"relearn": args.relearn, "fluency": args.fluency, "max_new_tokens": args.max_new_tokens}
    from workbench.verify.sweep import sweep_from_args
    doc = sweep_from_args(args, concepts, methods, hyper, verify)       # None without --ray
    if doc is None:
        model = load_model_from_args(args)
        check_lengths(model, concepts)
        doc = run_bench(model, concepts, methods, hyper=hyper, json_out=args.json, html_out=args.html,
                        verify=verify, utility_tokens=args.utility_tokens, split=args.split, resume=not args.restart)
    print(format_table(doc["results"]))
    for f in doc["failures"]:
        print(f"FAILED {f['method']} on {f['concept']!r}: {f['error']}")
    print(f"wrote {args.json}" + (f" and {args.html}" if args.html else ""))
    return 1 if doc["failures"] and not doc["results"] else 0
