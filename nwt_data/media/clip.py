"""Read a clip exactly as the catalog defines it: the kept (trimmed) window, cropped.

Segment records crop and trim instead of re-encoding; every later reader (review, mask) goes
through these functions, so they all see the same frames and the same audio.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class ClipWindow:
    """Where a clip file sits in its episode and which part of it is kept."""

    path: Path
    clip_offset: float  # episode time = time in the file + clip_offset
    trim_start: float  # episode timeline
    trim_end: float
    crop: tuple[int, int, int, int]  # x, y, w, h in source pixels

    @classmethod
    def from_row(cls, workspace_root: Path, row: Mapping[str, Any]) -> ClipWindow:
        if row["trim_start"] is None:
            raise ValueError(f"clip {row['clip_id']} has no kept window (status {row['status']})")
        return cls(
            path=workspace_root / row["path"],
            clip_offset=row["clip_offset"],
            trim_start=row["trim_start"],
            trim_end=row["trim_end"],
            crop=(row["crop_x"], row["crop_y"], row["crop_w"], row["crop_h"]),
        )

    def keeps(self, episode_time: float) -> bool:
        return self.trim_start - 1e-9 <= episode_time < self.trim_end - 1e-9


def _decoded_kept(window: ClipWindow, *, threaded: bool = True) -> Iterator[tuple[float, Any]]:
    """(episode time, av.VideoFrame) for every decoded frame of the kept window, in order."""
    import av

    with av.open(str(window.path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO" if threaded else "NONE"
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            t = frame.time + window.clip_offset
            if t >= window.trim_end - 1e-9:
                break
            if window.keeps(t):
                yield t, frame


def crop_rgb(frame: Any, crop: tuple[int, int, int, int]) -> np.ndarray:
    """An av.VideoFrame as RGB, cut to the crop box (x, y, w, h)."""
    x, y, w, h = crop
    return frame.to_ndarray(format="rgb24")[y : y + h, x : x + w]


def sample_rgb(frame: Any, crop: tuple[int, int, int, int]) -> np.ndarray:
    """The RGB picture of a frame's crop box for the detectors (`crop_rgb` converts the whole frame).
    A 4:2:0 frame's planes are cut to the box (widened to even rows and columns, so the chroma grid
    stays aligned) and only that is converted, by OpenCV (BT.601, limited range, as swscale's
    default; chroma repeated, not interpolated, and rounded differently: a few levels from
    `crop_rgb` on smooth colour, more along sharp colour edges), at a third of the cost for a 720p
    frame; other formats go through `crop_rgb`. The flag stage and mask's overlay plan both read
    their samples through it, so the flag sees what mask will paint."""
    import cv2

    x, y, w, h = crop
    x0, y0 = x - x % 2, y - y % 2
    x1, y1 = x + w + (x + w) % 2, y + h + (y + h) % 2
    if frame.format.name != "yuv420p" or x1 > frame.width or y1 > frame.height:
        return crop_rgb(frame, crop)
    cw, ch = x1 - x0, y1 - y0
    # I420: the Y plane, then U and V, each packed one after the other.
    i420 = np.empty(cw * ch * 3 // 2, np.uint8)
    start = 0
    for i, (px, py, pw, ph) in enumerate(((x0, y0, cw, ch), *[(x0 // 2, y0 // 2, cw // 2, ch // 2)] * 2)):
        plane = frame.planes[i]
        full = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        i420[start : start + pw * ph].reshape(ph, pw)[:] = full[py : py + ph, px : px + pw]
        start += pw * ph
    i420 = i420.reshape(ch * 3 // 2, cw)
    rgb = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
    return rgb[y - y0 : y - y0 + h, x - x0 : x - x0 + w]


def _slot(window: ClipWindow, t: float, fps: float) -> int:
    """Which 1/fps slot of the kept window episode time `t` falls in."""
    return math.floor((t - window.trim_start) * fps + 1e-6)


def kept_frames(window: ClipWindow) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (episode time, RGB frame cropped to the box) for every frame in the kept window."""
    for t, frame in _decoded_kept(window):
        yield t, crop_rgb(frame, window.crop)


def held_frames(
    window: ClipWindow,
    times: np.ndarray,
    convert: Callable[[Any], T] | None = None,
    *,
    threaded: bool = True,
) -> Iterator[tuple[int, T, bool]]:
    """For each episode time in `times` (ascending), the frame on screen at that time.

    Yields (index, convert(frame), new); by default `convert` gives the cropped RGB frame. `new` is
    False when the same source frame is shown again (convert is not called again). This is
    sample-and-hold frame-rate conversion: output frame i shows the last source frame whose
    timestamp is <= times[i]; it never drifts, whatever the source's frame rate.
    """
    import av

    if convert is None:
        convert = lambda frame: crop_rgb(frame, window.crop)  # noqa: E731
    eps = 1e-6
    with av.open(str(window.path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO" if threaded else "NONE"
        decoded = ((f.time + window.clip_offset, f) for f in container.decode(stream) if f.time is not None)
        current = next(decoded, None)
        if current is None:
            raise ValueError(f"{window.path.name}: no decodable video frames")
        upcoming = next(decoded, None)
        shown: Any = None
        for i, t in enumerate(times):
            new = i == 0
            while upcoming is not None and upcoming[0] <= t + eps:
                current, upcoming = upcoming, next(decoded, None)
                new = True
            if new:
                shown = convert(current[1])
            yield i, shown, new


def kept_audio(window: ClipWindow) -> tuple[np.ndarray, int]:
    """The kept window's audio as mono float32 at the file's sample rate, sample-exact."""
    return audio_span(window, window.trim_start, window.trim_end - window.trim_start)


def decode_mono(path: Path) -> tuple[np.ndarray, int, float | None]:
    """The first audio stream of a file as mono float32 at its own rate, and its first frame's time.

    Whatever the codec gives (planar or interleaved, float or integer PCM), swresample turns it into
    planar float in [-1, 1] at the same rate (no delay); mono is the channels' mean, as in
    librosa.to_mono (swresample's own downmix would add correlated channels at -3 dB: louder).
    The time is None when no frame decoded.
    """
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path.name} has no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        planar = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=rate)
        chunks: list[np.ndarray] = [np.zeros(0, np.float32)]
        first: float | None = None
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            if first is None:
                first = frame.time
            chunks.extend(f.to_ndarray().mean(axis=0) for f in planar.resample(frame))
        chunks.extend(f.to_ndarray().mean(axis=0) for f in planar.resample(None))
    return np.concatenate(chunks).astype(np.float32, copy=False), rate, first


def audio_span(window: ClipWindow, start: float, seconds: float, pad: float = 0.02) -> tuple[np.ndarray, int]:
    """Mono float32 audio for episode times [start, start + seconds) at the file's rate.

    Up to `pad` seconds missing at the end (a 30 FPS frame grid can reach 1/60 s past the kept
    window) are filled with silence; more than that is an error.
    """
    samples, rate, first = decode_mono(window.path)
    if first is None:
        raise ValueError(f"{window.path.name}: no decodable audio")
    first += window.clip_offset
    begin = round((start - first) * rate)
    count = round(seconds * rate)
    missing = begin + count - len(samples)
    if begin < 0 or missing > pad * rate:
        raise ValueError(f"{window.path.name}: audio does not cover {start:.3f}-{start + seconds:.3f} s")
    if missing > 0:
        samples = np.concatenate([samples, np.zeros(missing, np.float32)])
    return samples[begin : begin + count], rate


def sampled_frames(window: ClipWindow, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    """(episode time, cropped RGB frame) for the first frame of each 1/fps slot of the kept window;
    the other frames are decoded but never converted."""
    last = -1
    for t, frame in _decoded_kept(window):
        if (slot := _slot(window, t, fps)) > last:
            last = slot
            yield t, sample_rgb(frame, window.crop)


def small_crop_rgb(frame: Any, crop: tuple[int, int, int, int], thumb: int = 128) -> np.ndarray:
    """A small RGB picture of the crop, about `thumb` pixels wide. For 4:2:0 frames it is taken from
    every k-th pixel of the planes themselves (no scaling, no full-frame conversion: a cut signature
    needs a coarse picture only); other formats are converted, then subsampled."""
    import cv2

    x, y, w, h = crop
    k = max(2, 2 * round(w / thumb / 2))  # even, so the chroma planes subsample on the same grid
    if frame.format.name in ("yuv420p", "yuvj420p"):
        planes = []
        for i, (px, py, step) in enumerate(((x, y, k), (x // 2, y // 2, k // 2), (x // 2, y // 2, k // 2))):
            plane = frame.planes[i]
            full = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            size = (h, w) if i == 0 else ((h + 1) // 2, (w + 1) // 2)
            planes.append(full[py : py + size[0] : step, px : px + size[1] : step])
        rows = min(p.shape[0] for p in planes)
        cols = min(p.shape[1] for p in planes)
        yuv = cv2.merge([np.ascontiguousarray(p[:rows, :cols]) for p in planes])
        return cv2.cvtColor(yuv, cv2.COLOR_YCrCb2RGB)  # the channel order does not matter for a signature
    return frame.to_ndarray(format="rgb24")[y : y + h : k, x : x + w : k]


def kept_frames_with_thumbs(
    window: ClipWindow, fps: float, thumb: int = 128
) -> Iterator[tuple[float, np.ndarray, np.ndarray | None]]:
    """For every frame of the kept window: (episode time, a small RGB picture of the crop about
    `thumb` pixels wide (`small_crop_rgb`), the full-size RGB crop or None). The full crop is
    converted only for the first frame of each 1/fps slot."""
    last = -1
    # The stage runs a clip per core: decoding threads only add overhead.
    for t, frame in _decoded_kept(window, threaded=False):
        full = None
        if (slot := _slot(window, t, fps)) > last:
            last = slot
            full = sample_rgb(frame, window.crop)
        yield t, small_crop_rgb(frame, window.crop, thumb), full
