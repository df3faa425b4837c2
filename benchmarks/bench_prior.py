"""Training speed of the priors: steps/s of one forward + backward + Adam step, FAR and MAR.

    python benchmarks/bench_prior.py --threads 1          # tiny presets, as `nwt-train prior` trains
    python benchmarks/bench_prior.py --preset paper --device cuda --batch 8

Random Memcodes, mel and episodes of the preset's shapes (speed does not depend on the values); the
batch and window default to the tiny training preset's (4 clips of 32 frames). The median of the
timed steps is reported after warm-up steps, with the process CPU time per step next to it (wall
time is distorted when other work shares the machine).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from nwt_train.models.prior import Prior, PriorConfig


def step_times(
    prior: Prior, batch: int, frames: int, steps: int, device: torch.device
) -> tuple[float, float]:
    """(median wall seconds, mean CPU seconds) per training step."""
    config = prior.config
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, config.codebook_size, (batch, frames, *config.grid, config.heads), generator=g)
    mel = torch.rand(batch, config.n_mels, config.mel_per_frame * frames, generator=g)
    episode = torch.randint(0, config.num_episodes, (batch,), generator=g)
    codes, mel, episode = codes.to(device), mel.to(device), episode.to(device)
    optimizer = torch.optim.Adam(prior.parameters(), lr=1e-4)
    walls: list[float] = []
    cpu_total = 0.0
    for i in range(steps + 2):
        started, cpu = time.perf_counter(), time.process_time()
        logits, kl = prior(codes, mel, episode)
        loss = F.cross_entropy(logits.flatten(0, -2), codes.flatten()) + kl.mean() / codes[0].numel()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # two warm-up steps
            walls.append(time.perf_counter() - started)
            cpu_total += time.process_time() - cpu
    return statistics.median(walls), cpu_total / steps


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--preset", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"preset {args.preset} on {device} ({torch.get_num_threads()} CPU threads), "
          f"batch {args.batch} x {args.frames} frames, median of {args.steps} steps")  # fmt: skip
    print(f"{'model':6} {'params':>9} {'steps/s':>8} {'CPU s/step':>11}")
    for arch in ("far", "mar"):
        torch.manual_seed(0)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        prior = Prior(getattr(PriorConfig, args.preset)(arch)).to(device).train()
        params = sum(p.numel() for p in prior.parameters()) / 1e6
        wall, cpu = step_times(prior, args.batch, args.frames, args.steps, device)
        peak = ""
        if device.type == "cuda":
            peak = f"  peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
        print(f"{arch.upper():6} {params:8.3f}M {1 / wall:8.2f} {cpu:11.3f}{peak}")
        del prior


if __name__ == "__main__":
    main()
