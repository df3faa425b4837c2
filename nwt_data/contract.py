"""The data contract: what `nwt-data shard` writes and `nwt-train` reads, defined once.

Both packages import these names; neither re-types a number. A clip of N video frames at
`VIDEO_FPS` holds N * `SAMPLES_PER_FRAME` audio samples at `SAMPLE_RATE` and
`mel_frames_for(N)` mel frames; mel frames 4i .. 4i+3 belong to video frame i. `dataset.json` and
`codes.json` carry a `format` number; a reader refuses a newer one than it knows.

The file helpers (hashing, atomic writes, fsync) live here because both sides write files the
other trusts: a reader must never see half a file.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

# --- video (Appendix D steps 7-8) -----------------------------------------------------------------
VIDEO_FPS = 30
FRAME_WIDTH = 224
FRAME_HEIGHT = 256
PIXEL_SCALING = "x / 127.5 - 1"

# --- audio and mel (Table 7) ----------------------------------------------------------------------
SAMPLE_RATE = 24_000
SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS  # 800
MEL_PARAMS: dict[str, Any] = {
    "sr": SAMPLE_RATE,
    "n_mels": 80,
    "n_fft": 1024,
    "hop_length": 200,
    "win_length": 800,
    "center": True,
    "pad_mode": "constant",
    "power": 2.0,
    "fmin": 0.0,
    "fmax": 8000.0,
}
MEL_FRAMES_PER_VIDEO_FRAME = SAMPLES_PER_FRAME // MEL_PARAMS["hop_length"]  # 4


def mel_frames_for(n_video_frames: int) -> int:
    """Mel frames of a clip of `n_video_frames` (centred STFT: one more than 4 per frame)."""
    return MEL_FRAMES_PER_VIDEO_FRAME * n_video_frames + 1


# --- shards -----------------------------------------------------------------------------------------
SAMPLE_KEYS = ("mp4", "audio.npy", "mel.npy", "json")  # members of one clip's sample in a tar shard
SPLITS = ("train", "val", "test")

DATASET_JSON = "dataset.json"
DATASET_FORMAT = 2  # 2: every shard lists the mask settings its clips were prepared with
CODES_JSON = "codes.json"
CODES_FORMAT = 1


class FormatError(ValueError):
    """A description file written by a newer nwt than this one."""


def check_format(description: dict[str, Any], name: str, supported: int) -> None:
    """Refuse a `dataset.json` / `codes.json` whose `format` is newer than `supported`."""
    have = description.get("format", 1)
    if not isinstance(have, int) or have > supported:
        raise FormatError(
            f"{name} has format {have!r}; this nwt reads up to {supported}: upgrade nwt or re-run the stage"
        )


# --- files ----------------------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary name and a rename, so readers never see half."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's files and the folder itself, to disk (before marking it done)."""
    for item in [*path.iterdir(), path] if path.is_dir() else [path]:
        fd = os.open(item, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_folder(folder: Path) -> None:
    """fsync a folder's entry list (a rename inside it), not its files."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
