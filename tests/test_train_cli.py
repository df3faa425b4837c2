"""The `nwt-train` package CLI: one error funnel (one line for known errors, tracebacks for bugs)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from nwt_train.cli.app import app
from nwt_train.cli.common import report_errors
from nwt_train.errors import DataError, TrainConfigError, TrainError

ROOT = Path(__file__).resolve().parents[1]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _app_raising(error: BaseException) -> typer.Typer:
    probe = typer.Typer()

    @probe.command()
    @report_errors
    def boom() -> None:
        raise error

    return probe


def test_known_errors_are_one_line_with_their_hint(monkeypatch) -> None:
    monkeypatch.delenv("NWT_DEBUG", raising=False)
    result = CliRunner().invoke(_app_raising(DataError("the shards are empty", "run `nwt-data shard`")))
    assert result.exit_code == 2
    assert _lines(result.output) == ["error: the shards are empty (run `nwt-data shard`)"]


def test_unknown_errors_keep_their_traceback(monkeypatch) -> None:
    monkeypatch.delenv("NWT_DEBUG", raising=False)
    result = CliRunner().invoke(_app_raising(RuntimeError("a bug")))
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)
    plain = CliRunner().invoke(_app_raising(KeyError("also a bug")))
    assert isinstance(plain.exception, KeyError)


def test_nwt_debug_shows_the_traceback_of_known_errors(monkeypatch) -> None:
    monkeypatch.setenv("NWT_DEBUG", "1")
    result = CliRunner().invoke(_app_raising(DataError("the shards are empty")))
    assert isinstance(result.exception, DataError)


def test_train_errors_are_nwt_errors_and_builtins() -> None:
    from nwt_data.errors import NwtError

    assert issubclass(TrainError, NwtError) and issubclass(TrainConfigError, ValueError)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dvae", "--data", "d", "--out", "o", "--set", "nope=1"], "unknown config key 'nope'"),
        (["dvae", "--data", "d", "--out", "o", "--set", "steps"], "--set takes KEY=VALUE"),
        (["dvae", "--data", "d", "--out", "o", "--set", "steps=-3"], "steps must be a positive int"),
        (["prior", "--data", "d", "--out", "o", "--set", "model.kernel=1"], "kernel must be >= 2"),
    ],
)
def test_config_errors_are_one_line_before_any_work(tmp_path: Path, monkeypatch, args, message) -> None:
    monkeypatch.delenv("NWT_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = _lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert not (tmp_path / "o").exists()


def test_a_config_file_that_is_not_toml_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NWT_DEBUG", raising=False)
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 3\n")
    result = CliRunner().invoke(app, ["dvae", "--data", "d", "--out", "o", "--config", str(bad)])
    assert result.exit_code == 2 and "is not valid TOML" in result.output


def test_no_library_module_imports_the_cli() -> None:
    """The CLI imports the library, never the reverse (the old mnist/command.py cycle)."""
    offenders = []
    for path in (ROOT / "nwt_train").rglob("*.py"):
        if "cli" in path.relative_to(ROOT / "nwt_train").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("nwt_train.cli")]
    assert offenders == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "holds a list, not an object"),
        ('{"samples": {}}', "has no valid `shards` list"),
        ('{"shards": [{"name": "../x.tar", "split": "train"}]}', "names a shard outside its folder"),
    ],
)
def test_a_broken_dataset_json_is_named_in_one_line(tmp_path: Path, monkeypatch, text, message) -> None:
    monkeypatch.delenv("NWT_DEBUG", raising=False)
    data = tmp_path / "shards"
    data.mkdir()
    (data / "dataset.json").write_text(text)
    result = CliRunner().invoke(
        app, ["dvae", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny"]
    )
    assert result.exit_code == 2, result.output
    lines = _lines(result.output)
    assert len(lines) == 1 and message in lines[0] and "dataset.json" in lines[0], result.output
    assert "nwt-data shard" in lines[0]


@pytest.mark.parametrize(
    "args",
    [["dvae", "--data", "d", "--out", "o", "--preset", "huge"], ["prior", "--data", "d", "--arch", "gpt"]],
)
def test_a_wrong_choice_is_a_usage_error_that_lists_the_choices(args) -> None:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "is not one of" in result.output, result.output
