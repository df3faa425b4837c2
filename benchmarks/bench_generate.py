"""Generation speed of the priors: frames/s for FAR and MAR, with and without the cached steps (B.2.3).

    python benchmarks/bench_generate.py                   # tiny presets on this machine's CPU
    python benchmarks/bench_generate.py --preset paper --device cuda   # Table 3's setting (one GPU)

Weights are random (speed does not depend on them); the audio is a random mel of the right shape.
The uncached baseline recomputes the whole prefix at every step, which is what the queues save.
The paper reports 38.9 frames/s (FAR) and 0.77 frames/s (MAR) on one GPU (Table 3).
"""

from __future__ import annotations

import argparse
import time

import torch

from nwt_train.generate import sample_memcodes
from nwt_train.models.prior import Prior, PriorConfig


def frames_per_second(prior: Prior, frames: int, *, cache: bool, device: torch.device) -> float:
    config = prior.config
    generator = torch.Generator(device=device).manual_seed(0)
    mel = torch.rand(1, config.n_mels, config.mel_per_frame * frames, device=device)
    episode = torch.zeros(1, dtype=torch.long, device=device)
    z = torch.randn(1, config.style_dim, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    sample_memcodes(prior, mel, episode, z, temperature=1.0, generator=generator, cache=cache)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return frames / (time.perf_counter() - started)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--preset", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--far-frames", type=int, default=60, help="frames FAR generates per measurement")
    parser.add_argument("--mar-frames", type=int, default=8, help="frames MAR generates per measurement")
    parser.add_argument("--no-uncached", action="store_true", help="skip the (slow) uncached baselines")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"preset {args.preset} on {device} ({torch.get_num_threads()} CPU threads), batch 1")
    print(f"{'model':6} {'params':>9} {'frames':>7} {'cached f/s':>11} {'uncached f/s':>13} {'speed-up':>9}")
    for arch, frames in (("far", args.far_frames), ("mar", args.mar_frames)):
        config = getattr(PriorConfig, args.preset)(arch)
        prior = Prior(config).to(device).eval()
        params = sum(p.numel() for p in prior.parameters()) / 1e6
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
        with autocast:
            frames_per_second(prior, min(frames, 2), cache=True, device=device)  # warm-up
            cached = frames_per_second(prior, frames, cache=True, device=device)
            uncached = None
            if not args.no_uncached:
                uncached = frames_per_second(prior, frames, cache=False, device=device)
        tail = f"{uncached:13.2f} {cached / uncached:8.1f}x" if uncached else f"{'-':>13} {'-':>9}"
        print(f"{arch.upper():6} {params:8.1f}M {frames:7d} {cached:11.2f} {tail}")
        del prior
    print("paper, one GPU (Table 3): FAR 38.9 frames/s, MAR 0.77 frames/s")


if __name__ == "__main__":
    main()
