"""The errors of nwt_train: one hierarchy on top of nwt_data's, so both CLIs report them alike.

Each carries a one-line message and, where it helps, a hint. The `nwt-train` CLI turns every
`NwtError` into one line (exit code 2) in one place (`nwt_train.cli.common.report_errors`); anything
else is a bug and keeps its traceback. The builtin second base keeps `except ValueError` callers
(and tests) working.
"""

from __future__ import annotations

from nwt_data.errors import NwtError


class TrainError(NwtError):
    """Base class of the errors nwt_train raises on purpose."""

    kind = "train"


class TrainConfigError(TrainError, ValueError):
    """A setting, option or override that cannot work."""

    kind = "config"


class DataError(TrainError, ValueError):
    """Shards, codes or other inputs that are missing, damaged or unusable."""

    kind = "data"


class MissingInput(TrainError, FileNotFoundError):
    """A file or folder the command needs is not there."""

    kind = "missing"


class DatasetMismatch(DataError):
    """The shards on disk were made with parameters the trainer does not expect."""

    kind = "dataset-mismatch"


class RunMismatch(TrainError, ValueError):
    """A run folder holds a checkpoint made with another config or dataset, or is the wrong kind of run."""

    kind = "run-mismatch"


class Diverged(TrainError, FloatingPointError):
    """The loss became NaN or infinite."""

    kind = "diverged"
