"""`nwt-train eval-dvae`: Table 2's columns for a trained dVAE-Adv on whole clips of a split.

Every frame of every clip of the split is encoded to argmax Memcodes and decoded, in time chunks that
see the model's temporal reach on both sides (identical to one pass, bounded memory). On the very same
frames (the clip at the model's frame size, as uint8) two baselines are scored:

- grid: each frame area-downsampled to the Memcode grid (h x w RGB pixels) and scaled back up
  bilinearly: what a model that only kept the grid's mean colours would give;
- h264 at the Memcode stream's size: libx264 with the crf whose bitstream is the largest that fits in
  the clip's run-length-encoded Memcode bits (searched per clip), and h264 at crf 23 (Table 2's
  reference row).

Sizes are bitstreams without containers: the Memcode stream (raw and RLE along time, `memcode_bits`)
and the h264 packets. Reported per method: data size, compression relative to h264 crf 23, mean frame
SSIM, mean frame PSNR and bits per frame; per clip too. Written to RUN/eval-SPLIT.json.
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
from nwt_train.data import Dataset, read_video, to_unit_range
from nwt_train.errors import DataError
from nwt_train.metrics import to_uint8_frames
from nwt_train.models.dvae import DVAE, DVAEConfig, in_time_chunks
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


def h264_roundtrip(frames: np.ndarray, crf: int, fps: int = 30) -> tuple[int, np.ndarray]:
    """frames (T, H, W, 3) uint8 through libx264 (medium, yuv420p) at `crf`: (bitstream bytes, decoded)."""
    import av

    buffer = io.BytesIO()
    size = 0
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for i, rgb in enumerate([*frames, None]):
            if rgb is None:
                packets = stream.encode(None)
            else:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, fps)
                packets = stream.encode(frame)
            size += sum(p.size for p in packets)
            container.mux(packets)
    return size, read_video(buffer.getvalue())


def h264_within(frames: np.ndarray, budget: float) -> tuple[int, int, np.ndarray]:
    """The lowest crf (best quality) whose bitstream fits in `budget` bytes: (crf, bytes, decoded).

    Bisection over crf 0..51 (size falls as crf rises). When even crf 51 is larger, crf 51 is
    returned: its size then says by how much h264 misses the budget.
    """
    lo, hi = 0, 51
    best = None
    while lo <= hi:
        crf = (lo + hi) // 2
        size, decoded = h264_roundtrip(frames, crf)
        if size <= budget:
            best, hi = (crf, size, decoded), crf - 1
        else:
            lo = crf + 1
    if best is None:
        size, decoded = h264_roundtrip(frames, 51)
        best = (51, size, decoded)
    return best


def grid_baseline(video: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(T, 3, H, W) -> area-downsampled to `grid`, bilinearly scaled back to (H, W)."""
    small = F.interpolate(video, size=grid, mode="area")
    return F.interpolate(small, size=video.shape[-2:], mode="bilinear", align_corners=False).clamp(-1, 1)


def whole_clips(dataset: Dataset, split: str) -> Any:
    """(key, episode, frames uint8 (T, H, W, 3)) of every clip of a split, in shard order."""
    import webdataset as wds

    urls = dataset.shard_urls(split)
    if not urls:
        raise DataError(f"split {split!r} has no shards in {dataset.root}")
    for sample in wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples()):
        if sample["__key__"] in dataset.excluded:
            continue
        meta = json.loads(sample["json"])
        yield meta["key"], int(meta["episode_index"]), read_video(sample["mp4"])


def load_dvae(run_dir: Path) -> tuple[DVAE, dict[str, Any]]:
    return checkpoint.load_model(run_dir, "dvae", "dVAE", lambda config: DVAE(DVAEConfig(**config)))


METHODS = {
    "h264_crf23": "h264 (crf 23)",
    "memcodes": "dVAE-Adv Memcodes",
    "memcodes_rle": "dVAE-Adv Memcodes + RLE",
    "h264_rle_size": "h264 at the Memcodes + RLE size",
    "grid": "grid: area to the Memcode grid + bilinear",
    "uncompressed": "Uncompressed",
}


@torch.no_grad()
def evaluate(
    run_dir: Path, data: Path, *, split: str = "test", chunk: int | None = None, max_clips: int | None = None
) -> dict[str, Any]:
    """Table 2's columns (plus PSNR and bits per frame) on every frame of `split`, beside the grid and
    h264 baselines on the same frames; also written to RUN/eval-SPLIT.json.

    chunk: frames decoded at a time (default: the training window), each seen with the model's
    temporal reach of context on both sides.
    """
    model, saved = load_dvae(run_dir)
    config = model.config
    dataset = Dataset.open(data)
    chunk = chunk or int(saved["config"]["frames"])
    context = model.temporal_reach
    heads = torch.arange(config.heads)
    usage = torch.zeros(config.heads, config.codebook_size, dtype=torch.bool)
    scores: dict[str, dict[str, list[torch.Tensor]]] = {
        m: {"ssim": [], "psnr": []} for m in ("memcodes", "grid", "h264_rle_size", "h264_crf23")
    }
    size = dict.fromkeys(("memcodes", "memcodes_rle", "h264_rle_size", "h264_crf23"), 0)
    clips, repeats, total_frames = [], [], 0
    for key, episode, frames in whole_clips(dataset, split):
        # The reference: the clip at the model's size as uint8, what every method gets to compress.
        reference = to_uint8_frames(fit_frames(to_unit_range(frames)[None], config.frame_size)[0])
        video = to_unit_range(reference)  # (T, 3, H, W)
        ep = torch.tensor([episode])
        indices = in_time_chunks(lambda v: model.encode(v, sample=False), video[None], chunk=chunk,
                                 context=context)  # fmt: skip
        recon = in_time_chunks(lambda i, ep=ep: model.decode(i, ep), indices, chunk=chunk, context=context)[0]
        indices = indices[0]
        flat = indices.reshape(-1, config.heads)
        usage[heads[None, :].expand_as(flat), flat] = True
        if len(indices) > 1:
            repeats.append((indices[1:] == indices[:-1]).float().mean())
        raw, rle = memcode_bits(indices, config.codebook_size)
        crf23_bytes, crf23 = h264_roundtrip(reference, 23)
        crf, fitted_bytes, fitted = h264_within(reference, rle / 8)
        outputs = {
            "memcodes": recon.clamp(-1, 1),
            "grid": grid_baseline(video, config.grid_size),
            "h264_rle_size": to_unit_range(fitted),
            "h264_crf23": to_unit_range(crf23),
        }
        clip = {"key": key, "frames": len(video), "h264_rle_size_crf": crf, "memcodes_rle_bits": rle,
                "h264_rle_size_bits": 8 * fitted_bytes}  # fmt: skip
        for method, out in outputs.items():
            ssim, psnr = frame_ssim(video, out), frame_psnr(video, out)
            scores[method]["ssim"].append(ssim)
            scores[method]["psnr"].append(psnr)
            clip[f"{method}_psnr_db"] = float(psnr.mean())
            clip[f"{method}_ssim"] = float(ssim.mean())
        clips.append(clip)
        size["memcodes"] += raw / 8
        size["memcodes_rle"] += rle / 8
        size["h264_rle_size"] += fitted_bytes
        size["h264_crf23"] += crf23_bytes
        total_frames += len(video)
        if max_clips is not None and len(clips) >= max_clips:
            break
    if not clips:
        raise DataError(f"split {split!r} of {data} has no clips to evaluate")
    height, width = config.frame_size
    grid_h, grid_w = config.grid_size
    size["grid"] = total_frames * grid_h * grid_w * 3  # uint8 RGB grid, uncompressed
    size["uncompressed"] = total_frames * height * width * 3

    def mean(method: str, metric: str) -> float | None:
        if method in ("memcodes_rle",):
            method = "memcodes"  # the same reconstruction, a smaller stream
        if method == "uncompressed":
            return 1.0 if metric == "ssim" else None
        return float(torch.cat(scores[method][metric]).mean())

    methods = {
        name: {
            "label": label,
            "bytes": size[name],
            "bits_per_frame": 8 * size[name] / total_frames,
            "compression_vs_h264_crf23": size["h264_crf23"] / size[name],
            "frame_ssim": mean(name, "ssim"),
            "frame_psnr_db": mean(name, "psnr"),
        }
        for name, label in METHODS.items()
    }
    result = {
        "split": split,
        "clips": len(clips),
        "frames": total_frames,
        "frame_size": list(config.frame_size),
        "grid": list(config.grid_size),
        "chunk": chunk,
        "context": context,
        "step": saved["step"],
        "methods": methods,
        "codebook_usage_per_head": usage.float().mean(dim=1).tolist(),
        "argmax_same_as_previous_frame": float(torch.stack(repeats).mean()) if repeats else None,
        "per_clip": clips,
    }
    (run_dir / f"eval-{split}.json").write_text(json.dumps(result, indent=2))
    return result
