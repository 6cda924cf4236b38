"""Text-encoder SAE clamp for diffusion ("Interpret then Deactivate", ItD; Tian et al. 2025).

A TopK sparse autoencoder (Gao et al. 2024: z = TopK(ReLU(W_enc (x − b_dec) + b_enc)),
x̂ = W_dec z + b_dec, unit-norm decoder rows) is trained on the token activations of one
text-encoder layer over a prompt corpus. Concept features are the ones that fire on prompts
naming the concept and (almost) never on retained prompts. At inference a hook on that layer
encodes each prompt; if the concept features fire above a threshold calibrated on retained
prompts (the SAE as a zero-shot concept classifier), the activation is modulated. Defaults follow
the reference (NANSirun/Interpret-then-deactivate, `generate_images.py`
`strength_with_feature_text_batch`): strength s = −8 on the selected features at every token but
BOS, and the gated prompt's activation is REPLACED by the SAE reconstruction decode(z')
(`error_term=False`); `error_term=True` keeps the reconstruction error instead,

    x' = decode(z') + (x − decode(z)) = x + Σ_{f ∈ S} (s − 1) z_f d_f,

so nothing but the selected features changes. The site is the output of text-encoder layer 8 of
12 (`text_model.encoder.layers.8`), i.e. relative depth 2/3 on other encoders, and the SAE is
trained on a general prompt corpus (`sae_corpus="general"`: SUBJECTS × TEMPLATES, none naming an
erased concept); the concept's prompts only select features, which keeps the zero-shot claim.
(The reference gates by the MSE of the modulated reconstruction against the activation; here the
gate is the selected features' activation, calibrated on retained prompts.) Prompts whose gate
stays closed pass through bit-exactly.
This is a hook edit, not a weight edit: it saves as `sae.safetensors` + `clamp.json`.
"""
from __future__ import annotations

import hashlib
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from workbench.diffusion.prompts import (HELD_OUT_TEMPLATES, SUBJECTS, TEMPLATES,  # noqa: F401 (re-exported)
                                          general_prompts, prompts_for)
from workbench.edits.hooks import HookEdit, register_hook_kind
from workbench.errors import read_json_file
from workbench.paths import atomic_path, write_json


# ---------------------------------------------------------------------------------- the SAE
class TopKSAE(nn.Module):
    """TopK SAE over d_in-dimensional activations. Shapes: x [..., d_in] -> z [..., width]."""

    def __init__(self, d_in: int, width: int, k: int, seed: int = 0):
        super().__init__()
        if not 0 < k <= width:
            raise ValueError(f"k={k} must be in 1..width={width}")
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(width, d_in, generator=g)
        W = W / W.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W.clone())
        self.W_enc = nn.Parameter(W.clone())
        self.b_enc = nn.Parameter(torch.zeros(width))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.d_in, self.width, self.k = d_in, width, k

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu((x.float() - self.b_dec) @ self.W_enc.T + self.b_enc)
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec

    def forward(self, x):
        return self.decode(self.encode(x))

    def config(self) -> dict:
        return {"d_in": self.d_in, "width": self.width, "k": self.k}

    def content_hash(self) -> str:
        h = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode())
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            h.update(getattr(self, name).detach().cpu().contiguous().float().numpy().tobytes())
        return h.hexdigest()


def save_sae(sae: TopKSAE, path: str | Path, extra: dict | None = None) -> Path:
    path = Path(path)
    meta = {"config": json.dumps(sae.config()), "extra": json.dumps(extra or {})}
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in sae.state_dict().items()}, str(tmp), metadata=meta)
    return path


def load_sae(path: str | Path) -> tuple[TopKSAE, dict]:
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such SAE file")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: not a workbench TopK SAE (no config in the safetensors metadata)")
    cfg = json.loads(meta["config"])
    sae = TopKSAE(int(cfg["d_in"]), int(cfg["width"]), int(cfg["k"]))
    sae.load_state_dict(load_file(str(path)))
    sae.requires_grad_(False)
    return sae, json.loads(meta.get("extra", "{}"))


# ---------------------------------------------------------------------------------- data + training
@torch.no_grad()
def token_activations(model, prompts: list[str], site: str, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """([n_prompts, T, d] activations at `site`, [n_prompts, T] bool mask of the content tokens + EOS)."""
    from workbench.diffusion.sites import run_with_cache
    outs = []
    for i in range(0, len(prompts), batch):
        outs.append(run_with_cache(model, prompts[i:i + batch], [site])[site])
    acts = torch.cat(outs)
    mask = model.tokenize(prompts)["attention_mask"].bool().cpu()   # content tokens + EOS
    mask[:, 0] = False                                  # BOS: identical for every prompt
    return acts, mask


def train_sae(acts: torch.Tensor, width: int = 256, k: int = 8, steps: int = 600, lr: float = 2e-3,
              batch: int = 1024, seed: int = 0, progress: bool = False) -> tuple[TopKSAE, dict]:
    """Train on rows acts [N, d] (Adam, unit-norm decoder rows). Returns the SAE and FVU/L0/dead stats."""
    from tqdm.auto import tqdm
    torch.manual_seed(seed)
    acts = acts.float()
    sae = TopKSAE(acts.shape[1], width, k, seed)
    with torch.no_grad():
        sae.b_dec.copy_(acts.mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    fired = torch.zeros(width, dtype=torch.bool)
    for _ in tqdm(range(steps), desc="SAE", disable=not progress):
        x = acts[torch.randint(0, acts.shape[0], (min(batch, acts.shape[0]),), generator=g)]
        z = sae.encode(x)
        loss = ((sae.decode(z) - x) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            sae.W_dec.data /= sae.W_dec.data.norm(dim=1, keepdim=True).clamp_min(1e-8)
            fired |= (z > 0).any(0)
    sae.requires_grad_(False)
    return sae, sae_stats(sae, acts) | {"dead_during_training": float((~fired).float().mean())}


@torch.no_grad()
def sae_stats(sae: TopKSAE, acts: torch.Tensor) -> dict:
    z = sae.encode(acts)
    err = ((sae.decode(z) - acts) ** 2).sum()
    var = ((acts - acts.mean(0)) ** 2).sum()
    return {"fvu": float(err / var), "l0": float((z > 0).float().sum(-1).mean()),
            "dead_fraction": float(((z > 0).sum(0) == 0).float().mean()), "rows": int(acts.shape[0])}


# ---------------------------------------------------------------------------------- features + gate
@torch.no_grad()
def prompt_feature_max(sae: TopKSAE, acts: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[n_prompts, width]: each feature's max activation over a prompt's tokens (BOS excluded)."""
    return (sae.encode(acts) * mask[..., None]).amax(1)


@torch.no_grad()
def select_features(sae: TopKSAE, model, site: str, concept_prompts: list[str], retain_prompts: list[str],
                    n_features: int = 8, max_retain_freq: float = 0.05, min_concept_freq: float = 0.5,
                    acts: tuple | None = None) -> tuple[list[int], dict]:
    """Features that fire on at least `min_concept_freq` of the concept's prompts and on at most
    `max_retain_freq` of the retained ones, ranked by freq_c · mean_c − mean_r (per-prompt max activation).
    `acts`: precomputed ((acts_c, mask_c), (acts_r, mask_r)) from `token_activations`."""
    if acts is None:
        acts = (token_activations(model, concept_prompts, site), token_activations(model, retain_prompts, site))
    (ac, mc), (ar, mr) = acts
    zc, zr = prompt_feature_max(sae, ac, mc), prompt_feature_max(sae, ar, mr)
    fc, fr = (zc > 0).float().mean(0), (zr > 0).float().mean(0)
    score = fc * zc.mean(0) - zr.mean(0)
    score[fr > max_retain_freq] = -math.inf
    order = [int(i) for i in score.argsort(descending=True) if score[i] > 0 and fc[i] >= min_concept_freq]
    chosen = order[:n_features]
    return chosen, {"score": [float(score[i]) for i in chosen], "concept_freq": [float(fc[i]) for i in chosen],
                    "retain_freq": [float(fr[i]) for i in chosen]}


@dataclass
class SAEClamp:
    """A gated, error-preserving feature clamp at one text-encoder site (a hook edit)."""
    sae: TopKSAE
    site: str
    features: list[int]
    scale: float = 0.0
    threshold: float = 0.0
    gate: bool = True
    model_id: str = ""
    concept: str | None = None
    info: dict = field(default_factory=dict)
    error_term: bool = False        # False: gated rows become decode(z') (ItD); True: x + decode(z') − decode(z)
    method: str = "sae-clamp"
    _handle: object = field(default=None, repr=False)
    last_gate: torch.Tensor | None = field(default=None, repr=False)

    @torch.no_grad()
    def gate_scores(self, x: torch.Tensor) -> torch.Tensor:
        """[B]: max over tokens (BOS excluded) of the summed concept-feature activation."""
        if not self.features:
            return torch.zeros(x.shape[0])
        z = self.sae.encode(x)[..., self.features]
        return z[:, 1:].sum(-1).amax(-1)

    @torch.no_grad()
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, d] -> clamped x; rows whose gate is closed are returned unchanged (same values)."""
        if not self.features:
            self.last_gate = torch.zeros(x.shape[0], dtype=torch.bool)
            return x
        z = self.sae.encode(x)[..., self.features]                       # [B, T, |S|]
        fire = self.gate_scores(x) > self.threshold if self.gate else torch.ones(x.shape[0], dtype=torch.bool)
        self.last_gate = fire
        if not fire.any():
            return x
        if self.error_term:
            delta = ((self.scale - 1.0) * z) @ self.sae.W_dec[self.features]   # [B, T, d]
            new = (x.float() + delta).to(x.dtype)
        else:                                                    # the reference: the modulated reconstruction
            full = self.sae.encode(x)
            idx = torch.tensor(self.features, dtype=torch.long, device=full.device)
            scaled = full[:, 1:].index_select(-1, idx) * self.scale
            full[:, 1:] = full[:, 1:].index_copy(-1, idx, scaled)
            new = self.sae.decode(full).to(x.dtype)
        return torch.where(fire.to(x.device)[:, None, None], new, x)

    @contextmanager
    def applied(self, model):
        from workbench.diffusion.sites import hooks
        self.sae.to(model.device)
        with hooks(model, {self.site: self.transform}):
            yield model

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_path(path, is_dir=True) as tmp:
            save_sae(self.sae, tmp / "sae.safetensors")
            write_json(tmp / "clamp.json", {
                "kind": "hook", "method": self.method, "site": self.site, "features": self.features,
                "scale": self.scale, "threshold": self.threshold, "gate": self.gate, "model": self.model_id,
                "concept": self.concept, "sae_sha256": self.sae.content_hash(), "sae_config": self.sae.config(),
                "error_term": self.error_term, "info": self.info})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SAEClamp":
        path = Path(path)
        meta = read_json_file(path / "clamp.json", "no clamp.json: not an SAE clamp")
        sae, _ = load_sae(path / "sae.safetensors")
        if sae.content_hash() != meta.get("sae_sha256"):
            raise ValueError(f"{path}: sae.safetensors does not match the hash in clamp.json")
        return cls(sae=sae, site=meta["site"], features=[int(i) for i in meta["features"]],
                   scale=float(meta["scale"]), threshold=float(meta["threshold"]), gate=bool(meta["gate"]),
                   model_id=meta.get("model", ""), concept=meta.get("concept"), info=meta.get("info", {}),
                   error_term=bool(meta.get("error_term", True)))          # older files: the error-keeping form


@register_hook_kind
class TextEncoderClampHook(HookEdit):
    """The SAE clamp as a hook edit of the Edit protocol, so it saves as an ordinary patch
    (manifest + tensors.safetensors: the SAE weights, features, scale, threshold) and applies /
    reverts through `Edit.apply` / `apply_patch`. Its guard fingerprints the text-encoder tensors
    upstream of the site (the clamp was fitted for exactly those)."""
    kind = "diffusion_sae_clamp"

    def __init__(self, clamp: SAEClamp, guard: dict | None = None):
        self.clamp = clamp
        self.site = clamp.site
        self.guard = dict(guard or {})

    def install(self, model) -> list:
        from workbench.diffusion.sites import add_hook
        self.clamp.sae.to(model.device)
        return [add_hook(model, self.site, self.clamp.transform)]

    def to_manifest(self) -> tuple[dict, dict[str, torch.Tensor]]:
        c = self.clamp
        meta = {"features": c.features, "scale": c.scale, "threshold": c.threshold, "gate": c.gate,
                "error_term": c.error_term, "sae_config": c.sae.config(), "sae_sha256": c.sae.content_hash(), "concept": c.concept,
                "model": c.model_id, "guard": self.guard}
        return meta, {k: v.detach().cpu().contiguous() for k, v in c.sae.state_dict().items()}

    @classmethod
    def from_manifest(cls, meta: dict, tensors: dict[str, torch.Tensor], label: str) -> "TextEncoderClampHook":
        try:
            cfg = meta["sae_config"]
            sae = TopKSAE(int(cfg["d_in"]), int(cfg["width"]), int(cfg["k"]))
            sae.load_state_dict({k: tensors[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec")})
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{label}: not a valid diffusion SAE clamp ({type(exc).__name__}: {exc})") from None
        sae.requires_grad_(False)
        if sae.content_hash() != meta.get("sae_sha256"):
            raise ValueError(f"{label}: SAE weights do not match their recorded sha256")
        clamp = SAEClamp(sae=sae, site=meta["site"], features=[int(i) for i in meta["features"]],
                         scale=float(meta["scale"]), threshold=float(meta["threshold"]), gate=bool(meta["gate"]),
                         model_id=meta.get("model", ""), concept=meta.get("concept"),
                         error_term=bool(meta.get("error_term", True)))
        return cls(clamp, meta.get("guard"))


def upstream_guard(model, site: str) -> dict:
    """Fingerprints of the text-encoder tensors that feed `site` (embeddings + layers up to it)."""
    import re

    from workbench.fingerprint import dtype_name, tensor_fingerprint
    m = re.match(r"^text\.blocks\.(\d+)\.", site)
    last = int(m.group(1)) if m else 10 ** 6
    guard = {}
    for name, p in model.hf.named_parameters():
        if not name.startswith("text_encoder."):
            continue
        layer = re.search(r"\.layers?\.(\d+)\.", name)
        if layer and int(layer.group(1)) > last:
            continue
        if not layer and "embeddings" not in name:
            continue
        guard[name] = {"fingerprint": tensor_fingerprint(p), "shape": list(p.shape), "dtype": dtype_name(p.dtype)}
    return guard


def clamp_edit(model, clamp: SAEClamp):
    """An `Edit` (method "sae-clamp", no weight deltas, one hook) that saves as a standard patch."""
    from workbench.edits.base import Edit
    return Edit(method="sae-clamp", model_id=model.model_id, hooks=[TextEncoderClampHook(clamp, upstream_guard(
        model, clamp.site))], concept=clamp.concept,
        hyper={"site": clamp.site, "features": clamp.features, "scale": clamp.scale, "threshold": clamp.threshold,
               "gate": clamp.gate, "error_term": clamp.error_term, **clamp.sae.config()},
        provenance={k: v for k, v in clamp.info.items() if k != "selection"} | {"selection": clamp.info.get("selection")})


ITD_LAYER, ITD_DEPTH = 8, 12          # reference: the output of text_model.encoder.layers.8 of 12
SAE_CORPORA = ("general", "concept+general")


def default_site(model) -> str:
    """The reference's depth: output of layer 8 of a 12-layer text encoder, round(2n/3) of n."""
    n = int(model.text_encoder.config.num_hidden_layers)
    return f"text.blocks.{min(n - 1, round(ITD_LAYER / ITD_DEPTH * n))}.hook_resid_post"


def fit_sae_clamp(model, erase: list[str], preserve: list[str] | None = None, site: str | None = None,
                  width: int = 256, k: int = 8, steps: int = 600, n_features: int = 8, scale: float = -8.0,
                  gate: bool = True, margin: float = 0.5, seed: int = 0, sae: TopKSAE | None = None,
                  progress: bool = False, error_term: bool = False, sae_corpus: str = "general") -> SAEClamp:
    """Train (or reuse) an SAE at `site`, select the concept's features, calibrate the gate.

    sae_corpus: "general" (ItD: the SAE never sees the erased concept's prompts) or
    "concept+general" (the former behaviour: concept and retained prompts)."""
    if sae_corpus not in SAE_CORPORA:
        raise ValueError(f"sae_corpus={sae_corpus!r} is not one of {SAE_CORPORA}")
    site = site or default_site(model)
    others = [s for s in (list(preserve or []) + list(SUBJECTS)) if s not in erase]
    concept_train = prompts_for(erase)
    retain_train = prompts_for(others) + [""]
    ac, mc = token_activations(model, concept_train, site)           # one text-encoder pass for everything
    ar, mr = token_activations(model, retain_train, site)
    stats = {}
    if sae is None:
        if sae_corpus == "general":
            general = general_prompts(exclude=erase)
            ag, mg = token_activations(model, general, site)
            rows, n_sae = ag[mg], len(general)
        else:
            rows, n_sae = torch.cat([ac[mc], ar[mr]]), len(concept_train) + len(retain_train)
        sae, stats = train_sae(rows, width=width, k=k, steps=steps, seed=seed, progress=progress)
        stats = {**stats, "corpus": sae_corpus, "corpus_prompts": n_sae}
    feats, sel = select_features(sae, model, site, concept_train, retain_train, n_features,
                                 acts=((ac, mc), (ar, mr)))
    clamp = SAEClamp(sae=sae, site=site, features=feats, scale=scale, gate=gate, model_id=model.model_id,
                     concept=", ".join(erase), error_term=error_term)
    if feats:                       # gate threshold: `margin` of the way from the retained max to the concept min
        hi_r, lo_c = float(clamp.gate_scores(ar).max()), float(clamp.gate_scores(ac).min())
        clamp.threshold = hi_r + margin * (lo_c - hi_r) if lo_c > hi_r else hi_r
        stats = {**stats, "gate_retain_max": hi_r, "gate_concept_min": lo_c}
    clamp.info = {"sae": stats, "selection": sel, "erase": list(erase), "n_train_prompts": len(concept_train) + len(retain_train)}
    return clamp


@torch.no_grad()
def gate_rates(clamp: SAEClamp, model, concept_prompts: list[str], other_prompts: list[str]) -> dict:
    """True-positive rate on concept prompts, false-positive rate on unrelated ones."""
    ac, _ = token_activations(model, concept_prompts, clamp.site)
    ao, _ = token_activations(model, other_prompts, clamp.site)
    tp = clamp.gate_scores(ac) > clamp.threshold
    fp = clamp.gate_scores(ao) > clamp.threshold
    return {"tpr": float(tp.float().mean()), "fpr": float(fp.float().mean()),
            "n_concept": len(concept_prompts), "n_other": len(other_prompts)}


def clamp_config(clamp: SAEClamp) -> dict:
    return {"site": clamp.site, "features": clamp.features, "scale": clamp.scale, "threshold": clamp.threshold,
            "gate": clamp.gate, "error_term": clamp.error_term}


__all__ = ["TopKSAE", "SAEClamp", "fit_sae_clamp", "gate_rates", "train_sae", "select_features",
           "save_sae", "load_sae", "prompts_for", "TEMPLATES", "HELD_OUT_TEMPLATES", "SUBJECTS"]
