"""`nwt-data shard`: episode-stratified splits and WebDataset tar shards (Appendix D steps 9-10).

Splits (nwt_data.curation.splits) are stratified inside every episode (~90/5/5, `--split-ratios`),
topped up over the whole dataset so that val and test are never empty once it has 3 clips. A clip's
split is stored in the catalog the first time it is assigned and never changes, so adding episodes
later moves nothing. Shards are only ever appended: a run packs the prepared clips no shard holds yet into
new shards, each written under a temporary name, hashed and renamed, then recorded.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from nwt_data.catalog import Catalog
from nwt_data.config import RunConfig, ShardConfig, to_dict
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
from nwt_data.curation.splits import assign_splits
from nwt_data.errors import MediaError, NwtError
from nwt_data.runner import Resources, Selection, Stage, run_stage
from nwt_data.stages import StageReport
from nwt_data.workspace import Workspace, fsync_folder, write_atomic


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
        self.tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
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

    def discard(self) -> None:
        """Remove the temporary file of a shard that was not finished (an error while writing)."""
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


def next_index(existing: Iterable[str], split: str) -> int:
    numbers = [int(name[len(split) + 1 : -4]) for name in existing if name.startswith(f"{split}-")]
    return max(numbers, default=-1) + 1


# --- planning (deterministic: the same clips always make the same shards, on any executor) ---------
@dataclass(frozen=True)
class Planned:
    """One clip as it will be written: where its files are, its metadata, its size in the tar."""

    clip_id: str
    folder: str  # prepared folder, relative to the workspace
    metadata: bytes  # the sample's `json` member
    size: int  # sample_size() of the sample


@dataclass(frozen=True)
class ShardPlan:
    name: str
    split: str
    clips: tuple[Planned, ...]


@dataclass(frozen=True)
class Written:
    name: str
    split: str
    keys: list[str]
    bytes: int
    sha256: str


_MEMBER_FILES = {"mp4": "video.mp4", "audio.npy": "audio.npy", "mel.npy": "mel.npy"}


def plan_shards(sized: dict[str, list[Planned]], existing: Iterable[str], shard_size: int) -> list[ShardPlan]:
    """Group each split's clips, in order, into shards that roll over before `shard_size` bytes."""
    existing = list(existing)
    plans = []
    for split in SPLITS:
        index = next_index(existing, split)
        group: list[Planned] = []
        total = 0
        for clip in sized.get(split, []):
            if group and total + clip.size > shard_size:
                plans.append(ShardPlan(f"{split}-{index:06d}.tar", split, tuple(group)))
                index, group, total = index + 1, [], 0
            group.append(clip)
            total += clip.size
        if group:
            plans.append(ShardPlan(f"{split}-{index:06d}.tar", split, tuple(group)))
    return plans


def write_shard(ws: Workspace, plan: ShardPlan) -> Written:
    """Write one planned shard under a temporary name, hash it, rename it in (one Ray task per shard)."""
    writer = ShardWriter(ws.shards_dir / plan.name)
    try:
        for clip in plan.clips:
            folder = ws.root / clip.folder
            sample: dict[str, Any] = {"__key__": clip.clip_id}
            try:
                for key in SAMPLE_KEYS:
                    sample[key] = (
                        clip.metadata if key == "json" else (folder / _MEMBER_FILES[key]).read_bytes()
                    )
            except OSError as err:
                raise MediaError(
                    f"prepared files of {clip.clip_id} vanished while sharding: {err.strerror or err}",
                    hint="run `nwt-data mask --retry-failed`, then shard again",
                ) from err
            writer.write(sample)
        nbytes, digest = writer.finish()
    finally:
        writer.discard()
    return Written(plan.name, plan.split, writer.keys, nbytes, digest)


# --- dataset.json --------------------------------------------------------------------------------
def dataset_description(catalog: Catalog, config: ShardConfig) -> dict[str, Any]:
    """dataset.json: what the shards hold, each with the mask settings its clips were prepared with."""
    shards = catalog.shards()
    masks = catalog.shard_mask_configs()
    settings = {json.dumps(m, sort_keys=True) for s in shards for m in masks.get(s.name, [])}
    # The stored video's GOP and CRF, when every shard agrees on them (see each shard's "mask" otherwise).
    common = json.loads(settings.pop()) if len(settings) == 1 else {}
    return {
        "format": DATASET_FORMAT,
        "episodes": {e.episode_id: e.episode_index for e in catalog.episodes_indexed()},
        "shards": [
            {
                "name": s.name,
                "split": s.split,
                "samples": s.samples,
                "bytes": s.bytes,
                "sha256": s.sha256,
                "mask": masks.get(s.name, []),
            }
            for s in shards
        ],
        "samples": {split: sum(s.samples for s in shards if s.split == split) for split in SPLITS},
        "video": {
            "fps": VIDEO_FPS,
            "width": FRAME_WIDTH,
            "height": FRAME_HEIGHT,
            "channels": 3,
            "codec": "h264",
            "pix_fmt": "yuv420p",
            "pixel_scaling": PIXEL_SCALING,
            "gop": common.get("gop"),
            "crf": common.get("crf"),
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
        "excluded": catalog.sharded_then_rejected(),
        "shard_config": to_dict(config),
    }


# --- the stage ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardStage(Stage[ShardPlan, Written]):
    ws: Workspace
    config: ShardConfig

    name = "shard"
    resources = Resources(cpus=1, memory_mb=512)
    reads, rewrites = frozenset({"clips", "prepared"}), frozenset({"shards"})

    def workers(self) -> int:
        return 1  # one shard after another on this machine; one task per shard on Ray

    def prepare(self, catalog: Catalog) -> None:
        # A killed run leaves its shard (.partial) or its dataset.json (write_atomic's .tmp) half written.
        for pattern in (".*.partial", ".*.tmp"):
            for stale in self.ws.shards_dir.glob(pattern):
                stale.unlink()

    def select(self, catalog: Catalog, report: StageReport) -> Selection[ShardPlan]:
        config = self.config
        todo = catalog.clips_prepared(unsharded=True)
        episodes_todo = sorted({c.episode_id for c in todo})
        current = {c.clip_id: (c.episode_id, c.split) for c in catalog.clips_prepared()}
        splits = assign_splits(current, config.seed, config.val_fraction, config.test_fraction)
        catalog.set_splits(splits.assigned)
        report.warnings.extend(splits.warnings())
        if splits.held_out_episodes:
            report.add("episodes wholly in val/test", len(splits.held_out_episodes))
        catalog.assign_episode_indices(episodes_todo)
        episodes = {e.episode_id: e for e in catalog.episodes_indexed()}
        report.add("clips already in shards", catalog.count_sharded())
        sized: dict[str, list[Planned]] = {}
        for clip in catalog.clips_prepared(unsharded=True):
            assert clip.split is not None and clip.prepared_path is not None
            metadata = json.dumps(sample_metadata(clip, episodes[clip.episode_id]), sort_keys=True).encode()
            try:
                files = sum(
                    (self.ws.root / clip.prepared_path / f).stat().st_size for f in _MEMBER_FILES.values()
                )
            except OSError as err:
                message = f"prepared files missing or unreadable: {err.strerror or err}"
                hint = "run `nwt-data mask --retry-failed`, then shard again"
                catalog.mark_mask_failed(clip.clip_id, kind="media", error=f"{message} ({hint})")
                report.failures.append((clip.clip_id, "media", f"{message} ({hint})"))
                continue
            size = files + len(metadata) + 1024 * len(SAMPLE_KEYS)
            sized.setdefault(clip.split, []).append(Planned(clip.clip_id, clip.prepared_path, metadata, size))
        plans = plan_shards(sized, [s.name for s in catalog.shards()], config.shard_size)
        return Selection([(plan.name, plan) for plan in plans])

    def work(self, item: ShardPlan) -> Written:
        return write_shard(self.ws, item)

    def commit(self, catalog: Catalog, key: str, result: Written, report: StageReport) -> None:
        catalog.record_shard(result.name, result.split, result.keys, result.bytes, result.sha256)
        report.add(f"new {result.split} shards")
        report.add(f"{result.split} clips written", len(result.keys))

    def record_failure(self, catalog: Catalog, key: str, error: NwtError) -> None:
        pass  # nothing recorded: the shard's clips stay unsharded, and the next run plans them again

    def finish(self, catalog: Catalog, report: StageReport) -> None:
        description = dataset_description(catalog, self.config)
        write_atomic(self.ws.shards_dir / DATASET_JSON, json.dumps(description, indent=2).encode())
        for split in SPLITS:
            report.counts.setdefault(f"{split} clips written", 0)
        if description["excluded"]:
            report.add(
                "sharded, then rejected in review (the loader skips them)", len(description["excluded"])
            )


def run_shard(ws: Workspace, catalog: Catalog, config: ShardConfig, console: Console, *,
              run: RunConfig | None = None) -> StageReport:  # fmt: skip
    """Pack the prepared clips into shards (library entry point: no run record; the CLI records its runs)."""
    return run_stage(ws, ShardStage(ws, config), console, catalog=catalog, run=run, record=False)
