"""`workbench …` command line: thin callers of library functions (docs/cli.md).

Every command exits non-zero with a one-line reason on bad input: a `WorkbenchError` (or a
missing file, see `workbench.errors.is_user_error`) is printed as `workbench CMD: error: ...`
and exits 2; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


from workbench.errors import UsageError


class CLIError(UsageError):
    """Bad input detected by the CLI itself."""


def check_text(text: str, what: str) -> str:
    """A non-empty argument that is encodable text (argv may carry undecodable bytes as lone surrogates)."""
    if not text or not text.strip():
        raise UsageError(f"{what}: give some text (it is empty)")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise UsageError(f"{what}: not valid UTF-8 text (it holds undecodable bytes / lone surrogates)")
    return text


def _load(args):
    from workbench.models import load_model
    from workbench.paths import resolve_device, resolve_dtype
    resolve_device(getattr(args, "device", None))         # a bad --device / --dtype fails before the weights load
    resolve_dtype(getattr(args, "dtype", None))
    return load_model(args.model, backend=getattr(args, "backend", "hf") or "hf",
                      dtype=getattr(args, "dtype", None), device=getattr(args, "device", None))


# ---------------------------------------------------------------------------- commands
def cmd_info(args) -> int:
    model = _load(args)
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
    model = _load(args)
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
        _write_html(args.html, [lens.figure()])
    return 0


def _write_html(path, figures) -> None:
    """A standalone page of plotly figures (workbench.reporting.write_html), then say so."""
    from workbench.reporting import write_html
    write_html(path, figures)
    print(f"wrote {path}")


COMMANDS = {}


def _extra_commands(sub) -> None:
    """Sub-commands that live next to their library modules register here."""
    import importlib
    for module in ("workbench.cli_more", "workbench.cli_verify", "workbench.cli_wagle", "workbench.cli_moe",
                   "workbench.cli_sae", "workbench.cli_dashboard", "workbench.cli_diffusion"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(sub, COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Locate, edit and verify concepts in LMs.")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_cmd(name, help_, func):
        p = sub.add_parser(name, help=help_)
        p.add_argument("model", help="embedded name (smollm2-135m, gemma-3-270m), HF folder, .gguf file or hub id")
        p.add_argument("--device", default=None)
        p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
        COMMANDS[name] = func
        return p

    p = model_cmd("info", "layers, sites, parameter counts", cmd_info)
    p.add_argument("--sites", action="store_true", help="list every site name")
    p = model_cmd("lens", "logit lens table for a prompt", cmd_lens)
    p.add_argument("prompt")
    p.add_argument("--answer", default=None, help="track this answer's first token")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
    p.add_argument("--json", default=None)
    p.add_argument("--html", default=None)
    _extra_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    parser = build_parser()
    args = parser.parse_args(argv)
    from workbench.errors import is_user_error, one_line
    try:
        return COMMANDS[args.command](args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not is_user_error(exc):
            raise                                   # a bug: keep the traceback
        print(f"workbench {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
