"""`nwt-data report`: the dataset as one self-contained HTML page (see nwt_data.curation.report).

The only I/O here: one catalog read for the statistics, and for each sampled clip one decode of its
kept window (the middle frame), with the overlay plan `nwt-data mask` uses (made, or read from the
workspace's plan cache, for the clip and its episode's other clips).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nwt_data.catalog import Catalog
from nwt_data.config import MaskConfig
from nwt_data.contract import write_atomic
from nwt_data.curation.report import Tile, draw_tile, gather, relative_href, render, sample_clips
from nwt_data.errors import ConfigError, MediaError
from nwt_data.media.clip import ClipWindow, sampled_frames
from nwt_data.stages.mask import OverlayRule, clip_plan, overlay_boxes, without_set_pieces
from nwt_data.workspace import Workspace


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    """`nwt-data report`: the dataset report."""

    out: str = "report.html"
    """The HTML file to write (relative paths are inside the workspace)."""
    sheet_clips: int = 48
    """Clips sampled for the contact sheets (0: none)."""
    seed: int = 0
    """Seed of the sample: the same seed shows the same clips."""
    mask: MaskConfig = dataclasses.field(default_factory=MaskConfig)
    """The overlay rule drawn on the sheets: the workspace's [mask] table."""

    def __post_init__(self) -> None:
        if not 0 <= self.sheet_clips <= 10_000:
            raise ConfigError(f"report: sheet_clips must be within 0..10000, not {self.sheet_clips}")
        if not self.out.endswith((".html", ".htm")):
            raise ConfigError(f"report: out must be an .html file, not {self.out!r}")


def middle_frame_and_boxes(
    ws: Workspace, row: Any, config: MaskConfig, episode: Sequence[Any] = ()
) -> tuple[np.ndarray, list]:
    """The kept window's middle frame (RGB, cropped) and the boxes `nwt-data mask` paints on it
    (`episode`: the usable clips of its episode, the graphic rule's evidence of the set)."""
    import av

    window = ClipWindow.from_row(ws.root, row)
    middle = (window.trim_start + window.trim_end) / 2
    best: list[Any] = [None, None]  # time, frame

    def keep_middle(frames: Iterable[tuple[float, np.ndarray]]) -> Iterator[tuple[float, np.ndarray]]:
        for t, rgb in frames:
            if best[0] is None or abs(t - middle) < abs(best[0] - middle):
                best[0], best[1] = t, rgb
            yield t, rgb

    plan = None
    try:
        # One decode: the plan, when it is not in the cache yet, is made from the same samples.
        frames = keep_middle(sampled_frames(window, config.overlay_fps))
        if config.overlay_rule == "graphic":
            plan = clip_plan(ws, row, config, frames=frames)
        for _ in frames:  # the rest of the window (all of it when the plan came from the cache)
            pass
    except (av.FFmpegError, ValueError, OSError) as err:
        raise MediaError(f"cannot read {row['path']}: {err}") from err
    if best[1] is None:
        raise MediaError(f"{row['path']}: no frame in the kept window")
    if plan is not None:
        # Other clips count as evidence once flag, mask (or an earlier report) planned them:
        # planning whole episodes here would make a report of a sample as slow as mask.
        return best[1], without_set_pieces(ws, row, plan, episode, config, made_only=True).boxes_at(best[0])
    import cv2

    gray = cv2.cvtColor(np.ascontiguousarray(best[1]), cv2.COLOR_RGB2GRAY)
    return best[1], overlay_boxes(gray, OverlayRule.for_crop(config, window.crop[3]))


def build_report(ws: Workspace, catalog: Catalog, config: ReportConfig) -> tuple[Path, list[str]]:
    """Write the report; return its path and one line per sampled clip that could not be drawn."""
    rows = catalog.report_rows()
    flag_names = [c.removeprefix("flag_") for c in Catalog.FLAG_COLUMNS]
    stats = gather(rows, flag_names)
    out = Path(config.out)
    out = out if out.is_absolute() else ws.root / out
    kept = [r["clip_id"] for r in rows if r["status"] == "ok"]
    problems: list[str] = []
    tiles: list[Tile] = []
    sampled = [catalog.clip(clip_id) for clip_id in sample_clips(kept, config.sheet_clips, config.seed)]
    footage = catalog.episode_footage({c.episode_id for c in sampled if c is not None})
    for clip in sampled:
        assert clip is not None
        clip_id = clip.clip_id
        try:
            frame, boxes = middle_frame_and_boxes(ws, clip, config.mask, footage[clip.episode_id])
        except MediaError as err:
            problems.append(f"{clip_id}: {err.one_line()}")
            continue
        flags = [f for f in (clip["flags"] or "").split(",") if f]
        decision = clip["review"] or "unreviewed"
        caption = f"{clip_id} · {clip['duration']:.1f} s · {clip['split'] or 'no split'} · {decision}"
        tiles.append(
            Tile(clip_id, relative_href(ws.root / clip["path"], out), draw_tile(frame, boxes, flags), caption)
        )
    notes = (
        [f"{len(problems)} sampled clip(s) could not be drawn: {'; '.join(problems[:3])}"] if problems else []
    )
    page = render(f"nwt dataset report: {ws.root.name}", stats, tiles, notes)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, page.encode())
    return out, problems
