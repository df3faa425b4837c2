"""The `graphic` overlay rule: mask what post-production drew on the picture, spare the person and the set.

The paper's rule (Appendix D step 6, `nwt_data.stages.mask.overlay_boxes`) paints every bright blob of
a certain size in the left or bottom band of every frame: on other people's footage that includes
white shirts, bright walls and sofas. This rule looks at a clip's sampled frames together and keeps
only what behaves like a graphic laid over the picture:

- shape: an axis-aligned rectangle: a bright region that fills its bounding box (rectangularity) and
  whose inner sides are sharp steps, not the soft fall-off of a lit wall; or a box made of straight,
  sharp, static lines (a picture-in-picture inset, whatever its colours);
- position: the box stays put (to a pixel or two) in every sample where it is seen, while the subject
  moves;
- whole: it is seen whole in a run of samples, and painted for that run (a box that only exists in one
  sample, or flickers in and out, is clothing or light);
- text: a static, wide text line found by the OCR text detector (`nwt_data.curation.text`) in a
  caption band (the bottom 40% or top 20%) is a caption or a lower third; it also lets a bright box
  through with a looser shape test, and a box with no inner vertical side (a full-width banner) needs it;
  OCR runs more densely where a caption comes or goes (`TextSampler`);
- a banner under such text that merges with a subject of its colour (a white lower third over a white
  shirt) is what keeps that colour in every sample while the subject moves (`static_banner`); one
  whose lower edge is never seen reaches as far below the text as its top edge is above it.

A box needs at least one inner horizontal and one inner vertical side (a full-height strip is a wall,
a full-width band is a desk) unless text is inside it and it comes or goes within the clip: text on a
full-width band that stays the whole clip is the set's (a name printed on a desk), not a caption.
Everything is measured on frames scaled to ANALYSIS_HEIGHT rows, so the thresholds are in shares of
the crop, the same for any source size.
"""

from __future__ import annotations

import base64
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Box = tuple[int, int, int, int]  # x, y, w, h

ONE_SIDED_SEEN = 0.1  # share of its one visible edge that a banner found from one side must show
ANALYSIS_HEIGHT = 384  # rows the sampled frames are scaled to (at 256 a 64-row inset blurs too much)


@dataclass(frozen=True, kw_only=True)
class GraphicRule:
    """Thresholds of the graphic rule (shares of the crop's width or height unless said otherwise)."""

    threshold: int = 185
    """Grayscale level (full range) above which a pixel is bright (the paper's binarisation)."""
    min_side: float = 0.05
    """Smallest box side, share of the crop's width and height."""
    max_area: float = 0.3
    """Largest box, share of the crop's area."""
    rectangularity: float = 0.93
    """Share of its bounding box a bright region must fill (0.8 with text inside)."""
    sharp_step: float = 24.0
    """Gray-level step across an inner side (pixels two apart) that makes it sharp..."""
    sharp_share: float = 0.8
    """...along at least this share of the side."""
    jitter: float = 0.012
    """Largest move of any side between samples, share of the crop height."""
    min_samples: int = 2
    """Samples a box must be seen in (fewer when the clip has fewer)."""
    min_presence: float = 0.6
    """Share of the samples of its lifetime (first to last sighting) in which a box is seen."""
    line_coverage: float = 0.9
    """Share of each found side of a line box (inset, banner) that must be a static sharp line."""
    caption_bands: tuple[float, float] = (0.2, 0.6)
    """Text counts as a caption when its centre is above the first or below the second share of the height."""


PLAN_VERSION = 4  # raise when the rule changes what it plans (cached plans are made again)
STILL_HEIGHT = 96  # rows of a plan's still: the clip's median sampled frame, scaled down


@dataclass(frozen=True)
class PlannedBox:
    box: Box  # crop pixels
    kind: str  # 'bright', 'inset', 'banner' or 'text'
    spans: tuple[tuple[float, float], ...]  # episode-time intervals [start, end) to paint in

    @property
    def through_clip(self) -> bool:
        """On screen from the clip's start to its end, maybe with gaps (something passed in front)."""
        return bool(self.spans) and self.spans[0][0] == -math.inf and self.spans[-1][1] == math.inf


@dataclass(frozen=True)
class OverlayPlan:
    """What to paint in a clip: boxes with the time spans they are on screen; and the clip's still
    (its median sampled frame in grayscale, STILL_HEIGHT rows: what stays put in it, the moving
    subject gone), which the clips of an episode are compared by (nwt_data.curation.episode)."""

    boxes: tuple[PlannedBox, ...] = ()
    still: np.ndarray | None = field(default=None, compare=False, repr=False)

    def boxes_at(self, t: float) -> list[Box]:
        return [b.box for b in self.boxes if any(a <= t < z for a, z in b.spans)]

    def __bool__(self) -> bool:
        return bool(self.boxes)

    def without(self, spared: Iterable[PlannedBox]) -> OverlayPlan:
        gone = set(spared)
        return OverlayPlan(tuple(b for b in self.boxes if b not in gone), self.still)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (an open end of a span is null; the still's bytes in base64)."""
        boxes = [
            {"box": list(b.box), "kind": b.kind,
             "spans": [[None if math.isinf(a) else a, None if math.isinf(z) else z] for a, z in b.spans]}
            for b in self.boxes
        ]  # fmt: skip
        still = None
        if self.still is not None:
            still = {"shape": list(self.still.shape), "data": base64.b64encode(self.still.tobytes()).decode()}
        return {"boxes": boxes, "still": still}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OverlayPlan:
        def span(a: float | None, z: float | None) -> tuple[float, float]:
            return (-math.inf if a is None else a, math.inf if z is None else z)

        boxes = tuple(
            PlannedBox(tuple(b["box"]), b["kind"], tuple(span(*ab) for ab in b["spans"]))  # type: ignore[arg-type]
            for b in data["boxes"]
        )
        still = data["still"]
        if still is not None:
            still = np.frombuffer(base64.b64decode(still["data"]), np.uint8).reshape(still["shape"])
        return cls(boxes, still)


@dataclass
class _Track:
    boxes: list[Box | None] = field(default_factory=list)  # per sample, None when not seen
    text_inside: bool = False
    shape_ok: bool = True  # rectangularity and sharpness held in every sighting

    def seen(self) -> list[int]:
        return [i for i, b in enumerate(self.boxes) if b is not None]

    def median(self) -> Box:
        seen = [b for b in self.boxes if b is not None]
        return tuple(int(statistics.median_low(v)) for v in zip(*seen, strict=True))  # type: ignore[return-value]


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (aw * ah + bw * bh - inter)


def inside(inner: Box, outer: Box, slack: int = 2) -> bool:
    ix, iy, iw, ih = inner
    ox, oy, ow, oh = outer
    return ix >= ox - slack and iy >= oy - slack and ix + iw <= ox + ow + slack and iy + ih <= oy + oh + slack


def inner_sides(box: Box, width: int, height: int) -> tuple[list[str], list[str]]:
    """The box's horizontal and vertical sides that are not on the frame's edge."""
    x, y, w, h = box
    horizontal = [s for s, on_edge in (("top", y <= 1), ("bottom", y + h >= height - 1)) if not on_edge]
    vertical = [s for s, on_edge in (("left", x <= 1), ("right", x + w >= width - 1)) if not on_edge]
    return horizontal, vertical


def sharp_sides(gray: np.ndarray, box: Box, rule: GraphicRule) -> bool:
    """Every inner side of `box` is a sharp step along at least `sharp_share` of its length."""
    height, width = gray.shape
    x, y, w, h = box
    horizontal, vertical = inner_sides(box, width, height)
    steps = []
    for side in horizontal:
        row = y if side == "top" else y + h - 1
        a, b = max(0, row - 1), min(height - 1, row + 1)
        steps.append(np.abs(gray[b, x : x + w].astype(np.int16) - gray[a, x : x + w]))
    for side in vertical:
        col = x if side == "left" else x + w - 1
        a, b = max(0, col - 1), min(width - 1, col + 1)
        steps.append(np.abs(gray[y : y + h, b].astype(np.int16) - gray[y : y + h, a]))
    return all(float((s >= rule.sharp_step).mean()) >= rule.sharp_share for s in steps)


def bright_boxes(gray: np.ndarray, rule: GraphicRule) -> list[tuple[Box, float, bool]]:
    """(box, rectangularity, sharp) of the bright regions of a frame that could be a graphic."""
    import cv2

    height, width = gray.shape
    _, binary = cv2.threshold(gray, rule.threshold, 255, cv2.THRESH_BINARY)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    found = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if w < rule.min_side * width or h < rule.min_side * height or w * h > rule.max_area * width * height:
            continue
        fill = cv2.contourArea(contour) / max(1, (w - 1) * (h - 1))  # a pixel contour runs through centres
        if fill < 0.8:
            continue
        found.append(((x, y, w, h), fill, sharp_sides(gray, (x, y, w, h), rule)))
    return found


def _track(tracks: list[_Track], index: int, box: Box, min_iou: float) -> _Track:
    """The track this sighting continues (or a new one); the sighting is recorded at `index`."""
    best = max(tracks, key=lambda t: iou(t.median(), box), default=None)
    if best is None or iou(best.median(), box) < min_iou or best.boxes[index] is not None:
        best = _Track(boxes=[None] * (index + 1))
        tracks.append(best)
    best.boxes[index] = box
    return best


def _pad(tracks: list[_Track], n: int) -> None:
    for t in tracks:
        t.boxes.extend([None] * (n - len(t.boxes)))


def _stable(track: _Track, rule: GraphicRule, height: int) -> bool:
    med = track.median()
    limit = max(2.0, rule.jitter * height)
    for b in track.boxes:
        if b is None:
            continue
        x, y, w, h = b
        mx, my, mw, mh = med
        if max(abs(x - mx), abs(y - my), abs(x + w - mx - mw), abs(y + h - my - mh)) > limit:
            return False
    return True


def _lasting(present: Sequence[bool], rule: GraphicRule) -> bool:
    seen = [i for i, p in enumerate(present) if p]
    if not seen:
        return False
    need = min(rule.min_samples, len(present))
    lifetime = seen[-1] - seen[0] + 1
    return len(seen) >= need and len(seen) >= rule.min_presence * lifetime


def spans(times: Sequence[float], present: Sequence[bool]) -> tuple[tuple[float, float], ...]:
    """Paint intervals: each run of samples with the box, widened to the neighbouring samples without
    it (the box appeared somewhere between them), and open-ended at the clip's ends."""
    out: list[tuple[float, float]] = []
    i, n = 0, len(present)
    while i < n:
        if not present[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and present[j + 1]:
            j += 1
        start = -np.inf if i == 0 else times[i - 1] + 1e-6
        end = np.inf if j == n - 1 else times[j + 1]
        out.append((float(start), float(end)))
        i = j + 1
    return tuple(out)


def _scale_out(box: Box, s: float, width: int, height: int) -> Box:
    """An analysis-pixel box in crop pixels, rounded outwards and one analysis pixel wider each side."""
    x, y, w, h = box
    x0, y0 = max(0, int((x - 1) / s)), max(0, int((y - 1) / s))
    x1, y1 = min(width, int(np.ceil((x + w + 1) / s))), min(height, int(np.ceil((y + h + 1) / s)))
    return x0, y0, x1 - x0, y1 - y0


def plan_overlays(
    times: Sequence[float],
    grays: Sequence[np.ndarray],
    text: Sequence[tuple[float, Sequence[Box]]] = (),
    rule: GraphicRule | None = None,
) -> OverlayPlan:
    """The overlay boxes of a clip from its sampled grayscale crops (full range, in time order) and
    the text boxes found at some sample times (crop pixels)."""
    import cv2

    from nwt_data.stages.flags import (  # here: flags imports this module
        INSET_MAX_AREA,
        INSET_MAX_SIDE,
        EdgeAccumulator,
        inset_boxes,
    )

    rule = rule or GraphicRule()
    if not grays:
        return OverlayPlan()
    crop_h, crop_w = grays[0].shape
    s = min(1.0, ANALYSIS_HEIGHT / crop_h)
    size = (max(8, round(crop_w * s)), max(8, round(crop_h * s)))
    small = [cv2.resize(g, size, interpolation=cv2.INTER_AREA) if s < 1 else g for g in grays]
    height, width = small[0].shape
    n = len(small)

    # Bright rectangles, tracked across samples.
    bright: list[_Track] = []
    seen_bright: list[list[Box]] = []  # every bright box of each sample, for `_moved_in`
    for i, g in enumerate(small):
        _pad(bright, i + 1)
        seen_bright.append([])
        for box, fill, sharp in bright_boxes(g, rule):
            seen_bright[-1].append(box)
            track = _track(bright, i, box, 0.7)
            track.shape_ok &= sharp and fill >= rule.rectangularity
    _pad(bright, n)
    # A bright object held still for a while (a sheet, a tablet) was somewhere near in the sample
    # before it stood still or after it moved on: it moved in; a graphic appears and goes whole.
    bright = [t for t in bright if not _moved_in(t, seen_bright)]

    # Static, wide text lines in the caption bands.
    texts: list[_Track] = []
    text_times = [t for t, _ in text]
    for k, (t, boxes) in enumerate(text):
        _pad(texts, k + 1)
        gray = small[int(np.argmin([abs(t - u) for u in times]))]
        for bx, by, bw, bh in merge_lines(boxes):
            box = (round(bx * s), round(by * s), max(1, round(bw * s)), max(1, round(bh * s)))
            if box[2] >= 1.5 * box[3]:
                _track(texts, k, grow_banner(gray, box, rule), 0.5)
    _pad(texts, len(text))
    low, high = rule.caption_bands
    captions = [
        t
        for t in texts
        if _stable(t, rule, height)
        and _lasting([b is not None for b in t.boxes], rule)
        and not low * height < t.median()[1] + t.median()[3] / 2 < high * height
    ]
    for c in captions:
        # A caption whose banner merges with the picture in some frames (a white banner over a white
        # shirt): the banner is what keeps its colour while the subject behind it moves.
        on = spans(text_times, [b is not None for b in c.boxes])
        during = [any(a <= t < z for a, z in on) for t in times]
        banner = static_banner(
            [g for g, d in zip(small, during, strict=True) if d],
            c.median(),
            absent=[g for g, d in zip(small, during, strict=True) if not d],
        )
        if banner != c.median():
            c.boxes = [banner if b is not None else None for b in c.boxes]
    # Text on a band as wide as the frame that never comes or goes is the set's (a name printed on
    # a desk); a caption strip of that width is one only when it comes or goes in the clip.
    captions = [c for c in captions if not (_full_width(c.median(), width) and all(c.boxes))]

    # Static boxes of straight sharp lines (insets), seen per sample where their lines are.
    edges = EdgeAccumulator()
    for g in small:
        edges.add(g)
    means = edges.means()
    insets: list[_Track] = []
    banners: list[_Track] = []  # wider line boxes: only with a caption inside (a lower-third banner)
    if means is not None:
        # One search with the banners' wide limits; an inset is a box within the inset limits.
        for box in inset_boxes(*means, min_coverage=rule.line_coverage, max_side=1.0):
            _, _, w, h = box
            small_box = w <= INSET_MAX_SIDE * width and h <= INSET_MAX_SIDE * height
            is_inset = small_box and w * h <= INSET_MAX_AREA * width * height
            if not is_inset and not any(inside(c.median(), box) for c in captions):
                continue  # a banner counts only with a caption in it: skip the per-sample check
            track = _Track(boxes=[box if _lines_present(g, box) else None for g in small])
            if is_inset and _moved_in(track, seen_bright):
                continue  # a bright thing held still a while (a tablet), not a picture-in-picture
            (insets if is_inset else banners).append(track)

    planned: list[PlannedBox] = []
    # Captions first: a text track is painted whole (its banner, when it sits on one).
    for kind, tracks in (("bright", bright), ("inset", insets), ("banner", banners)):
        for track in tracks:
            present = [b is not None for b in track.boxes]
            if not _lasting(present, rule) or not _stable(track, rule, height):
                continue
            med = track.median()
            track.text_inside = any(inside(c.median(), med) for c in captions)
            horizontal, vertical = inner_sides(med, width, height)
            if kind == "bright" and not (track.shape_ok or track.text_inside):
                continue
            if kind == "banner" and not track.text_inside:
                continue
            if not (horizontal and vertical) and not (track.text_inside and not all(present)):
                continue  # a wall or a desk, with a logo or not: only a band that comes or goes
            planned.append(PlannedBox(_scale_out(med, s, crop_w, crop_h), kind, spans(times, present)))
    for c in captions:
        med = c.median()
        if any(inside(med, p.box, slack=round(2 / s)) for p in planned):
            continue
        # The detector's boxes already carry a margin (the unclip), so they are painted as they are.
        present = [b is not None for b in c.boxes]
        planned.append(PlannedBox(_scale_out(med, s, crop_w, crop_h), "text", spans(text_times, present)))
    # Nested line boxes (a panel's picture inside the panel) and near-duplicates: keep the outer one.
    planned.sort(key=lambda p: -p.box[2] * p.box[3])
    kept: list[PlannedBox] = []
    for p in planned:
        if not any(inside(p.box, k.box, slack=round(3 / s)) for k in kept):
            kept.append(p)
    return OverlayPlan(tuple(kept), still(small))  # from the analysis frames: a sixth of the cost


def still(grays: Sequence[np.ndarray]) -> np.ndarray:
    """The median of the sampled frames, STILL_HEIGHT rows high (the set without its moving parts)."""
    import cv2

    height, width = grays[0].shape
    size = (max(1, round(width * STILL_HEIGHT / height)), STILL_HEIGHT)
    return np.median(
        np.stack([cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in grays]), axis=0
    ).astype(np.uint8)


def _moved_in(track: _Track, seen: Sequence[Sequence[Box]], overlap: float = 0.3) -> bool:
    """A box of about this track's size overlaps it in a sample next to one of its runs (the track
    is not there): the same object a little elsewhere, moving into or out of its place."""
    if not track.seen():
        return False
    med = track.median()
    area = med[2] * med[3]
    present = [b is not None for b in track.boxes]
    for i, here in enumerate(present):
        if here:
            continue
        beside = (i > 0 and present[i - 1]) or (i + 1 < len(present) and present[i + 1])
        if beside and any(
            iou(b, med) >= overlap and 0.6 <= b[2] * b[3] / max(1, area) <= 1.6 for b in seen[i]
        ):
            return True
    return False


def _full_width(box: Box, width: int) -> bool:
    return box[0] <= 1 and box[0] + box[2] >= width - 1


def grow_banner(gray: np.ndarray, box: Box, rule: GraphicRule, uniform: float = 12.0) -> Box:
    """The plain banner a text line sits on: `box` grown while the next row or column outside matches
    the colour around the text; kept only when the grown box's inner sides are sharp steps (a banner),
    else the text box itself (a caption straight on the picture)."""
    height, width = gray.shape
    x, y, w, h = box
    ring = np.concatenate(
        [gray[max(0, y - 2), x : x + w], gray[min(height - 1, y + h + 1), x : x + w],
         gray[y : y + h, max(0, x - 2)], gray[y : y + h, min(width - 1, x + w + 1)]]
    ).astype(np.float32)  # fmt: skip
    colour = float(np.median(ring))
    if float(np.mean(np.abs(ring - colour) <= uniform)) < 0.9:
        return box
    x0, y0, x1, y1 = max(0, x - 2), max(0, y - 2), min(width, x + w + 2), min(height, y + h + 2)

    def matches(strip: np.ndarray) -> bool:
        return strip.size > 0 and float(np.mean(np.abs(strip.astype(np.float32) - colour) <= uniform)) >= 0.9

    grew = True
    while grew:
        grew = False
        if x0 > 0 and matches(gray[y0:y1, x0 - 1]):
            x0, grew = x0 - 1, True
        if x1 < width and matches(gray[y0:y1, x1]):
            x1, grew = x1 + 1, True
        if y0 > 0 and matches(gray[y0 - 1, x0:x1]):
            y0, grew = y0 - 1, True
        if y1 < height and matches(gray[y1, x0:x1]):
            y1, grew = y1 + 1, True
    grown = (x0, y0, x1 - x0, y1 - y0)
    if grown[2] * grown[3] > rule.max_area * width * height or not sharp_sides(gray, grown, rule):
        return box
    return grown


def static_banner(
    grays: Sequence[np.ndarray], box: Box, uniform: float = 12.0, absent: Sequence[np.ndarray] = ()
) -> Box:
    """The banner under a text line whose edges are only partly in the picture (a white banner over a
    white shirt), from the samples of the caption's time on screen; `box` when there is none.

    The banner is what keeps the colour inside the text's box in every sample (it stays put; a
    subject of that colour behind it moves). Candidates: rectangles around the text, at most a text
    height taller on each side, as wide as the columns that keep the colour over their rows, solid
    inside along their top and bottom rows, with an inner vertical side, or as wide as the frame
    only when the banner is gone in one of the `absent` samples (the clip's samples without the
    caption; else a desk or a wall with a logo would pass). The banner is the one whose top and
    bottom edges are seen most (the colour ends across them in some sample, or the frame's edge
    bounds it), along a tenth of their length at least; a line through the banner where a shirt's
    top meets it is seen only along the shirt. When no such rectangle exists, a banner with one edge
    seen (its other edge on a subject of its colour in every sample) reaches as far past the text's
    middle row as that edge does: a caption sits in the middle of its banner."""
    import cv2

    if not grays:
        return box
    height, width = grays[0].shape
    x, y, w, h = box
    x, y, w, h = max(0, x), max(0, y), min(w, width - x), min(h, height - y)
    inside = np.stack([g[y : y + h, x : x + w] for g in grays]).astype(np.float32)
    colour = float(np.median(inside))
    # The samples the banner is in: most of the text's box has its colour (it comes and goes whole).
    on = (np.abs(inside - colour) <= uniform).mean(axis=(1, 2)) >= 0.5
    if on.sum() < 2:
        return box
    keeps = np.ones((height, width), bool)
    for g, o in zip(grays, on, strict=True):
        if o:
            keeps &= np.abs(g.astype(np.int16) - colour) <= uniform
    # Close the letters' strokes (thinner than a third of the box) into the banner.
    k = max(3, h // 3) | 1
    keeps = cv2.morphologyEx(keeps.view(np.uint8), cv2.MORPH_CLOSE, np.ones((k, k), np.uint8)).astype(bool)
    # The OCR box carries a margin that may reach past the banner: candidates need only its middle
    # half, which holds the letters (bold ones wider than the closing reaches count as banner).
    core0, core1 = y + h // 4, y + h - h // 4
    keeps[core0:core1, x : x + w] = True
    rows = np.concatenate([np.zeros((1, width)), np.cumsum(keeps, axis=0)])  # rows[y] = sum of keeps[:y]
    # Its top and bottom rows lie outside the filled middle (there, keeps is measured, not filled).
    tops = range(max(0, y - h), core0)
    bottoms = range(core1 + 1, min(height, y + 2 * h) + 1)
    best, best_seen = box, 0.0
    one_sided, one_seen = box, 0.0
    for y0, y1 in ((a, b) for a in tops for b in bottoms):
        solid = (rows[y1] - rows[y0]) / (y1 - y0) >= 0.9  # per column, over the candidate's rows
        if not solid[x : x + w].all():
            continue
        gaps = np.flatnonzero(~solid)
        x0 = int(gaps[gaps < x].max() + 1) if (gaps < x).any() else 0
        x1 = int(gaps[gaps >= x + w].min()) if (gaps >= x + w).any() else width
        if (
            x0 == 0
            and x1 == width
            and not any(
                float((np.abs(g[y0:y1].astype(np.int16) - colour) > uniform).mean()) >= 0.5 for g in absent
            )
        ):
            continue  # full width: only a strip that comes or goes as a whole
        if keeps[y0, x0:x1].mean() < 0.95 or keeps[y1 - 1, x0:x1].mean() < 0.95:
            continue  # a side that is not solid inside
        # The share of each horizontal side where the colour ends (its edge is in the picture); the
        # frame's edge bounds a strip flush with it.
        top = 1.0 if y0 == 0 else 1 - float(keeps[y0 - 1, x0:x1].mean())
        bottom = 1.0 if y1 == height else 1 - float(keeps[y1, x0:x1].mean())
        seen = min(top, bottom)
        # Of the rectangles whose sides are all partly seen, the one whose edges are seen most (a
        # line through the banner where a shirt's top meets it is seen along the shirt only).
        if seen >= 0.1 and (seen > best_seen + 1e-9 or (seen > best_seen - 1e-9 and y1 - y0 < best[3])):
            best, best_seen = (x0, y0, x1 - x0, y1 - y0), seen
        # A banner whose other edge lies on the subject in every sample: the text sits in its middle.
        elif seen < 0.1 and abs(y0 + y1 - (2 * y + h)) <= 2 and max(top, bottom) > one_seen + 1e-9:
            one_sided, one_seen = (x0, y0, x1 - x0, y1 - y0), max(top, bottom)
    if best == box and one_seen >= ONE_SIDED_SEEN:
        return one_sided
    return best


def _lines_present(gray: np.ndarray, box: Box, strength: float = 8.0, share: float = 0.5) -> bool:
    """The inner sides of an inset box are visible in this one frame (steps along most of each)."""
    height, width = gray.shape
    x, y, w, h = box
    horizontal, vertical = inner_sides(box, width, height)
    checks = []
    for side in horizontal:
        row = y if side == "top" else y + h
        if 0 < row < height:  # only the two rows either side are read (not the whole frame)
            pair = gray[row - 1 : row + 1, x : x + w].astype(np.int16)
            checks.append(np.abs(pair[1] - pair[0]))
    for side in vertical:
        col = x if side == "left" else x + w
        if 0 < col < width:
            pair = gray[y : y + h, col - 1 : col + 1].astype(np.int16)
            checks.append(np.abs(pair[:, 1] - pair[:, 0]))
    return bool(checks) and all(np.count_nonzero(c >= strength) >= share * c.size for c in checks)


def merge_lines(boxes: Sequence[Box]) -> list[Box]:
    """Text boxes on one line, less than a line height apart, as one box: the detector splits a line
    at a word gap in some frames and not in others, and a caption must keep one shape to be tracked."""
    out: list[Box] = []
    for box in sorted(boxes):
        x, y, w, h = box
        for i, (ox, oy, ow, oh) in enumerate(out):
            overlap = min(y + h, oy + oh) - max(y, oy)
            if overlap >= 0.5 * min(h, oh) and x - (ox + ow) <= max(h, oh):
                x0, y0 = min(x, ox), min(y, oy)
                out[i] = (x0, y0, max(x + w, ox + ow) - x0, max(y + h, oy + oh) - y0)
                break
        else:
            out.append(box)
    return out


def caption_lines(boxes: Sequence[Box], height: int, rule: GraphicRule | None = None) -> list[Box]:
    """The text boxes that could be a caption: wide lines (the rule's text tracks) in a caption band."""
    low, high = (rule or GraphicRule()).caption_bands
    return [
        b
        for b in merge_lines(boxes)
        if b[2] >= 1.5 * b[3] and not low * height < b[1] + b[3] / 2 < high * height
    ]


class TextSampler:
    """OCR on a clip's samples: the first sample of each 1/text_fps slot, and where the caption lines
    differ between two such samples (a caption came, went or moved), the samples between them, by
    bisection. A caption is then timed to one sample, and one that came on screen just before a
    slot's sample is seen more than once, at the cost of a few OCR runs per change only (a caption
    that stays the whole clip, or no text at all, costs nothing more than the slots)."""

    def __init__(self, start: float, text_fps: float, max_side: int = 256, rule: GraphicRule | None = None):
        self.start, self.text_fps, self.max_side = start, text_fps, max_side
        self.rule = rule or GraphicRule()
        self.found: list[tuple[float, list[Box]]] = []
        self._slot = -1
        self._pending: list[tuple[float, np.ndarray]] = []  # samples since the last slot's (RGB kept)
        self._last: list[Box] | None = None  # the caption lines of the last slot's sample

    def _ocr(self, t: float, rgb: np.ndarray) -> list[Box]:
        from nwt_data.curation.text import text_boxes

        boxes = text_boxes(np.ascontiguousarray(rgb), self.max_side)
        self.found.append((t, boxes))
        return caption_lines(boxes, rgb.shape[0], self.rule)

    @staticmethod
    def _differ(a: Sequence[Box], b: Sequence[Box]) -> bool:
        return any(max((iou(x, y) for y in b), default=0.0) < 0.5 for x in a) or any(
            max((iou(y, x) for x in a), default=0.0) < 0.5 for y in b
        )

    def _bisect(self, left: list[Box], between: list[tuple[float, np.ndarray]], right: list[Box]) -> None:
        if not between:
            return
        mid = len(between) // 2
        here = self._ocr(*between[mid])
        if self._differ(left, here):
            self._bisect(left, between[:mid], here)
        if self._differ(here, right):
            self._bisect(here, between[mid + 1 :], right)

    def add(self, t: float, rgb: np.ndarray) -> None:
        """The next sample (in time order)."""
        if self.text_fps <= 0:
            return
        slot = math.floor((t - self.start) * self.text_fps + 1e-6)
        if slot <= self._slot:
            self._pending.append((t, rgb))
            return
        self._slot = slot
        lines = self._ocr(t, rgb)
        if self._last is not None and self._differ(self._last, lines):
            self._bisect(self._last, self._pending, lines)
        self._last, self._pending = lines, []

    def result(self) -> list[tuple[float, list[Box]]]:
        """(time, text boxes) of every OCR'd sample, in time order. After the last slot's sample, a
        caption it shows is followed to the clip's last sample."""
        if self._last and self._pending:
            lines = self._ocr(*self._pending[-1])
            if self._differ(self._last, lines):
                self._bisect(self._last, self._pending[:-1], lines)
            self._pending = []
        return sorted(self.found, key=lambda f: f[0])


def sample_clip(
    frames: Iterable[tuple[float, np.ndarray]], start: float, fps: float, text_fps: float, max_side: int = 256
) -> tuple[list[float], list[np.ndarray], list[tuple[float, list[Box]]]]:
    """The inputs of `plan_overlays` from a clip's (time, RGB crop) frames: the first frame of each
    1/fps slot after `start` in grayscale, and the text boxes `TextSampler` finds on those."""
    import cv2

    times: list[float] = []
    grays: list[np.ndarray] = []
    text = TextSampler(start, text_fps, max_side)
    last = -1
    for t, rgb in frames:
        slot = math.floor((t - start) * fps + 1e-6)
        if slot <= last:
            continue
        last = slot
        rgb = np.ascontiguousarray(rgb)
        times.append(t)
        grays.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        text.add(t, rgb)
    return times, grays, text.result()
