"""dVAE-Adv training (Algorithm 2), top to bottom: one loop, a critic step then a generator step.

The same function runs on CPU, one GPU, or one process per GPU under torchrun. Rank 0 alone logs
and saves; a run folder resumes from its latest checkpoint by itself; SIGTERM saves before exit.
With `accumulate` > 1 an optimizer step runs over that many micro-batches (DDP syncs on the last).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nwt_data.contract import FRAME_HEIGHT, FRAME_WIDTH, VIDEO_FPS
from nwt_train import checkpoint, dist, losses, runlock, schedules
from nwt_train.config import DVAETrainConfig, to_json
from nwt_train.data import Dataset, training_batches
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
RESUMABLE_CHANGES = {"steps", "log_every", "video_every", "checkpoint_every", "device", "num_workers",
                     "health_warmup", "collapse_perplexity"}  # fmt: skip


def dataset_fingerprint(dataset: Dataset) -> str:
    shards = sorted((s["name"], s["sha256"]) for s in dataset.description["shards"] if s["split"] == "train")
    return json.dumps({"shards": shards, "video": dataset.description["video"]}, sort_keys=True)


def train_dvae(
    config: DVAETrainConfig,
    data: Path,
    run_dir: Path,
    *,
    progress: Any = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Train until `config.steps`; return the last logged values; `progress(step, values)` sees each log.

    `warn(message)` gets the Memcode health warnings (default: `warnings.warn`); they also go to
    TensorBoard as text (`health/warning`).
    """
    with dist.running(config.device) as ctx, runlock.claim(run_dir, "trainer", enabled=ctx.is_main):
        return _train(config, data, run_dir, ctx, progress, warn)


def _train(
    config: DVAETrainConfig, data: Path, run_dir: Path, ctx: dist.Dist, progress: Any,
    warn: Callable[[str], None] | None,
) -> dict[str, float]:  # fmt: skip
    dataset = Dataset.open(data, expect=DATA_EXPECT)
    if dataset.num_episodes > config.model.num_episodes:
        model = dataclasses.replace(config.model, num_episodes=dataset.num_episodes)
        config = dataclasses.replace(config, model=model)
    per_rank = dist.per_rank_batch(ctx, config.batch_size, config.accumulate)
    autocast = dist.precision(ctx, tf32=config.tf32, bf16=config.bf16)
    fingerprint = dataset_fingerprint(dataset)

    parts = build(config, ctx.device)
    step = checkpoint.restore(run_dir, parts, to_json(config), fingerprint, RESUMABLE_CHANGES)
    dist.seed_rank(ctx, seed=config.seed, step=step)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(to_json(config), indent=2))

    nets = {"dvae": dist.wrap(parts["dvae"], ctx), "critics": dist.wrap(parts["critics"], ctx)}
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
    health = HealthWatch(config, warn or _warn)
    last: dict[str, float] = {}
    clock, clips_seen = time.perf_counter(), 0
    with checkpoint.stop_on_sigterm() as stop, contextlib.closing(logger):
        while step < config.steps and not stop["requested"]:
            batch = next(batches, None)
            if batch is None:  # SIGTERM while waiting for data: save and stop
                break
            video = fit_frames(batch["video"].to(ctx.device), config.model.frame_size)
            episode = batch["episode"].to(ctx.device)
            monitor = (step + 1) % config.log_every == 0 or step + 1 == config.steps
            out = train_step(parts, nets, video, episode, config=config, step=step, autocast=autocast,
                             monitor=monitor)  # fmt: skip

            step += 1
            clips_seen += video.shape[0] * ctx.world_size
            if monitor:
                values = {k: float(dist.all_mean(v, ctx)) for k, v in out["logs"].items()}
                values["speed/clips_per_s"] = clips_seen / (time.perf_counter() - clock)
                logger.scalars(step, values)
                for message in health.check(step, values):
                    if ctx.is_main:
                        logger.text(step, "health/warning", message)
                        health.warn(message)
                last = values
                clock, clips_seen = time.perf_counter(), 0
                if progress is not None and ctx.is_main:
                    progress(step, values)
            if step % config.video_every == 0 and ctx.is_main:
                logger.video(step, "reconstruction", side_by_side(out["video"][0], out["reconstruction"][0]))
            if step % config.checkpoint_every == 0:
                _save(parts, step, config, fingerprint, run_dir, ctx)
        _save(parts, step, config, fingerprint, run_dir, ctx)
    return last


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


class HealthWatch:
    """Warns when a Memcode head's argmax perplexity stays under the threshold after the warm-up."""

    def __init__(self, config: DVAETrainConfig, warn: Callable[[str], None]) -> None:
        self.config, self.warn = config, warn
        self.low: dict[int, int] = defaultdict(int)  # head -> consecutive low logs

    def check(self, step: int, values: dict[str, float]) -> list[str]:
        messages = []
        for head in range(self.config.model.heads):
            perplexity = values.get(f"memcodes/argmax_perplexity_head{head}")
            if perplexity is None:
                continue
            low = perplexity < self.config.collapse_perplexity
            self.low[head] = self.low[head] + 1 if low else 0
            # Two logs in a row, then every 10th log while it lasts.
            if step >= self.config.health_warmup and self.low[head] >= 2 and self.low[head] % 10 == 2:
                messages.append(
                    f"WARNING step {step}: Memcode head {head} has collapsed: argmax perplexity "
                    f"{perplexity:.2f} < {self.config.collapse_perplexity} (of "
                    f"{self.config.model.codebook_size}) "
                    f"for {self.low[head]} logs; its codes carry almost no information"
                )
        return messages


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


@contextlib.contextmanager
def _replaying(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> Iterator[None]:
    """Draw the same random numbers as when `state` was taken; the stream outside is left as it was."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], device)
        yield


def kl_input_size(config: DVAETrainConfig, video: torch.Tensor, latent: int,
                  features: losses.Features) -> int:  # fmt: skip
    """N of beta_norm for one clip, per `config.kl_normaliser`."""
    if config.kl_normaliser == "memcodes":
        return latent
    if config.kl_normaliser == "feature_maps":
        sizes = [f[0].numel() for maps in features for f in maps]
        return max(1, round(sum(sizes) / len(sizes)))
    return math.prod(video.shape[1:])


def train_step(
    parts: dict[str, Any],
    nets: dict[str, torch.nn.Module],
    video: torch.Tensor,
    episode: torch.Tensor,
    *,
    config: DVAETrainConfig,
    step: int,
    autocast: contextlib.AbstractContextManager = contextlib.nullcontext(),
    monitor: bool = False,
    sample: bool | None = None,
    gp_eps: torch.Tensor | None = None,
) -> dict[str, Any]:
    """One update of Algorithm 2 on this rank's clips: the critic step (eq. 9), then the generator
    step (eq. 8), each over `config.accumulate` micro-batches whose gradients add up to the batch's.

    parts: `build()`'s networks and optimizers; nets: the (DDP-wrapped) dvae and critics. sample:
    Memcodes sampling (None: Gumbel in training mode); gp_eps: the penalty's mixing weights (B,)
    (drawn when None). The critic and the generator see the same z of a micro-batch: with more than
    one micro-batch the generator's forward replays the Gumbel noise of the critic's no-grad forward,
    so only one micro-batch's graph is alive at a time. Returns {"logs": 0-dim tensors (with
    `monitor`: Memcode health, gradient norms), "video", "reconstruction": the last micro-batch's}.
    """
    dvae, critics = nets["dvae"], nets["critics"]
    raw_critics, gen_opt, critic_opt = parts["critics"], parts["gen_opt"], parts["critic_opt"]
    n = config.accumulate
    if video.shape[0] % n:
        raise ValueError(f"{video.shape[0]} clips do not split into {n} micro-batches")
    size = video.shape[0] // n
    videos, episodes = video.split(size), episode.split(size)
    if gp_eps is None:
        gp_eps = torch.rand(video.shape[0], device=video.device)
    eps = gp_eps.split(size)
    reduction = config.score_reduction
    per_frame = tuple(c.dims == 2 and config.gp_frames == "frame" for c in raw_critics.config.critics)
    names = list(raw_critics.keys())
    sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=video.device))

    def add(key: str, value: torch.Tensor) -> None:
        sums[key] = sums[key] + value.detach().float() / n

    # Critic update (eq. 9): WGAN loss and the gradient penalty on x^.
    kept, states = None, []
    critic_opt.zero_grad(set_to_none=True)
    for i in range(n):
        if n == 1:  # the graph is kept for the generator step
            with autocast:
                kept = dvae(videos[i], episodes[i], sample=sample)
            fake = kept[0].detach().to(videos[i].dtype)
        else:
            states.append(_rng_state(video.device))
            with torch.no_grad(), autocast:
                fake = dvae(videos[i], episodes[i], sample=sample)[0].to(videos[i].dtype)
        with dist.no_sync([critics], i < n - 1):
            with autocast:
                real_out = outputs(critics, videos[i])
                fake_out = outputs(critics, fake)
            norms: list[torch.Tensor] = []
            penalty = losses.gradient_penalty(
                lambda x: outputs(critics, x), videos[i], fake, weight=config.gp_weight, eps=eps[i],
                reduction=reduction, per_frame=per_frame, norms=norms,
            )  # fmt: skip
            critic_loss = losses.critic_loss(real_out, fake_out, reduction) + penalty
            (critic_loss / n).backward()
        add("critic/loss", critic_loss)
        add("critic/gradient_penalty", penalty)
        add("critic/real_score", losses.mean_score(real_out))
        add("critic/fake_score", losses.mean_score(fake_out))
        for name, norm in zip(names, norms, strict=True):
            add(f"critic/{name}/penalty_input_grad_norm", norm)
    if monitor:
        for name in names:
            grads = [p.grad.float().norm() for p in raw_critics[name].parameters() if p.grad is not None]
            sums[f"critic/{name}/grad_norm"] = torch.stack(grads).norm() if grads else torch.zeros(())
    critic_opt.step()

    # Generator update (eq. 8): feature matching inside the critics, gamma * adversarial, KL.
    raw_critics.requires_grad_(False)
    gen_opt.zero_grad(set_to_none=True)
    beta = schedules.kl_beta(step, midpoint=config.kl_midpoint, growth=config.kl_growth)
    seen_logits, seen_indices = [], []
    try:
        for i in range(n):
            with dist.no_sync([dvae], i < n - 1):
                if kept is not None:
                    reconstruction, indices, logits = kept
                else:
                    with _replaying(states[i], video.device), autocast:
                        reconstruction, indices, logits = dvae(videos[i], episodes[i], sample=sample)
                with autocast:
                    with torch.no_grad():
                        target_out = outputs(raw_critics, videos[i])
                    recon_out = outputs(raw_critics, reconstruction)
                _, target_features = losses.split_critic_outputs(target_out)
                recon_scores, recon_features = losses.split_critic_outputs(recon_out)
                latent, _ = schedules.latent_and_input_size(
                    tuple(videos[i].shape[1:]), tuple(indices.shape[1:-1]), heads=config.model.heads
                )
                size_n = kl_input_size(config, videos[i], latent, target_features)
                beta_norm = schedules.beta_norm(beta, latent_size=latent, input_size=size_n)
                terms = losses.dvae_generator_loss(
                    target_features, recon_features, recon_scores, logits, beta_norm=beta_norm,
                    gamma=config.gamma, reduction=reduction, pixel_weight=config.pixel_weight,
                    feature_weight=config.feature_weight, feature_scale=config.feature_matching,
                    target=videos[i], reconstruction=reconstruction,
                )  # fmt: skip
                if monitor:
                    _decoder_output_gradients(terms, reconstruction, add)
                (terms["loss"] / n).backward()
            for key, value in terms.items():
                add(f"loss/{key}", value)
            add("recon/pixel_l1", (reconstruction.detach().float() - videos[i]).abs().mean())
            add("schedule/beta_norm", torch.tensor(beta_norm))
            if monitor:
                seen_logits.append(logits.detach())
                seen_indices.append(indices.detach())
        gen_opt.step()
    finally:
        raw_critics.requires_grad_(True)
    sums["schedule/beta"] = torch.tensor(beta)
    if monitor:
        sums |= _health_logs(torch.cat(seen_logits), torch.cat(seen_indices))
    return {"logs": dict(sums), "video": videos[-1], "reconstruction": reconstruction.detach()}


def _decoder_output_gradients(terms: dict[str, torch.Tensor], reconstruction: torch.Tensor,
                              add: Callable[[str, torch.Tensor], None]) -> None:  # fmt: skip
    """Norms of the gradients L_recon and gamma * L_gan send to the decoder output, and their ratio."""
    recon, gan = (
        torch.autograd.grad([terms["recon"]], [reconstruction], retain_graph=True)[0],
        torch.autograd.grad([terms["gan_weighted"]], [reconstruction], retain_graph=True)[0],
    )
    recon_norm, gan_norm = recon.float().norm(), gan.float().norm()
    add("grad/decoder_output_recon", recon_norm)
    add("grad/decoder_output_gan_weighted", gan_norm)
    add("grad/gan_over_recon", gan_norm / recon_norm.clamp_min(1e-20))


def _health_logs(logits: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
    """Memcode health per head (`losses.memcode_health`) and how often a code repeats the previous
    frame's (the prior's targets), under TensorBoard names."""
    health = losses.memcode_health(logits, indices)
    out: dict[str, torch.Tensor] = {}
    for key, per_head in health.items():
        for head, value in enumerate(per_head):
            out[f"memcodes/{key}_head{head}"] = value
        out[f"memcodes/{key}_mean"] = per_head.mean()
    argmax = logits.argmax(dim=-1)  # (B, T, h, w, heads)
    if argmax.shape[1] > 1:
        out["memcodes/argmax_same_as_previous_frame"] = (argmax[:, 1:] == argmax[:, :-1]).float().mean()
    return out


def _save(parts: dict[str, Any], step: int, config: DVAETrainConfig, fingerprint: str, run_dir: Path,
          ctx: dist.Dist) -> None:  # fmt: skip
    if ctx.is_main:
        checkpoint.save(run_dir, checkpoint.run_state(parts, step, to_json(config), fingerprint))
    dist.barrier(ctx)
