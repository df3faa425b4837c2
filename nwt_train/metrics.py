"""Logging: TensorBoard scalars and videos, and a one-line Rich progress on the console (rank 0)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """(T, 3, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    frames = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return frames.permute(0, 2, 3, 1).cpu().numpy()


def side_by_side(target: torch.Tensor, reconstruction: torch.Tensor) -> np.ndarray:
    """Target on the left, reconstruction on the right, as uint8 frames."""
    return np.concatenate([to_uint8_frames(target), to_uint8_frames(reconstruction)], axis=2)


def gif_bytes(frames: np.ndarray, fps: int) -> bytes:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
    )
    return buffer.getvalue()


class Logger:
    """Writes nothing unless `enabled` (rank 0 alone logs)."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.writer: Any = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def text(self, step: int, tag: str, text: str) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def video(self, step: int, tag: str, frames: np.ndarray, fps: int = 30) -> None:
        """An animated GIF summary (TensorBoard shows it under Images)."""
        if self.writer is None:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary

        height, width = frames.shape[1:3]
        image = Summary.Image(
            height=height, width=width, colorspace=3, encoded_image_string=gif_bytes(frames, fps)
        )
        self.writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
