"""The exceptions that mean "bad input" (reported in one line by the CLI and the dashboard)."""
from __future__ import annotations

import importlib


def _collect() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
                                        IsADirectoryError, PermissionError, KeyError]
    for module, name in [("workbench.models.loading", "ModelLoadError"), ("workbench.models.sites", "SiteError"),
                         ("workbench.concepts", "ConceptFileError"), ("workbench.patches", "PatchError"),
                         ("workbench.cli", "CLIError")]:
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


USER_ERRORS = _collect()
