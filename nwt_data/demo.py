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

# A 1280x720 stand-in for a talk-show desk shot: a dark studio, a grey "subject" inside the paper's
# crop box that brightens while the tone beeps (under the overlay threshold), and a side overlay at
# the crop's left edge, a white frame around dark content that `nwt-data mask` paints white.
STUDIO_BACKGROUND = "color=c=0x303030"
STUDIO_FILTER = ",".join(
    [
        "drawbox=x=700:y=200:w=240:h=400:color=0x808080:t=fill",
        "drawbox=x=700:y=200:w=240:h=400:color=0xA8A8A8:t=fill:enable='lt(mod(t,1),0.2)'",
        "drawbox=x=507:y=150:w=110:h=300:color=white:t=fill",
        "drawbox=x=527:y=200:w=70:h=200:color=black:t=fill",
    ]
)


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
        args = lavfi_demo_args(
            tmp,
            seconds=episode.seconds,
            width=episode.width,
            height=episode.height,
            fps=episode.fps,
            gop=episode.gop,
            source=STUDIO_BACKGROUND,
            extra_video_filter=STUDIO_FILTER,
        )
        run_ffmpeg(args)
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
