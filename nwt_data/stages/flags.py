"""`nwt-data flag`: automatic pre-flags for the review queue, computed per clip without any model download.

Every flag is measured on the clip exactly as review and training see it: the kept (trimmed), cropped
window read through `nwt_data.media.clip`. The detectors are classic image and signal processing plus
the Haar cascade that ships inside the OpenCV wheel (`cv2.data.haarcascades`):

- faces: OpenCV's frontal-face cascade (alt2) on frames sampled at `face_fps` (grayscale, equalised,
  scaled so that the cascade's 24-pixel window is 5/8 of the smallest counted face, `min_face` = 8%
  of the crop height, searched only when faces of 20% and more are not found); the clip's count is
  the median over the samples, which stop once the face flags are settled (a majority agrees).
  Flags `no_face` (0), `many_faces` (more than 1) and `small_face` (the largest face, median over
  the samples, shorter than `small_face` of the crop: a speaker far from the camera).
- cut: a shot cut or a title-screen transition. Every kept frame gets a 32x32 signature (an HSV
  histogram and a grayscale thumbnail); the change between two frames is the smaller of the histogram
  distance (1 - intersection) and the thumbnail decorrelation (1 - Pearson r), so a change must alter
  both the colours and the picture's structure (a flash or a moving head alters one of them). The
  change is measured between consecutive frames (hard cuts) and between frames `transition_seconds`
  apart (fades, dissolves).
- overlay: what `nwt-data mask` will paint, with the workspace's [mask] settings. With the default
  `graphic` rule (nwt_data.curation.overlay): any box of the clip's overlay plan (rectangular bright
  panels, static inset or banner boxes, captions found by the OCR text detector on `text_fps` frames).
  The plan is kept in the workspace's plan cache for mask (when `sample_fps` equals the [mask]
  `overlay_fps`, the samples are mask's); at the end of the run, the flag of a clip whose every box
  is a set piece its episode's other clips show (nwt_data.curation.episode) is lowered, as mask
  spares them. With `overlay_rule = "paper"`: the paper's heuristic (`overlay_boxes`) in at least
  `overlay_min_share` of the sampled frames, or a static inset box (picture-in-picture), which that
  heuristic cannot see: an axis-aligned rectangle whose sides are straight, sharp edges at the same
  place in every sampled frame.
- speech: Silero VAD (the ONNX model inside the silero-vad wheel, nwt_data.curation.speech) gives
  the share of 32 ms steps with speech; `no_speech` below `no_speech` (music, applause, laughter,
  silence), `low_speech` below `low_speech`. The ratio is kept in the catalog (`speech_ratio`).
- silence: the share of 50 ms windows whose speech-band (80-4000 Hz, tapered edges) level reaches
  `silence_db` dBFS is below `min_voiced`.

The heavy detectors run on sampled frames (faces at `face_fps`, overlay and inset at `sample_fps`,
OCR at the [mask] `text_fps`, more densely where a caption comes or goes); the cheap cut signature
runs on every frame, because a cut sits between two consecutive frames.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import statistics
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.console import Console

from nwt_data.catalog import Catalog, Clip
from nwt_data.config import MaskConfig, RunConfig, default_workers, to_dict
from nwt_data.curation.episode import MIN_CLIPS, to_paint
from nwt_data.curation.overlay import TextSampler, plan_overlays
from nwt_data.curation.speech import speech_ratio
from nwt_data.errors import ConfigError, MediaError, NwtError
from nwt_data.media.clip import ClipWindow, kept_audio, kept_frames_with_thumbs
from nwt_data.runner import Selection, Stage, run_stage
from nwt_data.stages import StageReport
from nwt_data.stages.mask import OverlayRule, episode_plans, overlay_boxes, store_plan
from nwt_data.workspace import Workspace

FLAG_NAMES = tuple(c.removeprefix("flag_") for c in Catalog.FLAG_COLUMNS)


# --- configuration ---------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class FlagConfig:
    """`nwt-data flag`: the automatic pre-flags (the [flags] table of nwt.toml)."""

    workers: int = field(default_factory=default_workers)
    """Clips flagged at once."""
    sample_fps: float = 4.0
    """Frames per second of the kept window given to the overlay and inset detectors."""
    face_fps: float = 0.5
    """Frames per second given to the face detector (the costliest detector), until its flags settle."""
    min_face: float = 0.08
    """Smallest face counted, as a share of the crop height."""
    small_face: float = 0.15
    """A clip whose face (median over the samples) is shorter than this share of the crop is small_face."""
    face_neighbors: int = 5
    """The cascade's minNeighbors: higher finds fewer faces, and fewer false ones."""
    no_speech: float = 0.1
    """A clip whose speech ratio (Silero VAD, share of 32 ms steps) is below this is no_speech."""
    low_speech: float = 0.4
    """A clip whose speech ratio is below this (and not below no_speech) is low_speech."""
    cut_threshold: float = 0.35
    """A frame-to-frame change (0..1) at or above this is a cut or a transition."""
    transition_seconds: float = 0.5
    """Also compare frames this far apart, for fades and dissolves (0: consecutive frames only)."""
    silence_db: float = -45.0
    """Speech-band level (dBFS) a 50 ms window must reach to count as voiced."""
    min_voiced: float = 0.1
    """A clip with a smaller share of voiced windows (see silence_db) is silent."""
    overlay: bool = True
    """Raise the overlay flag at all."""
    overlay_min_share: float = 0.25
    """Share of sampled frames in which the mask heuristic must find a box."""
    inset: bool = True
    """Also flag a static inset box (picture-in-picture), which the mask heuristic does not see."""
    inset_min_coverage: float = 0.8
    """Share of each found side of an inset box that must be a straight, static, sharp edge."""
    mask: MaskConfig = field(default_factory=MaskConfig)
    """The overlay heuristic's thresholds: the workspace's [mask] table, so the flag matches `mask`."""

    def __post_init__(self) -> None:
        checks = [
            ("workers", self.workers >= 1, "a positive whole number"),
            ("sample_fps", 0 < self.sample_fps <= 120, "within (0, 120]"),
            ("face_fps", 0 < self.face_fps <= 120, "within (0, 120]"),
            ("min_face", 0 < self.min_face <= 1, "within (0, 1]"),
            ("small_face", 0 <= self.small_face <= 1, "within [0, 1]"),
            ("no_speech", 0 <= self.no_speech <= 1, "within [0, 1]"),
            ("low_speech", self.no_speech <= self.low_speech <= 1, "within [no_speech, 1]"),
            ("face_neighbors", self.face_neighbors >= 1, "at least 1"),
            ("cut_threshold", 0 < self.cut_threshold <= 1, "within (0, 1]"),
            ("transition_seconds", 0 <= self.transition_seconds <= 10, "within [0, 10]"),
            ("silence_db", -120 < self.silence_db < 0, "a level in dBFS within (-120, 0)"),
            ("min_voiced", 0 <= self.min_voiced <= 1, "within [0, 1]"),
            ("overlay_min_share", 0 < self.overlay_min_share <= 1, "within (0, 1]"),
            ("inset_min_coverage", 0 < self.inset_min_coverage <= 1, "within (0, 1]"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"flags: {name} must be {expected}, not {getattr(self, name)!r}")
        if not isinstance(self.mask, MaskConfig):
            raise ConfigError(
                "flags: the overlay thresholds cannot be set in [flags]",
                hint="set them in the [mask] table: the flag uses the thresholds `nwt-data mask` uses",
            )

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the catalog's runs table (the mask thresholds nested)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "mask"}
        return {**out, "mask": to_dict(self.mask)}


# --- faces (pure) ----------------------------------------------------------------------------
CASCADE_FILE = "haarcascade_frontalface_alt2.xml"
CASCADE_WINDOW = 24  # pixels: the frontal-face cascade's detection window
# The frame is scaled so that the cascade's window is this share of the smallest face counted: a face
# only just filling the window is often missed (measured on 12 real faces pasted at 8% of the crop,
# as in tests/test_flags_accuracy.py: 5 found with the window at 7/8 of the face, 12 at 5/8).
WINDOW_SHARE = 0.625
# The first pass's smallest face (share of the frame height). Measured on the 30 face samples of
# ../shared/media (1 a second): 121 ms a sample with the 8% scales always searched, 21 ms with this
# pass first; the pasted faces of tests/test_flags_accuracy.py (8-30%, pairs at 15%) are all still
# counted right (at 25% a pair at 15% is counted as one).
COARSE_FACE = 0.2
_local = threading.local()


def _cascade() -> Any:
    """The frontal-face cascade from the OpenCV wheel, one per thread (a classifier is not shared)."""
    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        import cv2

        path = os.path.join(cv2.data.haarcascades, CASCADE_FILE)
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise MediaError(
                f"cannot load the face cascade {path}",
                hint="reinstall opencv-python-headless 4.x, whose wheel ships cv2.data.haarcascades",
            )
        _local.cascade = cascade
    return cascade


def face_boxes(
    gray: np.ndarray, *, min_face: float = 0.08, neighbors: int = 5
) -> list[tuple[int, int, int, int]]:
    """Frontal faces (x, y, w, h in `gray`'s pixels) down to about `min_face` of the frame height.

    The cascade's cost is in its finest scales (the most windows), so the faces of COARSE_FACE and
    more are searched first, on a frame a fraction of the size; the scales down to `min_face` only
    when that finds none. A second face beside a found one is thus counted from about 12% of the
    frame height (COARSE_FACE at the cascade's smallest window), a lone face from `min_face`.
    """
    if min_face < COARSE_FACE:
        found = _face_boxes_at(gray, COARSE_FACE, neighbors)
        if found:
            return found
    return _face_boxes_at(gray, min_face, neighbors)


def _face_boxes_at(gray: np.ndarray, min_face: float, neighbors: int) -> list[tuple[int, int, int, int]]:
    """The cascade on `gray` scaled so that its 24-pixel window is WINDOW_SHARE of a face of
    `min_face` times the frame height (much smaller faces cannot be found at that scale, larger ones
    are), then equalised."""
    import cv2

    height = max(CASCADE_WINDOW, math.ceil(CASCADE_WINDOW / (min_face * WINDOW_SHARE)))
    scale = height / gray.shape[0]
    width = max(CASCADE_WINDOW, round(gray.shape[1] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.equalizeHist(cv2.resize(gray, (width, height), interpolation=interpolation))
    found = _cascade().detectMultiScale(
        small, scaleFactor=1.1, minNeighbors=neighbors, minSize=(CASCADE_WINDOW, CASCADE_WINDOW)
    )
    boxes = [(round(x / scale), round(y / scale), round(w / scale), round(h / scale)) for x, y, w, h in found]
    return drop_nested(boxes)


def drop_nested(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Boxes less those mostly (over half their area) inside a bigger one: at fine scales the cascade
    also fires on part of a face (eyes and nose), which is no second face."""
    kept: list[tuple[int, int, int, int]] = []
    for box in sorted(boxes, key=lambda b: -b[2] * b[3]):
        x, y, w, h = box
        inner = (
            max(0, min(x + w, kx + kw) - max(x, kx)) * max(0, min(y + h, ky + kh) - max(y, ky))
            for kx, ky, kw, kh in kept
        )
        if all(area <= 0.5 * w * h for area in inner):
            kept.append(box)
    return kept


def faces_settled(counts: Sequence[int], heights: Sequence[float], slots: int, small_face: float) -> bool:
    """The face flags can no longer change, whatever the samples still to come (at most `slots` in
    all) find: a count holds a majority of them, and so do the faces on one side of `small_face`.
    The cascade is the flag stage's costliest detector; on a clip with one steady face, this stops
    sampling it after a little over half the slots."""
    need = slots // 2 + 1
    top = max(set(counts), key=counts.count, default=None)
    if top is None or counts.count(top) < need:
        return False
    small = sum(h < small_face for h in heights)
    return top == 0 or max(small, len(heights) - small) >= need


def count_faces(gray: np.ndarray, *, min_face: float = 0.08, neighbors: int = 5) -> int:
    return len(face_boxes(gray, min_face=min_face, neighbors=neighbors))


# --- cuts (pure) -----------------------------------------------------------------------------
SIGNATURE_SIZE = 32
# Width of the picture a signature is made from, taken from every k-th pixel of the planes: twice the
# signature's, so the area scaling to 32x32 still averages 2x2 pixels. Measured on a 623x712 crop of
# the generated 720p episode: 0.16 ms a frame, against 0.45 ms from 128 pixels (every frame pays it).
SIGNATURE_THUMB = 64
HIST_BINS = (8, 4, 4)  # hue, saturation, value
FLAT = 1.0  # gray levels: a thumbnail with less spread than this has no structure to compare


@dataclass(frozen=True)
class Signature:
    hist: np.ndarray  # normalised HSV histogram
    thumb: np.ndarray  # 32x32 grayscale thumbnail, mean removed, flattened
    spread: float  # its standard deviation


def frame_signature(rgb: np.ndarray) -> Signature:
    """A 32x32 summary of an RGB frame: its colour histogram and its coarse grayscale picture."""
    import cv2

    stride = max(1, min(rgb.shape[:2]) // (4 * SIGNATURE_SIZE))  # a cheap pre-shrink of large frames
    small = cv2.resize(
        np.ascontiguousarray(rgb[::stride, ::stride]),
        (SIGNATURE_SIZE, SIGNATURE_SIZE),
        interpolation=cv2.INTER_AREA,
    )
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(HIST_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32).ravel()
    gray -= gray.mean()
    return Signature(hist / max(float(hist.sum()), 1.0), gray, float(gray.std()))


def change(a: Signature, b: Signature) -> float:
    """How different two frames are, 0 (same) .. 1: both the colours and the structure must change.

    The smaller of the histogram distance (1 - intersection) and the decorrelation of the thumbnails
    (1 - Pearson r, clipped to 0..1). When either frame is flat (a black or a plain title card) there is
    no structure to compare and the histogram distance alone decides.
    """
    colours = 1.0 - float(np.minimum(a.hist, b.hist).sum())
    if a.spread < FLAT or b.spread < FLAT:
        return max(0.0, colours)
    r = float(a.thumb @ b.thumb) / (a.thumb.size * a.spread * b.spread)
    return max(0.0, min(colours, 1.0 - r, 1.0))


def cut_score(
    times: Sequence[float], signatures: Sequence[Signature], transition_seconds: float = 0.5
) -> float:
    """The largest change between consecutive frames, or frames `transition_seconds` apart (0..1)."""
    best, j = 0.0, 0
    for i in range(1, len(signatures)):
        best = max(best, change(signatures[i - 1], signatures[i]))
        if transition_seconds > 0:
            while j + 1 < i and times[i] - times[j + 1] >= transition_seconds - 1e-6:
                j += 1
            if times[i] - times[j] >= transition_seconds - 1e-6:
                best = max(best, change(signatures[j], signatures[i]))
    return best


# --- overlays (pure) -------------------------------------------------------------------------
def overlay_found(gray: np.ndarray, rule: OverlayRule) -> bool:
    """The mask stage's heuristic finds a box in this cropped grayscale frame (cv2's RGB2GRAY)."""
    return bool(overlay_boxes(gray, rule, full_range=True))


# An inset box's sides: straight edges whose mean step (gray levels, over the sampled frames) is at
# least INSET_STRENGTH and at least INSET_RATIO times the step two pixels either side (a sharp line,
# not a soft gradient); lines within INSET_BORDER pixels of the frame edge (encoder artefacts) are
# ignored. A box is 8-50% of the frame's width and height and at most 30% of its area.
INSET_STRENGTH = 4.0
INSET_RATIO = 2.0
INSET_BORDER = 2
INSET_MIN_SIDE = 0.08
INSET_MAX_SIDE = 0.5
INSET_MAX_AREA = 0.3
INSET_MAX_LINES = 12


class EdgeAccumulator:
    """Mean absolute vertical and horizontal steps of grayscale frames of one size."""

    def __init__(self) -> None:
        self.rows: np.ndarray | None = None  # (H-1, W): |I[y+1, x] - I[y, x]|
        self.cols: np.ndarray | None = None  # (H, W-1): |I[y, x+1] - I[y, x]|
        self.count = 0

    def add(self, gray: np.ndarray) -> None:
        g = gray.astype(np.int16)
        rows, cols = np.abs(np.diff(g, axis=0)), np.abs(np.diff(g, axis=1))
        if self.rows is None or self.cols is None:
            self.rows, self.cols = rows.astype(np.float32), cols.astype(np.float32)
        else:
            self.rows += rows
            self.cols += cols
        self.count += 1

    def means(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.rows is None or self.cols is None:
            return None
        return self.rows / self.count, self.cols / self.count


def _line_pixels(steps: np.ndarray) -> np.ndarray:
    """Pixels of sharp lines along axis 1 of `steps` (line index along axis 0)."""
    around = np.zeros_like(steps)
    around[2:] = steps[:-2]
    around[:-2] = np.maximum(around[:-2], steps[2:])
    lines = (steps >= INSET_STRENGTH) & (steps >= INSET_RATIO * around)
    lines[:INSET_BORDER] = False
    lines[len(lines) - INSET_BORDER :] = False
    return lines


def _longest_runs(lines: np.ndarray) -> np.ndarray:
    """The longest run of True along axis 1, per row."""
    padded = np.zeros((lines.shape[0], lines.shape[1] + 2), np.int8)
    padded[:, 1:-1] = lines
    best = np.zeros(lines.shape[0], np.int64)
    for y in np.flatnonzero(lines.any(axis=1)):
        edges = np.flatnonzero(np.diff(padded[y]))
        best[y] = (edges[1::2] - edges[0::2]).max()
    return best


def _candidates(lines: np.ndarray, length: int) -> list[int]:
    """Line indices holding a straight run of at least INSET_MIN_SIDE of `length`, longest first."""
    runs = _longest_runs(lines)
    rows = [int(y) for y in np.argsort(-runs, kind="stable") if runs[y] >= INSET_MIN_SIDE * length]
    return rows[:INSET_MAX_LINES]


def inset_boxes(
    row_steps: np.ndarray,
    col_steps: np.ndarray,
    *,
    min_coverage: float = 0.8,
    max_side: float = INSET_MAX_SIDE,
    max_area: float = INSET_MAX_AREA,
) -> list[tuple[int, int, int, int]]:
    """Static inset boxes (x, y, w, h) from mean absolute steps (see `EdgeAccumulator`).

    A box's sides are frame edges or straight lines; at least one horizontal and one vertical side
    must be a found line, each covered by line pixels (one pixel of tolerance) on at least
    `min_coverage` of its length. A picture-in-picture in a corner has two found sides; one floating
    in the frame has four. A full-width band (a desk edge, a ticker) has no vertical side and is left
    to the mask heuristic. `max_side` and `max_area` (shares of the frame) bound the box.
    """
    height, width = row_steps.shape[0] + 1, row_steps.shape[1]
    h_lines, v_lines = _line_pixels(row_steps), _line_pixels(col_steps.T)  # v_lines: (W-1, H)

    def tolerant_cumsum(lines: np.ndarray) -> np.ndarray:
        near = lines.copy()
        near[1:] |= lines[:-1]
        near[:-1] |= lines[1:]
        out = np.zeros((lines.shape[0], lines.shape[1] + 1), np.int32)
        np.cumsum(near, axis=1, out=out[:, 1:])
        return out

    h_cum, v_cum = tolerant_cumsum(h_lines), tolerant_cumsum(v_lines)
    # Coordinates of box edges: frame edges (no line index) and found lines (the edge after line i).
    ys = [(0, None), *((i + 1, i) for i in _candidates(h_lines, width)), (height, None)]
    xs = [(0, None), *((i + 1, i) for i in _candidates(v_lines, height)), (width, None)]
    boxes = []
    for (top, ti), (bottom, bi) in itertools.combinations(sorted(ys, key=lambda c: c[0]), 2):
        h = bottom - top
        if not INSET_MIN_SIDE * height <= h <= max_side * height:
            continue
        for (left, li), (right, ri) in itertools.combinations(sorted(xs, key=lambda c: c[0]), 2):
            w = right - left
            if not INSET_MIN_SIDE * width <= w <= max_side * width or w * h > max_area * width * height:
                continue
            horizontal = [h_cum[i, right] - h_cum[i, left] for i in (ti, bi) if i is not None]
            vertical = [v_cum[i, bottom] - v_cum[i, top] for i in (li, ri) if i is not None]
            if (
                horizontal
                and vertical
                and min(horizontal) >= min_coverage * w
                and min(vertical) >= min_coverage * h
            ):
                boxes.append((left, top, w, h))
    return boxes


# --- silence (pure) --------------------------------------------------------------------------
SPEECH_BAND = (80.0, 4000.0)  # Hz
LEVEL_WINDOW = 0.05  # s


def _band_gain(freqs: np.ndarray) -> np.ndarray:
    """1 inside SPEECH_BAND, 0 below half its low edge and above 1.25 times its high edge, cosine
    tapers between (a brick wall would ring for hundreds of milliseconds around every onset)."""
    low, high = SPEECH_BAND
    rise = np.clip((freqs - low / 2) / (low / 2), 0, 1)
    fall = np.clip((1.25 * high - freqs) / (0.25 * high), 0, 1)
    return 0.5 - 0.5 * np.cos(np.pi * rise * fall)


def speech_levels(audio: np.ndarray, rate: int) -> np.ndarray:
    """Speech-band RMS level (dBFS, full scale = 1.0) of each 50 ms window of mono `audio`.

    The band is cut out of the whole clip's spectrum (one FFT; rumble below 40 Hz and hiss above 5 kHz
    do not count as speech, 40-80 Hz and 4-5 kHz count in part), then measured window by window.
    """
    n = max(1, round(LEVEL_WINDOW * rate))
    count = len(audio) // n
    if count == 0:
        return np.full(1, -np.inf)
    size = fast_length(len(audio))  # zero-padded: a length with a large prime factor is many times slower
    spectrum = np.fft.rfft(audio.astype(np.float64), n=size)
    freqs = np.fft.rfftfreq(size, 1.0 / rate)
    spectrum *= _band_gain(freqs)
    band = np.fft.irfft(spectrum, n=size)[: count * n].reshape(count, n)
    power = (band * band).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(power)


def fast_length(n: int) -> int:
    """The smallest length >= n whose only prime factors are 2, 3 and 5 (fast for the FFT)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def voiced_share(audio: np.ndarray, rate: int, silence_db: float = -45.0) -> float:
    """Share of 50 ms windows whose speech-band level reaches `silence_db`."""
    return float((speech_levels(audio, rate) >= silence_db).mean())


# --- per clip ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipMeasures:
    """What the detectors measured on one clip; `decide` turns it into flags."""

    frames: int  # kept frames read
    sampled: int  # frames given to the overlay and inset detectors (at sample_fps)
    face_counts: tuple[int, ...]  # per face sample (at face_fps)
    cut_score: float
    overlay_share: float  # share of sampled frames where the mask heuristic found a box
    insets: tuple[tuple[int, int, int, int], ...]
    voiced_share: float
    loudest_db: float
    # The graphic rule's boxes (None: the paper's rule measured the overlay).
    graphic: tuple[tuple[int, int, int, int], ...] | None = None
    # The largest face's height / crop height, per face sample that found one.
    face_heights: tuple[float, ...] = ()
    # Silero VAD: share of 32 ms steps with speech (None: not measured).
    speech_ratio: float | None = None

    @property
    def faces(self) -> int:
        return int(statistics.median_low(self.face_counts)) if self.face_counts else 0

    @property
    def face_height(self) -> float | None:
        return float(statistics.median(self.face_heights)) if self.face_heights else None


def decide(m: ClipMeasures, config: FlagConfig) -> tuple[int, dict[str, bool]]:
    """(faces, {flag column: raised}) from a clip's measures."""
    faces = m.faces
    if m.graphic is not None:  # the graphic rule: the flag says whether mask will paint anything
        overlay = config.overlay and bool(m.graphic)
    else:
        overlay = config.overlay and (
            m.overlay_share >= config.overlay_min_share or (config.inset and bool(m.insets))
        )
    height = m.face_height
    speech = m.speech_ratio
    raised = {
        "flag_no_face": faces == 0,
        "flag_many_faces": faces > 1,
        "flag_cut": m.cut_score >= config.cut_threshold,
        "flag_overlay": overlay,
        "flag_silence": m.voiced_share < config.min_voiced,
        "flag_small_face": faces >= 1 and height is not None and height < config.small_face,
        "flag_no_speech": speech is not None and speech < config.no_speech,
        "flag_low_speech": speech is not None and config.no_speech <= speech < config.low_speech,
    }
    assert set(raised) == set(Catalog.FLAG_COLUMNS)
    return faces, raised


def measure_clip(ws: Workspace, row: Any, config: FlagConfig) -> ClipMeasures:
    """Run every detector over the clip's kept, cropped window (one decode pass, then the audio)."""
    import av
    import cv2

    window = ClipWindow.from_row(ws.root, row)
    if not window.path.is_file():
        raise MediaError(f"clip file {row['path']} is missing", hint="run `nwt-data segment --retry-failed`")
    rule = OverlayRule.for_crop(config.mask, window.crop[3])
    times: list[float] = []
    signatures: list[Signature] = []
    counts: list[int] = []
    heights: list[float] = []
    overlays = sampled = 0
    edges = EdgeAccumulator()
    graphic = config.overlay and config.mask.overlay_rule == "graphic"
    sample_times: list[float] = []
    grays: list[np.ndarray] = []
    text = TextSampler(window.trim_start, config.mask.text_fps)
    last_face = -1
    # At most one face sample per 1/face_fps slot of the kept window.
    face_slots = math.floor((window.trim_end - window.trim_start) * config.face_fps - 1e-6) + 1
    try:
        # The first frame of each 1/sample_fps slot of the kept window is sampled (`rgb` not None).
        for t, small, rgb in kept_frames_with_thumbs(window, config.sample_fps, SIGNATURE_THUMB):
            times.append(t)
            signatures.append(frame_signature(small))
            if rgb is None:
                continue
            sampled += 1
            gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
            face_slot = math.floor((t - window.trim_start) * config.face_fps + 1e-6)
            if face_slot > last_face and not faces_settled(counts, heights, face_slots, config.small_face):
                last_face = face_slot
                found = face_boxes(gray, min_face=config.min_face, neighbors=config.face_neighbors)
                counts.append(len(found))
                if found:
                    heights.append(max(h for _, _, _, h in found) / gray.shape[0])
            if graphic:
                sample_times.append(t)
                grays.append(gray)
                text.add(t, rgb)
            elif config.overlay:
                overlays += overlay_found(gray, rule)
                if config.inset:
                    edges.add(gray)
    except (av.FFmpegError, ValueError) as err:
        raise MediaError(f"cannot decode {row['path']}: {err}", hint="the clip file may be damaged") from err
    if not times:
        raise MediaError(f"{row['path']}: no frames in the kept window", hint="run `nwt-data segment` again")
    steps = edges.means()
    insets = inset_boxes(*steps, min_coverage=config.inset_min_coverage) if steps is not None else []

    if row["has_audio"]:
        try:
            audio, rate = kept_audio(window)
        except (av.FFmpegError, ValueError) as err:
            raise MediaError(f"cannot read the audio of {row['path']}: {err}") from err
        levels = speech_levels(audio, rate)
        speech = speech_ratio(audio, rate)
    else:  # no speech at all
        levels = np.full(1, -np.inf)
        speech = 0.0
    plan = plan_overlays(sample_times, grays, text.result()) if graphic else None
    if plan is not None and config.sample_fps == config.mask.overlay_fps:
        store_plan(ws, row, config.mask, plan)  # the samples mask's plan reads: mask reuses it
    return ClipMeasures(
        frames=len(times),
        sampled=sampled,
        face_counts=tuple(counts),
        cut_score=round(cut_score(times, signatures, config.transition_seconds), 6),
        overlay_share=overlays / max(1, sampled),
        insets=tuple(insets),
        voiced_share=float((levels >= config.silence_db).mean()),
        loudest_db=float(levels.max()),
        graphic=tuple(b.box for b in plan.boxes) if plan is not None else None,
        face_heights=tuple(round(h, 4) for h in heights),
        speech_ratio=round(speech, 4),
    )


FlagResult = tuple[int, dict[str, bool], dict[str, float | None]]


def flag_clip(ws: Workspace, row: Any, config: FlagConfig) -> FlagResult:
    """A clip's face count, its raised flags keyed by the catalog's flag columns, and the measures
    the catalog keeps (face_height, speech_ratio)."""
    measures = measure_clip(ws, row, config)
    faces, raised = decide(measures, config)
    return faces, raised, {"face_height": measures.face_height, "speech_ratio": measures.speech_ratio}


# --- the stage ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FlagStage(Stage[Clip, FlagResult]):
    ws: Workspace
    config: FlagConfig
    retry_failed: bool = False
    redo: bool = False

    name = "flag"
    done_label, failed_label = "already flagged", "clips failed"
    reads = frozenset({"clips"})

    def config_dict(self) -> dict[str, Any]:
        return self.config.as_dict()

    def select(self, catalog: Catalog, report: StageReport) -> Selection[Clip]:
        rows = catalog.clips_to_flag(retry_failed=self.retry_failed, redo=self.redo)
        earlier = [] if self.retry_failed or self.redo else catalog.failures("flag")
        return Selection(
            [(r.clip_id, r) for r in rows], 0 if self.redo else catalog.count_done("flag"), earlier
        )

    def work(self, item: Clip) -> FlagResult:
        return flag_clip(self.ws, item, self.config)

    def commit(self, catalog: Catalog, key: str, result: FlagResult,
               report: StageReport) -> None:  # fmt: skip
        faces, raised, kept = result
        catalog.mark_flagged(key, faces=faces, raised=raised, **kept)
        report.add("clips flagged")
        report.add("clips with no flag", not any(raised.values()))
        for column, name in zip(Catalog.FLAG_COLUMNS, FLAG_NAMES, strict=True):
            report.add(f"raised: {name}", raised[column])

    def record_failure(self, catalog: Catalog, key: str, error: NwtError) -> None:
        catalog.mark_flag_failed(key, kind=error.kind, error=error.one_line())

    def finish(self, catalog: Catalog, report: StageReport) -> None:
        """Lower the overlay flag of clips whose every box is the set's, by the evidence of their
        episode's other clips (as mask spares them): possible once the episode is flagged, so here,
        over every flagged clip (a run killed before this point is put right by the next)."""
        mask = self.config.mask
        if not (self.config.overlay and mask.overlay_rule == "graphic" and mask.spare_set_pieces):
            return
        if self.config.sample_fps != mask.overlay_fps:
            return  # the flag's plans are not mask's: no evidence to share
        flagged: dict[str, list[Clip]] = {}
        for clip in catalog.overlay_flagged():
            flagged.setdefault(clip.episode_id, []).append(clip)
        lowered = []
        for episode_id, clips in catalog.episode_footage(flagged).items():
            # Each plan read once per episode (flagged before plans were kept: `flag --redo` makes them).
            plans = episode_plans(self.ws, clips, mask, made_only=True)
            if len(plans) < MIN_CLIPS:
                continue
            for clip in flagged[episode_id]:
                if clip.clip_id in plans and not to_paint(plans[clip.clip_id], list(plans.values()),
                                                          mask.set_piece_share):  # fmt: skip
                    lowered.append(clip.clip_id)
        catalog.lower_overlay_flags(lowered)
        if lowered:
            report.add("overlay flags lowered: the set, seen in the episode's other clips", len(lowered))


def run_flags(ws: Workspace, catalog: Catalog, config: FlagConfig, console: Console, *,
              retry_failed: bool = False, redo: bool = False,
              run: RunConfig | None = None) -> StageReport:  # fmt: skip
    """Flag the selected clips (library entry point: no run record; the CLI records its runs)."""
    stage = FlagStage(ws, config, retry_failed, redo)
    return run_stage(ws, stage, console, catalog=catalog, run=run, record=False)
