"""Training TopK sparse autoencoders on a model's activations (sae-lens SAEs, one format).

TopK SAE (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): f = TopK(W_enc (x -
b_dec) + b_enc), x_hat = W_dec f + b_dec, trained on ||x - x_hat||^2 plus the AuxK loss that
revives dead latents. Two paths produce the same sae-lens inference folder:

* `train_from_cache` (default; the CLI's `--runner cache`): one forward pass caches activations
  (workbench.sae.store), then sae-lens's `SAETrainer` trains one SAE per width from the cache
  (the model forward dominates the cost, so several widths/layers are cheap).
* `train_with_runner` (`--runner sae-lens`): sae-lens's `LanguageModelSAETrainingRunner` with
  `override_model` = the TransformerLens view of the model (workbench.models.backends, no weight
  processing) and `override_dataset` = an in-memory `datasets.Dataset` of token chunks: no hub.

Both exclude the first position of every chunk (`seqpos_slice=(1, None)`). Reported metrics, on
held-out activations (first position excluded): FVU = sum ||x - x_hat||^2 / sum ||x - mean x||^2,
L0 = mean active features per token, dead fraction = share of features that never fire.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from workbench.errors import check_known_fields
from workbench.models.identity import model_content_id
from workbench.sae import store


@dataclass
class SAETrainConfig:
    """Hyper-parameters of one TopK SAE (and of the activation cache it trains from)."""
    width: int = 2048
    k: int = 32
    tokens: int = 100_000            # corpus tokens to cache (first positions excluded)
    epochs: float = 4.0              # passes over the cached tokens
    batch_size: int = 256
    lr: float = 1e-3
    seq_len: int = 128
    source: str = "shakespeare"      # or a mix, e.g. CORPUS_MIX (WordNet glosses + KJV + Shakespeare)
    heldout_tokens: int = 16_384
    aux_loss_coefficient: float = 1.0
    seed: int = 0

    def __post_init__(self):
        from workbench.errors import HyperParameterError
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise HyperParameterError(f"SAE training option {f.name}={v!r} is not a finite number")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SAETrainConfig":
        check_known_fields(cls, d, "SAE training option(s)")
        return cls(**d)


CORPUS_MIX = "wordnet+kjv+shakespeare"   # the broader mix of issue 19 (needs `make corpora`)


def default_site(model) -> str:
    """One mid-layer residual stream: blocks.{n_layers // 2}.hook_resid_post."""
    return f"blocks.{model.n_layers // 2}.hook_resid_post"


def sae_name(model_id: str, site: str, width: int) -> str:
    return f"{model_id}/{site}/topk-{width}"


def _training_sae(d_in: int, cfg: SAETrainConfig, site: str, model_id: str):
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    torch.manual_seed(cfg.seed)
    sae_cfg = TopKTrainingSAEConfig(d_in=d_in, d_sae=cfg.width, k=cfg.k, dtype="float32", device="cpu",
                                    apply_b_dec_to_input=True, normalize_activations="none",
                                    aux_loss_coefficient=cfg.aux_loss_coefficient,
                                    metadata=SAEMetadata(hook_name=site, model_name=model_id,
                                                         seqpos_slice=(1, None), context_size=cfg.seq_len))
    return TopKTrainingSAE(sae_cfg)


@torch.no_grad()
def evaluate(sae, acts: torch.Tensor, batch_size: int = 4096) -> dict[str, float]:
    """FVU, L0, dead fraction (features never active on `acts` [n, d_in]), MSE, n tokens."""
    sse, sst, l0, fired, n = 0.0, 0.0, 0.0, None, acts.shape[0]
    mean = acts.mean(0)
    for i in range(0, n, batch_size):
        x = acts[i:i + batch_size].float()
        f = sae.encode(x)
        x_hat = sae.decode(f)
        sse += float(((x - x_hat) ** 2).sum())
        sst += float(((x - mean) ** 2).sum())
        active = f > 0
        l0 += float(active.sum())
        fired = active.any(0) if fired is None else fired | active.any(0)
    return {"fvu": sse / max(sst, 1e-12), "l0": l0 / n, "dead_fraction": 1.0 - float(fired.float().mean()),
            "mse": sse / (n * acts.shape[1]), "eval_tokens": n}


def fit_on_activations(acts: torch.Tensor, cfg: SAETrainConfig, site: str, model_id: str,
                       progress: bool = True):
    """Train one TopK SAE with sae-lens's SAETrainer on activations [n, d_in]; returns the inference SAE."""
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer
    if acts.shape[0] < cfg.batch_size:
        raise ValueError(f"only {acts.shape[0]} activations for batch_size={cfg.batch_size}")
    sae = _training_sae(acts.shape[1], cfg, site, model_id)
    # inputs scaled to mean norm sqrt(d_in) (folded back into the weights after training), and b_dec
    # starts at the data mean: a residual stream has a large mean that otherwise takes features hostage
    # and leaves most of them dead
    scale = float(acts.shape[1] ** 0.5 / acts[: 65_536].norm(dim=-1).mean())
    acts = acts * scale
    with torch.no_grad():
        sae.b_dec.copy_(acts[: 65_536].mean(0))
    total = int(acts.shape[0] * cfg.epochs) // cfg.batch_size * cfg.batch_size
    steps = total // cfg.batch_size
    tcfg = SAETrainerConfig(total_training_samples=total, train_batch_size_samples=cfg.batch_size, lr=cfg.lr,
                            lr_end=cfg.lr / 10, lr_scheduler_name="cosineannealing",
                            lr_warm_up_steps=min(100, steps // 10), lr_decay_steps=steps // 5,
                            device="cpu", dead_feature_window=max(50, steps // 10),
                            feature_sampling_window=max(100, steps // 5),
                            n_batches_for_norm_estimate=min(50, max(1, acts.shape[0] // cfg.batch_size)))
    trainer = SAETrainer(cfg=tcfg, sae=sae, data_provider=store.batches(acts, cfg.batch_size, cfg.seed))
    if not progress:
        import tqdm.auto
        trainer._update_pbar = lambda *a, **k: None      # noqa: SLF001 (quiet mode for tests)
    trainer.fit()
    sae.fold_activation_norm_scaling_factor(scale)
    return _to_inference(sae)


def _to_inference(training_sae):
    """The sae-lens inference SAE of a TrainingSAE (what save/load round-trips to)."""
    import tempfile
    from sae_lens import SAE
    with tempfile.TemporaryDirectory() as tmp:
        training_sae.save_inference_model(tmp)
        return SAE.load_from_disk(tmp, device="cpu")


def train_from_cache(model, sites: list[str] | str | None = None, widths: list[int] | int | None = None,
                     out: str | Path | None = None, cfg: SAETrainConfig | None = None,
                     progress: bool = True) -> list[dict]:
    """Cache activations at `sites` once, train one SAE per (site, width), save each to a folder.

    With one site and one width the SAE goes to `out`; otherwise to `out/{site}-w{width}`. Returns one
    record per SAE: {path, name, site, width, metrics, seconds}.
    """
    cfg = cfg or SAETrainConfig()
    sites = [sites] if isinstance(sites, str) else (sites or [default_site(model)])
    widths = [widths] if isinstance(widths, int) else (widths or [cfg.width])
    if out is None:
        raise ValueError("out= (the SAE folder) is required")
    t0 = time.perf_counter()
    kw = dict(seq_len=cfg.seq_len, source=cfg.source, progress=progress)
    train_dirs = store.cache_activations(model, sites, n_tokens=cfg.tokens, split="train", **kw)
    held_dirs = store.cache_activations(model, sites, n_tokens=cfg.heldout_tokens, split="heldout", **kw)
    cache_seconds = time.perf_counter() - t0
    records = []
    for site in sites:
        acts = store.load_activations(train_dirs[site])
        held = store.load_activations(held_dirs[site])
        for width in widths:
            c = dataclasses.replace(cfg, width=width)
            t1 = time.perf_counter()
            sae = fit_on_activations(acts, c, site, model.model_id, progress=progress)
            seconds = time.perf_counter() - t1
            metrics = evaluate(sae, held)
            metrics["train_fvu"] = evaluate(sae, acts[: cfg.heldout_tokens])["fvu"]
            folder = Path(out) if len(sites) == 1 and len(widths) == 1 else Path(out) / f"{site}-w{width}"
            name = sae_name(model.model_id, site, width)
            training = {**c.to_dict(), "runner": "cache", "train_tokens": int(acts.shape[0]),
                        "train_seconds": round(seconds, 2), "cache_seconds": round(cache_seconds, 2)}
            store.save_sae(sae, folder, name, site, model.model_id, metrics, training,
                           model_content=model_content_id(model))
            records.append({"path": str(folder), "name": name, "site": site, "width": width, "metrics": metrics,
                            "seconds": seconds})
    return records


def token_dataset(model, cfg: SAETrainConfig, split: str = "train"):
    """An in-memory `datasets.Dataset` of corpus token chunks (column `input_ids`, seq_len each)."""
    from datasets import Dataset
    from workbench.data.corpus import token_chunks
    chunks = token_chunks(model.tokenizer, split=split, n_tokens=cfg.tokens, seq_len=cfg.seq_len, source=cfg.source)
    return Dataset.from_dict({"input_ids": chunks.tolist()})


def train_with_runner(model, site: str | None = None, out: str | Path | None = None,
                      cfg: SAETrainConfig | None = None, progress: bool = True) -> dict:
    """sae-lens's own training runner on the TransformerLens view of `model` (no hub, no wandb)."""
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, TopKTrainingSAEConfig
    from sae_lens.config import LoggingConfig
    cfg = cfg or SAETrainConfig()
    site = site or default_site(model)
    if out is None:
        raise ValueError("out= (the SAE folder) is required")
    dataset = token_dataset(model, cfg)
    n_train = len(dataset) * (cfg.seq_len - 1)
    total = int(n_train * cfg.epochs) // cfg.batch_size * cfg.batch_size
    tl = model.tl()
    store_rows = max(2, min(len(dataset), 32))
    runner_cfg = LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(d_in=model.info.d_model, d_sae=cfg.width, k=cfg.k,
                                  normalize_activations="expected_average_only_in",
                                  aux_loss_coefficient=cfg.aux_loss_coefficient),
        model_name=model.model_id, hook_name=site, dataset_path="in-memory", is_dataset_tokenized=True,
        streaming=False, context_size=cfg.seq_len, prepend_bos=False, seqpos_slice=(1, None),
        training_tokens=total, train_batch_size_tokens=cfg.batch_size, lr=cfg.lr, lr_warm_up_steps=0,
        n_batches_in_buffer=max(20, -(-2 * cfg.batch_size // (cfg.seq_len - 1))),
        store_batch_size_prompts=max(1, store_rows // 2), n_batches_for_norm_estimate=10, device="cpu", act_store_device="cpu",
        seed=cfg.seed, dtype="float32", n_eval_batches=1, logger=LoggingConfig(log_to_wandb=False),
        output_path=None, n_checkpoints=0, checkpoint_path=None, save_final_checkpoint=False, verbose=progress)
    t0 = time.perf_counter()
    runner = LanguageModelSAETrainingRunner(runner_cfg, override_dataset=dataset, override_model=tl)
    training_sae = runner.run()
    seconds = time.perf_counter() - t0
    sae = _to_inference(training_sae)
    held = store.load_activations(store.cache_activations(
        model, [site], n_tokens=cfg.heldout_tokens, split="heldout", seq_len=cfg.seq_len, source=cfg.source,
        progress=progress)[site])
    metrics = evaluate(sae, held)
    name = sae_name(model.model_id, site, cfg.width)
    store.save_sae(sae, out, name, site, model.model_id, metrics,
                   {**cfg.to_dict(), "runner": "sae-lens", "train_tokens": n_train, "train_seconds": round(seconds, 2)},
                   model_content=model_content_id(model))
    return {"path": str(out), "name": name, "site": site, "width": cfg.width, "metrics": metrics, "seconds": seconds}
