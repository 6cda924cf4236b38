"""The dashboard's shared core (`dashboards/`): input checks, the per-model lock, `edited`, and the
Model page (structure, next-token table, logit lens, base vs edited generation).

`workbench.app` holds every number the pages show: `core` (this), `concepts` (form editor and
uploads), `evidence` (Locate page), `edits` (Edit page), `verify` (Verify and Patches pages),
`diffusion` (Diffusion page) and `ui` (the Streamlit plumbing). The pages only lay out widgets.
Nothing but `ui` imports Streamlit, so all of it is testable without a browser.

Sessions never see each other's edits: the dashboard shares one loaded model per process
(`st.cache_resource`) and never leaves it mutated. A session's edit lives in its own session
state as an *unapplied* `Edit`; every computation that needs the edited model runs inside
`edited(model, edit)`, which takes the model's lock and applies the edit scoped
(`with edit.applied(model)`), restoring the weights bit-exactly on exit, also on exceptions.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

MAX_PROMPT_CHARS = 2000
MAX_NEW_TOKENS = 64
_LOCKS: dict[int, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


# ---------------------------------------------------------------------------- input checks
def check_prompt(prompt: str, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """A non-empty prompt of at most `max_chars` characters, or ValueError saying what is wrong."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt: write some text first")
    if len(prompt) > max_chars:
        raise ValueError(f"prompt: {len(prompt):,} characters is over the limit of {max_chars:,}")
    return prompt


def one_line(exc: BaseException) -> str:
    """The message an inline error shows: the exception's first line (its type when it has none)."""
    text = str(exc).strip()
    if isinstance(exc, KeyError) and text.startswith(("'", '"')):
        text = text.strip("'\"")
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------- models
def model_choices() -> list[str]:
    """Embedded model names plus built checkpoints (e.g. synthetic MoEs) under WORKBENCH_HOME."""
    from workbench.models import EMBEDDED
    return list(EMBEDDED) + [str(p) for p in built_models()]


def built_models() -> list[Path]:
    """HF folders (config.json) under WORKBENCH_HOME/{models/synthetic,moe,built} (built synthetic
    MoEs and the like) up to two levels deep; the dequantized embedded models are not listed."""
    from workbench.paths import home
    root = home()
    found = []
    for sub in ("models/synthetic", "moe", "built"):
        base = root / sub
        if base.is_dir():
            found += [p.parent for p in sorted(base.glob("*/config.json")) + sorted(base.glob("*/*/config.json"))]
    return found


def model_lock(model) -> threading.RLock:
    """One re-entrant lock per loaded model object, shared by every session of the process."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(id(model), threading.RLock())


@contextmanager
def edited(model, edit=None):
    """Hold the model's lock; inside, the model carries `edit` (if any). Restored on exit."""
    with model_lock(model):
        with (edit.applied(model) if edit is not None else nullcontext(model)):
            yield model


def model_summary(model) -> dict:
    """{"info": ModelInfo dict, "parameters": [(group, count)], "sites": {kind: count}, "n_sites"}."""
    groups: dict[str, int] = {}
    for name, p in model.hf.named_parameters():
        key = "transformer blocks" if ".layers." in name or ".h." in name else name.rsplit(".", 1)[0]
        groups[key] = groups.get(key, 0) + p.numel()
    kinds: dict[str, int] = {}
    names = model.sites()
    for s in names:
        kind = s.split(".", 2)[-1] if s.startswith("blocks.") else s
        if ".experts." in s:
            kind = "mlp.experts.{E}" + (s.split(".experts.", 1)[1].split(".", 1)[1:] or [""])[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return {"info": model.info.to_dict(), "parameters": list(groups.items()), "sites": kinds, "n_sites": len(names),
            "is_moe": bool(model.info.n_experts)}


@torch.no_grad()
def next_token_table(model, prompt: str, k: int = 10, edit=None) -> list[dict]:
    """Top-k next tokens after `prompt`: [{"rank", "token", "prob", "logit"}]."""
    check_prompt(prompt)
    with edited(model, edit):
        logits = model.forward(model.tokenize(prompt), logits_to_keep=1)[0, -1].float()
    probs = logits.softmax(-1)
    top = probs.topk(k)
    return [{"rank": r + 1, "token": model.tokenizer.decode([int(i)]), "prob": round(float(p), 4),
             "logit": round(float(logits[i]), 3)} for r, (p, i) in enumerate(zip(top.values, top.indices))]


def lens(model, prompt: str, k: int = 5, answer: str | None = None, edit=None):
    """The LogitLens of `prompt` (its `.figure()` is the heat map)."""
    check_prompt(prompt)
    with edited(model, edit):
        return model.logit_lens(prompt, k=k, answer=answer or None)


def generate_pair(model, prompt: str, edit=None, max_new_tokens: int = 24) -> dict:
    """Greedy continuation of `prompt` by the base model and, if given, the edited one."""
    check_prompt(prompt)
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max new tokens must be between 1 and {MAX_NEW_TOKENS}")
    with edited(model):
        out = {"base": model.generate(prompt, max_new_tokens=max_new_tokens)[0]}
    if edit is not None:
        with edited(model, edit):
            out["edited"] = model.generate(prompt, max_new_tokens=max_new_tokens)[0]
    return out
