"""Edits: the Edit protocol, the method registry and one module per method."""
from workbench.edits.base import DELTA_KINDS, Edit, TensorDelta
from workbench.edits.registry import EditConfig, fit_edit, get_method, methods, register

__all__ = ["DELTA_KINDS", "Edit", "EditConfig", "TensorDelta", "fit_edit", "get_method", "methods", "register"]
