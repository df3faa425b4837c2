"""The graphic rule's evidence across an episode (nwt_data.curation.episode): what every clip shows
at one place with one picture is the set's; what comes and goes, or changes its picture, is painted."""

from __future__ import annotations

import fcntl
import math
from pathlib import Path

import numpy as np

from nwt_data.config import MaskConfig
from nwt_data.curation.episode import ClipPlan, set_pieces
from nwt_data.curation.overlay import OverlayPlan, PlannedBox, merge_lines, plan_overlays, sample_clip
from nwt_data.curation.synthetic import (
    Case,
    development_episodes,
    held_out_cases_2,
    held_out_episodes,
    held_out_episodes_2,
    score,
)
from nwt_data.stages.mask import clear_plan_leftovers
from nwt_data.workspace import Workspace

WHOLE = ((-math.inf, math.inf),)
CROP_HEIGHT = 480  # the stills below are 96 rows: a fifth of it


def clip(boxes: list[PlannedBox], paint: dict[tuple[int, int, int, int], int], origin=(0, 0)) -> ClipPlan:  # type: ignore[no-untyped-def]
    """A clip whose still is a grey set with `paint` (crop-pixel box: gray level) drawn on it."""
    still = np.full((96, 80), 60, np.uint8)
    for (x, y, w, h), level in paint.items():
        still[y // 5 : (y + h) // 5, x // 5 : (x + w) // 5] = level
    return ClipPlan(OverlayPlan(tuple(boxes), still), origin, CROP_HEIGHT)


SIGN = (100, 40, 150, 60)


def test_a_box_every_clip_shows_alike_is_spared_and_one_in_some_clips_is_not() -> None:
    sign = PlannedBox(SIGN, "banner", WHOLE)
    panel = PlannedBox((0, 200, 120, 150), "bright", WHOLE)
    episode = [clip([sign], {SIGN: 200}) for _ in range(4)]
    episode[1] = clip([sign, panel], {SIGN: 200, panel.box: 240})
    assert all(set_pieces(c, episode, 0.8) == [sign] for c in episode)
    assert panel not in set_pieces(episode[1], episode, 0.8)
    # Three clips of four (0.75) are not enough at 0.8, but are at 0.75.
    episode[2] = clip([], {SIGN: 200})
    assert set_pieces(episode[0], episode, 0.8) == []
    assert set_pieces(episode[0], episode, 0.75) == [sign]


def test_no_evidence_from_fewer_than_three_clips_or_from_a_box_that_comes_and_goes() -> None:
    sign = PlannedBox(SIGN, "banner", WHOLE)
    assert set_pieces(clip([sign], {SIGN: 200}), [clip([sign], {SIGN: 200})] * 2, 0.5) == []
    coming = PlannedBox(SIGN, "banner", ((1.5, math.inf),))
    episode = [clip([coming], {SIGN: 200})] + [clip([sign], {SIGN: 200})] * 3
    assert set_pieces(episode[0], episode, 0.5) == []


def test_a_piece_the_subject_passes_in_front_of_still_counts() -> None:
    sign = PlannedBox(SIGN, "banner", WHOLE)
    hidden = PlannedBox(SIGN, "banner", ((-math.inf, 0.75), (1.0, math.inf)))  # a gap: the head in front
    episode = [clip([hidden], {SIGN: 200})] + [clip([sign], {SIGN: 200}) for _ in range(3)]
    assert set_pieces(episode[0], episode, 1.0) == [hidden]
    assert set_pieces(episode[1], episode, 1.0) == [sign]


def test_a_piece_split_into_other_boxes_in_one_clip_still_counts_but_a_new_picture_does_not() -> None:
    window = PlannedBox((300, 100, 80, 200), "inset", WHOLE)
    panes = [PlannedBox((x, y, 40, 100), "bright", WHOLE) for x in (300, 340) for y in (100, 200)]
    episode = [clip([window], {window.box: 230}) for _ in range(3)] + [clip(panes, {window.box: 230})]
    assert all(set_pieces(c, episode, 1.0) for c in episode)
    # The same box with another picture in two clips (a side box showing another story).
    episode[1] = clip([window], {window.box: 120})
    episode[2] = clip([window], {window.box: 170})
    assert set_pieces(episode[0], episode, 0.8) == []


def test_clips_are_compared_in_the_source_frame_whatever_their_crop() -> None:
    sign = PlannedBox(SIGN, "banner", WHOLE)
    moved = PlannedBox((SIGN[0] - 40, SIGN[1], SIGN[2], SIGN[3]), "banner", WHOLE)  # crop 40 px further right
    episode = [clip([sign], {SIGN: 200}), clip([sign], {SIGN: 200}), clip([moved], {moved.box: 200}, (40, 0))]
    assert all(set_pieces(c, episode, 1.0) for c in episode)
    # Without the offset the third clip's box is elsewhere in the frame: not the same piece.
    episode[2] = clip([moved], {moved.box: 200})
    assert set_pieces(episode[0], episode, 1.0) == []


def test_a_plan_reads_back_from_json_with_its_still() -> None:
    plan = OverlayPlan(
        (PlannedBox((1, 2, 3, 4), "text", ((-math.inf, 2.5), (3.0, math.inf))),),
        np.arange(12, dtype=np.uint8).reshape(3, 4),
    )
    back = OverlayPlan.from_json(plan.to_json())
    assert back == plan and back.still is not None and np.array_equal(back.still, plan.still)


def _plans(clips: tuple[Case, ...]) -> list[ClipPlan]:
    config = MaskConfig(workers=1)
    out = []
    for c in clips:
        sampled = sample_clip(zip(c.times, c.frames, strict=True), 0.0, config.overlay_fps, config.text_fps)
        out.append(ClipPlan(plan_overlays(*sampled), (0, 0), c.frames[0].shape[0]))
    return out


def test_development_episodes_sign_and_window_spared_side_boxes_painted() -> None:
    episodes = {e.name: e for e in development_episodes()}
    for name in ("sign with the show's name in every clip", "bright window in every clip",
                 "sign in every clip, a side box in clips 1 and 2"):  # fmt: skip
        episode = episodes[name]
        plans = _plans(episode.clips)
        for case, plan in zip(episode.clips, plans, strict=True):
            assert plan.plan, case.name  # each clip alone paints the set piece...
            painted = plan.plan.without(set_pieces(plan, plans, MaskConfig().set_piece_share))
            s = score(case.frames[0].shape[:2], case.truth, [painted.boxes_at(t) for t in case.times])
            assert s.false_frames == 0, case.name  # ...the episode spares it
            assert s.overlay_masked == s.overlay_frames, case.name  # and the side boxes stay painted


def test_a_sheet_or_a_tablet_held_still_for_a_while_is_not_a_graphic() -> None:
    (sheet,) = [c for c in held_out_cases_2() if c.name.startswith("sheet")]
    (tablet,) = [e.clips[0] for e in held_out_episodes() if e.name.startswith("tablet")]
    for plan in _plans((sheet, tablet)):
        assert not plan.plan, plan.plan.boxes


def test_mask_clears_the_leftovers_of_killed_plan_writers_only(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    folder = ws.plans_dir / "ep"
    folder.mkdir(parents=True)
    dead, busy = folder / ".ep_00000.json.0a0a0a0a.tmp", folder / ".ep_00001.json.0b0b0b0b.tmp"
    dead.write_text("half a plan")
    busy.write_text("being written")
    with open(folder / "ep_00001.lock", "a") as writer:  # a live writer holds its clip's lock
        fcntl.flock(writer, fcntl.LOCK_EX)
        clear_plan_leftovers(ws)
    assert not dead.exists() and busy.exists()


def test_text_split_at_a_word_gap_in_some_frames_is_one_line() -> None:
    # The detector read "SARA OKO, NURSE" as two boxes in one sample and one in the next.
    assert merge_lines([(7, 427, 145, 31), (138, 428, 96, 30)]) == [(7, 427, 227, 31)]
    assert merge_lines([(7, 427, 228, 32)]) == [(7, 427, 228, 32)]
    # Two lines, one above the other, and two words far apart stay apart.
    assert len(merge_lines([(0, 400, 100, 30), (0, 440, 100, 30)])) == 2
    assert len(merge_lines([(0, 400, 100, 30), (200, 400, 100, 30)])) == 2


def test_a_lower_third_with_another_name_in_every_clip_is_painted_in_every_clip() -> None:
    (names,) = [e for e in held_out_episodes_2() if e.name.startswith("lower third")]
    plans = _plans(names.clips)
    for case, plan in zip(names.clips, plans, strict=True):
        painted = plan.plan.without(set_pieces(plan, plans, MaskConfig().set_piece_share))
        s = score(case.frames[0].shape[:2], case.truth, [painted.boxes_at(t) for t in case.times])
        assert s.overlay_masked == s.overlay_frames, case.name


def test_a_piece_seen_at_another_exposure_is_the_same_piece() -> None:
    sign = PlannedBox(SIGN, "banner", WHOLE)
    base = clip([sign], {SIGN: 226})
    episode = [base]
    for exposure in (0.94, 1.05, 0.97):  # the whole still, set and sign, a few percent darker or brighter
        other = clip([sign], {SIGN: 226})
        assert other.plan.still is not None
        still = np.clip(other.plan.still * exposure, 0, 255).astype(np.uint8)
        episode.append(ClipPlan(OverlayPlan(other.plan.boxes, still), (0, 0), CROP_HEIGHT))
    assert all(set_pieces(c, episode, 1.0) == [sign] for c in episode)
