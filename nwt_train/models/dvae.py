"""dVAE-Adv generator: per-frame 2D encoder, Conv3D temporal block, Memcodes, mirrored decoder (Table 4a).

Shapes (paper preset):
    video     (B, T, 3, 256, 224)   floats in [-1, 1]
    features  (B, T, 16, 14, 512)   encoder output, channels last (the Memcodes queries)
    indices   (B, T, 16, 14, 8)     one codebook index per head; T is never compressed
    logits    (B, T, 16, 14, 8, 8)  per head over the codebook, float32
    episode   (B,)                  int64 episode index (Appendix B.3)

Every layer is followed by LeakyReLU(0.2) unless stated (Table 4). Convolutions use TensorFlow-style
"same" padding (zeros; an even kernel pads one more on the right/bottom/later frames), so a stride-s
layer maps n to ceil(n / s): the paper's hyper-parameters (Adam eps 1e-7) suggest a Keras model, and
Table 4 lists 4x4 kernels whose shapes only work out with that padding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nwt_train.models.memcodes import Memcodes


@dataclass(frozen=True, kw_only=True)
class DVAEConfig:
    """Generator sizes. The defaults are the paper's (Table 4a); `paper()` and `tiny()` are the presets."""

    frame_size: tuple[int, int] = (256, 224)
    """(height, width) of the frames; must be divisible by 2 ** len(stage_channels)."""
    in_channels: int = 3
    """Channels of a frame (RGB)."""
    stem_channels: int = 32
    """Width of the first 4x4 stride-1 convolution."""
    stage_channels: tuple[int, ...] = (64, 128, 256, 256)
    """Width of each encoder stage (residual blocks, then a stride-2 conv); the decoder mirrors them."""
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3)
    """Residual blocks per stage."""
    kernel_size: int = 4
    """Spatial kernel of every 2D convolution of the generator (except 1x1 shortcuts)."""
    temporal_channels: tuple[int, ...] = (256, 512, 512)
    """Widths of the encoder's Conv3D temporal block; the decoder's block runs them in reverse."""
    temporal_kernels: tuple[tuple[int, int, int], ...] = ((4, 2, 2), (2, 2, 2), (2, 2, 2))
    """(time, height, width) kernels of the encoder's temporal block, stride 1 (no time compression)."""
    heads: int = 8
    """Memcode heads h: indices per grid position."""
    codebook_size: int = 8
    """Codebook rows N each head chooses from (log2(N) bits per head)."""
    codebook_dim: int = 1024
    """Codebook depth D."""
    attention_dim: int = 1024
    """Width of the query/key/value projections and of the attention output ("MHA, 1024")."""
    memcode_norm: bool = True
    """Normalise Memcodes queries and keys per head and learn a temperature (False: the paper's plain
    scaled dot product, whose first logits are buried in the Gumbel noise)."""
    memcode_logit_std: float = 1.28
    """Initial spread of the Memcodes logits with memcode_norm; 1.28 is the Gumbel noise's std."""
    num_episodes: int = 215
    """Rows of the episode embedding table (215 episodes in the paper's data)."""
    episode_dim: int = 64
    """Episode embedding width, tiled over the grid and concatenated to the Memcodes (not in the paper)."""
    negative_slope: float = 0.2
    """LeakyReLU slope."""

    def __post_init__(self) -> None:
        positive = (
            "in_channels stem_channels kernel_size heads codebook_size codebook_dim attention_dim "
            "num_episodes episode_dim"
        )
        for name in positive.split():
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("stage_channels", "stage_blocks", "temporal_channels"):
            value = getattr(self, name)
            if not value or not all(isinstance(v, int) and v >= 1 for v in value):
                raise ValueError(f"{name} must be a non-empty tuple of positive ints, got {value!r}")
        if len(self.stage_blocks) != len(self.stage_channels):
            raise ValueError(
                f"stage_blocks has {len(self.stage_blocks)} entries, stage_channels has "
                f"{len(self.stage_channels)}: give one block count per stage"
            )
        if len(self.temporal_kernels) != len(self.temporal_channels) or not all(
            len(k) == 3 and all(isinstance(v, int) and v >= 1 for v in k) for k in self.temporal_kernels
        ):
            raise ValueError(
                f"temporal_kernels must hold one (time, height, width) kernel of positive ints per "
                f"temporal_channels entry, got {self.temporal_kernels!r}"
            )
        if self.attention_dim % self.heads:
            raise ValueError(f"attention_dim {self.attention_dim} must be divisible by heads {self.heads}")
        factor = self.downsample
        if len(self.frame_size) != 2 or any(
            not isinstance(s, int) or s < 1 or s % factor for s in self.frame_size
        ):
            raise ValueError(
                f"frame_size must be (height, width) divisible by 2 ** len(stage_channels) = {factor}, "
                f"got {self.frame_size!r}"
            )
        if not self.memcode_logit_std > 0:
            raise ValueError(f"memcode_logit_std must be positive, got {self.memcode_logit_std!r}")
        if not self.negative_slope >= 0:
            raise ValueError(f"negative_slope must be >= 0, got {self.negative_slope!r}")

    @property
    def downsample(self) -> int:
        """Spatial downsampling factor of the encoder."""
        return 2 ** len(self.stage_channels)

    @property
    def grid_size(self) -> tuple[int, int]:
        """(height, width) of the Memcode grid for `frame_size` frames."""
        return self.frame_size[0] // self.downsample, self.frame_size[1] // self.downsample

    @property
    def bits_per_memcode(self) -> float:
        return self.heads * math.log2(self.codebook_size)

    @classmethod
    def paper(cls) -> DVAEConfig:
        """Table 4a: 256x224 frames -> 16x14 grid of 8-head Memcodes over a codebook of 8 (24 bits)."""
        return cls()

    @classmethod
    def tiny(cls) -> DVAEConfig:
        """An ~80k-parameter model for tests: 64x56 frames -> 8x7 grid, 4 heads over 8 codes."""
        return cls(
            frame_size=(64, 56),
            stem_channels=8,
            stage_channels=(8, 16, 16),
            stage_blocks=(1, 1, 1),
            temporal_channels=(16, 32),
            temporal_kernels=((2, 2, 2), (2, 2, 2)),
            heads=4,
            codebook_size=8,
            codebook_dim=16,
            attention_dim=32,
            num_episodes=4,
            episode_dim=8,
        )


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding of one dim: output ceil(size / stride); the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def keras_init_(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every conv/linear layer (Keras' defaults).

    The paper does not say how it initialises; PyTorch's default init shrinks the signal through this
    normalization-free stack (encoder output std ~0.006 at init) and He init blows it up through the
    residual stages (std ~190), while Glorot keeps the reconstruction's std near 0.3.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SameConv(nn.Module):
    """Conv2d/Conv3d with TensorFlow "same" zero padding, computed per input (works for even kernels).

    dims=2: (N, C, H, W); dims=3: (N, C, T, H, W).
    """

    def __init__(
        self,
        *,
        dims: int,
        in_channels: int,
        out_channels: int,
        kernel: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        groups: int = 1,
        dilation: int | tuple[int, ...] = 1,
    ) -> None:
        super().__init__()
        assert dims in (2, 3), f"dims must be 2 or 3, got {dims}"
        self.kernel = (kernel,) * dims if isinstance(kernel, int) else tuple(kernel)
        self.stride = (stride,) * dims if isinstance(stride, int) else tuple(stride)
        self.dilation = (dilation,) * dims if isinstance(dilation, int) else tuple(dilation)
        assert len(self.kernel) == len(self.stride) == len(self.dilation) == dims, (
            f"kernel {self.kernel}, stride {self.stride} and dilation {self.dilation} need {dims} entries"
        )
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.conv = conv(
            in_channels, out_channels, self.kernel, self.stride, groups=groups, dilation=self.dilation
        )
        # A dilated kernel covers (k - 1) * d + 1 inputs: that span is what "same" padding pads for.
        self.span = tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilation, strict=True))

    def forward(self, x: Tensor) -> Tensor:
        pad: list[int] = []
        for size, k, s in reversed(list(zip(x.shape[2:], self.span, self.stride, strict=True))):
            pad.extend(_same_padding(size, k, s))  # F.pad wants the last dim first
        return self.conv(F.pad(x, pad))


class ResBlock(nn.Module):
    """Residual block [17] on (N, C, H, W): two kxk stride-1 convs, a 1x1 shortcut when C changes.

    y = LReLU(shortcut(x) + conv(LReLU(conv(x)))). Two convs per block and no normalization are our
    choice: Table 4a lists one conv spec per "Res" row and mentions no normalization layers.
    """

    def __init__(self, *, in_channels: int, out_channels: int, kernel: int, negative_slope: float) -> None:
        super().__init__()
        self.conv1 = SameConv(dims=2, in_channels=in_channels, out_channels=out_channels, kernel=kernel)
        self.conv2 = SameConv(dims=2, in_channels=out_channels, out_channels=out_channels, kernel=kernel)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.shortcut(x) + self.conv2(self.act(self.conv1(x))))


def _conv_act(
    *, dims: int, in_channels: int, out_channels: int, kernel, stride=1, slope: float
) -> nn.Sequential:
    return nn.Sequential(
        SameConv(dims=dims, in_channels=in_channels, out_channels=out_channels, kernel=kernel, stride=stride),
        nn.LeakyReLU(slope),
    )


class Encoder(nn.Module):
    """(B, T, 3, H, W) -> (B, T, H/2^S, W/2^S, temporal_channels[-1]) with S stages; T is kept."""

    def __init__(self, config: DVAEConfig) -> None:
        super().__init__()
        c, slope, k = config, config.negative_slope, config.kernel_size
        layers: list[nn.Module] = [
            _conv_act(dims=2, in_channels=c.in_channels, out_channels=c.stem_channels, kernel=k, slope=slope)
        ]
        width = c.stem_channels
        for channels, blocks in zip(c.stage_channels, c.stage_blocks, strict=True):
            for i in range(blocks):
                layers.append(
                    ResBlock(
                        in_channels=width if i == 0 else channels,
                        out_channels=channels,
                        kernel=k,
                        negative_slope=slope,
                    )
                )
            width = channels
            layers.append(
                _conv_act(dims=2, in_channels=width, out_channels=width, kernel=k, stride=2, slope=slope)
            )
        self.spatial = nn.Sequential(*layers)
        temporal: list[nn.Module] = []
        for channels, kernel in zip(c.temporal_channels, c.temporal_kernels, strict=True):
            temporal.append(
                _conv_act(dims=3, in_channels=width, out_channels=channels, kernel=kernel, slope=slope)
            )
            width = channels
        self.temporal = nn.Sequential(*temporal)
        self.in_channels, self.downsample, self.out_channels = c.in_channels, c.downsample, width

    def forward(self, video: Tensor) -> Tensor:
        assert video.ndim == 5, f"video must be (B, T, C, H, W), got shape {tuple(video.shape)}"
        b, t, ch, h, w = video.shape
        assert ch == self.in_channels, f"video has {ch} channels, the encoder expects {self.in_channels}"
        assert h % self.downsample == 0 and w % self.downsample == 0, (
            f"frame size {h}x{w} must be divisible by the encoder's downsampling {self.downsample}"
        )
        x = self.spatial(video.reshape(b * t, ch, h, w))  # frames independently: (B*T, C, h, w)
        x = x.unflatten(0, (b, t)).transpose(1, 2)  # (B, C, T, h, w)
        x = self.temporal(x)
        return x.permute(0, 2, 3, 4, 1)  # (B, T, h, w, C): channels last for the attention


class Decoder(nn.Module):
    """(B, T, h, w, C_in) -> (B, T, 3, h*2^S, w*2^S) in [-1, 1]: the encoder mirrored, NN upsampling."""

    def __init__(self, config: DVAEConfig, *, in_channels: int) -> None:
        super().__init__()
        c, slope, k = config, config.negative_slope, config.kernel_size
        temporal: list[nn.Module] = []
        width = in_channels
        for channels, kernel in zip(reversed(c.temporal_channels), reversed(c.temporal_kernels), strict=True):
            temporal.append(
                _conv_act(dims=3, in_channels=width, out_channels=channels, kernel=kernel, slope=slope)
            )
            width = channels
        self.temporal = nn.Sequential(*temporal)
        layers: list[nn.Module] = []
        for channels, blocks in zip(reversed(c.stage_channels), reversed(c.stage_blocks), strict=True):
            # "4x4, stride = 2, NNU + Conv2D": x2 nearest-neighbour upsampling, then a stride-1 conv.
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                _conv_act(dims=2, in_channels=width, out_channels=channels, kernel=k, slope=slope),
            ]
            width = channels
            layers += [
                ResBlock(in_channels=channels, out_channels=channels, kernel=k, negative_slope=slope)
                for _ in range(blocks)
            ]
        layers += [SameConv(dims=2, in_channels=width, out_channels=c.in_channels, kernel=k), nn.Tanh()]
        self.spatial = nn.Sequential(*layers)
        self.in_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        assert x.ndim == 5 and x.shape[-1] == self.in_channels, (
            f"decoder input must be (B, T, h, w, {self.in_channels}), got shape {tuple(x.shape)}"
        )
        b, t = x.shape[:2]
        x = self.temporal(x.permute(0, 4, 1, 2, 3))  # (B, C, T, h, w)
        x = x.transpose(1, 2).flatten(0, 1)  # (B*T, C, h, w)
        return self.spatial(x).unflatten(0, (b, t))  # (B, T, 3, H, W)


class DVAE(nn.Module):
    """Encoder -> Memcodes -> (concat tiled episode embedding) -> Decoder."""

    def __init__(self, config: DVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.memcodes = Memcodes(
            dim=self.encoder.out_channels,
            heads=config.heads,
            codebook_size=config.codebook_size,
            codebook_dim=config.codebook_dim,
            attention_dim=config.attention_dim,
            out_dim=config.attention_dim,
            normalize=config.memcode_norm,
            logit_std=config.memcode_logit_std,
        )
        self.episode_embedding = nn.Embedding(config.num_episodes, config.episode_dim)
        self.decoder = Decoder(config, in_channels=config.attention_dim + config.episode_dim)
        keras_init_(self)

    def _decode_features(self, features: Tensor, episode: Tensor) -> Tensor:
        """features (B, T, h, w, attention_dim), episode (B,) -> video (B, T, 3, H, W)."""
        assert episode.shape == features.shape[:1], (
            f"episode must be (B,) = ({features.shape[0]},), got shape {tuple(episode.shape)}"
        )
        emb = self.episode_embedding(episode)  # (B, E)
        emb = emb[:, None, None, None, :].expand(*features.shape[:-1], emb.shape[-1])  # tiled over T, h, w
        return self.decoder(torch.cat([features, emb.to(features.dtype)], dim=-1))

    def forward(
        self, video: Tensor, episode: Tensor, *, sample: bool | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """video (B, T, 3, H, W), episode (B,) -> (reconstruction (B, T, 3, H, W),
        indices (B, T, h, w, heads), logits (B, T, h, w, heads, codebook_size)).

        sample: Gumbel-max (True) or argmax (False) Memcodes; None samples in training mode only.
        """
        features, indices, logits = self.memcodes(self.encoder(video), sample=sample)
        return self._decode_features(features, episode), indices, logits

    @torch.no_grad()
    def encode(self, video: Tensor, sample: bool) -> Tensor:
        """video (B, T, 3, H, W) -> indices (B, T, h, w, heads); sample=False is argmax (deterministic)."""
        return self.memcodes(self.encoder(video), sample=sample)[1]

    def decode(self, indices: Tensor, episode: Tensor) -> Tensor:
        """indices (B, T, h, w, heads), episode (B,) -> video (B, T, 3, H, W) in [-1, 1]."""
        assert indices.ndim == 5, f"indices must be (B, T, h, w, heads), got shape {tuple(indices.shape)}"
        return self._decode_features(self.memcodes.decode_indices(indices), episode)

    @property
    def temporal_reach(self) -> int:
        """Frames on either side that can affect a frame's codes or pixels (the Conv3D blocks' reach)."""
        return sum(k[0] - 1 for k in self.config.temporal_kernels)


def time_chunks(fn: Callable[[Tensor], Tensor], x: Tensor, *, chunk: int, context: int) -> Iterator[Tensor]:
    """fn over dim 1 (time) of x, yielded a chunk of `chunk` frames at a time, each computed with
    `context` frames on either side: a consumer that writes each chunk out holds only one."""
    t = x.shape[1]
    for start in range(0, t, chunk):
        lo, hi = max(0, start - context), min(t, start + chunk + context)
        out = fn(x[:, lo:hi])
        yield out[:, start - lo : start - lo + min(chunk, t - start)]


def in_time_chunks(fn: Callable[[Tensor], Tensor], x: Tensor, *, chunk: int, context: int) -> Tensor:
    """fn over dim 1 (time) of x in chunks of `chunk` frames, each seen with `context` frames around it.

    With context >= the model's temporal reach this equals fn(x) on deterministic models, at a memory
    cost bounded by chunk + 2 * context frames: long clips encode and decode on any device.
    """
    if x.shape[1] <= chunk + 2 * context:
        return fn(x)
    return torch.cat(list(time_chunks(fn, x, chunk=chunk, context=context)), dim=1)
