"""The one parser table of `workbench`: every (sub-)command, its arguments and its handler.

`TABLE` maps a command name to a `Cmd`: its help, its handler ("module:function" under
`workbench.cli`, imported only when the command runs), its arguments and, for command groups,
its sub-commands. `LM` / `SD` / `LM_OPTION` / `DEVICE` in an argument list stand for the shared model
arguments (`common.add_model_args`), so `--model` / `--device` / `--dtype` are declared once.
docs/cli.md is generated from this table (`python -m workbench.cli.docs`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from workbench.cli.common import CONCEPTS_HELP, add_model_args
from workbench.locate.weights import SCORE_METHODS


@dataclass(frozen=True)
class Cmd:
    help: str
    run: str | None = None                       # "module:function" in workbench.cli
    args: tuple = ()
    sub: dict[str, "Cmd"] = field(default_factory=dict)
    dest: str | None = None                      # the attribute naming the chosen sub-command


@dataclass(frozen=True)
class _Model:
    kind: str = "lm"
    model: str = "positional"
    dtype: bool = True


LM = _Model()                                     # MODEL, --device, --dtype
SD = _Model("diffusion")                          # the same for a diffusion pipeline
LM_OPTION = _Model(model="option")                # --model MODEL (optional), --device, --dtype
DEVICE = _Model(model="required", dtype=False)    # --model MODEL (required), --device


def A(*names, **kw) -> tuple:
    """One `add_argument(*names, **kw)`."""
    return names, kw


def _concept_args(required: bool = True) -> tuple:
    return (A("--concepts", required=required, default=None, help=CONCEPTS_HELP),
            A("--concept", required=required, default=None))


_SCORES = (LM, *_concept_args(),
           A("--method", default="wagle", choices=SCORE_METHODS),
           A("--mu", type=float, default=1e-6, help="WAGLE's μ (retain-gradient scale)"),
           A("--params", default="all", help="all | mlp | attn | no_embed | comma-separated substrings"),
           A("--seed", type=int, default=0, help="for --method random"),
           A("--html", default=None),
           A("--top", type=int, default=10))
_VERIFY_COMMON = (LM, A("--concepts", required=True, help=CONCEPTS_HELP), A("--json", required=True),
                  A("--max-new-tokens", type=int, default=8),
                  A("--utility-tokens", type=int, default=4096, help="held-out tokens for perplexity/KL (0: skip)"))
_ERASURE = (A("--erase", action="append", help="concept(s) to erase (';'-separated or repeated)"),
            A("--guide", default=None, help="guide concept (default: the concept's redirect_to, else '')"),
            A("--preserve", action="append", help="concepts to preserve (';'-separated or repeated)"),
            *_concept_args(required=False),
            A("--steps", type=int, default=2, help="denoising steps of the generation check"),
            A("--json", default=None),
            A("--html", default=None),
            A("--clip", default=None, help="CLIPModel folder for CLIP score (default: $WORKBENCH_CLIP; "
              "skipped when none)"))

TABLE: dict[str, Cmd] = {
    "info": Cmd("layers, sites, parameter counts", "models:cmd_info", (
        LM, A("--sites", action="store_true", help="list every site name"))),
    "lens": Cmd("logit lens table for a prompt", "models:cmd_lens", (
        LM, A("prompt"),
        A("--answer", default=None, help="track this answer's first token"),
        A("-k", type=int, default=5),
        A("--chat", action="store_true", help="wrap the prompt in the chat template"),
        A("--json", default=None),
        A("--html", default=None))),
    "concepts": Cmd("concept files", dest="concepts_cmd", sub={
        "check": Cmd("baseline hit rates per concept; flags unknown ones", "edit:cmd_concepts_check", (
            LM, A("--concepts", required=True, help=CONCEPTS_HELP),
            A("--threshold", type=float, default=0.5),
            A("--json", default=None),
            A("--strict", action="store_true", help="exit 1 when a concept is not known")))}),
    "locate": Cmd("locate a concept: concept vectors, residual directions, causal tracing", "edit:cmd_locate", (
        LM, *_concept_args(),
        A("--json", required=True),
        A("--html", default=None),
        A("--kinds", default="concept_vectors,directions,tracing"),
        A("--trace-probes", type=int, default=2),
        A("--sae", action="append", default=None, metavar="DIR",
          help="SAE folder (`workbench sae train`): adds SAE-feature evidence (repeatable)"))),
    "edit": Cmd("fit an edit method and write a patch", "edit:cmd_edit", (
        A("method"), LM,
        A("--concepts", required=True, help=CONCEPTS_HELP),
        A("--concept", required=True, action="append",
          help="concept name; repeat it to erase several in one edit (methods with batch support, e.g. rocr)"),
        A("--out", required=True),
        A("--parent", default=None, metavar="PATCH",
          help="fit on top of this patch (applied first); the new patch names it as its parent"),
        A("--report", default=None, help="LocalizationReport JSON from `workbench locate`"),
        A("--set", action="append", metavar="KEY=VALUE", help="hyper-parameter (repeatable)"),
        A("--verify", action="store_true", help="run the verification battery (probes per form, perplexity, KL, "
          "trace, leakage); stored in the patch"),
        A("--utility-tokens", type=int, default=2048, help="held-out tokens for perplexity/KL with --verify"))),
    "patch": Cmd("inspect | apply | revert | export a patch", "patch:cmd_patch", (
        A("action", choices=["inspect", "apply", "revert", "export"]),
        A("patch", nargs="+", help="patch (apply / revert: several = a stack, in the order fitted)"),
        LM_OPTION,
        A("--out", default=None),
        A("--format", default="hf", choices=["hf", "peft"]),
        A("--unverified", action="store_true",
          help="revert: subtract even when the checkpoint cannot be checked against patched_fingerprints"))),
    "demo": Cmd("the README's main job: locate -> ROCR -> verify -> export", "patch:cmd_demo", (
        A("--model", default="smollm2-135m"),
        A("--concept", default="Japan"),
        A("--out", default="workbench-demo"))),
    "verify": Cmd("verify a patch: forget/retain/forms, utility, trace, leakage, relearning", "verify:cmd_verify", (
        *_VERIFY_COMMON,
        A("--concept", required=True),
        A("--patch", required=True),
        A("--no-relearn", action="store_true"),
        A("--no-parametric", action="store_true"),
        A("--no-leakage", action="store_true"),
        A("--no-fluency", action="store_true"))),
    "bench": Cmd("fit and verify methods x concepts into one report", "verify:cmd_bench", (
        *_VERIFY_COMMON,
        A("--concept", action="append", default=None, help="concept name (repeatable; default: all)"),
        A("--methods", required=True, help="comma-separated method names"),
        A("--html", default=None),
        A("--hyper", default=None, help='JSON {"method": {"key": value}} or a file holding it'),
        A("--relearn", action="store_true", help="also run the relearning attack (slow)"),
        A("--fluency", action="store_true", help="also measure generation fluency"),
        A("--split", default=None, choices=["dev", "test", "all"],
          help="only the concepts of this split (defaults are chosen on dev, results quoted on test)"),
        A("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
          help="run each (concept, method) pair as a Ray task, merged into the same --json report: on a "
               "local cluster without ADDRESS, else on the cluster at ADDRESS (auto, ray://head:10001); "
               "needs the [ray] extra: pip install 'concept-workbench[ray]'"),
        A("--ray-num-cpus", type=int, default=None, help="CPUs of the local cluster (default: all)"),
        A("--ray-cpus-per-task", type=float, default=1.0, help="CPUs each task requests (default 1)"),
        A("--ray-gpus-per-task", type=float, default=0.0, help="GPUs each task requests (default 0)"),
        A("--restart", action="store_true",
          help="rerun every pair (default: resume, keeping the finished pairs an existing --json holds)"))),
    "wagle": Cmd("weight attribution scores and masks (WAGLE)", dest="wagle_cmd", sub={
        "scores": Cmd("per-weight attribution; writes per-module / per-layer / per-unit aggregates",
                      "wagle:cmd_wagle", (*_SCORES, A("--json", required=True))),
        "mask": Cmd("top `keep` share of weights by score -> compact mask file (safetensors)", "wagle:cmd_wagle", (
            *_SCORES,
            A("--out", required=True, help="mask file (.safetensors)"),
            A("--keep", type=float, default=None, help="share of weights kept for updating (WAGLE's ratio: "
              "0.95 TOFU, 0.6 WMDP); default 0.05"),
            A("--sparsity", type=float, default=None, help="deprecated: share left out (= 1 - keep)"),
            A("--scope", default="global", choices=["global", "per_module"]),
            A("--json", default=None, help="per-module sparsity table"))),
        "inspect": Cmd("summarize a mask file", "wagle:cmd_wagle", (
            A("mask"), A("--top", type=int, default=15), A("--html", default=None)))}),
    "build-moe": Cmd("train the synthetic-knowledge MoE (Mixtral) and its dense twin (Llama)", "moe:cmd_build_moe", (
        A("--size", default="default", choices=["tiny", "default"]),
        A("--out", default=None, help="folder to write the build to (default: only the cache)"),
        A("--steps", type=int, default=None, help="override the recipe's training steps"),
        A("--seed", type=int, default=None),
        A("--force", action="store_true", help="rebuild even when cached"))),
    "world": Cmd("the synthetic knowledge world of a build-moe model", dest="world_command", sub={
        "concepts": Cmd("write a concept file for N entities the built model knows", "moe:cmd_world_concepts", (
            DEVICE,
            A("--entities", type=int, default=5),
            A("--out", required=True),
            A("--retain-entities", type=int, default=4),
            A("--min-acc", type=float, default=1.0, help="least completion accuracy of a chosen entity"),
            A("--seed", type=int, default=0)))}),
    "sae": Cmd("sparse autoencoders: train, inspect, find a concept's features", dest="sae_command", sub={
        "train": Cmd("train TopK SAEs (cache activations once, one SAE per hook x width)", "sae:cmd_sae_train", (
            LM,
            A("--hook", action="append", default=None, metavar="SITE", help="activation site, e.g. "
              "blocks.15.hook_resid_post (repeatable; default: mid-layer residual)"),
            A("--width", default=None, help="SAE width(s): 2048 or 1024,2048 (default 2048)"),
            A("--tokens", type=int, default=100_000, help="corpus tokens to cache and train on"),
            A("--k", type=int, default=32, help="TopK: active features per token"),
            A("--epochs", type=float, default=4.0),
            A("--lr", type=float, default=1e-3),
            A("--batch-size", type=int, default=256),
            A("--seed", type=int, default=0),
            A("--source", choices=["shakespeare", "kjv", "wordnet"], default="shakespeare",
              help="training corpus (kjv / wordnet: `make corpora`)"),
            A("--runner", choices=["cache", "sae-lens"], default="cache",
              help="cache: cached activations + sae-lens SAETrainer (several SAEs per forward); "
                   "sae-lens: sae-lens's LanguageModelSAETrainingRunner on the TransformerLens view"),
            A("--out", required=True, help="SAE folder (with several hooks/widths: parent folder)"))),
        "info": Cmd("describe an SAE folder or a pretrained sae-lens release", "sae:cmd_sae_info", (
            A("sae", help="SAE folder, or a sae-lens release with --sae-id"),
            A("--sae-id", default=None))),
        "features": Cmd("the concept's most selective SAE features (snippets, logit effects, causal)",
                        "sae:cmd_sae_features", (
            LM,
            A("--sae", required=True),
            A("--sae-id", default=None),
            *_concept_args(),
            A("--top", type=int, default=8),
            A("--no-causal", action="store_true"),
            A("--json", default=None),
            A("--html", default=None)))}),
    "dashboard": Cmd("start the Streamlit dashboard (headless, loopback by default)", "dashboard:cmd_dashboard", (
        A("--host", default="127.0.0.1", help="address to bind (default: loopback only)"),
        A("--port", type=int, default=8501),
        A("--model", default=None, help="model every new session starts with (default smollm2-135m)"),
        A("--browser", action="store_true", help="open a browser window (not headless)"))),
    "diffusion": Cmd("Stable Diffusion concept erasure: UCE, RECE, text-encoder SAE clamp",
                     dest="diffusion_command", sub={
        "info": Cmd("components, cross-attention layers, sites", "diffusion:cmd_info", (
            SD, A("--sites", action="store_true", help="list every site (weights with their HF names)"))),
        "edit": Cmd("fit uce / rece (weight patch) or sae-clamp (hook patch)", "diffusion:cmd_edit", (
            A("method", choices=["uce", "rece", "sae-clamp"]), SD, *_ERASURE,
            A("--out", required=True),
            A("--set", action="append", default=[], help="hyper-parameter key=value (JSON values)"),
            A("--verify", action="store_true"))),
        "verify": Cmd("verify a UCE/RECE patch: K/V alignment, drift, rank, recovery, generation",
                      "diffusion:cmd_verify", (SD, *_ERASURE, A("--patch", required=True))),
        "generate": Cmd("generate an image (optionally with a patch or an SAE clamp)", "diffusion:cmd_generate", (
            SD, A("prompt"),
            A("--patch", default=None, help="a uce/rece or sae-clamp patch"),
            A("--steps", type=int, default=2),
            A("--seed", type=int, default=0),
            A("--size", type=int, default=None),
            A("--out", required=True))),
        "export": Cmd("write the edited pipeline as a diffusers folder", "diffusion:cmd_export", (
            SD, A("--patch", required=True), A("--out", required=True))),
        "make-tiny": Cmd("write the tiny random-weight SD pipeline as a diffusers folder", "diffusion:cmd_make_tiny", (
            A("--out", required=True),
            A("--kind", default="tiny-sd", choices=["tiny-sd", "tiny-sd-minilm"]),
            A("--seed", type=int, default=0)))}),
}


def _add(parser: argparse.ArgumentParser, cmd: Cmd) -> None:
    for arg in cmd.args:
        if isinstance(arg, _Model):
            add_model_args(parser, kind=arg.kind, model=arg.model, dtype=arg.dtype)
        else:
            names, kw = arg
            parser.add_argument(*names, **kw)
    if cmd.run:
        parser.set_defaults(_run=cmd.run)
    if cmd.sub:
        sub = parser.add_subparsers(dest=cmd.dest, required=True)
        for name, child in cmd.sub.items():
            _add(sub.add_parser(name, help=child.help), child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Locate, edit and verify concepts in LMs.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, cmd in TABLE.items():
        _add(sub.add_parser(name, help=cmd.help), cmd)
    return parser
