"""Stream shards into training: 30-frame video windows (dVAE) or 32-frame Memcode + mel windows (prior).

Each sample of a shard holds one clip: `mp4` (H.264, 256x224, 30 FPS, short GOP), `mel.npy`
(80 x 4N+1 power mel), `audio.npy` (int16, 24 kHz, N*800 samples) and `json` metadata. A window of T
frames starting at frame s takes video frames s..s+T-1 and mel frames 4s..4(s+T)-1 (the alignment
contract in the README). Pixels are scaled to [-1, 1] with x / 127.5 - 1 (Appendix D step 9).

Training streams resample shards with replacement and stop each worker after a fixed number of
samples, so every rank and worker yields the same count and torchrun never hangs on uneven shards.
"""

from __future__ import annotations

import io
import json
import random
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nwt_data.contract import (
    CODES_FORMAT,
    CODES_JSON,
    DATASET_FORMAT,
    MEL_FRAMES_PER_VIDEO_FRAME,
    check_format,
)
from nwt_train.errors import DataError, DatasetMismatch, MissingInput

__all__ = ["DatasetMismatch"]

MEL_PER_FRAME = MEL_FRAMES_PER_VIDEO_FRAME
MAX_SKIPS_IN_A_ROW = 200
MIN_EMPTY_SHARDS_IN_A_ROW = 20


def parse_description(raw: bytes, path: Path, made_by: str) -> dict[str, Any]:
    """A dataset.json / codes.json as a dict with its shard list, or a DataError that names the file."""
    fix = f"run `{made_by}` again to rewrite it"
    try:
        description = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err})", fix) from None
    if not isinstance(description, dict):
        raise DataError(f"{path} holds a {type(description).__name__}, not an object", fix)
    shards, samples = description.get("shards"), description.get("samples", {})
    if not isinstance(shards, list) or not all(
        isinstance(s, dict) and "name" in s and "split" in s for s in shards
    ):
        raise DataError(f"{path} has no valid `shards` list (name and split per shard)", fix)
    if not isinstance(samples, dict):
        raise DataError(f"{path} has a `samples` entry that is not an object", fix)
    for shard in shards:
        if Path(shard["name"]).name != shard["name"] or shard["name"] in ("", ".", ".."):
            raise DataError(f"{path} names a shard outside its folder: {shard['name']!r}", fix)
    return description


@dataclass(frozen=True)
class Dataset:
    root: Path
    description: dict[str, Any]

    @classmethod
    def open(
        cls, root: str | Path, *, expect: dict[str, Any] | None = None, name: str = "dataset.json"
    ) -> Dataset:
        """Read `dataset.json` (or `name`: codes.json); refuse data whose parameters differ from `expect`."""
        root = Path(root)
        path = root / name if root.is_dir() else root
        made_by = "nwt-train encode" if name == CODES_JSON else "nwt-data shard"
        if not path.is_file():
            raise MissingInput(f"no {name} at {root}: run `{made_by}` first")
        description = parse_description(path.read_bytes(), path, made_by)
        try:
            check_format(description, name, CODES_FORMAT if name == CODES_JSON else DATASET_FORMAT)
        except ValueError as err:  # contract.FormatError
            raise DataError(str(err)) from None
        for section, wanted in (expect or {}).items():
            have = description.get(section, {})
            wrong = {k: (have.get(k), v) for k, v in wanted.items() if have.get(k) != v}
            if wrong:
                details = ", ".join(f"{section}.{k}={h!r} (want {w!r})" for k, (h, w) in wrong.items())
                raise DatasetMismatch(f"{path} does not match the config: {details}")
        return cls(path.parent, description)

    def shard_urls(self, split: str) -> list[str]:
        return [str(self.root / s["name"]) for s in self.description["shards"] if s["split"] == split]

    @property
    def excluded(self) -> frozenset[str]:
        """Clips rejected in review after they were sharded: the loader skips them."""
        return frozenset(self.description.get("excluded", []))

    def num_samples(self, split: str) -> int:
        return int(self.description["samples"].get(split, 0))

    @property
    def num_episodes(self) -> int:
        return len(self.description["episodes"])


def read_video(path: Path | bytes) -> np.ndarray:
    """Every frame of a video file (or of an MP4's bytes, e.g. a shard member) as uint8 (T, H, W, 3)."""
    import av

    source = io.BytesIO(path) if isinstance(path, bytes) else str(path)
    if isinstance(path, bytes):
        path = Path("<video bytes>")
    try:
        with av.open(source) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.FFmpegError, IndexError) as err:
        raise DataError(f"cannot read video from {path}: {err}") from None
    if not frames:
        raise DataError(f"{path} holds no video frames")
    return np.stack(frames)


def decode_video_window(data: bytes, start: int, frames: int) -> np.ndarray:
    """Frames start..start+frames-1 of an MP4 as uint8 (frames, H, W, 3), seeking to the keyframe."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        to_pts = 1 / (30 * stream.time_base)  # frame index -> stream ticks
        if start > 0:
            container.seek(round(start * to_pts), stream=stream, backward=True)
        out: list[np.ndarray] = []
        for frame in container.decode(stream):
            index = round(frame.pts / to_pts)
            if index < start:
                continue
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == frames:
                break
    if len(out) != frames:
        raise ValueError(f"window {start}+{frames} is past the clip's end")
    return np.stack(out)


def to_unit_range(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (T, 3, H, W) in [-1, 1]: x / 127.5 - 1."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def clip_window(sample: dict[str, Any], frames: int, with_mel: bool, rng: random.Random) -> dict[str, Any]:
    """One random window of a raw webdataset sample (bytes values)."""
    meta = json.loads(sample["json"])
    n = int(meta["frames"])
    if n < frames:
        raise ValueError(f"clip {meta['key']} has {n} frames, fewer than the window's {frames}")
    start = rng.randint(0, n - frames)
    out = {
        "key": meta["key"],
        "start": start,
        "episode": int(meta["episode_index"]),
        "video": to_unit_range(decode_video_window(sample["mp4"], start, frames)),
    }
    if with_mel:
        mel = np.load(io.BytesIO(sample["mel.npy"]))
        out["mel"] = torch.from_numpy(mel[:, MEL_PER_FRAME * start : MEL_PER_FRAME * (start + frames)].copy())
    return out


def code_window(sample: dict[str, Any], frames: int, with_mel: bool, rng: random.Random) -> dict[str, Any]:
    """One random window of a Memcode shard sample (`nwt-train encode`): codes and the aligned mel."""
    meta = json.loads(sample["json"])
    n = int(meta["frames"])
    if n < frames:
        raise ValueError(f"clip {meta['key']} has {n} frames, fewer than the window's {frames}")
    start = rng.randint(0, n - frames)
    codes = np.load(io.BytesIO(sample["codes.npy"]))
    out = {
        "key": meta["key"],
        "start": start,
        "episode": int(meta["episode_index"]),
        "codes": torch.from_numpy(codes[start : start + frames].astype(np.int64)),
    }
    if with_mel:
        mel = np.load(io.BytesIO(sample["mel.npy"]))
        out["mel"] = torch.from_numpy(mel[:, MEL_PER_FRAME * start : MEL_PER_FRAME * (start + frames)].copy())
    return out


WindowFn = Callable[[dict[str, Any], int, bool, random.Random], dict[str, Any]]


def clip_windows(
    dataset: Dataset,
    split: str = "train",
    *,
    frames: int = 30,
    with_mel: bool = False,
    make_window: WindowFn = clip_window,
    samples_per_worker: int | None = None,
    seed: int = 0,
    shuffle_buffer: int = 64,
    resume: tuple[int, int] = (0, 1),
) -> Any:
    """A webdataset pipeline of random windows.

    `samples_per_worker=None`: one ordered pass over the split's shards, shards divided between
    nodes and workers (evaluation). Otherwise shards are resampled with replacement and each worker
    yields exactly that many windows (training; same count on every rank).

    `make_window` turns a raw sample into a window: `clip_window` (video shards) or `code_window`
    (Memcode shards). `resume=(steps_done, batch_size)`: continue the exact stream of a run that has
    taken that many DataLoader batches: each worker skips the samples it had delivered, without
    decoding them.
    """
    import webdataset as wds

    urls = dataset.shard_urls(split)
    if not urls:
        raise DataError(f"split {split!r} has no shards in {dataset.root}")
    window = _WindowStage(make_window, frames, with_mel, seed, dataset.excluded, resume)
    guard = _NoSampleGuard(split, dataset.root, len(urls), dataset.excluded)
    if samples_per_worker is None:
        stages = [wds.SimpleShardList(urls), wds.split_by_node, wds.split_by_worker]
    else:
        # deterministic=True seeds each worker of each rank differently (wds.pytorch_worker_seed).
        stages = [wds.ResampledShards(urls, seed=seed, deterministic=True), guard.count_shards]
    stages += [
        wds.tarfile_to_samples(handler=wds.warn_and_continue),
        guard.count_samples,
        _Shuffle(shuffle_buffer, seed) if shuffle_buffer else _identity,
        window,
    ]
    pipeline = wds.DataPipeline(*stages)
    if samples_per_worker is not None:
        pipeline = pipeline.with_epoch(samples_per_worker)
    return pipeline


class _NoSampleGuard:
    """Resampled shards never end: when shard after shard yields no usable sample, stop with a DataError.

    `tarfile_to_samples` skips an empty or damaged tar without a sample, so the per-sample skip guard
    of `_WindowStage` never sees anything; this counts shards opened since the last usable sample.
    """

    def __init__(self, split: str, root: Path, shards: int, excluded: frozenset[str]) -> None:
        self.split, self.root, self.excluded = split, root, excluded
        self.limit = max(MIN_EMPTY_SHARDS_IN_A_ROW, 4 * shards)
        self.opened = 0

    def count_shards(self, source: Iterator[Any]) -> Iterator[Any]:
        for url in source:
            self.opened += 1
            if self.opened > self.limit:
                raise DataError(
                    f"no usable sample in the {self.split} shards of {self.root}: {self.limit} shards "
                    "in a row were empty, damaged or held only excluded clips; run `nwt-data shard` "
                    "again (or check `nwt-data status`)"
                )
            yield url

    def count_samples(self, source: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for sample in source:
            if sample.get("__key__") not in self.excluded:
                self.opened = 0
            yield sample


def _identity(source: Iterator[Any]) -> Iterator[Any]:
    yield from source


def _stream_rng(seed: int) -> random.Random:
    """An RNG of its own for every worker of every rank, made where the stream runs."""
    import webdataset as wds

    return random.Random(seed * 1_000_003 + wds.utils.pytorch_worker_seed())


class _Shuffle:
    """Shuffle within a buffer, with the RNG of the worker (and rank) it runs in."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed

    def __call__(self, source: Iterator[Any]) -> Iterator[Any]:
        rng, buffer = _stream_rng(self.seed), []
        for item in source:
            buffer.append(item)
            if len(buffer) >= self.size:
                yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer


class _WindowStage:
    """A pipeline stage that turns samples into windows, skipping (with a warning) bad ones."""

    def __init__(self, make_window: WindowFn, frames: int, with_mel: bool, seed: int,
                 excluded: frozenset[str], resume: tuple[int, int]) -> None:  # fmt: skip
        self.make_window = make_window
        self.frames, self.with_mel, self.seed, self.excluded = frames, with_mel, seed, excluded
        self.resume = resume

    def _skip(self) -> int:
        """Samples this worker delivered before the resumed step (workers take batches in turn)."""
        steps, batch_size = self.resume
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return max(0, -(-(steps - worker) // workers)) * batch_size

    def __call__(self, source: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        import warnings

        import av
        import webdataset as wds

        stream_seed = self.seed * 1_000_003 + wds.utils.pytorch_worker_seed()
        skip, delivered, failures = self._skip(), 0, 0
        for sample in source:
            if sample.get("__key__") in self.excluded:
                continue
            # One RNG per delivered sample: skipping on resume needs no decoding to stay in step.
            rng = random.Random(f"{stream_seed}:{delivered}")
            delivered += 1
            if delivered <= skip:
                continue
            try:
                window = self.make_window(sample, self.frames, self.with_mel, rng)
            except (ValueError, KeyError, av.FFmpegError) as err:
                warnings.warn(f"skipping sample {sample.get('__key__')}: {err}", stacklevel=2)
                failures += 1
                # Resampled shards never end: without this a set with no usable clip would hang.
                if failures >= MAX_SKIPS_IN_A_ROW:
                    raise DataError(
                        f"{failures} samples in a row gave no window (last: {err}); are the clips "
                        f"shorter than the {self.frames}-frame window? Lower `frames` or add longer clips"
                    ) from None
                continue
            failures = 0
            yield window


def training_batches(
    dataset: Dataset,
    *,
    frames: int,
    per_rank: int,
    steps: int,
    step: int,
    seed: int,
    num_workers: int,
    with_mel: bool = False,
    make_window: WindowFn = clip_window,
) -> Iterator[dict[str, Any]]:
    """The batches of a training run from `step` on: exactly the stream an uninterrupted run sees."""
    windows = clip_windows(
        dataset,
        "train",
        frames=frames,
        with_mel=with_mel,
        make_window=make_window,
        samples_per_worker=max(1, steps * per_rank),
        seed=seed,
        resume=(step, per_rank),
    )
    # A generator of its own: making the iterator must not draw from the (restored) global RNG.
    loader = torch.utils.data.DataLoader(
        windows, batch_size=per_rank, num_workers=num_workers, generator=torch.Generator().manual_seed(seed)
    )
    return _interruptible(iter(loader))


class _StopWaiting(BaseException):
    """SIGTERM arrived while the trainer waited for data (a BaseException: webdataset's handlers
    catch every Exception of a shard and go on to the next)."""


def _interruptible(batches: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The loader's batches; SIGTERM while waiting for one ends the stream (the trainer then saves).

    The trainer's own SIGTERM handler only sets a flag it checks between steps; a loader that never
    delivers (unreadable or unreachable shards) would keep it waiting for ever. While we wait, a SIGTERM
    also runs that handler, then leaves the wait. A DataError raised in a loader worker comes back as
    one line, not as the worker's traceback.
    """
    main = threading.current_thread() is threading.main_thread()
    while True:
        previous = (signal.getsignal(signal.SIGTERM) or signal.SIG_DFL) if main else None

        def leave(signum: int, frame: Any, previous: Any = previous) -> None:
            if callable(previous):
                previous(signum, frame)
            raise _StopWaiting

        if main:
            signal.signal(signal.SIGTERM, leave)
        try:
            batch = next(batches)
        except StopIteration:
            return
        except _StopWaiting:
            return
        except DataError as err:
            raise DataError(_worker_message(str(err))) from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
        yield batch


def _worker_message(text: str) -> str:
    """The original one-line message of an error a DataLoader worker re-raised with its traceback."""
    marker = "DataError: "
    lines = [line for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if marker in line:
            return line.split(marker, 1)[1].strip()
    return lines[-1].strip() if lines else text
