"""Prompt sets of the text-to-image SAE work (ItD-style): the training templates and subjects,
the held-out templates the verification uses, and the general SAE corpus."""
from __future__ import annotations

TEMPLATES = ("a painting by {}", "a photo of {}", "{} style artwork", "an illustration in the style of {}",
             "a portrait of {}", "a landscape painted by {}", "{}", "a picture of {} at night",
             "a pencil sketch by {}", "a poster showing {}", "{} on a sunny day", "an oil painting of {}")
HELD_OUT_TEMPLATES = ("a famous work by {}", "{}, highly detailed", "a museum print of {}", "digital art of {}")
SUBJECTS = ("Claude Monet", "Pablo Picasso", "Rembrandt", "Salvador Dali", "Frida Kahlo", "Andy Warhol",
            "Leonardo da Vinci", "Michelangelo", "Henri Matisse", "Edvard Munch", "Gustav Klimt", "Hokusai",
            "a dog", "a cat", "a horse", "an apple", "a red car", "a bicycle", "a mountain lake", "the ocean",
            "a city street", "a forest", "a castle", "a spaceship", "a robot", "a bowl of fruit", "a garden",
            "a lighthouse", "a train station", "a snowy village", "a teacup", "a violin", "an old man",
            "a young woman", "a child playing", "a wooden bridge", "a desert", "a waterfall", "the moon",
            "a sailboat", "a tiger", "an owl", "a bouquet of roses", "a chess board", "a market square")


def prompts_for(subjects, templates=TEMPLATES) -> list[str]:
    return [t.format(s) for s in subjects for t in templates]


def general_prompts(exclude=()) -> list[str]:
    """The general SAE training corpus: SUBJECTS × TEMPLATES (+ the empty prompt), minus any
    subject in `exclude` (case-insensitive substring either way)."""
    ex = [e.casefold() for e in exclude if e]
    keep = [s for s in SUBJECTS if not any(e in s.casefold() or s.casefold() in e for e in ex)]
    return prompts_for(keep) + [""]
