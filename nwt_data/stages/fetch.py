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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console

from nwt_data.catalog import Catalog, EpisodeSource, Failure, Status
from nwt_data.config import FetchConfig, RunConfig, to_dict
from nwt_data.contract import sha256_of
from nwt_data.errors import FetchError, ManifestError, MediaError, NwtError
from nwt_data.manifest import Manifest, read_manifest
from nwt_data.media.ffmpeg import ffmpeg_exe
from nwt_data.media.probe import probe, probe_whole
from nwt_data.runner import Resources, Selection, Stage, run_stage
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
    # A server that stops sending: the socket read timed out (yt-dlp has retried it already).
    ("timeout", ("read timed out", "read operation timed out", "ran past its", "stalled")),
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
    "timeout": "the server stopped sending; run again with --retry-failed later (the download resumes)",
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


class _Deadline:
    """A yt-dlp progress hook that stops a download running past its time limit (a trickling server)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + seconds

    def __call__(self, status: dict[str, Any]) -> None:
        if self.end is not None and time.monotonic() > self.end:
            raise _fetch_error(f"the download ran past its {self.seconds:g} s limit", "timeout")


def ytdlp_options(work_dir: Path, config: FetchConfig, timeout: float | None = None) -> dict[str, Any]:
    h = config.max_height
    return {
        "progress_hooks": [_Deadline(timeout)],
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


def _download(url: str, work_dir: Path, config: FetchConfig, timeout: float | None = None) -> Path:
    import yt_dlp

    try:
        with yt_dlp.YoutubeDL(ytdlp_options(work_dir, config, timeout)) as ydl:
            info = ydl.extract_info(url, download=False)
            if info is None:
                raise _fetch_error("yt-dlp returned no information", "unsupported")
            if info.get("_type") in ("playlist", "multi_video"):
                raise _fetch_error(
                    "the URL is a playlist; list its videos one per manifest line", "unsupported"
                )
            info = ydl.process_ie_result(info, download=True)
    except FetchError:
        raise
    except yt_dlp.utils.DownloadError as err:
        cause = err.exc_info[1] if err.exc_info else None
        if isinstance(cause, FetchError):  # our deadline, raised inside yt-dlp's progress hook
            raise cause from err
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


def fetch_episode(ws: Workspace, source: EpisodeSource, config: FetchConfig, *,
                  timeout: float | None = None) -> Fetched:  # fmt: skip
    """Bring one episode into the workspace (download or copy), probe it, hash it, rename it in.

    A failure carries `attempts`, the tries made, so the catalog records them.
    """
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
                    downloaded = _download(source.url, work_dir, config, timeout)
                break
            except FetchError as err:
                err.attempts = attempts  # type: ignore[attr-defined]
                if not err.retryable or attempts > config.retries:
                    with contextlib.suppress(OSError):
                        work_dir.rmdir()  # only when empty: a partial download stays to be resumed
                    raise
                time.sleep(config.backoff_seconds * 2 ** (attempts - 1) * random.uniform(0.5, 1.5))
        try:
            facts = probe_whole(downloaded).facts()  # also refuses a download cut short
        except MediaError as err:
            shutil.rmtree(work_dir, ignore_errors=True)  # a bad file must not be resumed next time
            bad = _fetch_error(f"downloaded file: {err}", "invalid-media")
            bad.attempts = attempts  # type: ignore[attr-defined]
            raise bad from err
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
) -> Selection[EpisodeSource]:
    """Add the manifest's new episodes to the catalog; return those this run should fetch."""
    for bad in manifest.errors:
        report.failures.append((f"line {bad.line}: {bad.episode_id}", bad.error.kind, bad.error.one_line()))
    report.add("manifest errors", len(manifest.errors))
    todo: list[tuple[str, EpisodeSource]] = []
    earlier: list[Failure] = []
    for line, source in manifest.entries:
        row = catalog.episode(source.episode_id)
        if row is None:
            catalog.add_episode(source)
        elif row.url != source.url:
            err = ManifestError(
                f"episode_id {source.episode_id!r} is already in the workspace for {row.url}",
                hint="give this URL a new episode_id",
            )
            report.failures.append((f"line {line}: {source.episode_id}", err.kind, err.one_line()))
            continue
        status = row.fetch_status if row is not None else Status.PENDING
        if status == Status.DONE:
            report.add("already fetched")
        elif row is not None and status == Status.FAILED and not config.retry_failed:
            report.add("failed earlier")
            earlier.append(Failure(source.episode_id, row.fetch_error_kind or "other", row.fetch_error or ""))
        else:
            todo.append((source.episode_id, source))
    return Selection(todo, None, earlier)


@dataclass(frozen=True)
class FetchStage(Stage[EpisodeSource, Fetched]):
    ws: Workspace
    config: FetchConfig
    manifest: Manifest = field(compare=False)
    manifest_path: str = ""
    timeout: float | None = None  # seconds one download may take

    name = "fetch"
    resources = Resources(cpus=0.5, memory_mb=512)  # mostly waiting on the network

    def config_dict(self) -> dict[str, Any]:
        return {**to_dict(self.config), "manifest": self.manifest_path}

    def select(self, catalog: Catalog, report: StageReport) -> Selection[EpisodeSource]:
        return register(catalog, self.manifest, self.config, report)

    def site(self, item: EpisodeSource) -> str | None:
        return (urlsplit(item.url).hostname or "").lower() if item.source_kind == "url" else None

    def work(self, item: EpisodeSource) -> Fetched:
        return fetch_episode(self.ws, item, self.config, timeout=self.timeout)

    def commit(self, catalog: Catalog, key: str, result: Fetched, report: StageReport) -> None:
        f = result
        catalog.mark_fetched(key, path=f.path, size=f.size, sha256=f.sha256, downloader=f.downloader,
                             probe=f.probe, attempts=f.attempts)  # fmt: skip
        report.add("fetched")

    def record_failure(self, catalog: Catalog, key: str, error: NwtError) -> None:
        attempts = int(getattr(error, "attempts", 1))
        catalog.mark_fetch_failed(key, kind=_kind(error), error=error.one_line(), attempts=attempts)

    def failure_label(self, error: NwtError) -> str:
        return f"failed ({_kind(error)})"


def _kind(error: NwtError) -> str:
    return error.kind if isinstance(error, FetchError) else "other"


def run_fetch(ws: Workspace, catalog: Catalog, manifest_path: Path, config: FetchConfig, console: Console, *,
              run: RunConfig | None = None) -> StageReport:  # fmt: skip
    """Fetch a manifest's episodes (library entry point: no run record; the CLI records its runs)."""
    run = run or RunConfig()
    stage = FetchStage(ws, config, read_manifest(manifest_path), str(manifest_path.resolve()), run.timeout)
    return run_stage(ws, stage, console, catalog=catalog, run=run, record=False)
