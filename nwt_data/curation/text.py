"""Text regions (lower thirds, captions, title cards) found by PP-OCR's text detector.

The detector is the ONNX model that ships inside the `rapidocr` wheel (models/PP-OCR*_det*.onnx), run
with onnxruntime on one thread; nothing is downloaded. Only detection runs (no recognition): we need
where text is, not what it says. The probability map is thresholded and each connected region whose
mean probability is high enough becomes a box, grown back by the detector's shrink ratio (DB-style
detectors predict a shrunk text kernel).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from nwt_data.errors import MediaError

Box = tuple[int, int, int, int]  # x, y, w, h

PIXEL_THRESHOLD = 0.3  # a pixel belongs to a text kernel above this probability...
BOX_THRESHOLD = 0.6  # ...and a region is text when its mean probability is above this
UNCLIP = 1.5  # the detector's kernel shrink ratio, undone on every box
MIN_SIDE = 3  # pixels of the detector's input: smaller regions are noise
MAX_SIDE = 256  # the frame's longer side is scaled to this: captions and lower thirds stay readable


@cache
def model_path() -> Path:
    """The text-detection model inside the installed rapidocr wheel."""
    try:
        import rapidocr
    except ImportError as err:
        raise MediaError(
            "the OCR text detector is not installed", hint="pip install rapidocr onnxruntime"
        ) from err
    models = Path(rapidocr.__file__).parent / "models"
    found = sorted(models.glob("*det*.onnx"))
    if not found:
        raise MediaError(
            f"no text-detection model in {models}",
            hint="reinstall rapidocr>=3.10, whose wheel ships PP-OCR's ONNX models",
        )
    return found[0]


@cache
def _session() -> Any:
    """One onnxruntime session per process, shared by the worker threads (its run() is thread-safe;
    loading it took 0.08 CPU s, per worker per run when it was per thread), on one intra-op thread
    (the stages parallelise clips)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path()), options, providers=["CPUExecutionProvider"])


def text_probability(rgb: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """The detector's text probability map of an RGB frame, and the map's pixels per frame pixel."""
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    th, tw = max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32)
    small = cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_AREA)
    x = (small[:, :, ::-1].astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]  # BGR, [-1, 1]
    session = _session()
    prob = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x)})[0][0, 0]
    return prob, th / h


def text_boxes(rgb: np.ndarray, max_side: int = MAX_SIDE) -> list[Box]:
    """Boxes (x, y, w, h in `rgb`'s pixels) of the text the detector sees in an RGB frame."""
    import cv2

    prob, scale = text_probability(rgb, max_side)
    mask = (prob > PIXEL_THRESHOLD).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    # Each region's mean probability in one pass over the map (not one mask per region).
    means = np.bincount(labels.ravel(), weights=prob.ravel(), minlength=count) / np.maximum(stats[:, 4], 1)
    boxes: list[Box] = []
    height, width = rgb.shape[:2]
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        if min(w, h) < MIN_SIDE or means[i] < BOX_THRESHOLD:
            continue
        grow = area * UNCLIP / (2 * (w + h))  # DB's unclip distance for this region
        x0, y0 = max(0.0, (x - grow) / scale), max(0.0, (y - grow) / scale)
        x1, y1 = min(width, (x + w + grow) / scale), min(height, (y + h + grow) / scale)
        boxes.append((round(x0), round(y0), round(x1 - x0), round(y1 - y0)))
    return boxes
