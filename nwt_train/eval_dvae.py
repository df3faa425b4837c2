"""`nwt-train eval-dvae`: the columns of Table 2 for a trained dVAE-Adv on a split.

Mean frame SSIM and PSNR of argmax reconstructions, per-head codebook usage, and the size of the
Memcode stream raw and run-length encoded, next to h264 of the same frames at the model's size.
"""

from __future__ import annotations

import io
import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nwt_train import checkpoint
from nwt_train.data import Dataset, clip_windows
from nwt_train.errors import DataError, MissingInput, RunMismatch
from nwt_train.metrics import to_uint8_frames
from nwt_train.models.dvae import DVAE, DVAEConfig
from nwt_train.train_dvae import fit_frames


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).float()
    return g[:, None] * g[None, :]


def frame_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM per frame (Wang et al. 2004: 11x11 Gaussian, sigma 1.5) of (N, 3, H, W) in [-1, 1].

    Computed per channel on [0, 1] values and averaged over channels; returns (N,).
    """
    a, b = (a.float() + 1) / 2, (b.float() + 1) / 2
    channels = a.shape[1]
    window = _gaussian_window().to(a.device)[None, None].repeat(channels, 1, 1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim.mean(dim=(1, 2, 3))


def frame_psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR per frame in dB of (N, 3, H, W) in [-1, 1] (peak-to-peak 2)."""
    mse = ((a.float() - b.float()) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return 10 * torch.log10(4.0 / mse)


def memcode_bits(indices: torch.Tensor, codebook_size: int) -> tuple[int, int]:
    """(raw bits, run-length-encoded bits) of an index grid (T, h, w, heads).

    RLE runs along time for each grid position and head (heads mostly keep their code between
    frames under argmax): each run costs the code (log2 N bits) plus its length (log2 T bits).
    """
    t = indices.shape[0]
    code_bits = math.ceil(math.log2(codebook_size))
    raw = indices.numel() * code_bits
    streams = indices.reshape(t, -1)
    runs = int(streams.shape[1] + (streams[1:] != streams[:-1]).sum())
    return raw, runs * (code_bits + max(1, math.ceil(math.log2(max(t, 2)))))


class H264Size:
    """Bytes of frames encoded as one H.264 stream (libx264, crf 23, medium) in an MP4."""

    def __init__(self, fps: int = 30, crf: int = 23) -> None:
        self.fps, self.crf = fps, crf
        self.buffer = io.BytesIO()
        self.container: Any = None
        self.stream: Any = None
        self.count = 0

    def add(self, frames: np.ndarray) -> None:
        """frames (T, H, W, 3) uint8."""
        import av

        if self.container is None:
            self.container = av.open(self.buffer, "w", format="mp4")
            self.stream = self.container.add_stream("libx264", rate=self.fps)
            self.stream.height, self.stream.width = frames.shape[1:3]
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": str(self.crf)}
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = self.count, Fraction(1, self.fps)
            self.container.mux(self.stream.encode(frame))
            self.count += 1

    def close(self) -> int:
        if self.container is not None:
            self.container.mux(self.stream.encode(None))
            self.container.close()
        return len(self.buffer.getvalue())


def load_dvae(run_dir: Path) -> tuple[DVAE, dict[str, Any]]:
    saved = checkpoint.load(run_dir)
    if saved is None:
        raise MissingInput(f"no checkpoint in {run_dir}: train it with `nwt-train dvae --out {run_dir}`")
    if "dvae" not in saved:
        raise RunMismatch(f"{run_dir} is not a dVAE run (its checkpoint holds no dVAE weights)")
    model_config = {k: as_tuples(v) for k, v in saved["config"]["model"].items()}
    model = DVAE(DVAEConfig(**model_config))
    model.load_state_dict(saved["dvae"])
    return model.eval(), saved


def as_tuples(value: Any) -> Any:
    return tuple(as_tuples(v) for v in value) if isinstance(value, list) else value


@torch.no_grad()
def evaluate(
    run_dir: Path, data: Path, *, split: str = "test", max_windows: int | None = None
) -> dict[str, Any]:
    """Table 2's columns on `split`; also written to RUN/eval-SPLIT.json."""
    model, saved = load_dvae(run_dir)
    config = model.config
    dataset = Dataset.open(data)
    frames = int(saved["config"]["frames"])
    ssim, psnr = [], []
    usage = torch.zeros(config.heads, config.codebook_size, dtype=torch.bool)
    raw_bits = rle_bits = windows = 0
    h264 = H264Size()
    for window in clip_windows(dataset, split, frames=frames, shuffle_buffer=0):
        video = fit_frames(window["video"][None], config.frame_size)
        episode = torch.tensor([window["episode"]])
        reconstruction, indices, _ = model(video, episode, sample=False)
        ssim.append(frame_ssim(video[0], reconstruction[0]))
        psnr.append(frame_psnr(video[0], reconstruction[0]))
        flat = indices[0].reshape(-1, config.heads)
        usage[torch.arange(config.heads)[None, :].expand_as(flat), flat] = True
        raw, rle = memcode_bits(indices[0], config.codebook_size)
        raw_bits, rle_bits = raw_bits + raw, rle_bits + rle
        h264.add(to_uint8_frames(video[0]))
        windows += 1
        if max_windows is not None and windows >= max_windows:
            break
    h264_size = h264.close()
    if not windows:
        raise DataError(f"split {split!r} of {data} has no clips to evaluate")
    result = {
        "split": split,
        "windows": windows,
        "frames_per_window": frames,
        "step": saved["step"],
        "frame_ssim": float(torch.cat(ssim).mean()),
        "frame_psnr_db": float(torch.cat(psnr).mean()),
        "codebook_usage_per_head": usage.float().mean(dim=1).tolist(),
        "memcodes_bytes": raw_bits / 8,
        "memcodes_rle_bytes": rle_bits / 8,
        "h264_bytes": h264_size,
        "compression_vs_h264": h264_size / (raw_bits / 8),
        "compression_vs_h264_rle": h264_size / (rle_bits / 8),
    }
    (run_dir / f"eval-{split}.json").write_text(json.dumps(result, indent=2))
    return result
