"""Prior training (Section 2.2, C.2.2), top to bottom: cross-entropy against the encoded Memcodes plus
beta_l times the style KL, with Adam and a learning rate that halves every 50k updates.

Same run folder contract as the dVAE: rank 0 logs to RUN/tensorboard and saves RUN/latest.pt
atomically; running again resumes; SIGTERM saves before exit; torchrun runs it with DDP.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nwt_train import checkpoint, dist, runlock, schedules
from nwt_train.config import PriorTrainConfig, to_json
from nwt_train.data import code_window, training_batches
from nwt_train.encode import open_codes
from nwt_train.errors import Diverged
from nwt_train.metrics import Logger
from nwt_train.models.prior import Prior
from nwt_train.train_dvae import dataset_fingerprint

RESUMABLE_CHANGES = {"steps", "log_every", "checkpoint_every", "device", "num_workers"}


def fit_to_codes(config: PriorTrainConfig, codes: dict[str, Any]) -> PriorTrainConfig:
    """The model's grid, heads, codebook and episode table follow the Memcode set it trains on."""
    model = dataclasses.replace(
        config.model,
        grid=tuple(codes["grid"]),
        heads=int(codes["heads"]),
        codebook_size=int(codes["codebook_size"]),
        num_episodes=max(config.model.num_episodes, len(codes["episodes"])),
    )
    return dataclasses.replace(config, model=model)


def prior_loss(
    logits: torch.Tensor, codes: torch.Tensor, kl: torch.Tensor, style_beta: float
) -> dict[str, torch.Tensor]:
    """Per-head cross-entropy (nats) and the style KL, scaled as one per-clip ELBO.

    Both terms are divided by the number of predicted indices per clip, so `ce` reads in nats per
    head choice (log K for a uniform guess) and beta_l weighs the KL against the clip's total CE.
    """
    per_index = F.cross_entropy(logits.flatten(0, -2).float(), codes.flatten(), reduction="none")
    per_head = per_index.view(-1, codes.shape[-1]).mean(0)
    ce = per_head.mean()
    indices_per_clip = codes[0].numel()
    loss = ce + style_beta * kl.mean() / indices_per_clip
    accuracy = (logits.argmax(-1) == codes).float().mean()
    return {"loss": loss, "ce": ce, "kl": kl.mean(), "accuracy": accuracy, "ce_per_head": per_head}


def prior_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    codes: torch.Tensor,
    mel: torch.Tensor,
    episode: torch.Tensor,
    *,
    config: PriorTrainConfig,
    autocast: contextlib.AbstractContextManager = contextlib.nullcontext(),
) -> dict[str, torch.Tensor]:
    """One optimizer step over `config.accumulate` micro-batches of this rank's clips.

    Each micro-batch's loss is divided by their number, so the gradients add up to the whole batch's
    (the losses are batch means); DDP all-reduces on the last micro-batch only. Returns the terms
    averaged over the micro-batches (detached).
    """
    n = config.accumulate
    if codes.shape[0] % n:
        raise ValueError(f"{codes.shape[0]} clips do not split into {n} micro-batches")
    size = codes.shape[0] // n
    optimizer.zero_grad(set_to_none=True)
    totals: dict[str, torch.Tensor] = {}
    for i, (c, m, e) in enumerate(zip(codes.split(size), mel.split(size), episode.split(size), strict=True)):
        with dist.no_sync([model], i < n - 1):
            # z_l ~ q(z_l | z); teacher-forced logits of p(z | audio, z_l, episode).
            with autocast:
                logits, kl = model(c, m, e)
            terms = prior_loss(logits, c, kl, config.style_beta)
            (terms["loss"] / n).backward()
        for key, value in terms.items():
            totals[key] = totals.get(key, 0) + value.detach() / n
    optimizer.step()
    return totals


def train_prior(
    config: PriorTrainConfig, data: Path, run_dir: Path, *, progress: Any = None
) -> dict[str, float]:
    """Train until `config.steps` on the Memcode set `data`; return the last logged values."""
    with dist.running(config.device) as ctx, runlock.claim(run_dir, "trainer", enabled=ctx.is_main):
        return _train(config, data, run_dir, ctx, progress)


def _train(
    config: PriorTrainConfig, data: Path, run_dir: Path, ctx: dist.Dist, progress: Any
) -> dict[str, float]:
    codes_set = open_codes(data)
    config = fit_to_codes(config, codes_set.description)
    per_rank = dist.per_rank_batch(ctx, config.batch_size, config.accumulate)
    autocast = dist.precision(ctx, tf32=config.tf32, bf16=config.bf16)
    fingerprint = dataset_fingerprint(codes_set)

    torch.manual_seed(config.seed)  # identical initial weights on every rank
    prior = Prior(config.model).to(ctx.device)
    optimizer = torch.optim.Adam(prior.parameters(), lr=config.lr, betas=config.betas, eps=config.adam_eps)
    parts = {"prior": prior, "optimizer": optimizer}
    step = checkpoint.restore(run_dir, parts, to_json(config), fingerprint, RESUMABLE_CHANGES)
    dist.seed_rank(ctx, seed=config.seed, step=step)
    # What generation needs besides the weights: the episode ids and the dVAE these codes came from.
    about_codes = {
        "dvae": codes_set.description["dvae"],
        "episodes": codes_set.description["episodes"],
        "source": str(data),
    }
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(to_json(config), indent=2))

    model = dist.wrap(prior, ctx)
    batches = training_batches(
        codes_set,
        frames=config.frames,
        per_rank=per_rank,
        steps=config.steps,
        step=step,
        seed=config.seed,
        num_workers=config.num_workers,
        with_mel=True,
        make_window=code_window,
    )
    logger = Logger(run_dir, enabled=ctx.is_main)

    def save() -> None:
        if ctx.is_main:
            state = checkpoint.run_state(parts, step, to_json(config), fingerprint, codes=about_codes)
            checkpoint.save(run_dir, state)
        dist.barrier(ctx)

    last: dict[str, float] = {}
    clock, clips_seen = time.perf_counter(), 0
    with checkpoint.stop_on_sigterm() as stop, contextlib.closing(logger):
        while step < config.steps and not stop["requested"]:
            batch = next(batches, None)
            if batch is None:  # SIGTERM while waiting for data: save and stop
                break
            codes = batch["codes"].to(ctx.device)
            mel = batch["mel"].to(ctx.device)
            episode = batch["episode"].to(ctx.device)
            lr = schedules.halving_lr(
                step, base=config.lr, every=config.lr_halving_every, floor=config.lr_floor
            )
            for group in optimizer.param_groups:
                group["lr"] = lr

            terms = prior_step(model, optimizer, codes, mel, episode, config=config, autocast=autocast)
            if not math.isfinite(terms["loss"].item()):
                raise Diverged(f"the prior's loss became {terms['loss'].item()} at step {step}")

            step += 1
            clips_seen += codes.shape[0] * ctx.world_size
            if step % config.log_every == 0 or step == config.steps:
                values = {
                    f"loss/{k}": float(dist.all_mean(v.detach(), ctx))
                    for k, v in terms.items()
                    if k != "ce_per_head"
                }
                per_head = dist.all_mean(terms["ce_per_head"].detach(), ctx).tolist()
                values |= {f"ce/head{i}": v for i, v in enumerate(per_head)}
                values |= {
                    "ce/uniform": math.log(config.model.codebook_size),
                    "schedule/lr": lr,
                    "speed/clips_per_s": clips_seen / (time.perf_counter() - clock),
                }
                logger.scalars(step, values)
                last = values
                clock, clips_seen = time.perf_counter(), 0
                if progress is not None and ctx.is_main:
                    progress(step, values)
            if step % config.checkpoint_every == 0:
                save()
        save()
    return last
