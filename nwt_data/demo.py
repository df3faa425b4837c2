"""The built-in demo input: synthetic talking-face episodes (no third-party footage), an HTTP server.

`nwt-data demo` serves one generated episode over HTTP on 127.0.0.1 (so yt-dlp downloads it for
real) and lists the others as local files, then runs the pipeline on them.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Iterable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from nwt_data.synthetic import AUDIO_RATE, FaceEpisode, demo_episodes, render_episode, speech, write_wav

# A 1280x720 stand-in for a talk-show desk shot, used by the tests and benchmarks as an lavfi source:
# a dark studio, a grey "subject" inside the paper's crop box that brightens while a tone beeps, and a
# side overlay at the crop's left edge, a white frame around dark content that `nwt-data mask` paints.
# Its content changes every 4 seconds (another story's picture), as a show's side overlays do: one
# that looked the same in every clip of the episode would be taken for the set and spared.
STUDIO_BACKGROUND = "color=c=0x303030"
STUDIO_FILTER = ",".join(
    [
        "drawbox=x=700:y=200:w=240:h=400:color=0x808080:t=fill",
        "drawbox=x=700:y=200:w=240:h=400:color=0xA8A8A8:t=fill:enable='lt(mod(t,1),0.2)'",
        "drawbox=x=507:y=150:w=110:h=300:color=white:t=fill",
        "drawbox=x=527:y=200:w=70:h=200:color=black:t=fill",
        "drawbox=x=527:y=200:w=70:h=200:color=0x282828:t=fill:enable='between(mod(t,12),4,8)'",
        "drawbox=x=527:y=200:w=70:h=200:color=0x505050:t=fill:enable='gte(mod(t,12),8)'",
    ]
)

# Synthetic talking faces (nwt_data.synthetic): a cartoon face inside the paper's crop box whose mouth
# follows real speech; four episodes with their own colours and speech, and a stretch of speech that
# no episode contains, for generating video from unseen speech.
DEMO_EPISODES = demo_episodes(count=4, seconds=20.0)
HELD_OUT_SPEECH = FaceEpisode("held-out-speech", seconds=10.0, seed=999)
_DEMO_ID = re.compile(r"face-\d+")


def foreign_episodes(episode_ids: Iterable[str]) -> list[str]:
    """Episodes the demo did not make: a workspace holding any is a real dataset, not the demo's."""
    return sorted(e for e in episode_ids if not _DEMO_ID.fullmatch(e))


def make_episode(path: Path, episode: FaceEpisode, *, engine: str = "auto") -> Path:
    return render_episode(path, episode, engine=engine)


def make_held_out_speech(path: Path, *, engine: str = "auto") -> Path:
    """A WAV of speech from a seed no episode uses: the input of `nwt-train generate` in the demo."""
    if not path.exists():
        tmp = path.with_name(f".{path.name}.partial.wav")
        write_wav(tmp, speech(HELD_OUT_SPEECH.seconds, HELD_OUT_SPEECH.seed, engine=engine), AUDIO_RATE)
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


def write_demo_manifest(
    media_dir: Path, base_url: str, episodes: tuple[FaceEpisode, ...] = DEMO_EPISODES
) -> Path:
    """Episode 1 over HTTP (yt-dlp), the others as local paths; returns the manifest path."""
    first, *others = episodes
    lines = ["episode_id,url,title", f"{first.name},{base_url}/{first.name}.mp4,synthetic face over HTTP"]
    lines += [f"{e.name},{e.name}.mp4,synthetic face read from disk" for e in others]
    manifest = media_dir / "demo.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
