"""Autoregressive priors p(z | audio) over dVAE Memcodes (Section 2.2, Appendix B.2, Tables 5 and 6).

Two decoders share the audio and style encoders:
    FAR  predicts a whole frame of Memcodes per step: causal and dilated in time, bidirectional in space.
    MAR  predicts one Memcode (all heads) per step, in raster order over (time, row, column).

Shapes (paper preset):
    codes    (B, T, 16, 14, 8)     int64 Memcode indices of the dVAE (grid height, width, heads)
    mel      (B, 80, 4T)           power mel, 4 mel frames per video frame (Table 7)
    episode  (B,)                  int64 episode index (Appendix B.3)
    logits   (B, T, 16, 14, 8, 8)  per head over the codebook

Every layer is followed by Mish unless stated (Tables 5 and 6). The decoders carry an incremental
`step()` next to `forward()`: each causal convolution keeps a queue of the inputs its taps still need
(the fast-wavenet caching of Paine et al., B.2.3), so a generation step costs the same at frame 1000 as
at frame 1. Tests check that both paths give the same logits.

Our reading of the partly garbled tables (README, "Prior architecture"): a residual row is a block of
two convolutions of the row's kernel, like the dVAE's Res rows; each head has an embedding table of
its own, concatenated (8 x 128 FAR, 8 x 64 MAR); FAR's up path mirrors its down path. Both of MAR's
block convolutions look back (6139 Memcodes, 216.3 M parameters as Table 3); FAR's second one has a
time kernel of 1 (`causal_convs=1`), else it would see 53 frames where C.2.2 allows 27.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nwt_train.models.dvae import SameConv, _same_padding

StageSpec = tuple[tuple[int, int, int], ...]
"""One residual stage of a decoder: (time dilation, hidden width, spatial kernel) per residual block.

The spatial kernel is FAR's (Table 5's 3x2x2 rows: 2, its 3x1x1 rows: 1); MAR's rows have 1.
"""


@dataclass(frozen=True, kw_only=True)
class PriorConfig:
    """Prior sizes. The defaults are the paper's FAR (Table 5); see `paper(arch)` and `tiny(arch)`."""

    arch: str = "far"
    """far (a frame per step) or mar (a Memcode per step)."""
    grid: tuple[int, int] = (16, 14)
    """(height, width) of the dVAE's Memcode grid; taken from the Memcode shards at training."""
    heads: int = 8
    codebook_size: int = 8
    n_mels: int = 80
    mel_per_frame: int = 4
    """Mel frames per video frame (hop 200 at 24 kHz, 30 FPS): the audio encoder's first stride."""
    num_episodes: int = 215
    episode_dim: int = 64
    """Episode embedding width, tiled and concatenated to the conditioning (B.3; not in the paper)."""
    audio_channels: tuple[int, ...] = (256, 256, 256, 512, 512, 512, 1024)
    """Conv1D widths of the audio encoder; the first has kernel = stride = mel_per_frame."""
    audio_dilations: tuple[int, ...] = (1, 1, 1, 2, 4, 8)
    """Dilations of the kernel-3 Conv1D layers after the first."""
    upsample_channels: tuple[int, ...] = (256, 128)
    """One nearest-neighbour x2 + SC3D stage per entry, from 1x1 up to the conditioning grid."""
    upsample_repeats: int = 2
    """Extra SC3D layers after each upsampling SC3D ("2x: 3x2x2")."""
    style_dim: int = 16
    style_embed_dim: int = 128
    """Embedding depth per head of the style encoder's input; the heads' embeddings are concatenated."""
    style_channels: tuple[int, ...] = (256, 512, 512, 512)
    style_time_kernels: tuple[int, ...] = (2, 2, 3, 3)
    """Time taps of the style Conv3D layers (2x2x2, 2x2x2, 3x2x2, 3x2x2 in Tables 5/6)."""
    style_dilations: tuple[int, ...] = (1, 1, 3, 9)
    """Time dilations of the style Conv3D layers (the first also halves the grid)."""
    min_log_std: float = -4.0
    """The style posterior's std never drops below exp(-4) (C.2.2)."""
    embed_dim: int = 128
    """Embedding depth per head of the previous Memcodes; the heads' embeddings are concatenated
    (Tables 5/6: "vocab_size = 8, depth = 128" per head), so the decoder reads heads * embed_dim."""
    channels: int = 1024
    """Residual width of the decoder."""
    stages: tuple[StageSpec, ...] = field(
        default_factory=lambda: (
            ((1, 1024, 2), (1, 1024, 2), (2, 1024, 1)),
            ((1, 1024, 2), (2, 1024, 2), (2, 1024, 1)),
            ((1, 1024, 2), (2, 1024, 2), (1, 1024, 2)),
        )
    )
    """Residual stages; the conditioning is concatenated and projected before each stage."""
    kernel: int = 3
    """Taps of the causal convolutions: frames (FAR) or sequence positions (MAR)."""
    causal_convs: int = 1
    """How many of a residual block's two convolutions look back in time. 2 reads each row of
    Tables 5/6 as two convolutions of the listed kernel (MAR; FAR would then see 53 frames back);
    1 gives the second convolution a time kernel of 1 (same spatial kernel), which keeps FAR within
    C.2.2's 27 frames (see the README)."""
    frame_channels: int = 1024
    """FAR: width of the per-frame Conv2D layers that downsample and upsample the grid."""
    downsample: int = 2
    """FAR: stride-2 Conv2D layers before the residual stages (the grid is padded to a multiple);
    with a 4x4 stride-1 Conv2D between two of them, mirrored on the way up (Table 5)."""
    max_receptive_frames: int = 27
    """The decoder may see at most this many previous frames (C.2.2); see `receptive_frames`."""

    def __post_init__(self) -> None:
        if self.arch not in ("far", "mar"):
            raise ValueError(f"arch must be far or mar, got {self.arch!r}")
        for name in ("heads", "codebook_size", "n_mels", "mel_per_frame", "num_episodes", "episode_dim",
                     "style_dim", "style_embed_dim", "embed_dim", "channels", "kernel",
                     "frame_channels"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.kernel < 2:
            raise ValueError(f"kernel must be >= 2 to look back, got {self.kernel}")
        if self.causal_convs not in (1, 2):
            raise ValueError(f"causal_convs must be 1 or 2, got {self.causal_convs!r}")
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"grid must be (height, width) of positive ints, got {self.grid!r}")
        if len(self.audio_dilations) != len(self.audio_channels) - 1:
            raise ValueError("audio_dilations needs one entry per audio_channels entry after the first")
        if not len(self.style_dilations) == len(self.style_time_kernels) == len(self.style_channels):
            raise ValueError("style_dilations and style_time_kernels need one entry per style_channels entry")
        if not self.stages or not all(stage for stage in self.stages):
            raise ValueError("stages must hold at least one non-empty stage of residual blocks")
        for row in (row for stage in self.stages for row in stage):
            if len(row) != 3 or not all(isinstance(v, int) and v >= 1 for v in row):
                raise ValueError(f"a stage row is (dilation, width, spatial kernel), positive ints: {row!r}")
            if self.arch == "mar" and row[2] != 1:
                raise ValueError(f"MAR convolutions are 1-D: spatial kernel must be 1, got {row!r}")
        if len(self.upsample_channels) != upsample_stages(self.condition_grid):
            raise ValueError(
                f"upsample_channels needs {upsample_stages(self.condition_grid)} entries to reach the "
                f"{self.condition_grid} conditioning grid, got {len(self.upsample_channels)}"
            )
        if self.receptive_frames > self.max_receptive_frames:
            raise ValueError(
                f"the decoder sees {self.receptive_frames} frames back, more than max_receptive_frames "
                f"{self.max_receptive_frames}: lower the dilations or causal_convs"
            )

    @property
    def padded_grid(self) -> tuple[int, int]:
        """FAR pads the grid to a multiple of 2 ** downsample (16x14 -> 16x16, C.2.2); MAR does not."""
        if self.arch == "mar":
            return self.grid
        factor = 2**self.downsample
        return tuple(-(-g // factor) * factor for g in self.grid)  # type: ignore[return-value]

    @property
    def condition_grid(self) -> tuple[int, int]:
        """Spatial size at which audio, style and episode meet the decoder."""
        if self.arch == "mar":
            return self.grid
        factor = 2**self.downsample
        return tuple(g // factor for g in self.padded_grid)  # type: ignore[return-value]

    @property
    def receptive_positions(self) -> int:
        """Previous elements (frames for FAR, Memcodes for MAR) one prediction depends on.

        Each causal convolution adds (kernel - 1) * dilation; the input shift by one adds 1.
        """
        looking_back = sum(dilation for stage in self.stages for dilation, _, _ in stage)
        return 1 + (self.kernel - 1) * self.causal_convs * looking_back

    @property
    def positions_per_frame(self) -> int:
        return 1 if self.arch == "far" else self.grid[0] * self.grid[1]

    @property
    def receptive_frames(self) -> int:
        """How many frames back a prediction sees at its own grid position.

        FAR: the previous frames it depends on. MAR: whole frames within its receptive_positions
        Memcodes (6139 Memcodes = 27.4 frames of 16x14 reach the same position 27 frames back,
        never 28; see `receptive_frames_exact`).
        """
        return self.receptive_positions // self.positions_per_frame

    @property
    def receptive_frames_exact(self) -> float:
        """receptive_positions in frames, as a fraction (MAR: Memcodes / Memcodes per frame)."""
        return self.receptive_positions / self.positions_per_frame

    @classmethod
    def paper(cls, arch: str = "far") -> PriorConfig:
        """Table 5 (FAR) or Table 6 (MAR)."""
        if arch == "far":
            return cls()
        return cls(
            arch="mar",
            upsample_channels=(256, 128, 64, 64),
            embed_dim=64,
            channels=512,
            stages=(
                ((1, 1024, 1), (2, 2048, 1), (4, 1024, 1)),
                ((8, 1024, 1), (16, 2048, 1), (32, 1024, 1)),
                ((64, 1024, 1), (128, 1024, 1), (256, 1024, 1), (512, 1024, 1)),
            ),
            kernel=4,
            causal_convs=2,
        )

    @classmethod
    def tiny(cls, arch: str = "far") -> PriorConfig:
        """A CPU-sized prior for the tiny dVAE's 8x7 grid of 4 heads."""
        common = dict(
            grid=(8, 7),
            heads=4,
            num_episodes=4,
            episode_dim=8,
            audio_channels=(32, 32, 48),
            audio_dilations=(1, 2),
            upsample_repeats=1,
            style_embed_dim=4,
            style_channels=(16, 32),
            style_time_kernels=(2, 3),
            style_dilations=(1, 3),
            embed_dim=8,
            channels=48,
        )
        if arch == "far":
            return cls(
                **common,
                upsample_channels=(32, 32),
                stages=(((1, 48, 2), (2, 48, 2)), ((1, 48, 2), (2, 48, 2))),
                frame_channels=48,
                downsample=1,
            )
        return cls(
            **common,
            arch="mar",
            upsample_channels=(32, 32, 32),
            stages=(((1, 48, 1), (2, 48, 1), (4, 48, 1)), ((8, 48, 1), (16, 48, 1), (32, 48, 1))),
            kernel=4,
            causal_convs=2,
        )


def upsample_stages(size: tuple[int, int]) -> int:
    """Doublings from 1x1 until both sides reach `size` (the result is then cropped)."""
    return max(0, math.ceil(math.log2(max(size))))


def mish(x: Tensor) -> Tensor:
    return F.mish(x)


class CodeEmbedding(nn.Module):
    """(..., heads) Memcode indices -> (..., heads * dim): each head's own table, concatenated.

    Tables 5/6 give each head an embedding of its own depth ("vocab_size = 8, depth = 128"); one
    table row per (head, code), the heads' rows side by side.
    """

    def __init__(self, heads: int, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(heads * codebook_size, dim)
        self.register_buffer("offsets", torch.arange(heads) * codebook_size, persistent=False)
        self.out_channels = heads * dim

    def forward(self, codes: Tensor) -> Tensor:
        return self.table(codes.long() + self.offsets).flatten(-2)


class SpatiallyConnected3d(nn.Module):
    """SC3D (B.2.1): weights of its own at every grid position, shared over time.

    Patches are gathered by shifted slices (the paper's "eye matrix" patch extraction) and each
    position multiplies its patch by its own matrix. Zero "same" padding in time and space.
    """

    def __init__(self, in_channels: int, out_channels: int, size: tuple[int, int],
                 kernel: tuple[int, int, int] = (3, 2, 2)) -> None:  # fmt: skip
        super().__init__()
        self.kernel, self.size = kernel, size
        fan_in = in_channels * math.prod(kernel)
        bound = math.sqrt(6 / (fan_in + out_channels))  # Glorot uniform, per position
        self.weight = nn.Parameter(torch.empty(*size, fan_in, out_channels).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out_channels, 1, *size))

    def forward(self, x: Tensor) -> Tensor:
        t, h, w = x.shape[2:]
        assert (h, w) == tuple(self.size), f"SC3D built for {self.size}, got a {h}x{w} grid"
        pad: list[int] = []
        for size, k in reversed(list(zip((t, h, w), self.kernel, strict=True))):
            pad.extend(_same_padding(size, k, 1))
        x = F.pad(x, pad)
        kt, kh, kw = self.kernel
        patches = torch.stack(
            [
                x[:, :, i : i + t, j : j + h, k : k + w]
                for i in range(kt)
                for j in range(kh)
                for k in range(kw)
            ],
            dim=2,
        ).flatten(1, 2)  # (B, C * kt*kh*kw, T, H, W), channel-major like the weight's fan_in
        return torch.einsum("bkthw,hwko->bothw", patches, self.weight) + self.bias


class Upsampler(nn.Module):
    """(B, C, T, 1, 1) -> (B, C', T, h, w): nearest x2 then SC3D layers per stage, cropped to `size`."""

    def __init__(
        self, in_channels: int, channels: tuple[int, ...], repeats: int, size: tuple[int, int]
    ) -> None:
        super().__init__()
        self.size = size
        self.stages = nn.ModuleList()
        side = 1
        for width in channels:
            side *= 2
            layers = [SpatiallyConnected3d(in_channels, width, (side, side))]
            layers += [SpatiallyConnected3d(width, width, (side, side)) for _ in range(repeats)]
            self.stages.append(nn.ModuleList(layers))
            in_channels = width
        self.out_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        for layers in self.stages:
            x = x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
            for layer in layers:
                x = mish(layer(x))
        return x[..., : self.size[0], : self.size[1]]


class AudioEncoder(nn.Module):
    """Mel (B, n_mels, 4T) -> features (B, C, T, h, w): Conv1D stack, then upsampled over the grid."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        widths = config.audio_channels
        self.convs = nn.ModuleList(
            [nn.Conv1d(config.n_mels, widths[0], config.mel_per_frame, stride=config.mel_per_frame)]
        )
        for c_in, c_out, d in zip(widths[:-1], widths[1:], config.audio_dilations, strict=True):
            self.convs.append(nn.Conv1d(c_in, c_out, 3, padding=d, dilation=d))
        self.upsample = Upsampler(widths[-1], config.upsample_channels, config.upsample_repeats,
                                  config.condition_grid)  # fmt: skip
        self.out_channels = self.upsample.out_channels
        # Frames on either side that reach a frame's features: the dilated convolutions (kernel 3) and
        # every SC3D layer of the upsampler (kernel 3 in time); the first conv sees its own frame only.
        self.temporal_reach = sum(config.audio_dilations) + sum(len(stage) for stage in self.upsample.stages)

    def forward(self, mel: Tensor) -> Tensor:
        # Power mel spans many decades; the log (floored at -50 dB) is what speech models read.
        x = mel.clamp_min(1e-5).log()
        for conv in self.convs:
            x = mish(conv(x))
        return self.upsample(x[..., None, None])


class StyleEncoder(nn.Module):
    """q(z_l | z) (B.2.2): Conv3D over embedded Memcodes, global average pooling, a Gaussian posterior."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.min_log_std = config.min_log_std
        self.embed = CodeEmbedding(config.heads, config.codebook_size, config.style_embed_dim)
        layers: list[nn.Module] = []
        c_in = self.embed.out_channels
        rows = zip(config.style_channels, config.style_time_kernels, config.style_dilations, strict=True)
        for i, (width, taps, d) in enumerate(rows):
            # The first layer also halves the grid (stride 1x2x2); the others are dilated in time.
            layers.append(
                SameConv(
                    dims=3,
                    in_channels=c_in,
                    out_channels=width,
                    kernel=(taps, 2, 2),
                    stride=(1, 2, 2) if i == 0 else 1,
                    dilation=(d, 1, 1),
                )
            )
            c_in = width
        self.convs = nn.ModuleList(layers)
        self.posterior = nn.Linear(c_in, 2 * config.style_dim)
        self.upsample = Upsampler(config.style_dim, config.upsample_channels, config.upsample_repeats,
                                  config.condition_grid)  # fmt: skip
        self.out_channels = self.upsample.out_channels

    def posterior_params(self, codes: Tensor) -> tuple[Tensor, Tensor]:
        """codes (B, T, h, w, heads) -> (mean, log std), each (B, style_dim)."""
        x = self.embed(codes).permute(0, 4, 1, 2, 3)  # (B, E, T, h, w)
        for conv in self.convs:
            x = mish(conv(x))
        mean, raw = self.posterior(x.mean(dim=(2, 3, 4))).chunk(2, dim=-1)
        # A smooth floor: log std >= min_log_std, with gradient everywhere (C.2.2's minimum std).
        return mean, self.min_log_std + F.softplus(raw - self.min_log_std)

    def features(self, z: Tensor) -> Tensor:
        """z (B, style_dim) -> (B, C, 1, h, w); the same for every frame, broadcast over time."""
        return self.upsample(z[:, :, None, None, None])


def style_kl(mean: Tensor, log_std: Tensor) -> Tensor:
    """KL(N(mean, std^2) || N(0, I)) per sample, summed over the style dimensions."""
    return 0.5 * (mean.square() + (2 * log_std).exp() - 1 - 2 * log_std).sum(-1)


class TapQueue:
    """The inputs a dilated causal convolution still needs, in a ring buffer (fast-wavenet queues).

    Holds the last `span` = (kernel - 1) * dilation inputs; zeros at the start, like the left padding
    of the full pass. `taps(x)` returns the kernel's inputs oldest first, ending with x, and pushes x.
    """

    def __init__(self, span: int, kernel: int, dilation: int) -> None:
        self.span, self.kernel, self.dilation = span, kernel, dilation
        self.buffer: Tensor | None = None
        self.back: Tensor | None = None
        self.position = 0

    def taps(self, x: Tensor) -> Tensor:
        if self.buffer is None:
            self.buffer = x.new_zeros(*x.shape[:2], self.span, *x.shape[3:])
            # Input j * dilation steps back sits j * dilation slots behind the write position.
            self.back = torch.arange(self.kernel - 1, 0, -1, device=x.device) * self.dilation
        index = (self.position - self.back) % self.span
        taps = torch.cat([self.buffer.index_select(2, index), x], dim=2)
        self.buffer[:, :, self.position] = x[:, :, 0]
        self.position = (self.position + 1) % self.span
        return taps


Queues = tuple["TapQueue | None", "TapQueue | None"]
"""A residual block's two queues (None for a convolution that does not look back)."""


class CausalConv(nn.Module):
    """Causal and dilated along dim 2 (time or sequence); "same" and undilated over space (FAR).

    dims=1: (B, C, L);  dims=3: (B, C, T, H, W). A kernel of 1 looks at the current position only.
    """

    def __init__(self, dims: int, in_channels: int, out_channels: int, kernel: int, dilation: int,
                 spatial_kernel: int = 1) -> None:  # fmt: skip
        super().__init__()
        self.dims, self.kernel, self.dilation = dims, kernel, dilation
        self.span = (kernel - 1) * dilation
        if dims == 1:
            self.conv: nn.Conv1d | nn.Conv3d = nn.Conv1d(in_channels, out_channels, kernel, dilation=dilation)
        else:
            self.conv = nn.Conv3d(in_channels, out_channels, (kernel, spatial_kernel, spatial_kernel),
                                  dilation=(dilation, 1, 1))  # fmt: skip
        self.spatial_pad = [] if dims == 1 else [*_same_padding(1, spatial_kernel, 1)] * 2

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, [*self.spatial_pad, self.span, 0]))

    def step(self, x: Tensor, queue: TapQueue | None) -> Tensor:
        """One new position x (B, C, 1[, H, W]) -> its output, reading the past from `queue`."""
        taps = x if queue is None else queue.taps(x)
        conv = F.conv1d if self.dims == 1 else F.conv3d
        # The taps are already `dilation` apart.
        return conv(F.pad(taps, [*self.spatial_pad, 0, 0]), self.conv.weight, self.conv.bias)

    def queue(self) -> TapQueue | None:
        """The inputs step() will need; None when the kernel sees the current position only."""
        return TapQueue(self.span, self.kernel, self.dilation) if self.span else None


class Residual(nn.Module):
    """h + conv2(mish(conv1(mish(h)))): a residual block of two causal convolutions.

    One row of Tables 5/6 is one block, both convolutions of the row's kernel and dilation (the
    reading the dVAE uses for Table 4's Res rows); conv1 maps the residual width to the row's
    width and conv2 back. `causal_convs=1` gives conv2 a time kernel of 1 (see PriorConfig).
    """

    def __init__(self, dims: int, channels: int, hidden: int, kernel: int, dilation: int,
                 spatial_kernel: int, causal_convs: int) -> None:  # fmt: skip
        super().__init__()
        self.conv1 = CausalConv(dims, channels, hidden, kernel, dilation, spatial_kernel)
        second = kernel if causal_convs == 2 else 1
        self.conv2 = CausalConv(dims, hidden, channels, second, dilation, spatial_kernel)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.conv2(mish(self.conv1(mish(h))))

    def step(self, h: Tensor, queues: Queues) -> Tensor:
        return h + self.conv2.step(mish(self.conv1.step(mish(h), queues[0])), queues[1])

    def queues(self) -> Queues:
        return self.conv1.queue(), self.conv2.queue()


class DecoderStage(nn.Module):
    """Project [activations, conditioning] to the residual width (B.2.3), then residual blocks.

    The projection of the concatenation is written as two 1x1 maps, W_h·h + W_c·c, so the
    conditioning's share is computed once for a whole clip when generating.
    """

    def __init__(self, dims: int, in_channels: int, cond_channels: int, config: PriorConfig,
                 layers: StageSpec) -> None:  # fmt: skip
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv3d
        self.proj = conv(in_channels, config.channels, 1)
        self.proj_cond = conv(cond_channels, config.channels, 1, bias=False)
        self.layers = nn.ModuleList(
            [
                Residual(dims, config.channels, hidden, config.kernel, d, spatial, config.causal_convs)
                for d, hidden, spatial in layers
            ]
        )

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        h = self.proj(h) + cond
        for layer in self.layers:
            h = layer(h)
        return h

    def step(self, h: Tensor, cond: Tensor, queues: list[Queues]) -> Tensor:
        h = self.proj(h) + cond
        for layer, queue in zip(self.layers, queues, strict=True):
            h = layer.step(h, queue)
        return h

    def queues(self) -> list[Queues]:
        return [layer.queues() for layer in self.layers]


class FARDecoder(nn.Module):
    """Frame-level AR (Table 5): frame t's 16x16x8 logits from frames < t, audio, style and episode."""

    def __init__(self, config: PriorConfig, cond_channels: int) -> None:
        super().__init__()
        self.config = config
        self.embed = CodeEmbedding(config.heads, config.codebook_size, config.embed_dim)
        self.start = nn.Parameter(torch.zeros(self.embed.out_channels))  # stands in for "frame -1"
        down: list[nn.Module] = []
        c_in = self.embed.out_channels
        for i in range(config.downsample):  # 4x4 stride 2, with a 4x4 stride-1 layer between
            if i:
                down.append(SameConv(dims=2, in_channels=c_in, out_channels=config.frame_channels, kernel=4))
                c_in = config.frame_channels
            down.append(
                SameConv(dims=2, in_channels=c_in, out_channels=config.frame_channels, kernel=4, stride=2)
            )
            c_in = config.frame_channels
        self.down = nn.ModuleList(down)
        self.stages = nn.ModuleList()
        for layers in config.stages:
            self.stages.append(DecoderStage(3, c_in, cond_channels, config, layers))
            c_in = config.channels
        # The mirror image: nearest x2 + 4x4 Conv2D, with a 4x4 stride-1 Conv2D between two of them.
        self.up = nn.ModuleList()
        self.upsamples: list[bool] = []
        for i in range(config.downsample):
            for upsample in (False, True) if i else (True,):
                self.up.append(
                    SameConv(dims=2, in_channels=c_in, out_channels=config.frame_channels, kernel=4)
                )
                self.upsamples.append(upsample)
                c_in = config.frame_channels
        self.out = nn.Conv2d(c_in, config.heads * config.codebook_size, 1)

    def _embed(self, codes: Tensor) -> Tensor:
        """codes (B, T, h, w, heads) -> (B, E, T, H, W) on the padded grid (padded cells embed to 0)."""
        grid_h, grid_w = self.config.padded_grid
        x = self.embed(codes)
        x = F.pad(x, (0, 0, 0, grid_w - x.shape[3], 0, grid_h - x.shape[2]))
        return x.permute(0, 4, 1, 2, 3)

    def _start(self, batch: int) -> Tensor:
        grid_h, grid_w = self.config.padded_grid
        return self.start.view(1, -1, 1, 1, 1).expand(batch, -1, 1, grid_h, grid_w)

    def inputs(self, codes: Tensor) -> Tensor:
        """The decoder's input at frame t is frame t-1 (the start vector at t = 0): (B, E, T, H, W)."""
        return torch.cat([self._start(codes.shape[0]), self._embed(codes[:, :-1])], dim=2)

    def _frames_in(self, x: Tensor) -> Tensor:
        """Per-frame downsampling: (B, E, T, H, W) -> (B, C, T, H', W')."""
        b, t = x.shape[0], x.shape[2]
        x = x.transpose(1, 2).flatten(0, 1)
        for conv in self.down:
            x = mish(conv(x))
        return x.unflatten(0, (b, t)).transpose(1, 2)

    def _frames_out(self, h: Tensor) -> Tensor:
        """(B, C, T, H', W') -> logits (B, T, h, w, heads, K), the padding dropped."""
        b, t = h.shape[0], h.shape[2]
        x = mish(h).transpose(1, 2).flatten(0, 1)
        for conv, upsample in zip(self.up, self.upsamples, strict=True):
            if upsample:
                x = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
            x = mish(conv(x))
        logits = self.out(x).unflatten(0, (b, t))  # (B, T, heads*K, H, W)
        logits = logits.permute(0, 1, 3, 4, 2).unflatten(-1, (self.config.heads, self.config.codebook_size))
        return logits[:, :, : self.config.grid[0], : self.config.grid[1]]

    def project_conditioning(self, cond: Tensor) -> list[Tensor]:
        """cond (B, Cc, T, h', w') -> each stage's W_c · cond."""
        return [stage.proj_cond(cond) for stage in self.stages]

    def forward(self, codes: Tensor, cond: Tensor) -> Tensor:
        h = self._frames_in(self.inputs(codes))
        for stage, c in zip(self.stages, self.project_conditioning(cond), strict=True):
            h = stage(h, c)
        return self._frames_out(h)

    def new_state(self) -> list[list[Queues]]:
        return [stage.queues() for stage in self.stages]

    def step(self, previous: Tensor | None, conds: list[Tensor], t: int, state: list[list[Queues]]) -> Tensor:
        """Logits (B, h, w, heads, K) of frame t, given frame t-1's codes (None at t = 0)."""
        x = self._start(conds[0].shape[0]) if previous is None else self._embed(previous[:, None])
        h = self._frames_in(x)
        for stage, c, queues in zip(self.stages, conds, state, strict=True):
            h = stage.step(h, c[:, :, t : t + 1], queues)
        return self._frames_out(h)[:, 0]


class MARDecoder(nn.Module):
    """Memcode-level AR (Table 6): one Memcode's heads per step, raster order over (T, h, w)."""

    def __init__(self, config: PriorConfig, cond_channels: int) -> None:
        super().__init__()
        self.config = config
        self.embed = CodeEmbedding(config.heads, config.codebook_size, config.embed_dim)
        self.start = nn.Parameter(torch.zeros(self.embed.out_channels))  # stands in for "Memcode -1"
        self.stages = nn.ModuleList()
        c_in = self.embed.out_channels
        for layers in config.stages:
            self.stages.append(DecoderStage(1, c_in, cond_channels, config, layers))
            c_in = config.channels
        self.out = nn.Conv1d(c_in, config.heads * config.codebook_size, 1)

    def project_conditioning(self, cond: Tensor) -> list[Tensor]:
        """cond (B, Cc, T, h, w) -> each stage's W_c · cond as a sequence (B, C, T*h*w)."""
        sequence = cond.flatten(2)
        return [stage.proj_cond(sequence) for stage in self.stages]

    def _logits(self, h: Tensor) -> Tensor:
        """(B, C, L) -> (B, L, heads, K)."""
        return self.out(mish(h)).transpose(1, 2).unflatten(-1, (self.config.heads, self.config.codebook_size))

    def forward(self, codes: Tensor, cond: Tensor) -> Tensor:
        b, t, gh, gw = codes.shape[:4]
        x = self.embed(codes.flatten(1, 3))  # (B, L, E), raster order
        x = torch.cat([self.start.expand(b, 1, -1), x[:, :-1]], dim=1).transpose(1, 2)
        h = x
        for stage, c in zip(self.stages, self.project_conditioning(cond), strict=True):
            h = stage(h, c)
        return self._logits(h).unflatten(1, (t, gh, gw))

    def new_state(self) -> list[list[Queues]]:
        return [stage.queues() for stage in self.stages]

    def step(self, previous: Tensor | None, conds: list[Tensor], p: int, state: list[list[Queues]]) -> Tensor:
        """Logits (B, heads, K) of sequence position p, given position p-1's codes (B, heads)."""
        b = conds[0].shape[0]
        x = self.start.expand(b, -1) if previous is None else self.embed(previous)
        h = x[:, :, None]
        for stage, c, queues in zip(self.stages, conds, state, strict=True):
            h = stage.step(h, c[:, :, p : p + 1], queues)
        return self._logits(h)[:, 0]


class Prior(nn.Module):
    """p(z | audio, z_l, episode): audio encoder, style encoder and a FAR or MAR decoder."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.config = config
        self.audio = AudioEncoder(config)
        self.style = StyleEncoder(config)
        self.episodes = nn.Embedding(config.num_episodes, config.episode_dim)
        cond_channels = self.audio.out_channels + self.style.out_channels + config.episode_dim
        decoder = FARDecoder if config.arch == "far" else MARDecoder
        self.decoder: FARDecoder | MARDecoder = decoder(config, cond_channels)

    def conditioning(self, mel: Tensor, episode: Tensor, z: Tensor) -> Tensor:
        """Audio, style and episode features concatenated: (B, Cc, T, h', w')."""
        audio = self.audio(mel)
        t, gh, gw = audio.shape[2:]
        style = self.style.features(z).expand(-1, -1, t, -1, -1)
        ep = self.episodes(episode)[:, :, None, None, None].expand(-1, -1, t, gh, gw)
        return torch.cat([audio, style, ep], dim=1)

    def conditioning_frames(self, mel: Tensor, episode: Tensor, z: Tensor, start: int, stop: int) -> Tensor:
        """`conditioning` of frames [start, stop) only, computed from the mel around them: equal to
        the whole clip's slice, at a cost bounded by the span plus the audio encoder's reach."""
        frames = mel.shape[-1] // self.config.mel_per_frame
        reach = self.audio.temporal_reach
        lo, hi = max(0, start - reach), min(frames, stop + reach)
        per = self.config.mel_per_frame
        cond = self.conditioning(mel[..., lo * per : hi * per], episode, z)
        return cond[:, :, start - lo : stop - lo]

    def forward(
        self, codes: Tensor, mel: Tensor, episode: Tensor, z: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Teacher-forced logits (B, T, h, w, heads, K) and the style KL per sample (B,).

        z=None samples z_l from the posterior q(z_l | codes) (training); a given z is used as is
        and the KL is zero (tests, style control).
        """
        if z is None:
            mean, log_std = self.style.posterior_params(codes)
            z = mean + log_std.exp() * torch.randn_like(mean)
            kl = style_kl(mean, log_std)
        else:
            kl = z.new_zeros(z.shape[0])
        return self.decoder(codes, self.conditioning(mel, episode, z)), kl
