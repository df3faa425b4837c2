"""`nwt-data segment` on real third-party clips (../shared/media), checked independently with PyAV.

Requirement: segment on the real clips (variable frame rate, 29.97 fps, MPEG-4 Part 2, a keyframe
not at 0) gives clips whose summed duration matches the source within one frame, each starting on a
keyframe, with audio and video aligned.

Nothing here trusts nwt_data's own probe: the source and every clip file are demuxed and decoded
with PyAV in this file. Video alignment is shown by decoding every clip frame and finding the
bit-identical source frame at (clip time + clip_offset); audio alignment by cross-correlating the
clip's decoded audio with the source's over the same episode-time window and finding the peak at
lag 0. Together they prove the clip's audio is not shifted against its video.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from nwt_data.catalog import Catalog

pytestmark = pytest.mark.slow

# episode_id -> file in ../shared/media (episode ids may not contain '.').
REAL_EPISODES = {
    "face1-vfr": "retalking_face1_vfr_baseline.mp4",  # VFR, keyframes at 0.033 s and 4.566 s
    "face2-25fps": "retalking_face2_25fps.mp4",  # B-frames, one keyframe
    "aoc-ntsc": "vexpress_AOC_29.97fps.mp4",  # 30000/1001
    "case10-overlay": "vexpress_case10_inset_overlay.mp4",  # 16 kHz mono audio
    "sadtalker-mpeg4": "sadtalker_WDA_KatieHill_mpeg4.mp4",  # MPEG-4 Part 2, keyframe every 0.48 s
}

TIME_EPS = 1e-4  # s: timestamps are exact ticks; the catalog rounds seconds to 6-9 digits
# The clip's audio may sit at most this many samples (45 us at 44.1 kHz, 125 us at 16 kHz) from where
# its timestamps put it. ffmpeg's MP4 muxer rounds a segment's leading audio edit to the movie time
# scale, which moves the audio by up to one sample; a real shift is hundreds of samples.
MAX_AUDIO_LAG_SAMPLES = 2
LAG_SEARCH = 0.020  # s: cross-correlation searched over +-20 ms
AAC_PREROLL = 2048  # samples skipped after each clip's first audio sample (decoder warm-up after a cut)


# --- independent media access (PyAV only) ---------------------------------------------------------
@dataclass
class VideoIndex:
    keyframe_times: np.ndarray  # presentation times of keyframe packets, seconds, sorted
    first_packet_keyframe: bool
    duration: float  # the container's presentation duration of the video stream
    frame_period: float  # typical (median) frame interval


def video_index(path: Path) -> VideoIndex:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = Fraction(stream.time_base)
        packets = [(p.pts, p.duration or 0, p.is_keyframe) for p in container.demux(stream) if p.size]
        pts = np.array([p[0] for p in packets], dtype=np.int64)
        if stream.duration:
            duration = float(stream.duration * tb)
        else:  # no declared duration: first frame to the end of the last one
            duration = float((max(p[0] + p[1] for p in packets) - pts.min()) * tb)
        return VideoIndex(
            keyframe_times=np.sort(pts[[p[2] for p in packets]]) * float(tb),
            first_packet_keyframe=packets[0][2],
            duration=duration,
            frame_period=float(np.median(np.diff(np.sort(pts)))) * float(tb),
        )


def decode_video(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Presentation times (s) and luma planes of every decoded frame."""
    times, planes = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            times.append(float(frame.pts * frame.time_base))
            planes.append(frame.to_ndarray(format="gray"))
    return np.array(times), planes


@dataclass
class Audio:
    start: float  # time of samples[0], seconds
    rate: int
    samples: np.ndarray  # mono float32

    @property
    def end(self) -> float:
        return self.start + len(self.samples) / self.rate

    def window(self, t0: float, n: int) -> np.ndarray:
        i = round((t0 - self.start) * self.rate)
        assert i >= 0 and i + n <= len(self.samples), (t0, n, self.start, self.end)
        return self.samples[i : i + n]


def decode_audio(path: Path) -> Audio:
    """All audio as mono float at its own rate, placed by the decoded frames' timestamps."""
    chunks: list[np.ndarray] = []
    start = expected = None
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        for frame in container.decode(stream):
            t = float(frame.pts * frame.time_base)
            if start is None:
                start = expected = t
            # Frames must follow each other without gaps (one sample of rounding allowed).
            assert abs(t - expected) <= 1.5 / rate, f"{path.name}: audio gap at {t:.6f} s"
            expected = t + frame.samples / rate
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    assert start is not None, f"{path.name}: no audio decoded"
    return Audio(start, rate, np.concatenate(chunks).astype(np.float32))


def best_lag(clip: np.ndarray, source: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Lag (samples) maximising the normalised correlation of `clip` against `source`.

    `source` holds max_lag extra samples at each side of the window `clip` covers. A lag L means
    what the clip plays at episode time T is the source's audio from T + L: 0 when aligned.
    """
    n = len(clip)
    clip = clip - clip.mean()
    scores = []
    for lag in range(-max_lag, max_lag + 1):
        window = source[max_lag + lag : max_lag + lag + n]
        window = window - window.mean()
        denominator = float(np.linalg.norm(clip) * np.linalg.norm(window)) or 1.0
        scores.append(float(np.dot(clip, window)) / denominator)
    best = int(np.argmax(scores))
    return best - max_lag, scores[best]


# --- the tests ------------------------------------------------------------------------------------
def _fetch(tmp_path: Path, shared_media: Path, cli) -> tuple[Path, Catalog]:
    manifest = tmp_path / "real.csv"
    lines = ["episode_id,url"] + [f"{eid},{shared_media / name}" for eid, name in REAL_EPISODES.items()]
    manifest.write_text("\n".join(lines) + "\n")
    ws = tmp_path / "ws"
    result = cli("fetch", manifest, "--workspace", ws)
    assert result.exit_code == 0, result.output
    return ws, Catalog(ws / "catalog.sqlite")


def test_real_media_probe_facts(tmp_path: Path, shared_media: Path, cli) -> None:
    _, catalog = _fetch(tmp_path, shared_media, cli)
    facts = {row["episode_id"]: json.loads(row["probe"]) for row in catalog.episodes()}
    assert sorted(facts) == sorted(REAL_EPISODES)

    aoc = facts["aoc-ntsc"]
    assert aoc["frame_rate"] == "30000/1001"
    assert aoc["nominal_frame_rate"] == "30000/1001"
    assert aoc["variable_frame_rate"] is False

    vfr = facts["face1-vfr"]
    assert vfr["variable_frame_rate"] is True
    assert vfr["nominal_frame_rate"] == "30/1"
    assert vfr["frame_rate"] == "1350/61"  # 135 frames in 6.1 s, about 22.13 fps
    assert vfr["keyframes"] == [0.033008, 4.566341]  # the first keyframe is not at 0
    assert vfr["video_start"] == 0.033008

    mpeg4 = facts["sadtalker-mpeg4"]
    assert mpeg4["video_codec"] == "mpeg4"
    assert mpeg4["frame_rate"] == "25/1"
    assert mpeg4["keyframes"] == [round(0.48 * k, 6) for k in range(17)]

    assert facts["face2-25fps"]["frame_rate"] == "25/1"
    assert facts["face2-25fps"]["variable_frame_rate"] is False
    assert facts["case10-overlay"]["nominal_frame_rate"] == "25/1"
    assert (facts["case10-overlay"]["sample_rate"], facts["case10-overlay"]["channels"]) == (16000, 1)
    assert (mpeg4["sample_rate"], mpeg4["channels"]) == (16000, 2)

    for eid, name in REAL_EPISODES.items():
        f = facts[eid]
        assert f["video_codec"] == ("mpeg4" if eid == "sadtalker-mpeg4" else "h264"), eid
        assert f["audio_codec"] == "aac", eid
        assert f["width"] == f["height"], eid  # all square
        with av.open(str(shared_media / name)) as container:
            stream = container.streams.video[0]
            assert (f["width"], f["height"]) == (stream.codec_context.width, stream.codec_context.height)
            count = sum(1 for p in container.demux(stream) if p.size)
        assert f["frame_count"] == count, eid
        expected = video_index(shared_media / name).keyframe_times
        assert np.allclose(f["keyframes"], expected, atol=1e-6), eid


def test_segment_real_media_tiles_on_keyframes_with_aligned_audio(
    tmp_path: Path, shared_media: Path, cli
) -> None:
    ws, catalog = _fetch(tmp_path, shared_media, cli)
    result = cli("segment", "--workspace", ws, "--crop", "center", "--segment-time", "2")
    assert result.exit_code == 0, result.output
    assert all(e["segment_status"] == "done" for e in catalog.episodes())

    problems: list[str] = []
    for eid, name in REAL_EPISODES.items():
        problems += [f"{eid}: {p}" for p in _check_episode(ws, catalog, eid, shared_media / name)]
    assert not problems, "\n".join(problems)

    # Where there are several keyframes, a 2 s segment time gives several clips.
    counts = {eid: len(catalog.clips("episode_id = ?", (eid,))) for eid in REAL_EPISODES}
    assert counts["sadtalker-mpeg4"] >= 3
    assert counts["face1-vfr"] == 2
    assert counts["aoc-ntsc"] == counts["face2-25fps"] == counts["case10-overlay"] == 1


def _check_episode(ws: Path, catalog: Catalog, eid: str, source: Path) -> list[str]:
    problems: list[str] = []
    clips = catalog.clips("episode_id = ?", (eid,))
    if not clips:
        return ["no clips"]
    index = video_index(source)
    frame = index.frame_period

    # Summed duration = the source's video duration, within one frame.
    total = sum(c["end_time"] - c["start_time"] for c in clips)
    if abs(total - index.duration) > frame:
        problems.append(
            f"clips sum to {total:.6f} s but the source's video lasts {index.duration:.6f} s"
            f" ({(total - index.duration) / frame:+.2f} frames)"
        )
    # The clips tile the episode: each starts where the previous one ended.
    for prev, clip in itertools.pairwise(clips):
        if clip["start_pts"] != prev["end_pts"] or abs(clip["start_time"] - prev["end_time"]) > 1e-6:
            problems.append(
                f"clip {clip['clip_index']} starts at {clip['start_time']}, not at {prev['end_time']}"
            )

    src_times, src_planes = decode_video(source)
    src_audio = decode_audio(source)
    seen: list[float] = []
    for clip in clips:
        cid, path, offset = clip["clip_id"], ws / clip["path"], clip["clip_offset"]
        clip_index = video_index(path)
        times, planes = decode_video(path)
        episode_times = times + offset
        seen += list(episode_times)

        # Starts on a keyframe: the file's first packet is one, and it is a keyframe of the source.
        if not clip_index.first_packet_keyframe:
            problems.append(f"{cid}: first video packet is not a keyframe")
        if np.abs(index.keyframe_times - episode_times[0]).min() > TIME_EPS:
            problems.append(
                f"{cid}: first frame at episode time {episode_times[0]:.6f} s is no source keyframe"
            )
        if abs(episode_times[0] - clip["start_time"]) > TIME_EPS:
            problems.append(
                f"{cid}: first frame at {episode_times[0]:.6f} s, catalog says {clip['start_time']}"
            )
        if len(times) != clip["segment_frame_count"]:
            problems.append(f"{cid}: {len(times)} frames decoded, catalog says {clip['segment_frame_count']}")

        # Video alignment: the frame at clip time t is the source frame at t + clip_offset. The clip
        # is a stream copy that starts on a keyframe, so its decoded frames are bit-identical.
        differing, worst = 0, 0.0
        for t, plane in zip(episode_times, planes, strict=True):
            i = int(np.argmin(np.abs(src_times - t)))
            if abs(src_times[i] - t) > TIME_EPS:
                problems.append(f"{cid}: no source frame at episode time {t:.6f} s")
                break
            if not np.array_equal(plane, src_planes[i]):
                differing += 1
                worst = max(worst, float(np.abs(plane.astype(np.int16) - src_planes[i]).mean()))
        if differing:
            problems.append(
                f"{cid}: {differing} frames differ from the source frame at their episode time"
                f" (worst mean abs diff {worst:.2f})"
            )

        # Audio alignment: the clip's audio over its video span matches the source's, lag 0.
        if not clip["has_audio"]:
            problems.append(f"{cid}: no audio")
            continue
        audio = decode_audio(path)
        if audio.rate != src_audio.rate:
            problems.append(f"{cid}: audio rate {audio.rate}, source {src_audio.rate}")
            continue
        if clip["av_offset"] is None or abs(audio.start - times[0] - clip["av_offset"]) > 0.001:
            problems.append(f"{cid}: av_offset {clip['av_offset']}, decoded {audio.start - times[0]:.6f}")
        rate, lag_search = audio.rate, round(LAG_SEARCH * audio.rate)
        t0 = max(clip["start_time"], audio.start + offset + AAC_PREROLL / rate, src_audio.start + LAG_SEARCH)
        t1 = min(clip["end_time"], audio.end + offset, src_audio.end - LAG_SEARCH)
        n = int((t1 - t0) * rate)
        if n < rate // 2:
            problems.append(f"{cid}: only {n} samples of audio to compare in {t0:.3f}-{t1:.3f} s")
            continue
        clip_samples = audio.window(t0 - offset, n)
        src_samples = src_audio.window(t0 - LAG_SEARCH, n + 2 * lag_search)
        lag, score = best_lag(clip_samples, src_samples, lag_search)
        if abs(lag) > MAX_AUDIO_LAG_SAMPLES or score < 0.95:
            problems.append(
                f"{cid}: audio best matches the source {lag / rate * 1000:+.3f} ms ({lag:+d} samples)"
                f" from its timestamps, correlation {score:.4f}"
            )

    # Every source frame is in exactly one clip.
    seen_sorted = np.sort(np.array(seen))
    if len(seen_sorted) != len(src_times) or np.abs(seen_sorted - np.sort(src_times)).max() > TIME_EPS:
        problems.append(f"the clips' {len(seen_sorted)} frames are not the source's {len(src_times)} frames")
    return problems
