"""`nwt-data mask` and `nwt-data shard`, and the trainer's loader, end to end on generated media."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import av
import numpy as np
import pytest
import webdataset as wds

from nwt_data.audio import MEL_PARAMS
from nwt_data.catalog import Catalog
from nwt_data.demo import STUDIO_BACKGROUND, STUDIO_FILTER
from nwt_train.data import Dataset, DatasetMismatch, clip_windows, decode_video_window

# Where those land in the 256x224 output (the crop 507,8,623,712 scaled by 224/623 = 256/712).
SCALE = 224 / 623
OVERLAY_INSIDE = (
    slice(int((200 - 8) * SCALE) + 3, int((400 - 8) * SCALE) - 3),
    slice(int(20 * SCALE) + 2, int(90 * SCALE) - 2),
)
SUBJECT = (
    slice(int((200 - 8) * SCALE) + 4, int((600 - 8) * SCALE) - 4),
    slice(int(193 * SCALE) + 4, int(433 * SCALE) - 4),
)
BACKGROUND = (slice(230, 250), slice(180, 220))


def _run(cli, *args) -> None:
    result = cli(*args)
    assert result.exit_code == 0, result.output


def _onsets(levels: np.ndarray, threshold: float) -> np.ndarray:
    high = levels > threshold
    return np.flatnonzero(high[1:] & ~high[:-1]) + 1


@pytest.fixture
def studio_workspace(tmp_path: Path, make_video, media_server, cli) -> Path:
    folder, base = media_server
    make_video("studio.mp4", folder=folder, seconds=12, width=1280, height=720, fps="30000/1001", gop=60,
               source=STUDIO_BACKGROUND, extra_video_filter=STUDIO_FILTER)  # fmt: skip
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"episode_id,url\nstudio,{base}/studio.mp4\n")
    ws = tmp_path / "ws"
    _run(cli, "fetch", manifest, "-w", ws)
    _run(cli, "segment", "-w", ws)
    _run(cli, "mask", "-w", ws, "--include-unreviewed")
    _run(cli, "shard", "-w", ws, "--shard-size", "1MB")
    return ws


def test_mask_and_shard_end_to_end(studio_workspace: Path) -> None:
    ws = studio_workspace
    catalog = Catalog(ws / "catalog.sqlite")
    clips = catalog.clips("status = 'ok'")
    assert len(clips) >= 2
    dataset = json.loads((ws / "shards" / "dataset.json").read_text())
    assert dataset["episodes"] == {"studio": 0}
    assert dataset["video"]["fps"] == 30 and (dataset["video"]["height"], dataset["video"]["width"]) == (
        256,
        224,
    )
    assert dataset["mel"]["hop_length"] == 200 and dataset["mel"]["n_mels"] == 80
    assert sum(dataset["samples"].values()) == len(clips)
    for shard in dataset["shards"]:
        path = ws / "shards" / shard["name"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
        with tarfile.open(path) as tar:  # plain `tar` can read it
            assert len(tar.getnames()) == 4 * shard["samples"]

    urls = [str(ws / "shards" / s["name"]) for s in dataset["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert len(samples) == len(clips)
    by_key = {c["clip_id"]: c for c in clips}
    for sample in samples:
        meta = sample["json"]
        clip = by_key[sample["__key__"]]
        assert "." not in sample["__key__"]
        n = meta["frames"]
        assert n == round(clip["duration"] * 30) == clip["out_frames"]
        # The alignment contract: N frames, N * 800 samples at 24 kHz, 4N + 1 mel frames.
        assert sample["audio.npy"].shape == (n * 800,) and sample["audio.npy"].dtype == np.int16
        assert sample["mel.npy"].shape == (80, 4 * n + 1)
        with av.open(io.BytesIO(sample["mp4"])) as container:
            stream = container.streams.video[0]
            assert stream.average_rate == 30
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        assert frames.shape == (n, 256, 224, 3)
        # The overlay's dark inside is painted white; the subject and the studio are untouched.
        assert frames[(slice(None), *OVERLAY_INSIDE)].min() > 235
        subject = frames[(slice(None), *SUBJECT)].mean(axis=(1, 2, 3))
        assert np.all((subject > 120) & (subject < 180))
        assert abs(frames[(slice(None), *BACKGROUND)].mean() - 0x30) < 6
        assert meta["masked_frames"] == n and 0.03 < meta["masked_fraction"] < 0.12
        # No drift: the subject brightens on the frame where the beep starts, in every second.
        flashes = _onsets(subject, 150)
        audio = np.abs(sample["audio.npy"].astype(np.float32) / 32768)
        beeps = _onsets(np.convolve(audio, np.ones(40) / 40, mode="same"), 0.1) / 800
        assert len(flashes) >= 2 and len(flashes) == len(beeps)
        assert np.abs(flashes - beeps).max() <= 1.0  # within one frame
        # The mel is the same function of the same audio, aligned frame for frame.
        energy = sample["mel.npy"].sum(axis=0)
        mel_beeps = _onsets(energy, energy.max() / 10) / 4
        assert np.abs(mel_beeps - beeps).max() <= 1.0


def test_loader_windows_and_parameter_check(studio_workspace: Path) -> None:
    dataset = Dataset.open(studio_workspace / "shards", expect={"video": {"fps": 30, "height": 256}})
    windows = list(clip_windows(dataset, "train", frames=32, with_mel=True, samples_per_worker=6, seed=1))
    assert len(windows) == 6
    for w in windows:
        assert w["video"].shape == (32, 3, 256, 224)
        assert w["video"].min() >= -1.0 and w["video"].max() <= 1.0
        assert w["mel"].shape == (80, 128)
        assert w["episode"] == 0
    # The same window decoded straight from the shard's bytes (x / 127.5 - 1).
    first = windows[0]
    sample = next(
        s
        for s in wds.WebDataset(dataset.shard_urls("train"), shardshuffle=False)
        if s["__key__"] == first["key"]
    )
    direct = decode_video_window(sample["mp4"], first["start"], 32).astype(np.float32) / 127.5 - 1
    assert np.allclose(first["video"].permute(0, 2, 3, 1).numpy(), direct)
    mel = np.load(io.BytesIO(sample["mel.npy"]))
    assert np.array_equal(first["mel"].numpy(), mel[:, 4 * first["start"] : 4 * first["start"] + 128])
    with pytest.raises(DatasetMismatch, match=r"mel\.hop_length"):
        Dataset.open(studio_workspace / "shards", expect={"mel": {**MEL_PARAMS, "hop_length": 256}})


def _pipeline(cli, tmp_path: Path, ws: Path, files: dict[str, Path]) -> None:
    manifest = tmp_path / f"m-{len(list(tmp_path.glob('m-*.csv')))}.csv"
    manifest.write_text("episode_id,url\n" + "".join(f"{k},{v}\n" for k, v in files.items()))
    _run(cli, "fetch", manifest, "-w", ws)
    _run(cli, "segment", "-w", ws, "--segment-time", "2.5")
    _run(cli, "mask", "-w", ws, "--include-unreviewed")
    _run(cli, "shard", "-w", ws, "--shard-size", "600KB")


def test_adding_an_episode_adds_shards_and_moves_nothing(tmp_path: Path, make_video, cli) -> None:
    ws = tmp_path / "ws"
    # Keyframes every 2.5 s: 20 clips of 2.5 s (21 with the tail), enough for all three splits.
    first = make_video("a.mp4", seconds=52.6, fps="30", gop=75, width=320, height=180)
    _pipeline(cli, tmp_path, ws, {"ep-a": first})
    catalog = Catalog(ws / "catalog.sqlite")
    before = {c["clip_id"]: (c["split"], c["shard"]) for c in catalog.clips("shard IS NOT NULL")}
    assert len(before) >= 20
    assert {split for split, _ in before.values()} == {"train", "val", "test"}
    shard_hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (ws / "shards").glob("*.tar")}
    assert len(shard_hashes) >= 3

    second = make_video("b.mp4", seconds=11, fps="30000/1001", gop=75, width=320, height=180)
    _pipeline(cli, tmp_path, ws, {"ep-b": second})
    catalog = Catalog(ws / "catalog.sqlite")
    after = {c["clip_id"]: (c["split"], c["shard"]) for c in catalog.clips("shard IS NOT NULL")}
    assert {k: after[k] for k in before} == before  # same split, same shard
    for name, digest in shard_hashes.items():  # finished shards are not rewritten
        assert hashlib.sha256((ws / "shards" / name).read_bytes()).hexdigest() == digest
    new_shards = {after[k][1] for k in after if k.startswith("ep-b")}
    assert new_shards and not new_shards & set(shard_hashes)
    dataset = json.loads((ws / "shards" / "dataset.json").read_text())
    assert dataset["episodes"] == {"ep-a": 0, "ep-b": 1}
    assert sum(dataset["samples"].values()) == len(after)
    again = cli("shard", "-w", ws)  # nothing new: nothing written
    assert again.exit_code == 0 and "new train shards" not in again.output


def test_truncated_clip_fails_alone_and_corrupt_shard_is_skipped(tmp_path: Path, make_video, cli) -> None:
    ws = tmp_path / "ws"
    video = make_video("a.mp4", seconds=12, fps="30", gop=75, width=320, height=180)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"episode_id,url\nep,{video}\n")
    _run(cli, "fetch", manifest, "-w", ws)
    _run(cli, "segment", "-w", ws, "--segment-time", "2.5")
    catalog = Catalog(ws / "catalog.sqlite")
    clips = catalog.clips("status = 'ok'")
    victim = ws / clips[1]["path"]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])  # truncated on disk
    result = cli("mask", "-w", ws, "--include-unreviewed")
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert f"✗ {clips[1]['clip_id']} [media]" in out
    catalog = Catalog(ws / "catalog.sqlite")
    status = {c["clip_id"]: c["mask_status"] for c in catalog.clips("status = 'ok'")}
    assert status.pop(clips[1]["clip_id"]) == "failed"
    assert set(status.values()) == {"done"}
    assert not (ws / "prepared" / "ep" / clips[1]["clip_id"]).exists()

    _run(cli, "shard", "-w", ws, "--shard-size", "300KB", "--split-ratios", "100,0,0")  # all in train
    dataset = Dataset.open(ws / "shards")
    urls = dataset.shard_urls("train")
    assert len(urls) >= 2
    Path(urls[0]).write_bytes(Path(urls[0]).read_bytes()[:1500])  # a damaged shard
    with pytest.warns(UserWarning):
        windows = list(clip_windows(dataset, "train", frames=30, shuffle_buffer=0))
    intact = sum(s["samples"] for s in dataset.description["shards"][1:] if s["split"] == "train")
    assert len(windows) == intact


def test_clip_without_audio_at_mask_time_is_a_clear_error(tmp_path: Path, make_video, cli) -> None:
    from nwt_data.media.ffmpeg import run_ffmpeg

    ws = tmp_path / "ws"
    video = make_video("a.mp4", seconds=9, fps="30", gop=60, width=320, height=180)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"episode_id,url\nep,{video}\n")
    _run(cli, "fetch", manifest, "-w", ws)
    _run(cli, "segment", "-w", ws)
    clip = Catalog(ws / "catalog.sqlite").clips("status = 'ok'")[0]
    path = ws / clip["path"]
    silent = path.with_name("silent.mp4")
    run_ffmpeg(["-y", "-i", str(path), "-map", "0:v", "-c", "copy", str(silent)])
    silent.replace(path)  # the clip file lost its audio after segmenting
    result = cli("mask", "-w", ws, "--include-unreviewed")
    assert result.exit_code == 1
    row = Catalog(ws / "catalog.sqlite").clips("clip_id = ?", (clip["clip_id"],))[0]
    assert row["mask_status"] == "failed" and "audio" in row["mask_error"]
    assert Catalog(ws / "catalog.sqlite").clips("mask_status = 'done'")


def test_each_rank_draws_its_own_windows(studio_workspace: Path, monkeypatch) -> None:
    dataset = Dataset.open(studio_workspace / "shards")
    streams = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        pipeline = clip_windows(dataset, "train", frames=30, samples_per_worker=6, shuffle_buffer=4, seed=3)
        streams.append([(w["key"], w["start"]) for w in pipeline])
    assert len(streams[0]) == len(streams[1]) == 6
    assert streams[0] != streams[1]


def test_every_loader_worker_yields_the_same_count(studio_workspace: Path) -> None:
    """Resampled shards with a fixed epoch: workers (and torchrun ranks) never run dry unevenly."""
    import torch

    dataset = Dataset.open(studio_workspace / "shards")
    # One train shard for two workers: split by worker, one of them would get nothing.
    assert len(dataset.shard_urls("train")) == 1
    pipeline = clip_windows(dataset, "train", frames=30, samples_per_worker=5, shuffle_buffer=4)
    loader = torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=2)
    items = [(item["key"], item["start"]) for item in loader]
    assert len(items) == 10  # with_epoch caps each worker at 5, so both yielded 5
    assert items[0::2] != items[1::2]  # the two workers draw their own windows
    ordered = list(clip_windows(dataset, "train", frames=30))  # evaluation: one ordered pass
    assert len(ordered) == dataset.num_samples("train")


def test_mask_and_shard_follow_review_decisions(tmp_path: Path, make_video, cli) -> None:
    from nwt_data.review.session import write_decision

    ws = tmp_path / "ws"
    video = make_video("a.mp4", seconds=12.2, fps="30", gop=60, width=320, height=180)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"episode_id,url\nep,{video}\n")
    _run(cli, "fetch", manifest, "-w", ws)
    _run(cli, "segment", "-w", ws)
    catalog = Catalog(ws / "catalog.sqlite")
    first, second, third = (c["clip_id"] for c in catalog.clips("status = 'ok'"))
    write_decision(catalog, first, "accepted", None, None, "ann")
    write_decision(catalog, second, "rejected", "holds_object", None, "ann")
    _run(cli, "mask", "-w", ws, "--accepted-only")
    assert {c["clip_id"] for c in catalog.clips("mask_status = 'done'")} == {first}
    _run(cli, "mask", "-w", ws, "--include-unreviewed")  # unreviewed clips too, never the rejected one
    assert {c["clip_id"] for c in catalog.clips("mask_status = 'done'")} == {first, third}
    _run(cli, "shard", "-w", ws)
    dataset = json.loads((ws / "shards" / "dataset.json").read_text())
    assert sum(dataset["samples"].values()) == 2
    assert catalog.clips("clip_id = ?", (second,))[0]["shard"] is None
    # A clip rejected after it was sharded: the shard stays, the loader skips it, shard says so.
    write_decision(catalog, third, "rejected", "title_transition", None, "bob")
    result = cli("shard", "-w", ws)
    assert result.exit_code == 0 and "rejected in review" in result.output
    loaded = Dataset.open(ws / "shards")
    assert loaded.excluded == {third}
    keys = [w["key"] for split in ("train", "val", "test") if loaded.shard_urls(split)
            for w in clip_windows(loaded, split, frames=30)]  # fmt: skip
    assert keys == [first]


def test_shard_survives_a_missing_prepared_clip(tmp_path: Path, make_video, cli) -> None:
    ws = tmp_path / "ws"
    video = make_video("a.mp4", seconds=12.2, fps="30", gop=60, width=320, height=180)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"episode_id,url\nep,{video}\n")
    for stage in (("fetch", manifest), ("segment",), ("mask", "--include-unreviewed")):
        _run(cli, *stage, "-w", ws)
    catalog = Catalog(ws / "catalog.sqlite")
    lost = catalog.clips("mask_status = 'done'")[0]
    (ws / lost["prepared_path"] / "video.mp4").unlink()
    result = cli("shard", "-w", ws)
    assert result.exit_code == 1
    assert f"✗ {lost['clip_id']} [media] prepared files missing" in " ".join(result.output.split())
    assert (
        Catalog(ws / "catalog.sqlite").clips("clip_id = ?", (lost["clip_id"],))[0]["mask_status"] == "failed"
    )
    assert sum(json.loads((ws / "shards" / "dataset.json").read_text())["samples"].values()) == 2
    _run(
        cli, "mask", "-w", ws, "--retry-failed", "--include-unreviewed"
    )  # the hint works: prepare again, shard again
    _run(cli, "shard", "-w", ws)
    assert sum(json.loads((ws / "shards" / "dataset.json").read_text())["samples"].values()) == 3


def test_integer_pcm_stereo_audio_is_read_at_the_right_scale_and_pitch(tmp_path: Path, cli) -> None:
    from nwt_data.media.ffmpeg import run_ffmpeg

    source = tmp_path / "pcm.mov"  # a camera-style file: 16-bit PCM stereo, 48 kHz
    run_ffmpeg(["-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=6",
                "-f", "lavfi", "-i", "sine=f=440:d=6:sample_rate=48000", "-ac", "2",
                "-c:v", "libx264", "-g", "30", "-c:a", "pcm_s16le", str(source)])  # fmt: skip
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"episode_id,url\npcm,{source}\n")
    ws = tmp_path / "ws"
    _run(cli, "fetch", manifest, "-w", ws)
    _run(cli, "segment", "-w", ws)
    _run(cli, "mask", "-w", ws, "--include-unreviewed")
    clip = Catalog(ws / "catalog.sqlite").clips("mask_status = 'done'")[0]
    audio = np.load(ws / clip["prepared_path"] / "audio.npy").astype(np.float32) / 32768
    rms = float(np.sqrt(np.mean(audio**2)))
    assert 0.05 < rms < 0.2  # lavfi's sine is at 1/8 full scale: rms 0.088, not clipped noise
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 24000 / len(audio) - 440) < 3


@pytest.mark.quick
@pytest.mark.parametrize("seconds", [0.2, 3.0, 21.7])
def test_the_mel_in_blocks_is_the_whole_mel_byte_for_byte(seconds: float) -> None:
    """generate computes long speech's mel in blocks (bounded memory): the same bytes as one pass."""
    from nwt_data.audio import mel_spectrogram

    audio = (np.random.default_rng(3).standard_normal(round(seconds * 24_000)) * 0.1).astype(np.float32)
    whole = mel_spectrogram(audio)
    blocks = mel_spectrogram(audio, block_frames=256)
    assert blocks.shape == whole.shape and blocks.tobytes() == whole.tobytes()
