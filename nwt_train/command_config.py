"""The config of `nwt-train encode`, free of torch.

The command line reads its defaults and field docs for `--help` without importing torch;
`nwt_train.encode` uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nwt_train.errors import TrainConfigError


@dataclass(frozen=True, kw_only=True)
class EncodeConfig:
    """`nwt-train encode`: which dVAE, which shards, where the Memcode shards go."""

    dvae: Path
    data: Path
    out: Path
    seed: int = 0
    """Seed of the Memcode sampling; each clip draws from its own seed (seed, key)."""
    chunk_frames: int = 64
    """Frames encoded at once (with the dVAE's temporal reach as context): bounds memory on long clips."""
    device: str = "auto"
    """Where the dVAE runs: auto (a GPU when there is one), cpu, cuda, cuda:1 ..."""

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise TrainConfigError(f"chunk_frames must be >= 1, got {self.chunk_frames}")
