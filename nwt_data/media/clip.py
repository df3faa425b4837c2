"""Read a clip exactly as the catalog defines it: the kept (trimmed) window, cropped.

Segment records crop and trim instead of re-encoding; every later reader (review, mask) goes
through these functions, so they all see the same frames and the same audio.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


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


def kept_frames(window: ClipWindow) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (episode time, RGB frame cropped to the box) for every frame in the kept window."""
    import av

    x, y, w, h = window.crop
    with av.open(str(window.path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            t = frame.time + window.clip_offset
            if t >= window.trim_end - 1e-9:
                break
            if window.keeps(t):
                yield t, frame.to_ndarray(format="rgb24")[y : y + h, x : x + w]


def kept_audio(window: ClipWindow) -> tuple[np.ndarray, int]:
    """The kept window's audio as mono float32 at the file's sample rate, sample-exact."""
    import av

    with av.open(str(window.path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        chunks: list[np.ndarray] = []
        first: float | None = None
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            if first is None:
                first = frame.time + window.clip_offset
            chunks.append(
                frame.to_ndarray().astype(np.float32).reshape(len(frame.layout.channels), -1).mean(0)
            )
    if first is None:
        return np.zeros(0, np.float32), rate
    samples = np.concatenate(chunks)
    begin = round((window.trim_start - first) * rate)
    count = round((window.trim_end - window.trim_start) * rate)
    if begin < 0 or begin + count > len(samples):
        raise ValueError(f"{window.path.name}: audio does not cover the kept window")
    return samples[begin : begin + count], rate
