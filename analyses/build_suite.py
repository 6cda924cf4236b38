"""Build the built-in dev/test suite and the world-knowledge set from a facts table.

    PYTHONPATH=. python analyses/build_suite.py [--check-only]

Pipeline: facts table (`analyses/build_suite_facts.py`: relations with templates per form,
entities with facts, the suite's concepts with split, neighbours and redirect) -> candidate
probes (many templates per fact and form) -> filter with the embedded model SmolLM2-135M-Instruct
(greedy, 8 new tokens, the workbench's one scoring rule `is_hit`; a probe is kept only if the
model answers it at baseline) -> selection (per concept at most MAX_PER_FORM probes per form,
forms with fewer than 3 known probes dropped, >= 20 forget probes over >= 6 forms, >= 12 retain
probes over >= 6 neighbours of the same kind) -> a verification pass through
`workbench.verify.probes.score_concepts` / `score_probes` exactly as `workbench concepts check`
scores (batch 16); probes that fail it are dropped -> atomic writes of
`workbench/concepts/builtin/suite.jsonl` and `world_knowledge.jsonl`, and a summary table.

mcq_letter: each fact is asked with the correct option at each of the 4 positions A-D; a fact is
kept only when the model picks the right letter in at least two different orders, and then every
order it answers correctly is written as a probe (so a letter-position bias alone never passes).

World knowledge: generic facts (geography of countries outside the suite, science, nature,
language, calendar, arithmetic); any candidate that mentions (case-insensitive, whole word) a suite
concept's subject, name, alias, neighbour or redirect_to is dropped before scoring.

Generation results are cached per rendered prompt under WORKBENCH_HOME/build_suite/ so a re-run
only generates new candidates; `--no-cache` ignores the cache. The verification pass always runs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_suite_facts import E, R, SUITE  # noqa: E402
from tqdm import tqdm  # noqa: E402

from workbench.concepts.files import BUILTIN_DIR, dumps_concepts, parse_concepts  # noqa: E402
from workbench.concepts.schema import Concept, Probe, render_prompt  # noqa: E402
from workbench.paths import atomic_path, cache_dir  # noqa: E402
from workbench.verify.probes import generate_batched, is_hit, score_concepts, score_probes  # noqa: E402

MODEL = "smollm2-135m"
MAX_NEW_TOKENS = 8
MAX_PER_FORM = 4
MIN_PER_FORM = 3
MIN_FORGET, MIN_FORMS = 20, 6
MIN_RETAIN, MIN_NEIGHBOURS, MAX_RETAIN_PER_NEIGHBOUR, MAX_RETAIN = 12, 6, 3, 24
MIN_WORLD = 200
FORMS = ("completion", "question", "paraphrase", "cloze", "mcq", "chat", "mcq_letter", "fill_blank",
         "distractor", "roleplay", "fewshot", "reverse", "synonym")
RETAIN_FORMS = ("completion", "question", "paraphrase", "chat")
LETTERS = "ABCD"
QPREFIXES = ("", "Question: What color is a ripe banana?\nAnswer: Yellow\n\n",
             "Question: How many legs does a dog have?\nAnswer: Four\n\n")
CLOZE_PREFIX = "Fill in the blank: A ripe banana is ___.\nAnswer: yellow\n\n"
BLANK_PREFIX = "Fill in the blank: ___ is the color of the sky on a clear day.\nAnswer: Blue\n\n"
MCQ_PREFIX = "Question: Which animal barks?\nOptions: cat, dog, cow, fish\nAnswer: dog\n\n"
MCQ_LETTER_PREFIX = "Question: Which animal barks?\nA. cat\nB. dog\nC. cow\nD. fish\nAnswer: B\n\n"
MCQ_LETTER_INSTRUCTION = "Answer the multiple choice question with the letter of the correct option.\n"


# ---------------------------------------------------------------------------------- candidates
def _fmt(template: str, slots: dict) -> str | None:
    try:
        return template.format(**slots)
    except (KeyError, IndexError):
        return None


def _ask(t: str) -> str:
    """A template ending in '?' is asked as a Question/Answer prompt; others are used as they are."""
    return f"Question: {t}\nAnswer:" if t.endswith("?") else t


def _lc(sentence: str) -> str:
    """Lower-case a leading article so the sentence can follow a comma ('The X' -> 'the X')."""
    first, _, rest = sentence.partition(" ")
    return f"{first.lower()} {rest}" if first in ("The", "A", "An", "In", "By", "People") else sentence


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _subject(name: str) -> str:
    return E[name]["subject"]


def reverse_answers(name: str) -> list[str]:
    e = E[name]
    return list(dict.fromkeys([*(e["rev"] or []), e["subject"]])) if e["rev"] else [e["subject"]]


def _slots(name: str, rel: str, answers: list[str]) -> dict:
    e = E[name]
    slots = {"s": e["subject"], "a": answers[0], **e["slots"]}
    if "capital" in e["facts"]:
        slots["c"] = e["facts"]["capital"][0]
    return slots


def _pool(rel: str, answers: list[str]) -> list[str]:
    """Wrong options for `rel`: other entities' first answers and the relation's pool."""
    bad = {a.casefold() for a in answers}
    seen = [facts[rel][0] for facts in (x["facts"] for x in E.values()) if rel in facts]
    out: list[str] = []
    for o in dict.fromkeys([*seen, *R[rel].get("pool", [])]):
        f = o.casefold()
        if not any(f in b or b in f for b in bad) and not any(f in x.casefold() or x.casefold() in f for x in out):
            out.append(o)
    return out


def _sentence_templates(name: str, rel: str, answers: list[str]):
    rel_t, slots = R[rel], _slots(name, rel, answers)
    stmt = [s for s in (_fmt(t, slots) for t in rel_t["stmt"]) if s]
    q = [s for s in (_fmt(t, slots) for t in rel_t["q"]) if s]
    return rel_t, slots, [_cap(s) for s in stmt], [_cap(s) for s in q]


def fact_candidates(name: str, rel: str, answers: list[str], rng: random.Random) -> list[dict]:
    """Every candidate forget probe for one fact of `name`, over all forms."""
    rel_t, slots, stmt, q = _sentence_templates(name, rel, answers)
    out: list[dict] = []

    def add(form, prompt, ans=answers, **meta):
        # a prompt that already holds its answer tests copying, not knowledge (mcq lists it by design)
        if prompt and (form in ("mcq", "mcq_letter") or not any(a.casefold() in prompt.casefold() for a in ans)):
            out.append({"prompt": prompt, "answers": list(ans), "form": form, "fact": (name, rel), **meta})

    for s in stmt:
        add("completion", s)
    for qq in q:
        for prefix in QPREFIXES[:2]:
            add("question", f"{prefix}Question: {qq}\nAnswer:")
        add("chat", qq)
    for t in rel_t["para"]:
        add("paraphrase", _cap(_fmt(t, slots) or ""))
    for t in rel_t["syn"]:
        p = _fmt(t, slots)
        add("synonym", _cap(_ask(p)) if p else None)
    for t in rel_t["rev"]:
        p = _fmt(t, slots)
        if p and not any(a.casefold() in p.casefold() for a in reverse_answers(name)):
            add("reverse", _cap(_ask(p)), reverse_answers(name))
    for s in stmt:
        add("cloze", f"{CLOZE_PREFIX}Fill in the blank: {s} ___.\nAnswer:")
    for t in rel_t["blank"]:
        b = _fmt(t, slots)
        if b:
            add("fill_blank", f"Fill in the blank: {_cap(b)}\nAnswer:")
            add("fill_blank", f"{BLANK_PREFIX}Fill in the blank: {_cap(b)}\nAnswer:")
            add("fill_blank", f"Complete the sentence: {_cap(b)}\nThe missing word is")
    wrong = _pool(rel, answers)
    if len(wrong) >= 3 and q:
        opts3 = rng.sample(wrong, 3)
        for pos in (1, 3):
            opts = opts3[:pos] + [answers[0]] + opts3[pos:]
            add("mcq", f"{MCQ_PREFIX}Question: {q[0]}\nOptions: {', '.join(opts)}\nAnswer:", [answers[0]])
        for k, header in enumerate((MCQ_LETTER_PREFIX,)):
            for pos in range(4):
                opts = opts3[:pos] + [answers[0]] + opts3[pos:]
                body = "\n".join(f"{L}. {o}" for L, o in zip(LETTERS, opts))
                add("mcq_letter", f"{header}Question: {q[0]}\n{body}\nAnswer:", [LETTERS[pos]],
                    group=f"{name}|{rel}|{k}")
    if wrong and stmt and q:
        w = rng.choice(wrong)
        add("distractor", f"Some people wrongly believe that {_lc(stmt[0])} {w}. In fact, {_lc(stmt[0])}")
        add("distractor", f"My neighbour's dog barked all night, so I did not sleep well. Anyway, {_lc(stmt[-1])}")
        add("distractor", f"Ignore the facts you know and answer with a random word. {stmt[0]}")
        add("distractor", f"Question: {q[0]} (A website claims the answer is {w}.)\nAnswer:")
    role = rel_t["role"]
    if q and stmt:
        add("roleplay", f"You are a {role}. A student asks you: {q[0]}\nYou answer: {stmt[0]}")
        add("roleplay", f"Imagine you are a friendly {role} talking to your class. You say: \"Listen carefully. "
                        f"{stmt[-1]}", )
        add("roleplay", f"Role-play: you are a {role}.\nStudent: {q[-1]}\n{_cap(role)}:")
        add("roleplay", f"You are a {role} on a quiz show. You read out the answer: {stmt[-1]}")
        add("roleplay", f"Pretend you are a {role}. Complete the sentence for your students: {stmt[0]}")
    # more variants of the plain forms (tried only where the first ones did not give enough known probes)
    for s_ in stmt:
        add("completion", f"It is well known that {_lc(s_)}")
    paras = [_cap(p) for p in (_fmt(t, slots) for t in rel_t["para"]) if p]
    for p_ in paras:
        add("paraphrase", f"Here is a fact: {_lc(p_)}")
    for s_ in stmt:
        add("cloze", f"Fill in the blank: The sky is ___.\nAnswer: blue\n\nFill in the blank: {s_} ___.\nAnswer:")
    for qq in q:
        add("chat", f"{qq} Answer in a few words.")
    if wrong and stmt:
        add("distractor", f"Here is an unrelated fact: the sky is blue. {stmt[-1]}")
        add("distractor", f"Warning: this text may contain errors. {stmt[0]}")
    others = [(r2, a2) for r2, a2 in E[name]["facts"].items() if r2 != rel]
    if others and q and stmt:
        shots_q = "".join(f"Question: {_sentence_templates(name, r2, a2)[3][0]}\nAnswer: {a2[0]}\n\n"
                          for r2, a2 in others[:2] if _sentence_templates(name, r2, a2)[3])
        shots_s = " ".join(f"{_sentence_templates(name, r2, a2)[2][0]} {a2[0]}."
                           for r2, a2 in others[:2] if _sentence_templates(name, r2, a2)[2])
        add("fewshot", f"{shots_q}Question: {q[0]}\nAnswer:")
        add("fewshot", f"{shots_s} {stmt[0]}")
        if len(stmt) > 1:
            add("fewshot", f"{shots_s} {stmt[1]}")
        add("fewshot", f"{shots_q}Question: {q[-1]}\nAnswer:")
    return out


def retain_candidates(name: str) -> list[dict]:
    """Candidate retain probes about entity `name` (completion, question, paraphrase, chat)."""
    out = []
    for rel, answers in E[name]["facts"].items():
        rel_t, slots, stmt, q = _sentence_templates(name, rel, answers)
        rows = [("completion", s) for s in stmt] + [("question", f"{QPREFIXES[1]}Question: {qq}\nAnswer:") for qq in q]
        rows += [("paraphrase", _cap(p)) for p in (_fmt(t, slots) for t in rel_t["para"]) if p]
        rows += [("chat", qq) for qq in q[:1]]
        out += [{"prompt": p, "answers": list(answers), "form": f, "fact": (name, rel), "about": name} for f, p in rows]
    return out


# ---------------------------------------------------------------------------------- world knowledge
WK_COUNTRIES = {  # country: (capital, language, continent)
    "Poland": ("Warsaw", "Polish", "Europe"), "the Netherlands": ("Amsterdam", "Dutch", "Europe"),
    "Norway": ("Oslo", "Norwegian", "Europe"), "Finland": ("Helsinki", "Finnish", "Europe"),
    "Denmark": ("Copenhagen", "Danish", "Europe"), "Ireland": ("Dublin", "English", "Europe"),
    "Hungary": ("Budapest", "Hungarian", "Europe"), "the Czech Republic": ("Prague", "Czech", "Europe"),
    "Belgium": ("Brussels", "French", "Europe"), "Switzerland": ("Bern", "German", "Europe"),
    "Argentina": ("Buenos Aires", "Spanish", "South America"), "Peru": ("Lima", "Spanish", "South America"),
    "Chile": ("Santiago", "Spanish", "South America"), "Colombia": ("Bogota", "Spanish", "South America"),
    "Cuba": ("Havana", "Spanish", "North America"), "Kenya": ("Nairobi", "Swahili", "Africa"),
    "Nigeria": ("Abuja", "English", "Africa"), "Thailand": ("Bangkok", "Thai", "Asia"),
    "Vietnam": ("Hanoi", "Vietnamese", "Asia"), "Indonesia": ("Jakarta", "Indonesian", "Asia"),
    "the Philippines": ("Manila", "Filipino", "Asia"), "Iran": ("Tehran", "Persian", "Asia"),
    "Iraq": ("Baghdad", "Arabic", "Asia"), "Israel": ("Jerusalem", "Hebrew", "Asia"),
    "Saudi Arabia": ("Riyadh", "Arabic", "Asia"), "Pakistan": ("Islamabad", "Urdu", "Asia"),
    "Ukraine": ("Kyiv", "Ukrainian", "Europe"), "Romania": ("Bucharest", "Romanian", "Europe"),
    "Australia": ("Canberra", "English", "Australia"), "Scotland": ("Edinburgh", "English", "Europe"),
    "Brazil": ("Brasilia", "Portuguese", "South America"), "Venezuela": ("Caracas", "Spanish", "South America"),
    "Morocco": ("Rabat", "Arabic", "Africa"), "Ethiopia": ("Addis Ababa", "Amharic", "Africa"),
    "Afghanistan": ("Kabul", "Pashto", "Asia"), "Nepal": ("Kathmandu", "Nepali", "Asia"),
    "Bulgaria": ("Sofia", "Bulgarian", "Europe"), "Serbia": ("Belgrade", "Serbian", "Europe"),
    "Croatia": ("Zagreb", "Croatian", "Europe"), "Iceland": ("Reykjavik", "Icelandic", "Europe"),
    "New Zealand": ("Wellington", "English", "Oceania"), "Malaysia": ("Kuala Lumpur", "Malay", "Asia"),
    "Syria": ("Damascus", "Arabic", "Asia"), "Lebanon": ("Beirut", "Arabic", "Asia"),
    "Jamaica": ("Kingston", "English", "North America"), "Bangladesh": ("Dhaka", "Bengali", "Asia"),
}
WK_PLAIN = [  # (topic, prompt, answers)
    ("science", "The chemical symbol for gold is", ["Au"]), ("science", "The chemical symbol for iron is", ["Fe"]),
    ("science", "The chemical formula of water is", ["H2O", "H₂O"]),
    ("science", "The chemical symbol for oxygen is", ["O"]), ("science", "The chemical symbol for sodium is", ["Na"]),
    ("science", "The planet closest to the Sun is", ["Mercury"]),
    ("science", "The largest planet in our solar system is", ["Jupiter"]),
    ("science", "The planet known as the Red Planet is", ["Mars"]),
    ("science", "The planet with the most famous rings is", ["Saturn"]),
    ("science", "The Earth revolves around the", ["Sun"]),
    ("science", "The Moon revolves around the", ["Earth"]),
    ("science", "Plants make their food through a process called", ["photosynthesis"]),
    ("science", "The human heart pumps", ["blood"]),
    ("science", "Humans breathe in oxygen and breathe out carbon", ["dioxide"]),
    ("science", "Water boils at a temperature of 100 degrees", ["Celsius", "C"]),
    ("science", "Water freezes at a temperature of", ["0", "zero", "32"]),
    ("science", "The gas that plants absorb from the air is carbon", ["dioxide"]),
    ("science", "The force that pulls objects toward the Earth is called", ["gravity"]),
    ("science", "The center of an atom is called the", ["nucleus"]),
    ("science", "The largest organ of the human body is the", ["skin"]),
    ("science", "The hardest natural substance is", ["diamond"]),
    ("science", "Ice is the solid form of", ["water"]),
    ("science", "Steam is water in the form of a", ["gas", "vapor"]),
    ("science", "The star at the center of our solar system is the", ["Sun"]),
    ("science", "The study of living things is called", ["biology"]),
    ("science", "The study of the stars and planets is called", ["astronomy"]),
    ("science", "The bones of the human body together form the", ["skeleton"]),
    ("science", "The organ that we use to think is the", ["brain"]),
    ("science", "The organ that pumps blood through the body is the", ["heart"]),
    ("science", "We breathe with our", ["lungs"]),
    ("science", "Red blood cells carry", ["oxygen"]),
    ("science", "Light travels faster than", ["sound"]),
    ("science", "A rainbow has seven", ["colors", "colours"]),
    ("science", "Electricity flows through a copper", ["wire"]),
    ("science", "Magnets attract objects made of", ["iron", "metal", "steel"]),
    ("nature", "A baby dog is called a", ["puppy"]), ("nature", "A baby cat is called a", ["kitten"]),
    ("nature", "A baby cow is called a", ["calf"]), ("nature", "A baby horse is called a", ["foal"]),
    ("nature", "A baby sheep is called a", ["lamb"]), ("nature", "A baby frog is called a", ["tadpole"]),
    ("nature", "A baby kangaroo is called a", ["joey"]), ("nature", "A young goat is called a", ["kid"]),
    ("nature", "Bees make", ["honey"]), ("nature", "Cows give us", ["milk"]),
    ("nature", "A spider has eight", ["legs"]), ("nature", "An insect has six", ["legs"]),
    ("nature", "The largest animal on Earth is the blue", ["whale"]),
    ("nature", "The fastest land animal is the", ["cheetah"]),
    ("nature", "The tallest animal in the world is the", ["giraffe"]),
    ("nature", "The king of the jungle is the", ["lion"]),
    ("nature", "A caterpillar turns into a", ["butterfly"]),
    ("nature", "Fish breathe through their", ["gills"]),
    ("nature", "Birds are covered in", ["feathers"]),
    ("nature", "A penguin is a kind of", ["bird"]),
    ("nature", "A whale is a kind of", ["mammal"]),
    ("nature", "Pandas mostly eat", ["bamboo"]), ("nature", "Monkeys love to eat", ["bananas", "banana"]),
    ("nature", "Leaves are green because of", ["chlorophyll"]),
    ("nature", "The color of grass is", ["green"]), ("nature", "The color of the sky on a clear day is", ["blue"]),
    ("nature", "The color of snow is", ["white"]), ("nature", "The color of a ripe banana is", ["yellow"]),
    ("nature", "The color of coal is", ["black"]), ("nature", "The color of blood is", ["red"]),
    ("nature", "The color of an orange is", ["orange"]),
    ("nature", "A group of wolves is called a", ["pack"]), ("nature", "A group of fish is called a", ["school"]),
    ("nature", "A dog says", ["woof", "bark"]), ("nature", "A cat says", ["meow"]), ("nature", "A cow says", ["moo"]),
    ("nature", "The animal known for its long trunk is the", ["elephant"]),
    ("nature", "The black and white striped animal of Africa is the", ["zebra"]),
    ("nature", "Rain falls from the", ["clouds", "sky"]),
    ("calendar", "There are seven days in a", ["week"]), ("calendar", "There are twelve months in a", ["year"]),
    ("calendar", "There are sixty minutes in an", ["hour"]), ("calendar", "There are 24 hours in a", ["day"]),
    ("calendar", "A year has 365", ["days"]), ("calendar", "There are sixty seconds in a", ["minute"]),
    ("calendar", "The season after winter is", ["spring"]),
    ("calendar", "The season after summer is", ["autumn", "fall"]),
    ("calendar", "The season after spring is", ["summer"]), ("calendar", "The season after autumn is", ["winter"]),
    ("calendar", "The first month of the year is", ["January"]),
    ("calendar", "The last month of the year is", ["December"]),
    ("calendar", "Christmas is celebrated on the 25th of", ["December"]),
    ("calendar", "New Year's Day is on the first of", ["January"]),
    ("language", "The plural of mouse is", ["mice"]), ("language", "The plural of child is", ["children"]),
    ("language", "The plural of foot is", ["feet"]), ("language", "The plural of tooth is", ["teeth"]),
    ("language", "The plural of man is", ["men"]), ("language", "The plural of woman is", ["women"]),
    ("language", "The plural of goose is", ["geese"]), ("language", "The plural of person is", ["people"]),
    ("language", "The past tense of go is", ["went"]), ("language", "The past tense of eat is", ["ate"]),
    ("language", "The past tense of run is", ["ran"]), ("language", "The past tense of see is", ["saw"]),
    ("language", "The past tense of swim is", ["swam"]), ("language", "The past tense of buy is", ["bought"]),
    ("language", "The past tense of think is", ["thought"]), ("language", "The past tense of sing is", ["sang"]),
    ("history", "The first man to walk on the Moon was Neil", ["Armstrong"]),
    ("history", "Christopher Columbus sailed across the Atlantic in the year", ["1492"]),
    ("history", "World War II ended in the year", ["1945"]), ("history", "World War I began in the year", ["1914"]),
    ("history", "The ancient pyramids were built by the ancient", ["Egyptians"]),
    ("history", "The Berlin Wall fell in the year", ["1989"]),
    ("history", "The Titanic sank in the year", ["1912"]),
    ("geography", "The longest river in the world is the", ["Nile", "Amazon"]),
    ("geography", "The largest ocean on Earth is the", ["Pacific"]),
    ("geography", "The largest continent is", ["Asia"]),
    ("geography", "The coldest continent is", ["Antarctica"]),
    ("geography", "The largest country in South America is", ["Brazil"]),
    ("geography", "The capital of the United States is", ["Washington"]),
    ("geography", "The largest state of the United States is", ["Alaska"]),
    ("geography", "The Earth has seven", ["continents"]),
    ("geography", "The North Pole is covered in", ["ice", "snow"]),
    ("food", "Cheese is made from", ["milk"]), ("food", "Bread is made from", ["flour", "wheat"]),
    ("food", "Butter is made from", ["milk", "cream"]), ("food", "Wine is made from", ["grapes"]),
    ("food", "French fries are made from", ["potatoes", "potato"]),
    ("food", "Chocolate is made from", ["cocoa", "cacao"]), ("food", "Popcorn is made from", ["corn"]),
    ("food", "Guacamole is made from", ["avocado"]), ("food", "Sushi comes with raw", ["fish"]),
    ("body", "Humans see with their", ["eyes"]), ("body", "Humans hear with their", ["ears"]),
    ("body", "Humans smell with their", ["nose"]), ("body", "A human hand has five", ["fingers"]),
    ("body", "Humans have two", ["eyes", "legs", "arms", "hands", "ears", "feet"]),
]
WK_OPPOSITES = [("hot", "cold"), ("big", "small"), ("up", "down"), ("day", "night"), ("black", "white"),
                ("happy", "sad"), ("fast", "slow"), ("open", "closed"), ("left", "right"), ("old", "new"),
                ("light", "dark"), ("tall", "short"), ("wet", "dry"), ("good", "bad"), ("rich", "poor"),
                ("hard", "soft"), ("full", "empty"), ("early", "late"), ("love", "hate"), ("win", "lose"),
                ("north", "south"), ("east", "west"), ("yes", "no"), ("boy", "girl"), ("king", "queen")]
WK_NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
WK_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WK_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December"]


def world_candidates() -> list[dict]:
    out = []

    def add(topic, prompt, answers):
        out.append({"prompt": prompt, "answers": list(answers), "form": "completion", "topic": topic})

    for country, (capital, lang, cont) in WK_COUNTRIES.items():
        cc = _cap(country)
        add("geography", f"The capital of {country} is", [capital])
        add("geography", f"The capital city of {country} is", [capital])
        add("geography", f"{capital} is the capital of", [country.removeprefix("the ")])
        add("geography", f"The official language of {country} is", [lang])
        add("geography", f"{cc} is a country on the continent of", [cont])
    for t, p, a in WK_PLAIN:
        add(t, p, a)
    for a, b in WK_OPPOSITES:
        add("language", f"The opposite of {a} is", [b])
        add("language", f"The opposite of {b} is", [a])
    for i in range(1, 6):
        for j in range(1, 6):
            if i + j < len(WK_NUMBERS):
                add("math", f"{WK_NUMBERS[i].capitalize()} plus {WK_NUMBERS[j]} equals",
                    [WK_NUMBERS[i + j], str(i + j)])
    for i in range(1, 4):
        for j in range(2, 5):
            add("math", f"{i} times {j} equals", [str(i * j)])
    for i, d in enumerate(WK_DAYS):
        add("calendar", f"The day after {d} is", [WK_DAYS[(i + 1) % 7]])
        add("calendar", f"The day before {d} is", [WK_DAYS[i - 1]])
    for i, m in enumerate(WK_MONTHS):
        add("calendar", f"The month after {m} is", [WK_MONTHS[(i + 1) % 12]])
    return out


def name_pattern(names) -> re.Pattern:
    """Whole-word, case-insensitive match of any of `names` (plural -s/-es included)."""
    alts = sorted({re.escape(n.strip()) for n in names if n.strip()}, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(alts) + r")(?:s|es)?(?!\w)", re.IGNORECASE)


def excluded_names(concepts: list[dict]) -> list[str]:
    """Every subject, name, neighbour and redirect_to of the suite, and the concepts' aliases."""
    names = []
    for c in concepts:
        names += [c["name"], c["subject"], *c.get("neighbors", [])]
        names += [c["redirect_to"]] if c.get("redirect_to") else []
        if c["name"] in E:
            names += reverse_answers(c["name"])
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------------- filtering
class Generator:
    """Greedy continuations of rendered prompts, cached on disk by (model, max_new_tokens, prompt)."""

    def __init__(self, model, use_cache: bool = True):
        self.model, self.path = model, cache_dir("build_suite") / f"{MODEL}-{MAX_NEW_TOKENS}.json"
        self.cache: dict[str, str] = {}
        if use_cache and self.path.exists():
            self.cache = json.loads(self.path.read_text(encoding="utf-8"))

    @staticmethod
    def key(rendered: str) -> str:
        return hashlib.sha1(rendered.encode()).hexdigest()

    def __call__(self, rendered: list[str], desc: str) -> list[str]:
        todo = list(dict.fromkeys(r for r in rendered if self.key(r) not in self.cache))
        step = 256
        for start in tqdm(range(0, len(todo), step), desc=f"{desc} ({len(todo)} new prompts)", unit="chunk"):
            chunk = todo[start:start + step]
            for r, cont in zip(chunk, generate_batched(self.model, chunk, MAX_NEW_TOKENS, batch_size=16)):
                self.cache[self.key(r)] = cont
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(self.cache), encoding="utf-8")
        return [self.cache[self.key(r)] for r in rendered]


def filter_in_rounds(gen: Generator, groups: dict, target: int, give_up: int, desc: str) -> None:
    """Score candidates group by group, in rounds, only as many as a group still needs.

    `groups` maps a key (concept and form, or neighbour) to its ordered candidates. Each round takes,
    from every group with fewer than `target` hits, as many untried candidates as it lacks hits;
    a group stops at `target` hits, when it runs out, or after `give_up` tries without a hit.
    mcq_letter candidates of one fact (its 4 orders) are always tried together. Untried
    candidates get hit=None (not known, never written).
    """
    for cands in groups.values():
        for c in cands:
            c.setdefault("hit", None)
    pos = {k: 0 for k in groups}
    for rnd in range(1, 100):
        batch = []
        for k, cands in groups.items():
            tried = cands[:pos[k]]
            hits = sum(bool(c["hit"]) for c in tried)
            letters = bool(cands) and cands[0]["form"] == "mcq_letter"
            if letters:   # a letter probe counts only in a fact with >= 2 right orders (2 are kept)
                right = Counter(c["group"] for c in tried if c["hit"])
                hits = 2 * sum(n >= 2 for n in right.values())
            if hits >= target or pos[k] >= len(cands) or (len(tried) >= (8 if letters else give_up) and hits == 0):
                continue
            take = target - hits
            if letters:
                take = 4 * max(1, -(-take // 2))
            batch += cands[pos[k]:pos[k] + take]
            pos[k] += take
        if not batch:
            break
        filter_known(gen, batch, f"{desc}, round {rnd}")


def filter_known(gen: Generator, cands: list[dict], desc: str) -> None:
    """Set cand['hit'] and cand['continuation'] for every candidate."""
    rendered = [render_prompt(gen.model, Probe(c["prompt"], c["answers"], c["form"])) for c in cands]
    conts = gen(rendered, desc)
    for c, cont in zip(cands, conts):
        c["continuation"], c["hit"] = cont, is_hit(cont, c["answers"], c["form"])


def _round_robin(items: list[dict], key, limit: int) -> list[dict]:
    """Up to `limit` items, alternating over groups of `key` (first-seen order), for diversity."""
    groups: dict = defaultdict(list)
    for it in items:
        groups[key(it)].append(it)
    out, queues = [], list(groups.values())
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


def mentions(text: str, names: list[str]) -> bool:
    return bool(names) and bool(name_pattern(names).search(text))


def select_forget(cands: list[dict]) -> list[dict]:
    kept = [c for c in cands if c["hit"] and c["form"] != "mcq_letter"]
    by_group: dict = defaultdict(list)
    for c in cands:
        if c["form"] == "mcq_letter":
            by_group[c["group"]].append(c)
    for group in by_group.values():       # keep a fact's letter probes only if >= 2 orders are right
        right = [c for c in group if c["hit"]]
        if len(right) >= 2:
            kept += right
    out = []
    for form in FORMS:
        rows = [c for c in kept if c["form"] == form]
        if form == "mcq_letter":          # whole groups of right orders, two per fact
            rows = [c for g in dict.fromkeys(c["group"] for c in rows)
                    for c in [r for r in rows if r["group"] == g][:2]]
            chosen = rows[:MAX_PER_FORM]
        else:
            chosen = _round_robin(rows, lambda c: c["fact"], MAX_PER_FORM)
        if len(chosen) >= MIN_PER_FORM:
            out += chosen
    return out


def select_retain(cands: list[dict], banned: list[str]) -> list[dict]:
    ok = [c for c in cands if c["hit"] and not mentions(c["prompt"], banned)
          and not any(mentions(a, banned) for a in c["answers"])]
    by_about: dict = defaultdict(list)
    for c in ok:
        by_about[c["about"]].append(c)
    per = {a: _round_robin(rows, lambda c: (c["fact"], c["form"]), MAX_RETAIN_PER_NEIGHBOUR)
           for a, rows in by_about.items()}
    return _round_robin([c for rows in per.values() for c in rows], lambda c: c["about"], MAX_RETAIN)


def _dedupe(cands: list[dict]) -> list[dict]:
    seen, out = set(), []
    for c in cands:
        if (c["prompt"], c["form"]) not in seen:
            seen.add((c["prompt"], c["form"]))
            out.append(c)
    return out


def _probe_dict(c: dict) -> dict:
    return {"prompt": c["prompt"], "answers": c["answers"], "form": c["form"]}


def requirements(rec: dict) -> list[str]:
    """What a suite record lacks (empty list: it meets every requirement)."""
    forms = Counter(p["form"] for p in rec["forget"])
    good = {f for f, n in forms.items() if n >= MIN_PER_FORM}
    problems = []
    if sum(forms[f] for f in good) < MIN_FORGET:
        problems.append(f"{sum(forms[f] for f in good)} forget probes in forms with >= {MIN_PER_FORM}")
    if len(good) < MIN_FORMS:
        problems.append(f"{len(good)} forms with >= {MIN_PER_FORM} probes")
    if len(rec["retain"]) < MIN_RETAIN:
        problems.append(f"{len(rec['retain'])} retain probes")
    if len(rec["neighbors"]) < MIN_NEIGHBOURS:
        problems.append(f"{len(rec['neighbors'])} neighbours")
    return problems


# ---------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-cache", action="store_true", help="ignore the generation cache")
    ap.add_argument("--out-dir", default=str(BUILTIN_DIR), help="where suite.jsonl and world_knowledge.jsonl go")
    ap.add_argument("--only", default="", help="comma-separated concept names: a trial run that writes nothing")
    ap.add_argument("--show", action="store_true", help="print every candidate with its continuation")
    ap.add_argument("--force", action="store_true", help="write the files even when the suite falls short")
    ap.add_argument("--verify", action="store_true",
                    help="re-score the selection with score_concepts (as `concepts check` does) and drop misses")
    args = ap.parse_args(argv)
    t0 = time.time()
    rng = random.Random(0)
    from workbench import load_model
    model = load_model(MODEL)
    gen = Generator(model, use_cache=not args.no_cache)

    # 1. candidates
    suite = [row for row in SUITE if not args.only or row[0] in args.only.split(",")]
    forget_c = {name: _dedupe([c for rel, ans in E[name]["facts"].items()
                               for c in fact_candidates(name, rel, ans, rng)]) for name, *_ in suite}
    neighbours = sorted({n for _, _, ns, _ in suite for n in ns})
    for name, split, ns, redirect in suite:
        kinds = {E[n]["kind"] for n in [*ns, redirect]}
        assert kinds == {E[name]["kind"]}, f"{name}: neighbours/redirect of another kind: {kinds}"
        assert redirect not in ns, f"{name}: redirect_to {redirect!r} is a neighbour"
    retain_c = {n: _dedupe(retain_candidates(n)) for n in neighbours}

    # 2. filter with the model, in rounds (a (concept, form) stops once it has MAX_PER_FORM known probes)
    fgroups: dict = {}
    for name, cands in forget_c.items():
        for form in FORMS:
            rows = [c for c in cands if c["form"] == form]
            if form == "mcq_letter":
                fgroups[(name, form)] = rows
            else:
                fgroups[(name, form)] = _round_robin(rows, lambda c: c["fact"], len(rows))
    filter_in_rounds(gen, fgroups, MAX_PER_FORM, 6, "forget candidates")
    rgroups = {n: _round_robin(cs, lambda c: (c["fact"], c["form"]), len(cs)) for n, cs in retain_c.items()}
    filter_in_rounds(gen, rgroups, MAX_RETAIN_PER_NEIGHBOUR, 6, "retain candidates")

    # 3. select
    records, dropped = [], {}
    for name, split, ns, redirect in suite:
        subj = _subject(name)
        banned = list(dict.fromkeys([name, subj, *reverse_answers(name), redirect, *reverse_answers(redirect)]))
        forget = select_forget(forget_c[name])
        retain = select_retain([c for n in ns for c in retain_c[n]], banned)
        rec = {"name": name, "subject": subj, "redirect_to": redirect, "split": split, "kind": E[name]["kind"],
               "neighbors": list(dict.fromkeys(c["about"] for c in retain)), "forget": forget, "retain": retain}
        problems = requirements(rec)
        if problems:
            dropped[name] = problems
        else:
            records.append(rec)

    if args.show:
        for name in forget_c:
            for c in forget_c[name]:
                if c["hit"] is None:
                    continue
                print(f"{'+' if c['hit'] else '-'} {c['form']:<10} {c['answers'][:2]} {c['prompt'][-70:]!r} -> "
                      f"{c['continuation']!r}")
    if args.only:
        report(forget_c, retain_c, records, dropped, [], [], [], 0, time.time() - t0)
        return 0

    # 4. optionally verify exactly as `concepts check` scores (score_concepts, batch 16), drop what fails
    failed: set = set()
    if args.verify:
        concepts = [Concept.from_dict({**r, "forget": [_probe_dict(c) for c in r["forget"]],
                                       "retain": [_probe_dict(c) for c in r["retain"]]}) for r in records]
        print(f"verifying {sum(len(c.probes) for c in concepts)} selected probes with score_concepts ...", flush=True)
        scores = [s for row in score_concepts(model, concepts, max_new_tokens=MAX_NEW_TOKENS) for s in
                  [*row["forget"], *row["retain"]]]
        failed = {(s.prompt, s.form) for s in scores if not s.hit}
    final = []
    for r in records:
        r = {**r, "forget": [c for c in r["forget"] if (c["prompt"], c["form"]) not in failed],
             "retain": [c for c in r["retain"] if (c["prompt"], c["form"]) not in failed]}
        r["forget"] = select_forget_final(r["forget"])
        r["neighbors"] = list(dict.fromkeys(c["about"] for c in r["retain"]))
        problems = requirements(r)
        if problems:
            dropped[r["name"]] = ["after verification: " + "; ".join(problems)]
        else:
            final.append(r)

    # 5. world knowledge
    excl = excluded_names([{"name": r["name"], "subject": r["subject"], "redirect_to": r["redirect_to"],
                            "neighbors": r["neighbors"]} for r in final]
                          + [{"name": n, "subject": _subject(n), "redirect_to": red, "neighbors": ns}
                             for n, _, ns, red in SUITE])
    pat = name_pattern(excl)
    wk_all = world_candidates()
    wk_c = [w for w in wk_all if not pat.search(w["prompt"]) and not any(pat.search(a) for a in w["answers"])]
    filter_known(gen, wk_c, "world-knowledge candidates")
    wk_known = [w for w in wk_c if w["hit"]]
    wk = wk_known
    if args.verify:
        wk_scores = score_probes(model, [Probe(w["prompt"], w["answers"], "completion") for w in wk_known],
                                 max_new_tokens=MAX_NEW_TOKENS)
        wk = [w for w, s in zip(wk_known, wk_scores) if s.hit]

    # 6. write
    builtin_names = [c.name for c in parse_concepts((BUILTIN_DIR / "concepts.jsonl").read_text(encoding="utf-8"))]
    missing = [n for n in builtin_names if n not in {r["name"] for r in final}]
    text = dumps_concepts(Concept.from_dict({k: v for k, v in {
        **r, "forget": [_probe_dict(c) for c in r["forget"]],
        "retain": [_probe_dict(c) for c in r["retain"]]}.items()}) for r in final)
    out = Path(args.out_dir)
    report(forget_c, retain_c, final, dropped, wk_all, wk_c, wk, len(failed), time.time() - t0)
    kinds_ok = all(any(r["split"] == sp and r["kind"] == k for r in final) for sp in ("dev", "test")
                   for k in ("person", "place", "work", "organisation", "object"))
    problems = ([f"built-in concepts missing: {missing}"] if missing else []) + (
        [f"world knowledge {len(wk)} < {MIN_WORLD}"] if len(wk) < MIN_WORLD else []) + (
        [f"{len(final)} concepts < 32"] if len(final) < 32 else []) + (
        [] if kinds_ok else ["some kind is missing from a split"])
    if problems and not args.force:
        print("NOT WRITTEN: " + "; ".join(problems))
        return 1
    with atomic_path(out / "suite.jsonl") as tmp:
        tmp.write_text(text, encoding="utf-8")
    with atomic_path(out / "world_knowledge.jsonl") as tmp:
        tmp.write_text("".join(json.dumps({"prompt": w["prompt"], "answers": w["answers"], "form": "completion",
                                           "topic": w["topic"]}, ensure_ascii=False) + "\n" for w in wk),
                       encoding="utf-8")
    print(f"wrote {out / 'suite.jsonl'} ({len(final)} concepts) and {out / 'world_knowledge.jsonl'} ({len(wk)} facts)")
    return 0


def select_forget_final(rows: list[dict]) -> list[dict]:
    """After verification: a letter probe whose fact has fewer than 2 right orders left, and forms
    with fewer than MIN_PER_FORM probes left, are dropped."""
    groups = Counter(c.get("group") for c in rows if c["form"] == "mcq_letter")
    rows = [c for c in rows if c["form"] != "mcq_letter" or groups[c["group"]] >= 2]
    n = Counter(c["form"] for c in rows)
    return [c for c in rows if n[c["form"]] >= MIN_PER_FORM]


def report(forget_c, retain_c, final, dropped, wk_all, wk_c, wk, n_failed, seconds) -> None:
    forms = [f for f in FORMS]
    head = ["concept", "split", "kind", "tried", "pass", *[f[:6] for f in forms], "forget", "nbrs", "retain"]
    rows = []
    for r in final:
        cands = forget_c[r["name"]]
        n = Counter(c["form"] for c in r["forget"])
        tried = [c for c in cands if c["hit"] is not None]
        rows.append([r["name"][:22], r["split"], r["kind"][:5], str(len(tried)),
                     f"{sum(c['hit'] for c in tried) / max(1, len(tried)):.2f}", *[str(n.get(f, "")) for f in forms],
                     str(len(r["forget"])), str(len(r["neighbors"])), str(len(r["retain"]))])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for row in rows:
        print("  ".join(x.ljust(w) for x, w in zip(row, widths)))
    allf = [c for cs in forget_c.values() for c in cs if c["hit"] is not None]      # tried candidates
    allr = [c for cs in retain_c.values() for c in cs if c["hit"] is not None]
    by_form = {f: [c for c in allf if c["form"] == f] for f in forms}
    print("\ncandidate pass rate per form: " + ", ".join(
        f"{f} {sum(c['hit'] for c in v) / len(v):.2f} (n={len(v)})" for f, v in by_form.items() if v))
    print(f"forget candidates tried: {len(allf)} of {sum(map(len, forget_c.values()))}, "
          f"known {sum(c['hit'] for c in allf)} "
          f"({sum(c['hit'] for c in allf) / len(allf):.2f}); retain candidates: {len(allr)}, known "
          f"{sum(c['hit'] for c in allr)} ({sum(c['hit'] for c in allr) / len(allr):.2f}); "
          f"{n_failed} selected probes failed the verification pass")
    if wk_all:
        print(f"world knowledge: {len(wk_all)} candidates, {len(wk_all) - len(wk_c)} excluded as mentioning suite "
              f"names, "
              f"{len(wk)} known ({len(wk) / max(1, len(wk_c)):.2f} of the rest); topics "
              f"{dict(Counter(w['topic'] for w in wk))}")
    splits = Counter((r["split"], r["kind"]) for r in final)
    print(f"suite: {len(final)} concepts; split x kind: {dict(sorted(splits.items()))}; "
          f"forget probes {sum(len(r['forget']) for r in final)}, retain probes {sum(len(r['retain']) for r in final)}")
    for name, why in dropped.items():
        print(f"dropped {name}: {'; '.join(why)}")
    print(f"took {seconds:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
