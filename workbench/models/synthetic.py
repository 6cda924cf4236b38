"""`build-moe`: a small Mixtral (and its dense Llama twin) trained here on a synthetic fact world.

No mixture-of-experts weights can be downloaded in this environment, so the workbench trains one:
an HF `MixtralForCausalLM` (top-2 routing over 8 experts per layer, Switch-style load-balancing
loss) from scratch on the statements of `workbench.data.world` plus Shakespeare, with a byte-level
BPE tokenizer trained on the same text. A dense `LlamaForCausalLM` with the same width, depth and
tokenizer and an MLP as wide as two experts (the MoE's active size) is trained on the same batches
for comparison. Everything is seeded and cached under WORKBENCH_HOME/models/synthetic/<size>-<key>
(key = hash of the recipe), so a second build is a copy.

Layout of a build folder (an HF model folder itself: `workbench info DIR` works on it):
  config.json, model.safetensors, tokenizer.json ...   the MoE
  dense/                                                the dense twin (HF folder)
  world.json                                            the world (workbench.data.world.World)
  build.json                                            recipe, timings, accuracy per form
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

__all__ = ["Recipe", "RECIPES", "build_synthetic", "build_moe", "train_tokenizer", "fact_accuracy"]

RECIPE_VERSION = 2


@dataclass(frozen=True)
class Recipe:
    n_entities: int = 200
    seed: int = 0
    vocab_size: int = 2048
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    n_experts: int = 8
    top_k: int = 2
    d_expert: int = 256
    steps: int = 1400
    batch_size: int = 64
    lr: float = 3e-3
    general_share: float = 0.125      # share of batch rows that are general text
    general_len: int = 32            # tokens per general-text row
    aux_loss_coef: float = 0.02
    train_dense: bool = True

    def key(self) -> str:
        blob = json.dumps({"v": RECIPE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


RECIPES = {
    "tiny": Recipe(n_entities=24, vocab_size=512, d_model=48, n_heads=4, n_kv_heads=2, d_expert=48, steps=60,
                   batch_size=32, lr=5e-3),
    "default": Recipe(),
}


# ------------------------------------------------------------------------------------ tokenizer
def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE (GPT-2 style spaces) with <s> prepended to every encoded text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


# ------------------------------------------------------------------------------------ models
def _configs(r: Recipe, vocab: int, tok):
    from transformers import LlamaConfig, MixtralConfig
    common = dict(vocab_size=vocab, hidden_size=r.d_model, num_hidden_layers=r.n_layers,
                  num_attention_heads=r.n_heads, num_key_value_heads=r.n_kv_heads, max_position_embeddings=256,
                  tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id, rms_norm_eps=1e-5)
    moe = MixtralConfig(**common, intermediate_size=r.d_expert, num_local_experts=r.n_experts,
                        num_experts_per_tok=r.top_k, router_aux_loss_coef=r.aux_loss_coef, output_router_logits=False,
                        sliding_window=None)
    dense = LlamaConfig(**common, intermediate_size=r.d_expert * r.top_k)
    return moe, dense


def _batches(r: Recipe, sentences: list[str], general: list[str], tok):
    """Endless seeded batches: fact sentences (each <s> sentence </s>) + general-text rows."""
    rng = random.Random(r.seed)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    facts = [ids + [eos] for ids in tok(sentences)["input_ids"]]
    gen_ids: list[int] = []
    for para in general:
        gen_ids += tok(para, add_special_tokens=False)["input_ids"] + [eos]
    n_gen = int(round(r.batch_size * r.general_share)) if gen_ids else 0
    n_fact = r.batch_size - n_gen
    order: list[int] = []
    while True:
        rows = []
        for _ in range(n_fact):
            if not order:
                order = list(range(len(facts)))
                rng.shuffle(order)
            rows.append(facts[order.pop()])
        for _ in range(n_gen):
            start = rng.randrange(max(1, len(gen_ids) - r.general_len))
            rows.append([tok.bos_token_id] + gen_ids[start:start + r.general_len - 1])
        width = max(len(x) for x in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, x in enumerate(rows):
            ids[i, :len(x)] = torch.tensor(x)
            mask[i, :len(x)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        yield ids, mask, labels


def _train(model, r: Recipe, batches, desc: str, moe: bool, progress: bool = True) -> list[float]:
    torch.manual_seed(r.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, betas=(0.9, 0.98), weight_decay=0.01)
    warm = max(1, r.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / r.steps)))))
    model.train()
    losses = []
    bar = tqdm(range(r.steps), desc=desc, disable=not progress, mininterval=5)
    for _ in bar:
        ids, mask, labels = next(batches)
        kw = {"output_router_logits": True} if moe else {}
        out = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False, **kw)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(out.loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


# ------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def fact_accuracy(model, world, entities=None, max_new_tokens: int = 6) -> dict:
    """Greedy hit rate per probe form over `entities` (default all): {form: {held_out|trained: acc}}."""
    from workbench.scoring import generate_batched
    from workbench.verify.probes import is_hit
    ents = world.entities if entities is None else [world.entity(n) for n in entities]
    probes = [p for e in ents for p in world.phrasings(e)]
    outs = generate_batched(model, [p["prompt"] for p in probes], max_new_tokens=max_new_tokens, batch_size=64)
    acc: dict = {}
    for p, o in zip(probes, outs):
        slot = acc.setdefault(p["form"], {}).setdefault("held_out" if p["held_out"] else "trained", [0, 0])
        slot[0] += is_hit(o, [p["answer"]], p["form"])
        slot[1] += 1
    return {f: {k: round(v[0] / v[1], 4) for k, v in d.items()} | {"n": sum(v[1] for v in d.values())}
            for f, d in acc.items()}


# ------------------------------------------------------------------------------------ build
def completion_accuracy(model, world) -> dict[str, float]:
    """Greedy hit rate of each entity's training-phrasing (completion) probes: {entity: accuracy}."""
    from workbench.scoring import generate_batched
    from workbench.verify.probes import is_hit
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


def build_moe(recipe: Recipe, out: str | Path, progress: bool = True) -> dict:
    """Train the MoE (and the dense twin) for `recipe` into folder `out` (written atomically)."""
    from transformers import LlamaForCausalLM, MixtralForCausalLM

    from workbench.data.corpus import paragraphs
    from workbench.data.world import make_world
    from workbench.models.hooked import HookedModel
    from workbench.paths import atomic_path
    t_start = time.perf_counter()
    torch.manual_seed(recipe.seed)
    world = make_world(recipe.n_entities, seed=recipe.seed)
    sentences = world.training_sentences()
    try:
        general = list(paragraphs("train", "shakespeare"))
    except FileNotFoundError:
        general = []
    n_general = max(50, len(sentences) // 8)
    general = general[:n_general]
    tok = train_tokenizer(sentences + general, recipe.vocab_size)
    moe_cfg, dense_cfg = _configs(recipe, len(tok), tok)
    info: dict = {"recipe": asdict(recipe), "recipe_key": recipe.key(), "n_sentences": len(sentences),
                  "n_general_paragraphs": len(general), "models": {}}
    with atomic_path(out, is_dir=True) as tmp:
        tmp = Path(tmp)
        world.save(tmp / "world.json")
        for name, cls, cfg, sub in (("moe", MixtralForCausalLM, moe_cfg, tmp),
                                    ("dense", LlamaForCausalLM, dense_cfg, tmp / "dense")):
            if name == "dense" and not recipe.train_dense:
                continue
            torch.manual_seed(recipe.seed)
            model = cls(cfg)
            t0 = time.perf_counter()
            losses = _train(model, recipe, _batches(recipe, sentences, general, tok), f"build-moe {name}",
                            moe=name == "moe", progress=progress)
            train_s = time.perf_counter() - t0
            model.save_pretrained(sub, safe_serialization=True)
            tok.save_pretrained(sub)
            acc = fact_accuracy(HookedModel(model, tok, name), world)
            info["models"][name] = {
                "architecture": type(model).__name__, "n_params": sum(p.numel() for p in model.parameters()),
                "train_seconds": round(train_s, 1), "first_loss": round(losses[0], 4),
                "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
                "accuracy": acc}
        info["build_seconds"] = round(time.perf_counter() - t_start, 1)
        (tmp / "build.json").write_text(json.dumps(info, indent=1))
    return info


def build_synthetic(size: str = "default", out: str | Path | None = None, force: bool = False,
                    progress: bool = True, **overrides) -> Path:
    """Build (or reuse the cached) synthetic MoE of `size` ('tiny' | 'default'); copy it to `out`
    when given. Returns the folder holding the model. `overrides` change recipe fields."""
    from workbench.paths import atomic_path, cache_dir
    if size not in RECIPES:
        raise ValueError(f"--size {size!r}: choose one of {sorted(RECIPES)}")
    recipe = Recipe(**{**asdict(RECIPES[size]), **overrides})
    cached = cache_dir("models", "synthetic") / f"{size}-{recipe.key()}"
    if force and cached.exists():
        shutil.rmtree(cached)
    if not (cached / "build.json").exists():
        build_moe(recipe, cached, progress=progress)
    if out is None:
        return cached
    out = Path(out)
    if out.exists() and (out / "build.json").exists():
        if json.loads((out / "build.json").read_text()).get("recipe_key") == recipe.key():
            return out
        raise FileExistsError(f"{out}: holds a different build; remove it or choose another --out")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not empty")
    with atomic_path(out, is_dir=True) as tmp:
        shutil.rmtree(tmp)
        shutil.copytree(cached, tmp)
    return out
