"""The dVAE loss settings the paper leaves open, measured at initialisation on real clips.

For each KL normaliser, score reduction and 2D-critic penalty granularity, one training step of
`train_dvae.train_step` on the same weights (seed 0) and the same clips reports: the gradient penalty
and each critic's mean input-gradient norm at the interpolates (WGAN-GP wants 1), the ratio of the
gradients gamma*L_gan and L_recon send to the decoder output, and the share of the loss the weighted
KL would take with beta annealed to 1 and q one-hot (KL = log K, its maximum).

    python benchmarks/dvae_reductions.py --data ws/shards [--preset tiny] [--clips 2]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from nwt_train.config import PRESETS, with_overrides
from nwt_train.data import Dataset, clip_windows
from nwt_train.train_dvae import build, fit_frames, train_step

VARIANTS = [
    {"kl_normaliser": "pixels", "score_reduction": "mean", "gp_frames": "clip"},
    {"kl_normaliser": "feature_maps", "score_reduction": "mean", "gp_frames": "clip"},
    {"kl_normaliser": "memcodes", "score_reduction": "mean", "gp_frames": "clip"},
    {"kl_normaliser": "pixels", "score_reduction": "sum", "gp_frames": "clip"},
    {"kl_normaliser": "pixels", "score_reduction": "mean", "gp_frames": "frame"},
    {"kl_normaliser": "pixels", "score_reduction": "sum", "gp_frames": "frame"},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = PRESETS[args.preset]()
    windows = clip_windows(Dataset.open(args.data), "train", frames=base.frames, shuffle_buffer=0)
    picked = [w for _, w in zip(range(args.clips), windows, strict=False)]
    video = fit_frames(torch.stack([w["video"] for w in picked]), base.model.frame_size)
    episode = torch.tensor([w["episode"] for w in picked])
    eps = torch.rand(len(picked), generator=torch.Generator().manual_seed(0))
    late = 20 * base.kl_midpoint  # beta ~ 1
    print(f"{args.preset} preset, {len(picked)} real clips of {base.frames} frames, seed 0, beta ~ 1")
    print(
        "normaliser    reduction gp       GP     input-grad norm per critic  gan/recon  KL share  beta_norm"
    )
    for variant in VARIANTS:
        config = with_overrides(base, {**variant, "batch_size": len(picked)})
        start = time.process_time()
        parts = build(config, torch.device("cpu"))
        nets = {"dvae": parts["dvae"], "critics": parts["critics"]}
        logs = train_step(parts, nets, video, episode, config=config, step=late, monitor=True, sample=False,
                          gp_eps=eps)["logs"]  # fmt: skip
        norms = " ".join(f"{float(logs[f'critic/{c.name}/penalty_input_grad_norm']):8.4f}"
                         for c in config.critics.critics)  # fmt: skip
        # The KL's share of the loss once q is one-hot (KL = log K), the most it can weigh.
        beta_norm = float(logs["schedule/beta_norm"])
        kl_max = beta_norm * math.log(config.model.codebook_size)
        share = kl_max / (float(logs["loss/loss"]) - float(logs["loss/kl_weighted"]) + kl_max)
        gp, ratio = float(logs["critic/gradient_penalty"]), float(logs["grad/gan_over_recon"])
        print(
            f"{variant['kl_normaliser']:<13} {variant['score_reduction']:<9} {variant['gp_frames']:<6} "
            f"{gp:8.3f}  {norms}   {ratio:8.4f}  {share:8.4f}  {beta_norm:.5f}"
            f"  ({time.process_time() - start:.1f} CPU s)"
        )


if __name__ == "__main__":
    main()
