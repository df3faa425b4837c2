"""dVAE-Adv training speed and Memcode health on one accelerator: step time, peak memory, MFU.

Runs `train_dvae.train_step` (the trainer's own step: critic update with the gradient penalty, then
the generator update) on clips of real footage (the MP4s of ../shared/media, decoded with PyAV, area
scaled to the preset's frame size, cut into windows), without the shard pipeline, so the figures are
the model's. The global batch is the preset's (paper: 16 clips of 30 frames) as `--micro` clips at a
time with gradient accumulation. FLOPs: torch's FlopCounterMode counts one forward pass of the dVAE
(F_d) and of the critics (F_c) on a micro-batch (it cannot follow the penalty's double backward), and
a step is counted as passes of those: dVAE forward + backward 3 F_d (+ F_d for the critic's no-grad
forward when accumulating); critic step 3 F_c on real, 3 F_c on fake, 9 F_c for the penalty (forward,
input gradient, backward through both); generator step F_c on the target, 3 F_c on the
reconstruction. MFU = FLOPs / step time / the device's dense peak (`--peak-tflops`, or a table of
known devices by name).

    python benchmarks/bench_dvae_gpu.py --precision bf16 --steps 300 --out gpu-dvae/bf16.json
    python benchmarks/bench_dvae_gpu.py --preset tiny --device cpu --steps 3       # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from nwt_train import dist
from nwt_train.config import PRESETS, with_overrides
from nwt_train.data import to_unit_range
from nwt_train.train_dvae import build, fit_frames, train_step

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
# Dense peak TFLOPS (bf16 / tf32 tensor cores) by device-name substring; fp32 on CPU is not rated.
PEAKS = {"H200": (989.0, 494.0), "H100": (989.0, 494.0), "A100": (312.0, 156.0), "L40S": (362.0, 183.0)}


def real_clips(folder: Path, frames: int, size: tuple[int, int], count: int) -> torch.Tensor:
    """`count` windows of `frames` frames from the MP4s in `folder`, (count, T, 3, H, W) in [-1, 1]."""
    import av

    windows = []
    for path in sorted(folder.glob("*.mp4")):
        with av.open(str(path)) as container:
            rgb = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        side = min(rgb.shape[1:3])  # centre square crop, then the model's aspect by area scaling
        top, left = (rgb.shape[1] - side) // 2, (rgb.shape[2] - side) // 2
        video = fit_frames(to_unit_range(rgb[:, top : top + side, left : left + side])[None], size)[0]
        windows += [video[s : s + frames] for s in range(0, len(video) - frames + 1, frames)]
    if not windows:
        raise SystemExit(f"no MP4 of at least {frames} frames in {folder}")
    return torch.stack([windows[i % len(windows)] for i in range(count)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    parser.add_argument("--precision", default="tf32", choices=["tf32", "bf16", "fp32"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--micro", type=int, default=1, help="clips per micro-batch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--media", type=Path, default=MEDIA)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--peak-tflops", type=float, default=0.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    base = PRESETS[args.preset]()
    config = with_overrides(
        base,
        {"accumulate": base.batch_size // args.micro, "tf32": args.precision == "tf32",
         "bf16": args.precision == "bf16", "device": args.device},
    )  # fmt: skip
    ctx = dist.setup(config.device)
    autocast = dist.precision(ctx, tf32=config.tf32, bf16=config.bf16)
    if args.precision == "fp32" and ctx.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    clips = real_clips(args.media, config.frames, config.model.frame_size, config.batch_size)
    episode = torch.zeros(config.batch_size, dtype=torch.long, device=ctx.device)
    video = clips.to(ctx.device)
    parts = build(config, ctx.device)
    nets = {"dvae": parts["dvae"], "critics": parts["critics"]}
    params = sum(p.numel() for m in nets.values() for p in m.parameters())

    def sync() -> None:
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()

    from torch.utils.flop_counter import FlopCounterMode

    micro = video[: args.micro]
    with torch.no_grad(), autocast, FlopCounterMode(display=False) as count_dvae:
        fake = nets["dvae"](micro, episode[: args.micro])[0]
    with torch.no_grad(), autocast, FlopCounterMode(display=False) as count_critics:
        nets["critics"](fake.float())
    f_d, f_c = count_dvae.get_total_flops(), count_critics.get_total_flops()
    flops = config.accumulate * ((3 + (config.accumulate > 1)) * f_d + 19 * f_c)
    for step in range(args.warmup):
        train_step(parts, nets, video, episode, config=config, step=step, autocast=autocast)
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    times, health = [], []
    for step in range(args.warmup, args.warmup + args.steps):
        start = time.perf_counter()
        monitor = (step + 1) % args.log_every == 0
        out = train_step(
            parts, nets, video, episode, config=config, step=step, autocast=autocast, monitor=monitor
        )
        sync()
        if not monitor:  # monitored steps do extra work
            times.append(time.perf_counter() - start)
        else:
            logs = {k: float(v) for k, v in out["logs"].items()}
            health.append(
                {"step": step + 1}
                | {k: v for k, v in logs.items() if k.startswith(("memcodes/", "grad/"))}
                | {k: logs[k] for k in ("loss/recon", "recon/pixel_l1", "critic/gradient_penalty")}
            )
            print(json.dumps(health[-1]))
    step_time = float(np.median(times))
    name = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu"
    peak = args.peak_tflops or next(
        (p[0] if args.precision == "bf16" else p[1] for key, p in PEAKS.items() if key in name), 0.0
    )
    result = {
        "device": name,
        "preset": args.preset,
        "precision": args.precision,
        "global_batch": config.batch_size,
        "micro_batch": args.micro,
        "accumulate": config.accumulate,
        "frames": config.frames,
        "parameters": params,
        "timed_steps": len(times),
        "step_time_s_median": step_time,
        "clips_per_s": config.batch_size / step_time,
        "tflop_per_step": flops / 1e12,
        "forward_tflop_per_micro_batch": {"dvae": f_d / 1e12, "critics": f_c / 1e12},
        "achieved_tflops": flops / step_time / 1e12,
        "peak_tflops": peak or None,
        "mfu": flops / step_time / (peak * 1e12) if peak else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated(ctx.device) / 2**30
        if ctx.device.type == "cuda"
        else None,
        "health": health,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "health"}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
