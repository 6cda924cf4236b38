"""Concepts, probe sets and the concept-file reader/validator (docs/concept-file.md)."""
from __future__ import annotations

from workbench.concepts.files import (builtin_concepts_path, dumps_concepts, get_concept, load_builtin,
                                      parse_concepts, read_concepts, write_concepts)
from workbench.concepts.schema import (CHAT_FORM, KINDS, KNOWN_FORMS, MCQ_LETTER_FORM, SPLITS, Concept, ConceptError,
                                       ConceptFileError, ConceptNotFoundError, Probe, check_tag, render_prompt)
from workbench.concepts.suite import load_suite, load_world_knowledge, suite_path, world_knowledge_path

__all__ = ["CHAT_FORM", "KINDS", "KNOWN_FORMS", "MCQ_LETTER_FORM", "SPLITS", "Concept", "ConceptError",
           "ConceptFileError", "ConceptNotFoundError", "Probe", "builtin_concepts_path", "check_tag", "dumps_concepts",
           "get_concept", "load_builtin", "load_suite", "load_world_knowledge", "parse_concepts", "read_concepts",
           "render_prompt", "suite_path", "world_knowledge_path", "write_concepts"]
