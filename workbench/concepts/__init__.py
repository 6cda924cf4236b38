"""Concepts, probe sets and the concept-file reader/validator (docs/concept-file.md)."""
from __future__ import annotations

from workbench.concepts.files import (builtin_concepts_path, dumps_concepts, get_concept, load_builtin,
                                      parse_concepts, read_concepts, write_concepts)
from workbench.concepts.schema import (CHAT_FORM, KNOWN_FORMS, Concept, ConceptError, ConceptFileError,
                                       ConceptNotFoundError, Probe, render_prompt)

__all__ = ["CHAT_FORM", "KNOWN_FORMS", "Concept", "ConceptError", "ConceptFileError", "ConceptNotFoundError",
           "Probe", "builtin_concepts_path", "dumps_concepts", "get_concept", "load_builtin",
           "parse_concepts", "read_concepts", "render_prompt", "write_concepts"]
