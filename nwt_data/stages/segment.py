"""`nwt-data segment`: split episodes at keyframes, then record crop and trim (Appendix D 2-4).

ffmpeg's segment muxer cuts each episode in stream copy (no re-encode), so every clip starts on a
keyframe. The muxer shifts each clip's timestamps, so the clip's place in the episode is not taken
from its segment list but recovered packet by packet: the clip's video packets are the source's
video packets in the same decode order, which gives the exact offset between the two timelines and
proves it for every frame. Every audio packet of the clip must then land on a source audio packet
under that same offset; otherwise the clip is rejected rather than kept with shifted audio.

Crop and trim are recorded, not applied: the mask stage applies them in its single decode pass,
and review shows the same cropped, trimmed window.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from rich.console import Console

from nwt_data.catalog import Catalog, Episode, Status
from nwt_data.config import (
    OUTPUT_ASPECT,
    OUTPUT_HEIGHT,
    OUTPUT_WIDTH,
    CropSpec,
    RunConfig,
    SegmentConfig,
    to_dict,
)
from nwt_data.errors import CropError, MediaError, NwtError
from nwt_data.media.ffmpeg import run_ffmpeg, segment_args
from nwt_data.media.probe import MediaInfo, Packets, probe
from nwt_data.runner import Selection, Stage, run_stage
from nwt_data.stages import StageReport
from nwt_data.workspace import Workspace, clear_trash, replace_dir

# Audio must cover the kept window to within this many seconds (a fraction of one AAC packet).
AUDIO_COVER_TOLERANCE = 0.005


# --- crop (pure) ---------------------------------------------------------------------------------
# The smallest crop worth scaling to the 224x256 training frames: a quarter of them each way. Scaled
# up further, a frame is blur and a face in it a few pixels.
MIN_CROP_WIDTH, MIN_CROP_HEIGHT = OUTPUT_WIDTH // 4, OUTPUT_HEIGHT // 4


def resolve_crop(spec: CropSpec, width: int, height: int) -> tuple[int, int, int, int]:
    """The crop box (x, y, w, h) in this source's pixels; CropError when it cannot fit or is too
    small, MediaError when the whole frame is."""
    if width < MIN_CROP_WIDTH or height < MIN_CROP_HEIGHT:
        raise MediaError(
            f"the video is only {width}x{height} pixels: too small for {OUTPUT_WIDTH}x{OUTPUT_HEIGHT}"
            f" training frames (a crop of at least {MIN_CROP_WIDTH}x{MIN_CROP_HEIGHT} is needed)",
            hint="fetch a larger version of the video, or leave it out of the manifest",
        )
    box = _crop_box(spec, width, height)
    if box[2] < MIN_CROP_WIDTH or box[3] < MIN_CROP_HEIGHT:
        raise CropError(
            f"crop box {box[2]}x{box[3]} is smaller than {MIN_CROP_WIDTH}x{MIN_CROP_HEIGHT}: scaled to"
            f" {OUTPUT_WIDTH}x{OUTPUT_HEIGHT} frames it would hold no detail",
            hint=f"give a larger box (--crop X,Y,W,H@{width}x{height}) or pass --crop center",
        )
    return box


def _crop_box(spec: CropSpec, width: int, height: int) -> tuple[int, int, int, int]:
    if spec.mode == "none":
        return (0, 0, width, height)
    if spec.mode == "center":
        if width / height >= OUTPUT_ASPECT:
            w = min(width, round(height * OUTPUT_ASPECT))
            return ((width - w) // 2, 0, w, height)
        h = min(height, round(width / OUTPUT_ASPECT))
        return (0, (height - h) // 2, width, h)
    ref_w, ref_h = spec.reference
    sx, sy = width / ref_w, height / ref_h
    if abs(sx - sy) > 0.01 * max(sx, sy):
        raise CropError(
            f"crop box {spec.describe()} is for {ref_w}x{ref_h} frames; this source is {width}x{height}"
            " with another aspect ratio",
            hint=f"pass --crop center, or a box in this source's pixels: --crop X,Y,W,H@{width}x{height}",
        )
    x, y, w, h = (round(v * sx) for v in spec.box)
    if x + w > width or y + h > height:
        raise CropError(
            f"crop box {x},{y},{w},{h} does not fit the {width}x{height} frame",
            hint="give a box inside the frame with --crop X,Y,W,H@WIDTHxHEIGHT",
        )
    return (x, y, w, h)


# --- clip timing (pure) --------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipTiming:
    """One segment file placed on the episode timeline."""

    start_pts: int  # source video time base ticks
    end_pts: int
    time_base: Fraction
    clip_offset: float  # episode time = clip-file time + clip_offset
    frame_count: int  # frames in the segment file
    has_audio: bool
    av_offset: float | None  # first audio minus first video time, in the clip file
    audio_span: tuple[float, float] | None  # episode timeline
    problem: str | None  # why the clip cannot be used as it is

    @property
    def start(self) -> float:
        return float(self.start_pts * self.time_base)

    @property
    def end(self) -> float:
        return float(self.end_pts * self.time_base)


def leading_non_keyframes(packets: Packets) -> int:
    """Video packets before the first keyframe (decode order): a source cut mid-GOP starts with
    frames that need earlier ones to decode, and ffmpeg's stream copy drops them."""
    keys = np.flatnonzero(packets.keyframe)
    return int(keys[0]) if len(keys) else len(packets)


def first_copied(source: MediaInfo, segments: list[MediaInfo]) -> int:
    """The first source video packet the segments hold: 0, or the first keyframe's when the copy
    dropped the frames before it. MediaError when the segments hold anything else."""
    total, frames = sum(len(seg.video) for seg in segments), len(source.video)
    lead = leading_non_keyframes(source.video)
    if total == frames:
        return 0
    if lead and total == frames - lead:
        return lead
    raise MediaError(f"the segments hold {total} video frames but the source has {frames}")


def place_segments(source: MediaInfo, segments: list[MediaInfo]) -> list[ClipTiming]:
    """Map each segment file onto the source timeline, checking every video and audio packet."""
    src = source.video
    src_audio = _tick_set(source.audio) if source.audio is not None else None
    timings: list[ClipTiming] = []
    cursor = first_copied(source, segments)
    # Frames shown before the first copied keyframe (leading pictures of an open GOP) cannot be
    # decoded without the dropped ones: no clip starts before that keyframe.
    first_shown = int(src.pts[cursor]) if cursor else None
    for seg in segments:
        n = len(seg.video)
        src_pts = src.pts[cursor : cursor + n]
        src_dur = src.duration[cursor : cursor + n]
        shown = src.presented[cursor : cursor + n]
        if first_shown is not None:
            shown = shown & (src_pts >= first_shown)
        problem = None if src.keyframe[cursor] else "does not start on a keyframe"
        if not shown.any():
            # Every frame is hidden by the source's edit list: nothing of it is ever on screen.
            shown = np.ones_like(shown)
            problem = problem or "holds only frames the source's edit list hides"
        # The offset that maps this file's timeline onto the episode's, from the first packet.
        offset = (
            Fraction(int(src_pts[0])) * src.time_base - Fraction(int(seg.video.pts[0])) * seg.video.time_base
        )
        mapped = seg.video.pts * float(seg.video.time_base) + float(offset)
        tolerance = 0.5 * float(max(src.time_base, seg.video.time_base))
        if np.abs(mapped - src_pts * float(src.time_base)).max() > tolerance:
            problem = problem or "video timestamps differ from the source's"
        has_audio = seg.audio is not None and seg.audio.presented_count > 0
        av_offset = audio_span = None
        if has_audio and seg.audio is not None:
            av_offset = seg.audio.start - seg.video.start
            audio_span = (seg.audio.start + float(offset), seg.audio.end + float(offset))
            resolution = float(max(src.time_base, seg.video.time_base, seg.audio.time_base))
            if src_audio is not None and not _lands_on(seg.audio, float(offset), source.audio, src_audio,
                                                       resolution):  # fmt: skip
                problem = problem or "audio packets are shifted against the source"
        timings.append(
            ClipTiming(
                start_pts=int(src_pts[shown].min()),
                end_pts=int((src_pts[shown] + src_dur[shown]).max()),
                time_base=src.time_base,
                clip_offset=float(offset),
                frame_count=n,
                has_audio=has_audio,
                av_offset=av_offset,
                audio_span=audio_span,
                problem=problem,
            )
        )
        cursor += n
    return timings


def _tick_set(packets: Packets) -> np.ndarray:
    return np.unique(packets.pts)


def _lands_on(clip_audio: Packets, offset: float, src_audio: Packets | None, src_ticks: np.ndarray,
              resolution: float) -> bool:  # fmt: skip
    """Whether every clip audio packet, moved by `offset`, starts where a source packet starts.

    `offset` comes from video timestamps, so it is only exact to a video tick: the muxer's shift is
    rounded to one (78 us at 1/12800), a few audio samples. `resolution` is that granularity.
    """
    assert src_audio is not None
    tick = float(src_audio.time_base)
    ticks = np.rint((clip_audio.pts * float(clip_audio.time_base) + offset) / tick).astype(np.int64)
    # src_ticks is sorted: compare each tick with its neighbours there (O(n log n), not a scan).
    right = np.clip(np.searchsorted(src_ticks, ticks), 0, len(src_ticks) - 1)
    left = np.clip(right - 1, 0, len(src_ticks) - 1)
    near = np.minimum(np.abs(src_ticks[right] - ticks), np.abs(src_ticks[left] - ticks))
    return bool((near * tick <= resolution + 1.5 * tick).all())


def clip_rows(episode_id: str, timings: list[ClipTiming], source: MediaInfo, config: SegmentConfig,
              crop: tuple[int, int, int, int], clip_dir: str) -> list[dict[str, Any]]:  # fmt: skip
    """Catalog rows for an episode's clips: trim window, frame counts, status and reason."""
    src_times = source.video.presented_times()
    rows = []
    for index, t in enumerate(timings):
        duration = t.end - t.start
        status, reason = "ok", None
        trim_start = trim_end = kept = frames = None
        if t.problem:
            status, reason = "rejected", t.problem
        elif not t.has_audio:
            status, reason = "rejected", "no audio in this clip"
        elif duration <= config.min_duration:
            status, reason = "too_short", f"{duration:.3f} s is not longer than {config.min_duration:g} s"
        else:
            trim_start, trim_end = t.start + config.trim, t.end - config.trim
            kept = trim_end - trim_start
            frames = int(((src_times >= trim_start - 1e-9) & (src_times < trim_end - 1e-9)).sum())
            assert t.audio_span is not None
            a_start, a_end = t.audio_span
            if a_start > trim_start + AUDIO_COVER_TOLERANCE or a_end < trim_end - AUDIO_COVER_TOLERANCE:
                status = "rejected"
                reason = (
                    f"audio covers {a_start:.3f}-{a_end:.3f} s,"
                    f" not the kept {trim_start:.3f}-{trim_end:.3f} s"
                )
        clip_id = f"{episode_id}_{index:05d}"
        rows.append({
            "clip_id": clip_id,
            "episode_id": episode_id,
            "clip_index": index,
            "path": f"{clip_dir}/{clip_id}.mp4",
            "start_time": round(t.start, 6),
            "end_time": round(t.end, 6),
            "start_pts": t.start_pts,
            "end_pts": t.end_pts,
            "time_base": f"{t.time_base.numerator}/{t.time_base.denominator}",
            "clip_offset": round(t.clip_offset, 9),
            "trim_start": None if trim_start is None else round(trim_start, 6),
            "trim_end": None if trim_end is None else round(trim_end, 6),
            "crop_x": crop[0], "crop_y": crop[1], "crop_w": crop[2], "crop_h": crop[3],
            "duration": None if kept is None else round(kept, 6),
            "frame_count": frames,
            "segment_frame_count": t.frame_count,
            "has_audio": int(t.has_audio),
            "av_offset": None if t.av_offset is None else round(t.av_offset, 6),
            "status": status,
            "reason": reason,
        })  # fmt: skip
    return rows


# --- per-episode work ------------------------------------------------------------------------
@dataclass(frozen=True)
class Segmented:
    clips: list[dict[str, Any]]
    rejected: str | None = None  # the whole episode is unusable, and why
    note: str | None = None  # what was left out of an otherwise usable episode


def segment_episode(ws: Workspace, episode_id: str, source_rel: str, config: SegmentConfig, *,
                    timeout: float | None = None) -> Segmented:  # fmt: skip
    source_path = ws.root / source_rel
    if not source_path.is_file():
        raise MediaError(f"source file {source_rel} is missing", hint="run `nwt-data fetch` again")
    source = probe(source_path, rotation=True)
    if source.rotation:
        raise MediaError(
            f"the video is stored rotated by {source.rotation} degrees (phone footage): crops would be"
            " sideways",
            hint="re-encode it upright, e.g. `ffmpeg -i IN.mp4 -c:a copy OUT.mp4` (a re-encode applies the"
            " rotation), and fetch that file",
        )
    if not source.has_audio:
        return Segmented([], rejected="no audio stream: NWT needs the speech of every clip")
    if leading_non_keyframes(source.video) == len(source.video):
        raise MediaError(
            "the video has no keyframe: none of its frames can be decoded on its own",
            hint="re-encode it (e.g. `ffmpeg -i IN -c:a copy OUT.mp4`) and fetch that file",
        )
    crop = resolve_crop(config.crop, source.width, source.height)
    work = ws.new_temp_dir(f"segment-{episode_id}")
    try:
        args = segment_args(source_path, work / f"{episode_id}_%05d.mp4",
                            segment_time=config.segment_time, has_audio=True)  # fmt: skip
        run_ffmpeg(args, timeout=timeout)
        files = sorted(work.glob(f"{episode_id}_*.mp4"))
        if not files:
            raise MediaError("ffmpeg wrote no segments")
        segments = [probe(f) for f in files]
        timings = place_segments(source, segments)
        clip_dir = ws.episode_clip_dir(episode_id)
        rows = clip_rows(episode_id, timings, source, config, crop, ws.relative(clip_dir))
        replace_dir(work, clip_dir)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    dropped = first_copied(source, segments)
    note = None
    if dropped:
        start = float(np.sort(source.video.pts[:dropped])[0] * source.video.time_base)
        note = (
            f"dropped {dropped} frames before the first keyframe ({start:.3f}-{timings[0].start:.3f} s):"
            " the source starts mid-GOP"
        )
    return Segmented(rows, note=note)


# --- the stage ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentStage(Stage[Episode, Segmented]):
    ws: Workspace
    config: SegmentConfig
    retry_failed: bool = False
    episodes: tuple[str, ...] = ()
    redo: bool = False
    timeout: float | None = None  # seconds for the ffmpeg split of one episode

    name = "segment"
    done_label, failed_label = "already segmented", "episodes failed"

    def data_access(self) -> tuple[set[str], set[str]]:
        # --redo replaces clips that flag and mask read; a first segmentation adds new ones only.
        return {"episodes"}, ({"clips"} if self.redo else set())

    def prepare(self, catalog: Catalog) -> None:
        self.ws.clear_temp("segment")
        clear_trash(self.ws.clips_dir)

    def select(self, catalog: Catalog, report: StageReport) -> Selection[Episode]:
        statuses = [Status.PENDING]
        statuses += [Status.FAILED, Status.REJECTED] if self.retry_failed or self.redo else []
        statuses += [Status.DONE] if self.redo else []
        rows = catalog.episodes_to_segment(statuses)
        if self.episodes:
            rows = [r for r in rows if r.episode_id in set(self.episodes)]
        if self.redo:
            rows = [r for r in rows if self._can_redo(catalog, r.episode_id, report)]
        else:
            saved = to_dict(self.config)
            stale = [r for r in catalog.episodes_segmented()
                     if r.segment_config and json.loads(r.segment_config) != saved]  # fmt: skip
            if stale:
                report.add("segmented with other settings (--redo -e ID applies these)", len(stale))
        earlier = [] if self.retry_failed else catalog.failures("segment")
        done = None if self.redo else len(catalog.episodes_segmented())
        return Selection([(r.episode_id, r) for r in rows], done, earlier)

    @staticmethod
    def _can_redo(catalog: Catalog, episode_id: str, report: StageReport) -> bool:
        """Re-segmenting replaces an episode's clips: never once people or shards depend on them."""
        used = catalog.clips_in_use(episode_id)
        if used:
            message = f"{used} of its clips are reviewed or sharded; not re-segmenting"
            hint = "export the review, or use a new workspace"
            report.failures.append((episode_id, "redo", f"{message} ({hint})"))
        return not used

    def work(self, item: Episode) -> Segmented:
        assert item.path is not None
        return segment_episode(self.ws, item.episode_id, item.path, self.config, timeout=self.timeout)

    def commit(self, catalog: Catalog, key: str, result: Segmented, report: StageReport) -> None:
        if result.rejected:
            catalog.mark_segment_failed(key, status="rejected", kind="rejected", error=result.rejected)
            report.add("episodes rejected")
            return
        catalog.save_segmentation(key, result.clips, to_dict(self.config))
        shutil.rmtree(self.ws.prepared_dir / key, ignore_errors=True)  # prepared from the old clips
        report.add("episodes segmented")
        if result.note:
            report.warnings.append(f"{key}: {result.note}")
        for clip in result.clips:
            report.add(f"clips {clip['status']}")

    def record_failure(self, catalog: Catalog, key: str, error: NwtError) -> None:
        catalog.mark_segment_failed(key, status="failed", kind=error.kind, error=error.one_line())


def run_segment(ws: Workspace, catalog: Catalog, config: SegmentConfig, console: Console, *,
                retry_failed: bool = False, episodes: list[str] | None = None, redo: bool = False,
                run: RunConfig | None = None) -> StageReport:  # fmt: skip
    """Segment the selected episodes (library entry point: no run record; the CLI records its runs)."""
    run = run or RunConfig()
    stage = SegmentStage(ws, config, retry_failed, tuple(episodes or ()), redo, run.timeout)
    return run_stage(ws, stage, console, catalog=catalog, run=run, record=False)
