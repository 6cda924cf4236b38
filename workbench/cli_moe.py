"""CLI sub-commands `build-moe` (synthetic-knowledge MoE + dense twin) and `world concepts`."""
from __future__ import annotations

import json
from pathlib import Path

from workbench.errors import UsageError


def cmd_build_moe(args) -> int:
    from workbench.models.synthetic import build_synthetic
    overrides = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.seed is not None:
        overrides["seed"] = args.seed
    out = build_synthetic(args.size, out=args.out, force=args.force, **overrides)
    info = json.loads((Path(out) / "build.json").read_text())
    print(f"built {args.size} synthetic MoE in {out} (recipe {info['recipe_key']}, build {info['build_seconds']} s)")
    for name, m in info["models"].items():
        acc = ", ".join(f"{form} {v['trained']:.2f}" + (f"/{v['held_out']:.2f}" if "held_out" in v else "")
                        for form, v in m["accuracy"].items())
        print(f"  {name:<5} {m['architecture']:<20} {m['n_params'] / 1e6:.2f}M params, train {m['train_seconds']} s, "
              f"loss {m['final_loss']}; greedy accuracy trained/held-out phrasing: {acc}")
    return 0


def completion_accuracy(model, world) -> dict[str, float]:
    """Greedy hit rate of each entity's training-phrasing (completion) probes: {entity: accuracy}."""
    from workbench.verify.probes import generate_batched, is_hit
    rows = [(e, p) for e in world.entities for p in world.probes(e, forms=("completion",))]
    outs = generate_batched(model, [p["prompt"] for _, p in rows], max_new_tokens=6, batch_size=64)
    score: dict[str, list[int]] = {}
    for (e, p), o in zip(rows, outs):
        score.setdefault(e.name, []).append(int(is_hit(o, p["answers"], p.get("form", "completion"))))
    return {name: sum(v) / len(v) for name, v in score.items()}


def known_entities(model, world, n: int, min_acc: float = 1.0, prefer_heldout_questions: bool = True,
                   accuracy: dict[str, float] | None = None) -> list[str]:
    """Up to n entities whose training-phrasing (completion) probes the model answers (>= min_acc),
    entities whose question form was held out from training first, then in world order."""
    acc = completion_accuracy(model, world) if accuracy is None else accuracy
    order = sorted(world.entities, key=lambda e: (prefer_heldout_questions and e.qa_trained,
                                                  world.entities.index(e)))
    return [e.name for e in order if acc[e.name] >= min_acc][:n]


def cmd_world_concepts(args) -> int:
    from workbench.concepts.files import dumps_concepts
    from workbench.concepts.schema import Concept
    from workbench.data.world import World, concepts_for
    from workbench.models import load_model
    from workbench.paths import atomic_path
    folder = Path(args.model)
    world = World.load(folder / "world.json")
    if args.entities < 1:
        raise UsageError(f"--entities {args.entities}: must be >= 1")
    model = load_model(str(folder), device=args.device)
    names = known_entities(model, world, args.entities, min_acc=args.min_acc)
    if len(names) < args.entities:
        raise UsageError(f"{folder}: the model knows only {len(names)} entities with completion accuracy >= "
                         f"{args.min_acc} (asked for {args.entities}); lower --min-acc or --entities")
    records = concepts_for(world, names, n_retain_entities=args.retain_entities, seed=args.seed)
    concepts = [Concept.from_dict(r) for r in records]
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(dumps_concepts(concepts))
    print(f"wrote {len(concepts)} concepts to {args.out}: {', '.join(names)}")
    return 0


def register(sub, commands) -> None:
    p = sub.add_parser("build-moe", help="train the synthetic-knowledge MoE (Mixtral) and its dense twin (Llama)")
    p.add_argument("--size", default="default", choices=["tiny", "default"])
    p.add_argument("--out", default=None, help="folder to write the build to (default: only the cache)")
    p.add_argument("--steps", type=int, default=None, help="override the recipe's training steps")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--force", action="store_true", help="rebuild even when cached")
    commands["build-moe"] = cmd_build_moe

    w = sub.add_parser("world", help="the synthetic knowledge world of a build-moe model")
    wsub = w.add_subparsers(dest="world_command", required=True)
    c = wsub.add_parser("concepts", help="write a concept file for N entities the built model knows")
    c.add_argument("--model", required=True, help="a build-moe folder (holds world.json)")
    c.add_argument("--entities", type=int, default=5)
    c.add_argument("--out", required=True)
    c.add_argument("--retain-entities", type=int, default=4)
    c.add_argument("--min-acc", type=float, default=1.0, help="least completion accuracy of a chosen entity")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--device", default=None)
    commands["world"] = cmd_world_concepts
