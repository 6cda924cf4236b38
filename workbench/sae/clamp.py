"""Feature editing with an SAE, keeping its error term: x' = x + decode(f') - decode(f).

After "Interpret then Deactivate" (ItD, Tian et al. 2025): encode x, change only the selected
features f_S, and add the SAE's error term back, so whatever the SAE does not reconstruct passes
through untouched (with nothing changed, x' is x bit for bit). `mode="scale"` sets
f_S <- scale * f_S (0 = zero-ablation); `mode="clamp"` sets firing features to `value` (Farrell et al.
2024 clamp them to -c). `gate`: positions where no selected feature exceeds it are left alone;
`norm_limit`: positions whose norm exceeds it (the attention-sink first token) are left alone;
`where`: a bool mask [...] of the positions that may change at all (the diffusion clamp's per-prompt
gate). `error_term=False` is ItD's own form: edited positions are REPLACED by the modulated
reconstruction decode(f'). Positions left alone are x bit for bit in both forms.

Used by the sae-clamp edit (`workbench.edits.sae_clamp`), the text-encoder clamp of diffusion
models (`workbench.diffusion.sae`) and the causal check of SAE features (`workbench.locate.sae`),
so all of them change activations by the same math.
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["MODES", "edit_features"]

MODES = ("scale", "clamp")


def edit_features(sae, x: torch.Tensor, features: Sequence[int], mode: str = "scale", scale: float = 0.0,
                  value: float = 0.0, gate: float | None = None, norm_limit: float | None = None,
                  where: torch.Tensor | None = None, error_term: bool = True) -> torch.Tensor:
    """x [..., d_in] -> x + decode(f') - decode(f) (or decode(f') with error_term=False) for a
    sae_lens-style SAE (`encode`, `decode`, `W_enc`); unedited positions are returned unchanged."""
    if mode not in MODES:
        raise ValueError(f"sae-clamp mode={mode!r} must be 'scale' or 'clamp'")
    xf = x.to(sae.W_enc.dtype)
    f = sae.encode(xf)
    idx = torch.tensor([int(i) for i in features], dtype=torch.long, device=f.device)
    f_s = f.index_select(-1, idx)
    if mode == "scale":
        new_s = f_s * scale
    else:
        new_s = torch.where(f_s > 0, torch.full_like(f_s, value), f_s)
    keep = torch.ones(f.shape[:-1], dtype=torch.bool, device=f.device)
    if gate is not None:
        keep &= (f_s > gate).any(-1)
    if norm_limit is not None:
        keep &= xf.norm(dim=-1) <= norm_limit
    if where is not None:
        keep &= where.to(keep.device)
    new_s = torch.where(keep.unsqueeze(-1), new_s, f_s)
    f_new = f.index_copy(-1, idx, new_s)
    edited = sae.decode(f_new) if not error_term else xf + (sae.decode(f_new) - sae.decode(f))
    return torch.where(keep.unsqueeze(-1), edited, xf).to(x.dtype)
