"""`--help` of every command of both CLIs at 80 columns, against stored snapshots (tests/help/).

After a deliberate change of options or docstrings: `NWT_UPDATE_HELP=1 pytest tests/test_help.py`,
then read the diff of tests/help/ before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nwt_data.cli.app import app as data_app
from nwt_train.cli.app import app as train_app

SNAPSHOTS = Path(__file__).parent / "help"
DATA_COMMANDS = ["", "fetch", "segment", "flag", "review", "mask", "shard", "status", "report", "demo"]
TRAIN_COMMANDS = ["", "env", "dvae", "encode", "prior", "generate", "eval-dvae", "describe", "mnist-study",
                  "demo"]  # fmt: skip
CASES = [("nwt-data", c) for c in DATA_COMMANDS] + [("nwt-train", c) for c in TRAIN_COMMANDS]


def _help(program: str, command: str) -> str:
    app = data_app if program == "nwt-data" else train_app
    args = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(app, args, prog_name=program, env={"COLUMNS": "80", "NWT_WORKSPACE": None})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(("program", "command"), CASES, ids=[f"{p} {c}".strip() for p, c in CASES])
def test_help_at_80_columns_matches_its_snapshot(program: str, command: str) -> None:
    text = _help(program, command)
    path = SNAPSHOTS / f"{program}{'-' + command if command else ''}.txt"
    if os.environ.get("NWT_UPDATE_HELP"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} changed: NWT_UPDATE_HELP=1 pytest tests/test_help.py"
    too_long = [line for line in text.splitlines() if len(line) > 80]
    assert not too_long, too_long
    for leftover in ("<bool>", "<list", "<str>", "<path>", "<int>", "<float>", "[bold]", "[/]", "\\["):
        assert leftover not in text, leftover


def test_markup_like_text_is_kept_and_choices_are_listed() -> None:
    assert "[model]" in _help("nwt-train", "dvae")  # Rich markup once swallowed it
    assert "--preset [paper|tiny]" in _help("nwt-train", "prior")
    assert "--arch [far|mar]" in _help("nwt-train", "prior")
    assert "--split [train|val|test]" in _help("nwt-train", "eval-dvae")
    assert "--filter [unreviewed|flagged|rejected|all]" in _help("nwt-data", "review")
