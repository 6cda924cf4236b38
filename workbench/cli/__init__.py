"""`workbench …` command line: thin callers of library functions (docs/cli.md).

The parser table is `workbench.cli.parser.TABLE`; the shared pieces (model arguments, model and
concept loading, `--set` parsing, HTML output) are `workbench.cli.common`; the handlers live in
one module per topic (`models`, `edit`, `patch`, `verify`, `sae`, `wagle`, `moe`, `dashboard`,
`diffusion`) and are imported only when their command runs.

Every command exits non-zero with a one-line reason on bad input: a `WorkbenchError` (or a
missing file, see `workbench.errors.is_user_error`) is printed as `workbench CMD: error: ...`
and exits 2; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import importlib
import os
import sys

from workbench.cli.common import CLIError, check_text
from workbench.cli.parser import build_parser

__all__ = ["CLIError", "build_parser", "check_text", "handler", "main"]


def handler(args):
    """The function that runs the parsed command ("module:function" of the parser table)."""
    module, _, name = args._run.partition(":")
    return getattr(importlib.import_module(f"workbench.cli.{module}"), name)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = build_parser().parse_args(argv)
    from workbench.errors import is_user_error, one_line
    try:
        return handler(args)(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not is_user_error(exc):
            raise                                   # a bug: keep the traceback
        print(f"workbench {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
