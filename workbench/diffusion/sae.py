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
The SAE is the workbench's one SAE stack (`workbench.sae`): a sae-lens TopK SAE, trained by
`workbench.sae.train.fit_on_activations` (sae-lens's SAETrainer, TopK + AuxK), stored in the sae-lens
folder format by `workbench.sae.store.save_sae`, hashed by `weights_sha256`, and edited by
`workbench.sae.clamp.edit_features`, as on language models. Only the data (text-encoder token
activations) and the gate (one decision per prompt: the UNet reads every token) are diffusion's own.
This is a hook edit, not a weight edit: it saves as an SAE folder + `clamp.json`, or as a patch.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from workbench.diffusion.prompts import (HELD_OUT_TEMPLATES, SUBJECTS, TEMPLATES,  # noqa: F401 (re-exported)
                                          general_prompts, prompts_for)
from workbench.edits.hooks import HookEdit, register_hook_kind
from workbench.errors import read_json_file
from workbench.paths import atomic_path, write_json
from workbench.sae.clamp import edit_features
from workbench.sae.store import SAEStoreError, load_sae, save_sae, topk_sae, weights_sha256


def sae_config(sae) -> dict:
    """{d_in, width, k} of a sae-lens TopK SAE (what a patch records to rebuild it)."""
    return {"d_in": int(sae.cfg.d_in), "width": int(sae.cfg.d_sae), "k": int(sae.cfg.k)}


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
              batch: int = 1024, seed: int = 0, progress: bool = False, site: str = "text",
              model_id: str = "") -> tuple[object, dict]:
    """The shared trainer on rows acts [N, d]: `steps` mini-batches of `batch` rows (fewer rows: all).
    Returns the sae-lens TopK SAE and its FVU / L0 / dead fraction on the training rows."""
    from workbench.sae.train import SAETrainConfig, evaluate, fit_on_activations
    n = int(acts.shape[0])
    bs = min(batch, n)
    cfg = SAETrainConfig(width=width, k=k, epochs=steps * bs / n, batch_size=bs, lr=lr, seed=seed)
    sae = fit_on_activations(acts.float(), cfg, site, model_id, progress=progress).requires_grad_(False).eval()
    return sae, {**evaluate(sae, acts.float()), "rows": n, "steps": steps}


# ---------------------------------------------------------------------------------- features + gate
@torch.no_grad()
def prompt_feature_max(sae, acts: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[n_prompts, width]: each feature's max activation over a prompt's tokens (BOS excluded)."""
    return (sae.encode(acts.float()) * mask[..., None]).amax(1)


@torch.no_grad()
def select_features(sae, model, site: str, concept_prompts: list[str], retain_prompts: list[str],
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
    """A gated feature clamp at one text-encoder site (a hook edit); `sae`: a sae-lens TopK SAE."""
    sae: object
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
        z = self.sae.encode(x.float())[..., self.features]
        return z[:, 1:].sum(-1).amax(-1)

    @torch.no_grad()
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, d] -> clamped x; rows whose gate is closed are returned unchanged (same values)."""
        if not self.features:
            self.last_gate = torch.zeros(x.shape[0], dtype=torch.bool)
            return x
        fire = self.gate_scores(x) > self.threshold if self.gate else torch.ones(x.shape[0], dtype=torch.bool)
        self.last_gate = fire
        if not fire.any():
            return x
        where = fire.to(x.device)[:, None].expand(x.shape[:2]).clone()
        where[:, 0] = False                                       # BOS: identical for every prompt
        new = edit_features(self.sae, x, self.features, "scale", self.scale, where=where, error_term=self.error_term)
        if not self.error_term:               # the reference decodes the whole gated prompt, BOS included
            bos = self.sae.decode(self.sae.encode(x[:, :1].float())).to(x.dtype)
            new[:, :1] = torch.where(fire.to(x.device)[:, None, None], bos, x[:, :1])
        return new

    @contextmanager
    def applied(self, model):
        self.sae.to(model.device)
        with model.hooks([(self.site, lambda x, _site: self.transform(x))]):
            yield model

    def save(self, path: str | Path) -> Path:
        """A folder: `sae/` (the sae-lens SAE folder of `workbench.sae.store`) + `clamp.json`."""
        path = Path(path)
        with atomic_path(path, is_dir=True) as tmp:
            save_sae(self.sae, tmp / "sae", f"{self.model_id}/{self.site}/topk-{self.sae.cfg.d_sae}", self.site,
                     self.model_id, metrics=self.info.get("sae"))
            write_json(tmp / "clamp.json", {
                "kind": "hook", "method": self.method, "site": self.site, "features": self.features,
                "scale": self.scale, "threshold": self.threshold, "gate": self.gate, "model": self.model_id,
                "concept": self.concept, "sae_sha256": weights_sha256(self.sae), "sae_config": sae_config(self.sae),
                "error_term": self.error_term, "info": self.info})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SAEClamp":
        path = Path(path)
        meta = read_json_file(path / "clamp.json", "no clamp.json: not an SAE clamp")
        if (path / "sae.safetensors").is_file() and not (path / "sae").is_dir():
            raise SAEStoreError(f"{path}: written by an older workbench (its own TopK format, sae.safetensors); "
                                "fit the clamp again")
        handle = load_sae(path / "sae")
        if handle.sha256 != meta.get("sae_sha256"):
            raise SAEStoreError(f"{path}: the SAE in sae/ does not match the hash in clamp.json")
        return cls(sae=handle.sae, site=meta["site"], features=[int(i) for i in meta["features"]],
                   scale=float(meta["scale"]), threshold=float(meta["threshold"]), gate=bool(meta["gate"]),
                   model_id=meta.get("model", ""), concept=meta.get("concept"), info=meta.get("info", {}),
                   error_term=bool(meta.get("error_term", False)))


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
        from workbench.diffusion.sites import run_with_cache
        width = int(run_with_cache(model, [""], [self.site])[self.site].shape[-1])   # before any real forward
        if width != int(self.clamp.sae.cfg.d_in):
            raise ValueError(f"the SAE reads {self.clamp.sae.cfg.d_in}-wide activations, {self.site} is {width} wide")
        bad = [i for i in self.clamp.features if not 0 <= i < int(self.clamp.sae.cfg.d_sae)]
        if bad:
            raise ValueError(f"feature {bad[0]} is out of range for an SAE of width {self.clamp.sae.cfg.d_sae}")
        self.clamp.sae.to(model.device)
        return model.add_hook(self.site, lambda x, _site: self.clamp.transform(x))

    def to_manifest(self) -> tuple[dict, dict[str, torch.Tensor]]:
        c = self.clamp
        meta = {"features": c.features, "scale": c.scale, "threshold": c.threshold, "gate": c.gate,
                "error_term": c.error_term, "sae_config": sae_config(c.sae), "sae_sha256": weights_sha256(c.sae),
                "concept": c.concept, "model": c.model_id, "guard": self.guard}
        return meta, {k: v.detach().cpu().contiguous() for k, v in c.sae.state_dict().items()}

    @classmethod
    def from_manifest(cls, meta: dict, tensors: dict[str, torch.Tensor], label: str) -> "TextEncoderClampHook":
        try:
            cfg = meta["sae_config"]
            d_in, width = cfg["d_in"], cfg["width"]
            want = {"W_enc": (d_in, width), "b_enc": (width,), "W_dec": (width, d_in), "b_dec": (d_in,)}
            for name, shape in want.items():          # the tensors bound the sizes: nothing is allocated before
                if tuple(tensors[name].shape) != shape:
                    raise ValueError(f"tensor {name} is {list(tensors[name].shape)}, sae_config says {list(shape)}")
            sae = topk_sae(d_in, width, cfg["k"], meta["site"], {k: tensors[k] for k in want})
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise ValueError(f"{label}: not a valid diffusion SAE clamp ({type(exc).__name__}: {exc})") from None
        if weights_sha256(sae) != meta.get("sae_sha256"):
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
               "gate": clamp.gate, "error_term": clamp.error_term, **sae_config(clamp.sae)},
        provenance={k: v for k, v in clamp.info.items() if k != "selection"} | {"selection": clamp.info.get("selection")})


ITD_LAYER, ITD_DEPTH = 8, 12          # reference: the output of text_model.encoder.layers.8 of 12
SAE_CORPORA = ("general", "concept+general")


def default_site(model) -> str:
    """The reference's depth: output of layer 8 of a 12-layer text encoder, round(2n/3) of n."""
    n = int(model.text_encoder.config.num_hidden_layers)
    return f"text.blocks.{min(n - 1, round(ITD_LAYER / ITD_DEPTH * n))}.hook_resid_post"


def fit_sae_clamp(model, erase: list[str], preserve: list[str] | None = None, site: str | None = None,
                  width: int = 256, k: int = 8, steps: int = 600, n_features: int = 8, scale: float = -8.0,
                  gate: bool = True, margin: float = 0.5, seed: int = 0, sae=None,
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
        sae, stats = train_sae(rows, width=width, k=k, steps=steps, seed=seed, progress=progress, site=site,
                               model_id=model.model_id)
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


__all__ = ["SAEClamp", "fit_sae_clamp", "gate_rates", "train_sae", "select_features", "sae_config",
           "prompts_for", "TEMPLATES", "HELD_OUT_TEMPLATES", "SUBJECTS"]
