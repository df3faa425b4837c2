"""dVAE-Adv training (Algorithm 2), top to bottom: one loop, a critic step then a generator step.

The same function runs on CPU, one GPU, or one process per GPU under torchrun. Rank 0 alone logs
and saves; a run folder resumes from its latest checkpoint by itself; SIGTERM saves before exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nwt_data.contract import FRAME_HEIGHT, FRAME_WIDTH, VIDEO_FPS
from nwt_train import checkpoint, dist, losses, schedules
from nwt_train.config import DVAETrainConfig, to_json
from nwt_train.data import Dataset, training_batches
from nwt_train.errors import TrainConfigError
from nwt_train.metrics import Logger, side_by_side
from nwt_train.models.critics import Critics
from nwt_train.models.dvae import DVAE

DATA_EXPECT = {"video": {"fps": VIDEO_FPS, "height": FRAME_HEIGHT, "width": FRAME_WIDTH}}


def outputs(critics: torch.nn.Module, video: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    """Every critic's (score map, hidden features), in a fixed order."""
    return list(critics(video).values())


def fit_frames(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, T, 3, H, W) -> frames of the model's size (area scaling; the tiny preset trains small)."""
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    b, t = video.shape[:2]
    flat = F.interpolate(video.flatten(0, 1), size=size, mode="area")
    return flat.unflatten(0, (b, t))


def build(config: DVAETrainConfig, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    dvae = DVAE(config.model).to(device)
    critics = Critics(config.critics).to(device)
    adam = {"lr": config.lr, "betas": config.betas, "eps": config.adam_eps}
    return {
        "dvae": dvae,
        "critics": critics,
        "gen_opt": torch.optim.Adam(dvae.parameters(), **adam),
        "critic_opt": torch.optim.Adam(critics.parameters(), **adam),
    }


# Settings a resumed run may change: how long, how often it logs and saves, where it runs.
RESUMABLE_CHANGES = {"steps", "log_every", "video_every", "checkpoint_every", "device", "num_workers"}


def dataset_fingerprint(dataset: Dataset) -> str:
    shards = sorted((s["name"], s["sha256"]) for s in dataset.description["shards"] if s["split"] == "train")
    return json.dumps({"shards": shards, "video": dataset.description["video"]}, sort_keys=True)


def train_dvae(
    config: DVAETrainConfig, data: Path, run_dir: Path, *, progress: Any = None
) -> dict[str, float]:
    """Train until `config.steps`; return the last logged values; `progress(step, values)` sees each log."""
    with dist.running(config.device) as ctx:
        return _train(config, data, run_dir, ctx, progress)


def _train(
    config: DVAETrainConfig, data: Path, run_dir: Path, ctx: dist.Dist, progress: Any
) -> dict[str, float]:
    dataset = Dataset.open(data, expect=DATA_EXPECT)
    if dataset.num_episodes > config.model.num_episodes:
        model = dataclasses.replace(config.model, num_episodes=dataset.num_episodes)
        config = dataclasses.replace(config, model=model)
    if config.batch_size % ctx.world_size:
        raise TrainConfigError(
            f"batch_size {config.batch_size} must divide evenly over {ctx.world_size} ranks"
        )
    per_rank = config.batch_size // ctx.world_size
    autocast = dist.precision(ctx, tf32=config.tf32, bf16=config.bf16)
    fingerprint = dataset_fingerprint(dataset)

    parts = build(config, ctx.device)
    step = checkpoint.restore(run_dir, parts, to_json(config), fingerprint, RESUMABLE_CHANGES)
    dist.seed_rank(ctx, seed=config.seed, step=step)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(to_json(config), indent=2))

    dvae, critics = dist.wrap(parts["dvae"], ctx), dist.wrap(parts["critics"], ctx)
    raw_critics = parts["critics"]
    gen_opt, critic_opt = parts["gen_opt"], parts["critic_opt"]
    batches = training_batches(
        dataset,
        frames=config.frames,
        per_rank=per_rank,
        steps=config.steps,
        step=step,
        seed=config.seed,
        num_workers=config.num_workers,
    )
    logger = Logger(run_dir, enabled=ctx.is_main)
    last: dict[str, float] = {}
    clock, clips_seen = time.perf_counter(), 0
    with checkpoint.stop_on_sigterm() as stop, contextlib.closing(logger):
        while step < config.steps and not stop["requested"]:
            batch = next(batches)
            video = fit_frames(batch["video"].to(ctx.device), config.model.frame_size)
            episode = batch["episode"].to(ctx.device)

            # Forward pass: z ~ q(z|x), x~ ~ p(x|z).
            with autocast:
                reconstruction, indices, logits = dvae(video, episode)

            # Critic update (eq. 9): WGAN loss and a per-sample gradient penalty on x^.
            fake = reconstruction.detach().float()
            with autocast:
                real_out = outputs(critics, video)
                fake_out = outputs(critics, fake)
            penalty = losses.gradient_penalty(
                lambda x: outputs(critics, x), video, fake, weight=config.gp_weight
            )
            critic_loss = losses.critic_loss(real_out, fake_out) + penalty
            critic_opt.zero_grad(set_to_none=True)
            critic_loss.backward()
            critic_opt.step()

            # Generator update (eq. 8): feature matching inside the critics, gamma * adversarial, KL.
            raw_critics.requires_grad_(False)
            with autocast:
                with torch.no_grad():
                    target_out = outputs(raw_critics, video)
                recon_out = outputs(raw_critics, reconstruction)
            _, target_features = losses.split_critic_outputs(target_out)
            recon_scores, recon_features = losses.split_critic_outputs(recon_out)
            beta = schedules.kl_beta(step, midpoint=config.kl_midpoint, growth=config.kl_growth)
            latent, size = schedules.latent_and_input_size(
                tuple(video.shape[1:]), tuple(indices.shape[1:-1]), heads=config.model.heads
            )
            beta_norm = schedules.beta_norm(beta, latent_size=latent, input_size=size)
            terms = losses.dvae_generator_loss(
                target_features, recon_features, recon_scores, logits, beta_norm=beta_norm, gamma=config.gamma
            )
            gen_opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            gen_opt.step()
            raw_critics.requires_grad_(True)

            step += 1
            clips_seen += video.shape[0] * ctx.world_size
            if step % config.log_every == 0 or step == config.steps:
                usage, perplexity = losses.codebook_usage(indices.detach(), config.model.codebook_size)
                values = {f"loss/{k}": float(dist.all_mean(v.detach(), ctx)) for k, v in terms.items()}
                values |= {
                    "critic/loss": float(dist.all_mean(critic_loss.detach(), ctx)),
                    "critic/gradient_penalty": float(dist.all_mean(penalty.detach(), ctx)),
                    "critic/real_score": float(dist.all_mean(losses.mean_score(real_out).detach(), ctx)),
                    "critic/fake_score": float(dist.all_mean(losses.mean_score(fake_out).detach(), ctx)),
                    # Not trained on: the plain pixel error tells whether reconstructions improve.
                    "recon/pixel_l1": float(
                        dist.all_mean((reconstruction - video).abs().mean().detach(), ctx)
                    ),
                    "schedule/beta": beta,
                    "schedule/beta_norm": beta_norm,
                    "speed/clips_per_s": clips_seen / (time.perf_counter() - clock),
                }
                for head, (u, p) in enumerate(zip(usage.tolist(), perplexity.tolist(), strict=True)):
                    values[f"codebook/usage_head{head}"] = u
                    values[f"codebook/perplexity_head{head}"] = p
                logger.scalars(step, values)
                last = values
                clock, clips_seen = time.perf_counter(), 0
                if progress is not None and ctx.is_main:
                    progress(step, values)
            if step % config.video_every == 0 and ctx.is_main:
                logger.video(step, "reconstruction", side_by_side(video[0], reconstruction[0]))
            if step % config.checkpoint_every == 0:
                _save(parts, step, config, fingerprint, run_dir, ctx)
        _save(parts, step, config, fingerprint, run_dir, ctx)
    return last


def _save(parts: dict[str, Any], step: int, config: DVAETrainConfig, fingerprint: str, run_dir: Path,
          ctx: dist.Dist) -> None:  # fmt: skip
    if ctx.is_main:
        checkpoint.save(run_dir, checkpoint.run_state(parts, step, to_json(config), fingerprint))
    dist.barrier(ctx)
