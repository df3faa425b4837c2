"""dVAE-Adv critics (Table 4b, Appendix B.1.4): Markovian window critics with multi-scale strides.

Paper preset: one Conv3D critic on the clip (temporal coherence) and two grouped Conv2D critics on
each frame independently (frame quality). Each critic is a stack of convolutions, every one followed
by LeakyReLU(0.2), ending in a 1x1 "Linear" convolution to one score per window (no activation).

Shapes:
    video     (B, T, 3, H, W)
    score     (B, T', h, w)              one WGAN score per Markovian window
    features  list of (B, T', C, h, w)   the hidden layers (all but the output layer), for L_recon

Table 4b gives no padding; we use the generator's TensorFlow "same" padding, so a stride-s layer maps n
to ceil(n / s) and T' = T. Our reading of the garbled table text repeats some rows (first Conv2D critic:
two 4x4 / stride 2 / groups 64 / 512 layers; second: two 4x4 / stride 2 / groups 256 / 1024 layers);
the layer lists are data here, so another reading is a config change.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from nwt_train.models.dvae import SameConv, keras_init_


@dataclass(frozen=True, kw_only=True)
class ConvSpec:
    """One hidden layer of a critic: a convolution followed by LeakyReLU."""

    kernel: tuple[int, ...]
    """(height, width) for a 2D critic, (time, height, width) for a 3D critic."""
    stride: tuple[int, ...]
    """Same length as kernel."""
    channels: int
    """Output channels."""
    groups: int = 1
    """Grouped convolution: input and output channels must both be divisible by it."""


@dataclass(frozen=True, kw_only=True)
class CriticSpec:
    """One critic: hidden layers, then an implicit 1x1 linear output layer to one channel."""

    name: str
    dims: int
    """2: runs on every frame independently; 3: runs on the clip."""
    layers: tuple[ConvSpec, ...]


def _c2(k: int, s: int, c: int, g: int = 1) -> ConvSpec:
    return ConvSpec(kernel=(k, k), stride=(s, s), channels=c, groups=g)


def _c3(k: tuple[int, int, int], s: tuple[int, int, int], c: int) -> ConvSpec:
    return ConvSpec(kernel=k, stride=s, channels=c)


@dataclass(frozen=True, kw_only=True)
class CriticConfig:
    """The set of critics S_C. Defaults are the paper's (Table 4b); `paper()` and `tiny()` are presets."""

    critics: tuple[CriticSpec, ...] = (
        CriticSpec(
            name="conv3d",
            dims=3,
            layers=(
                _c3((1, 4, 4), (1, 1, 1), 32),
                _c3((2, 4, 4), (1, 4, 4), 64),
                _c3((2, 4, 4), (1, 4, 4), 512),
                _c3((4, 2, 2), (1, 1, 1), 512),
            ),
        ),
        CriticSpec(
            name="conv2d_a",
            dims=2,
            layers=(
                _c2(2, 1, 32),
                _c2(4, 2, 128, 16),
                _c2(4, 2, 512, 64),
                _c2(4, 2, 512, 64),
                _c2(2, 1, 512),
            ),
        ),
        CriticSpec(
            name="conv2d_b",
            dims=2,
            layers=(
                _c2(4, 1, 32),
                _c2(8, 4, 128, 16),
                _c2(4, 2, 512, 64),
                _c2(4, 2, 512, 64),
                _c2(4, 2, 1024, 256),
                _c2(4, 2, 1024, 256),
                _c2(2, 1, 1024),
            ),
        ),
    )
    """The critics; each ends with an implicit 1x1 linear layer to one score channel."""
    in_channels: int = 3
    """Channels of a frame (RGB)."""
    negative_slope: float = 0.2
    """LeakyReLU slope."""

    def __post_init__(self) -> None:
        if not self.critics:
            raise ValueError("critics must list at least one critic")
        if not isinstance(self.in_channels, int) or self.in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {self.in_channels!r}")
        if not self.negative_slope >= 0:
            raise ValueError(f"negative_slope must be >= 0, got {self.negative_slope!r}")
        names = [c.name for c in self.critics]
        if len(set(names)) != len(names):
            raise ValueError(f"critics must have distinct names, got {names}")
        for critic in self.critics:
            where = f"critics[{critic.name!r}]"
            if critic.dims not in (2, 3):
                raise ValueError(f"{where}.dims must be 2 or 3, got {critic.dims!r}")
            if not critic.layers:
                raise ValueError(f"{where}.layers must hold at least one hidden layer")
            width = self.in_channels
            for i, layer in enumerate(critic.layers):
                at = f"{where}.layers[{i}]"
                if len(layer.kernel) != critic.dims or len(layer.stride) != critic.dims:
                    raise ValueError(f"{at}: kernel and stride need {critic.dims} entries, got {layer}")
                if min(*layer.kernel, *layer.stride, layer.channels, layer.groups) < 1:
                    raise ValueError(
                        f"{at}: kernel, stride, channels and groups must be positive, got {layer}"
                    )
                if width % layer.groups or layer.channels % layer.groups:
                    raise ValueError(
                        f"{at}.groups {layer.groups} must divide its input ({width}) and output "
                        f"({layer.channels}) channels"
                    )
                width = layer.channels

    @classmethod
    def paper(cls) -> CriticConfig:
        """Table 4b: a Conv3D critic and two grouped Conv2D critics with different strides."""
        return cls()

    @classmethod
    def tiny(cls) -> CriticConfig:
        """Small critics with the paper's structure, for tests on 64x56 frames."""
        return cls(
            critics=(
                CriticSpec(
                    name="conv3d",
                    dims=3,
                    layers=(
                        _c3((1, 4, 4), (1, 1, 1), 8),
                        _c3((2, 4, 4), (1, 4, 4), 16),
                        _c3((2, 2, 2), (1, 1, 1), 16),
                    ),
                ),
                CriticSpec(name="conv2d_a", dims=2, layers=(_c2(2, 1, 8), _c2(4, 2, 16, 4), _c2(2, 1, 16))),
                CriticSpec(name="conv2d_b", dims=2, layers=(_c2(4, 1, 8), _c2(8, 4, 32, 4), _c2(2, 1, 32))),
            )
        )


class Critic(nn.Module):
    """A Markovian window critic: video (B, T, C, H, W) -> (score (B, T', h, w), hidden features)."""

    def __init__(self, spec: CriticSpec, *, in_channels: int, negative_slope: float) -> None:
        super().__init__()
        self.name, self.dims, self.in_channels = spec.name, spec.dims, in_channels
        layers: list[nn.Module] = []
        width = in_channels
        for layer in spec.layers:
            conv = SameConv(
                dims=spec.dims,
                in_channels=width,
                out_channels=layer.channels,
                kernel=layer.kernel,
                stride=layer.stride,
                groups=layer.groups,
            )
            layers.append(nn.Sequential(conv, nn.LeakyReLU(negative_slope)))
            width = layer.channels
        self.hidden = nn.ModuleList(layers)
        self.out = nn.Conv2d(width, 1, 1) if spec.dims == 2 else nn.Conv3d(width, 1, 1)  # "1x1, Linear, 1"
        keras_init_(self)

    def forward(self, video: Tensor) -> tuple[Tensor, list[Tensor]]:
        assert video.ndim == 5, f"video must be (B, T, C, H, W), got shape {tuple(video.shape)}"
        b, t, c = video.shape[:3]
        assert c == self.in_channels, (
            f"video has {c} channels, critic {self.name!r} expects {self.in_channels}"
        )
        # 2D: frames independently, (B*T, C, H, W); 3D: (B, C, T, H, W).
        x = video.flatten(0, 1) if self.dims == 2 else video.transpose(1, 2)
        features: list[Tensor] = []
        for layer in self.hidden:
            x = layer(x)
            features.append(x.unflatten(0, (b, t)) if self.dims == 2 else x.transpose(1, 2))
        score = self.out(x)
        score = score.unflatten(0, (b, t))[:, :, 0] if self.dims == 2 else score[:, 0]
        return score, features  # score (B, T', h, w); features (B, T', C, h, w) each


class Critics(nn.ModuleDict):
    """All critics of a CriticConfig by name; `forward` returns {name: (score, features)}."""

    def __init__(self, config: CriticConfig) -> None:
        super().__init__(
            {
                spec.name: Critic(spec, in_channels=config.in_channels, negative_slope=config.negative_slope)
                for spec in config.critics
            }
        )
        self.config = config

    def forward(self, video: Tensor) -> dict[str, tuple[Tensor, list[Tensor]]]:
        return {name: critic(video) for name, critic in self.items()}
