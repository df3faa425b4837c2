"""Checkpoints: one plain dict per file, written atomically; a run folder resumes from its latest."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest.pt"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write `state` to RUN/latest.pt through a temporary name; readers never see half a file."""
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / LATEST
    tmp = run_dir / f".{LATEST}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final


def load(run_dir: Path) -> dict[str, Any] | None:
    """The run's latest checkpoint, or None for a fresh run."""
    path = run_dir / LATEST
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


class RunMismatch(ValueError):
    """A run folder holds a checkpoint made with another config or dataset."""


def restore(
    run_dir: Path, parts: dict[str, Any], config_json: dict[str, Any], fingerprint: str, resumable: set[str]
) -> int:
    """Load RUN/latest.pt into `parts` (models, optimizers) and the RNGs; the step to continue from.

    A fresh run returns 0. A checkpoint made with other settings (besides `resumable` ones such as
    the step count) or on other data is refused rather than silently mixed.
    """
    saved = load(run_dir)
    if saved is None:
        return 0
    old = {k: v for k, v in saved["config"].items() if k not in resumable}
    new = {k: v for k, v in config_json.items() if k not in resumable}
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        raise RunMismatch(
            f"{run_dir} was started with other settings ({', '.join(changed)}); use a new --out folder"
        )
    if saved["dataset"] != fingerprint:
        raise RunMismatch(f"{run_dir} was trained on other shards; use a new --out folder")
    for name, part in parts.items():
        part.load_state_dict(saved[name])
    set_rng_state(saved["rng"])
    return int(saved["step"])


def run_state(
    parts: dict[str, Any], step: int, config_json: dict[str, Any], fingerprint: str, **extra: Any
) -> dict[str, Any]:
    """What a checkpoint holds: every part's state, the step, config, data fingerprint and RNGs."""
    return {
        "step": step,
        "config": config_json,
        "dataset": fingerprint,
        "rng": rng_state(),
        **extra,
        **{name: part.state_dict() for name, part in parts.items()},
    }


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[dict[str, bool]]:
    """Turn SIGTERM into a flag the loop checks, so it saves and exits at a step boundary."""
    stop = {"requested": False}
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
