"""The review logic, without any UI: the queue, decisions, undo, filters and persistence.

Every decision is written to the catalog at once, in one transaction with an entry in `review_log`
that remembers what the clip's decision was before. Two people reviewing the same workspace each
write single rows, and a reviewer moving on in the "unreviewed" queue skips clips someone else has
decided meanwhile, so nobody's decision is lost or overwritten unseen.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nwt_data.catalog import Catalog, Clip
from nwt_data.errors import NwtError


@dataclass(frozen=True)
class Reason:
    key: str  # the key that rejects with this reason
    code: str  # stored in the catalog
    label: str


# Appendix D step 5, plus "other" with a note.
REASONS = (
    Reason("1", "not_in_frame", "subject not in frame"),
    Reason("2", "holds_object", "subject holds an object"),
    Reason("3", "other_person", "another person is visible"),
    Reason("4", "overlay", "overlay inserted in post-production"),
    Reason("5", "title_transition", "title screen transition"),
    Reason("6", "not_at_desk", "subject not sitting at the desk"),
    Reason("7", "other", "other (with a note)"),
)
REASON_CODES = {r.code for r in REASONS}
FILTERS = ("unreviewed", "flagged", "rejected", "all")
DECISION_COLUMNS = Catalog.DECISION_COLUMNS


class ReviewError(NwtError):
    kind = "review"


class ReviewSession:
    """One reviewer's pass over a workspace's clips."""

    def __init__(self, catalog: Catalog, reviewer: str, *, filter: str = "unreviewed",
                 flagged_first: bool = False, only_flag: str | None = None) -> None:  # fmt: skip
        if not reviewer.strip():
            raise ReviewError("a reviewer name is needed", hint="pass --reviewer NAME")
        names = [c.removeprefix("flag_") for c in Catalog.FLAG_COLUMNS]
        if only_flag is not None and only_flag not in names:
            raise ReviewError(f"unknown flag {only_flag!r}", hint=f"use one of {', '.join(names)}")
        self.only_flag = only_flag  # keep only clips that raised this automatic flag
        self.catalog = catalog
        self.reviewer = reviewer.strip()
        self.flagged_first = flagged_first
        self.filter = filter
        self.queue: list[str] = []
        self.position = 0
        self.set_filter(filter)

    # --- the queue ------------------------------------------------------------------------------
    def set_filter(self, name: str) -> None:
        if name not in FILTERS:
            raise ReviewError(f"unknown filter {name!r}", hint=f"use one of {', '.join(FILTERS)}")
        current = self.current_id
        self.filter = name
        self.queue = self.catalog.review_queue(name, flagged_first=self.flagged_first, flag=self.only_flag)
        self.position = self.queue.index(current) if current in self.queue else 0

    def cycle_filter(self) -> str:
        self.set_filter(FILTERS[(FILTERS.index(self.filter) + 1) % len(FILTERS)])
        return self.filter

    @property
    def current_id(self) -> str | None:
        return self.queue[self.position] if 0 <= self.position < len(self.queue) else None

    def current(self) -> Clip | None:
        clip_id = self.current_id
        return None if clip_id is None else self.clip(clip_id)

    def clip(self, clip_id: str) -> Clip:
        row = self.catalog.clip(clip_id)
        if row is None:
            raise ReviewError(f"no clip {clip_id!r}")
        return row

    def peek(self, offset: int = 1) -> str | None:
        """The clip `offset` places away in the queue (for prefetching)."""
        i = self.position + offset
        return self.queue[i] if 0 <= i < len(self.queue) else None

    def next(self) -> str | None:
        """Move on; in the unreviewed queue, skip clips someone decided meanwhile."""
        i = self.position + 1
        while i < len(self.queue) and self.filter == "unreviewed" and self.clip(self.queue[i])["review"]:
            i += 1
        self.position = min(i, len(self.queue))
        return self.current_id

    def previous(self) -> str | None:
        self.position = max(0, min(self.position, len(self.queue)) - 1)
        return self.current_id

    def jump(self, target: str) -> str:
        """Go to a clip by id, or by its 1-based place in the queue."""
        if target.isdigit() and 1 <= int(target) <= len(self.queue):
            self.position = int(target) - 1
        elif target in self.queue:
            self.position = self.queue.index(target)
        else:
            raise ReviewError(
                f"{target!r} is not in the {self.filter} queue", hint="press f to change filter"
            )
        return self.queue[self.position]

    def first_unreviewed(self) -> str | None:
        for i, clip_id in enumerate(self.queue):
            if self.clip(clip_id)["review"] is None:
                self.position = i
                return clip_id
        self.position = len(self.queue)
        return None

    # --- decisions ----------------------------------------------------------------------------
    def accept(self) -> str:
        return self._decide("accepted", None, None)

    def reject(self, reason: str, note: str | None = None) -> str:
        if reason not in REASON_CODES:
            raise ReviewError(
                f"unknown reason {reason!r}", hint=f"use one of {', '.join(sorted(REASON_CODES))}"
            )
        if reason == "other" and not (note and note.strip()):
            raise ReviewError("rejecting for another reason needs a note")
        return self._decide("rejected", reason, note.strip() if note else None)

    def _decide(self, review: str, reason: str | None, note: str | None) -> str:
        clip_id = self.current_id
        if clip_id is None:
            raise ReviewError("no clip to decide on", hint="the queue is done; press f to change filter")
        write_decision(self.catalog, clip_id, review, reason, note, self.reviewer)
        self.next()
        return clip_id

    def undo(self) -> str | None:
        """Take back this reviewer's last decision still in place; return its clip id."""
        with self.catalog.transaction():
            entry = self.catalog.last_decision(self.reviewer)
            if entry is None:
                return None
            clip = self.clip(entry.clip_id)
            if clip["review"] != entry.review or clip["reviewer"] != self.reviewer:
                raise ReviewError(
                    f"{entry.clip_id} was decided by {clip['reviewer']} since; not undoing their decision"
                )
            self.catalog.undo_decision(entry)
        if entry.clip_id not in self.queue:
            self.set_filter("all")
        self.position = self.queue.index(entry.clip_id)
        return entry.clip_id

    def counts(self) -> dict[str, int]:
        return self.catalog.review_counts()


def write_decision(catalog: Catalog, clip_id: str, review: str | None, reason: str | None,
                   note: str | None, reviewer: str, at: str | None = None, *,
                   skip_same: bool = False) -> None:  # fmt: skip
    """Set a clip's decision and log it with what it replaces, in one transaction (with `skip_same`,
    not when that decision is already in place: see Catalog.record_decision)."""
    if not catalog.record_decision(clip_id, review, reason, note, reviewer, at, skip_same=skip_same):
        raise ReviewError(f"no clip {clip_id!r} in this workspace")


# --- export / import --------------------------------------------------------------------------
EXPORT_FIELDS = ("clip_id", "review", "review_reason", "review_note", "reviewer", "reviewed_at")


def export_decisions(catalog: Catalog, path: Path) -> int:
    """Write every decided clip to CSV or JSONL (by extension); return how many."""
    rows = catalog.decisions(EXPORT_FIELDS)
    if path.suffix.lower() == ".jsonl":
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, EXPORT_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    from nwt_data.workspace import write_atomic

    write_atomic(path, text.encode())
    return len(rows)


def parse_decisions(raw: bytes, name: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of an exported decision file (CSV or, for a .jsonl name, JSON Lines) and one-line
    problems with the lines that could not be read. Pure: no catalog, no disk."""
    try:
        text = raw.decode("utf-8-sig")  # a BOM (spreadsheet exports) is not part of the first column
    except UnicodeDecodeError as err:
        raise ReviewError(
            f"{name} is not UTF-8 text (byte {err.start} is {raw[err.start : err.start + 1]!r})",
            hint="save it as UTF-8 (CSV UTF-8 in a spreadsheet) and import it again",
        ) from None
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    if name.lower().endswith(".jsonl"):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                problems.append(f"{name} line {number} is not JSON: {err.msg}")
                continue
            if not isinstance(value, dict):
                problems.append(f"{name} line {number} is a JSON {type(value).__name__}, not an object")
                continue
            records.append(value)
        return records, problems
    reader = csv.DictReader(io.StringIO(text))
    if text.strip() and "clip_id" not in (reader.fieldnames or []):
        raise ReviewError(
            f"{name} has no clip_id column (its header: {', '.join(reader.fieldnames or [])})",
            hint=f"use a file written by `nwt-data review --export` (columns {', '.join(EXPORT_FIELDS)})",
        )
    return list(reader), problems


def check_reviewed_at(value: Any) -> str | None:
    """An ISO 8601 time as exported (None when absent); ValueError for anything else."""
    if value is None or value == "":
        return None
    text = str(value)
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"reviewed_at {text!r} is not an ISO 8601 time (2024-05-01T12:00:00)") from None
    return text


def import_decisions(catalog: Catalog, path: Path, reviewer: str | None = None) -> tuple[int, list[str]]:
    """Apply decisions from CSV or JSONL; return (applied, one-line problems).

    Each decision is its own transaction, and one already in place is not logged again, so an
    import killed part-way and run again ends as one uninterrupted import.
    """
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ReviewError(f"cannot read {path}: {err.strerror or err}") from err
    records, problems = parse_decisions(raw, path.name)
    applied = 0
    for record in records:
        clip_id = str(record.get("clip_id") or "")
        review = record.get("review") or None
        reason = record.get("review_reason") or None
        if review not in ("accepted", "rejected") or (review == "rejected" and reason not in REASON_CODES):
            problems.append(f"{clip_id or '?'}: bad decision {review!r}/{reason!r}")
            continue
        try:
            at = check_reviewed_at(record.get("reviewed_at"))
        except ValueError as err:
            problems.append(f"{clip_id or '?'}: {err}")
            continue
        try:
            note = record.get("review_note") or None
            who = reviewer or record.get("reviewer") or "import"
            write_decision(catalog, clip_id, review, reason, note, who, at, skip_same=True)
            applied += 1
        except ReviewError as err:
            problems.append(str(err))
    return applied, problems


def accept_unflagged(catalog: Catalog, reviewer: str) -> int:
    """Accept every unreviewed clip whose automatic pre-flags raised nothing."""
    ids = catalog.unreviewed_unflagged()
    for clip_id in ids:
        write_decision(catalog, clip_id, "accepted", None, None, reviewer)
    return len(ids)
