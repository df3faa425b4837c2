"""Every ffmpeg subprocess call of nwt_data lives here: argv builders plus one runner.

Arguments are always argv lists, never shell strings. The binary comes from imageio-ffmpeg unless
`NWT_FFMPEG` points at another one.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nwt_data.errors import FfmpegError, ItemTimeout

# The limit of one ffmpeg run when the caller names none (the stages pass `[run] timeout`).
DEFAULT_TIMEOUT = 3600.0


@functools.cache
def ffmpeg_exe() -> str:
    override = os.environ.get("NWT_FFMPEG")
    if override:
        return override
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


_PRCTL: Any = None


@functools.cache
def _prctl() -> Any:
    return ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # A `kill -9` of nwt-data must not leave ffmpeg children writing into the workspace. prctl was
    # looked up in the parent: loading a library here, after fork in a threaded process, can hang.
    _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_ffmpeg(args: Sequence[str], *, timeout: float | None = None) -> str:
    """Run ffmpeg with `args` (everything after the binary); return stderr, raise FfmpegError.

    A run past `timeout` seconds (default DEFAULT_TIMEOUT) is killed: ItemTimeout, kind `timeout`.
    """
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    global _PRCTL
    if sys.platform == "linux" and _PRCTL is None:
        _PRCTL = _prctl()
    argv = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *args]
    try:
        proc = subprocess.run(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise ItemTimeout(
            f"ffmpeg ran past its {timeout:g} s limit and was stopped",
            hint="raise `timeout` in the [run] table of nwt.toml if the input is that large",
        ) from err
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {proc.returncode}"
        raise FfmpegError(f"ffmpeg failed: {last}")
    return stderr


def run_ffmpeg_fed(args: Sequence[str], chunks: Iterable[bytes], *, timeout: float | None = None) -> str:
    """Run ffmpeg with `args`, writing each of `chunks` to its stdin as it comes (`pipe:0` input), so a
    long stream of raw frames never sits whole in memory or on disk; return stderr, raise FfmpegError.

    The limit covers the whole run, chunk production included (default DEFAULT_TIMEOUT): past it
    ffmpeg is killed and ItemTimeout raised.
    """
    import tempfile
    import time

    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    global _PRCTL
    if sys.platform == "linux" and _PRCTL is None:
        _PRCTL = _prctl()
    deadline = time.monotonic() + timeout
    argv = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *args]
    # stderr goes to a file: a pipe nobody reads could fill up and stall ffmpeg while we feed it.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)  # fmt: skip
        assert proc.stdin is not None
        try:
            try:
                for chunk in chunks:
                    if time.monotonic() > deadline:
                        raise subprocess.TimeoutExpired(argv, timeout)
                    proc.stdin.write(chunk)
            except BrokenPipeError:
                pass  # ffmpeg stopped reading: its exit code and stderr say why
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as err:
            proc.kill()
            proc.wait()
            raise ItemTimeout(
                f"ffmpeg ran past its {timeout:g} s limit and was stopped",
                hint="pass a shorter input or raise the limit",
            ) from err
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        log.seek(0)
        stderr = log.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {proc.returncode}"
        raise FfmpegError(f"ffmpeg failed: {last}")
    return stderr


def segment_args(source: Path, pattern: Path, *, segment_time: float, has_audio: bool) -> list[str]:
    """Appendix D step 2: split at keyframes in stream copy, each segment's timestamps reset.

    Only the first video and first audio stream are kept (subtitle or data streams break the MP4
    muxer); bitexact flags keep the output byte-identical between runs.
    """
    maps = ["-map", "0:v:0"] + (["-map", "0:a:0"] if has_audio else [])
    return [
        "-y",
        "-i", str(source),
        *maps,
        "-c", "copy",
        "-map_metadata", "-1",
        "-fflags", "+bitexact",
        "-f", "segment",
        "-segment_time", f"{segment_time:g}",
        "-reset_timestamps", "1",
        "-segment_format_options", "fflags=+bitexact",
        str(pattern),
    ]  # fmt: skip


def copy_to_null_args(source: Path) -> list[str]:
    """The benchmark baseline: demux and remux every packet of `source` to nowhere."""
    return ["-i", str(source), "-map", "0", "-c", "copy", "-f", "null", "-"]


def lavfi_demo_args(
    out: Path,
    *,
    seconds: float,
    width: int,
    height: int,
    fps: str,
    gop: int,
    with_audio: bool = True,
    extra_video_filter: str = "",
    source: str = "testsrc2",
) -> list[str]:
    """A synthetic talking-head stand-in: test pattern video, a tone that beeps once a second.

    Used by `nwt-data demo`, the tests and the benchmarks; everything is generated, nothing is
    downloaded.
    """
    # `source` is a lavfi video source with its own options, e.g. "testsrc2" or "color=c=0x303030".
    sep = ":" if "=" in source else "="
    video = f"{source}{sep}size={width}x{height}:rate={fps}:duration={seconds}"
    if extra_video_filter:
        video += f",{extra_video_filter}"
    args = ["-y", "-f", "lavfi", "-i", video]
    if with_audio:
        tone = f"aevalsrc='0.4*sin(2*PI*440*t)*lt(mod(t,1),0.2)':s=44100:d={seconds}"
        args += ["-f", "lavfi", "-i", tone]
    args += [
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
    ]  # fmt: skip
    if with_audio:
        args += ["-c:a", "aac", "-b:a", "96k", "-shortest"]
    args += ["-movflags", "+faststart", str(out)]
    return args


def mux_frames_args(
    raw_video: Path | str, *, width: int, height: int, fps: int, audio: Path, out: Path, seconds: float
) -> list[str]:
    """Raw RGB24 frames (a file, or "pipe:0" for `run_ffmpeg_fed`) + the first audio stream of `audio`
    -> an H.264/AAC MP4 `seconds` long.

    `nwt-train generate` writes its frames this way; the audio is the user's own file, re-encoded
    to AAC so that any input format fits the MP4.
    """
    return [
        "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps),
        "-i", str(raw_video), "-i", str(audio), "-map", "0:v:0", "-map", "1:a:0",
        "-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", "-t", f"{seconds:.6f}",
        "-movflags", "+faststart", "-f", "mp4", str(out),
    ]  # fmt: skip


EXTERNAL_PLAYERS = ("mpv", "ffplay", "vlc")


def external_player() -> str | None:
    """The first video player found on PATH, if any."""
    import shutil

    return next((name for name in EXTERNAL_PLAYERS if shutil.which(name)), None)


def open_in_player(path: Path, start: float, end: float) -> str:
    """Play `path` from `start` to `end` (seconds in the file) in an external player; return its name."""
    player = external_player()
    if player is None:
        raise FfmpegError("no external player found", hint=f"install one of {', '.join(EXTERNAL_PLAYERS)}")
    length = f"{end - start:.3f}"
    argv = {
        "mpv": ["mpv", f"--start={start:.3f}", f"--length={length}", "--keep-open=no", str(path)],
        "ffplay": ["ffplay", "-autoexit", "-ss", f"{start:.3f}", "-t", length, str(path)],
        "vlc": ["vlc", "--play-and-exit", f"--start-time={start:.3f}", f"--stop-time={end:.3f}", str(path)],
    }[player]
    subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)  # fmt: skip
    return player


def mux_audio_args(video: Path, audio: Path, out: Path) -> list[str]:
    """A video-only file (stream copied) + a WAV (encoded to AAC) -> one MP4, cut to the shorter."""
    return [
        "-y", "-i", str(video), "-i", str(audio), "-map", "0:v:0", "-map", "1:a:0",
        "-c:v", "copy", "-c:a", "aac", "-b:a", "96k", "-shortest",
        "-movflags", "+faststart", "-f", "mp4", str(out),
    ]  # fmt: skip


def run_espeak(text: str, wav: Path, *, voice: str, speed: int, pitch: int, timeout: float = 60) -> None:
    """Speak `text` into `wav` with espeak-ng (the synthetic talking face's speech)."""
    argv = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise FfmpegError(
            f"espeak-ng failed: {err}", hint="install espeak-ng or use --speech babble"
        ) from None
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise FfmpegError(f"espeak-ng exited {proc.returncode}: {message[0]}", hint="use babble speech")
