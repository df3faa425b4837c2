"""A/B of the Memcodes' query/key normalisation (`model.memcode_norm`) on real footage.

    python benchmarks/memcodes_ab.py --data ws/shards --out /tmp/memcodes-ab --steps 600 --seeds 0,1

For each setting and seed: the tiny dVAE trained for --steps on the train split (same seed, same data
stream), then on whole clips with argmax codes:
    logit_std_init   within-position std of the first logits on real frames (the Gumbel noise: 1.28)
    perplexity       per head, of the argmax codes over every train frame (8 = all codes used evenly)
    memcodes_used    distinct Memcodes (all heads together) over every train frame
    repeat_rate      share of grid positions whose Memcode equals the previous frame's (the prior's
                     targets: a high rate means easy, static targets)
    psnr_db          of argmax reconstructions on the held-out split (--split, default test)
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np
import torch

from nwt_train.audio_path import split_samples
from nwt_train.config import tiny
from nwt_train.data import read_video
from nwt_train.eval_dvae import load_dvae
from nwt_train.models.dvae import DVAE, in_time_chunks
from nwt_train.train_dvae import fit_frames, train_dvae


def clips(shards: Path, split: str) -> list[torch.Tensor]:
    out = []
    for sample in split_samples(shards, split):
        frames = read_video(sample["mp4"])
        out.append(torch.from_numpy(frames).permute(0, 3, 1, 2).float()[None] / 127.5 - 1)
    return out


@torch.no_grad()
def measure(model: DVAE, train: list[torch.Tensor], held_out: list[torch.Tensor]) -> dict:
    size, heads, k = model.config.frame_size, model.config.heads, model.config.codebook_size
    codes_all, repeats, positions = [], 0, 0
    for video in train:
        video = fit_frames(video, size)
        codes = in_time_chunks(lambda v: model.encode(v, sample=False), video, chunk=64,
                               context=model.temporal_reach)[0]  # fmt: skip
        codes_all.append(codes.reshape(-1, heads))
        repeats += int((codes[1:] == codes[:-1]).all(-1).sum())
        positions += codes[1:].shape[0] * codes.shape[1] * codes.shape[2]
    flat = torch.cat(codes_all)
    perplexity = []
    for head in range(heads):
        p = torch.bincount(flat[:, head], minlength=k).float()
        p = p[p > 0] / p.sum()
        perplexity.append(round(math.exp(float(-(p * p.log()).sum())), 2))
    memcodes_used = len({tuple(row) for row in flat.tolist()})
    psnr = []
    for video in held_out:
        video = fit_frames(video, size)
        recon, _, _ = model(video, torch.zeros(1, dtype=torch.long), sample=False)
        mse = float(((recon.clamp(-1, 1) - video) / 2).square().mean())
        psnr.append(10 * math.log10(1 / max(mse, 1e-12)))
    return {
        "perplexity": perplexity,
        "memcodes_used": memcodes_used,
        "repeat_rate": round(repeats / max(positions, 1), 3),
        "psnr_db": round(float(np.mean(psnr)), 2),
    }


@torch.no_grad()
def initial_logit_std(model: DVAE, video: torch.Tensor) -> float:
    video = fit_frames(video[:, :8], model.config.frame_size)
    _, _, logits = model(video, torch.zeros(1, dtype=torch.long), sample=False)
    return round(float(logits.std(dim=-1).mean()), 3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    train, held_out = clips(args.data, "train"), clips(args.data, args.split)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for norm in (False, True):
            model_config = dataclasses.replace(tiny().model, memcode_norm=norm)
            config = dataclasses.replace(tiny(), steps=args.steps, seed=seed, device="cpu", video_every=10**9,
                                         model=model_config)  # fmt: skip
            torch.manual_seed(seed)
            fresh = DVAE(config.model).eval()
            start_std = initial_logit_std(fresh, train[0])
            run = args.out / f"norm-{norm}-seed-{seed}"
            train_dvae(config, args.data, run)
            model, _ = load_dvae(run)
            row = {
                "memcode_norm": norm,
                "seed": seed,
                "logit_std_init": start_std,
                **measure(model, train, held_out),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "memcodes-ab.json").write_text(json.dumps(rows, indent=2))
    buffer = io.StringIO()
    buffer.write("| memcode_norm | seed | logit std at init | argmax perplexity per head | Memcodes used "
                 "| repeat rate | held-out PSNR dB |\n|---|---|---|---|---|---|---|\n")  # fmt: skip
    for r in rows:
        buffer.write(f"| {r['memcode_norm']} | {r['seed']} | {r['logit_std_init']} | "
                     f"{' / '.join(map(str, r['perplexity']))} | {r['memcodes_used']} | {r['repeat_rate']} | "
                     f"{r['psnr_db']} |\n")  # fmt: skip
    print(buffer.getvalue())


if __name__ == "__main__":
    main()
