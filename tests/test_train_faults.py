"""Trainers facing data they cannot read: a one-line error instead of a hang, and SIGTERM honoured."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nwt_data.contract import FRAME_HEIGHT, FRAME_WIDTH, VIDEO_FPS
from nwt_train.data import _worker_message

pytestmark = pytest.mark.slow


def _bad_shards(root: Path, kind: str) -> dict[str, object]:
    """Three train shards, each empty, garbage or a cut tar: nothing in them is a sample."""
    root.mkdir(parents=True)
    contents = {"empty": b"", "garbage": os.urandom(3000), "cut": b"ustar" + bytes(600)}
    shards = []
    for name, data in contents.items():
        (root / f"train-{name}.tar").write_bytes(data)
        shards.append({"name": f"train-{name}.tar", "split": "train", "samples": 2, "sha256": name})
    description: dict[str, object] = {
        "video": {"fps": VIDEO_FPS, "height": FRAME_HEIGHT, "width": FRAME_WIDTH},
        "shards": shards,
        "samples": {"train": 6},
        "episodes": {"ep": 0},
    }
    if kind == "codes":
        description |= {"complete": True, "grid": [8, 7], "heads": 4, "codebook_size": 8,
                        "dvae": {"run": "x", "step": 1, "weights_sha256": "0"}}  # fmt: skip
    name = "codes.json" if kind == "codes" else "dataset.json"
    (root / name).write_text(json.dumps(description))
    return description


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("NWT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "nwt_train.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("command", "kind", "workers"),
    [("dvae", "video", 0), ("dvae", "video", 1), ("prior", "codes", 0)],
)
def test_no_readable_sample_is_one_line_not_a_hang(tmp_path: Path, command, kind, workers) -> None:
    data = tmp_path / "data"
    _bad_shards(data, kind)
    done = _run([command, "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny",
                 "--set", f"num_workers={workers}"], timeout=180)  # fmt: skip
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "no usable sample in the train shards" in lines[0], done.stderr[-3000:]
    assert "nwt-data shard" in lines[0] and "Traceback" not in done.stderr


def test_sigterm_while_waiting_for_data_saves_and_exits(tmp_path: Path) -> None:
    """A shard that never delivers (a FIFO nobody writes): SIGTERM still stops the run promptly."""
    data = tmp_path / "data"
    description = _bad_shards(data, "video")
    (data / "train-slow.tar").unlink(missing_ok=True)
    os.mkfifo(data / "train-slow.tar")
    description["shards"] = [{"name": "train-slow.tar", "split": "train", "samples": 1, "sha256": "s"}]
    (data / "dataset.json").write_text(json.dumps(description))
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "nwt_train.cli", "dvae", "--data", str(data), "--out", str(run),
            "--preset", "tiny"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while not (run / "config.json").exists() and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # inside the loader's wait on the FIFO
        assert proc.poll() is None
        sent = time.time()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert time.time() - sent < 30
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    assert (run / "latest.pt").exists()


def test_a_worker_error_comes_back_as_its_own_line() -> None:
    text = (
        "Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nnwt_train.errors.DataError: no usable sample in the train shards\n'
    )
    assert _worker_message(text) == "no usable sample in the train shards"
