"""`nwt-data shard`: episode-stratified splits and WebDataset tar shards (Appendix D steps 9-10).

Splits are stratified inside every episode: the episode's clips are ordered by a seeded hash of
their ids and the first ~5% go to val, the next ~5% to test, the rest to train. A clip's split is
stored in the catalog the first time it is assigned and never changes, so adding episodes later
moves nothing. Shards are only ever appended: a run packs the prepared clips no shard holds yet into
new shards, each written under a temporary name, hashed and renamed, then recorded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nwt_data.catalog import Catalog
from nwt_data.config import ShardConfig, to_dict
from nwt_data.contract import (
    DATASET_FORMAT,
    DATASET_JSON,
    FRAME_HEIGHT,
    FRAME_WIDTH,
    MEL_FRAMES_PER_VIDEO_FRAME,
    MEL_PARAMS,
    PIXEL_SCALING,
    SAMPLE_KEYS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    SPLITS,
    VIDEO_FPS,
    mel_frames_for,
    sha256_of,
)
from nwt_data.stages import StageReport
from nwt_data.workspace import Workspace, fsync_folder, write_atomic


# --- splits (pure) -----------------------------------------------------------------------------
def split_rank(seed: int, clip_id: str) -> str:
    return hashlib.sha256(f"{seed}:{clip_id}".encode()).hexdigest()


def assign_splits(clips: dict[str, str | None], seed: int, val: float, test: float) -> dict[str, str]:
    """Splits for one episode's clips (`clip_id -> split or None`); existing splits are kept.

    Targets are round(n * fraction) val and test clips; an episode of 20 or more clips gets at least
    one of each. New clips fill what val and test lack, in seeded-hash order; the rest go to train.
    """
    n = len(clips)
    targets = {"val": math.floor(n * val + 0.5), "test": math.floor(n * test + 0.5)}  # halves round up
    if n >= 20:
        targets = {k: max(1, v) for k, v in targets.items()}
    have = defaultdict(int)
    for split in clips.values():
        if split:
            have[split] += 1
    fresh = sorted((c for c, s in clips.items() if s is None), key=lambda c: split_rank(seed, c))
    out: dict[str, str] = {}
    for clip_id in fresh:
        for split in ("val", "test"):
            if have[split] < targets[split]:
                break
        else:
            split = "train"
        have[split] += 1
        out[clip_id] = split
    return out


# --- samples ---------------------------------------------------------------------------------
def sample_metadata(clip: Any, episode: Any) -> dict[str, Any]:
    frames = clip["out_frames"]
    return {
        "key": clip["clip_id"],
        "episode_id": clip["episode_id"],
        "episode_index": episode["episode_index"],
        "clip_index": clip["clip_index"],
        "source_url": episode["url"],
        "start_time": clip["trim_start"],
        "end_time": clip["trim_start"] + frames / VIDEO_FPS,
        "segment": [clip["start_time"], clip["end_time"]],
        "crop": [clip["crop_x"], clip["crop_y"], clip["crop_w"], clip["crop_h"]],
        "frames": frames,
        "fps": VIDEO_FPS,
        "audio_samples": frames * SAMPLES_PER_FRAME,
        "mel_frames": mel_frames_for(frames),
        "masked_frames": clip["masked_frames"],
        "masked_fraction": clip["masked_fraction"],
        "split": clip["split"],
    }


def read_sample(ws: Workspace, clip: Any, episode: Any) -> dict[str, Any]:
    folder = ws.root / clip["prepared_path"]
    return {
        "__key__": clip["clip_id"],
        "mp4": (folder / "video.mp4").read_bytes(),
        "audio.npy": (folder / "audio.npy").read_bytes(),
        "mel.npy": (folder / "mel.npy").read_bytes(),
        "json": json.dumps(sample_metadata(clip, episode), sort_keys=True).encode(),
    }


def sample_size(sample: dict[str, Any]) -> int:
    return sum(len(v) + 1024 for k, v in sample.items() if not k.startswith("__"))  # + tar headers


class ShardWriter:
    """One tar shard being written under a temporary name; samples stream through, none are held."""

    def __init__(self, path: Path) -> None:
        import webdataset as wds

        self.path = path
        self.tmp = path.with_name(f".{path.name}.partial")
        self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish()
        self.sink = wds.TarWriter(self.file, encoder=False, mtime=0.0)
        self.size = 0
        self.keys: list[str] = []

    def write(self, sample: dict[str, Any]) -> None:
        self.sink.write(sample)
        self.size += sample_size(sample)
        self.keys.append(sample["__key__"])

    def finish(self) -> tuple[int, str]:
        """Close, flush to disk, hash and rename into place; return (bytes, sha256)."""
        self.sink.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        digest = sha256_of(self.tmp)
        os.replace(self.tmp, self.path)
        fsync_folder(self.path.parent)
        return self.path.stat().st_size, digest


def next_index(existing: Iterable[str], split: str) -> int:
    numbers = [int(name[len(split) + 1 : -4]) for name in existing if name.startswith(f"{split}-")]
    return max(numbers, default=-1) + 1


# --- dataset.json --------------------------------------------------------------------------------
def dataset_description(catalog: Catalog, config: ShardConfig, video: dict[str, Any]) -> dict[str, Any]:
    shards = catalog.shards()
    episodes = catalog.episodes("episode_index IS NOT NULL")
    return {
        "format": DATASET_FORMAT,
        "episodes": {
            e["episode_id"]: e["episode_index"] for e in sorted(episodes, key=lambda e: e["episode_index"])
        },
        "shards": [
            {
                "name": s["name"],
                "split": s["split"],
                "samples": s["samples"],
                "bytes": s["bytes"],
                "sha256": s["sha256"],
            }
            for s in shards
        ],
        "samples": {split: sum(s["samples"] for s in shards if s["split"] == split) for split in SPLITS},
        "video": {
            "fps": VIDEO_FPS,
            "width": FRAME_WIDTH,
            "height": FRAME_HEIGHT,
            "channels": 3,
            "codec": "h264",
            "pix_fmt": "yuv420p",
            "pixel_scaling": PIXEL_SCALING,
            **video,
        },
        "audio": {
            "sample_rate": SAMPLE_RATE,
            "channels": 1,
            "dtype": "int16",
            "samples_per_frame": SAMPLES_PER_FRAME,
        },
        "mel": {**MEL_PARAMS, "frames_per_video_frame": MEL_FRAMES_PER_VIDEO_FRAME, "dtype": "float32"},
        "split": {
            "seed": config.seed,
            "val_fraction": config.val_fraction,
            "test_fraction": config.test_fraction,
        },
        "sample_keys": list(SAMPLE_KEYS),
        # Shards are never rewritten: clips rejected after sharding are listed for the loader to skip.
        "excluded": [
            r[0]
            for r in catalog.conn.execute(
                "SELECT clip_id FROM clips WHERE shard IS NOT NULL AND review = 'rejected' ORDER BY clip_id"
            )
        ],
    }


# --- the stage ---------------------------------------------------------------------------------
def run_shard(ws: Workspace, catalog: Catalog, config: ShardConfig, console: Console) -> StageReport:
    report = StageReport("shard")
    usable = "mask_status = 'done' AND status = 'ok' AND (review IS NULL OR review = 'accepted')"
    with ws.stage_lock("shard"):
        for stale in ws.shards_dir.glob(".*.partial"):
            stale.unlink()
        todo = catalog.clips(f"{usable} AND shard IS NULL")
        episodes_todo = sorted({c["episode_id"] for c in todo})
        for episode_id in episodes_todo:
            current = {
                c["clip_id"]: c["split"] for c in catalog.clips(f"{usable} AND episode_id = ?", (episode_id,))
            }
            catalog.set_splits(assign_splits(current, config.seed, config.val_fraction, config.test_fraction))
        catalog.assign_episode_indices(episodes_todo)
        episodes = {e["episode_id"]: e for e in catalog.episodes()}
        todo = catalog.clips(f"{usable} AND shard IS NULL")
        report.add("clips already in shards", len(catalog.clips("shard IS NOT NULL")))
        existing = [s["name"] for s in catalog.shards()]
        columns = (TextColumn("[bold]shard"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("shard", total=len(todo))
            for split in SPLITS:
                index = next_index(existing, split)
                writer: ShardWriter | None = None
                for clip in (c for c in todo if c["split"] == split):
                    progress.update(task, advance=1)
                    try:
                        sample = read_sample(ws, clip, episodes[clip["episode_id"]])
                    except OSError as err:
                        message = f"prepared files missing or unreadable: {err.strerror or err}"
                        hint = "run `nwt-data mask --retry-failed`, then shard again"
                        catalog.mark_mask_failed(clip["clip_id"], kind="media", error=f"{message} ({hint})")
                        report.failures.append((clip["clip_id"], "media", f"{message} ({hint})"))
                        continue
                    if writer is not None and writer.size + sample_size(sample) > config.shard_size:
                        _close(writer, split, catalog, report)
                        writer = None
                    if writer is None:
                        writer = ShardWriter(ws.shards_dir / f"{split}-{index:06d}.tar")
                        index += 1
                    writer.write(sample)
                if writer is not None:
                    _close(writer, split, catalog, report)
        mask_run = catalog.conn.execute(
            "SELECT config FROM runs WHERE command = 'mask' ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
        mask_config = json.loads(mask_run[0]) if mask_run else {}
        video = {"gop": mask_config.get("gop"), "crf": mask_config.get("crf")}
        description = dataset_description(catalog, config, video)
        description["shard_config"] = to_dict(config)
        write_atomic(ws.shards_dir / DATASET_JSON, json.dumps(description, indent=2).encode())
    for split in SPLITS:
        report.counts.setdefault(f"{split} clips written", 0)
    if description["excluded"]:
        report.add("sharded, then rejected in review (the loader skips them)", len(description["excluded"]))
    return report


def _close(writer: ShardWriter, split: str, catalog: Catalog, report: StageReport) -> None:
    nbytes, digest = writer.finish()
    catalog.record_shard(writer.path.name, split, writer.keys, nbytes, digest)
    report.add(f"new {split} shards")
    report.add(f"{split} clips written", len(writer.keys))
