"""The configs of `nwt-train encode` and `generate`, free of torch.

The command line reads their defaults and field docs for `--help` without importing torch;
`nwt_train.encode` and `nwt_train.generate` use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True, kw_only=True)
class GenerateConfig:
    """`nwt-train generate`: what to condition on and how to sample."""

    prior: Path
    dvae: Path
    audio: Path
    out: Path
    episode: str
    temperature: float = 1.0
    """Softmax temperature of the Memcode sampling."""
    seed: int = 0
    """Seed of the style draw and the Memcode sampling."""
    style_from: Path | None = None
    """Copy the style of this clip (any video the dVAE reads): z_l from its posterior. Without it, z_l
    is drawn from N(0, I)."""
    style_values: tuple[tuple[int, float], ...] = field(default_factory=tuple)
    """(variate, value) pairs set in z_l after it is drawn (S4.1's per-variate control)."""
    seconds: float | None = None
    """Use only the first this-many seconds of the audio."""
    cache: bool = True
    """Cached incremental sampling steps (B.2.3); off recomputes the whole prefix every step (slow: for
    benchmarks)."""
    device: str = "auto"
    """Where the models run: auto (a GPU when there is one), cpu, cuda, cuda:1 ..."""

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise TrainConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.seconds is not None and not self.seconds > 0:
            raise TrainConfigError(f"seconds must be > 0, got {self.seconds}")
        if self.out.suffix.lower() != ".mp4":
            raise TrainConfigError(f"--out must name an .mp4 file, got {self.out}")
