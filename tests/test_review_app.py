"""The review app driven by Textual's own test pilot, and by a person's keys inside tmux."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nwt_data.catalog import Catalog
from nwt_data.review.app import ReviewApp
from nwt_data.review.session import ReviewSession


@pytest.fixture
def review_workspace(tmp_path: Path, make_video, cli) -> Path:
    """Two small episodes segmented into 5 reviewable clips."""
    files = {
        "ep-a": make_video("a.mp4", seconds=12.2, gop=60, width=320, height=180),
        "ep-b": make_video("b.mp4", seconds=8.2, fps="30000/1001", gop=60, width=320, height=180),
    }
    manifest = tmp_path / "m.csv"
    manifest.write_text("episode_id,url\n" + "".join(f"{k},{v}\n" for k, v in files.items()))
    ws = tmp_path / "ws"
    assert cli("fetch", manifest, "-w", ws).exit_code == 0
    assert cli("segment", "-w", ws).exit_code == 0
    return ws


def _decisions(ws: Path) -> dict[str, tuple]:
    rows = Catalog(ws / "catalog.sqlite").conn.execute(
        "SELECT clip_id, review, review_reason, review_note, reviewer FROM clips WHERE review IS NOT NULL"
    )
    return {r[0]: tuple(r[1:]) for r in rows}


async def _wait_for_frame(app: ReviewApp, pilot, clip_id: str) -> None:
    for _ in range(200):
        if clip_id in app.ready_at:
            return
        await pilot.pause(0.02)
    raise AssertionError(f"{clip_id} was never shown")


def test_pilot_accept_reject_undo_filter_quit_and_resume(review_workspace: Path) -> None:
    asyncio.run(_pilot_scenario(review_workspace))


async def _pilot_scenario(ws: Path) -> None:
    session = ReviewSession(Catalog(ws / "catalog.sqlite"), "pilot")
    queue = list(session.queue)
    assert len(queue) == 5
    app = ReviewApp(session, ws)
    async with app.run_test(size=(120, 40)) as pilot:
        await _wait_for_frame(app, pilot, queue[0])
        assert queue[0] in app.export_screenshot()
        await pilot.press("a")  # accept clip 1
        await pilot.press("2")  # reject clip 2: holds an object
        await pilot.press("7")  # clip 3: other, with a note
        await pilot.press(*"boom mic", "enter")
        await pilot.press("u")  # undo the note rejection: back on clip 3, unreviewed
        assert app.session.current_id == queue[2]
        await pilot.press("4")  # reject clip 3 for an overlay instead
        await _wait_for_frame(app, pilot, queue[3])
        assert app.playing  # a shown clip plays by itself
        await pilot.press("space")  # pause...
        paused_at = app.frame_index
        assert not app.playing
        await pilot.press("full_stop", "full_stop", "comma")  # ...step two frames forward, one back
        assert app.frame_index == paused_at + 1 and not app.playing
        await pilot.press("f")  # filter: flagged (none computed) -> empty
        assert app.session.filter == "flagged" and app.session.current_id is None
        await pilot.press("f")  # rejected
        assert app.session.queue == [queue[1], queue[2]]
        await pilot.press("question_mark")
        assert app.screen.__class__.__name__ == "HelpScreen"
        await pilot.press("escape", "q")
    assert _decisions(ws) == {
        queue[0]: ("accepted", None, None, "pilot"),
        queue[1]: ("rejected", "holds_object", None, "pilot"),
        queue[2]: ("rejected", "overlay", None, "pilot"),
    }
    # Reopening resumes at the first unreviewed clip.
    again = ReviewApp(ReviewSession(Catalog(ws / "catalog.sqlite"), "pilot"), ws)
    async with again.run_test(size=(120, 40)) as pilot:
        assert again.session.current_id == queue[3]
        await pilot.press("g", *"5", "enter")  # jump to queue number 5 (the unreviewed queue: 2 left)
        assert "not in the unreviewed queue" in again.message
        await pilot.press("g", *queue[4], "enter")
        assert again.session.current_id == queue[4]
        await pilot.press("enter")  # accept
        await pilot.press("q")
    assert _decisions(ws)[queue[4]] == ("accepted", None, None, "pilot")
    assert len(_decisions(ws)) == 4


def test_next_clip_is_prefetched(review_workspace: Path) -> None:
    async def run() -> tuple[float, float]:
        session = ReviewSession(Catalog(review_workspace / "catalog.sqlite"), "pilot")
        app = ReviewApp(session, review_workspace)
        async with app.run_test(size=(120, 40)) as pilot:
            first, second = session.queue[:2]
            await _wait_for_frame(app, pilot, first)
            for _ in range(200):  # the prefetch of the next clip finishes in the background
                if second in app.cache:
                    break
                await pilot.pause(0.02)
            await pilot.press("n")
            await _wait_for_frame(app, pilot, second)
            return app.ready_at[second] - app.shown_at[second], app.ready_at[first] - app.shown_at[first]

    prefetched, cold = asyncio.run(run())
    assert prefetched < cold  # shown from the cache, without waiting for a decode


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_in_tmux_as_a_person_would(review_workspace: Path, tmp_path: Path) -> None:
    ws = review_workspace
    queue = ReviewSession(Catalog(ws / "catalog.sqlite"), "x").queue
    session = f"nwt-review-{os.getpid()}"
    exe = Path(sys.executable).parent / "nwt-data"
    command = f"{exe} review --workspace {ws} --reviewer tmux-person"
    tmux = ["tmux", "-L", session]
    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command], check=True)
    try:

        def screen() -> str:
            return subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True,
                                  text=True, check=False).stdout  # fmt: skip

        def wait_for(text: str) -> str:
            for _ in range(150):
                shown = screen()
                if text in shown:
                    return shown
                time.sleep(0.1)
            raise AssertionError(f"{text!r} never appeared on screen:\n{screen()}")

        wait_for(queue[0])
        subprocess.run([*tmux, "send-keys", "-t", session, "a"], check=True)
        wait_for(queue[1])
        subprocess.run([*tmux, "send-keys", "-t", session, "3"], check=True)
        shown = wait_for(f"rejected {queue[1]}")
        assert queue[2] in shown
        subprocess.run([*tmux, "send-keys", "-t", session, "q"], check=True)
        for _ in range(100):
            if subprocess.run([*tmux, "has-session", "-t", session], capture_output=True).returncode != 0:
                break
            time.sleep(0.1)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    assert _decisions(ws) == {
        queue[0]: ("accepted", None, None, "tmux-person"),
        queue[1]: ("rejected", "other_person", None, "tmux-person"),
    }


def test_the_frame_timer_survives_other_screens_and_quitting(review_workspace: Path) -> None:
    """The 15 Hz timer and decode callbacks once looked `#frame` up on whatever screen was on top."""

    async def run() -> ReviewApp:
        session = ReviewSession(Catalog(review_workspace / "catalog.sqlite"), "pilot")
        app = ReviewApp(session, review_workspace)
        async with app.run_test(size=(120, 40)) as pilot:
            await _wait_for_frame(app, pilot, session.queue[0])
            assert app.playing
            await pilot.press("question_mark")  # the help screen covers the player...
            shown = app.frame_index
            await pilot.pause(0.6)  # ...while about nine ticks move the clip on underneath
            assert app.screen.__class__.__name__ == "HelpScreen" and app.frame_index != shown
            await pilot.press("escape", "q")
        return app

    app = asyncio.run(run())
    app.playing = True
    app._tick()  # a tick that fires after the screen is gone does nothing
