"""`nwt-data segment` on generated media: exact timings, A/V alignment, edge-case sources."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from nwt_data.catalog import Catalog
from nwt_data.config import CropSpec
from nwt_data.errors import ConfigError, CropError, MediaError
from nwt_data.media.ffmpeg import run_ffmpeg
from nwt_data.media.probe import probe
from nwt_data.stages.segment import first_copied, leading_non_keyframes, resolve_crop

# A white frame exactly while the tone beeps (the first 0.2 s of every second): the flash and the
# beep onsets are the same instants, so any audio shift shows up as a gap between them.
FLASH = "drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='lt(mod(t,1),0.2)'"


def _fetch_and_segment(cli, tmp_path: Path, files: dict[str, Path], *segment_args: str):
    manifest = tmp_path / "m.csv"
    manifest.write_text("episode_id,url\n" + "".join(f"{k},{v}\n" for k, v in files.items()))
    ws = tmp_path / "ws"
    fetched = cli("fetch", manifest, "-w", ws)
    assert fetched.exit_code == 0, fetched.output
    result = cli("segment", "-w", ws, *segment_args)
    return ws, result, Catalog(ws / "catalog.sqlite")


def _video_onsets(path: Path, offset: float = 0.0) -> np.ndarray:
    """Episode times of the frames where the white flash starts."""
    with av.open(str(path)) as container:
        times, levels = [], []
        for frame in container.decode(video=0):
            times.append(frame.time + offset)
            levels.append(frame.to_ndarray(format="gray").mean())
    bright = np.array(levels) > 200
    starts = np.flatnonzero(bright[1:] & ~bright[:-1]) + 1
    return np.array(times)[starts]


def _audio_onsets(path: Path, offset: float = 0.0) -> np.ndarray:
    """Episode times where the beep starts (after at least 0.3 s of silence)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        chunks, first = [], None
        for frame in container.decode(audio=0):
            if first is None:
                first = frame.time
            chunks.append(frame.to_ndarray().mean(axis=0))
    samples = np.abs(np.concatenate(chunks))
    loud = np.flatnonzero(samples > 0.1)
    if len(loud) == 0:
        return np.array([])
    gaps = np.diff(loud, prepend=-(10**9))
    onsets = loud[gaps > 0.3 * rate]
    return onsets / rate + first + offset


def _episode_onsets(episode: Path) -> tuple[np.ndarray, np.ndarray]:
    return _video_onsets(episode), _audio_onsets(episode)


@pytest.mark.parametrize(
    "variant",
    ["cfr-29.97", "edit-list-cut", "variable-frame-rate"],
)
def test_clips_tile_the_episode_and_keep_audio_aligned(tmp_path: Path, make_video, cli, variant) -> None:
    base = make_video("base.mp4", seconds=9, fps="30000/1001", gop=45, extra_video_filter=FLASH)
    if variant == "cfr-29.97":
        source = base
    elif variant == "edit-list-cut":
        # A stream-copy cut at 1.3 s: the file starts 0.3 s after a keyframe, hidden by an edit list.
        source = tmp_path / "media" / "cut.mp4"
        run_ffmpeg(["-y", "-ss", "1.3", "-i", str(base), "-c", "copy", str(source)])
    else:
        # Drop 6 of every 30 frames and keep the timestamps: genuinely variable frame rate.
        source = tmp_path / "media" / "vfr.mp4"
        run_ffmpeg(["-y", "-i", str(base), "-vf", "select='not(between(mod(n,30),12,17))'",
                    "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast", "-g", "40",
                    "-c:a", "copy", str(source)])  # fmt: skip
    info = probe(source)
    if variant == "edit-list-cut":
        assert info.edit_list and info.video.discard.any() and info.video.start == 0.0
    if variant == "variable-frame-rate":
        assert info.variable_frame_rate

    ws, result, catalog = _fetch_and_segment(cli, tmp_path, {"ep": source}, "--segment-time", "3")
    assert result.exit_code == 0, result.output
    clips = catalog.clips()
    assert len(clips) >= 3
    frame = 1 / 29.97
    # The clips tile the episode exactly: no gap, no overlap, the whole presented duration.
    assert clips[0]["start_time"] == pytest.approx(info.video.start, abs=1e-6)
    for prev, nxt in itertools.pairwise(clips):
        assert nxt["start_time"] == pytest.approx(prev["end_time"], abs=1e-6)
    total = sum(c["end_time"] - c["start_time"] for c in clips)
    assert total == pytest.approx(info.video_duration, abs=frame)
    keyframes = set(np.round(info.video.pts[info.video.keyframe] * float(info.video.time_base), 6))

    src_video, src_audio = _episode_onsets(source)
    checked = 0
    for clip in clips:
        path = ws / clip["path"]
        clip_info = probe(path)
        assert clip_info.video.keyframe[0], "a clip must start on a keyframe"
        first_shown = round(
            float(clip_info.video.pts[0] * clip_info.video.time_base) + clip["clip_offset"], 6
        )
        assert first_shown in keyframes
        if clip["status"] != "ok":
            continue
        lo, hi = clip["trim_start"], clip["trim_end"]
        times = src_times = info.video.presented_times()
        assert clip["frame_count"] == int(((times >= lo - 1e-9) & (times < hi - 1e-9)).sum())
        assert clip["duration"] == pytest.approx(hi - lo, abs=1e-6)
        # Onsets inside the kept window, found in the clip file and mapped back with clip_offset,
        # are exactly where they are in the source: video within a frame, audio within 2 ms.
        video = [t for t in _video_onsets(path, clip["clip_offset"]) if lo <= t < hi]
        audio = [t for t in _audio_onsets(path, clip["clip_offset"]) if lo <= t < hi]
        for t in video:
            assert np.abs(src_video - t).min() < frame / 2
        for t in audio:
            assert np.abs(src_audio - t).min() < 0.002
        for v in video:  # and the flash and the beep still start together
            assert np.abs(np.array(audio) - v).min() < frame
        checked += len(video)
    assert checked >= 3, "the kept windows must contain flash/beep onsets to compare"
    assert src_times[0] >= 0


def test_episode_without_audio_is_rejected_with_a_reason(tmp_path: Path, make_video, cli) -> None:
    silent = make_video("silent.mp4", with_audio=False)
    good = make_video("good.mp4")
    ws, result, catalog = _fetch_and_segment(cli, tmp_path, {"silent": silent, "good": good})
    assert result.exit_code == 0, result.output
    rows = {r["episode_id"]: r for r in catalog.episodes()}
    assert rows["silent"]["segment_status"] == "rejected"
    assert "no audio stream" in rows["silent"]["segment_error"]
    assert not catalog.clips("episode_id = 'silent'")
    assert rows["good"]["segment_status"] == "done" and catalog.clips("episode_id = 'good'")
    assert not (ws / "clips" / "silent").exists()


def test_clips_past_the_end_of_the_audio_are_rejected(tmp_path: Path, make_video, cli) -> None:
    video = make_video("video.mp4", seconds=9, gop=60)
    short_audio = tmp_path / "media" / "short-audio.mp4"
    run_ffmpeg(["-y", "-i", str(video), "-t", "5", "-i", str(video), "-map", "0:v", "-map", "1:a",
                "-c", "copy", str(short_audio)])  # fmt: skip
    _, result, catalog = _fetch_and_segment(cli, tmp_path, {"ep": short_audio})
    assert result.exit_code == 0, result.output
    by_index = {c["clip_index"]: c for c in catalog.clips()}
    # Keyframes every 2 s: clips 0-4, 4-8 and 8-9 s; the audio stops at 5 s.
    assert by_index[0]["status"] == "ok"
    assert by_index[1]["status"] == "rejected"
    assert (
        by_index[1]["reason"].startswith("audio covers 4.0")
        and "not the kept 4.250-7.750" in by_index[1]["reason"]
    )
    assert (by_index[2]["status"], by_index[2]["reason"]) == ("rejected", "no audio in this clip")


def test_trim_and_too_short(tmp_path: Path, make_video, cli) -> None:
    # Keyframes every 2 s at 30 fps: segments of 4, 4 and 1 s.
    ep = make_video("ep.mp4", seconds=9, gop=60)
    _, result, catalog = _fetch_and_segment(cli, tmp_path, {"ep": ep})
    assert result.exit_code == 0, result.output
    clips = catalog.clips()
    assert [(c["start_time"], c["end_time"]) for c in clips] == [(0.0, 4.0), (4.0, 8.0), (8.0, 9.0)]
    first, second, last = clips
    assert (first["trim_start"], first["trim_end"], first["duration"]) == (0.25, 3.75, 3.5)
    assert first["frame_count"] == second["frame_count"] == 105  # 3.5 s at 30 fps
    assert first["segment_frame_count"] == 120
    assert last["status"] == "too_short" and last["trim_start"] is None
    assert (first["crop_x"], first["crop_y"], first["crop_w"], first["crop_h"]) == (127, 2, 156, 178)
    saved = json.loads(catalog.episode("ep")["segment_config"])
    assert saved["crop"] == "507,8,623,712@1280x720" and saved["trim"] == 0.25


def test_crop_that_does_not_fit_fails_that_episode_only(tmp_path: Path, make_video, cli) -> None:
    square = make_video("square.mp4", width=256, height=256)
    wide = make_video("wide.mp4")
    _, result, catalog = _fetch_and_segment(cli, tmp_path, {"square": square, "wide": wide})
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "square [crop]" in out and "--crop center" in out
    rows = {r["episode_id"]: r for r in catalog.episodes()}
    assert rows["square"]["segment_status"] == "failed" and rows["square"]["segment_error_kind"] == "crop"
    assert rows["wide"]["segment_status"] == "done"
    # Retrying with a crop that fits succeeds and keeps the finished episode as it was.
    wide_clips = [tuple(c) for c in catalog.clips("episode_id = 'wide'")]
    again = cli("segment", "-w", tmp_path / "ws", "--retry-failed", "--crop", "center")
    assert again.exit_code == 0, again.output
    catalog = Catalog(tmp_path / "ws" / "catalog.sqlite")
    assert catalog.episode("square")["segment_status"] == "done"
    assert catalog.clips("episode_id = 'square'")[0]["crop_w"] == 224
    assert [tuple(c) for c in catalog.clips("episode_id = 'wide'")] == wide_clips


@pytest.mark.parametrize(
    ("spec", "size", "box"),
    [
        ("paper", (1280, 720), (507, 8, 623, 712)),
        ("paper", (1920, 1080), (760, 12, 934, 1068)),
        ("paper", (640, 360), (254, 4, 312, 356)),
        ("center", (512, 512), (32, 0, 448, 512)),
        ("center", (256, 512), (0, 109, 256, 293)),
        ("none", (700, 700), (0, 0, 700, 700)),
        ("10,20,100,200@512x512", (512, 512), (10, 20, 100, 200)),
        ("10,20,100,200@512x512", (1024, 1024), (20, 40, 200, 400)),
    ],
)
def test_resolve_crop(spec: str, size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    assert resolve_crop(CropSpec.parse(spec), *size) == box


def test_paper_box_keeps_the_output_aspect() -> None:
    x, y, w, h = resolve_crop(CropSpec(), 1280, 720)
    assert (x, x + w, 720 - (y + h), 720 - y) == (507, 1130, 0, 712)  # Appendix D step 3
    assert w / h == pytest.approx(224 / 256, abs=0.001)


@pytest.mark.parametrize(("spec", "size"), [("paper", (512, 512)), ("paper", (720, 1280))])
def test_crop_for_another_aspect_is_refused(spec: str, size: tuple[int, int]) -> None:
    with pytest.raises(CropError, match="another aspect ratio") as err:
        resolve_crop(CropSpec.parse(spec), *size)
    assert "--crop center" in err.value.hint


def test_frames_and_crops_too_small_to_scale_up_are_refused() -> None:
    with pytest.raises(MediaError, match="only 1x1 pixels") as err:
        resolve_crop(CropSpec.parse("center"), 1, 1)
    assert "larger version" in err.value.hint
    with pytest.raises(CropError, match="crop box 40x48 is smaller than 56x64") as err:
        resolve_crop(CropSpec.parse("0,0,40,48@512x512"), 512, 512)
    assert "--crop center" in err.value.hint
    assert resolve_crop(CropSpec.parse("center"), 56, 64) == (0, 0, 56, 64)


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "0,0,2000,10", "0,0,0,10"])
def test_bad_crop_specs(text: str) -> None:
    with pytest.raises(ConfigError):
        CropSpec.parse(text)


def test_kept_window_reads_exactly_the_recorded_frames_and_audio(tmp_path: Path, make_video, cli) -> None:
    from nwt_data.media.clip import ClipWindow, kept_audio, kept_frames

    ep = make_video("ep.mp4", seconds=7, width=640, height=360, fps="30000/1001", gop=45)
    ws, result, catalog = _fetch_and_segment(cli, tmp_path, {"ep": ep})
    assert result.exit_code == 0, result.output
    ok = catalog.clips("status = 'ok'")
    assert ok
    for clip in ok:
        window = ClipWindow.from_row(ws, clip)
        frames = list(kept_frames(window))
        assert len(frames) == clip["frame_count"]
        assert all(f.shape == (clip["crop_h"], clip["crop_w"], 3) for _, f in frames)
        assert frames[0][0] >= clip["trim_start"] - 1e-9 and frames[-1][0] < clip["trim_end"]
        audio, rate = kept_audio(window)
        assert rate == 44100
        assert len(audio) == round(clip["duration"] * rate)


def test_25fps_at_the_mp4_default_timescale_is_not_rejected(tmp_path: Path, make_video, cli) -> None:
    # 25 fps H.264 gets the 1/12800 time base; the muxer's shift of each clip is then rounded to a
    # 78 us video tick, 3.4 samples of 44.1 kHz audio: that rounding is not an audio shift.
    ep = make_video("ep.mp4", seconds=9, fps="25", gop=50)
    assert probe(ep).video.time_base == Fraction(1, 12800)
    _, result, catalog = _fetch_and_segment(cli, tmp_path, {"ep": ep})
    assert result.exit_code == 0, result.output
    statuses = [(c["status"], c["reason"]) for c in catalog.clips()]
    assert statuses[:2] == [("ok", None), ("ok", None)], statuses


def test_redo_resegments_an_episode_until_people_depend_on_it(tmp_path: Path, make_video, cli) -> None:
    from nwt_data.review.session import write_decision

    square = make_video("square.mp4", width=256, height=256, seconds=9, gop=60)
    ws, result, catalog = _fetch_and_segment(cli, tmp_path, {"sq": square}, "--crop", "none")
    assert result.exit_code == 0
    assert catalog.clips()[0]["crop_w"] == 256
    nudge = cli("segment", "-w", ws, "--crop", "center")
    assert "segmented with other settings" in nudge.output
    assert cli("segment", "-w", ws, "--redo").exit_code == 2  # --redo needs --episode
    redone = cli("segment", "-w", ws, "--crop", "center", "--redo", "-e", "sq")
    assert redone.exit_code == 0, redone.output
    catalog = Catalog(ws / "catalog.sqlite")
    assert catalog.clips()[0]["crop_w"] == 224
    write_decision(catalog, catalog.clips()[0]["clip_id"], "accepted", None, None, "ann")
    refused = cli("segment", "-w", ws, "--crop", "none", "--redo", "-e", "sq")
    assert refused.exit_code == 1 and "reviewed or sharded" in " ".join(refused.output.split())
    assert Catalog(ws / "catalog.sqlite").clips()[0]["crop_w"] == 224


def test_rotated_phone_footage_is_refused_with_a_fix(tmp_path: Path, make_video, cli) -> None:
    upright = make_video("upright.mp4")
    rotated = tmp_path / "media" / "rotated.mp4"
    run_ffmpeg(["-y", "-display_rotation", "90", "-i", str(upright), "-c", "copy", str(rotated)])
    _, result, catalog = _fetch_and_segment(cli, tmp_path, {"phone": rotated, "tv": upright})
    assert result.exit_code == 1
    assert "phone [media] the video is stored rotated by 90 degrees" in " ".join(result.output.split())
    assert json.loads(catalog.episode("phone")["probe"])["rotation"] == 90
    assert catalog.episode("tv")["segment_status"] == "done"


def _cut_mid_gop(source: Path, out: Path) -> None:
    """`out` starts half a GOP into `source`: a stream-copied cut (MP4) keeping the frames before the
    next keyframe, or a transport stream cut at a packet boundary (a recording joined mid-broadcast)."""
    if out.suffix == ".mp4":
        run_ffmpeg(["-y", "-i", str(source), "-ss", "0.5", "-c", "copy", "-copyinkf", str(out)])
        return
    whole = out.with_name("whole.ts")
    run_ffmpeg(["-y", "-i", str(source), "-c", "copy", "-f", "mpegts", str(whole)])
    data = whole.read_bytes()
    out.write_bytes(data[len(data) // 3 // 188 * 188 :])


@pytest.mark.parametrize("suffix", [".mp4", ".ts"])
def test_a_source_that_starts_mid_gop_loses_only_the_frames_before_its_first_keyframe(
    tmp_path: Path, make_video, cli, suffix: str
) -> None:
    source = make_video("whole.mp4", seconds=9, gop=30)
    cut = tmp_path / "media" / f"cut{suffix}"
    _cut_mid_gop(source, cut)
    info = probe(cut)
    lead = int(np.flatnonzero(info.video.keyframe)[0])
    assert lead > 0  # the test's premise: the file starts with frames that are not keyframes
    keyframe = info.keyframe_times[0]
    ws, result, catalog = _fetch_and_segment(cli, tmp_path, {"cut": cut})
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"cut: dropped {lead} frames before the first keyframe" in said and "starts mid-GOP" in said
    assert catalog.episode("cut")["segment_status"] == "done"
    clips = catalog.clips("episode_id = ?", ["cut"])
    assert clips[0]["status"] == "ok", clips  # the first clip is usable, not rejected
    assert clips[0]["start_time"] == pytest.approx(keyframe, abs=1e-6)
    assert all(c["start_time"] >= keyframe - 1e-6 for c in clips)
    assert sum(c["segment_frame_count"] for c in clips) == len(info.video) - lead
    for clip in clips:  # each clip file starts on a keyframe that decodes
        with av.open(str(ws / clip["path"])) as container:
            packet = next(p for p in container.demux(video=0) if p.size)
            assert packet.is_keyframe
            assert next(container.decode(video=0)).key_frame


def test_leading_non_keyframes_and_where_the_copy_starts() -> None:
    from nwt_data.media.probe import MediaInfo, Packets

    def packets(keys: list[int], n: int = 8) -> Packets:
        return Packets(time_base=Fraction(1, 30), pts=np.arange(n, dtype=np.int64),
                       duration=np.ones(n, dtype=np.int64), keyframe=np.isin(np.arange(n), keys),
                       discard=np.zeros(n, dtype=bool))  # fmt: skip

    def info(video: Packets) -> MediaInfo:
        return MediaInfo(path=Path("x.mp4"), format_name="mp4", container_duration=0.0, width=320,
                         height=180, video_codec="h264", average_rate=None, nominal_rate=None, video=video,
                         audio_codec=None, sample_rate=None, channels=None, audio=None,
                         edit_list=False)  # fmt: skip

    assert leading_non_keyframes(packets([0, 4])) == 0
    assert leading_non_keyframes(packets([3, 6])) == 3
    assert leading_non_keyframes(packets([])) == 8  # no keyframe: segment refuses the episode
    source = info(packets([3, 6]))
    assert first_copied(source, [info(packets([0], 3)), info(packets([0], 2))]) == 3  # copy dropped 3
    assert first_copied(source, [info(packets([3], 8))]) == 0  # copy kept them
    with pytest.raises(MediaError, match="the segments hold 4 video frames but the source has 8"):
        first_copied(source, [info(packets([0], 4))])
