"""`workbench build-moe` (synthetic-knowledge MoE + dense twin) and `workbench world concepts`."""
from __future__ import annotations

import json
from pathlib import Path

from workbench.cli.common import load_model_from_args
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


def cmd_world_concepts(args) -> int:
    from workbench.concepts.files import dumps_concepts
    from workbench.concepts.schema import Concept
    from workbench.data.world import World, concepts_for
    from workbench.models.synthetic import known_entities
    from workbench.paths import atomic_path
    folder = Path(args.model)
    world = World.load(folder / "world.json")
    if args.entities < 1:
        raise UsageError(f"--entities {args.entities}: must be >= 1")
    model = load_model_from_args(args)
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
