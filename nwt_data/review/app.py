"""`nwt-data review`: a keyboard-first Textual app over a ReviewSession.

The app only displays and dispatches keys; every decision goes through `ReviewSession`, which writes
it to the catalog at once. Clips are decoded in worker threads (the current one first, then the next
two ahead), so the UI never blocks and moving to the next clip is usually instant.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Input, Static

# Imported before any app starts: textual-image asks the terminal for its graphics support and cell
# size on import, and once Textual owns the terminal the answer would arrive as key presses.
from textual_image.widget import Image

from nwt_data.errors import NwtError
from nwt_data.media.clip import ClipWindow, kept_frames
from nwt_data.review.session import FILTERS, REASONS, ReviewSession

DISPLAY_SIZE = (112, 128)  # half the training frame: plenty for a terminal, quick to decode
CACHED_CLIPS = 6
PREFETCH = 2


@dataclass(frozen=True)
class DecodedClip:
    clip_id: str
    times: list[float]  # seconds from the kept window's start
    frames: list[Any]  # PIL images


def decode_clip(workspace_root: Path, row: Any) -> DecodedClip:
    """The kept, cropped window of a clip as small PIL images with their times."""
    import cv2
    from PIL import Image

    window = ClipWindow.from_row(workspace_root, row)
    times, frames = [], []
    for t, rgb in kept_frames(window):
        times.append(t - window.trim_start)
        frames.append(Image.fromarray(cv2.resize(rgb, DISPLAY_SIZE, interpolation=cv2.INTER_AREA)))
    return DecodedClip(row["clip_id"], times, frames)


class PromptScreen(ModalScreen[str | None]):
    """Ask for one line of text (a rejection note, a clip to jump to)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Static(self.question)
            yield Input(id="prompt-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        table = Table(title="nwt-data review keys", show_header=False, box=None)
        rows = [
            ("right / n, left / p", "next / previous clip"),
            ("space", "play / pause"),
            (". and ,", "step one frame forward / back"),
            ("a or enter", "accept"),
            *((r.key, f"reject: {r.label}") for r in REASONS),
            ("u", "undo your last decision"),
            ("g", "jump to a clip (id or queue number)"),
            ("f", f"filter: {' -> '.join(FILTERS)}"),
            ("x", "open the clip in an external player (mpv, ffplay or vlc)"),
            ("?", "this help"),
            ("q", "quit (every decision is already saved)"),
        ]
        for key, what in rows:
            table.add_row(Text(key, style="bold"), what)
        with Vertical(id="help-box"):
            yield Static(table)

    def action_close(self) -> None:
        self.dismiss(None)


class ReviewApp(App[None]):
    CSS_PATH = "review.tcss"
    TITLE = "nwt-data review"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right,n", "next", "Next"),
        Binding("left,p", "previous", "Prev"),
        Binding("space", "play", "Play/pause"),
        Binding("full_stop", "step(1)", "Step", show=False),
        Binding("comma", "step(-1)", "Back", show=False),
        Binding("a,enter", "accept", "Accept"),
        *(Binding(r.key, f"reject('{r.code}')", r.label, show=False) for r in REASONS if r.code != "other"),
        Binding("7,o", "reject_other", "Other…", show=False),
        Binding("u", "undo", "Undo"),
        Binding("g", "jump", "Jump"),
        Binding("f", "filter", "Filter"),
        Binding("x", "external", "Player", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, session: ReviewSession, workspace_root: Path, *, resume: bool = True) -> None:
        super().__init__()
        self.session = session
        self.workspace_root = workspace_root
        self.cache: OrderedDict[str, DecodedClip] = OrderedDict()
        self.decoding: set[str] = set()
        self.playing = False
        self.message = ""
        self.frame_index = 0
        self.play_started = 0.0
        self.play_offset = 0.0
        self.shown_at: dict[str, float] = {}  # clip id -> when it was asked for (for the benchmark)
        self.ready_at: dict[str, float] = {}  # clip id -> when its first frame was on screen
        if resume and session.filter != "unreviewed":
            session.first_unreviewed()

    # --- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            yield Image(id="frame")
            with Vertical(id="side"):
                yield Static(id="info")
                yield Static(id="message")
        yield Static(id="queue")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"reviewer {self.session.reviewer}"
        # The main screen's widgets, held here: App.query_one searches the screen on top (help, jump)
        # or none at all while quitting, and the 15 Hz timer and decode threads run through both.
        self.frame_view = self.query_one("#frame")
        self.info_box = self.query_one("#info", Static)
        self.queue_line = self.query_one("#queue", Static)
        self.message_box = self.query_one("#message", Static)
        self.ticker = self.set_interval(1 / 15, self._tick)
        self.show_current()

    def on_unmount(self) -> None:
        self.ticker.stop()

    # --- showing clips ------------------------------------------------------------------------
    def show_current(self) -> None:
        self.playing = False
        self.frame_index = 0
        row = self.session.current()
        self._render_info(row)
        if row is None:
            self.frame_view.image = None
            return
        self.shown_at[row["clip_id"]] = time.perf_counter()
        decoded = self.cache.get(row["clip_id"])
        if decoded is not None:
            self._show_frame(decoded)
            self.playing = True
            self.play_started, self.play_offset = time.perf_counter(), 0.0
        else:
            self._request(row)
        for offset in range(1, PREFETCH + 1):
            ahead = self.session.peek(offset)
            if ahead:
                self._request(self.session.clip(ahead))

    def _request(self, row: Any) -> None:
        clip_id = row["clip_id"]
        if clip_id in self.cache or clip_id in self.decoding:
            return
        self.decoding.add(clip_id)
        self._decode(dict(row))

    @work(thread=True, group="decode")
    def _decode(self, row: dict[str, Any]) -> None:
        try:
            decoded = decode_clip(self.workspace_root, row)
        except (NwtError, ValueError, OSError) as err:
            self.call_from_thread(self._decode_failed, row["clip_id"], str(err))
            return
        except Exception as err:  # PyAV errors: show them, keep the app alive
            self.call_from_thread(self._decode_failed, row["clip_id"], f"{type(err).__name__}: {err}")
            return
        self.call_from_thread(self._decoded, decoded)

    def _decoded(self, decoded: DecodedClip) -> None:
        self.decoding.discard(decoded.clip_id)
        self.cache[decoded.clip_id] = decoded
        while len(self.cache) > CACHED_CLIPS:
            self.cache.popitem(last=False)
        if decoded.clip_id == self.session.current_id and decoded.clip_id not in self.ready_at:
            self._show_frame(decoded)
            self.playing = True
            self.play_started, self.play_offset = time.perf_counter(), 0.0

    def _decode_failed(self, clip_id: str, message: str) -> None:
        self.decoding.discard(clip_id)
        if clip_id == self.session.current_id:
            self.say(f"cannot decode {clip_id}: {message}")

    def _show_frame(self, decoded: DecodedClip) -> None:
        if not decoded.frames:
            return
        self.frame_index = max(0, min(self.frame_index, len(decoded.frames) - 1))
        self.frame_view.image = decoded.frames[self.frame_index]
        self.ready_at.setdefault(decoded.clip_id, time.perf_counter())

    def _tick(self) -> None:
        decoded = self.cache.get(self.session.current_id or "")
        if not self.is_running or not self.playing or decoded is None or not decoded.times:
            return
        elapsed = self.play_offset + time.perf_counter() - self.play_started
        if elapsed > decoded.times[-1]:  # loop the clip
            self.play_started, self.play_offset, elapsed = time.perf_counter(), 0.0, 0.0
        index = max(0, bisect.bisect_right(decoded.times, elapsed) - 1)
        if index != self.frame_index:
            self.frame_index = index
            self._show_frame(decoded)

    def _render_info(self, row: Any) -> None:
        info = self.info_box
        s = self.session
        queue_line = f"{min(s.position + 1, len(s.queue))}/{len(s.queue)} · filter {s.filter}"
        counts = s.counts()
        queue_line += "".join(f" · {k} {v}" for k, v in sorted(counts.items()))
        self.queue_line.update(queue_line)
        if row is None:
            info.update(
                Text(f"Nothing left in the {s.filter} queue.\nPress f to change the filter, q to quit.")
            )
            return
        table = Table(show_header=False, box=None, padding=(0, 1))
        table.add_column(style="bold")
        table.add_column()
        decision = row["review"] or "unreviewed"
        if row["review"] == "rejected":
            decision += f" ({row['review_reason']}{': ' + row['review_note'] if row['review_note'] else ''})"
        if row["reviewer"]:
            decision += f" by {row['reviewer']}"
        flags = row["flags"] if row["flag_status"] == "done" else "not computed (nwt-data flag)"
        table.add_row("clip", row["clip_id"])
        table.add_row("episode", f"{row['episode_id']} #{row['clip_index']}")
        table.add_row("duration", f"{row['duration']:.2f} s, {row['frame_count']} frames")
        table.add_row("source", f"{row['trim_start']:.3f} - {row['trim_end']:.3f} s")
        table.add_row("flags", Text(flags or "none", style="bold red" if flags else "green"))
        if row["flag_status"] == "done" and row["speech_ratio"] is not None:
            face = f", face {row['face_height']:.0%} of the height" if row["face_height"] is not None else ""
            table.add_row("measured", f"speech {row['speech_ratio']:.0%} of the clip{face}")
        table.add_row("decision", decision)
        info.update(table)

    def say(self, message: str) -> None:
        self.message = message
        self.message_box.update(message)

    # --- actions -----------------------------------------------------------------------------------
    def _after_move(self, message: str = "") -> None:
        self.say(message)
        self.show_current()

    def action_next(self) -> None:
        self.session.next()
        self._after_move()

    def action_previous(self) -> None:
        self.session.previous()
        self._after_move()

    def action_play(self) -> None:
        if self.playing:
            self.playing = False
            decoded = self.cache.get(self.session.current_id or "")
            if decoded and decoded.times:
                self.play_offset = decoded.times[self.frame_index]
        else:
            self.playing = True
            self.play_started = time.perf_counter()

    def action_step(self, delta: int) -> None:
        decoded = self.cache.get(self.session.current_id or "")
        if decoded is None:
            return
        self.playing = False
        self.frame_index = max(0, min(len(decoded.frames) - 1, self.frame_index + delta))
        self.play_offset = decoded.times[self.frame_index] if decoded.times else 0.0
        self._show_frame(decoded)

    def _guarded(self, action: Any, *args: Any) -> str | None:
        try:
            return action(*args)
        except NwtError as err:
            self.say(err.one_line())
            return None

    def action_accept(self) -> None:
        clip_id = self._guarded(self.session.accept)
        if clip_id:
            self._after_move(f"accepted {clip_id}")

    def action_reject(self, reason: str) -> None:
        clip_id = self._guarded(self.session.reject, reason)
        if clip_id:
            self._after_move(f"rejected {clip_id}: {reason}")

    def action_reject_other(self) -> None:
        if self.session.current_id is None:
            return

        def done(note: str | None) -> None:
            if note and note.strip():
                clip_id = self._guarded(self.session.reject, "other", note)
                if clip_id:
                    self._after_move(f"rejected {clip_id}: {note.strip()}")

        self.push_screen(PromptScreen("Why reject this clip? (enter to save, escape to cancel)"), done)

    def action_undo(self) -> None:
        try:
            clip_id = self.session.undo()
        except NwtError as err:
            self.say(err.one_line())
            return
        self._after_move(f"undid your decision on {clip_id}" if clip_id else "nothing to undo")

    def action_jump(self) -> None:
        def done(target: str | None) -> None:
            if target and target.strip() and self._guarded(self.session.jump, target.strip()):
                self._after_move()

        self.push_screen(PromptScreen("Jump to clip id or queue number:"), done)

    def action_filter(self) -> None:
        name = self.session.cycle_filter()
        self._after_move(f"filter: {name}")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_external(self) -> None:
        from nwt_data.media.ffmpeg import open_in_player

        row = self.session.current()
        if row is None:
            return
        start = row["trim_start"] - row["clip_offset"]
        end = row["trim_end"] - row["clip_offset"]
        player = self._guarded(open_in_player, self.workspace_root / row["path"], start, end)
        if player:
            self.say(f"playing in {player}")
