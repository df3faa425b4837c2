"""Checkpoints: one plain dict per file, written atomically; a run folder resumes from its latest."""

from __future__ import annotations

import os
import random
import uuid
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
