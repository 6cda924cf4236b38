"""Real-image metrics, run only when a CLIP model is available: CLIP score (Hessel et al., 2021).

CLIPScore(image, text) = 100 · max(cos(E_img(image), E_txt(text)), 0). For an erasure we report, per
prompt, the score of the image against its own prompt before and after the edit, and against the
erased concept's name (how much of the concept the image still shows, as CLIP sees it).

The CLIP model comes from `clip=` or the `WORKBENCH_CLIP` environment variable: a local
transformers `CLIPModel` folder (or a hub id with a reachable hub / HF cache). None ships offline
with this project, so by default the metrics are skipped with a message that says so. Images are
resized (bicubic) and normalised with CLIP's mean/std in torch, so no torchvision is needed.
"""
from __future__ import annotations

import os

import numpy as np
import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_clip(source: str | None = None):
    """(CLIPModel, tokenizer) or raise ValueError saying why not."""
    source = source or os.environ.get("WORKBENCH_CLIP")
    if not source:
        raise ValueError("no CLIP model given (set WORKBENCH_CLIP to a local CLIPModel folder)")
    from transformers import CLIPModel
    try:
        model = CLIPModel.from_pretrained(source).eval()
    except Exception as exc:  # noqa: BLE001 - one line for the report
        raise ValueError(f"cannot load CLIP model {source!r}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    try:
        from transformers import CLIPTokenizer
        tok = CLIPTokenizer.from_pretrained(source)
    except Exception:  # noqa: BLE001 - fall back to the SD 1.x vocabulary rebuilt offline
        from workbench.diffusion.tokenizer import clip_tokenizer
        tok = clip_tokenizer(int(model.config.text_config.max_position_embeddings))
    return model, tok


@torch.no_grad()
def clip_embed_images(clip, images: list[np.ndarray]) -> torch.Tensor:
    """images: numpy [H, W, 3] in 0..1 -> unit image embeddings [n, d]."""
    size = int(clip.config.vision_config.image_size)
    x = torch.stack([torch.as_tensor(np.asarray(im), dtype=torch.float32).permute(2, 0, 1) for im in images])
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    x = (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
    e = clip.get_image_features(pixel_values=x)
    e = getattr(e, "pooler_output", e)
    return torch.nn.functional.normalize(e.float(), dim=-1)


@torch.no_grad()
def clip_embed_texts(clip, tok, texts: list[str]) -> torch.Tensor:
    n = int(clip.config.text_config.max_position_embeddings)
    enc = tok(texts, padding="max_length", max_length=n, truncation=True, return_tensors="pt")
    e = clip.get_text_features(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
    e = getattr(e, "pooler_output", e)
    return torch.nn.functional.normalize(e.float(), dim=-1)


def clip_scores(clip, tok, images: list[np.ndarray], texts: list[str]) -> list[float]:
    """CLIPScore of image i against text i."""
    im, tx = clip_embed_images(clip, images), clip_embed_texts(clip, tok, texts)
    return [float(100 * max(float((a * b).sum()), 0.0)) for a, b in zip(im, tx)]


def image_metrics(prompts: list[str], before: list[np.ndarray], after: list[np.ndarray], erased: list[str],
                  clip: str | None = None) -> dict:
    """CLIP scores before/after for each prompt, against the prompt and the erased concept; or skipped."""
    try:
        model, tok = load_clip(clip)
    except ValueError as exc:
        return {"skipped": True, "reason": f"{exc}; CLIP score is skipped (no CLIP image model or concept "
                "detector weights ship offline; the key/value and generation checks still ran)"}
    concept = ", ".join(erased)
    return {"skipped": False, "clip_model": clip or os.environ.get("WORKBENCH_CLIP"),
            "clip_score_prompt": {"before": clip_scores(model, tok, before, prompts),
                                  "after": clip_scores(model, tok, after, prompts)},
            "clip_score_concept": {"before": clip_scores(model, tok, before, [concept] * len(before)),
                                   "after": clip_scores(model, tok, after, [concept] * len(after))},
            "prompts": list(prompts)}
