"""`nwt-data mask`: Appendix D steps 6-8 in one decode pass per clip.

For every kept clip: decode once, crop (recorded by segment), paint on-screen overlays white (the
`graphic` rule of nwt_data.curation.overlay, which first looks at a few sampled frames of the clip,
or the paper's per-frame OpenCV heuristic with `overlay_rule = "paper"`), scale to 256 rows x 224
columns, convert to exactly 30 FPS by sample and hold on the episode timeline, encode once (H.264,
short GOP for random windows), and cut the same window's audio to 24 kHz mono with its mel
spectrogram. Outputs go to `prepared/EP/CLIP/`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import itertools
import json
import math
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from nwt_data.audio import SAMPLES_PER_FRAME, VIDEO_FPS, mel_frames_for, mel_spectrogram, to_model_rate
from nwt_data.catalog import Catalog, Clip
from nwt_data.config import OUTPUT_HEIGHT, OUTPUT_WIDTH, MaskConfig, RunConfig, to_dict
from nwt_data.contract import write_atomic
from nwt_data.curation.episode import MIN_CLIPS, ClipPlan, to_paint
from nwt_data.curation.overlay import PLAN_VERSION, GraphicRule, OverlayPlan, plan_overlays, sample_clip
from nwt_data.errors import MediaError, NwtError
from nwt_data.media.clip import ClipWindow, audio_span, held_frames, sampled_frames
from nwt_data.media.probe import av_error_text
from nwt_data.runner import Selection, Stage, run_stage
from nwt_data.stages import StageReport
from nwt_data.workspace import Workspace, clear_trash, replace_dir


# --- the overlay heuristic (pure) ------------------------------------------------------------
@dataclass(frozen=True)
class OverlayRule:
    """Step 6's thresholds in pixels of one crop size."""

    threshold: int
    min_area: float
    max_area: float
    min_height: float
    left_margin: float
    top_offset: float

    @classmethod
    def for_crop(cls, config: MaskConfig, crop_height: int) -> OverlayRule:
        s = crop_height / config.reference_height
        return cls(
            threshold=config.threshold,
            min_area=config.min_area * s * s,
            max_area=config.max_area * s * s,
            min_height=config.min_height * s,
            left_margin=config.left_margin * s,
            top_offset=config.top_offset * s,
        )


def overlay_boxes(
    gray: np.ndarray, rule: OverlayRule, *, full_range: bool = True
) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x, y, w, h) of the bright regions step 6 treats as overlays.

    `gray` is the cropped frame in grayscale: cv2's RGB2GRAY (full range), or the video's own luma
    plane, which is the same weighted sum, in limited range (16-235) unless `full_range`.
    """
    import cv2

    threshold = rule.threshold if full_range else 16 + rule.threshold * 219 / 255
    _, binary = cv2.threshold(gray, threshold, 255, cv2.THRESH_BINARY)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if (
            rule.min_area < w * h < rule.max_area
            and h > rule.min_height
            and (x <= rule.left_margin or y > rule.top_offset)
        ):
            boxes.append((x, y, w, h))
    return boxes


def plane_array(frame: Any, index: int) -> np.ndarray:
    """A writable (height, width) view of one plane of a planar 8-bit video frame."""
    plane = frame.planes[index]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]


def paint_white(frame: Any, boxes: list[tuple[int, int, int, int]]) -> float:
    """Paint `boxes` white in place on a limited-range yuv420p frame; return the painted share."""
    if not boxes:
        return 0.0
    luma, cb, cr = (plane_array(frame, i) for i in range(3))
    painted = np.zeros(luma.shape, dtype=bool)
    for x, y, w, h in boxes:
        painted[y : y + h, x : x + w] = True
        luma[y : y + h, x : x + w] = 235  # white in limited range
        chroma = (slice(y // 2, -(-(y + h) // 2)), slice(x // 2, -(-(x + w) // 2)))
        cb[chroma] = cr[chroma] = 128
    return float(painted.mean())


def scale_box(box: tuple[int, int, int, int], sx: float, sy: float) -> tuple[int, int, int, int]:
    """A crop-pixel box in output pixels, rounded outwards so the scaled overlay is fully covered."""
    x, y, w, h = box
    x0, y0 = math.floor(x * sx), math.floor(y * sy)
    return x0, y0, math.ceil((x + w) * sx) - x0, math.ceil((y + h) * sy) - y0


_LUMA_FIRST = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}


class FrameProcessor:
    """Steps 6 and 7 for one decoded frame, never converting it to RGB.

    Overlays are found on the crop of the frame's own luma plane (a zero-copy view); crop, area
    scaling to 224x256 and conversion to BT.601 limited-range yuv420p (what the encoder takes and
    decoders assume) happen in one libavfilter pass; the found boxes are painted white on that
    small frame, rounded outwards.
    """

    def __init__(
        self, crop: tuple[int, int, int, int], rule: OverlayRule, plan: OverlayPlan | None = None,
        clip_offset: float = 0.0,
    ) -> None:  # fmt: skip
        self.crop = crop
        self.rule = rule
        self.plan = plan  # the graphic rule's boxes for the clip; None: the paper's rule per frame
        self.clip_offset = clip_offset
        self.sx, self.sy = OUTPUT_WIDTH / crop[2], OUTPUT_HEIGHT / crop[3]
        self._graph: Any = None
        self._graph_key: tuple[Any, ...] | None = None

    def __call__(self, frame: Any) -> tuple[Any, float]:
        if self.plan is not None:
            boxes = self.plan.boxes_at(frame.time + self.clip_offset)
        else:
            luma, full_range = self._luma(frame)
            boxes = overlay_boxes(luma, self.rule, full_range=full_range)
        small = self._scaled(frame)
        return small, paint_white(small, [scale_box(b, self.sx, self.sy) for b in boxes])

    def _luma(self, frame: Any) -> tuple[np.ndarray, bool]:
        x, y, w, h = self.crop
        name = frame.format.name
        if name in _LUMA_FIRST:
            plane = frame.planes[0]
            luma = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
            full = name.startswith("yuvj") or name == "gray" or frame.color_range == 2  # 2: JPEG range
        else:  # RGB or high bit depth sources: let swscale make the grayscale frame
            luma, full = frame.to_ndarray(format="gray"), True
        return luma[y : y + h, x : x + w], full

    def _scaled(self, frame: Any) -> Any:
        key = (frame.width, frame.height, frame.format.name)
        if key != self._graph_key:
            self._graph, self._graph_key = self._build_graph(frame), key
        self._graph.push(frame)
        return self._graph.pull()

    def _build_graph(self, frame: Any) -> Any:
        from av.filter import Graph

        x, y, w, h = self.crop
        graph = Graph()
        chain = [
            graph.add_buffer(
                width=frame.width,
                height=frame.height,
                format=frame.format.name,
                time_base=frame.time_base or Fraction(1, 1000),
            ),
            graph.add("crop", f"w={w}:h={h}:x={x}:y={y}:exact=1"),
            graph.add(
                "scale",
                f"w={OUTPUT_WIDTH}:h={OUTPUT_HEIGHT}:flags=area:out_color_matrix=bt601:out_range=tv",
            ),
            graph.add("format", "pix_fmts=yuv420p"),
            graph.add("buffersink"),
        ]
        for upstream, downstream in itertools.pairwise(chain):
            upstream.link_to(downstream)
        graph.configure()
        return graph


def output_times(trim_start: float, duration: float) -> np.ndarray:
    """Episode times of the 30 FPS output frames: round(duration * 30) of them from trim_start."""
    n = round(duration * VIDEO_FPS)
    return trim_start + np.arange(n) / VIDEO_FPS


# --- the graphic rule's plan of a clip, cached, and the episode's evidence ----------------------
def _plan_key(ws: Workspace, row: Any, config: MaskConfig) -> dict[str, Any]:
    """What a clip's plan depends on: the clip file, its kept window and crop, and the rule."""
    stat = (ws.root / row["path"]).stat()
    window = [row[k] for k in ("path", "clip_offset", "trim_start", "trim_end", "crop_x", "crop_y", "crop_w",
                               "crop_h")]  # fmt: skip
    rule = dataclasses.asdict(GraphicRule())
    key = {"file": [stat.st_size, stat.st_mtime_ns], "window": window, "rule": rule, "version": PLAN_VERSION,
           "overlay_fps": config.overlay_fps, "text_fps": config.text_fps}  # fmt: skip
    return json.loads(json.dumps(key))  # as it reads back (tuples become lists)


@contextlib.contextmanager
def _plan_locked(ws: Workspace, row: Any) -> Iterator[Path]:
    """The clip's plan file, under its lock: workers that need one plan wait for the one making it."""
    path = ws.plans_dir / row["episode_id"] / f"{row['clip_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield path


def clip_plan(ws: Workspace, row: Any, config: MaskConfig, *, make: bool = True,
              frames: Iterable[tuple[float, np.ndarray]] | None = None) -> OverlayPlan | None:  # fmt: skip
    """The graphic rule's plan of one clip (its boxes before the episode's evidence), from the cache
    in `plans/` when it was made from the same file and settings (by mask, report or flag); made
    and stored otherwise (None then unless `make`), from `frames` when the caller decodes the clip's
    samples anyway (they are read only when the plan is made), else from a decode of its own."""
    import av

    if not (ws.root / row["path"]).is_file():
        raise MediaError(
            f"clip file {row['path']} is missing",
            hint=f"run `nwt-data segment --redo -e {row['episode_id']}`",
        )
    key = _plan_key(ws, row, config)
    with _plan_locked(ws, row) as path:
        try:
            cached = json.loads(path.read_text())
            if cached["key"] == key:
                return OverlayPlan.from_json(cached["plan"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # none yet, or from another file or setting: made again
        if not make:
            return None
        window = ClipWindow.from_row(ws.root, row)
        try:
            samples = frames if frames is not None else sampled_frames(window, config.overlay_fps)
            plan = plan_overlays(
                *sample_clip(samples, window.trim_start, config.overlay_fps, config.text_fps)
            )
        except (av.FFmpegError, ValueError) as err:
            raise MediaError(
                f"cannot decode {row['path']}: {av_error_text(err)}",
                hint=f"the clip file is damaged: run `nwt-data segment --redo -e {row['episode_id']}`",
            ) from err
        _write_plan(path, key, plan)
        return plan


def store_plan(ws: Workspace, row: Any, config: MaskConfig, plan: OverlayPlan) -> None:
    """Cache a plan made elsewhere from the same samples `clip_plan` reads (the flag stage's pass)."""
    key = _plan_key(ws, row, config)
    with _plan_locked(ws, row) as path:
        _write_plan(path, key, plan)


def _write_plan(path: Path, key: dict[str, Any], plan: OverlayPlan) -> None:
    write_atomic(path, json.dumps({"key": key, "plan": plan.to_json()}).encode())


def clear_plan_leftovers(ws: Workspace) -> None:
    """Remove the temporary files of plans whose writer was killed: those whose clip's lock is free."""
    for tmp in ws.plans_dir.glob("*/.*.tmp"):
        clip_id = tmp.name[1:].split(".json.")[0]
        with open(tmp.parent / f"{clip_id}.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # being written now
            tmp.unlink(missing_ok=True)


def episode_plans(ws: Workspace, episode: Sequence[Any], config: MaskConfig, *,
                  made_only: bool = False) -> dict[str, ClipPlan]:  # fmt: skip
    """The plans of an episode's clips, by clip id; `made_only`: only those made earlier. A damaged
    clip gives none (its own run reports it)."""
    plans = {}
    for row in episode:
        try:
            plan = clip_plan(ws, row, config, make=not made_only)
        except MediaError:
            continue
        if plan is not None:
            plans[row["clip_id"]] = ClipPlan(plan, (row["crop_x"], row["crop_y"]), row["crop_h"])
    return plans


def without_set_pieces(ws: Workspace, row: Any, plan: OverlayPlan, episode: Sequence[Any], config: MaskConfig,
                       *, made_only: bool = False) -> OverlayPlan:  # fmt: skip
    """What mask paints in a clip under the graphic rule: its `plan` less the set pieces the clips
    of its episode (`episode`, the clip included) show (nwt_data.curation.episode). `made_only`: the
    other clips count only with a plan made earlier (the report, which must not plan whole episodes)."""
    if not (plan and config.spare_set_pieces and len(episode) >= MIN_CLIPS):
        return plan
    # The other clips from this one's neighbours round, so workers on one episode make different
    # plans at first.
    index = next((i for i, r in enumerate(episode) if r["clip_id"] == row["clip_id"]), 0)
    others = [r for r in [*episode[index:], *episode[:index]] if r["clip_id"] != row["clip_id"]]
    plans = episode_plans(ws, others, config, made_only=made_only)
    this = plans[row["clip_id"]] = ClipPlan(plan, (row["crop_x"], row["crop_y"]), row["crop_h"])
    return to_paint(this, list(plans.values()), config.set_piece_share)


# --- per-clip work ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Prepared:
    prepared_path: str
    out_frames: int
    masked_frames: int
    masked_fraction: float
    set_pieces: int = 0  # boxes of the clip's plan left unpainted: the episode shows them as the set


FRAME_TIME_BASE = Fraction(1, VIDEO_FPS)


def _open_encoder(path: Path, config: MaskConfig, threads: int) -> tuple[Any, Any]:
    import av

    container = av.open(str(path), "w", options={"movflags": "+faststart"})
    stream = container.add_stream("libx264", rate=VIDEO_FPS)
    stream.width, stream.height = OUTPUT_WIDTH, OUTPUT_HEIGHT
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = FRAME_TIME_BASE
    stream.codec_context.gop_size = config.gop
    stream.options = {
        "crf": str(config.crf),
        "preset": "veryfast",
        "x264-params": f"keyint={config.gop}:min-keyint={config.gop}:scenecut=0:bframes=0:threads={threads}",
    }
    return container, stream


def prepare_clip(ws: Workspace, row: Any, config: MaskConfig, episode: Sequence[Any] = ()) -> Prepared:
    """Prepare one clip; `episode` (the usable clips of its episode) is the graphic rule's evidence
    of what the set is (none given: the clip's own plan is painted)."""
    import av

    window = ClipWindow.from_row(ws.root, row)
    if not window.path.is_file():
        raise MediaError(
            f"clip file {row['path']} is missing",
            hint=f"run `nwt-data segment --redo -e {row['episode_id']}`",
        )
    times = output_times(window.trim_start, row["duration"])
    n = len(times)
    plan, set_pieces = None, 0
    if config.overlay_rule == "graphic":
        own = clip_plan(ws, row, config)
        assert own is not None
        plan = without_set_pieces(ws, row, own, episode, config)
        set_pieces = len(own.boxes) - len(plan.boxes)
    rule = OverlayRule.for_crop(config, window.crop[3])
    processor = FrameProcessor(window.crop, rule, plan, window.clip_offset)
    # With a worker per core, codec threads only add overhead; with fewer, they use the idle cores.
    threaded = config.workers < (os.cpu_count() or 1)
    work = ws.new_temp_dir(f"mask-{row['clip_id']}")
    try:
        container, stream = _open_encoder(work / "video.mp4", config, threads=0 if threaded else 1)
        masked_frames, painted_total = 0, 0.0
        with container:
            try:
                for i, (small, painted), _ in held_frames(window, times, processor, threaded=threaded):
                    masked_frames += painted > 0
                    painted_total += painted
                    small.pts, small.time_base = i, FRAME_TIME_BASE
                    container.mux(stream.encode(small))
                container.mux(stream.encode(None))
            except (av.FFmpegError, ValueError) as err:
                raise MediaError(
                    f"cannot decode {row['path']}: {av_error_text(err)}",
                    hint=f"the clip file is damaged: run `nwt-data segment --redo -e {row['episode_id']}`",
                ) from err
        try:
            audio, rate = audio_span(window, window.trim_start, n / VIDEO_FPS)
        except (av.FFmpegError, ValueError) as err:
            raise MediaError(f"cannot read the audio of {row['path']}: {av_error_text(err)}") from err
        audio24 = to_model_rate(audio, rate, n * SAMPLES_PER_FRAME)
        mel = mel_spectrogram(audio24)
        assert mel.shape[1] == mel_frames_for(n), (mel.shape, n)
        pcm = np.clip(np.round(audio24 * 32767.0), -32768, 32767).astype(np.int16)
        np.save(work / "audio.npy", pcm)
        np.save(work / "mel.npy", mel)
        (work / "stats.json").write_text(json.dumps({"frames": n, "masked_frames": int(masked_frames)}))
        final = ws.prepared_dir / row["episode_id"] / row["clip_id"]
        final.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(work, final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return Prepared(
        ws.relative(final), n, int(masked_frames), round(painted_total / max(n, 1), 6), set_pieces
    )


# --- the stage ---------------------------------------------------------------------------------
# Settings that change what mask writes (not how fast): recorded with every clip it prepares.
_RUN_ONLY = ("workers", "include_unreviewed")


def output_settings(config: MaskConfig) -> dict[str, Any]:
    return {k: v for k, v in to_dict(config).items() if k not in _RUN_ONLY}


# What the episode's evidence reads of each clip: items carry these alone (an item travels to a worker
# with its episode's clips, so an episode of n clips costs n² of them).
EVIDENCE_FIELDS = ("clip_id", "episode_id", "status", "path", "clip_offset", "trim_start", "trim_end",
                   "crop_x", "crop_y", "crop_w", "crop_h")  # fmt: skip


@dataclass(frozen=True)
class MaskItem:
    clip: Clip
    episode: tuple[dict[str, Any], ...]  # the usable clips of its episode (EVIDENCE_FIELDS): the set


@dataclass(frozen=True)
class MaskStage(Stage[MaskItem, Prepared]):
    ws: Workspace
    config: MaskConfig
    retry_failed: bool = False

    name = "mask"
    done_label, failed_label = "already prepared", "clips failed"
    reads, rewrites = frozenset({"clips"}), frozenset({"prepared"})

    def prepare(self, catalog: Catalog) -> None:
        self.ws.clear_temp("mask")
        clear_trash(self.ws.prepared_dir)
        clear_plan_leftovers(self.ws)

    def select(self, catalog: Catalog, report: StageReport) -> Selection[MaskItem]:
        rows = catalog.clips_to_mask(include_unreviewed=self.config.include_unreviewed,
                                     retry_failed=self.retry_failed)  # fmt: skip
        earlier = [] if self.retry_failed else catalog.failures("mask")
        evidence = self.config.overlay_rule == "graphic" and self.config.spare_set_pieces
        footage = catalog.episode_footage({r.episode_id for r in rows}) if evidence else {}
        slim = {e: tuple({k: c[k] for k in EVIDENCE_FIELDS} for c in clips) for e, clips in footage.items()}
        items = [(r.clip_id, MaskItem(r, slim.get(r.episode_id, ()))) for r in rows]
        return Selection(items, catalog.count_done("mask"), earlier)

    def work(self, item: MaskItem) -> Prepared:
        return prepare_clip(self.ws, item.clip, self.config, item.episode)

    def commit(self, catalog: Catalog, key: str, result: Prepared, report: StageReport) -> None:
        catalog.mark_prepared(key, prepared_path=result.prepared_path, out_frames=result.out_frames,
                              masked_frames=result.masked_frames, masked_fraction=result.masked_fraction,
                              mask_config=output_settings(self.config))  # fmt: skip
        report.add("clips prepared")
        report.add("clips with a masked overlay", result.masked_frames > 0)
        report.add("clips with a set piece left unpainted", result.set_pieces > 0)

    def record_failure(self, catalog: Catalog, key: str, error: NwtError) -> None:
        catalog.mark_mask_failed(key, kind=error.kind, error=error.one_line())


def run_mask(ws: Workspace, catalog: Catalog, config: MaskConfig, console: Console, *,
             retry_failed: bool = False, run: RunConfig | None = None) -> StageReport:  # fmt: skip
    """Prepare the selected clips (library entry point: no run record; the CLI records its runs)."""
    return run_stage(ws, MaskStage(ws, config, retry_failed), console, catalog=catalog, run=run, record=False)
