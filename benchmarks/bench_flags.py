"""Benchmark: automatic pre-flag computation, in CPU seconds per clip-second, against decoding the window.

For every usable clip of each source (best of --runs, one clip at a time):
  decode    reading the clip's kept, cropped window the way flag does, and nothing else:
            `kept_frames` (every frame decoded and converted to RGB) plus `kept_audio`;
  flags     `measure_clip`: that same read plus every detector (faces, overlay, inset, cut signature
            on every frame, speech level), i.e. what `nwt-data flag` does per clip;
  per clip-second = time / the clip's kept duration; `x decode` = flags / decode.
Then the whole stage (`run_flags`) over each source's workspace with 1 worker and with every CPU:
CPU seconds (all threads) per clip-second of all clips together (the goal: under 0.1). Times are CPU
seconds, not wall: the machine may be shared. Then flag precision and recall on cases with known
answers (benchmarks/flag_accuracy.py: the real clips, pasted real faces, real and generated sound,
the generated overlay cases), and the report's cost on 100,000 catalog rows.

Sources: the real clips in ../shared/media when present (segmented with --crop center, all in one
workspace, plus the flags each clip got), and a generated 1280x720 episode at 30000/1001 fps in the
demo's studio look (paper crop 623x712; cached in the system temp folder). The load average is
printed. Run with `python benchmarks/bench_flags.py` (or `nox -s bench -- flags`).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nwt_data.catalog import Catalog
from nwt_data.config import CropSpec, FetchConfig, MaskConfig, SegmentConfig
from nwt_data.demo import STUDIO_BACKGROUND, STUDIO_FILTER
from nwt_data.media.clip import ClipWindow, kept_audio, kept_frames
from nwt_data.media.ffmpeg import lavfi_demo_args, run_ffmpeg
from nwt_data.stages.fetch import run_fetch
from nwt_data.stages.flags import FlagConfig, decide, measure_clip, run_flags
from nwt_data.stages.report import ReportConfig, build_report
from nwt_data.stages.segment import run_segment
from nwt_data.workspace import Workspace

sys.path.insert(0, str(Path(__file__).parent))
from flag_accuracy import FLAGS, Tally, accuracy, real_clip_truth, report_cost

SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
CACHE_DIR = Path(tempfile.gettempdir()) / "nwt-bench"
REAL_EPISODES = {
    "face1-vfr": "retalking_face1_vfr_baseline.mp4",
    "face2-25fps": "retalking_face2_25fps.mp4",
    "aoc-ntsc": "vexpress_AOC_29.97fps.mp4",
    "case10-overlay": "vexpress_case10_inset_overlay.mp4",
    "sadtalker-mpeg4": "sadtalker_WDA_KatieHill_mpeg4.mp4",
}

# Off a terminal (nox, a log file) rich would wrap the tables at 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=200)


def quiet() -> Console:
    return Console(file=io.StringIO())


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def studio_episode(seconds: float) -> Path:
    """The demo's studio look at 1280x720, 30000/1001 fps, generated once and kept in CACHE_DIR
    (named by the look's filters, so a changed look is generated again)."""
    look = hashlib.sha256((STUDIO_BACKGROUND + STUDIO_FILTER).encode()).hexdigest()[:8]
    out = CACHE_DIR / f"studio-1280x720-30000_1001fps-{seconds:g}s-{look}.mp4"
    if not out.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.stem}.{os.getpid()}.partial.mp4")
        run_ffmpeg(lavfi_demo_args(partial, seconds=seconds, width=1280, height=720, fps="30000/1001", gop=60,
                                   source=STUDIO_BACKGROUND, extra_video_filter=STUDIO_FILTER))  # fmt: skip
        partial.replace(out)
    return out


def segmented_workspace(
    parent: Path, name: str, files: dict[str, Path], crop: CropSpec
) -> tuple[Workspace, Catalog]:
    """A fresh workspace with `files` fetched (copied) and segmented; not timed."""
    ws = Workspace.open(parent / name)
    catalog = Catalog(ws.catalog_path)
    manifest = parent / f"{name}.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode_id", "url"])
        writer.writerows([eid, str(path)] for eid, path in files.items())
    for report in (
        run_fetch(ws, catalog, manifest, FetchConfig(workers=cpu_count()), quiet()),
        run_segment(ws, catalog, SegmentConfig(workers=cpu_count(), crop=crop), quiet()),
    ):
        if report.failed:
            raise SystemExit(f"{report.stage} failed: {report.failures}")
    return ws, catalog


def best_of(runs: int, work: Callable[[], Any]) -> tuple[float, Any]:
    """The least CPU time (all threads of this process) of `runs` runs: the machine is shared, and
    CPU seconds are what a worker per core spends."""
    best, value = float("inf"), None
    for _ in range(runs):
        start = time.process_time()
        value = work()
        best = min(best, time.process_time() - start)
    return best, value


def decode_only(ws: Workspace, row: Any) -> int:
    window = ClipWindow.from_row(ws.root, row)
    frames = sum(1 for _ in kept_frames(window))
    kept_audio(window)
    return frames


@dataclass
class SourceResult:
    name: str
    clip_seconds: float
    decode: float
    flags: float
    stage: dict[int, float]  # workers -> CPU seconds of run_flags over the workspace
    ws: Any = None
    catalog: Any = None


def bench_source(name: str, ws: Workspace, catalog: Catalog, config: FlagConfig, runs: int,
                 table: Table, tally: Tally, real: bool) -> SourceResult:  # fmt: skip
    rows = catalog.clips("status = 'ok'")
    total = SourceResult(name, 0.0, 0.0, 0.0, {}, ws, catalog)
    for row in rows:
        seconds = row["duration"]
        decode, frames = best_of(runs, lambda row=row: decode_only(ws, row))
        flags, measures = best_of(runs, lambda row=row: measure_clip(ws, row, config))
        faces, raised = decide(measures, config)
        if real:
            tally.add(raised, real_clip_truth(row["episode_id"]), FLAGS)
        names = ",".join(c.removeprefix("flag_") for c, on in raised.items() if on) or "-"
        crop = f"{row['crop_w']}x{row['crop_h']}"
        table.add_row(name, row["clip_id"], crop, f"{seconds:.2f}", str(frames), str(measures.sampled),
                      f"{decode / seconds:.3f}", f"{flags / seconds:.3f}", f"{flags / decode:.1f}",
                      str(faces), names)  # fmt: skip
        total.clip_seconds += seconds
        total.decode += decode
        total.flags += flags
    for workers in sorted({1, cpu_count()}):
        staged = FlagConfig(workers=workers)

        def stage(staged: FlagConfig = staged) -> None:
            report = run_flags(ws, catalog, staged, quiet(), redo=True)
            if report.failed:
                raise SystemExit(f"flag failed: {report.failures}")

        total.stage[workers] = best_of(runs, stage)[0]
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per clip; the best counts")
    parser.add_argument("--seconds", type=float, default=24.0, help="length of the generated episode")
    parser.add_argument("--keep", action="store_true", help="keep the workspaces (printed)")
    args = parser.parse_args(argv)

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    console.print(f"flag benchmark: {cpu_count()} CPUs, load average {load[0]:.2f}, best of {args.runs}")
    config = FlagConfig(workers=1)
    parent = Path(tempfile.mkdtemp(prefix="nwt-bench-flags-"))
    clips = Table(
        title="flags per clip, one clip at a time: CPU seconds per clip-second", header_style="bold"
    )
    tally = Tally()
    for column in ("source", "clip", "crop", "clip s", "frames", "sampled", "decode s/s", "flags s/s",
                   "x decode", "faces", "flags raised"):  # fmt: skip
        clips.add_column(column, justify="left" if column in ("source", "clip", "flags raised") else "right")
    results = []
    try:
        sources: list[tuple[str, dict[str, Path], CropSpec]] = []
        if SHARED_MEDIA.is_dir():
            real = {eid: SHARED_MEDIA / name for eid, name in REAL_EPISODES.items()}
            sources.append(("real clips", real, CropSpec(mode="center")))
        else:
            console.print(f"[yellow]{SHARED_MEDIA} is absent: generated media only[/]")
        sources.append(("generated 720p", {"studio": studio_episode(args.seconds)}, CropSpec()))
        for name, files, crop in sources:
            ws, catalog = segmented_workspace(parent, name.replace(" ", "-"), files, crop)
            real = name == "real clips"
            results.append(bench_source(name, ws, catalog, config, args.runs, clips, tally, real))
        console.print(clips)

        summary = Table(title="flag stage: CPU seconds per clip-second", header_style="bold")
        stages = [f"run_flags, {w} worker{'s' * (w > 1)}" for w in sorted({1, cpu_count()})]
        for column in (
            "source",
            "clip-seconds",
            "decode (1 clip)",
            "flags (1 clip)",
            "x decode",
            *stages,
        ):
            summary.add_column(column, justify="left" if column == "source" else "right")
        for r in results:
            summary.add_row(r.name, f"{r.clip_seconds:.1f}", f"{r.decode / r.clip_seconds:.3f}",
                            f"{r.flags / r.clip_seconds:.3f}", f"{r.flags / r.decode:.1f}",
                            *(f"{r.stage[w] / r.clip_seconds:.3f}" for w in sorted(r.stage)))  # fmt: skip
        console.print(summary)
        accuracy(tally, SHARED_MEDIA if SHARED_MEDIA.is_dir() else None)
        console.print(tally.table())
        cpu, per_clip_second = report_cost()
        console.print(f"report (statistics and plots, no sheets) on 100,000 clips: {cpu:.2f} CPU s,"
                      f" {per_clip_second:.2e} CPU s per clip-second")  # fmt: skip
        for r in results:
            if r.name == "real clips":
                start = time.process_time()
                build_report(r.ws, r.catalog, ReportConfig(sheet_clips=48, mask=MaskConfig(workers=1)))
                cpu = time.process_time() - start
                rate = cpu / r.clip_seconds
                console.print(f"report with contact sheets on {r.name} ({r.clip_seconds:.1f} clip-seconds):"
                              f" {cpu:.2f} CPU s, {rate:.3f} CPU s per clip-second")  # fmt: skip
    finally:
        if args.keep:
            console.print(f"workspaces kept in {parent}")
        else:
            shutil.rmtree(parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
