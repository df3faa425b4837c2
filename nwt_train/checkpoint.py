"""Checkpoints: one plain dict per file, written atomically; a run folder resumes from its latest.

A checkpoint holds only tensors, numbers, strings, lists, tuples and dicts, and is read with
`torch.load(weights_only=True)`: unpickling a file never runs code, so a checkpoint from anywhere is
safe to open. RNG states are stored as tensors for that reason.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from nwt_data.errors import NwtError
from nwt_train.errors import MissingInput, RunMismatch

__all__ = ["RunMismatch"]

LATEST = "latest.pt"

M = TypeVar("M", bound=torch.nn.Module)


class CheckpointError(NwtError):
    """A checkpoint file that is unreadable, not an nwt checkpoint, or holds more than plain data."""

    kind = "checkpoint"


def rng_state() -> dict[str, Any]:
    """Every RNG's state as plain tensors and numbers (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate(
        (python_state["version"], tuple(python_state["internal"].tolist()), python_state["gauss"])
    )
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
    """The run's latest checkpoint, or None for a fresh run.

    Read with weights_only=True: a file holding anything but plain data (a crafted pickle that would
    run code, say) is refused with a CheckpointError before any of it is executed.
    """
    path = run_dir / LATEST
    if not path.exists():
        return None
    hint = f"move it away and retrain, or point at another run folder than {run_dir}"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights only" in str(err).lower() or "weights_only" in str(err).lower():
            reason = (
                "it holds objects other than tensors and plain data (refused: loading them could run code)"
            )
        raise CheckpointError(f"{path} is not a safe nwt checkpoint: {reason}", hint) from None
    except (EOFError, RuntimeError, ValueError, OSError, IndexError, KeyError, TypeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else "the file is empty or cut short"
        raise CheckpointError(f"{path} is not a readable checkpoint: {reason}", hint) from None
    if not isinstance(saved, dict) or not {"step", "config"} <= saved.keys():
        raise CheckpointError(f"{path} is not an nwt checkpoint (no step and config in it)", hint)
    return saved


def load_model(
    run_dir: Path, part: str, name: str, build: Callable[[dict[str, Any]], M]
) -> tuple[M, dict[str, Any]]:
    """A finished run's model in eval mode, and its checkpoint: build(the saved model config) given the
    weights saved under `part` ('dvae' or 'prior', also the `nwt-train` command that trains it)."""
    saved = load(run_dir)
    if saved is None:
        raise MissingInput(f"no checkpoint in {run_dir}: train it with `nwt-train {part} --out {run_dir}`")
    if part not in saved:
        raise RunMismatch(f"{run_dir} is not a {name} run (its checkpoint holds no {name} weights)")
    model = build({k: as_tuples(v) for k, v in saved["config"]["model"].items()})
    model.load_state_dict(saved[part])
    return model.eval(), saved


def as_tuples(value: Any) -> Any:
    """JSON's lists back into the tuples a config dataclass holds."""
    return tuple(as_tuples(v) for v in value) if isinstance(value, list) else value


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
