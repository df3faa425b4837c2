"""Checkpoints are plain data read with weights_only=True: a crafted pickle never runs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from nwt_train import checkpoint


class RunsAShellCommand:
    """What an attacker puts in a checkpoint: unpickling it would call os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_is_refused_before_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with open(tmp_path / checkpoint.LATEST, "wb") as f:
        torch.save({"step": 1, "config": {}, "payload": RunsAShellCommand(marker)}, f)
    # The same file does run code under the old weights_only=False: the test would catch a revert.
    torch.load(tmp_path / checkpoint.LATEST, weights_only=False)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(checkpoint.CheckpointError, match="not a safe nwt checkpoint") as err:
        checkpoint.load(tmp_path)
    assert not marker.exists()
    assert "\n" not in err.value.one_line()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable checkpoint"),
        (b"garbage, not a zip or a pickle", "not a"),
        (None, "not an nwt checkpoint"),
    ],
)
def test_damaged_checkpoints_are_one_line_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / checkpoint.LATEST
    if content is None:
        torch.save([1, 2, 3], path)  # a valid file that holds a list
    else:
        path.write_bytes(content)
    with pytest.raises(checkpoint.CheckpointError, match=message) as err:
        checkpoint.load(tmp_path)
    assert "\n" not in err.value.one_line()


def test_rng_states_round_trip_through_a_safe_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(3)
    np.random.seed(4)
    random.seed(5)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    checkpoint.save(tmp_path, {"step": 7, "config": {"a": [1, 2]}, "rng": checkpoint.rng_state()})
    expected = (torch.rand(3), np.random.standard_normal(3), random.random())
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    saved = checkpoint.load(tmp_path)
    assert saved["step"] == 7 and saved["config"] == {"a": [1, 2]}
    checkpoint.set_rng_state(saved["rng"])
    again = (torch.rand(3), np.random.standard_normal(3), random.random())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]
