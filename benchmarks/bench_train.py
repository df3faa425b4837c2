"""Training throughput of `nwt-train dvae` (clips/s), on generated shards.

Usage: python benchmarks/bench_train.py [--preset tiny] [--steps N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from nwt_data import config as data_config
from nwt_data.catalog import Catalog
from nwt_data.demo import STUDIO_BACKGROUND, STUDIO_FILTER
from nwt_data.media.ffmpeg import lavfi_demo_args, run_ffmpeg
from nwt_data.stages.fetch import run_fetch
from nwt_data.stages.mask import run_mask
from nwt_data.stages.segment import run_segment
from nwt_data.stages.shard import run_shard
from nwt_data.workspace import Workspace
from nwt_train.config import PRESETS, with_overrides
from nwt_train.train_dvae import train_dvae


def make_shards(root: Path) -> Path:
    source = root / "studio.mp4"
    args = lavfi_demo_args(source, seconds=16.5, width=640, height=360, fps="30", gop=60,
                           source=STUDIO_BACKGROUND, extra_video_filter=STUDIO_FILTER)  # fmt: skip
    run_ffmpeg(args)
    (root / "m.csv").write_text(f"episode_id,url\nstudio,{source}\n")
    ws = Workspace.open(root / "ws")
    catalog, quiet = Catalog(ws.catalog_path), Console(quiet=True)
    run_fetch(ws, catalog, root / "m.csv", data_config.FetchConfig(), quiet)
    run_segment(ws, catalog, data_config.SegmentConfig(), quiet)
    run_mask(ws, catalog, data_config.MaskConfig(include_unreviewed=True), quiet)
    run_shard(ws, catalog, data_config.ShardConfig(), quiet)
    return ws.shards_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        shards = make_shards(Path(tmp))
        config = with_overrides(
            PRESETS[args.preset](),
            {"steps": args.steps, "log_every": 10, "video_every": 10**9, "checkpoint_every": 10**9},
        )
        speeds: list[float] = []
        start = time.perf_counter()
        train_dvae(
            config, shards, Path(tmp) / "run", progress=lambda s, v: speeds.append(v["speed/clips_per_s"])
        )
        wall = time.perf_counter() - start
    table = Table(title=f"nwt-train dvae, preset {args.preset}", header_style="bold")
    for column in ("device", "steps", "batch", "frames", "clips/s (after warm-up)", "wall s"):
        table.add_column(column)
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU, {torch.get_num_threads()} threads"
    )
    steady = sorted(speeds[1:] or speeds)[len(speeds[1:] or speeds) // 2]
    table.add_row(
        device, str(args.steps), str(config.batch_size), str(config.frames), f"{steady:.2f}", f"{wall:.1f}"
    )
    console.print(table)


if __name__ == "__main__":
    main()
