"""The CLI surface: help texts, config layering, status, error exits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nwt_data.catalog import Catalog
from nwt_train.cli.app import app as train_app


@pytest.mark.parametrize("command", ["fetch", "segment", "flag", "review", "mask", "shard", "status", "demo"])
def test_every_command_has_help_with_an_example(cli, command: str) -> None:
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output and f"nwt-data {command}" in result.output


def test_nwt_train_env_reports_torch() -> None:
    result = CliRunner().invoke(train_app, ["env"])
    assert result.exit_code == 0, result.output
    assert "torch" in result.output and "cuda available" in result.output


def test_workspace_from_environment_and_config_layers(tmp_path: Path, make_video, cli, monkeypatch) -> None:
    ws = tmp_path / "from-env"
    monkeypatch.setenv("NWT_WORKSPACE", str(ws))
    video = make_video("ep.mp4", seconds=9, gop=60)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"episode_id,url\nep,{video}\n")
    assert cli("fetch", manifest).exit_code == 0
    assert (ws / "catalog.sqlite").exists() and (ws / "nwt.toml").exists()
    # nwt.toml beats the defaults; the command line beats nwt.toml.
    text = (ws / "nwt.toml").read_text().replace("trim = 0.25", "trim = 0.5")
    (ws / "nwt.toml").write_text(text)
    assert cli("segment", "--min-duration", "1.5").exit_code == 0
    catalog = Catalog(ws / "catalog.sqlite")
    first = catalog.clips()[0]
    assert (first["trim_start"], first["trim_end"]) == (0.5, 3.5)
    saved = json.loads(
        catalog.conn.execute("SELECT config FROM runs WHERE command = 'segment'").fetchone()[0]
    )
    assert saved["trim"] == 0.5 and saved["min_duration"] == 1.5 and saved["segment_time"] == 4.0

    status = cli("status", "--json")
    assert status.exit_code == 0
    counts = json.loads(status.output)
    assert counts["fetch (episodes)"] == {"done": 1}
    assert counts["segment (episodes)"] == {"done": 1}
    assert counts["clips"] == {"ok": 2, "too_short": 1}
    assert counts["review (usable clips)"] == {"unreviewed": 2}
    table = cli("status")
    assert table.exit_code == 0 and "too_short" in table.output


def test_bad_config_is_a_one_line_error(tmp_path: Path, cli) -> None:
    ws = tmp_path / "ws"
    manifest = tmp_path / "m.csv"
    manifest.write_text("episode_id,url\n")
    cli("fetch", manifest, "-w", ws)
    (ws / "nwt.toml").write_text("[segment]\ntrimm = 0.5\n")
    result = cli("segment", "-w", ws)
    assert result.exit_code == 2
    assert "unknown key(s) trimm in the [segment] table" in " ".join(result.output.split())
    (ws / "nwt.toml").write_text("[segment]\ntrim = 3.0\n")
    result = cli("segment", "-w", ws)
    assert result.exit_code == 2 and "min_duration" in result.output
    assert cli("segment", "-w", ws, "--crop", "1,2,3").exit_code == 2


def test_commands_on_a_missing_workspace_say_what_to_do(tmp_path: Path, cli) -> None:
    result = cli("status", "-w", tmp_path / "nothing-here")
    assert result.exit_code == 2
    assert "no workspace at" in result.output and "nwt-data fetch" in result.output
    assert not (tmp_path / "nothing-here").exists()


@pytest.mark.parametrize(
    ("table", "line", "message"),
    [
        (
            "mask",
            'include_unreviewed = "no"',
            "[mask] include_unreviewed = 'no' in nwt.toml must be true or false",
        ),
        (
            "shard",
            "shard_size = 5e8",
            "[shard] shard_size = 500000000.0 in nwt.toml must be a whole number of bytes",
        ),
        ("mask", 'workers = "4"', "[mask] workers = '4' in nwt.toml must be a whole number"),
        ("segment", "crop = 5", "[segment] crop = 5 in nwt.toml must be text"),
    ],
)
def test_wrongly_typed_config_values_are_refused(
    tmp_path: Path, cli, table: str, line: str, message: str
) -> None:
    ws = tmp_path / "ws"
    manifest = tmp_path / "m.csv"
    manifest.write_text("episode_id,url\n")
    cli("fetch", manifest, "-w", ws)
    (ws / "nwt.toml").write_text(f"[{table}]\n{line}\n")
    result = cli(table, "-w", ws)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
