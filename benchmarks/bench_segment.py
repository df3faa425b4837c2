"""Benchmark: the segment stage's wall time per source-hour, against a plain ffmpeg stream copy.

For each file, in the same run and interleaved, best of N:
  segment     the whole `run_segment` stage (one worker) on a fresh workspace holding only that
              episode: probe the source, ffmpeg's segment muxer, probe every clip, place the clips,
              write the catalog rows;
  ffmpeg copy `ffmpeg -i SRC -map 0 -c copy -f null -`, the floor for anything that reads every packet.
The ratio is segment / ffmpeg copy. The breakdown columns say where the best segment run spent its
time (the library's own functions, timed by wrapping them for the run; nothing is replaced).

Files: a generated 1280x720 episode of a few minutes, a long 320x180 one (the per-hour cost should
not grow with an episode's length; packet counts, not pixels, drive the non-ffmpeg parts), both
cached in the system temp folder, and, when present, the real clips in ../shared/media.
Run with `nox -s bench` or `python benchmarks/bench_segment.py --runs 5`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import nwt_data.stages.segment as segment_stage
from nwt_data.catalog import Catalog, EpisodeSource
from nwt_data.config import CropSpec, SegmentConfig
from nwt_data.media.ffmpeg import copy_to_null_args, lavfi_demo_args, run_ffmpeg
from nwt_data.media.probe import probe
from nwt_data.stages.segment import run_segment
from nwt_data.workspace import Workspace

SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
CACHE_DIR = Path(tempfile.gettempdir()) / "nwt-bench"
PARTS = ("probe source", "ffmpeg segment", "probe clips", "place clips", "catalog write")

# Off a terminal (nox, a log file) rich would wrap the table at 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=200)


# --- inputs ------------------------------------------------------------------------------------
def generated_episode(seconds: float, width: int, height: int, cache_dir: Path) -> Path:
    """A 30 fps, GOP 60 H.264/AAC episode, generated once and kept in `cache_dir`."""
    out = cache_dir / f"lavfi-{width}x{height}-30fps-gop60-{seconds:g}s.mp4"
    if out.exists():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.{os.getpid()}.partial.mp4")
    console.print(f"generating {out.name} (once; cached in {cache_dir}) ...")
    start = time.perf_counter()
    run_ffmpeg(lavfi_demo_args(partial, seconds=seconds, width=width, height=height, fps="30", gop=60))
    partial.replace(out)
    console.print(f"  done in {time.perf_counter() - start:.1f} s")
    return out


# --- timing ------------------------------------------------------------------------------------
@dataclass
class Breakdown:
    source: Path
    parts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))

    def timed(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                part = name
                if name == "probe":
                    is_source = Path(args[0]).resolve() == self.source.resolve()
                    part = "probe source" if is_source else "probe clips"
                self.parts[part] = self.parts.get(part, 0.0) + time.perf_counter() - start

        return wrapper


# The segment module's names timed for the breakdown, and the part each one counts towards.
TIMED = {
    "probe": "probe",
    "run_ffmpeg": "ffmpeg segment",
    "place_segments": "place clips",
    "clip_rows": "place clips",
}


@contextlib.contextmanager
def instrumented(breakdown: Breakdown, catalog: Catalog) -> Iterator[None]:
    """Time the segment stage's calls of its library functions (the real ones, wrapped)."""
    saved = {name: getattr(segment_stage, name, None) for name in TIMED}
    for name, func in saved.items():
        if func is not None:  # a name the library no longer has is simply not broken down
            setattr(segment_stage, name, breakdown.timed(TIMED[name], func))
    catalog.save_segmentation = breakdown.timed("catalog write", catalog.save_segmentation)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for name, func in saved.items():
            if func is not None:
                setattr(segment_stage, name, func)


def fresh_workspace(root: Path, source: Path) -> tuple[Workspace, Catalog, Path]:
    """A workspace whose catalog holds `source` as one fetched episode (hard-linked, not copied)."""
    ws = Workspace.open(root)
    episode_id = "bench"
    target = ws.episodes_dir / f"{episode_id}{source.suffix.lower()}"
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    catalog = Catalog(ws.catalog_path)
    catalog.add_episode(EpisodeSource(episode_id, str(source), "file", None, {}))
    catalog.mark_fetched(episode_id, path=ws.relative(target), size=target.stat().st_size, sha256="-",
                         downloader="bench", probe={}, attempts=1)  # fmt: skip
    return ws, catalog, target


def time_segment(source: Path, config: SegmentConfig) -> tuple[float, Breakdown, int]:
    """Wall time of one `run_segment` over `source` on a fresh workspace (setup not timed)."""
    with tempfile.TemporaryDirectory(prefix="nwt-bench-ws-", dir=CACHE_DIR) as tmp:
        ws, catalog, target = fresh_workspace(Path(tmp) / "ws", source)
        breakdown = Breakdown(target)
        quiet = Console(file=io.StringIO())
        with instrumented(breakdown, catalog):
            start = time.perf_counter()
            report = run_segment(ws, catalog, config, quiet)
            elapsed = time.perf_counter() - start
        if report.failures or report.counts.get("episodes segmented") != 1:
            raise SystemExit(f"segment failed on {source.name}: {report.failures or report.counts}")
        clips = len(catalog.clips())
        catalog.close()
    return elapsed, breakdown, clips


def time_ffmpeg_copy(source: Path) -> float:
    start = time.perf_counter()
    run_ffmpeg(copy_to_null_args(source))
    return time.perf_counter() - start


# --- main --------------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    source_seconds: float
    segment: float
    breakdown: Breakdown
    clips: int
    ffmpeg: float


def bench_file(source: Path, config: SegmentConfig, runs: int) -> Result:
    source_seconds = probe(source).video_duration
    time_ffmpeg_copy(source)  # warm the page cache; not counted
    segment_runs: list[tuple[float, Breakdown, int]] = []
    copy_runs: list[float] = []
    for _ in range(runs):  # interleaved, so both see the same machine state
        segment_runs.append(time_segment(source, config))
        copy_runs.append(time_ffmpeg_copy(source))
    best, breakdown, clips = min(segment_runs, key=lambda run: run[0])
    return Result(source.name, source_seconds, best, breakdown, clips, min(copy_runs))


def render(results: list[Result], runs: int) -> Table:
    table = Table(title=f"segment stage vs ffmpeg -c copy -f null (best of {runs})", header_style="bold")
    for name in ("file", "source s", "clips", "segment wall s", "s per source-hour",
                 "ffmpeg copy wall s", "ratio", *PARTS, "other"):  # fmt: skip
        if name == "file":
            table.add_column(name, no_wrap=True, min_width=max(len(r.name) for r in results))
        else:
            table.add_column(name, justify="right")
    for r in results:
        parts = r.breakdown.parts
        other = r.segment - sum(parts.get(p, 0.0) for p in PARTS)
        table.add_row(
            r.name,
            f"{r.source_seconds:.2f}",
            str(r.clips),
            f"{r.segment:.3f}",
            f"{r.segment / r.source_seconds * 3600:.1f}",
            f"{r.ffmpeg:.3f}",
            f"{r.segment / r.ffmpeg:.2f}x",
            *(f"{parts.get(p, 0.0):.3f}" for p in PARTS),
            f"{other:.3f}",
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per file; the best counts")
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the generated 720p episode")
    parser.add_argument(
        "--long-seconds",
        type=float,
        default=1200.0,
        help="length of a generated 320x180 episode that shows how the cost grows with length (0: none)",
    )
    parser.add_argument("--segment-time", type=float, default=4.0, help="ffmpeg -segment_time")
    parser.add_argument("--media", type=Path, default=SHARED_MEDIA, help="folder of real clips (*.mp4)")
    parser.add_argument("--no-real", action="store_true", help="skip the real clips")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    sources = [generated_episode(args.seconds, 1280, 720, CACHE_DIR)]
    if args.long_seconds > 0:
        sources.append(generated_episode(args.long_seconds, 320, 180, CACHE_DIR))
    if not args.no_real:
        if args.media.is_dir():
            sources += sorted(args.media.glob("*.mp4"))
        else:
            console.print(f"[dim]{args.media} is absent: generated episode only[/]")
    # Square real clips do not fit the paper's 16:9 crop box; the crop is only recorded anyway.
    config = SegmentConfig(workers=1, segment_time=args.segment_time, crop=CropSpec(mode="center"))

    results = []
    for source in sources:
        console.print(f"timing {source.name} ...")
        results.append(bench_file(source, config, args.runs))
    console.print(render(results, args.runs))
    console.print(
        "[dim]s per source-hour: segment wall seconds per hour of source video. ratio: segment wall /"
        " ffmpeg copy wall on the same file. Breakdown: the best segment run; other = temp folders,"
        " moving the clips in, thread pool and progress bar.[/]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
