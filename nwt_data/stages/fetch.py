"""`nwt-data fetch`: download (yt-dlp) or copy the episodes of a manifest into the workspace.

Each episode lands as `episodes/ID.EXT` only after it was fully downloaded, probed and hashed; the
catalog then records its size, sha256, downloader version and probe facts. yt-dlp works in
`tmp/fetch/ID/` so an interrupted download continues from its `.part` file on the next run.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from nwt_data.catalog import Catalog, EpisodeSource
from nwt_data.config import FetchConfig
from nwt_data.contract import sha256_of
from nwt_data.errors import FetchError, ManifestError, MediaError
from nwt_data.manifest import Manifest, read_manifest
from nwt_data.media.ffmpeg import ffmpeg_exe
from nwt_data.media.probe import probe
from nwt_data.runner import Outcome, run_parallel
from nwt_data.stages import StageReport
from nwt_data.workspace import Workspace, fsync_folder, fsync_path


@dataclass(frozen=True)
class Fetched:
    path: str
    size: int
    sha256: str
    downloader: str
    probe: dict[str, Any]
    attempts: int


# --- failure classification (pure) --------------------------------------------------------------
_PATTERNS: list[tuple[str, tuple[str, ...]]] = [
    ("throttled", ("http error 429", "too many requests", "rate-limit", "rate limit", "rate-limited")),
    ("gone", (
        "http error 404", "http error 410", "http error 403", "private video", "video unavailable",
        "has been removed", "does not exist", "is not available", "account associated",
        "members-only", "sign in to confirm", "copyright",
    )),
    ("network", (
        "connection refused", "timed out", "timeout", "temporary failure in name resolution",
        "name or service not known", "network is unreachable", "connection reset", "remotedisconnected",
        "incompleteread", "getaddrinfo", "failed to resolve", "http error 500", "http error 502",
        "http error 503", "http error 504", "connection aborted", "unable to connect",
    )),
    ("unsupported", ("unsupported url", "no video formats", "is a playlist")),
]  # fmt: skip

_HINTS = {
    "gone": "the video is removed, private or the URL is wrong; fix or drop it from the manifest",
    "throttled": "the site is rate-limiting; wait, then run again with --retry-failed",
    "network": "check the network or the host, then run again with --retry-failed",
    "unsupported": "the URL holds no video yt-dlp can read; check it in a browser",
    "invalid-media": "the downloaded file is not usable video; check the URL",
    "other": "see the message; run again with --retry-failed once fixed",
}


def classify(message: str) -> str:
    """Map a yt-dlp/network error message to a failure kind (see FetchError.KINDS)."""
    text = message.lower()
    for kind, needles in _PATTERNS:
        if any(needle in text for needle in needles):
            return kind
    return "other"


def _fetch_error(message: str, kind: str | None = None) -> FetchError:
    message = " ".join(message.replace("ERROR: ", "").split())
    kind = kind or classify(message)
    return FetchError(message[:300], kind=kind, hint=_HINTS[kind])


# --- per-episode work ------------------------------------------------------------------------
def _ytdlp_version() -> str:
    from yt_dlp.version import __version__

    return f"yt-dlp {__version__}"


class _YdlLogger:
    """Keep yt-dlp quiet; its errors reach us through DownloadError."""

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        pass


def ytdlp_options(work_dir: Path, config: FetchConfig) -> dict[str, Any]:
    h = config.max_height
    return {
        # One muxed file: H.264/AAC MP4 at <=720p where offered, else the best muxed MP4, else any.
        "format": (
            f"b[vcodec^=avc1][acodec^=mp4a][height<={h}]/b[ext=mp4][height<={h}]/b[height<={h}]/b[ext=mp4]/b"
        ),
        "outtmpl": {"default": str(work_dir / "source.%(ext)s")},
        "ffmpeg_location": ffmpeg_exe(),
        "noplaylist": True,
        "continuedl": True,
        "retries": 2,
        "fragment_retries": 3,
        "socket_timeout": config.socket_timeout,
        "cachedir": False,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _YdlLogger(),
    }


def _download(url: str, work_dir: Path, config: FetchConfig) -> Path:
    import yt_dlp

    try:
        with yt_dlp.YoutubeDL(ytdlp_options(work_dir, config)) as ydl:
            info = ydl.extract_info(url, download=False)
            if info is None:
                raise _fetch_error("yt-dlp returned no information", "unsupported")
            if info.get("_type") in ("playlist", "multi_video"):
                raise _fetch_error(
                    "the URL is a playlist; list its videos one per manifest line", "unsupported"
                )
            info = ydl.process_ie_result(info, download=True)
    except yt_dlp.utils.DownloadError as err:
        raise _fetch_error(str(err)) from err
    except (yt_dlp.utils.YoutubeDLError, OSError) as err:
        raise _fetch_error(f"{type(err).__name__}: {err}") from err
    downloads = info.get("requested_downloads") or []
    path = Path(downloads[0]["filepath"]) if downloads and downloads[0].get("filepath") else None
    if path is None or not path.is_file():
        candidates = [p for p in work_dir.glob("source.*") if not p.name.endswith((".part", ".ytdl"))]
        if not candidates:
            raise _fetch_error("yt-dlp finished without writing a file")
        path = candidates[0]
    return path


def _copy_local(source: Path, work_dir: Path) -> Path:
    target = work_dir / f"source{source.suffix.lower() or '.mp4'}"
    partial = target.with_name(target.name + ".partial")
    try:
        shutil.copyfile(source, partial)
    except OSError as err:
        raise _fetch_error(f"cannot copy {source}: {err.strerror or err}", "other") from err
    os.replace(partial, target)
    return target


def fetch_episode(ws: Workspace, source: EpisodeSource, config: FetchConfig) -> Fetched:
    """Bring one episode into the workspace (download or copy), probe it, hash it, rename it in."""
    existing = _finished_file(ws, source.episode_id)
    attempts = 0
    if existing is None:
        work_dir = ws.tmp_dir / "fetch" / source.episode_id
        work_dir.mkdir(parents=True, exist_ok=True)
        while True:
            attempts += 1
            try:
                if source.source_kind == "file":
                    downloaded = _copy_local(Path(source.url), work_dir)
                else:
                    downloaded = _download(source.url, work_dir, config)
                break
            except FetchError as err:
                if not err.retryable or attempts > config.retries:
                    with contextlib.suppress(OSError):
                        work_dir.rmdir()  # only when empty: a partial download stays to be resumed
                    raise
                time.sleep(config.backoff_seconds * 2 ** (attempts - 1) * random.uniform(0.5, 1.5))
        try:
            facts = probe(downloaded, rotation=True).facts()
        except MediaError as err:
            shutil.rmtree(work_dir, ignore_errors=True)  # a bad file must not be resumed next time
            raise _fetch_error(f"downloaded file: {err}", "invalid-media") from err
        final = ws.episodes_dir / f"{source.episode_id}{downloaded.suffix.lower()}"
        fsync_path(downloaded)
        os.replace(downloaded, final)
        fsync_folder(ws.episodes_dir)
    else:
        # A previous run renamed the file in but was killed before it reached the catalog.
        final = existing
        facts = probe(final, rotation=True).facts()
    shutil.rmtree(ws.tmp_dir / "fetch" / source.episode_id, ignore_errors=True)
    downloader = "copy" if source.source_kind == "file" else _ytdlp_version()
    return Fetched(ws.relative(final), final.stat().st_size, sha256_of(final), downloader, facts, attempts)


def _finished_file(ws: Workspace, episode_id: str) -> Path | None:
    matches = [p for p in ws.episodes_dir.glob(f"{episode_id}.*") if p.stem == episode_id]
    return matches[0] if matches else None


# --- the stage ---------------------------------------------------------------------------------
def register(
    catalog: Catalog, manifest: Manifest, config: FetchConfig, report: StageReport
) -> list[tuple[str, EpisodeSource]]:
    """Add the manifest's new episodes to the catalog; return those this run should fetch."""
    for bad in manifest.errors:
        report.failures.append((f"line {bad.line}: {bad.episode_id}", bad.error.kind, bad.error.one_line()))
    report.add("manifest errors", len(manifest.errors))
    todo: list[tuple[str, EpisodeSource]] = []
    for line, source in manifest.entries:
        row = catalog.episode(source.episode_id)
        if row is None:
            catalog.add_episode(source)
        elif row["url"] != source.url:
            err = ManifestError(
                f"episode_id {source.episode_id!r} is already in the workspace for {row['url']}",
                hint="give this URL a new episode_id",
            )
            report.failures.append((f"line {line}: {source.episode_id}", err.kind, err.one_line()))
            continue
        status = row["fetch_status"] if row is not None else "pending"
        if status == "done":
            report.add("already fetched")
        elif status == "failed" and not config.retry_failed:
            report.add("failed earlier")
            message = f"{row['fetch_error']} (run with --retry-failed)"
            report.failures.append((source.episode_id, row["fetch_error_kind"], message))
        else:
            todo.append((source.episode_id, source))
    return todo


def run_fetch(ws: Workspace, catalog: Catalog, manifest_path: Path, config: FetchConfig,
              console: Console) -> StageReport:  # fmt: skip
    report = StageReport("fetch")
    manifest = read_manifest(manifest_path)

    def on_done(outcome: Outcome[Fetched]) -> None:
        if outcome.ok and outcome.value is not None:
            f = outcome.value
            catalog.mark_fetched(outcome.key, path=f.path, size=f.size, sha256=f.sha256,
                                 downloader=f.downloader, probe=f.probe, attempts=f.attempts)  # fmt: skip
            report.add("fetched")
        else:
            err = outcome.error
            assert err is not None
            kind = err.kind if isinstance(err, FetchError) else "other"
            catalog.mark_fetch_failed(outcome.key, kind=kind, error=err.one_line(), attempts=1)
            report.add(f"failed ({kind})")
            report.failures.append((outcome.key, kind, err.one_line()))

    with ws.stage_lock("fetch"):
        todo = register(catalog, manifest, config, report)
        run_parallel(
            todo,
            lambda source: fetch_episode(ws, source, config),
            on_done,
            workers=config.workers,
            label="fetch",
            console=console,
        )
    return report
