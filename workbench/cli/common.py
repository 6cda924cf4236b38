"""What every `workbench` sub-command shares: the model arguments (declared once, here), loading
the model and the concepts, `--set key=value` parsing, text checks and HTML reports.

The command modules (`workbench/cli/*.py`) call these; none declares `--model` / `--device` /
`--dtype` or wraps the model loader itself.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from workbench.errors import HyperParameterError, UsageError
from workbench.paths import DTYPE_NAMES

LM_MODEL_HELP = "embedded name (smollm2-135m, gemma-3-270m), HF folder, .gguf file or hub id"
DIFFUSION_MODEL_HELP = "'tiny-sd', 'tiny-sd-minilm', a local diffusers folder or a hub id"
CONCEPTS_HELP = "concept file (JSON Lines), 'builtin' or 'suite' (the dev/test suite)"


class CLIError(UsageError):
    """Bad input detected by the CLI itself."""


# ---------------------------------------------------------------------------- arguments
def add_model_args(p, kind: str = "lm", model: str = "positional", dtype: bool = True) -> None:
    """MODEL (positional, `--model` option or none), `--device` and `--dtype`: the one declaration.

    kind: "lm" (language models, `load_model`) or "diffusion" (`load_pipeline`), for the help text.
    model: "positional" | "required" (`--model`, required) | "option" (`--model`, default None) | "none".
    """
    help_ = DIFFUSION_MODEL_HELP if kind == "diffusion" else LM_MODEL_HELP
    if model == "positional":
        p.add_argument("model", help=help_)
    elif model in ("required", "option"):
        p.add_argument("--model", required=model == "required", default=None, help=help_)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps or auto (default: $WORKBENCH_DEVICE, "
                                                  "else the best available)")
    if dtype:
        p.add_argument("--dtype", default=None, choices=DTYPE_NAMES,
                       help="load dtype (default float32)" + ("; edits are solved in fp32 and cast back"
                                                              if kind == "diffusion" else ""))


# ---------------------------------------------------------------------------- loading
def load_model_from_args(args, kind: str = "lm"):
    """The model named by args.model, with args.device / args.dtype (and args.backend) when present.

    kind "lm": a language model (`workbench.models.load_model`); "diffusion": a Stable Diffusion
    pipeline (`workbench.diffusion.models.load_pipeline`). A bad --device / --dtype fails before
    the weights load."""
    from workbench.paths import resolve_device, resolve_dtype
    device, dtype = getattr(args, "device", None), getattr(args, "dtype", None)
    resolve_device(device)                          # a bad --device / --dtype: one line, nothing loaded
    resolve_dtype(dtype)
    if kind == "diffusion":
        from workbench.diffusion.models import load_pipeline
        return load_pipeline(args.model, device=device, dtype=resolve_dtype(dtype))
    from workbench.models import load_model
    return load_model(args.model, backend=getattr(args, "backend", "hf") or "hf", dtype=dtype, device=device)


def load_concepts(path: str):
    """'builtin' (the 10 classic concepts), 'suite' (the dev/test suite) or a concept file."""
    from workbench.concepts import load_builtin, read_concepts
    if path == "suite":
        from workbench.concepts.suite import load_suite
        return load_suite()
    return load_builtin() if path == "builtin" else read_concepts(path)


def load_concept(args):
    """The concept args.concept of the pool args.concepts."""
    from workbench.concepts import get_concept
    return get_concept(load_concepts(args.concepts), args.concept)


def check_lengths(model, concepts) -> None:
    """Every probe prompt fits the model's context (one line naming the probe otherwise)."""
    from workbench.concepts.limits import check_prompt_lengths
    check_prompt_lengths(model, concepts)


# ---------------------------------------------------------------------------- values
def check_text(text: str, what: str) -> str:
    """A non-empty argument that is encodable text (argv may carry undecodable bytes as lone surrogates)."""
    if not text or not text.strip():
        raise UsageError(f"{what}: give some text (it is empty)")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise UsageError(f"{what}: not valid UTF-8 text (it holds undecodable bytes / lone surrogates)")
    return text


def parse_set(items: list[str] | None) -> dict:
    """`--set key=value` items -> {key: value}: the value as JSON when it parses (numbers, lists,
    true/false/null), else the plain string; NaN / Infinity and overflowing numbers are refused."""
    from workbench.patches.format import first_non_finite
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
        if first_non_finite(parsed) is not None:
            raise HyperParameterError(f"--set {item!r}: not a finite number")
        out[key.strip()] = parsed
    return out


def read_json_arg(path: str, what: str):
    """A strict-JSON file named by an argument (`what`, e.g. '--report x.json'); one line on failure."""
    from workbench.patches.format import strict_json
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{what}: cannot read it ({exc.strerror or exc})") from None
    return strict_json(raw, what, error=UsageError)


# ---------------------------------------------------------------------------- outputs
def write_json(path, obj) -> None:
    """Write `obj` as JSON (atomically), then say so."""
    from workbench.paths import write_json as write
    write(path, obj)
    print(f"wrote {path}")


def write_html(path, figures) -> None:
    """A standalone page of plotly figures (workbench.reporting.write_html), then say so."""
    from workbench.reporting import write_html as write
    write(path, figures)
    print(f"wrote {path}")
