"""Training configs: one frozen dataclass per command, presets as functions, overrides by dotted key.

    nwt-train dvae --preset tiny --set steps=200 --set model.heads=4 --config my.toml

Every run saves its effective config (`config.json` in the run folder and in each checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nwt_train.models.critics import CriticConfig
from nwt_train.models.dvae import DVAEConfig
from nwt_train.models.prior import PriorConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True, kw_only=True)
class DVAETrainConfig:
    """`nwt-train dvae`: dVAE-Adv training (Section 2.1, Appendix C.1-C.2.1)."""

    preset: str = "paper"
    model: DVAEConfig = field(default_factory=DVAEConfig.paper)
    critics: CriticConfig = field(default_factory=CriticConfig.paper)
    steps: int = 150_000
    batch_size: int = 16
    """Clips per step over all ranks (the paper: 16 over 16 GPUs)."""
    frames: int = 30
    """Frames per training window (1 s at 30 FPS)."""
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-7
    gamma: float = 5e-3
    """Weight of the adversarial generator loss (eq. 8)."""
    gp_weight: float = 10.0
    """WGAN-GP lambda (eq. 9)."""
    kl_midpoint: int = 5_000
    kl_growth: float = 1e-3
    seed: int = 0
    num_workers: int = 2
    """DataLoader workers per rank."""
    log_every: int = 10
    video_every: int = 500
    checkpoint_every: int = 500
    tf32: bool = True
    bf16: bool = False
    """bf16 autocast on GPU (the quantizer stays float32)."""
    device: str = "auto"
    accumulate: int = 1
    """Micro-batches per optimizer step (gradient accumulation). `batch_size` stays the global batch:
    each rank runs `batch_size / (ranks x accumulate)` clips at a time, so the paper's 16 clips fit
    one GPU as e.g. `batch_size=16 accumulate=16`."""
    kl_normaliser: str = "pixels"
    """N of beta_norm = beta * M / N: "pixels" (T*C*H*W of a clip, beta-VAE's input size),
    "feature_maps" (elements of one critic hidden map per clip, averaged over maps: L_recon is a sum of
    per-map means) or "memcodes" (N = M: beta_norm = beta)."""
    score_reduction: str = "mean"
    """Per-clip reduction of a Markovian score map in L_gan, the critic loss and the penalty: "mean"
    over its windows or "sum"."""
    gp_frames: str = "clip"
    """Gradient penalty of the 2D critics: per "clip" (one norm over all frames) or per "frame" (each
    frame's score and pixels on their own: the 2D critics see frames independently)."""
    pixel_weight: float = 0.0
    """Weight of a pixel L1 term added to L_recon (not in the paper; 0 = the paper's loss)."""
    feature_weight: float = 1.0
    """Weight of the critics' feature matching in L_recon (1 = the paper; 0 leaves pixels alone)."""
    feature_matching: str = "paper"
    """Per-map scale of the feature matching: "paper" (mean |D(x) - D(x~)| as eq. 7) or "relative"
    (each map's term divided by the mean |D(x)| of the real map, so critics whose features grow under
    WGAN training do not drown the pixel term)."""
    health_warmup: int = 1000
    """Steps before a Memcode head whose argmax perplexity stays under `collapse_perplexity` (two logs
    in a row) is warned about."""
    collapse_perplexity: float = 1.5

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "frames", "log_every", "video_every", "checkpoint_every",
                     "accumulate"):  # fmt: skip
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if self.lr <= 0 or self.adam_eps <= 0 or self.gamma < 0 or self.gp_weight < 0:
            raise ValueError("lr and adam_eps must be positive, gamma and gp_weight non-negative")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.batch_size % self.accumulate:
            raise ValueError(
                f"batch_size {self.batch_size} must divide into accumulate={self.accumulate} micro-batches"
            )
        choices = {
            "kl_normaliser": ("pixels", "feature_maps", "memcodes"),
            "score_reduction": ("mean", "sum"),
            "gp_frames": ("clip", "frame"),
            "feature_matching": ("paper", "relative"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        negative = min(self.pixel_weight, self.feature_weight, self.health_warmup) < 0
        if negative or self.collapse_perplexity < 1:
            raise ValueError(
                "pixel_weight, feature_weight and health_warmup must be >= 0, collapse_perplexity >= 1"
            )


def paper() -> DVAETrainConfig:
    """Table 4 and C.2.1: 256x224 frames, 30-frame clips, batch 16, Adam 1e-4 (0.9, 0.999, 1e-7)."""
    return DVAETrainConfig()


def tiny() -> DVAETrainConfig:
    """A step in about a second on a laptop CPU: the tiny model on 64x56 frames, 8-frame windows."""
    return DVAETrainConfig(
        preset="tiny",
        model=DVAEConfig.tiny(),
        critics=CriticConfig.tiny(),
        steps=200,
        lr=3e-4,  # with the pixel term: the mouth in 300 steps (1e-4: 1,000+; 1e-3: unstable)
        batch_size=2,
        frames=8,
        num_workers=0,
        log_every=5,
        video_every=50,
        checkpoint_every=50,
        kl_midpoint=100,
        kl_growth=0.05,
        # The critic features alone leave a small model's mouth a blur; see README, "Speech moves the face".
        pixel_weight=1.0,
        health_warmup=100,
    )


def tiny_real() -> DVAETrainConfig:
    """The tiny model for real footage: on real clips the critics' features grow until eq. 7's matching
    drowns the pixels, so each critic map's term is relative and the pixels weigh 20 (README,
    "nwt-train dvae": of five loss settings the only one that beat the grid baseline on a held-out real
    clip within 20 CPU minutes, on two seeds). On the demo's drawn face `tiny` draws the mouth sooner."""
    return dataclasses.replace(tiny(), preset="tiny-real", feature_matching="relative", pixel_weight=20.0)


PRESETS = {"paper": paper, "tiny": tiny, "tiny-real": tiny_real}


@dataclass(frozen=True, kw_only=True)
class PriorTrainConfig:
    """`nwt-train prior`: FAR or MAR prior training on Memcode shards (Section 2.2, Appendix C.2.2)."""

    preset: str = "paper"
    model: PriorConfig = field(default_factory=PriorConfig.paper)
    steps: int = 250_000
    batch_size: int = 64
    """Clips per step over all ranks (the paper: 64 over 8 GPUs)."""
    frames: int = 32
    """Frames per training window (C.2.2)."""
    lr: float = 1e-4
    lr_halving_every: int = 50_000
    lr_floor: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-7
    style_beta: float = 1.0
    """beta_l on KL(q(z_l|z) || N(0, I)); constant (C.2.2)."""
    seed: int = 0
    num_workers: int = 2
    log_every: int = 10
    checkpoint_every: int = 1000
    tf32: bool = True
    bf16: bool = False
    device: str = "auto"
    accumulate: int = 1
    """Micro-batches per optimizer step; `batch_size` stays the global batch (see DVAETrainConfig)."""

    def __post_init__(self) -> None:
        if isinstance(self.accumulate, int) and self.accumulate >= 1 and self.batch_size % self.accumulate:
            raise ValueError(
                f"batch_size {self.batch_size} must divide into accumulate={self.accumulate} micro-batches"
            )
        for name in ("steps", "batch_size", "frames", "lr_halving_every", "log_every", "checkpoint_every",
                     "accumulate"):  # fmt: skip
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if self.lr <= 0 or self.lr_floor <= 0 or self.adam_eps <= 0 or self.style_beta < 0:
            raise ValueError("lr, lr_floor and adam_eps must be positive, style_beta non-negative")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


def prior_paper(arch: str = "far") -> PriorTrainConfig:
    """Tables 5/6 and C.2.2: 32-frame windows, batch 64, Adam 1e-4 halving every 50k down to 1e-5."""
    return PriorTrainConfig(model=PriorConfig.paper(arch))


def prior_tiny(arch: str = "far") -> PriorTrainConfig:
    """A CPU-sized prior for the tiny dVAE: a step in a fraction of a second."""
    return PriorTrainConfig(
        preset="tiny",
        model=PriorConfig.tiny(arch),
        steps=300,
        batch_size=4,
        lr=1e-3,
        lr_halving_every=1000,
        lr_floor=1e-4,
        num_workers=0,
        log_every=5,
        checkpoint_every=50,
    )


PRIOR_PRESETS = {"paper": prior_paper, "tiny": prior_tiny}


def parse_value(text: str) -> Any:
    """`--set` values: JSON when they parse (numbers, true, lists), text otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _tuples(value: Any) -> Any:
    """JSON lists as the configs' tuples, at any depth (a prior's stages nest three deep)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def with_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """A copy of a (nested) frozen config with dotted keys replaced, e.g. {'model.heads': 4}."""
    nested: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(config)}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise ValueError(f"unknown config key {key!r}; known: {', '.join(sorted(names))}")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    hints = typing.get_type_hints(type(config))
    for name, value in direct.items():
        if isinstance(value, list):
            value = _tuples(value)
        if hints[name] is float and isinstance(value, int):
            value = float(value)
        direct[name] = value
    for name, values in nested.items():
        direct[name] = with_overrides(getattr(config, name), values)
    return dataclasses.replace(config, **direct)


def load_overrides(path: Path) -> dict[str, Any]:
    """A TOML file of overrides: top-level keys and [model] tables become dotted keys."""
    data = tomllib.loads(path.read_text())
    flat: dict[str, Any] = {}

    def walk(prefix: str, table: dict[str, Any]) -> None:
        for key, value in table.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                flat[f"{prefix}{key}"] = value

    walk("", data)
    return flat


def to_json(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
