"""`nwt-data flag`: the automatic pre-flags, on synthetic frames, generated episodes and the real clips.

Pure detectors first (synthetic frames and audio whose answer is known by construction), then the
stage end to end on generated episodes (fetch, segment, flag; the cut and the silence made with
ffmpeg), then the known answers on the real third-party clips in ../shared/media.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from nwt_data.catalog import Catalog
from nwt_data.cli import flag as flag_cli
from nwt_data.config import MaskConfig
from nwt_data.demo import STUDIO_BACKGROUND, STUDIO_FILTER
from nwt_data.errors import ConfigError
from nwt_data.media.ffmpeg import run_ffmpeg
from nwt_data.stages.flags import (
    ClipMeasures,
    EdgeAccumulator,
    FlagConfig,
    change,
    count_faces,
    cut_score,
    decide,
    faces_settled,
    frame_signature,
    inset_boxes,
    overlay_found,
    speech_levels,
    voiced_share,
)
from nwt_data.stages.mask import OverlayRule

RNG = np.random.default_rng(7)


def _flag_app() -> typer.Typer:
    """`nwt-data flag` as the root app will register it (a second command keeps the subcommand form)."""
    app = typer.Typer(rich_markup_mode="rich")
    app.command("flag")(flag_cli.flag)
    app.command("noop")(lambda: None)
    return app


def _flag(*args: object):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(_flag_app(), ["flag", *(str(a) for a in args)], catch_exceptions=False)


def _scene(t: float, height: int = 512, width: int = 448) -> np.ndarray:
    """A soft 'talking head': a smooth vertical gradient and a blurred bright blob that moves with t."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width * (0.5 + 0.1 * np.sin(3 * t)), height * (0.45 + 0.05 * np.cos(2 * t))
    blob = 120 * np.exp(-(((x - cx) / (0.18 * width)) ** 2 + ((y - cy) / (0.22 * height)) ** 2))
    gray = 60 + 60 * y / height + blob + RNG.normal(0, 2, (height, width))
    return np.clip(gray, 0, 255).astype(np.uint8)


def _with_inset(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Paste a shrunk copy of a different picture into `box` with hard edges (picture in picture)."""
    x, y, w, h = box
    out = gray.copy()
    inner = cv2.resize(255 - gray, (w, h), interpolation=cv2.INTER_AREA)
    out[y : y + h, x : x + w] = np.clip(inner.astype(np.int16) // 2 + 70, 0, 255).astype(np.uint8)
    return out


def _edges(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    acc = EdgeAccumulator()
    for frame in frames:
        acc.add(frame)
    steps = acc.means()
    assert steps is not None
    return steps


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _other_shot() -> np.ndarray:
    """A different picture: coloured blocks (a second camera on another set)."""
    blocks = RNG.integers(0, 256, (16, 14, 3), dtype=np.uint8)
    return cv2.resize(blocks, (448, 512), interpolation=cv2.INTER_NEAREST)


# --- overlays -----------------------------------------------------------------------------------
def test_overlay_heuristic_finds_a_bright_box_at_the_left_edge() -> None:
    rule = OverlayRule.for_crop(MaskConfig(), 712)  # the paper's own crop height: thresholds as given
    frame = np.full((712, 623), 0x30, np.uint8)
    assert not overlay_found(frame, rule)
    boxed = frame.copy()
    boxed[150:450, 0:110] = 255  # a white side panel touching the crop's left edge
    boxed[200:400, 20:90] = 0  # with dark content, like the demo's overlay
    assert overlay_found(boxed, rule)
    away = frame.copy()
    away[100:400, 200:310] = 255  # the same box in the middle, high up: not an overlay to the paper
    assert not overlay_found(away, rule)


def test_inset_box_is_found_only_when_static_and_sharp() -> None:
    times = np.arange(12) / 4
    plain = [_scene(t) for t in times]
    assert inset_boxes(*_edges(plain)) == []
    corner = (0, 448, 96, 64)  # case10's inset, in its 448x512 crop
    found = inset_boxes(*_edges([_with_inset(f, corner) for f in plain]))
    assert corner in found
    floating = (300, 40, 120, 90)  # an inset away from the edges: four found sides
    assert floating in inset_boxes(*_edges([_with_inset(f, floating) for f in plain]))
    # A box that moves is not a burned-in overlay (its edges average out), nor is a soft-edged one.
    moving = [_with_inset(f, (0 + 12 * i, 448 - 9 * i, 96, 64)) for i, f in enumerate(plain)]
    assert inset_boxes(*_edges(moving)) == []
    soft = [cv2.GaussianBlur(_with_inset(f, corner), (0, 0), 3) for f in plain]
    assert inset_boxes(*_edges(soft)) == []
    # A full-width band (a desk edge) has no vertical side: left to the mask heuristic.
    band = [f.copy() for f in plain]
    for f in band:
        f[400:] //= 3
    assert inset_boxes(*_edges(band)) == []


# --- cuts ---------------------------------------------------------------------------------------
def test_change_between_frames_tells_cuts_from_motion_and_flashes() -> None:
    a, b = _scene(0.0), _scene(0.1)
    sig_a = frame_signature(_rgb(a))
    assert change(sig_a, frame_signature(_rgb(a))) == pytest.approx(0.0, abs=1e-6)
    assert change(sig_a, frame_signature(_rgb(b))) < 0.1  # the head moved a little
    assert change(sig_a, frame_signature(_other_shot())) > 0.5  # a different picture
    assert change(sig_a, frame_signature(np.zeros((512, 448, 3), np.uint8))) > 0.5  # cut to black
    flash = np.clip(a.astype(np.int16) + 40, 0, 255).astype(np.uint8)  # same picture, brighter
    assert change(sig_a, frame_signature(_rgb(flash))) < 0.35


def test_cut_score_finds_hard_cuts_and_fades() -> None:
    fps = 30
    times = list(np.arange(90) / fps)
    shot_a = [frame_signature(_rgb(_scene(t))) for t in times]
    other = _other_shot()
    assert cut_score(times, shot_a) < 0.35
    hard = shot_a[:45] + [frame_signature(other)] * 45
    assert cut_score(times, hard) > 0.5
    # A 0.4 s dissolve into the other picture: no two consecutive frames differ much, but frames
    # half a second apart do.
    dissolve = []
    for i, t in enumerate(times):
        w = float(np.clip((i - 40) / 12, 0, 1))
        mixed = (1 - w) * _rgb(_scene(t)).astype(np.float32) + w * other.astype(np.float32)
        dissolve.append(frame_signature(mixed.astype(np.uint8)))
    assert cut_score(times, dissolve, transition_seconds=0) < 0.35
    assert cut_score(times, dissolve, transition_seconds=0.5) > 0.35


# --- silence ------------------------------------------------------------------------------------
def test_speech_band_level_and_voiced_share() -> None:
    rate = 16_000
    t = np.arange(2 * rate) / rate
    tone = (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    levels = speech_levels(tone, rate)
    assert np.allclose(levels, 20 * np.log10(0.4 / np.sqrt(2)), atol=0.5)  # -10.97 dBFS
    assert voiced_share(tone, rate) == 1.0
    assert voiced_share(np.zeros_like(tone), rate) == 0.0
    hiss = RNG.normal(0, 10 ** (-70 / 20), tone.shape).astype(np.float32)  # a -70 dBFS noise floor
    assert voiced_share(hiss, rate) == 0.0
    hum = (0.5 * np.sin(2 * np.pi * 30 * t)).astype(np.float32)  # loud, but below the speech band
    assert voiced_share(hum, rate) == 0.0
    beeps = tone * (np.mod(t, 1) < 0.2)  # the generated episodes' beep: 0.2 s of every second
    assert voiced_share(beeps, rate) == pytest.approx(0.2, abs=0.03)


# --- faces and decisions --------------------------------------------------------------------
def test_face_sampling_stops_once_the_face_flags_cannot_change() -> None:
    # 3 slots: two agreeing samples are a majority, whatever the third finds.
    assert faces_settled([1, 1], [0.4, 0.5], 3, 0.15)
    assert faces_settled([0, 0], [], 3, 0.15)
    assert not faces_settled([1], [0.4], 3, 0.15)
    assert not faces_settled([1, 0], [0.4], 3, 0.15)
    # The count agrees but the face is small in one sample and large in the other: small_face open.
    assert not faces_settled([1, 1], [0.1, 0.4], 3, 0.15)
    assert faces_settled([1, 1, 1], [0.1, 0.4, 0.3], 3, 0.15)
    # 4 slots need 3; the median of what was seen then equals the median of all 4, any fourth value.
    assert not faces_settled([2, 2], [0.3, 0.3], 4, 0.15)
    assert faces_settled([2, 2, 1], [0.3, 0.3, 0.3], 4, 0.15) is False
    assert faces_settled([2, 2, 2], [0.3, 0.3, 0.3], 4, 0.15)
    for fourth in (0, 1, 2, 3):
        m = ClipMeasures(frames=1, sampled=1, face_counts=(2, 2, 2, fourth), cut_score=0.0, overlay_share=0.0,
                         insets=(), voiced_share=1.0, loudest_db=0.0)  # fmt: skip
        assert m.faces == 2


def test_no_face_in_a_blank_or_patterned_frame() -> None:
    assert count_faces(np.full((512, 448), 128, np.uint8)) == 0
    assert count_faces(_scene(0.3)) == 0


def test_decide_maps_measures_to_the_catalog_columns() -> None:
    config = FlagConfig(workers=1)
    calm = ClipMeasures(frames=100, sampled=14, face_counts=(1,) * 14, cut_score=0.05, overlay_share=0.0,
                        insets=(), voiced_share=0.8, loudest_db=-12.0)  # fmt: skip
    faces, raised = decide(calm, config)
    assert faces == 1 and not any(raised.values()) and set(raised) == set(Catalog.FLAG_COLUMNS)
    busy = dataclasses.replace(calm, face_counts=(0, 2, 2, 2, 1), cut_score=0.9, overlay_share=0.5,
                               voiced_share=0.02)  # fmt: skip
    faces, raised = decide(busy, config)
    assert faces == 2 and raised["flag_many_faces"] and raised["flag_cut"]
    assert raised["flag_overlay"] and raised["flag_silence"] and not raised["flag_no_face"]
    assert decide(dataclasses.replace(calm, face_counts=(0, 0, 1)), config)[1]["flag_no_face"]
    inset_only = dataclasses.replace(calm, insets=((0, 448, 96, 64),))
    assert decide(inset_only, config)[1]["flag_overlay"]
    assert not decide(inset_only, FlagConfig(workers=1, inset=False))[1]["flag_overlay"]
    assert not decide(busy, FlagConfig(workers=1, overlay=False))[1]["flag_overlay"]


BAD_SETTINGS = [{"sample_fps": 0}, {"min_face": 1.5}, {"cut_threshold": 0}, {"silence_db": 3},
                {"min_voiced": 2}, {"workers": 0}, {"mask": {"threshold": 100}}]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_SETTINGS)
def test_flag_config_is_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        FlagConfig(**bad)  # type: ignore[arg-type]


# --- the stage on generated episodes ----------------------------------------------------------
ENCODE = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "30",
          "-keyint_min", "30", "-sc_threshold", "0", "-c:a", "aac", "-b:a", "96k", "-shortest",
          "-movflags", "+faststart"]  # fmt: skip
TONE = "0.4*sin(2*PI*440*t)*lt(mod(t,1),0.2)"  # the beep of the generated episodes


def _episode(out: Path, shots: list[str], audio: str, seconds: float) -> Path:
    """An H.264/AAC episode: lavfi video `shots` played one after the other (hard cuts), `audio`."""
    args = ["-y"]
    for shot in shots:
        args += ["-f", "lavfi", "-i", shot]
    args += ["-f", "lavfi", "-i", f"aevalsrc='{audio}':s=44100:d={seconds}"]
    if len(shots) > 1:
        joined = "".join(f"[{i}:v]" for i in range(len(shots)))
        args += ["-filter_complex", f"{joined}concat=n={len(shots)}:v=1:a=0[v]", "-map", "[v]"]
    else:
        args += ["-map", "0:v"]
    args += ["-map", f"{len(shots)}:a", *ENCODE, str(out)]
    run_ffmpeg(args)
    return out


def test_flag_stage_on_generated_episodes(tmp_path: Path, make_video, cli) -> None:
    media = tmp_path / "media"
    media.mkdir()
    size = "size=320x180:rate=30"
    pattern, blue = f"testsrc2={size}:duration=", f"color=c=0x2050a0:{size}:duration="
    # The demo's studio at 640x360: its side overlay sits at the (paper) crop's left edge.
    studio = {"source": STUDIO_BACKGROUND, "extra_video_filter": STUDIO_FILTER + ",scale=640:360"}
    files = {
        # testsrc2 for 2 s, then a plain blue screen: a hard cut at 2.0 s, inside the kept window.
        "cut": _episode(media / "cut.mp4", [pattern + "2", blue + "2"], TONE, 4),
        # The same cut at 0.1 s falls in the trimmed first 0.25 s: not in the clip as kept.
        "early-cut": _episode(media / "early.mp4", [pattern + "0.1", blue + "3.9"], TONE, 4),
        "silent": _episode(media / "silent.mp4", [pattern + "4"], "0", 4),
        "studio": make_video("studio.mp4", seconds=4, width=1280, height=720, **studio),
    }
    manifest = tmp_path / "m.csv"
    manifest.write_text("episode_id,url\n" + "".join(f"{k},{v}\n" for k, v in files.items()))
    ws = tmp_path / "ws"
    for args in (("fetch", manifest), ("segment",)):
        result = cli(*args, "-w", ws)
        assert result.exit_code == 0, result.output

    result = _flag("-w", ws, "-j", "2")
    assert result.exit_code == 0, result.output
    catalog = Catalog(ws / "catalog.sqlite")
    clips = {c["episode_id"]: c for c in catalog.clips("status = 'ok'")}
    assert set(clips) == set(files), "one 3.5 s kept clip per episode"
    raised = {}
    for eid, clip in clips.items():
        assert clip["flag_status"] == "done", (eid, clip["flag_error"])
        raised[eid] = {c.removeprefix("flag_") for c in Catalog.FLAG_COLUMNS if clip[c]}
        assert clip["flags"] == ",".join(c.removeprefix("flag_") for c in Catalog.FLAG_COLUMNS if clip[c])
        assert clip["faces"] == 0 and "no_face" in raised[eid], "generated pictures hold no face"
    assert "cut" in raised["cut"]
    assert "cut" not in raised["early-cut"] | raised["silent"] | raised["studio"]
    assert "silence" in raised["silent"]
    assert "silence" not in raised["cut"] | raised["early-cut"] | raised["studio"]
    # A tone that beeps is no speech to the VAD, loud or not; a silent clip neither.
    assert all("no_speech" in r for r in raised.values())
    assert all(c["speech_ratio"] == 0.0 for c in clips.values())
    assert "overlay" in raised["studio"]
    assert "flag summary" in result.output and "raised: cut" in result.output

    # Resumable: a second run flags nothing; --redo flags every clip again.
    again = _flag("-w", ws)
    assert again.exit_code == 0 and "clips flagged" not in again.output
    runs = sqlite3.connect(ws / "catalog.sqlite")
    config = runs.execute("SELECT config FROM runs WHERE command = 'flag' ORDER BY run_id DESC").fetchone()[0]
    assert '"cut_threshold": 0.35' in config and '"threshold": 185' in config  # the [mask] rule, nested

    # A broken clip fails alone, is recorded, and is retried with --retry-failed.
    path = ws / clips["studio"]["path"]
    hidden = path.with_suffix(".away")
    path.rename(hidden)
    broken = _flag("-w", ws, "--redo", "--cut-threshold", "0.9")
    assert broken.exit_code == 1
    studio = catalog.clips("clip_id = ?", (clips["studio"]["clip_id"],))[0]
    assert studio["flag_status"] == "failed" and "missing" in studio["flag_error"]
    cut = catalog.clips("clip_id = ?", (clips["cut"]["clip_id"],))[0]
    assert cut["flag_status"] == "done" and cut["flag_cut"] == 1  # a hard cut scores 1.0
    assert _flag("-w", ws).exit_code == 1  # the earlier failure is reported again
    hidden.rename(path)
    assert _flag("-w", ws, "--retry-failed").exit_code == 0
    assert catalog.clips("clip_id = ?", (clips["studio"]["clip_id"],))[0]["flag_status"] == "done"


def test_bad_flag_settings_are_one_line_errors(tmp_path: Path, make_video, cli) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"episode_id,url\nep,{make_video(seconds=3)}\n")
    ws = tmp_path / "ws"
    assert cli("fetch", manifest, "-w", ws).exit_code == 0
    result = _flag("-w", ws, "--silence-db", "6")
    assert result.exit_code == 2 and "silence_db" in result.output
    (ws / "nwt.toml").write_text((ws / "nwt.toml").read_text() + "\n[flags]\nmask = { threshold = 100 }\n")
    result = _flag("-w", ws)
    assert result.exit_code == 2 and "[mask] table" in result.output


# --- the real clips ----------------------------------------------------------------------------
REAL_EPISODES = {
    "face1-vfr": "retalking_face1_vfr_baseline.mp4",
    "face2-25fps": "retalking_face2_25fps.mp4",
    "aoc-ntsc": "vexpress_AOC_29.97fps.mp4",
    "case10-overlay": "vexpress_case10_inset_overlay.mp4",  # the burned-in inset box, bottom left
    "sadtalker-mpeg4": "sadtalker_WDA_KatieHill_mpeg4.mp4",
}


def make_real_variants(shared_media: Path, folder: Path) -> dict[str, Path]:
    """From the real clips: a hard cut between two people, and a clip whose audio is silenced."""
    folder.mkdir(parents=True, exist_ok=True)
    cut, silent = folder / "real-cut.mp4", folder / "real-silent.mp4"
    # A 90 kHz video timescale: with 25 fps's default 1/12800, the segment muxer's shift for the AAC
    # priming (1024 samples) rounds to 298 ticks, 2.7 samples off, and segment rejects the clips.
    shot = "trim=0:2.2,setpts=PTS-STARTPTS,fps=25,format=yuv420p,setsar=1"
    sound = "atrim=0:2.2,asetpts=PTS-STARTPTS,aresample=44100,aformat=channel_layouts=stereo"
    run_ffmpeg(["-y", "-i", str(shared_media / REAL_EPISODES["aoc-ntsc"]),
                "-i", str(shared_media / REAL_EPISODES["sadtalker-mpeg4"]),
                "-filter_complex", f"[0:v]{shot}[v0];[0:a]{sound}[a0];[1:v]{shot}[v1];[1:a]{sound}[a1];"
                                   "[v0][a0][v1][a1]concat=n=2:v=1:a=1[v][a]",
                "-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
                "-video_track_timescale", "90000",
                "-c:a", "aac", "-movflags", "+faststart", str(cut)])  # fmt: skip
    run_ffmpeg(["-y", "-i", str(shared_media / REAL_EPISODES["face2-25fps"]), "-map", "0:v:0",
                "-map", "0:a:0", "-c:v", "copy", "-af", "volume=0", "-c:a", "aac", str(silent)])  # fmt: skip
    return {"real-cut": cut, "real-silent": silent}


# The known answers beyond "one talking person, big in the frame, one continuous shot, speech" (true
# of every clip). The paper's rule would paint bright regions in aoc (the neckline) and sadtalker (the
# wall at the left edge); the default graphic rule paints (and flags) only case10's inset.
EXPECTED = {"case10-overlay": {"overlay"}, "real-cut": {"cut"}, "real-silent": {"silence", "no_speech"}}


@pytest.mark.slow
def test_flags_on_real_clips_match_the_known_answers(tmp_path: Path, shared_media: Path, cli) -> None:
    sources = {eid: shared_media / name for eid, name in REAL_EPISODES.items()}
    sources |= make_real_variants(shared_media, tmp_path / "variants")
    manifest = tmp_path / "real.csv"
    manifest.write_text("episode_id,url\n" + "".join(f"{k},{v}\n" for k, v in sources.items()))
    ws = tmp_path / "ws"
    for args in (("fetch", manifest), ("segment", "--crop", "center")):  # the sources are square
        result = cli(*args, "-w", ws)
        assert result.exit_code == 0, result.output
    result = _flag("-w", ws)
    assert result.exit_code == 0, result.output

    clips = Catalog(ws / "catalog.sqlite").clips("status = 'ok'")
    assert {c["episode_id"] for c in clips} == set(sources)
    lines, wrong = [f"{'clip':26} {'faces':>5}  {'raised':24} {'expected':24}"], []
    for clip in clips:
        assert clip["flag_status"] == "done", (clip["clip_id"], clip["flag_error"])
        raised = {c.removeprefix("flag_") for c in Catalog.FLAG_COLUMNS if clip[c]}
        must = EXPECTED.get(clip["episode_id"], set())
        lines.append(f"{clip['clip_id']:26} {clip['faces']:5d}  {','.join(sorted(raised)) or '-':24}"
                     f" {','.join(sorted(must)) or '-':24}")  # fmt: skip
        # One talking person in every clip: never a face flag.
        if clip["faces"] != 1 or raised & {"no_face", "many_faces"}:
            wrong.append(f"{clip['clip_id']}: {clip['faces']} faces")
        if not must <= raised:
            wrong.append(f"{clip['clip_id']}: {sorted(must - raised)} not raised")
        # Single continuous shots with speech and no overlay, except the variants and case10.
        for name in ("cut", "silence", "no_speech", "low_speech", "overlay", "small_face"):
            if name in raised and name not in must:
                wrong.append(f"{clip['clip_id']}: {name} raised")
    print("\n".join(lines))
    assert not wrong, "\n".join([*wrong, *lines])


def test_sample_rgb_converts_the_crop_alone_as_the_whole_frame_would() -> None:
    import av

    from nwt_data.media.clip import sample_rgb

    # A smooth colour picture as yuv420p (chroma is repeated by sample_rgb, interpolated by swscale,
    # and the two round differently: a few levels apart), cut at odd and even places.
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float32)
    rgb = np.stack([40 + xx, 60 + yy, 200 - xx / 2], axis=2).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    whole = frame.to_ndarray(format="rgb24")
    for x, y, w, h in ((3, 5, 31, 27), (0, 0, 128, 96), (97, 69, 31, 27), (10, 10, 40, 40)):
        part = sample_rgb(frame, (x, y, w, h))
        assert part.shape == (h, w, 3)
        diff = np.abs(part.astype(int) - whole[y : y + h, x : x + w])
        assert diff.max() <= 3 and diff.mean() < 1.5
    # Other pixel formats: converted whole, then cut (the same bytes).
    rgb_frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    assert np.array_equal(sample_rgb(rgb_frame, (3, 5, 31, 27)), rgb[5:32, 3:34])
