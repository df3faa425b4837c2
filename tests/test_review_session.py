"""The review logic (queue, decisions, undo, filters, persistence) without any UI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nwt_data.catalog import Catalog, EpisodeSource
from nwt_data.review.session import (
    ReviewError,
    ReviewSession,
    accept_unflagged,
    export_decisions,
    import_decisions,
)


def _clip(episode: str, index: int, status: str = "ok", flags: str | None = None) -> dict:
    return {
        "clip_id": f"{episode}_{index:05d}", "episode_id": episode, "clip_index": index,
        "path": f"clips/{episode}/{episode}_{index:05d}.mp4", "start_time": 4.0 * index,
        "end_time": 4.0 * index + 4, "start_pts": 0, "end_pts": 0, "time_base": "1/30", "clip_offset": 0.0,
        "segment_frame_count": 120, "has_audio": 1, "status": status, "flags": flags,
        "flag_status": "done" if flags is not None else "pending",
    }  # fmt: skip


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    for episode, n in (("a", 4), ("b", 3)):
        catalog.add_episode(EpisodeSource(episode, f"http://x/{episode}.mp4", "url", None, {}))
        clips = [_clip(episode, i, flags="overlay" if (episode, i) == ("a", 2) else "") for i in range(n)]
        clips.append(_clip(episode, n, status="too_short"))
        catalog.save_segmentation(episode, clips, {})
    return catalog


def _decisions(catalog: Catalog) -> dict[str, tuple]:
    rows = catalog.conn.execute(
        "SELECT clip_id, review, review_reason, review_note, reviewer FROM clips WHERE review IS NOT NULL"
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def test_queue_decisions_and_persistence(catalog: Catalog, tmp_path: Path) -> None:
    session = ReviewSession(catalog, "ann")
    assert session.queue == ["a_00000", "a_00001", "a_00002", "a_00003", "b_00000", "b_00001", "b_00002"]
    assert session.accept() == "a_00000"
    assert session.reject("holds_object") == "a_00001"
    assert session.current_id == "a_00002"
    with pytest.raises(ReviewError, match="needs a note"):
        session.reject("other")
    session.reject("other", "boom mic in frame")
    # Persisted at once: a second connection sees exactly these decisions.
    reopened = Catalog(tmp_path / "catalog.sqlite")
    assert _decisions(reopened) == {
        "a_00000": ("accepted", None, None, "ann"),
        "a_00001": ("rejected", "holds_object", None, "ann"),
        "a_00002": ("rejected", "other", "boom mic in frame", "ann"),
    }
    # Quitting and reopening resumes at the first unreviewed clip.
    again = ReviewSession(reopened, "ann", filter="all")
    assert again.first_unreviewed() == "a_00003"
    assert ReviewSession(reopened, "ann").current_id == "a_00003"  # the unreviewed queue
    assert again.counts() == {"accepted": 1, "rejected": 2, "unreviewed": 4}


def test_undo_restores_the_previous_decision(catalog: Catalog) -> None:
    session = ReviewSession(catalog, "ann")
    session.accept()
    session.reject("not_at_desk")
    assert session.undo() == "a_00001"
    assert session.current_id == "a_00001"
    assert _decisions(catalog) == {"a_00000": ("accepted", None, None, "ann")}
    session.set_filter("all")
    session.jump("a_00000")
    session.reject("overlay")  # change a decision, then undo back to "accepted", not to nothing
    assert session.undo() == "a_00000"
    assert _decisions(catalog)["a_00000"] == ("accepted", None, None, "ann")
    assert session.undo() == "a_00000"
    assert session.undo() is None
    assert _decisions(catalog) == {}
    log = catalog.conn.execute("SELECT COUNT(*), SUM(undone) FROM review_log").fetchone()
    assert tuple(log) == (3, 3)


def test_filters_navigation_and_jump(catalog: Catalog) -> None:
    session = ReviewSession(catalog, "ann", filter="flagged")
    assert session.queue == ["a_00002"]
    session.set_filter("all")
    session.jump("b_00001")
    assert session.current_id == "b_00001"
    session.reject("other_person")
    session.set_filter("rejected")
    assert session.queue == ["b_00001"]
    assert session.cycle_filter() == "all"
    assert session.jump("2") == "a_00001"
    assert session.previous() == "a_00000" and session.previous() == "a_00000"
    with pytest.raises(ReviewError, match="not in the all queue"):
        session.jump("zz_00000")
    flagged_first = ReviewSession(catalog, "ann", filter="all", flagged_first=True)
    assert flagged_first.queue[0] == "a_00002"
    assert "a_00004" not in flagged_first.queue  # too short: nothing to review


def test_two_reviewers_never_lose_each_others_decisions(catalog: Catalog, tmp_path: Path) -> None:
    ann = ReviewSession(catalog, "ann")
    bob = ReviewSession(Catalog(tmp_path / "catalog.sqlite"), "bob")  # another connection
    ann.accept()  # a_00000
    bob.jump("a_00001")
    bob.reject("overlay")
    assert ann.current_id == "a_00001"  # ann's queue is stable while she looks at a clip
    assert ann.next() == "a_00002"
    bob.jump("a_00003")
    bob.accept()
    ann.accept()  # a_00002; moving on skips a_00003, which bob decided meanwhile
    assert ann.current_id == "b_00000"
    bob.jump("a_00002")
    bob.reject("not_at_desk")  # bob overrides ann's decision...
    with pytest.raises(ReviewError, match="decided by bob since"):
        ann.undo()  # ...and ann's undo refuses to erase it
    assert _decisions(catalog) == {
        "a_00000": ("accepted", None, None, "ann"),
        "a_00001": ("rejected", "overlay", None, "bob"),
        "a_00002": ("rejected", "not_at_desk", None, "bob"),
        "a_00003": ("accepted", None, None, "bob"),
    }
    log = catalog.conn.execute("SELECT reviewer, clip_id FROM review_log ORDER BY entry_id").fetchall()
    assert [tuple(r) for r in log] == [
        ("ann", "a_00000"), ("bob", "a_00001"), ("bob", "a_00003"), ("ann", "a_00002"), ("bob", "a_00002"),
    ]  # fmt: skip


def test_export_import_and_accept_unflagged(catalog: Catalog, tmp_path: Path) -> None:
    session = ReviewSession(catalog, "ann")
    session.accept()
    session.reject("other", "kid, walking by")
    for suffix in (".csv", ".jsonl"):
        out = tmp_path / f"decisions{suffix}"
        assert export_decisions(catalog, out) == 2
        fresh = Catalog(tmp_path / f"fresh{suffix}.sqlite")
        for episode, n in (("a", 4), ("b", 3)):
            fresh.add_episode(EpisodeSource(episode, "u", "url", None, {}))
            fresh.save_segmentation(episode, [_clip(episode, i) for i in range(n)], {})
        applied, problems = import_decisions(fresh, out)
        assert (applied, problems) == (2, [])
        assert _decisions(fresh) == _decisions(catalog)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"clip_id": "a_00003", "review": "maybe"}) + "\n")
    assert import_decisions(catalog, bad)[1] == ["a_00003: bad decision 'maybe'/None"]
    assert accept_unflagged(catalog, "auto") == 4  # a_00003, b_00000..2; a_00002 is flagged
    assert _decisions(catalog)["b_00002"] == ("accepted", None, None, "auto")
    assert "a_00002" not in _decisions(catalog)


def test_queue_of_one_flag_and_accept_unflagged_respect_the_speech_flags(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog.add_episode(EpisodeSource("s", "http://x/s.mp4", "url", None, {}))
    flags = ["no_speech", "low_speech,small_face", "", "no_speech_like_name", "overlay,no_speech"]
    catalog.save_segmentation("s", [_clip("s", i, flags=f) for i, f in enumerate(flags)], {})
    session = ReviewSession(catalog, "ann", only_flag="no_speech")
    assert session.queue == ["s_00000", "s_00004"]  # whole names only, anywhere in the list
    assert ReviewSession(catalog, "ann", only_flag="low_speech").queue == ["s_00001"]
    with pytest.raises(ReviewError, match="unknown flag"):
        ReviewSession(catalog, "ann", only_flag="speech")
    # A clip with any speech flag is not bulk-accepted.
    assert accept_unflagged(catalog, "ann") == 1
    assert _decisions(catalog) == {"s_00002": ("accepted", None, None, "ann")}
