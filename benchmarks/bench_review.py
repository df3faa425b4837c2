"""How long the review app takes to show the next clip: cold (decode on demand) and prefetched.

Runs the real app headless (Textual's pilot) on generated 1280x720 clips with the paper's crop.
Usage: python benchmarks/bench_review.py [--clips N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from nwt_data import config as cfg
from nwt_data.catalog import Catalog
from nwt_data.demo import STUDIO_BACKGROUND, STUDIO_FILTER
from nwt_data.media.ffmpeg import lavfi_demo_args, run_ffmpeg
from nwt_data.review.app import ReviewApp, decode_clip
from nwt_data.review.session import ReviewSession
from nwt_data.stages.fetch import run_fetch
from nwt_data.stages.segment import run_segment
from nwt_data.workspace import Workspace


def build_workspace(root: Path, clips: int, console: Console) -> Workspace:
    source = root / "episode.mp4"
    args = lavfi_demo_args(
        source,
        seconds=4.0 * clips + 0.5,
        width=1280,
        height=720,
        fps="30000/1001",
        gop=120,
        source=STUDIO_BACKGROUND,
        extra_video_filter=STUDIO_FILTER,
    )
    run_ffmpeg(args)
    manifest = root / "m.csv"
    manifest.write_text(f"episode_id,url\nbench,{source}\n")
    ws = Workspace.open(root / "ws")
    catalog = Catalog(ws.catalog_path)
    quiet = Console(quiet=True)
    run_fetch(ws, catalog, manifest, cfg.FetchConfig(), quiet)
    run_segment(ws, catalog, cfg.SegmentConfig(), quiet)
    console.print(f"{len(catalog.clips('status = ?', ('ok',)))} clips of about 3.5 s, 1280x720 sources")
    return ws


async def time_app(ws: Workspace, steps: int) -> tuple[list[float], list[float]]:
    """Seconds from the key that asks for a clip to the first screen refresh showing its frame.

    cold: the first clip, decoded on demand; prefetched: each next clip after an accept key, once
    the prefetch ahead has finished (a person watches the current clip meanwhile). Screen refreshes
    are timed by wrapping the screen's layout refresh (benchmark-only instrumentation).
    """
    session = ReviewSession(Catalog(ws.catalog_path), "bench")
    app = ReviewApp(session, ws.root)
    refreshed: list[float] = []
    cold, warm = [], []
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        original = screen._refresh_layout

        def timed_refresh(*args, **kwargs):  # type: ignore[no-untyped-def]
            result = original(*args, **kwargs)
            refreshed.append(time.perf_counter())
            return result

        screen._refresh_layout = timed_refresh  # type: ignore[method-assign]
        for step in range(min(steps, len(session.queue))):
            clip_id = session.current_id
            while clip_id not in app.ready_at or refreshed[-1:] < [app.ready_at[clip_id]]:
                await pilot.pause(0.001)
            painted = next(t for t in refreshed if t >= app.ready_at[clip_id])
            (cold if step == 0 else warm).append(painted - app.shown_at[clip_id])
            for ahead in filter(None, (session.peek(1), session.peek(2))):
                while ahead not in app.cache:
                    await pilot.pause(0.01)
            await pilot.press("a")
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=8)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        ws = build_workspace(Path(tmp), args.clips, console)
        rows = Catalog(ws.catalog_path).clips("status = 'ok'")
        decode_times = []
        for row in rows:
            start = time.perf_counter()
            decode_clip(ws.root, row)
            decode_times.append(time.perf_counter() - start)
        cold, warm = asyncio.run(time_app(ws, args.clips))
    table = Table(title="review: time to show a clip", header_style="bold")
    table.add_column("what")
    table.add_column("median ms", justify="right")
    table.add_column("max ms", justify="right")
    table.add_column("n", justify="right")
    for name, values in (
        ("decode one clip for display (worker thread)", decode_times),
        ("key to first clip on screen, decoded on demand", cold),
        ("key to next clip on screen, prefetched", warm),
    ):
        table.add_row(
            name, f"{statistics.median(values) * 1000:.1f}", f"{max(values) * 1000:.1f}", str(len(values))
        )
    console.print(table)


if __name__ == "__main__":
    main()
