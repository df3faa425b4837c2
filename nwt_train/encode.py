"""`nwt-train encode`: sample every clip's Memcodes once from a frozen dVAE and write Memcode shards.

The prior's targets are one sample of q(z|x) per clip (Section 2.2.1 and footnote 2: sampling, not
argmax). Each input shard becomes a Memcode shard of the same name holding, per clip:
    codes.npy   uint8 (T, h, w, heads)  the sampled index grid of every frame
    mel.npy     the clip's mel, byte for byte from the video shard (80 x 4T+1, Table 7)
    json        key, episode index, frame count, split
`codes.json` describes the set like `dataset.json` does (shards, samples, episodes) and records the
dVAE that made it: its run folder, step and a digest of its weights. A run that stops part-way keeps
the shards it finished and the next run continues with the rest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nwt_data.contract import CODES_FORMAT, CODES_JSON, fsync_path, sha256_of, write_atomic
from nwt_train import runlock
from nwt_train.command_config import EncodeConfig
from nwt_train.data import Dataset, decode_video_window, to_unit_range
from nwt_train.errors import DataError, RunMismatch
from nwt_train.eval_dvae import load_dvae
from nwt_train.models.dvae import DVAE, in_time_chunks
from nwt_train.train_dvae import fit_frames


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over a model's parameters and buffers: names which dVAE weights made a set of codes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def dvae_identity(run: Path, saved: dict[str, Any], model: DVAE) -> dict[str, Any]:
    return {
        "run": str(run),
        "step": int(saved["step"]),
        "weights_sha256": weights_digest(model),
        "config": saved["config"]["model"],
    }


@torch.no_grad()
def sample_codes(model: DVAE, frames: np.ndarray, *, seed: int, chunk: int) -> np.ndarray:
    """uint8 frames (T, H, W, 3) -> sampled Memcodes uint8 (T, h, w, heads), reproducible from `seed`."""
    device = next(model.parameters()).device
    video = fit_frames(to_unit_range(frames)[None].to(device), model.config.frame_size)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        codes = in_time_chunks(
            lambda v: model.encode(v, sample=True), video, chunk=chunk, context=model.temporal_reach
        )
    return codes[0].to(torch.uint8).cpu().numpy()


def clip_seed(seed: int, key: str) -> int:
    return random.Random(f"{seed}:{key}").getrandbits(63)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _count_samples(path: Path) -> int:
    import tarfile

    with tarfile.open(path) as tar:
        return sum(1 for m in tar.getmembers() if m.name.endswith(".json"))


def _write_json(path: Path, value: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(value, indent=2).encode())


def encode_shards(
    config: EncodeConfig,
    *,
    on_start: Callable[[int], None] | None = None,
    on_clip: Callable[[str, str | None], None] | None = None,
) -> dict[str, Any]:
    """Encode every shard of `config.data` into `config.out`; return the codes.json description.

    `on_start(total_clips)` is called once, `on_clip(key, error_or_None)` after each clip. Clips that
    fail to decode are skipped with their error; shards already written by an earlier run are kept.
    A second encode on the same folder is refused while this one runs; temporary files left by a
    killed run are removed first.
    """
    with runlock.claim(config.out, "encode"):
        return _encode_all(config, on_start, on_clip)


def _encode_all(
    config: EncodeConfig,
    on_start: Callable[[int], None] | None,
    on_clip: Callable[[str, str | None], None] | None,
) -> dict[str, Any]:
    from nwt_train.dist import setup

    dataset = Dataset.open(config.data)
    model, saved = load_dvae(config.dvae)
    device = setup(config.device).device
    model.to(device)
    identity = dvae_identity(config.dvae, saved, model)
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    described = out / CODES_JSON
    source_shards = {sh["name"]: sh.get("sha256") for sh in dataset.description["shards"]}
    if described.exists():
        _refuse_other_codes(json.loads(described.read_text()), identity, config, source_shards, out)
    description: dict[str, Any] = {
        "format": CODES_FORMAT,
        "complete": False,
        "dvae": identity,
        "seed": config.seed,
        "source": str(config.data),
        "source_shards": source_shards,
        "grid": list(model.config.grid_size),
        "heads": model.config.heads,
        "codebook_size": model.config.codebook_size,
        "video": dataset.description.get("video", {}),
        "mel": dataset.description.get("mel", {}),
        "episodes": dataset.description["episodes"],
        "excluded": sorted(dataset.excluded),
        "shards": [],
        "samples": {},
    }
    _write_json(described, description)  # claims the folder for this dVAE before any shard lands

    todo = [s for s in dataset.description["shards"] if not (out / s["name"]).exists()]
    if on_start is not None:
        on_start(sum(int(s.get("samples", 0)) for s in todo))
    failed, incomplete = 0, []
    for shard in todo:
        final = out / shard["name"]
        tmp = out / f".{shard['name']}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            failed_here = _encode_shard(dataset, shard, tmp, model, config, on_clip)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        failed += failed_here
        if failed_here:  # not kept: the next run encodes this shard again, once its clips are fixed
            tmp.unlink(missing_ok=True)
            incomplete.append(shard["name"])
            continue
        fsync_path(tmp)
        os.replace(tmp, final)

    for shard in dataset.description["shards"]:
        path = out / shard["name"]
        if not path.exists():
            continue
        samples = _count_samples(path)
        description["shards"].append(
            {"name": shard["name"], "split": shard["split"], "samples": samples, "sha256": sha256_of(path)}
        )
        description["samples"][shard["split"]] = description["samples"].get(shard["split"], 0) + samples
    description["complete"] = not incomplete
    description["incomplete_shards"] = incomplete
    description["failed_clips"] = failed
    _write_json(described, description)
    return description


def _encode_shard(dataset: Dataset, shard: dict[str, Any], tmp: Path, model: DVAE, config: EncodeConfig,
                  on_clip: Callable[[str, str | None], None] | None) -> int:  # fmt: skip
    """Encode one source shard into `tmp`; the number of clips (or damaged parts) that failed.

    A damaged clip (a member missing, undecodable video) or a damaged tar (cut short, garbage) is
    reported through `on_clip` in one line and counted; the caller keeps no output for the shard.
    """
    import av
    import webdataset as wds

    name = shard["name"]
    fix = "run `nwt-data shard` again to rebuild it"
    failed = 0

    def report(key: str, error: str | None) -> None:
        if on_clip is not None:
            on_clip(key, error)

    damage: list[BaseException] = []

    def stop_on_damage(err: BaseException) -> bool:
        damage.append(err)
        return False  # webdataset: stop reading this shard

    source = wds.WebDataset(
        str(dataset.root / name), shardshuffle=False, handler=stop_on_damage, empty_check=False
    )
    with wds.TarWriter(str(tmp), mtime=0.0) as sink:  # fixed member times: a rerun gives the same bytes
        for sample in source:
            member_key = sample["__key__"]
            if member_key in dataset.excluded:
                continue
            missing = [m for m in SAMPLE_MEMBERS if m not in sample]
            if missing or not _safe_key(member_key):
                what = f"lacks its {' and '.join(missing)} member" if missing else "has an unsafe member name"
                failed += 1
                report(member_key, f"in {name} {what} ({fix})")
                continue
            try:
                meta = json.loads(sample["json"])
                key = str(meta["key"])
                frames = decode_video_window(sample["mp4"], 0, int(meta["frames"]))
                codes = sample_codes(
                    model, frames, seed=clip_seed(config.seed, key), chunk=config.chunk_frames
                )
                info = {"key": key, "episode_index": int(meta["episode_index"]), "frames": len(codes),
                        "split": shard["split"]}  # fmt: skip
            except (ValueError, KeyError, TypeError, av.FFmpegError) as err:
                failed += 1
                report(member_key, f"in {name}: {type(err).__name__}: {err}")
                continue
            sink.write({
                "__key__": member_key,
                "codes.npy": _npy_bytes(codes),
                "mel.npy": sample["mel.npy"],
                "json": json.dumps(info).encode(),
            })  # fmt: skip
            report(key, None)
    if damage:
        failed += 1
        report(name, f"is damaged ({_first_line(damage[0])}; {fix})")
    return failed


SAMPLE_MEMBERS = ("mp4", "mel.npy", "json")


def _safe_key(key: str) -> bool:
    return bool(key) and not key.startswith("/") and ".." not in Path(key).parts


def _first_line(err: BaseException) -> str:
    """webdataset wraps a tar error with the url in its args: keep the tar error's own words."""
    inner = next((a for a in err.args if isinstance(a, BaseException)), err)
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    return text


def _refuse_other_codes(earlier: dict[str, Any], identity: dict[str, Any], config: EncodeConfig,
                        source_shards: dict[str, Any], out: Path) -> None:  # fmt: skip
    """A folder resumes only the encode that started it: same dVAE, seed and source shards."""
    if earlier.get("dvae", {}).get("weights_sha256") != identity["weights_sha256"]:
        raise RunMismatch(
            f"{out} holds Memcodes of another dVAE ({earlier.get('dvae', {}).get('run')}); "
            "use a new --out folder"
        )
    if earlier.get("seed") != config.seed:
        raise RunMismatch(
            f"{out} was encoded with --seed {earlier.get('seed')}; use it or a new --out folder"
        )
    stale = sorted(
        name
        for name, sha in earlier.get("source_shards", {}).items()
        if (out / name).exists() and source_shards.get(name) != sha
    )
    if stale:
        raise RunMismatch(
            f"{out} holds Memcodes of other versions of {', '.join(stale)}; use a new --out folder"
        )


def open_codes(root: Path) -> Dataset:
    """A Memcode set for training; refuses one whose encode run did not finish."""
    codes = Dataset.open(root, name=CODES_JSON)
    if not codes.description.get("complete"):
        raise DataError(f"{root} is only partly encoded: run `nwt-train encode` again to finish it")
    return codes
