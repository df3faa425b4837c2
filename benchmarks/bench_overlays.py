"""Measure the two overlay rules (`paper`, `graphic`) on the real clips and the generated cases.

For each clip: the frames are cropped as `nwt-data segment --crop center` would (the real clips) or
are the generated 448x512 crops; the paper rule runs on every frame, the graphic rule plans from the
frames sampled at `overlay_fps` (and OCR at `text_fps`) and paints its boxes on every frame.
Columns: frames with a false box (painted more than 0.2% of the frame outside the true overlays) and
the mean share of the frame painted outside them; frames with an overlay whose area is at least 90%
painted. Real clips: only vexpress_case10 has an overlay (its inset, bottom left, whole clip). Also
the graphic rule's CPU seconds per clip-second (sampling, OCR and planning; decoding not counted).
The sets are totalled apart: the issue's evaluation set (the real clips and `cases`), the
development cases (`development_cases`: the banners held out at an earlier stop and the cases the
rule was then extended on; `development_episodes`: set pieces in every clip of an episode, the
evidence across an episode was built on), and the held-out cases (`held_out_cases`: overlays;
`held_out_cases_2`: overlay-free set pieces, one clip each; `held_out_episodes`: set pieces and side
boxes in episodes; `held_out_episodes_2`: a mirror the speaker passes in front of, a whiteboard held
still, a lower third with another name in each clip; `held_out_episodes_3`: a framed photo under
camera noise and changing exposure, a side box with another picture in each clip, a news ticker),
each written after the rule was frozen and measured once before any change.
Clips of an episode are planned alone, then what the episode shows as the set is spared, as `nwt-data
mask` does. `--only development` (or `evaluation`, `held-out`, `held-out-2`, ..., `held-out-5`) runs one.
Run with `python benchmarks/bench_overlays.py`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from nwt_data.config import MaskConfig
from nwt_data.curation.episode import ClipPlan, to_paint
from nwt_data.curation.overlay import plan_overlays, sample_clip
from nwt_data.curation.synthetic import (
    Case,
    EpisodeCase,
    cases,
    development_cases,
    development_episodes,
    held_out_cases,
    held_out_cases_2,
    held_out_episodes,
    held_out_episodes_2,
    held_out_episodes_3,
    score,
)
from nwt_data.stages.mask import OverlayRule, overlay_boxes

SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
# The inset of vexpress_case10 in its centre crop (448x512 of 512x512): drawn pixels, measured by eye
# on the decoded frames (x 0-93 after the 32-pixel crop offset, rows 448-511).
CASE10_INSET = (0, 448, 94, 64)
console = Console() if sys.stdout.isatty() else Console(width=200)


def real_cases() -> list[Case]:
    import av

    out = []
    for path in sorted(SHARED_MEDIA.glob("*.mp4")):
        with av.open(str(path)) as container:
            decoded = [
                (f.time, f.to_ndarray(format="rgb24"))
                for f in container.decode(video=0)
                if f.time is not None
            ]
        height, width = decoded[0][1].shape[:2]
        w = round(height * 224 / 256)
        x0 = (width - w) // 2
        frames = tuple(np.ascontiguousarray(rgb[:, x0 : x0 + w]) for _, rgb in decoded)
        inset = "inset_overlay" in path.name
        truth = tuple((CASE10_INSET,) if inset else () for _ in frames)
        out.append(Case(path.stem, tuple(float(t) for t, _ in decoded), frames, truth))
    return out


def measure(episode: EpisodeCase, config: MaskConfig) -> tuple[list[dict[str, object]], float]:
    """Both rules' scores for each clip of an episode, and the graphic rule's CPU seconds; the graphic
    rule spares what the episode's clips show as the set (`nwt_data.curation.episode`), as mask does."""
    start = time.process_time()
    plans = []
    for case in episode.clips:
        frames = zip(case.times, case.frames, strict=True)
        plan = plan_overlays(*sample_clip(frames, case.times[0], config.overlay_fps, config.text_fps))
        plans.append(ClipPlan(plan, (0, 0), case.frames[0].shape[0]))
    cpu = time.process_time() - start
    out = []
    for case, clip in zip(episode.clips, plans, strict=True):
        grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in case.frames]
        rule = OverlayRule.for_crop(config, grays[0].shape[0])
        paper = score(grays[0].shape, case.truth, [overlay_boxes(g, rule) for g in grays])
        plan = to_paint(clip, plans, config.set_piece_share) if config.spare_set_pieces else clip.plan
        graphic = score(grays[0].shape, case.truth, [plan.boxes_at(t) for t in case.times])
        out.append({"paper": paper, "graphic": graphic})
    return out, cpu


def single_clips(make: Callable[[], list[Case]]) -> Callable[[], list[EpisodeCase]]:
    """Cases measured alone: each an episode of one clip (no evidence across clips)."""
    return lambda: [EpisodeCase(c.name, (c,)) for c in make()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sets = ("evaluation", "development", "held-out", "held-out-2", "held-out-3", "held-out-4", "held-out-5")
    parser.add_argument("--only", choices=sets, help="run one set")
    args = parser.parse_args(argv)
    config = MaskConfig(workers=1)
    table = Table(title="overlay rules: false boxes on overlay-free content, overlay frames masked")
    for column in ("source", "clip", "overlay", "paper: false frames", "paper: false area", "paper: masked",
                   "graphic: false frames", "graphic: false area", "graphic: masked"):  # fmt: skip
        table.add_column(column)
    # Totals per set: the real clips with the generated cases (the evaluation set), and
    # apart, the development and the held-out cases.
    totals: dict[tuple[str, str], list[int]] = {}
    cpu, seconds = 0.0, 0.0
    groups = [("generated", "evaluation", single_clips(cases)),
              ("development", "development", single_clips(development_cases)),
              ("dev episodes", "development", development_episodes),
              ("held out", "held-out", single_clips(held_out_cases)),
              ("held out 2", "held-out-2", single_clips(held_out_cases_2)),
              ("held out 3", "held-out-3", held_out_episodes),
              ("held out 4", "held-out-4", held_out_episodes_2),
              ("held out 5", "held-out-5", held_out_episodes_3)]  # fmt: skip
    if SHARED_MEDIA.is_dir():
        groups.insert(0, ("shared/media", "evaluation", single_clips(real_cases)))
    for source, total, make in groups:
        if args.only and total != args.only:
            continue
        for episode in make():
            clip_scores, used = measure(episode, config)
            cpu += used
            for case, scores in zip(episode.clips, clip_scores, strict=True):
                seconds += case.times[-1] - case.times[0] + (case.times[1] - case.times[0])
                name = case.name if len(episode.clips) == 1 else f"{episode.name}: {case.name}"
                cells = [source, name, "yes" if case.has_overlay else "no"]
                for rule in ("paper", "graphic"):
                    s = scores[rule]
                    masked = f"{s.overlay_masked}/{s.overlay_frames}" if s.overlay_frames else "-"
                    cells += [f"{s.false_frames}/{s.frames}", f"{s.false_area:.3f}", masked]
                    t = totals.setdefault((total, rule), [0, 0, 0, 0, 0, 0])
                    kind = 2 if case.has_overlay else 0  # overlay-free clips, then overlay clips
                    t[kind] += 1
                    t[kind + 1] += s.false_frames > 0
                    t[4] += s.overlay_masked
                    t[5] += s.overlay_frames
                table.add_row(*cells)
    console.print(table)
    for (total, name), (free, free_false, shown, shown_false, masked, frames) in totals.items():
        share = masked / max(1, frames)
        console.print(f"{total:11} {name:8} overlay-free clips with a false box: {free_false}/{free};"
                      f" overlay clips with a false box: {shown_false}/{shown};"
                      f" overlay frames masked: {masked}/{frames} ({share:.1%})")  # fmt: skip
    rate = cpu / seconds
    console.print(
        f"graphic rule planning (sampling at {config.overlay_fps:g} fps, OCR at {config.text_fps:g} fps,"
        f" decoding not counted): {rate:.4f} CPU-s per clip-second"
    )


if __name__ == "__main__":
    main()
