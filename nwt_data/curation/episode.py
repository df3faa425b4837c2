"""Evidence across an episode: a set piece is in every clip, a graphic comes and goes.

Within one clip, a sign on the back wall, a bright window or a screen with the show's logo look like
a graphic: static, sharp, rectangular, some with text (the synthetic `held_out_cases_2` were painted
by the graphic rule for exactly that reason). Across the clips of an episode they differ: the set
stands in (nearly) every clip, at the same place in the source frame with the same look, from each
clip's start to its end (with gaps where the subject passes in front of it), while the overlays the
paper masks ("seemingly random side overlays", Appendix D step 6) come and go, or change their
picture, from clip to clip. So a planned box seen from its clip's start to its end is not painted
when at least `share` of the episode's clips (and `MIN_CLIPS` clips at least) show it so: there,
that clip's boxes seen from start to end cover it (however the rule split it into boxes) and the
clip's still (its median frame: the set without the moving subject) shows the same picture in it
(another name on a lower third in each clip is another picture).

What this spares besides the set: a graphic that never leaves and never changes in the episode (a
channel's corner logo). The model learns such a static thing as part of the set, which is what the
paper's masking was for. What it does not spare: set pieces seen from different camera angles across
the episode (a piece must be at one place in the source frame), or in an episode of fewer than
`MIN_CLIPS` clips (no evidence: the rule of one clip holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nwt_data.curation.overlay import Box, OverlayPlan, PlannedBox

MIN_CLIPS = 3  # an episode with fewer clips gives no evidence
COVER = 0.9  # share of a box another clip's boxes must cover
DIFFER_LEVEL = 24  # two looks differ at a pixel of their stills by more than this gray level...
DIFFER_SHARE = 0.05  # ...in at most this share of the box, for one piece (text that changes: 14-18%)


@dataclass(frozen=True)
class ClipPlan:
    """One clip's overlay plan with where its crop sits in the episode's frame."""

    plan: OverlayPlan
    origin: tuple[int, int]  # the crop's top-left corner in source pixels
    crop_height: int

    def in_crop(self, box: Box) -> Box:
        """A source-frame box in this clip's crop pixels."""
        x, y, w, h = box
        return x - self.origin[0], y - self.origin[1], w, h

    def in_source(self, box: Box) -> Box:
        x, y, w, h = box
        return x + self.origin[0], y + self.origin[1], w, h

    def covers(self, box: Box) -> bool:
        """This clip's boxes seen from its start to its end paint at least COVER of `box` (source
        pixels), however the rule split the thing into boxes here."""
        x, y, w, h = self.in_crop(box)
        painted = np.zeros((h, w), bool)
        for b in self.plan.boxes:
            if b.through_clip:
                bx, by, bw, bh = b.box
                painted[max(0, by - y) : max(0, by + bh - y), max(0, bx - x) : max(0, bx + bw - x)] = True
        return bool(painted.mean() >= COVER)

    def look(self, box: Box) -> np.ndarray | None:
        """`box` (source pixels) as this clip's still shows it; None where it leaves the crop."""
        still = self.plan.still
        if still is None:
            return None
        s = still.shape[0] / self.crop_height
        x, y, w, h = self.in_crop(box)
        x0, y0 = max(0, int(x * s)), max(0, int(y * s))
        x1 = min(still.shape[1], int(np.ceil((x + w) * s)))
        y1 = min(still.shape[0], int(np.ceil((y + h) * s)))
        if x0 != int(x * s) or y0 != int(y * s) or x1 - x0 < 1 or y1 - y0 < 1:
            return None  # the box is not within this clip's crop
        return still[y0:y1, x0:x1]


def shows_the_same(clip: ClipPlan, other: ClipPlan, box: Box) -> bool:
    """`other` paints `box` (source pixels) from its start to its end, and its still shows there
    what `clip`'s does: at most DIFFER_SHARE of the pixels differ by more than DIFFER_LEVEL once the
    two clips' exposures are matched (noise, the codec and light change a little everywhere;
    another name on a lower third changes its letters' pixels a lot)."""
    import cv2

    if not other.covers(box):
        return False
    a, b = clip.look(box), other.look(box)
    if a is None or b is None:
        return False
    if a.shape != b.shape:  # crops of other sizes round the box differently
        b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
    # The camera may expose one clip a few percent brighter than another: compare at one exposure
    # (the stills' median levels, mostly the set's walls).
    assert clip.plan.still is not None and other.plan.still is not None
    exposure = float(np.median(clip.plan.still)) / max(1.0, float(np.median(other.plan.still)))
    differ = np.abs(a.astype(np.float32) - b.astype(np.float32) * exposure) > DIFFER_LEVEL
    return float(differ.mean()) <= DIFFER_SHARE


def set_pieces(clip: ClipPlan, episode: Sequence[ClipPlan], share: float) -> list[PlannedBox]:
    """The boxes of `clip`'s plan that are the set's: on screen from the clip's start to its end
    (gaps are the subject passing in front: a graphic is drawn over it), and so in at least `share`
    of the episode's clips (`episode` includes `clip`)."""
    if len(episode) < MIN_CLIPS:
        return []
    found = []
    for planned in clip.plan.boxes:
        if not planned.through_clip:
            continue  # it comes or goes: a graphic (a gap between is something passing in front)
        box = clip.in_source(planned.box)
        if sum(shows_the_same(clip, other, box) for other in episode) >= share * len(episode):
            found.append(planned)
    return found


def to_paint(clip: ClipPlan, episode: Sequence[ClipPlan], share: float) -> OverlayPlan:
    """`clip`'s plan less its set pieces (`set_pieces`)."""
    return clip.plan.without(set_pieces(clip, episode, share))
