"""PNG figures of the MNIST study with numpy and Pillow (no plotting library needed).

Images come in as uint8 arrays, 0 = black background and 255 = white stroke, as MNIST stores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# One colour per digit 0..9 (distinct hues that stay readable on black).
DIGIT_COLOURS = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (67, 99, 216),
        (245, 130, 49),
        (145, 30, 180),
        (66, 212, 244),
        (240, 50, 230),
        (191, 239, 69),
        (250, 190, 212),
    ],
    dtype=np.uint8,
)
GAP_COLOUR = (60, 60, 60)


def save_png(path: Path, image: np.ndarray) -> None:
    """Write a uint8 (H, W) or (H, W, 3) array as PNG, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(path, format="PNG")


def tile(images: np.ndarray, *, gap: int = 1) -> np.ndarray:
    """uint8 (rows, cols, h, w) -> one RGB image with `gap`-pixel grey lines between the cells."""
    rows, cols, h, w = images.shape
    canvas = np.empty((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), dtype=np.uint8)
    canvas[:] = GAP_COLOUR
    for r in range(rows):
        for c in range(cols):
            y, x = gap + r * (h + gap), gap + c * (w + gap)
            canvas[y : y + h, x : x + w] = images[r, c][..., None]
    return canvas


def _text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, fill: tuple[int, int, int]) -> None:
    draw.text(xy, text, fill=fill, font=ImageFont.load_default())


def occupancy_map(counts: np.ndarray, *, cell: int = 10) -> np.ndarray:
    """Figure 2b: counts (rows = head 2, cols = head 1, digit) -> RGB map with a digit legend.

    A cell takes the colour of its most frequent digit (ties: the smaller digit), its brightness grows
    with how pure the cell is (share of that digit); empty permutations stay black.
    """
    rows, cols, _ = counts.shape
    totals = counts.sum(-1)
    top = counts.argmax(-1)
    purity = np.where(totals > 0, counts.max(-1) / np.maximum(totals, 1), 0.0)
    colours = DIGIT_COLOURS[top].astype(np.float32) * (0.4 + 0.6 * purity)[..., None]
    colours[totals == 0] = 0
    grid = np.repeat(np.repeat(colours.astype(np.uint8), cell, 0), cell, 1)
    legend_width = 70
    canvas = np.full((max(rows * cell, 10 * 16 + 40), cols * cell + legend_width, 3), 255, dtype=np.uint8)
    canvas[: rows * cell, : cols * cell] = grid
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    x0 = cols * cell + 8
    _text(draw, (x0, 2), "digit", (0, 0, 0))
    for digit in range(10):
        y = 18 + digit * 16
        draw.rectangle((x0, y, x0 + 12, y + 12), fill=tuple(int(v) for v in DIGIT_COLOURS[digit]))
        _text(draw, (x0 + 18, y), str(digit), (0, 0, 0))
    _text(draw, (x0, 18 + 10 * 16 + 4), "x: head 1", (0, 0, 0))
    _text(draw, (x0, 18 + 10 * 16 + 18), "y: head 2", (0, 0, 0))
    return np.asarray(image)


def labelled_blocks(blocks: Sequence[tuple[str, np.ndarray]], *, label_height: int = 14) -> np.ndarray:
    """Stack tiled blocks (label, uint8 (rows, cols, h, w)) vertically, each under its text label."""
    tiles = [(label, tile(images)) for label, images in blocks]
    width = max(t.shape[1] for _, t in tiles)
    parts = []
    for label, t in tiles:
        strip = Image.new("RGB", (width, label_height), (255, 255, 255))
        _text(ImageDraw.Draw(strip), (2, 1), label, (0, 0, 0))
        padded = np.full((t.shape[0], width, 3), 255, dtype=np.uint8)
        padded[:, : t.shape[1]] = t
        parts += [np.asarray(strip), padded]
    return np.concatenate(parts, axis=0)


def neighbours(
    queries: np.ndarray, found: np.ndarray, same_digit: np.ndarray, *, frame: int = 2
) -> np.ndarray:
    """Figure 4: queries uint8 (q, h, w) in the left column, then their neighbours found (q, k, h, w) in
    ascending Hamming distance; each neighbour is framed green if its digit is the query's, else red.
    """
    q, k, h, w = found.shape
    cell_h, cell_w = h + 2 * frame, w + 2 * frame
    gap = 1
    left = cell_w + 6  # a wider gap after the query column
    canvas = np.full((q * (cell_h + gap) + gap, left + k * (cell_w + gap) + gap, 3), 255, dtype=np.uint8)
    for r in range(q):
        y = gap + r * (cell_h + gap)
        canvas[y : y + cell_h, gap : gap + cell_w] = 0
        canvas[y + frame : y + frame + h, gap + frame : gap + frame + w] = queries[r][..., None]
        for c in range(k):
            x = left + gap + c * (cell_w + gap)
            canvas[y : y + cell_h, x : x + cell_w] = (40, 170, 40) if same_digit[r, c] else (200, 30, 30)
            canvas[y + frame : y + frame + h, x + frame : x + frame + w] = found[r, c][..., None]
    return canvas
