"""SIGKILL of `nwt-train encode`, `nwt-train dvae` and `nwt-train prior` at random moments (trainers
also while a checkpoint is being written), rerun until done, and compare with an uninterrupted run:
Memcode tars and codes.json byte for byte, checkpoints tensor for tensor (weights, optimizers, RNG
states, step), and no temporary file left. Extends test_resume.py (fetch, segment) to the trainers.

`NWT_FAULT_KILLS` scales the kills per command (default 7); `NWT_FAULT_SEED` picks the moments.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from nwt_train.config import tiny, with_overrides
from nwt_train.train_dvae import train_dvae

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("NWT_FAULT_KILLS", "7"))
SEED = int(os.environ.get("NWT_FAULT_SEED", "20251201"))
TRAIN = ["--preset", "tiny", "--set", "steps=8", "--set", "checkpoint_every=1", "--set", "log_every=1"]
FIGURES: dict[str, dict[str, int]] = {}


def _cli(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "nwt_train.cli", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env)  # fmt: skip


def _finish(args: list[str], log: Path) -> None:
    proc = _cli(args, log)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]


def _kill_and_rerun(name: str, args: list[str], folder: Path, log: Path, busy: Any) -> None:
    """Start, SIGKILL at a random moment once `busy()` says work is under way (or, every other time,
    as soon as a temporary file appears: a checkpoint or shard being written), up to KILLS times;
    then run to the end. Records how many kills landed on a live process and how many mid-write."""
    rng = random.Random(f"{SEED}:{name}")
    landed = during_write = 0
    for attempt in range(KILLS):
        proc = _cli(args, log)
        deadline = time.monotonic() + 240
        while proc.poll() is None and not busy() and time.monotonic() < deadline:
            time.sleep(0.01)
        if attempt % 2:  # wait for a write in progress
            while proc.poll() is None and not list(folder.glob(".*.tmp")) and time.monotonic() < deadline:
                time.sleep(0.002)
        else:
            time.sleep(rng.uniform(0.0, 1.5))
        writing = bool(list(folder.glob(".*.tmp")))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            landed += 1
            during_write += writing
        proc.wait(timeout=60)
    _finish(args, log)
    FIGURES[name] = {"kills": landed, "during_write": during_write}
    assert not list(folder.rglob("*.tmp")), "temporary files left behind"


def _same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _checkpoint(run: Path) -> dict[str, Any]:
    return torch.load(run / "latest.pt", map_location="cpu", weights_only=True)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def dvae_run(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("faults") / "dvae"
    train_dvae(with_overrides(tiny(), {"steps": 2, "log_every": 1, "video_every": 100}), shards, run)
    return run


def test_sigkill_of_encode_and_both_trainers_then_rerun_matches(
    shards: Path, dvae_run: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log.txt"
    started = time.monotonic()

    # encode: byte-identical Memcode shards and codes.json
    ref, out = tmp_path / "codes-ref", tmp_path / "codes"
    encode = ["encode", "--dvae", str(dvae_run), "--data", str(shards)]
    _finish([*encode, "--out", str(ref)], log)
    _kill_and_rerun("encode", [*encode, "--out", str(out)], out, log,
                    busy=lambda: (out / "codes.json").exists())  # fmt: skip
    tars = sorted(p.name for p in ref.glob("*.tar"))
    assert tars and tars == sorted(p.name for p in out.glob("*.tar"))
    assert {t: _sha(ref / t) for t in tars} == {t: _sha(out / t) for t in tars}
    assert json.loads((ref / "codes.json").read_text()) == json.loads((out / "codes.json").read_text())

    # both trainers: the same checkpoint, tensor for tensor, as an uninterrupted run
    for name, args in (
        ("dvae", ["dvae", "--data", str(shards), *TRAIN, "--set", "video_every=1000"]),
        ("prior", ["prior", "--data", str(ref), "--arch", "far", *TRAIN]),
    ):
        straight, killed = tmp_path / f"{name}-ref", tmp_path / name
        _finish([*args, "--out", str(straight)], log)
        _kill_and_rerun(name, [*args, "--out", str(killed)], killed, log,
                        busy=lambda killed=killed: (killed / "config.json").exists())  # fmt: skip
        reference, resumed = _checkpoint(straight), _checkpoint(killed)
        assert resumed["step"] == reference["step"] == 8
        _same(reference, resumed, name)

    FIGURES["seconds"] = {"total": round(time.monotonic() - started)}
    print("\nfault injection:", json.dumps(FIGURES))
    assert sum(f["kills"] for k, f in FIGURES.items() if k != "seconds") >= 20 if KILLS >= 7 else True
