"""Attacks on an edit, run on FIT texts (what the method trained on), never on evaluation probes.

Membership inference (`membership_inference`): does the edited model still treat the concept's
forget corpus as text it knows? Three standard scores per text, each over the text's
continuation tokens given its (rendered) prompt — exactly the tokens a method fitted on:
- loss (Yeom et al. 2018): mean token log-probability;
- zlib (Carlini et al. 2021, "Extracting Training Data from LLMs"): mean NLL divided by the
  zlib-compressed length of the text in bytes (negated, so higher = more member-like);
- Min-K % prob (Shi et al. 2024, "Detecting Pretraining Data from LLMs"): mean of the k = 20 %
  lowest token log-probabilities.
Members are the concept's fit forget texts; non-members are COMPARABLE UNSEEN texts
(`comparable_texts`): the unedited model's greedy continuations of the very same seed prompts
with the subject replaced by a neighbour of the same kind (`concept.neighbors`, else
`redirect_to`), truncated to the member's length; a seed whose neighbour text is part of the fit
retain set (which a method trained to keep) moves on to the next neighbour. When no neighbour is
known (or no seed names the subject) the non-members are held-out general-corpus paragraphs of
the same token length, and the block says `comparable: false` (style then differs, and the AUC
before the edit is not 0.5). Non-member texts are cached under WORKBENCH_HOME/mia/<model id>/.
AUC reads: 0.5 = the forget texts look like comparable unseen ones; > 0.5 they are still more
likely (knowledge detectable); well below 0.5 the edit left a detectable hole (over-unlearning
is a membership signal too, MUSE's PrivLeak). Before the edit the AUC is near 0.5 for derived
fit texts (both sets are the model's own greedy text), so the change before -> after is the read.

Relearning attack (`relearning_attack`, Lynch et al. 2024; Hu et al. 2024 "Jogging the memory of
unlearned LLMs"): a realistic budget of fine-tuning the EDITED model on the fit forget texts
(default 20 Adam steps, lr 1e-5, mini-batches of 8 texts), scoring the concept's evaluation
forget probes along the way (recovery curve at steps 0, 5, 10, 20). The evaluation probes are
never trained on: the fit texts are checked against them first (an overlap is an error). Every
trained tensor is restored bit-exactly, then the edit is reverted.
"""
from __future__ import annotations

import hashlib
import json
import re
import zlib
from typing import Sequence

import numpy as np
import torch

__all__ = ["MIN_K", "as_fit_probes", "check_disjoint", "comparable_texts", "membership_inference", "mia_scores",
           "relearning_attack", "token_logprobs"]

MIN_K = 0.2
MIA_VERSION = 1


# ------------------------------------------------------------------------------ fit texts
def _text_probe(text: str, where: str):
    from workbench.concepts import schema
    if hasattr(schema, "text_probe"):
        return schema.text_probe(text, where)
    text = text.strip()                                  # same rule as schema.text_probe
    cut = text.find(" ", max(1, len(text) // 3))
    if cut <= 0 or cut >= len(text) - 1:
        raise ValueError(f"{where}: a fit text needs at least two words")
    return schema.Probe(prompt=text[:cut], answers=[text[cut:].strip()], form="fit_text")


def as_fit_probes(items, where: str = "fit.forget") -> list:
    """Probes from Probe objects or plain texts (a text: its first ~third is the prompt)."""
    from workbench.concepts.schema import Probe
    out = []
    for i, item in enumerate(items):
        if isinstance(item, Probe):
            out.append(item)
        elif isinstance(item, str):
            out.append(_text_probe(item, f"{where}[{i}]"))
        else:
            raise ValueError(f"{where}[{i}]: must be a Probe or a text, got {type(item).__name__}")
    return out


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def check_disjoint(items: Sequence, concept, where: str = "fit.forget") -> None:
    """Raise ValueError naming the first fit item that equals or contains an evaluation prompt."""
    evals = {_norm(p.prompt) for p in concept.probes}
    long_evals = [e for e in evals if len(e) >= 12]
    for i, item in enumerate(items):
        text = _norm(item.prompt + " " + " ".join(item.answers))
        if _norm(item.prompt) in evals or any(e in text for e in long_evals):
            raise ValueError(f"{where}[{i}]: contains an evaluation prompt of {concept.name!r}; attacks train "
                             f"and score on fit texts only")


# ------------------------------------------------------------------------------ scores
@torch.no_grad()
def token_logprobs(model, probes: Sequence, batch_size: int = 16) -> list[np.ndarray]:
    """Per probe, log P of each continuation token (its first answer) given the rendered prompt."""
    from workbench.edits.unlearn import probe_batch
    from workbench.verify.probes import _eval_mode
    out: list[np.ndarray] = []
    with _eval_mode(model):
        for start in range(0, len(probes), batch_size):
            batch = probe_batch(model, probes[start:start + batch_size])
            logits = model.hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              use_cache=False).logits[:, :-1].float()
            labels = batch["labels"][:, 1:]
            keep = labels != -100
            lp = logits.log_softmax(-1).gather(-1, labels.clamp_min(0)[..., None])[..., 0]
            for row in range(lp.shape[0]):
                out.append(lp[row][keep[row]].cpu().numpy().astype(float))
    return out


def mia_scores(logprobs: Sequence[np.ndarray], texts: Sequence[str], k: float = MIN_K) -> dict[str, list[float]]:
    """{"loss", "zlib", "min_k"}: one score per text, higher = more member-like."""
    loss, zl, mink = [], [], []
    for lp, text in zip(logprobs, texts):
        mean = float(lp.mean())
        loss.append(mean)
        zl.append(mean / len(zlib.compress(text.encode("utf-8"))))   # -(NLL / zlib bytes)
        m = max(1, int(round(k * len(lp))))
        mink.append(float(np.sort(lp)[:m].mean()))
    return {"loss": loss, "zlib": zl, "min_k": mink}


def _aucs(model, members, nonmembers, k, n_boot, seed) -> dict:
    from workbench.verify.stats import auc, auc_ci
    texts = [p.prompt + " " + p.answer for p in members + nonmembers]
    sc = mia_scores(token_logprobs(model, members + nonmembers), texts, k)
    n = len(members)
    return {name: {"auc": auc(v[:n], v[n:]), "ci": auc_ci(v[:n], v[n:], n_boot=n_boot, seed=seed)}
            for name, v in sc.items()}


# ------------------------------------------------------------------------------ non-members
def _truncate(model, text: str, n_tokens: int) -> str:
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][:n_tokens]
    return model.tokenizer.decode(ids, skip_special_tokens=True).strip()


def _general_nonmembers(model, members, source: str = "shakespeare") -> list:
    """Held-out general-corpus paragraphs cut to the members' prompt / continuation token lengths."""
    from workbench.concepts.schema import Probe
    from workbench.data.corpus import paragraphs
    out = []
    for para, m in zip(paragraphs("heldout", source), members):
        ids = model.tokenizer(" ".join(para.split()), add_special_tokens=False)["input_ids"]
        n_p = len(model.tokenizer(m.prompt, add_special_tokens=False)["input_ids"])
        n_a = len(model.tokenizer(" " + m.answer, add_special_tokens=False)["input_ids"])
        if len(ids) < n_p + n_a or n_p == 0:
            continue
        prompt = model.tokenizer.decode(ids[:n_p], skip_special_tokens=True).strip()
        answer = model.tokenizer.decode(ids[n_p:n_p + n_a], skip_special_tokens=True).strip()
        if prompt and answer:
            out.append(Probe(prompt=prompt, answers=[answer], form="general_text"))
    return out


def comparable_texts(model, concept, members: Sequence, retain: Sequence = (), max_new_tokens: int = 48,
                     cache: bool = True) -> tuple[list, str, bool]:
    """(non-member probes, description of their source, comparable?) for `members` (see module doc).

    Must be called on the UNEDITED model (the battery does). Cached by model content id + recipe.
    """
    from workbench.concepts.schema import Probe, render_prompt
    from workbench.verify.probes import generate_batched
    others = [n for n in dict.fromkeys([*getattr(concept, "neighbors", []),
                                        *([concept.redirect_to] if concept.redirect_to else [])])
              if n and n.strip() and n.casefold() != concept.subject.casefold()]
    taken = {_norm(p.prompt) for p in retain}
    seeds = []                                           # (member index, seed prompt, form)
    for i, m in enumerate(members):
        if concept.subject not in m.prompt or not others:
            continue
        for j in range(len(others)):
            prompt = m.prompt.replace(concept.subject, others[(i + j) % len(others)])
            if _norm(prompt) not in taken:
                seeds.append((i, prompt, m.form))
                break
    if not seeds:
        why = "no neighbour or redirect_to" if not others else "no fit text names the subject"
        return _general_nonmembers(model, list(members)), f"held-out shakespeare paragraphs ({why})", False
    lengths = [len(model.tokenizer(" " + members[i].answer, add_special_tokens=False)["input_ids"]) for i, _, _ in seeds]
    budget = min(max_new_tokens, max(lengths))
    recipe = {"v": MIA_VERSION, "seeds": [[p, f] for _, p, f in seeds], "lengths": lengths, "budget": budget}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:20]
    desc = f"unedited model's greedy texts from the same seeds about {len(others)} neighbour(s)"
    path = None
    if cache:
        from workbench.models.identity import model_content_id
        from workbench.paths import cache_dir
        path = cache_dir("mia", model_content_id(model)) / f"{key}.json"
        if path.is_file():
            try:
                d = json.loads(path.read_text(encoding="utf-8"))
                probes = [Probe.from_dict(x, f"{path}: nonmembers[{i}]") for i, x in enumerate(d["nonmembers"])]
                return probes, desc, True
            except (ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)             # damaged: rebuilt, never trusted
    shells = [Probe(prompt=p, answers=["x"], form=f) for _, p, f in seeds]
    outs = generate_batched(model, [render_prompt(model, s) for s in shells], max_new_tokens=budget)
    probes = []
    for s, text, n in zip(shells, outs, lengths):
        text = re.sub(r"\s+", " ", _truncate(model, text, n)).strip()
        if len(text) >= 3:
            probes.append(Probe(prompt=s.prompt, answers=[text], form=s.form))
    if path is not None:
        from workbench.paths import atomic_path
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"recipe": recipe, "nonmembers": [p.to_dict() for p in probes]},
                                      ensure_ascii=False), encoding="utf-8")
    return probes, desc, True


def membership_inference(model, concept, edit, members: Sequence, nonmembers: Sequence | None = None,
                         retain: Sequence = (), k: float = MIN_K, n_boot: int = 1000, seed: int = 0,
                         member_source: str = "fit forget texts") -> dict:
    """MIA AUCs (loss, zlib, Min-K %) of `members` vs non-members, before and after `edit`.

    `edit` must not be applied on entry (it is applied scoped for the "after" half); None scores
    the current model only ("after" omitted). Non-members default to `comparable_texts`.
    """
    members = as_fit_probes(members)
    check_disjoint(members, concept)
    if nonmembers is None:
        nonmembers, desc, comparable = comparable_texts(model, concept, members, retain)
    else:
        nonmembers, desc, comparable = as_fit_probes(nonmembers, "nonmembers"), "given", True
    if not members or not nonmembers:
        return {"skipped": f"needs member and non-member texts (got {len(members)} and {len(nonmembers)})"}
    out = {"members": len(members), "nonmembers": len(nonmembers), "member_source": member_source,
           "nonmember_source": desc, "comparable": comparable, "k": k,
           "before": _aucs(model, list(members), list(nonmembers), k, n_boot, seed)}
    if edit is not None:
        with edit.applied(model):
            out["after"] = _aucs(model, list(members), list(nonmembers), k, n_boot, seed)
    return out


# ------------------------------------------------------------------------------ relearning
def relearning_attack(model, concept, edit, fit_forget: Sequence, steps: int = 20, lr: float = 1e-5,
                      params: str = "all", curve: Sequence[int] = (0, 5, 10, 20), batch_size: int = 8,
                      max_new_tokens: int = 8, fit_source: str = "fit", progress: bool = True) -> dict:
    """Fine-tune the edited model on fit forget texts; score the evaluation forget probes along the way.

    Returns {"train_texts", "train_probes" (same number), "trained_on" (their prompts),
    "train_source", "eval_probes", "steps", "lr", "params", "batch_size", "curve": [{"step", "hit",
    "hit_ci", "prob", "n"}], "before" / "after": the curve's first / last point, "recovered": after
    hit minus before hit, "losses"}. Weights are restored bit-exactly and the edit reverted, also on
    errors.
    """
    from workbench.training import cycle, probe_batch, select_params, sequence_nll, train_edit
    from workbench.verify.probes import score_probes, summarize
    train = as_fit_probes(fit_forget)
    if not train:
        return {"skipped": "no fit forget text to relearn on"}
    check_disjoint(train, concept)
    if steps < 0 or lr <= 0 or batch_size < 1:
        raise ValueError(f"relearning: need steps >= 0, lr > 0, batch_size >= 1 (got {steps}, {lr}, {batch_size})")
    marks = sorted({s for s in curve if 0 <= s <= steps} | {0, steps})
    held = list(concept.forget)
    out = {"train_texts": len(train), "train_probes": len(train), "trained_on": [p.prompt for p in train],
           "train_source": fit_source, "eval_probes": len(held), "steps": steps, "lr": lr, "params": params,
           "batch_size": batch_size}
    points = []

    def point(step: int) -> None:
        s = summarize(score_probes(model, held, max_new_tokens=max_new_tokens))
        points.append({"step": step, "hit": s["hit"], "hit_ci": s["hit_ci"], "prob": s["prob"], "n": s["n"]})

    with edit.applied(model):
        batch = probe_batch(model, train)

        def objective(step: int) -> torch.Tensor:          # mean NLL per answer token, scored at the marks
            if step in marks:
                point(step)
            nll, n_tok = sequence_nll(model, {k: v[cycle(len(train), batch_size, step)] for k, v in batch.items()})
            return nll.sum() / n_tok.sum().clamp_min(1)

        run = train_edit(model, select_params(model, params), objective, steps=steps, lr=lr,
                         after=lambda: point(steps), desc="relearn", progress=progress)
        out["losses"] = [round(x, 5) for x in run.losses]
    out["curve"] = points
    out["before"], out["after"] = ({k: p[k] for k in ("hit", "hit_ci", "prob")} for p in (points[0], points[-1]))
    out["recovered"] = points[-1]["hit"] - points[0]["hit"]
    return out
