"""`sae-clamp`: deactivate a concept's SAE features at inference time (a hook edit, no weights).

After "Interpret then Deactivate" (ItD, Tian et al. 2025): encode the hook's activation x with a
sparse autoencoder, change only the selected features f_S, and add the SAE's error term back, so
everything the SAE does not reconstruct passes through untouched:

    x' = decode(f') + (x - decode(f))  ==  x + (decode(f') - decode(f))

(computed in the second form, so with nothing changed x' is x bit for bit). `error_term=False`
is ItD's own form (NANSirun/Interpret-then-deactivate): edited positions are REPLACED by the
modulated reconstruction decode(f'), untouched positions stay x. ItD's strength is −8 (its
diffusion default, `workbench.diffusion.sae`); the LM default here stays −2, measured on
smollm2-135m L15 (README). `mode="scale"` sets
f_S <- scale * f_S (0 = zero-ablation, negative = negative scaling); `mode="clamp"` sets firing
features to a fixed value (Farrell et al. 2024 clamp them to -c: zeroing alone barely removes
knowledge). `gate` makes the SAE a zero-shot concept classifier: positions where no selected
feature exceeds the threshold are left alone. Positions whose norm is far beyond the SAE's
training distribution (the attention-sink first token, excluded from training) are left alone.

The patch records the SAE by content hash and path / release, the features, mode and scale;
applying it loads the SAE, checks the hash and installs the scoped hook.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from workbench.edits.base import Edit
from workbench.edits.hooks import HookEdit, register_hook_kind
from workbench.edits.registry import EditConfig, register
from workbench.sae.clamp import edit_features


@register_hook_kind
class SAEClampHook(HookEdit):
    """The hook: x -> x + decode(f') - decode(f) at `site` (see the module docstring)."""
    kind = "sae_clamp"

    def __init__(self, handle=None, features=(), mode: str = "scale", scale: float = 0.0, value: float = 0.0,
                 gate: float | None = None, norm_limit: float | None = None, guard: dict | None = None,
                 site: str | None = None, sae_source: dict | None = None, sae_sha256: str | None = None,
                 sae_name: str | None = None, error_term: bool = True):
        if mode not in ("scale", "clamp"):
            raise ValueError(f"sae-clamp mode={mode!r} must be 'scale' or 'clamp'")
        self._handle = handle
        self.site = site or handle.site
        self.sae_source = dict(sae_source or handle.source)
        self.sae_sha256 = sae_sha256 or handle.sha256
        self.sae_name = sae_name or handle.name
        self.features = [int(i) for i in features]
        self.mode, self.scale, self.value = mode, float(scale), float(value)
        if gate is not None and (isinstance(gate, bool) or not isinstance(gate, (int, float))):
            raise ValueError(f"sae-clamp gate must be a number or None, got {type(gate).__name__}")
        self.gate = None if gate is None else float(gate)
        self.norm_limit = None if norm_limit is None else float(norm_limit)
        self.guard = dict(guard or {})
        self.error_term = bool(error_term)

    # ------------------------------------------------------------------ the SAE
    @property
    def handle(self):
        """The SAE, loaded on first use from the recorded path / release; the content hash must match."""
        if self._handle is None:
            from workbench.sae.store import load_sae
            src = self.sae_source
            h = load_sae(src["release"], src["sae_id"]) if "release" in src else load_sae(src["path"])
            if h.sha256 != self.sae_sha256:
                raise ValueError(f"SAE at {src} has content hash {h.sha256[:12]}…, the edit was made with "
                                 f"{self.sae_sha256[:12]}… (a different SAE)")
            if h.site != self.site:
                raise ValueError(f"SAE {h.name} was trained at {h.site}, the edit hooks {self.site}")
            bad = [i for i in self.features if not 0 <= i < h.d_sae]
            if bad:
                raise ValueError(f"feature {bad[0]} is out of range for {h.name} (width {h.d_sae})")
            self._handle = h
        return self._handle

    def check_model(self, model) -> None:
        """Refuse before any forward: the SAE (hash, site, feature range) and its input width."""
        h = self.handle
        d_in = int(h.sae.cfg.d_in)
        with torch.no_grad():
            _, cache = model.run_with_cache(["a"], sites=[self.site], logits_to_keep=1)
        width = int(cache[self.site].shape[-1])
        if width != d_in:
            raise ValueError(f"SAE {h.name} reads {d_in}-wide activations, {self.site} is {width} wide")

    # ------------------------------------------------------------------ the edit
    def edited(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., d_in] -> x + decode(f') - decode(f); identical to x where nothing changes."""
        return edit_features(self.handle.sae, x, self.features, self.mode, self.scale, self.value, self.gate,
                             self.norm_limit, error_term=self.error_term)

    def install(self, model) -> list:
        if not hasattr(model, "_hook_points"):
            raise TypeError("sae-clamp needs a workbench HookedModel (load_model(...)), not a bare module")
        self.check_model(model)                           # load, hash-, site-, range- and width-check first
        with torch.no_grad():
            return model.add_hook(self.site, lambda act, _site: self.edited(act))

    def to_manifest(self) -> tuple[dict, dict[str, torch.Tensor]]:
        meta = {"sae": {"name": self.sae_name, "sha256": self.sae_sha256, **self.sae_source},
                "mode": self.mode, "scale": self.scale, "value": self.value, "gate": self.gate,
                "norm_limit": self.norm_limit, "features": [f"{self.sae_name}#{i}" for i in self.features],
                "error_term": self.error_term,
                "summary": f"{len(self.features)} feature(s) of {self.sae_name}, "
                           + (f"scale {self.scale:g}" if self.mode == "scale" else f"clamp to {self.value:g}")}
        return meta, {"features": torch.tensor(self.features, dtype=torch.int64)}

    @classmethod
    def from_manifest(cls, meta: dict, tensors: dict[str, torch.Tensor], label: str) -> "SAEClampHook":
        sae = meta.get("sae")
        if not isinstance(sae, dict) or not isinstance(sae.get("sha256"), str) or not (
                isinstance(sae.get("path"), str) or (isinstance(sae.get("release"), str) and isinstance(sae.get("sae_id"), str))):
            raise ValueError(f"{label}: key 'sae' must record sha256 and a path or release + sae_id")
        feats = tensors.get("features")
        if feats is None or feats.dim() != 1 or feats.dtype != torch.int64:
            raise ValueError(f"{label}: tensor 'features' must be 1-D int64")
        mode = meta.get("mode")
        if mode not in ("scale", "clamp"):
            raise ValueError(f"{label}: key 'mode' is {mode!r}, not 'scale' or 'clamp'")
        for key in ("scale", "value"):
            if not isinstance(meta.get(key), (int, float)):
                raise ValueError(f"{label}: key {key!r} must be a number")
        source = {"release": sae["release"], "sae_id": sae["sae_id"]} if "release" in sae else {"path": sae["path"]}
        return cls(None, feats.tolist(), mode, meta["scale"], meta["value"], meta.get("gate"), meta.get("norm_limit"),
                   site=meta["site"], sae_source=source, sae_sha256=sae["sha256"], sae_name=sae.get("name"),
                   error_term=bool(meta.get("error_term", True)))


# ---------------------------------------------------------------------------- fitting
@dataclass
class SAEClampConfig(EditConfig):
    sae: str | None = None             # SAE folder, or a sae-lens release (then sae_id)
    sae_id: str | None = None
    features: list[int] | None = None  # explicit feature indices; None = the concept's top features
    n_features: int = 8                # how many of the ranked features to deactivate
    min_score: float = 0.2             # ...with at least this selectivity
    mode: Literal["scale", "clamp"] = "scale"   # "scale" (f <- scale*f) | "clamp" (firing f <- value)
    scale: float = -2.0                # measured on smollm2-135m L15 (README): 0 / clamp -4 barely act
    value: float = -4.0
    gate: float | None = None          # only where a selected feature exceeds this activation
    norm_factor: float = 10.0          # leave positions with ||x|| > norm_factor * median alone (sinks)
    error_term: bool = True            # False: ItD's replacement of edited positions by decode(f')


def _guard(model, site: str) -> dict:
    """Fingerprints of the hooked layer's parameters: the patch refuses another base model."""
    from workbench.fingerprint import dtype_name, tensor_fingerprint
    layer = model.site(site).layer
    prefix = f"{model.family.layers}.{layer}." if layer is not None else None
    out = {}
    for name, p in model.hf.named_parameters():
        if prefix and name.startswith(prefix) and p.dim() == 2:
            out[name] = {"fingerprint": tensor_fingerprint(p), "shape": list(p.shape), "dtype": dtype_name(p.dtype)}
    return out


@torch.no_grad()
def _median_norm(model, site: str, texts: list[str]) -> float:
    _, cache = model.run_with_cache(texts, sites=[site], logits_to_keep=1)
    x, mask = cache[site][:, 1:], cache.mask[:, 1:].bool()
    return float(x[mask].norm(dim=-1).median())


def sae_clamp_edit(model, handle, features, concept_name: str | None = None, mode: str = "clamp",
                   scale: float = 0.0, value: float = -4.0, gate: float | None = None,
                   norm_factor: float | None = 10.0, norm_texts: list[str] | None = None,
                   error_term: bool = True) -> Edit:
    """An Edit carrying one SAEClampHook (usable directly, without a concept or a registry call)."""
    if handle.d_sae and any(not 0 <= int(i) < handle.d_sae for i in features):
        raise ValueError(f"feature indices must be in [0, {handle.d_sae}) for {handle.name}")
    limit = None
    if norm_factor:
        texts = norm_texts or ["The quick brown fox jumps over the lazy dog while the cat sleeps by the fire."]
        limit = norm_factor * _median_norm(model, handle.site, texts)
    hook = SAEClampHook(handle, features, mode, scale, value, gate, limit, _guard(model, handle.site),
                        error_term=error_term)
    return Edit(method="sae-clamp", model_id=model.model_id, concept=concept_name, hooks=[hook],
                hyper={"sae": handle.name, "features": [handle.feature(int(i)) for i in features]},
                provenance={"sae": {"name": handle.name, "sha256": handle.sha256, **handle.source}})


@register("sae-clamp", SAEClampConfig, "deactivate a concept's SAE features at inference (hook edit, ItD)")
def fit_sae_clamp(model, concept, report, cfg: SAEClampConfig) -> Edit:
    from workbench.locate.common import probe_texts
    from workbench.sae.store import load_sae
    if not cfg.sae:
        raise ValueError("sae-clamp needs sae=<SAE folder> (or sae=<release> sae_id=<id>); train one with "
                         "`workbench sae train`")
    handle = load_sae(cfg.sae, cfg.sae_id)
    ranked = None
    if cfg.features is not None:
        features = [int(i) for i in cfg.features]
        source = "given"
    else:
        features = []
        if report is not None:
            features = [int(e.site.rsplit("#", 1)[1]) for e in report.ranked("sae_feature")
                        if e.site.startswith(handle.name + "#") and e.score >= cfg.min_score][: cfg.n_features]
            source = "LocalizationReport"
        if not features:
            from workbench.locate.sae import rank_features
            ranked = rank_features(model, concept, handle)
            features = [f.index for f in ranked[: cfg.n_features] if f.score >= cfg.min_score]
            source = "feature selectivity (run now)"
        if not features:
            raise ValueError(f"concept {concept.name!r}: no feature of {handle.name} reaches selectivity "
                             f"{cfg.min_score} (lower min_score or pass features=[...])")
    prompts, _ = probe_texts(model, concept.forget + concept.retain)
    edit = sae_clamp_edit(model, handle, features, concept.name, cfg.mode, cfg.scale, cfg.value, cfg.gate,
                          cfg.norm_factor, prompts, error_term=cfg.error_term)
    edit.provenance["features_from"] = source
    if ranked is not None:
        edit.provenance["selectivity"] = {f.name: round(f.score, 4) for f in ranked[: len(features)]}
    return edit
