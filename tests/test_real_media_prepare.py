"""`nwt-data mask` and `nwt-data shard` on the real third-party clips in ../shared/media.

Requirement: the real clips in ../shared/media go through mask and shard with exact frame counts and
aligned mel.

Nothing here trusts nwt_data's readers: the shards are read back with stock `webdataset`, the stored
mp4 is decoded with PyAV, and each sample's reference is rebuilt in this file from the SOURCE episode
(PyAV decode, librosa resampling, librosa mel with Table 7's parameters written out, cv2 resize):

- counts: N = round(duration * 30) frames at 30 FPS, 256x224; N * 800 int16 samples; 80 x 4N+1 mel;
- audio: the stored audio is the source's audio for episode times [trim_start, trim_start + N/30),
  at lag 0 (within the rounding to a source sample) by cross-correlation;
- mel: the stored mel equals Table 7's mel of that reference audio, frame for frame;
- video: output frame i shows the source frame on screen at trim_start + i/30 (the last one with
  pts <= that time: sample and hold, which the variable-frame-rate clip really exercises), cropped
  with the clip's box and scaled to 224x256; it matches that frame better than the source frames
  before and after it wherever those differ visibly.

Every check is also run on a reference moved by one video frame, one mel hop or 5 ms, and must fail
there: the checks can tell aligned from misaligned data.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import librosa
import numpy as np
import pytest
import webdataset as wds

from nwt_data.catalog import Catalog

pytestmark = pytest.mark.slow

# episode_id -> file in ../shared/media (episode ids may not contain '.').
REAL_EPISODES = {
    "face1-vfr": "retalking_face1_vfr_baseline.mp4",  # variable frame rate, first keyframe at 0.033 s
    "face2-25fps": "retalking_face2_25fps.mp4",
    "aoc-ntsc": "vexpress_AOC_29.97fps.mp4",  # 30000/1001
    "case10-overlay": "vexpress_case10_inset_overlay.mp4",  # burned-in inset box, 16 kHz mono audio
    "sadtalker-mpeg4": "sadtalker_WDA_KatieHill_mpeg4.mp4",  # MPEG-4 Part 2, 16 kHz stereo audio
}

FPS = 30
RATE = 24_000
HOP = RATE // FPS  # 800 audio samples per video frame
WIDTH, HEIGHT = 224, 256
# Table 7 of the paper, written out here rather than imported from nwt_data.
TABLE7: dict[str, Any] = dict(n_mels=80, n_fft=1024, hop_length=200, win_length=800, center=True,
                              pad_mode="constant", power=2.0, fmin=0.0, fmax=8000.0)  # fmt: skip
MEL_HOP = 200

# The stored audio may sit this many 24 kHz samples (0.1 ms) from the source's: segment's stream-copied
# clips place their audio one source sample early (ffmpeg's MP4 muxer rounding, see test_real_media.py;
# 1.5 samples at 24 kHz for 16 kHz sources), and mask rounds the start to a source sample (up to 0.75
# more). Moving the stored audio by 0.1 ms already fails this check.
MAX_LAG = 2.5
LAG_SEARCH = 480  # samples (20 ms) searched either side
MIN_AUDIO_CORR = 0.98  # a fractional-sample lag of 16 kHz speech alone costs about 0.01
MAX_MEL_L1 = 0.02  # sum |stored - reference| / sum reference; one mel hop off gives about 0.4
MIN_MEL_LOG_CORR = 0.999  # correlation of log-mels; one mel hop off gives 0.95-0.98
MAX_FRAME_DIFF = 6.0  # mean abs RGB difference (0-255) from the reference, unpainted pixels
DISTINCT = 0.5  # neighbouring source frames this far apart (mean abs luma) must be told apart
MIN_WON = 0.95  # share of those comparisons the aligned source frame must win
MARGIN = 0.5  # s of source audio resampled either side of the window (resampler edges fall outside)
# The burned-in inset of case10: about 125x64 source pixels at the bottom left, i.e. after the centre
# crop (x from 32) and the 0.5 scale, output rows 224-255 and columns 0-47.
INSET = (slice(226, 256), slice(0, 46))


# --- independent media access --------------------------------------------------------------------
@dataclass
class SourceVideo:
    times: np.ndarray  # presentation times, s, ascending
    frames: list[np.ndarray]  # RGB

    def shown(self, t: float) -> int:
        """Index of the last frame with pts <= t (sample and hold)."""
        return max(int(np.searchsorted(self.times, t + 1e-6, side="right")) - 1, 0)


def decode_source_video(path: Path) -> SourceVideo:
    pairs = []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            pairs.append((float(frame.pts * frame.time_base), frame.to_ndarray(format="rgb24")))
    pairs.sort(key=lambda p: p[0])
    return SourceVideo(np.array([p[0] for p in pairs]), [p[1] for p in pairs])


@dataclass
class SourceAudio:
    start: float  # episode time of samples[0]
    rate: int
    samples: np.ndarray  # mono (mean of the channels) float32


def decode_source_audio(path: Path) -> SourceAudio:
    chunks: list[np.ndarray] = []
    start = expected = None
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            t = float(frame.pts * frame.time_base)
            if start is None:
                start = expected = t
            assert abs(t - expected) <= 1.5 / rate, f"{path.name}: audio gap at {t:.6f} s"
            expected = t + frame.samples / rate
            data = frame.to_ndarray().astype(np.float32)
            if not frame.format.is_planar:
                data = data.reshape(-1, len(frame.layout.channels)).T
            chunks.append(data.mean(axis=0))
    assert start is not None, f"{path.name}: no audio"
    return SourceAudio(start, rate, np.concatenate(chunks))


def reference_audio(src: SourceAudio, t0: float, count: int, extra: int) -> np.ndarray:
    """24 kHz source audio for episode times [t0 - extra/24k, t0 + (count + extra)/24k).

    A stretch MARGIN longer on each side is resampled, then cut at 24 kHz to the exact start.
    """
    pad = round(MARGIN * src.rate)
    first = round((t0 - src.start) * src.rate) - pad
    size = round(count / RATE * src.rate) + 2 * pad
    chunk = src.samples[max(first, 0) : first + size]
    chunk = np.concatenate([np.zeros(max(-first, 0), np.float32), chunk])
    chunk = np.concatenate([chunk, np.zeros(size - len(chunk), np.float32)])
    resampled = librosa.resample(chunk, orig_sr=src.rate, target_sr=RATE)
    begin = round((t0 - (src.start + first / src.rate)) * RATE)  # t0 in `resampled`
    return resampled[begin - extra : begin + count + extra]


def best_lag(sample: np.ndarray, reference: np.ndarray, search: int) -> tuple[float, float]:
    """Lag in samples (parabolic sub-sample estimate) maximising the normalised correlation.

    `reference` holds `search` extra samples either side of the window `sample` should cover. A lag
    L means the sample plays at time T what the source plays at T + L: 0 when aligned.
    """
    n = len(sample)
    dots = np.correlate(reference, sample, mode="valid")
    energy = np.convolve(reference.astype(np.float64) ** 2, np.ones(n), mode="valid")
    scores = dots / np.sqrt(np.maximum(energy, 1e-12) * float(np.dot(sample, sample)))
    best = int(np.argmax(scores))
    fraction = 0.0
    if 0 < best < len(scores) - 1:
        left, mid, right = scores[best - 1 : best + 2]
        curve = left - 2 * mid + right
        fraction = 0.5 * (left - right) / curve if curve < 0 else 0.0
    return best - search + fraction, float(scores[best])


def table7_mel(audio: np.ndarray) -> np.ndarray:
    return librosa.feature.melspectrogram(y=audio.astype(np.float32), sr=RATE, **TABLE7)


def mel_distance(stored: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(relative L1 distance, correlation of the log-mels)."""
    l1 = float(np.abs(stored - reference).sum() / reference.sum())
    a, b = np.log10(stored + 1e-6).ravel(), np.log10(reference + 1e-6).ravel()
    return l1, float(np.corrcoef(a, b)[0, 1])


def scaled_crop(src: SourceVideo, index: int, crop: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = crop
    box = np.ascontiguousarray(src.frames[index][y : y + h, x : x + w])
    return cv2.resize(box, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


def unpainted(out: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Pixels the overlay mask left alone: not white in the output unless white in the reference."""
    white = (out >= 240).all(axis=2) & ~(reference >= 230).all(axis=2)
    return ~cv2.dilate(white.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)


def luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


# --- the test ------------------------------------------------------------------------------------
def _run(cli, *args) -> None:
    result = cli(*args)
    assert result.exit_code == 0, result.output


def _read_shards(ws: Path) -> dict[str, dict[str, Any]]:
    """Every sample of every shard in dataset.json, read with stock webdataset; keys are unique."""
    dataset = json.loads((ws / "shards" / "dataset.json").read_text())
    samples: dict[str, dict[str, Any]] = {}
    holder: dict[str, str] = {}
    for shard in dataset["shards"]:
        read = list(wds.WebDataset(str(ws / "shards" / shard["name"]), shardshuffle=False).decode())
        assert len(read) == shard["samples"], shard
        for sample in read:
            key = sample["__key__"]
            assert key not in samples, f"{key} is in {holder[key]} and {shard['name']}"
            samples[key], holder[key] = sample, shard["name"]
    assert sum(dataset["samples"].values()) == len(samples)
    return samples


def _check_audio(stored: np.ndarray, src: SourceAudio, t0: float, n: int) -> tuple[float, float, list[str]]:
    """Lag and correlation of the stored audio against the source, and negative-control failures."""
    audio = stored.astype(np.float32) / 32767.0
    lag, corr = best_lag(audio, reference_audio(src, t0, n * HOP, LAG_SEARCH), LAG_SEARCH)
    blind = []
    for shift in (120, HOP):  # the source 5 ms or one video frame later must not pass
        moved = reference_audio(src, t0 + shift / RATE, n * HOP, LAG_SEARCH)
        moved_lag, moved_corr = best_lag(audio, moved, LAG_SEARCH)
        if abs(moved_lag) <= MAX_LAG and moved_corr >= MIN_AUDIO_CORR:
            blind.append(f"audio {shift} samples late passes too (lag {moved_lag:+.2f}, r {moved_corr:.4f})")
    return lag, corr, blind


def _check_mel(mel: np.ndarray, src: SourceAudio, t0: float, n: int) -> tuple[float, float, list[str]]:
    """Distance of the stored mel from Table 7's mel of the source audio on the frame grid."""
    l1, corr = mel_distance(mel, table7_mel(reference_audio(src, t0, n * HOP, 0)))
    moved = table7_mel(reference_audio(src, t0 + MEL_HOP / RATE, n * HOP, 0))  # one mel hop later
    moved_l1, moved_corr = mel_distance(mel, moved)
    blind = []
    if moved_l1 <= MAX_MEL_L1 and moved_corr >= MIN_MEL_LOG_CORR:
        blind.append(f"the mel one hop late passes too (L1 {moved_l1:.4f}, r {moved_corr:.6f})")
    return l1, corr, blind


@dataclass
class VideoCheck:
    worst_diff: float  # largest mean abs RGB difference of an output frame from its reference
    aligned: float  # mean luma distance, aligned
    shifted: float  # the same with the output grid moved one frame either way (the lower)
    won: int  # comparisons with a visibly different neighbouring source frame the aligned one won
    compared: int
    inset_diff: float  # mean abs difference in case10's inset region


def _check_video(
    out_frames: list[np.ndarray], src: SourceVideo, t0: float, crop: tuple[int, int, int, int]
) -> VideoCheck:
    refs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def ref(index: int) -> tuple[np.ndarray, np.ndarray]:  # (RGB, luma)
        if index not in refs:
            rgb = scaled_crop(src, index, crop)
            refs[index] = (rgb, luma(rgb))
        return refs[index]

    def distance(out_luma: np.ndarray, index: int, keep: np.ndarray) -> float:
        """Mean abs luma difference on `keep`, less the overall offset (the yuv round trip's ~1 level)."""
        d = (out_luma - ref(index)[1])[keep]
        return float(np.abs(d - np.median(d)).mean())

    diffs, aligned, shifted = [], [], {-1: [], 1: []}
    won = compared = 0
    inset = []
    for i, out in enumerate(out_frames):
        k = src.shown(t0 + i / FPS)
        rgb = ref(k)[0]
        keep = unpainted(out, rgb)
        diffs.append(float(np.abs(out.astype(np.int16) - rgb.astype(np.int16))[keep].mean()))
        inset.append(float(np.abs(out[INSET].astype(np.int16) - rgb[INSET].astype(np.int16)).mean()))
        out_luma = luma(out)
        own = distance(out_luma, k, keep)
        aligned.append(own)
        for s in (-1, 1):  # negative control: the grid one output frame earlier or later
            shifted[s].append(distance(out_luma, src.shown(t0 + (i + s) / FPS), keep))
        for j in (k - 1, k + 1):
            if 0 <= j < len(src.times) and np.abs(ref(j)[1] - ref(k)[1]).mean() > DISTINCT:
                compared += 1
                won += own < distance(out_luma, j, keep)
    return VideoCheck(
        worst_diff=max(diffs),
        aligned=float(np.mean(aligned)),
        shifted=float(min(np.mean(shifted[-1]), np.mean(shifted[1]))),
        won=won,
        compared=compared,
        inset_diff=float(np.mean(inset)),
    )


def test_real_media_mask_and_shard_exact_and_aligned(tmp_path: Path, shared_media: Path, cli) -> None:
    manifest = tmp_path / "real.csv"
    lines = ["episode_id,url"] + [f"{eid},{shared_media / name}" for eid, name in REAL_EPISODES.items()]
    manifest.write_text("\n".join(lines) + "\n")
    ws = tmp_path / "ws"
    _run(cli, "fetch", manifest, "-w", ws)
    _run(cli, "segment", "-w", ws, "--crop", "center")  # the sources are square
    _run(cli, "mask", "-w", ws, "--include-unreviewed")
    _run(cli, "shard", "-w", ws)

    catalog = Catalog(ws / "catalog.sqlite")
    clips = {c["clip_id"]: c for c in catalog.clips("status = 'ok'")}
    assert {c["episode_id"] for c in clips.values()} == set(REAL_EPISODES)
    for cid, clip in clips.items():
        assert clip["mask_status"] == "done", (cid, clip["mask_error"])
        names = {p.name for p in (ws / clip["prepared_path"]).iterdir()}
        assert {"video.mp4", "audio.npy", "mel.npy"} <= names, (cid, names)
    samples = _read_shards(ws)
    assert sorted(samples) == sorted(clips)  # every ok clip, each in exactly one shard

    videos: dict[str, SourceVideo] = {}
    audios: dict[str, SourceAudio] = {}
    problems: list[str] = []
    report = [f"{'clip':22} {'duration':>9} {'N':>4} {'masked':>13} {'lag':>6} {'corr':>7} {'mel L1':>7}"
              f" {'mel r':>8} {'rgb diff':>8} {'luma al/sh':>11} {'won':>8} {'inset':>5}"]  # fmt: skip
    for cid, clip in sorted(clips.items()):
        eid, sample = clip["episode_id"], samples[cid]
        meta, t0 = sample["json"], clip["trim_start"]
        duration = clip["trim_end"] - t0
        assert abs(clip["duration"] - duration) < 1e-5, cid
        n = round(duration * FPS)
        crop = (clip["crop_x"], clip["crop_y"], clip["crop_w"], clip["crop_h"])

        # Exact counts, and the metadata that says so.
        assert meta["frames"] == n == clip["out_frames"], (cid, meta["frames"], n, clip["out_frames"])
        assert (meta["audio_samples"], meta["mel_frames"], meta["fps"]) == (n * HOP, 4 * n + 1, FPS), cid
        assert meta["crop"] == list(crop) and abs(meta["start_time"] - t0) < 1e-9, cid
        with av.open(io.BytesIO(sample["mp4"])) as container:
            stream = container.streams.video[0]
            assert stream.average_rate == FPS, (cid, stream.average_rate)
            decoded = [(f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
            ticks = 1 / (FPS * stream.time_base)
        assert len(decoded) == n, (cid, len(decoded), n)
        assert [p / ticks for p, _ in decoded] == list(range(n)), cid  # pts i/30, no gaps or repeats
        out_frames = [f for _, f in decoded]
        assert {f.shape for f in out_frames} == {(HEIGHT, WIDTH, 3)}, cid
        audio, mel = sample["audio.npy"], sample["mel.npy"]
        assert audio.dtype == np.int16 and audio.shape == (n * HOP,), (cid, audio.dtype, audio.shape)
        assert mel.shape == (80, 4 * n + 1), (cid, mel.shape)

        # Alignment against the source episode.
        if eid not in videos:
            source = shared_media / REAL_EPISODES[eid]
            videos[eid], audios[eid] = decode_source_video(source), decode_source_audio(source)
        lag, corr, blind = _check_audio(audio, audios[eid], t0, n)
        mel_l1, mel_corr, mel_blind = _check_mel(mel, audios[eid], t0, n)
        video = _check_video(out_frames, videos[eid], t0, crop)
        report.append(
            f"{cid:22} {duration:9.6f} {n:4d} {meta['masked_frames']:4d} ({meta['masked_fraction']:.4f})"
            f" {lag:+6.2f} {corr:7.4f} {mel_l1:7.4f} {mel_corr:8.6f} {video.worst_diff:8.2f}"
            f" {video.aligned:5.2f}/{video.shifted:5.2f} {video.won:3d}/{video.compared:4d}"
            + (f" {video.inset_diff:5.2f}" if eid == "case10-overlay" else "")
        )
        if abs(lag) > MAX_LAG or corr < MIN_AUDIO_CORR:
            problems.append(f"{cid}: audio is {lag:+.2f} samples at 24 kHz from the source (r = {corr:.4f})")
        else:  # aligned: then a misaligned reference must fail the same check
            problems += [f"{cid}: {b}" for b in blind]
        if mel_l1 > MAX_MEL_L1 or mel_corr < MIN_MEL_LOG_CORR:
            problems.append(f"{cid}: mel is not Table 7's of the source (L1 {mel_l1:.4f}, r {mel_corr:.6f})")
        else:
            problems += [f"{cid}: {b}" for b in mel_blind]
        if video.worst_diff > MAX_FRAME_DIFF:
            problems.append(f"{cid}: an output frame differs from its source frame by {video.worst_diff:.2f}")
        if not video.shifted > 1.1 * video.aligned:
            problems.append(
                f"{cid}: the 30 FPS grid one frame off matches about as well or better"
                f" (mean luma distance {video.shifted:.3f}, aligned {video.aligned:.3f})"
            )
        if video.compared < 10 or video.won < MIN_WON * video.compared:
            problems.append(
                f"{cid}: output frames beat the neighbouring source frames in only {video.won}"
                f" of {video.compared} comparisons"
            )
    print("\n".join(report))
    assert not problems, "\n".join([*problems, *report])
