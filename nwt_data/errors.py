"""The one error hierarchy of nwt_data.

Every error carries a one-line message and a hint that says what to do. The CLI turns them into
messages in one place (`nwt_data.cli.common.report_errors`); per-item failures inside a stage are
recorded in the catalog with their `kind` instead of being raised to the user.
"""

from __future__ import annotations


class NwtError(Exception):
    """Base class: `str(err)` is the one-line message, `hint` says what to do about it."""

    kind = "error"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint

    def one_line(self) -> str:
        text = str(self)
        return f"{text} ({self.hint})" if self.hint else text

    def __reduce__(self) -> tuple[object, ...]:
        # Errors travel from worker processes and Ray tasks: keep the class, hint, kind and any
        # extra fields (the default pickling of exceptions would call __init__ with the message only).
        return (_rebuild, (type(self), str(self)), dict(self.__dict__))


def _rebuild(cls: type[NwtError], message: str) -> NwtError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.hint = ""
    return err


class ConfigError(NwtError):
    kind = "config"


class WorkspaceError(NwtError):
    kind = "workspace"


class ManifestError(NwtError):
    kind = "manifest"


class MediaError(NwtError):
    """A file that is not usable media (unreadable, no video stream, truncated...)."""

    kind = "media"


class FfmpegError(MediaError):
    kind = "ffmpeg"


class CropError(MediaError):
    kind = "crop"


class ItemTimeout(NwtError):
    """An item's work (a subprocess, a download) ran past its time limit and was stopped."""

    kind = "timeout"


class FetchError(NwtError):
    """A failed download, classified so a user knows whether a retry can help."""

    # gone: removed, private or 404 -- retrying will not help
    # throttled: 429 / rate limited -- retry later
    # network: connection refused, timeout, DNS -- retry when the network is back
    # unsupported: the URL holds no video yt-dlp understands
    # timeout: the server stopped sending (or the download ran past its time limit)
    # other: anything else
    KINDS = ("gone", "throttled", "network", "unsupported", "invalid-media", "timeout", "other")

    def __init__(self, message: str, kind: str = "other", hint: str = "") -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown fetch error kind {kind!r}")
        super().__init__(message, hint)
        self.kind = kind

    @property
    def retryable(self) -> bool:
        return self.kind in ("throttled", "network")


class DiskFullError(NwtError):
    """The disk (or quota) filled up while writing."""

    kind = "disk-full"


def from_os_error(err: OSError) -> NwtError | None:
    """A full disk as one line that says what to do, or None for any other OSError.

    Besides ENOSPC/EDQUOT, a short write ("84000 requested and 55232 written", as PyAV and ffmpeg
    report it) means the same thing.
    """
    import errno
    import re

    short_write = re.search(r"\d+ requested and \d+ written", str(err))
    if err.errno not in (errno.ENOSPC, errno.EDQUOT) and not short_write:
        return None
    where = f" writing {err.filename}" if err.filename else ""
    return DiskFullError(
        f"the disk is full{where}", hint="free some space and run the command again; finished items are kept"
    )
