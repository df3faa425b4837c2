"""The shared run skeleton: run records, cross-stage locks, error kinds and attempts, timeouts, the catalog
schema check and the per-site download limit, through the real CLI, SQLite, ffmpeg and HTTP."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sigkill import live_group_members

from nwt_data.catalog import Catalog, Failure
from nwt_data.config import MaskConfig, RunConfig
from nwt_data.errors import FetchError, ItemTimeout, MediaError, NwtError, WorkspaceError
from nwt_data.media.ffmpeg import lavfi_demo_args, run_ffmpeg
from nwt_data.runner import Selection, Stage, run_stage
from nwt_data.stages import StageReport
from nwt_data.stages.mask import MaskStage
from nwt_data.workspace import Workspace


def _runs(ws: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(ws / "catalog.sqlite")
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY run_id")]
    finally:
        conn.close()


def test_a_mistyped_manifest_creates_no_workspace(tmp_path: Path, cli) -> None:
    result = cli("fetch", tmp_path / "nope.csv", "-w", tmp_path / "ws1")
    assert result.exit_code == 2
    assert "manifest" in result.output and "nope.csv" in result.output
    assert not (tmp_path / "ws1").exists()


@dataclass(frozen=True)
class _Squares(Stage[int, int]):
    """A stage whose commit breaks after `good` items (as a full disk would): the run must end failed."""

    config: Any = None
    good: int = 2
    name = "squares"

    def config_dict(self) -> dict[str, Any]:
        return {"good": self.good}

    def select(self, catalog: Catalog, report: StageReport) -> Selection[int]:
        return Selection(
            [(str(i), i) for i in range(5)], done=0, failed_earlier=[Failure("x", "media", "bad")]
        )

    def work(self, item: int) -> int:
        if item == 1:
            raise MediaError("one bad item", hint="it fails alone")
        return item * item

    def commit(self, catalog: Catalog, key: str, result: int, report: StageReport) -> None:
        if report.counts.get("ok", 0) >= self.good:
            raise OSError(28, "No space left on device")
        report.add("ok")

    def record_failure(self, catalog: Catalog, key: str, error: NwtError) -> None:
        report_kinds.append(error.kind)


report_kinds: list[str] = []


def test_runs_end_finished_or_failed_never_unfinished(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    quiet = Console(quiet=True)
    report = run_stage(ws, _Squares(good=10), quiet, run=RunConfig(), record=True)
    assert report.counts == {"already done": 0, "ok": 4, "failed": 1}
    assert ("x", "media", "bad (run with --retry-failed)") in report.failures
    assert ("1", "media", "one bad item (it fails alone)") in report.failures and report_kinds == ["media"]
    with pytest.raises(OSError, match="No space"):
        run_stage(ws, _Squares(good=2), quiet, run=RunConfig(), record=True)
    first, second = _runs(ws.root)
    assert (first["status"], second["status"]) == ("finished", "failed")
    assert first["finished_at"] and second["finished_at"]
    assert "No space left on device" in second["error"]
    assert json.loads(second["summary"])["ok"] == 2  # what it did before it stopped


def test_a_run_killed_earlier_is_marked_killed(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    Catalog(ws.catalog_path).start_run("squares", {})  # as a SIGKILLed run leaves it
    run_stage(ws, _Squares(good=10), Console(quiet=True), record=True)
    assert [r["status"] for r in _runs(ws.root)] == ["killed", "finished"]


def test_stages_that_rewrite_what_a_running_one_reads_are_refused(tmp_path: Path, make_video, cli) -> None:
    video = make_video("ep.mp4", seconds=9)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"episode_id,url\nep,{video}\n")
    ws = tmp_path / "ws"
    assert cli("fetch", manifest, "-w", ws).exit_code == 0
    assert cli("segment", "-w", ws, "--crop", "center").exit_code == 0
    workspace = Workspace.open(ws)
    running = MaskStage(workspace, MaskConfig(include_unreviewed=True))
    reads, rewrites = running.data_access()
    # Hold exactly the locks a running `nwt-data mask` holds.
    with workspace.stage_lock("mask"), workspace.data_locks("mask", reads=reads, rewrites=rewrites):
        redo = cli("segment", "-w", ws, "--redo", "-e", "ep", "--crop", "none")
        assert redo.exit_code == 2
        line = " ".join(redo.output.split())
        assert "`nwt-data segment --redo` would rewrite the clips that `nwt-data mask` is reading" in line
        assert "wait for it to finish" in line
        shard = cli("shard", "-w", ws)
        assert (
            shard.exit_code == 2
            and "`nwt-data shard` reads the prepared clips that `nwt-data mask`"
            in " ".join(shard.output.split())
        )
        again = cli("mask", "-w", ws)
        assert again.exit_code == 2 and "another `nwt-data mask` is running" in again.output
        # Readers of the clips may run beside mask.
        assert cli("flag", "-w", ws).exit_code == 0
    # Refused runs changed nothing and left no record; once mask is done, --redo runs.
    assert [r["command"] for r in _runs(ws)] == ["fetch", "segment", "flag"]
    assert {c["crop_x"] for c in Catalog(ws / "catalog.sqlite").clips()} != {0}
    assert cli("segment", "-w", ws, "--redo", "-e", "ep", "--crop", "none").exit_code == 0
    assert {c["crop_x"] for c in Catalog(ws / "catalog.sqlite").clips()} == {0}


def test_flag_keeps_the_error_kind(tmp_path: Path, make_video, cli) -> None:
    video = make_video("ep.mp4", seconds=6)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"episode_id,url\nep,{video}\n")
    ws = tmp_path / "ws"
    assert cli("fetch", manifest, "-w", ws).exit_code == 0
    assert cli("segment", "-w", ws, "--crop", "center").exit_code == 0
    clip = Catalog(ws / "catalog.sqlite").clips("status = 'ok'")[0]
    (ws / clip["path"]).unlink()
    result = cli("flag", "-w", ws)
    assert result.exit_code == 1 and f"{clip['clip_id']} [media]" in " ".join(result.output.split())
    row = Catalog(ws / "catalog.sqlite").clip(clip["clip_id"])
    assert row is not None and (row.flag_status, row.flag_error_kind, row.flag_attempts) == (
        "failed",
        "media",
        1,
    )
    assert not row.flag_error or not row.flag_error.startswith("[")  # the kind has its own column
    later = cli("flag", "-w", ws)  # listed again, with its kind, until retried
    assert later.exit_code == 1 and f"{clip['clip_id']} [media]" in " ".join(later.output.split())


def test_fetch_records_the_attempts_it_made(tmp_path: Path, cli, media_server) -> None:
    _, base_url = media_server
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"episode_id,url\nrefused,http://127.0.0.1:1/a.mp4\ngone,{base_url}/missing.mp4\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "nwt.toml").write_text("[fetch]\nretries = 2\nbackoff_seconds = 0.0\n")
    assert cli("fetch", manifest, "-w", ws).exit_code == 1
    rows = {e.episode_id: e for e in Catalog(ws / "catalog.sqlite").episodes()}
    assert (rows["refused"].fetch_error_kind, rows["refused"].fetch_attempts) == (
        "network",
        3,
    )  # 1 + 2 retries
    assert (rows["gone"].fetch_error_kind, rows["gone"].fetch_attempts) == ("gone", 1)  # never retried
    assert cli("fetch", manifest, "-w", ws, "--retry-failed").exit_code == 1
    assert Catalog(ws / "catalog.sqlite").episode("refused").fetch_attempts == 6  # type: ignore[union-attr]


def test_a_stalled_ffmpeg_is_stopped_with_a_timeout(tmp_path: Path) -> None:
    args = lavfi_demo_args(tmp_path / "long.mp4", seconds=3600, width=640, height=360, fps="30", gop=30)
    started = time.monotonic()
    with pytest.raises(ItemTimeout) as caught:
        run_ffmpeg(args, timeout=1.0)
    assert time.monotonic() - started < 10
    assert caught.value.kind == "timeout" and "limit" in caught.value.one_line()


def test_errors_keep_kind_hint_and_fields_across_processes() -> None:
    err = FetchError("HTTP Error 429", kind="throttled", hint="wait")
    err.attempts = 3  # type: ignore[attr-defined]
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is FetchError and (back.kind, back.hint, back.attempts, back.retryable) == (
        "throttled",
        "wait",
        3,
        True,
    )
    assert pickle.loads(pickle.dumps(MediaError("bad", hint="fix"))).one_line() == "bad (fix)"


def test_a_catalog_from_a_newer_nwt_is_refused(tmp_path: Path, cli) -> None:
    ws = Workspace.open(tmp_path / "ws")
    Catalog(ws.catalog_path).close()
    conn = sqlite3.connect(ws.catalog_path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(WorkspaceError, match="schema version 99"):
        Catalog(ws.catalog_path)
    result = cli("status", "-w", ws.root)
    assert result.exit_code == 2 and "upgrade nwt" in result.output


class _Counting(http.server.SimpleHTTPRequestHandler):
    """Answers each request after 0.3 s and counts the requests waiting for an answer at once.

    A request stops counting before its answer is sent, so the next request of a client that goes
    one at a time (it needs that answer first) always finds the count back at zero. Counting until
    the handler returns instead is racy: yt-dlp reads only the headers of its first GET, hangs up
    and sends the download's GET, which can arrive while the first handler has yet to run its last
    lines. Downloads from one site started together all wait 0.3 s at once: the count then exceeds 1.
    """

    lock = threading.Lock()
    now = 0
    most = 0

    def do_GET(self) -> None:
        cls = type(self)
        with cls.lock:
            cls.now += 1
            cls.most = max(cls.most, cls.now)
        try:
            time.sleep(0.3)
        finally:
            with cls.lock:
                cls.now -= 1
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def counting_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    import functools

    folder = tmp_path / "site"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Counting, directory=str(folder))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_downloads_from_one_site_are_limited(tmp_path: Path, make_video, cli, counting_server) -> None:
    folder, base_url = counting_server
    lines = ["episode_id,url"]
    for name in ("a", "b", "c"):
        make_video(f"{name}.mp4", seconds=2, folder=folder)
        lines.append(f"{name},{base_url}/{name}.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(lines) + "\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "nwt.toml").write_text("[run]\ndownloads_per_site = 1\n")
    _Counting.most = 0
    assert cli("fetch", manifest, "-w", ws, "-j", "3").exit_code == 0
    assert _Counting.most == 1  # three workers, one site, one download at a time
    assert len(Catalog(ws / "catalog.sqlite").episodes_fetched()) == 3


@dataclass(frozen=True)
class _Sites(Stage[str, str]):
    config: Any = None
    name = "sites"

    def site(self, item: str) -> str | None:
        return item.split("/")[0] or None


def test_dispatch_bounds_what_is_in_flight_and_per_site() -> None:
    from nwt_data.executors import Dispatch

    items = [(str(i), url) for i, url in enumerate(["a/1", "a/2", "a/3", "b/1", "/local", "b/2"])]
    dispatch = Dispatch(_Sites(), items, limit=3, per_site=1)
    started = [dispatch.take(), dispatch.take(), dispatch.take()]
    assert [s[1] for s in started if s] == ["a/1", "b/1", "/local"]  # one per site; no site, no limit
    assert dispatch.take() is None  # three in flight: the limit
    dispatch.finished("4")  # the local file is done: a slot, but both sites are busy
    assert dispatch.take() is None
    dispatch.finished("0")
    assert dispatch.take() == ("1", "a/2")  # in manifest order within the site
    assert dispatch.in_flight() == 2 and bool(dispatch)  # b/1 and a/2; a/3 and b/2 wait


# A stage for the local executor's worker processes, as a module they can import: each item marks
# its start, works for a second, then marks its end, in the folder given on the command line.
_SLOW_STAGE = """
import sys, time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nwt_data.config import RunConfig
from nwt_data.executors.local import LocalExecutor
from nwt_data.runner import Stage


@dataclass(frozen=True)
class Slow(Stage[str, str]):
    out: str
    config: Any = None
    name = "slow"

    def work(self, item: str) -> str:
        (Path(self.out) / f"{item}.started").touch()
        time.sleep(1.0)
        (Path(self.out) / f"{item}.done").touch()
        return item


if __name__ == "__main__":
    executor = LocalExecutor(RunConfig(local_mode="processes"), workers=2, mode="processes")
    executor.run(Slow(sys.argv[1]), [(str(i), str(i)) for i in range(6)], lambda outcome: None)
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads process groups from /proc")
def test_worker_processes_die_with_a_killed_driver(tmp_path: Path) -> None:
    """`kill -9` of a run in processes mode: its workers must not go on writing into the workspace."""
    (tmp_path / "slow_stage.py").write_text(_SLOW_STAGE)
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
    }
    driver = subprocess.Popen([sys.executable, "-m", "slow_stage", str(out)], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("*.started"))) < 2 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert driver.poll() is None and len(list(out.glob("*.started"))) == 2, "both workers busy"
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 5
        while (left := live_group_members(driver.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert left == [], f"worker processes outlived a kill -9 of their driver: {left}"
        written = sorted(p.name for p in out.iterdir())
        time.sleep(1.5)  # longer than an item's work
        assert sorted(p.name for p in out.iterdir()) == written
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
