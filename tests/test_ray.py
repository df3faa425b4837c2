"""`--executor ray` on a real local Ray cluster (2 CPUs, started once for this module, stopped after).

The pipeline on Ray must give the same catalog rows and the same shard bytes as the local executor;
a Ray worker killed mid-mask is retried and the run completes identically; a driver killed mid-stage
resumes on the next run; a source that stops sending fails alone with kind `timeout`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sigkill import NWT_DATA, count_where, read_table

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

# Columns that differ between two correct runs: when things happened.
VOLATILE = frozenset({"added_at", "fetched_at", "segmented_at", "reviewed_at", "created_at"})


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A real 2-CPU Ray cluster whose head runs in this process; its address for other drivers."""
    temp = tempfile.mkdtemp(prefix="nwt-ray-", dir="/tmp")  # short: Ray's socket paths have a limit
    for attempt in range(3):  # on a loaded machine the head can miss Ray's start-up deadline
        try:
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                _temp_dir=temp,
                logging_level="ERROR",
                log_to_driver=False,
            )
            break
        except Exception:  # Ray raises a bare Exception for a timed-out start
            ray.shutdown()
            if attempt == 2:
                raise
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


# --- reading workspaces ------------------------------------------------------------------------------
def rows(ws: Path, table: str, order: str) -> list[dict[str, Any]]:
    return read_table(ws, table, order, volatile=VOLATILE)


def hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def done_clips(ws: Path) -> int:
    return count_where(ws, "SELECT COUNT(*) FROM clips WHERE mask_status = 'done'")


def _ok(result: Any) -> None:
    assert result.exit_code == 0, result.output


@pytest.fixture
def episodes(tmp_path: Path, make_video, media_server) -> Path:
    """A manifest of two small episodes: one served over HTTP (yt-dlp), one local file."""
    folder, base_url = media_server
    make_video("served.mp4", seconds=9, folder=folder)
    local = make_video("local.mp4", seconds=9, fps="25", gop=25)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"episode_id,url\nserved,{base_url}/served.mp4\nlocal,{local}\n")
    return manifest


def _pipeline(cli, ws: Path, manifest: Path, *executor: str) -> None:
    _ok(cli("fetch", manifest, "-w", ws, "-j", "2", *executor))
    _ok(cli("segment", "-w", ws, "-j", "2", "--crop", "center", *executor))
    _ok(cli("flag", "-w", ws, "-j", "2", *executor))
    _ok(cli("mask", "-w", ws, "-j", "2", "--include-unreviewed", *executor))
    _ok(cli("shard", "-w", ws, "--shard-size", "150KB", *executor))


def test_pipeline_on_ray_equals_local(tmp_path: Path, episodes: Path, cli, ray_address: str) -> None:
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    _pipeline(cli, local, episodes, "--executor", "local")
    _pipeline(cli, on_ray, episodes, "--executor", "ray", "--ray-address", ray_address)

    assert rows(on_ray, "episodes", "episode_id") == rows(local, "episodes", "episode_id")
    assert rows(on_ray, "clips", "clip_id") == rows(local, "clips", "clip_id")
    assert rows(on_ray, "shards", "name") == rows(local, "shards", "name")
    shards = hashes(local / "shards")
    assert len([n for n in shards if n.endswith(".tar")]) >= 2  # one Ray task per shard, several shards
    assert hashes(on_ray / "shards") == shards  # the tars and dataset.json, byte for byte
    assert hashes(on_ray / "prepared") == hashes(local / "prepared")
    # Every run is on record as finished, with the executor it used.
    runs = rows(on_ray, "runs", "run_id")
    assert [r["status"] for r in runs] == ["finished"] * 5
    assert {json.loads(r["config"])["run"]["executor"] for r in runs} == {"ray"}
    # dataset.json says what each shard holds: the mask settings of its clips.
    dataset = json.loads((on_ray / "shards" / "dataset.json").read_text())
    assert dataset["format"] == 2 and all(s["mask"] and s["mask"][0]["gop"] == 10 for s in dataset["shards"])


@pytest.fixture
def segmented(tmp_path: Path, episodes: Path, cli) -> tuple[Path, Path]:
    """Two copies of one segmented workspace: a reference masked locally, and one for the faults."""
    ws = tmp_path / "ws"
    _ok(cli("fetch", episodes, "-w", ws))
    _ok(cli("segment", "-w", ws, "--crop", "center"))
    reference = tmp_path / "reference"
    shutil.copytree(ws, reference)
    _ok(cli("mask", "-w", reference, "-j", "2", "--include-unreviewed"))
    return ws, reference


def _mask_on_ray(ws: Path, address: str) -> subprocess.Popen[bytes]:
    argv = [*NWT_DATA, "mask", "-w", str(ws), "-j", "2", "--include-unreviewed", "--executor", "ray",
            "--ray-address", address]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _parent(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2 :].split()[1])


def _ray_workers(title: str) -> list[int]:
    """PIDs of this cluster's Ray workers running a task named `title` (Ray sets it as the process title).

    The cluster's raylet is a child of this process, its workers are the raylet's children: only
    those are ours to kill.
    """
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                if (proc / "cmdline").read_bytes().startswith(f"ray::{title}".encode()):
                    pid = ancestor = int(proc.name)
                    while ancestor > 1 and ancestor != os.getpid():
                        ancestor = _parent(ancestor)
                    if ancestor == os.getpid():
                        pids.append(pid)
    return pids


def _same_as_reference(ws: Path, reference: Path) -> None:
    assert hashes(ws / "prepared") == hashes(reference / "prepared")
    mine, theirs = rows(ws, "clips", "clip_id"), rows(reference, "clips", "clip_id")
    differ = {
        (a["clip_id"], k, a[k], b[k]) for a, b in zip(mine, theirs, strict=True) for k in a if a[k] != b[k]
    }
    assert not differ, sorted(differ)[:6]
    assert not [p for p in (ws / "tmp").rglob("*") if p.is_file()]


def test_killed_ray_worker_is_retried(segmented: tuple[Path, Path], ray_address: str) -> None:
    ws, reference = segmented
    proc = _mask_on_ray(ws, ray_address)
    killed = []
    deadline = time.monotonic() + 120
    while not killed and proc.poll() is None and time.monotonic() < deadline:
        for pid in _ray_workers("nwt-mask"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=300)
    assert killed, "no Ray worker was caught running a mask task"
    assert proc.returncode == 0, out.decode()
    _same_as_reference(ws, reference)


def test_killed_driver_resumes(segmented: tuple[Path, Path], ray_address: str) -> None:
    ws, reference = segmented
    proc = _mask_on_ray(ws, ray_address)
    deadline = time.monotonic() + 120
    while done_clips(ws) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed mid-stage"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    total = len([r for r in rows(reference, "clips", "clip_id") if r["mask_status"] == "done"])
    assert 1 <= done_clips(ws) < total  # killed mid-stage
    again = _mask_on_ray(ws, ray_address)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out.decode()
    _same_as_reference(ws, reference)
    statuses = [r["status"] for r in rows(ws, "runs", "run_id") if r["command"] == "mask"]
    assert statuses == ["killed", "finished"]


class _Stalling(http.server.BaseHTTPRequestHandler):
    """Serves /stall.mp4: headers and 64 KiB of a 1 MB body, then nothing, until the test ends."""

    stop = threading.Event()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"\0" * (64 << 10))
        self.wfile.flush()
        self.stop.wait(120)

    def log_message(self, *args: Any) -> None:
        pass


def test_stalled_source_fails_alone_with_timeout(tmp_path: Path, make_video, cli, ray_address: str) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stalling)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        good = make_video("good.mp4", seconds=3)
        manifest = tmp_path / "m.csv"
        manifest.write_text(
            f"episode_id,url\nstalled,http://127.0.0.1:{server.server_address[1]}/stall.mp4\ngood,{good}\n"
        )
        ws = tmp_path / "ws"
        ws.mkdir()
        (ws / "nwt.toml").write_text("[fetch]\nsocket_timeout = 2.0\nretries = 0\n[run]\ntimeout = 20.0\n")
        started = time.monotonic()
        result = cli("fetch", manifest, "-w", ws, "--executor", "ray", "--ray-address", ray_address)
        took = time.monotonic() - started
    finally:
        _Stalling.stop.set()
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert "stalled [timeout]" in out
    by_id = {r["episode_id"]: r for r in rows(ws, "episodes", "episode_id")}
    assert by_id["good"]["fetch_status"] == "done"
    assert (by_id["stalled"]["fetch_status"], by_id["stalled"]["fetch_error_kind"]) == ("failed", "timeout")
    assert by_id["stalled"]["fetch_attempts"] == 1
    assert took < 60  # the stall ended at its limit, not at the server's patience
