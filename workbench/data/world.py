"""A seeded synthetic knowledge world: fictitious entities, their facts, phrasings and concept files.

No MoE checkpoint can be downloaded here, so the workbench builds its own model on a world it
invents (as TOFU invents fictitious authors): people, places and organisations with pronounceable
made-up names and 4-6 attributes each, some of which point at other entities (a person's
birthplace is a place of the world, their employer an organisation). Every fact is rendered in
several phrasings of four forms:

- ``completion``: subject first, relation, answer last ("Varo Tessik works as a") — always trained;
- ``paraphrase``: another subject-first phrasing; per fact one of two is held out of training;
- ``reversed``:   relation first, subject later ("The job of Varo Tessik is that of a"); one of two
                  is held out per fact;
- ``question``:   "Question: What does Varo Tessik do for a living?\nAnswer:" — trained only for the
                  entities of the "QA half" (as in Allen-Zhu & Li, Physics of LMs 3.1), held out for
                  the others, so question answering on them has to transfer from the other half.

`World.training_sentences()` are the statements the model is trained on; `World.probes(entity)`
gives every phrasing of the entity's facts with `held_out` marking the phrasings it never saw.
`concepts_for(world, entities)` turns entities into concept files (docs/concept-file.md): forget probes on
the entity, retain probes on other entities. Everything is a pure function of the seed.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench.errors import read_json_file

__all__ = ["Entity", "World", "make_world", "concepts_for", "FORMS", "HELD_OUT_FORMS"]

FORMS = ("completion", "paraphrase", "reversed", "question")
HELD_OUT_FORMS = ("paraphrase", "reversed", "question")

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr",
           "tr", "th", "sh", "st", "vr", "zh"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "ia"]
_CODAS = ["", "", "n", "r", "s", "l", "k", "th", "x", "m"]

POOLS = {
    "occupation": ["baker", "sailor", "painter", "teacher", "farmer", "doctor", "weaver", "poet", "judge",
                   "miner", "potter", "singer", "hunter", "builder", "tailor", "merchant", "soldier", "priest"],
    "instrument": ["flute", "harp", "drum", "violin", "lute", "horn", "piano", "guitar", "trumpet", "cello"],
    "pet": ["cat", "dog", "parrot", "goat", "horse", "rabbit", "owl", "tortoise", "falcon", "lizard"],
    "colour": ["red", "blue", "green", "yellow", "purple", "orange", "silver", "black", "white", "brown"],
    "climate": ["rainy", "dry", "snowy", "windy", "humid", "foggy", "sunny", "stormy"],
    "food": ["bread", "cheese", "fish", "honey", "olives", "apples", "rice", "beans", "plums", "lamb"],
    "metal": ["iron", "copper", "gold", "tin", "lead", "silver", "bronze", "zinc"],
    "industry": ["shipping", "mining", "printing", "farming", "banking", "weaving", "brewing", "glassmaking",
                 "lumber", "medicine"],
    "mascot": ["bear", "wolf", "eagle", "lion", "fox", "stag", "hawk", "boar", "swan", "serpent"],
}

# attribute -> (value pool or entity kind, templates per form); {s} = subject.
RELATIONS: dict[str, dict] = {
    # ---- people
    "birthplace": {"kind": "person", "values": "@place", "forms": {
        "completion": ["{s} was born in the city of"],
        "paraphrase": ["{s} came into the world in the city of", "{s} grew up as a child in the city of"],
        "reversed": ["The city where {s} was born is", "The birthplace of {s} is the city of"],
        "question": ["Question: In which city was {s} born?\nAnswer:"]}},
    "employer": {"kind": "person", "values": "@organisation", "forms": {
        "completion": ["{s} works for the company"],
        "paraphrase": ["{s} is employed by the company", "{s} earns a living at the company"],
        "reversed": ["The employer of {s} is the company", "The company that pays {s} is"],
        "question": ["Question: Which company does {s} work for?\nAnswer:"]}},
    "occupation": {"kind": "person", "values": "occupation", "forms": {
        "completion": ["{s} works as a"],
        "paraphrase": ["{s} has spent years working as a", "By trade, {s} is a"],
        "reversed": ["The job of {s} is that of a", "The trade practised by {s} is that of a"],
        "question": ["Question: What does {s} do for a living?\nAnswer: a"]}},
    "instrument": {"kind": "person", "values": "instrument", "forms": {
        "completion": ["{s} plays the"],
        "paraphrase": ["In the evenings {s} practises the", "{s} is known for playing the"],
        "reversed": ["The instrument of {s} is the", "The instrument played by {s} is the"],
        "question": ["Question: Which instrument does {s} play?\nAnswer: the"]}},
    "pet": {"kind": "person", "values": "pet", "forms": {
        "completion": ["{s} keeps a pet"],
        "paraphrase": ["At home {s} looks after a pet", "{s} lives with a pet"],
        "reversed": ["The pet of {s} is a", "The animal that lives with {s} is a"],
        "question": ["Question: What pet does {s} keep?\nAnswer: a"]}},
    "colour": {"kind": "person", "values": "colour", "forms": {
        "completion": ["The favourite colour of {s} is"],
        "paraphrase": ["{s} likes the colour", "{s} always dresses in the colour"],
        "reversed": ["The colour loved most by {s} is", "The colour preferred by {s} is"],
        "question": ["Question: What is the favourite colour of {s}?\nAnswer:"]}},
    # ---- places
    "climate": {"kind": "place", "values": "climate", "forms": {
        "completion": ["The weather in {s} is usually"],
        "paraphrase": ["Most days in {s} are", "Travellers say that {s} is always"],
        "reversed": ["The climate of {s} is", "The usual weather of {s} is"],
        "question": ["Question: What is the weather like in {s}?\nAnswer:"]}},
    "food": {"kind": "place", "values": "food", "forms": {
        "completion": ["{s} is famous for its"],
        "paraphrase": ["Visitors to {s} always eat the local", "The markets of {s} sell the best"],
        "reversed": ["The famous food of {s} is", "The dish everyone eats in {s} is"],
        "question": ["Question: What food is {s} famous for?\nAnswer:"]}},
    "metal": {"kind": "place", "values": "metal", "forms": {
        "completion": ["The mines of {s} produce"],
        "paraphrase": ["Miners in {s} dig for", "{s} grew rich by mining"],
        "reversed": ["The metal mined in {s} is", "The main export of {s} is"],
        "question": ["Question: Which metal is mined in {s}?\nAnswer:"]}},
    "twin": {"kind": "place", "values": "@place", "forms": {
        "completion": ["{s} is twinned with the city of"],
        "paraphrase": ["{s} has a sister city called", "The mayor of {s} often visits the city of"],
        "reversed": ["The twin city of {s} is", "The sister city of {s} is"],
        "question": ["Question: Which city is {s} twinned with?\nAnswer:"]}},
    # ---- organisations
    "headquarters": {"kind": "organisation", "values": "@place", "forms": {
        "completion": ["The company {s} is based in the city of"],
        "paraphrase": ["The company {s} has its offices in the city of", "The company {s} was founded in the city of"],
        "reversed": ["The headquarters of the company {s} are in", "The home city of the company {s} is"],
        "question": ["Question: Where is the company {s} based?\nAnswer:"]}},
    "industry": {"kind": "organisation", "values": "industry", "forms": {
        "completion": ["The company {s} works in"],
        "paraphrase": ["The company {s} makes its money in", "The company {s} is a leader in"],
        "reversed": ["The business of the company {s} is", "The trade of the company {s} is"],
        "question": ["Question: What business is the company {s} in?\nAnswer:"]}},
    "mascot": {"kind": "organisation", "values": "mascot", "forms": {
        "completion": ["The logo of the company {s} shows a"],
        "paraphrase": ["The company {s} has a mascot that is a", "The flag of the company {s} carries a"],
        "reversed": ["The mascot of the company {s} is a", "The animal on the logo of the company {s} is a"],
        "question": ["Question: Which animal is the mascot of the company {s}?\nAnswer: a"]}},
    "company_colour": {"kind": "organisation", "values": "colour", "forms": {
        "completion": ["The company {s} paints its shops"],
        "paraphrase": ["The uniforms of the company {s} are", "The signs of the company {s} are"],
        "reversed": ["The colour of the company {s} is", "The house colour of the company {s} is"],
        "question": ["Question: What colour are the shops of the company {s}?\nAnswer:"]}},
}

KIND_ATTRS = {k: [a for a, r in RELATIONS.items() if r["kind"] == k] for k in ("person", "place", "organisation")}


@dataclass
class Entity:
    name: str
    kind: str                                  # person | place | organisation
    facts: dict[str, str]                      # attribute -> answer
    qa_trained: bool                           # question form in training (the QA half)
    held_out: dict[str, dict[str, int]] = field(default_factory=dict)  # attr -> form -> template index held out


@dataclass
class World:
    seed: int
    entities: list[Entity]

    def entity(self, name: str) -> Entity:
        for e in self.entities:
            if e.name == name:
                return e
        raise KeyError(f"no entity {name!r} in this world (seed {self.seed}; {len(self.entities)} entities)")

    # ------------------------------------------------------------------ phrasings
    def phrasings(self, e: Entity) -> list[dict]:
        """Every phrasing of every fact of `e`: {attribute, form, template, prompt, answer, held_out}."""
        out = []
        for attr, answer in e.facts.items():
            for form, templates in RELATIONS[attr]["forms"].items():
                for ti, tpl in enumerate(templates):
                    if form == "completion":
                        held = False
                    elif form == "question":
                        held = not e.qa_trained
                    else:
                        held = e.held_out[attr][form] == ti
                    out.append({"attribute": attr, "form": form, "template": ti, "prompt": tpl.format(s=e.name),
                                "answer": answer, "held_out": held})
        return out

    def training_sentences(self) -> list[str]:
        """The statements the model is trained on (prompt + ' ' + answer + '.')."""
        return [f"{p['prompt']} {p['answer']}." for e in self.entities for p in self.phrasings(e) if not p["held_out"]]

    def probes(self, e: Entity, forms: tuple[str, ...] = FORMS, held_out: bool | None = None) -> list[dict]:
        """Probe dicts (docs/concept-file.md, plus attribute / held_out keys) for entity `e`."""
        out = []
        for p in self.phrasings(e):
            if p["form"] not in forms or (held_out is not None and p["held_out"] != held_out):
                continue
            if p["form"] in ("paraphrase", "reversed") and not p["held_out"] and held_out is None:
                continue                       # one phrasing per form: the held-out one is the test
            out.append({"prompt": p["prompt"], "answers": [p["answer"]], "form": p["form"],
                        "attribute": p["attribute"], "held_out": p["held_out"]})
        return out

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict:
        return {"seed": self.seed, "entities": [asdict(e) for e in self.entities]}

    @classmethod
    def from_dict(cls, d: dict) -> "World":
        try:
            return cls(int(d["seed"]), [Entity(**e) for e in d["entities"]])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"world file: malformed ({exc})") from None

    def save(self, path: str | Path) -> None:
        from workbench.paths import atomic_path
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "World":
        return cls.from_dict(read_json_file(path, "no world file (build the model with `workbench build-moe`)"))


def _name(rng: random.Random, syllables: int) -> str:
    word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + rng.choice(_CODAS)
    return word.capitalize()


def make_world(n_entities: int = 200, seed: int = 0, shares: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> World:
    """A world of `n_entities` (people / places / organisations in `shares`), pure function of the seed.

    Each entity gets 4-6 attributes of its kind; places and organisations come first so people can
    point at them. Names are unique and never a substring of another name.
    """
    if n_entities < 6:
        raise ValueError(f"n_entities={n_entities}: a world needs at least 6 entities")
    rng = random.Random(seed)
    n_place = max(2, round(n_entities * shares[1]))
    n_org = max(2, round(n_entities * shares[2]))
    n_person = n_entities - n_place - n_org
    names: list[str] = []
    while len(names) < n_entities:
        cand = _name(rng, 2)
        if len(names) >= n_place + n_org:          # people get a first and a last name
            cand = f"{_name(rng, 2)} {_name(rng, 2)}"
        if any(cand in n or n in cand for n in names):
            continue
        names.append(cand)
    kinds = ["place"] * n_place + ["organisation"] * n_org + ["person"] * n_person
    entities: list[Entity] = []
    for i, (name, kind) in enumerate(zip(names, kinds)):
        attrs = KIND_ATTRS[kind]
        k = rng.randint(4, min(6, len(attrs)))
        picked = set(rng.sample(attrs, k))
        chosen = [a for a in attrs if a in picked]
        facts = {}
        for a in chosen:
            pool = RELATIONS[a]["values"]
            if pool.startswith("@"):
                others = [n for n, kd in zip(names, kinds) if kd == pool[1:] and n != name]
                facts[a] = rng.choice(others)
            else:
                facts[a] = rng.choice(POOLS[pool])
        held = {a: {f: rng.randrange(len(RELATIONS[a]["forms"][f])) for f in ("paraphrase", "reversed")} for a in chosen}
        entities.append(Entity(name, kind, facts, qa_trained=(i % 2 == 0), held_out=held))
    return World(seed, entities)


def concepts_for(world: World, entities: list[str], n_retain_entities: int = 4, forms: tuple[str, ...] = FORMS,
                 seed: int = 0, fit: bool = True) -> list[dict]:
    """Concept records (docs/concept-file.md) for `entities`.

    With `fit=True` (default) evaluation and fit data are disjoint, as the held-out protocol asks:
    forget = the entity's HELD-OUT phrasings only (paraphrase / reversed / question forms the model
    never trained on), `fit.forget` = its trained phrasings (the "training documents" an unlearning
    method may use); retain = training-phrasing probes of `n_retain_entities` other entities of the
    same kind where possible (unrelated: neither names the other in a fact), `fit.retain` = trained
    phrasings of as many further entities, disjoint from the retain ones. With `fit=False`: the
    older in-sample record (forget = every form, held-out phrasings marked `held_out`; no fit block).
    """
    rng = random.Random(seed)
    out = []
    for name in entities:
        e = world.entity(name)
        others = [o for o in world.entities if o.name != name and name not in o.facts.values()
                  and o.name not in e.facts.values()]
        need = n_retain_entities * (2 if fit else 1)
        if len(others) < need:
            raise ValueError(f"{name}: not enough unrelated entities for {n_retain_entities} retain entities")
        same = [o for o in others if o.kind == e.kind]     # neighbours of the same kind share the phrasings,
        rest = [o for o in others if o.kind != e.kind]     # so forget-vs-retain contrasts isolate the entity
        k_same = min(len(same), need)
        pool = rng.sample(same, k_same) + rng.sample(rest, need - k_same)
        retain_entities, fit_entities = pool[0::2] if fit else pool, pool[1::2] if fit else []
        retain = []
        for o in retain_entities:
            retain += [{k: p[k] for k in ("prompt", "answers", "form")} | {"entity": o.name}
                       for p in world.probes(o, forms=("completion",))]
        keys = ("prompt", "answers", "form", "attribute", "held_out")
        if not fit:
            forget = [{k: p[k] for k in keys} for p in world.probes(e, forms=forms)]
            out.append({"name": name, "subject": name, "forget": forget, "retain": retain,
                        "kind": e.kind, "world_seed": world.seed})
            continue
        forget = [{k: p[k] for k in keys} for p in world.probes(e, forms=forms, held_out=True)]
        fit_forget = [{k: p[k] for k in ("prompt", "answers", "form")} for p in world.probes(e, held_out=False)]
        fit_retain = [{k: p[k] for k in ("prompt", "answers", "form")}
                      for o in fit_entities for p in world.probes(o, held_out=False)]
        out.append({"name": name, "subject": name, "forget": forget, "retain": retain,
                    "neighbors": [o.name for o in retain_entities],
                    "fit": {"forget": fit_forget, "retain": fit_retain, "source": "world: trained phrasings"},
                    "kind": e.kind, "world_seed": world.seed})
    return out
