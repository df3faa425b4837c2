"""The built-in demo input: generated episodes (no third-party footage) and a local HTTP server.

`nwt-data demo` serves one generated episode over HTTP on 127.0.0.1 (so yt-dlp downloads it for
real) and lists another as a local file, then runs the pipeline on them.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from nwt_data.media.ffmpeg import lavfi_demo_args, run_ffmpeg


@dataclass(frozen=True)
class DemoEpisode:
    name: str
    seconds: float
    fps: str
    gop: int
    width: int = 1280
    height: int = 720


DEMO_EPISODES = (
    DemoEpisode("demo-30fps", seconds=14.0, fps="30", gop=60),
    DemoEpisode("demo-ntsc", seconds=11.0, fps="30000/1001", gop=75),
)


def make_episode(path: Path, episode: DemoEpisode) -> Path:
    if not path.exists():
        tmp = path.with_name(f".{path.name}.partial.mp4")
        run_ffmpeg(lavfi_demo_args(tmp, seconds=episode.seconds, width=episode.width,
                                   height=episode.height, fps=episode.fps, gop=episode.gop))  # fmt: skip
        tmp.replace(path)
    return path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients (yt-dlp's probe request) may hang up early; that is not an error here


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve `folder` over HTTP on 127.0.0.1 on a free port; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def write_demo_manifest(media_dir: Path, base_url: str) -> Path:
    """Episode 1 over HTTP (yt-dlp), episode 2 as a local path; returns the manifest path."""
    first, second = DEMO_EPISODES
    manifest = media_dir / "demo.csv"
    manifest.write_text(
        "episode_id,url,title\n"
        f"{first.name},{base_url}/{first.name}.mp4,generated 30 fps episode served over HTTP\n"
        f"{second.name},{second.name}.mp4,generated 29.97 fps episode read from disk\n"
    )
    return manifest
