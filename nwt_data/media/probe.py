"""Read a container's streams and packets with PyAV (no decoding) and derive probe facts.

Packets are read in decode order; times stay exact integers in each stream's time base until
they are turned into seconds at the edge.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from nwt_data.errors import MediaError


@dataclass(frozen=True)
class Packets:
    """One stream's packets in decode order: pts and duration in `time_base` ticks.

    `discard` marks packets that an edit list hides (decoded for reference, never shown): a cut
    made in stream copy starts at the keyframe before the cut, and those lead-in frames are hidden.
    `start`, `end` and `presented_times` describe what a player shows.
    """

    time_base: Fraction
    pts: np.ndarray  # int64
    duration: np.ndarray  # int64
    keyframe: np.ndarray  # bool
    discard: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.pts)

    @property
    def presented(self) -> np.ndarray:
        return ~self.discard

    @property
    def presented_count(self) -> int:
        return int(self.presented.sum())

    @property
    def start(self) -> float:
        return float(self.pts[self.presented].min() * self.time_base)

    @property
    def end(self) -> float:
        shown = self.presented
        return float((self.pts[shown] + self.duration[shown]).max() * self.time_base)

    def presented_times(self) -> np.ndarray:
        """Presentation times in seconds of the shown packets, sorted."""
        return np.sort(self.pts[self.presented]) * float(self.time_base)


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    format_name: str
    container_duration: float
    width: int
    height: int
    video_codec: str
    average_rate: Fraction | None
    nominal_rate: Fraction | None
    video: Packets
    audio_codec: str | None
    sample_rate: int | None
    channels: int | None
    audio: Packets | None
    edit_list: bool
    rotation: int | None = None  # display rotation in degrees; None when not looked at

    @property
    def has_audio(self) -> bool:
        return self.audio is not None and self.audio.presented_count > 0

    @property
    def keyframe_times(self) -> list[float]:
        kf = self.video.pts[self.video.keyframe]
        return [round(float(t), 6) for t in np.sort(kf) * float(self.video.time_base)]

    @property
    def video_duration(self) -> float:
        return self.video.end - self.video.start

    @property
    def variable_frame_rate(self) -> bool:
        deltas = np.diff(np.sort(self.video.pts[self.video.presented]))
        if len(deltas) < 2:
            return False
        spread = int(deltas.max() - deltas.min())
        return spread > 2 and spread > 0.01 * float(np.median(deltas))

    def facts(self) -> dict[str, Any]:
        """The probe facts stored in the catalog (JSON-friendly)."""
        return {
            "format": self.format_name,
            "duration": round(self.video_duration, 6),
            "container_duration": round(self.container_duration, 6),
            "width": self.width,
            "height": self.height,
            "video_codec": self.video_codec,
            "frame_rate": _ratio(self.average_rate),
            "nominal_frame_rate": _ratio(self.nominal_rate),
            "variable_frame_rate": self.variable_frame_rate,
            "frame_count": self.video.presented_count,
            "video_start": round(self.video.start, 6),
            "first_packet_is_keyframe": bool(self.video.keyframe[0]) if len(self.video) else False,
            "keyframes": self.keyframe_times,
            "audio_codec": self.audio_codec,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "audio_start": round(self.audio.start, 6) if self.has_audio else None,
            "audio_end": round(self.audio.end, 6) if self.has_audio else None,
            "edit_list": self.edit_list,
            "rotation": self.rotation,
        }


def _ratio(value: Fraction | None) -> str | None:
    return None if value is None else f"{value.numerator}/{value.denominator}"


def _fraction(value: Any) -> Fraction | None:
    if value is None:
        return None
    frac = Fraction(value)
    return frac if frac > 0 else None


def probe(path: Path, *, rotation: bool = False) -> MediaInfo:
    """Probe `path`; raise MediaError with a one-line reason when it is not usable video.

    `rotation=True` also decodes the first frame to read the display rotation (phone footage).
    """
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise MediaError(f"not a readable media file: {av_error_text(err)}") from err
    with container:
        if not container.streams.video:
            raise MediaError("no video stream in the file")
        vstream = container.streams.video[0]
        astream = container.streams.audio[0] if container.streams.audio else None
        streams = [vstream] + ([astream] if astream is not None else [])
        rows: dict[int, list[tuple[int, int, bool, bool]]] = {s.index: [] for s in streams}
        try:
            for packet in container.demux(streams):
                if packet.size == 0:  # flush packets carry no data
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    continue
                row = (ts, packet.duration or 0, packet.is_keyframe, packet.is_discard)
                rows[packet.stream.index].append(row)
        except av.FFmpegError as err:
            raise MediaError(f"damaged or truncated media: {av_error_text(err)}") from err
        video = _packets(rows[vstream.index], vstream.time_base, _declared_end(vstream))
        if video.presented_count == 0:
            raise MediaError("the video stream has no frames")
        audio = _packets(rows[astream.index], astream.time_base, None) if astream is not None else None
        codec = vstream.codec_context
        return MediaInfo(
            path=path,
            format_name=container.format.name,
            container_duration=(container.duration or 0) / 1_000_000,
            width=codec.width,
            height=codec.height,
            video_codec=codec.name,
            average_rate=_fraction(vstream.average_rate),
            nominal_rate=_fraction(vstream.base_rate),
            video=video,
            audio_codec=astream.codec_context.name if astream is not None else None,
            sample_rate=astream.codec_context.sample_rate if astream is not None else None,
            channels=astream.codec_context.channels if astream is not None else None,
            audio=audio if audio is not None and audio.presented_count else None,
            edit_list=has_edit_list(path),
            rotation=_rotation(path) if rotation else None,
        )


def truncation(info: MediaInfo, *, tolerance: float = 0.5) -> str | None:
    """Why the file looks cut short, or None: its streams end well before the container says.

    A faststart MP4 cut part-way keeps its index (the container still declares the whole length) but
    loses the media data, so demuxing just stops early. `tolerance` (seconds, and at least 2% of the
    length) absorbs encoder priming and rounding.
    """
    declared = info.container_duration
    parts = [info.video] + ([info.audio] if info.audio is not None and info.has_audio else [])
    streams = max(p.end for p in parts) - min(p.start for p in parts)
    if declared <= 0 or declared - streams <= max(tolerance, 0.02 * declared):
        return None
    return f"the file holds {streams:.2f} s of the {declared:.2f} s its container declares (cut short)"


def probe_whole(path: Path) -> MediaInfo:
    """`probe` with the display rotation, refusing a file that was cut short (a truncated download)."""
    info = probe(path, rotation=True)
    reason = truncation(info)
    if reason:
        raise MediaError(reason, "the transfer stopped part-way; run fetch again with --retry-failed")
    return info


def _rotation(path: Path) -> int:
    import av

    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0), None)
    except av.FFmpegError:
        return 0
    return int(getattr(frame, "rotation", 0) or 0) % 360 if frame is not None else 0


def _declared_end(stream: Any) -> int | None:
    if stream.duration is None or stream.start_time is None or stream.duration <= 0:
        return None
    return int(stream.start_time + stream.duration)


def _packets(rows: list[tuple[int, int, bool, bool]], time_base: Any, declared_end: int | None) -> Packets:
    arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
    duration = arr[:, 1].copy()
    if len(arr) > 1:
        # A packet without a duration (often the last one) lasts as long as the typical step.
        order = np.sort(arr[:, 0])
        step = int(np.median(np.diff(order))) if len(order) > 1 else 0
        duration[duration <= 0] = step
    if declared_end is not None and len(arr):
        # The last frame's stored duration can run past where the edit list ends the stream.
        last = int(np.argmax(np.where(arr[:, 3] == 0, arr[:, 0], np.iinfo(np.int64).min)))
        if arr[last, 0] < declared_end < arr[last, 0] + duration[last]:
            duration[last] = declared_end - arr[last, 0]
    return Packets(
        time_base=Fraction(time_base),
        pts=arr[:, 0].copy(),
        duration=duration,
        keyframe=arr[:, 2].astype(bool),
        discard=arr[:, 3].astype(bool),
    )


def av_error_text(err: BaseException) -> str:
    """FFmpeg's reason without errno numbers and file paths: 'Invalid data found when processing input'."""
    text = getattr(err, "strerror", None) or str(err)
    return text.split(":")[-1].strip() if ":" in text else text.strip()


_CONTAINER_BOXES = {b"moov", b"trak", b"edts"}


def has_edit_list(path: Path) -> bool:
    """True when an MP4/MOV track has an edit list that changes its timeline.

    FFmpeg applies edit lists while demuxing, so timestamps read through PyAV already include them;
    this is recorded so a user can see which sources relied on one.
    """
    try:
        with open(path, "rb") as f:
            return _scan_boxes(f, f.seek(0, 2), 0)
    except OSError:
        return False


def _scan_boxes(f: Any, end: int, start: int) -> bool:
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            return False
        size, kind = struct.unpack(">I4s", header)
        header_len = 8
        if size == 1:
            size = struct.unpack(">Q", f.read(8))[0]
            header_len = 16
        elif size == 0:
            size = end - pos
        if size < header_len:
            return False
        if kind in _CONTAINER_BOXES and _scan_boxes(f, pos + size, pos + header_len):
            return True
        if kind == b"elst" and _edit_list_is_nontrivial(f.read(min(size - header_len, 4096))):
            return True
        pos += size
    return False


def _edit_list_is_nontrivial(body: bytes) -> bool:
    if len(body) < 8:
        return False
    version = body[0]
    count = struct.unpack(">I", body[4:8])[0]
    if count != 1:
        return count > 1
    if version == 1:
        media_time = struct.unpack(">q", body[16:24])[0] if len(body) >= 24 else 0
    else:
        media_time = struct.unpack(">i", body[12:16])[0] if len(body) >= 16 else 0
    return media_time != 0
