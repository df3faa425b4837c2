"""The bad-input suite: one case per kind of bad input a user meets, across both CLIs.

Each case builds its input, runs the real command (in process, through Typer's runner) and checks the
contract: exit code 1 (items failed, the others completed) or 2 (usage or configuration), exactly one
line naming the problem with what to do, and no traceback. `pytest tests/test_bad_input.py -s` prints
the table (kind, command, message, exit code). Unusual sources (4K, 1x1, rotated, two audio
streams) run through fetch, segment, mask and shard in one workspace at the end. Heavier kinds (a cut
download, a read-only workspace, damaged shards in encode, trainers on unreadable shards, a second
writer) live in test_data_faults.py, test_encode_faults.py and test_train_faults.py.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest
import torch
from typer.testing import CliRunner

from nwt_data.cli.app import app as data_app
from nwt_data.media.ffmpeg import run_ffmpeg
from nwt_train.cli.app import app as train_app

pytestmark = pytest.mark.slow  # about a minute: kept out of the quick tier

ROWS: list[tuple[str, str, str, int]] = []


@dataclass(frozen=True)
class Case:
    kind: str
    program: str  # nwt-data or nwt-train
    make: Callable[[Path], list[str]]  # builds the input under tmp, returns the command's arguments
    expect: str  # text of the one line that names the problem
    code: int


def _workspace(tmp: Path, manifest_rows: str = "") -> Path:
    manifest = tmp / "m.csv"
    manifest.write_text("episode_id,url\n" + manifest_rows)
    ws = tmp / "ws"
    CliRunner().invoke(data_app, ["fetch", str(manifest), "-w", str(ws)])
    return ws


def _fetch_file(name: str, data: bytes | None = None, ffmpeg: list[str] | None = None):  # type: ignore[no-untyped-def]
    def make(tmp: Path) -> list[str]:
        path = tmp / name
        if ffmpeg is not None:
            run_ffmpeg(["-y", *ffmpeg, str(path)])
        else:
            path.write_bytes(data or b"")
        manifest = tmp / "m.csv"
        manifest.write_text(f"episode_id,url\nbad,{path}\n")
        return ["fetch", str(manifest), "-w", str(tmp / "ws"), "--retries", "0"]

    return make


def _manifest(text: str):  # type: ignore[no-untyped-def]
    def make(tmp: Path) -> list[str]:
        (tmp / "m.csv").write_bytes(text.encode() if isinstance(text, str) else text)
        return ["fetch", str(tmp / "m.csv"), "-w", str(tmp / "ws")]

    return make


def _config_value(table: str, line: str):  # type: ignore[no-untyped-def]
    def make(tmp: Path) -> list[str]:
        ws = _workspace(tmp)
        (ws / "nwt.toml").write_text(f"[{table}]\n{line}\n")
        return [table, "-w", str(ws)]

    return make


def _review_import(name: str, raw: bytes):  # type: ignore[no-untyped-def]
    def make(tmp: Path) -> list[str]:
        ws = _workspace(tmp)
        (tmp / name).write_bytes(raw)
        return ["review", "-w", str(ws), "--import", str(tmp / name)]

    return make


def _dataset(text: str, command: str = "dvae"):  # type: ignore[no-untyped-def]
    def make(tmp: Path) -> list[str]:
        data = tmp / "shards"
        data.mkdir()
        (data / "dataset.json").write_text(text)
        return [command, "--data", str(data), "--out", str(tmp / "run"), "--preset", "tiny"]

    return make


def _checkpoint(write: Callable[[Path], None]):  # type: ignore[no-untyped-def]
    def make(tmp: Path) -> list[str]:
        run = tmp / "run"
        run.mkdir()
        write(run / "latest.pt")
        (tmp / "shards").mkdir()
        (tmp / "shards" / "dataset.json").write_text(json.dumps({"shards": [], "samples": {}}))
        return ["eval-dvae", "--run", str(run), "--data", str(tmp / "shards")]

    return make


class _RunsCode:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("this ran while loading a checkpoint",))


def _generate(*extra: str):  # type: ignore[no-untyped-def]
    def make(tmp: Path) -> list[str]:
        return ["generate", "--prior", str(tmp / "p"), "--dvae", str(tmp / "d"), "--audio",
                str(tmp / "a.wav"), "--episode", "ep", "--out", str(tmp / "o.mp4"), *extra]  # fmt: skip

    return make


def _partly_encoded(tmp: Path) -> list[str]:
    codes = tmp / "codes"
    codes.mkdir()
    (codes / "codes.json").write_text(json.dumps({"complete": False, "shards": [], "samples": {}}))
    return ["prior", "--data", str(codes), "--out", str(tmp / "run"), "--preset", "tiny"]


def _lavfi(*args: str) -> list[str]:
    return ["-f", "lavfi", "-i", *args]


CASES = [
    # nwt-data: manifests and media
    Case("manifest not found", "nwt-data", lambda t: ["fetch", str(t / "nope.csv"), "-w", str(t / "ws")],
         "not found", 2),
    Case("manifest without a url column", "nwt-data", _manifest("episode_id,link\na,b\n"),
         "has no url column", 2),
    Case("path-traversal episode id", "nwt-data", _manifest("episode_id,url\n../x,http://127.0.0.1:9/x.mp4\n"),
         "invalid episode_id '../x'", 1),
    Case("duplicate episode id", "nwt-data",
         _manifest("episode_id,url\na,http://127.0.0.1:9/a.mp4\na,http://127.0.0.1:9/b.mp4\n"),
         "duplicate episode_id 'a'", 1),
    Case("zero-byte media file", "nwt-data", _fetch_file("empty.mp4", b""), "bad [invalid-media]", 1),
    Case("text file named .mp4", "nwt-data", _fetch_file("text.mp4", b"not a video\n" * 100),
         "bad [invalid-media]", 1),
    Case("audio-only file", "nwt-data", _fetch_file("audio.m4a", ffmpeg=_lavfi("sine=d=1", "-c:a", "aac")),
         "no video stream", 1),
    Case("garbage bytes named .mp4", "nwt-data", _fetch_file("junk.mp4", bytes(range(256)) * 64),
         "bad [invalid-media]", 1),
    # nwt-data: workspace and settings
    Case("missing workspace", "nwt-data", lambda t: ["status", "-w", str(t / "nowhere")],
         "no workspace at", 2),
    Case("wrongly typed nwt.toml value", "nwt-data", _config_value("mask", 'workers = "4"'),
         "must be a whole number", 2),
    Case("unknown nwt.toml key", "nwt-data", _config_value("segment", "trimm = 1"),
         "unknown key(s) trimm", 2),
    Case("broken nwt.toml", "nwt-data", _config_value("shard", "seed = = 1"), "cannot read", 2),
    # nwt-data: review import
    Case("review file not UTF-8", "nwt-data", _review_import("d.csv", "clip_id\nä\n".encode("latin-1")),
         "is not UTF-8 text", 2),
    Case("review JSONL line not an object", "nwt-data", _review_import("d.jsonl", b"[1, 2]\n"),
         "not an object", 1),
    Case("review CSV without clip_id", "nwt-data", _review_import("d.csv", b"id,review\nx,accepted\n"),
         "has no clip_id column", 2),
    Case("review reviewed_at not a time", "nwt-data",
         _review_import("d.csv", b"clip_id,review,reviewed_at\nx,accepted,soon\n"),
         "is not an ISO 8601 time", 1),
    # nwt-train: settings
    Case("unknown --set key", "nwt-train", lambda t: ["dvae", "--data", "d", "--out", "o", "--set", "nope=1"],
         "unknown config key 'nope'", 2),
    Case("--set without =", "nwt-train", lambda t: ["dvae", "--data", "d", "--out", "o", "--set", "steps"],
         "--set takes KEY=VALUE", 2),
    Case("invalid --config TOML", "nwt-train",
         lambda t: (t / "c.toml").write_text("a = = 1") and ["dvae", "--data", "d", "--out", "o", "--config",
                                                             str(t / "c.toml")], "is not valid TOML", 2),
    Case("unknown device", "nwt-train", _generate("--device", "tpu9"), "unknown device 'tpu9'", 2),
    Case("generate --out not .mp4", "nwt-train", lambda t: [*_generate()(t)[:-1], str(t / "o.avi")],
         "--out must name an .mp4 file", 2),
    Case("bad --style-set", "nwt-train", _generate("--style-set", "x"), "--style-set takes VARIATE=VALUE", 2),
    # nwt-train: data and runs
    Case("no dataset.json", "nwt-train", lambda t: ["dvae", "--data", str(t), "--out", str(t / "r"),
                                                    "--preset", "tiny"], "no dataset.json", 2),
    Case("dataset.json not JSON", "nwt-train", _dataset("{oops"), "is not valid JSON", 2),
    Case("dataset.json of the wrong shape", "nwt-train", _dataset("[1, 2]"),
         "holds a list, not an object", 2),
    Case("shard name outside the folder", "nwt-train",
         _dataset('{"shards": [{"name": "../../etc/x.tar", "split": "train"}]}'), "outside its folder", 2),
    Case("partly encoded Memcodes", "nwt-train", _partly_encoded, "is only partly encoded", 2),
    Case("empty checkpoint", "nwt-train", _checkpoint(lambda p: p.write_bytes(b"")), "latest.pt is not", 2),
    Case("garbage checkpoint", "nwt-train", _checkpoint(lambda p: p.write_bytes(b"\x80\x04garbage" * 9)),
         "latest.pt is not", 2),
    Case("checkpoint holding a list", "nwt-train", _checkpoint(lambda p: torch.save([1, 2], p)),
         "is not an nwt checkpoint", 2),
    Case("malicious checkpoint", "nwt-train",
         _checkpoint(lambda p: p.write_bytes(pickle.dumps({"step": _RunsCode(), "config": {}}))),
         "not a safe nwt checkpoint", 2),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_bad_input_is_one_line_that_says_what_to_do(case: Case, tmp_path: Path, monkeypatch, capfd) -> None:
    monkeypatch.delenv("NWT_DEBUG", raising=False)
    monkeypatch.delenv("NWT_WORKSPACE", raising=False)
    args = case.make(tmp_path)
    app = data_app if case.program == "nwt-data" else train_app
    result = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == case.code, result.output
    assert "Traceback" not in result.output
    lines = [line.strip() for line in result.output.splitlines() if case.expect in line]
    assert len(lines) == 1, result.output
    assert "this ran while loading" not in capfd.readouterr().out
    ROWS.append((case.kind, f"{case.program} {args[0]}", lines[0], result.exit_code))


def test_the_suite_covers_at_least_25_kinds() -> None:
    assert len({c.kind for c in CASES}) >= 25


def teardown_module() -> None:
    if ROWS:
        out = io.StringIO()
        for kind, command, message, code in ROWS:
            out.write(f"| {kind} | `{command}` | {message[:160]} | {code} |\n")
        print("\n" + out.getvalue())


# --- unusual sources through fetch, segment and mask -----------------------------------------------
def _source(path: Path, video: str, *, audio: tuple[int, ...] = (440,), seconds: float = 3.5,
            pix: str = "yuv420p") -> Path:  # fmt: skip
    """An H.264 MP4 from a lavfi video source with one AAC stream per frequency in `audio` (sines)."""
    args = ["-y", "-f", "lavfi", "-i", f"{video}:rate=30:duration={seconds}"]
    for hz in audio:
        args += ["-f", "lavfi", "-i", f"sine=f={hz}:r=44100:d={seconds}"]
    args += ["-map", "0:v", *(a for i in range(len(audio)) for a in ("-map", f"{i + 1}:a"))]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix, "-g", "30", "-c:a", "aac"]
    run_ffmpeg([*args, str(path)])
    return path


def _peak_hz(pcm: Any, rate: int = 24_000) -> float:
    import numpy as np

    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(pcm))


def test_4k_1x1_rotated_and_two_audio_stream_sources(tmp_path: Path, monkeypatch) -> None:
    """4K frames and a second audio stream are processed (the crop scaled to the source, the first
    audio stream used); a 1x1 source and one stored rotated are refused with one line each that says
    what to do, exit 1, while the other episodes are segmented, prepared and sharded."""
    import numpy as np

    from nwt_data.catalog import Catalog
    from nwt_data.media.probe import probe

    monkeypatch.delenv("NWT_DEBUG", raising=False)
    media = tmp_path / "media"
    media.mkdir()
    good = _source(media / "good.mp4", "testsrc2=size=320x180")
    sources = {
        "good": good,
        "uhd": _source(media / "uhd.mp4", "testsrc2=size=3840x2160", seconds=0.5),
        "tiny": _source(media / "tiny.mp4", "color=c=gray:size=1x1", pix="yuv444p"),  # 4:2:0 needs even sides
        "two-audio": _source(media / "two.mp4", "testsrc2=size=320x180", audio=(440, 1500)),
        "rotated": media / "rotated.mp4",
    }
    # A phone's portrait video: landscape frames and a display matrix that turns them 90 degrees.
    run_ffmpeg(["-y", "-display_rotation", "90", "-i", str(good), "-c", "copy", str(sources["rotated"])])
    manifest = tmp_path / "m.csv"
    manifest.write_text("episode_id,url\n" + "".join(f"{k},{v}\n" for k, v in sources.items()))
    ws = tmp_path / "ws"
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(data_app, [*args, "-w", str(ws)], env={"COLUMNS": "250"})
        assert "Traceback" not in result.output and not isinstance(result.exception, (TypeError, ValueError))
        return result

    assert run("fetch", str(manifest), "-j", "2").exit_code == 0
    catalog = Catalog(ws / "catalog.sqlite")
    facts = {e["episode_id"]: json.loads(e["probe"]) for e in catalog.episodes()}
    assert (facts["uhd"]["width"], facts["uhd"]["height"]) == (3840, 2160)
    assert (facts["tiny"]["width"], facts["tiny"]["height"]) == (1, 1)
    assert facts["rotated"]["rotation"] == 90 and facts["good"]["rotation"] == 0
    # Short clips, so that the half-second 4K source makes one (0.4 s kept); no text detector.
    config = (ws / "nwt.toml").read_text().replace("min_duration = 2.0", "min_duration = 0.2")
    config = config.replace("trim = 0.25", "trim = 0.05").replace(
        "[mask]\n", '[mask]\noverlay_rule = "paper"\n'
    )
    (ws / "nwt.toml").write_text(config)

    segment = run("segment", "-j", "2")
    assert segment.exit_code == 1, segment.output
    expected = {
        "tiny": ("the video is only 1x1 pixels", "fetch a larger version of the video"),
        "rotated": ("stored rotated by 90 degrees", "re-encode it upright"),
    }
    for episode, (problem, fix) in expected.items():
        lines = [line.strip() for line in segment.output.splitlines() if f"✗ {episode} " in line]
        assert len(lines) == 1 and problem in lines[0] and fix in lines[0], segment.output
        ROWS.append((f"{'1x1 frames' if episode == 'tiny' else 'rotated (display matrix 90°)'}",
                     "nwt-data segment", lines[0], segment.exit_code))  # fmt: skip
    status = {e["episode_id"]: e["segment_status"] for e in catalog.episodes()}
    assert status == {
        "good": "done",
        "uhd": "done",
        "two-audio": "done",
        "tiny": "failed",
        "rotated": "failed",
    }

    mask = run("mask", "-j", "2", "--include-unreviewed")
    assert mask.exit_code == 0, mask.output
    clips = {c["episode_id"]: c for c in catalog.clips()}
    assert set(clips) == {"good", "uhd", "two-audio"}
    assert all(c["status"] == "ok" and c["mask_status"] == "done" for c in clips.values()), clips

    # 4K: the paper's box scaled threefold, prepared to 224x256 at 30 FPS like any other clip.
    uhd = clips["uhd"]
    assert (uhd["crop_x"], uhd["crop_y"], uhd["crop_w"], uhd["crop_h"]) == (1521, 24, 1869, 2136)
    prepared = probe(ws / uhd["prepared_path"] / "video.mp4")
    assert (prepared.width, prepared.height, uhd["out_frames"]) == (224, 256, 12)
    done = "processed: crop 1869x2136 (the paper's box x3), prepared 224x256, 12 frames"
    ROWS.append(("4K frames (3840x2160)", "nwt-data segment, mask", done, 0))

    # Two audio streams: the clip keeps the first (440 Hz), never the second (1500 Hz).
    two = clips["two-audio"]
    with av.open(str(ws / two["path"])) as clip_file:
        assert len(clip_file.streams.audio) == 1
    pcm = np.load(ws / two["prepared_path"] / "audio.npy")
    assert abs(_peak_hz(pcm) - 440) < 5, _peak_hz(pcm)
    ROWS.append(("two audio streams", "nwt-data segment, mask",
                 "processed: the first audio stream kept (440 Hz peak), the second dropped", 0))  # fmt: skip

    # And they pack like any other clip.
    assert run("shard").exit_code == 0
    assert sum(json.loads((ws / "shards" / "dataset.json").read_text())["samples"].values()) == 3

    # The rotated source's hint works: ffmpeg's re-encode turns the frames upright, and that file segments.
    upright = media / "upright.mp4"
    run_ffmpeg(["-y", "-i", str(sources["rotated"]), "-c:a", "copy", str(upright)])
    info = probe(upright, rotation=True)
    assert (info.width, info.height, info.rotation) == (180, 320, 0)
