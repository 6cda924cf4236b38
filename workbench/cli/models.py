"""`workbench info` and `workbench lens`: a model's structure and its logit lens."""
from __future__ import annotations

from workbench.cli.common import check_text, load_model_from_args, write_html
from workbench.errors import UsageError


def cmd_info(args) -> int:
    model = load_model_from_args(args)
    i = model.info
    print(repr(model))
    for key, value in i.to_dict().items():
        print(f"  {key:<18} {value}")
    groups: dict[str, int] = {}
    for name, p in model.hf.named_parameters():
        key = "layers" if ".layers." in name or ".h." in name else name.rsplit(".", 1)[0]
        groups[key] = groups.get(key, 0) + p.numel()
    print("parameters:")
    for key, n in groups.items():
        print(f"  {key:<30} {n:>12,}")
    names = model.sites()
    kinds = sorted({s.split(".", 2)[-1] for s in names if s.startswith("blocks.") and ".experts." not in s})
    top = [s for s in names if not s.startswith("blocks.")]
    print(f"sites ({len(names)}): {', '.join(top)}, blocks.{{0..{i.n_layers - 1}}}.{{{', '.join(kinds)}}}"
          + (f", blocks.L.mlp.experts.{{0..{i.n_experts - 1}}}" if i.n_experts else "")
          + f", value vectors blocks.L.mlp.W_out[0..{i.d_mlp - 1}]")
    if args.sites:
        print("\n".join(model.sites()))
    return 0


def cmd_lens(args) -> int:
    check_text(args.prompt, "prompt")
    if args.answer is not None:
        check_text(args.answer, "--answer")
    if args.k < 1:
        raise UsageError(f"-k {args.k}: must be at least 1")
    model = load_model_from_args(args)
    from workbench.concepts.limits import check_prompt_lengths
    from workbench.concepts.schema import Probe
    check_prompt_lengths(model, [Probe(args.prompt, [args.answer or "x"], "chat" if args.chat else "completion")])
    prompt = model.chat(args.prompt) if args.chat else args.prompt
    lens = model.logit_lens(prompt, k=args.k, answer=args.answer)
    print(lens.table())
    if args.answer:
        first = lens.first_layer_top1()
        print(f"answer {args.answer!r} is top-1 from layer {first} on" if first is not None
              else f"answer {args.answer!r} never settles as top-1")
    if args.json:
        from workbench.paths import write_json
        write_json(args.json, lens.to_dict())
    if args.html:
        write_html(args.html, [lens.figure()])
    return 0
