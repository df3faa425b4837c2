"""`--help` of every command of both CLIs at 80 columns, against stored snapshots (tests/help/); option
defaults and texts taken from the config dataclasses; one `--redo`; the demos' workspace.

After a deliberate change of options or docstrings: `NWT_UPDATE_HELP=1 pytest tests/test_help.py`,
then read the diff of tests/help/ before committing it.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from pathlib import Path

import click
import pytest
import typer
import typer.main
from typer.testing import CliRunner

from nwt_data import config as data_config
from nwt_data.catalog import Catalog, EpisodeSource
from nwt_data.cli.app import app as data_app
from nwt_data.cli.options import default_value, field_docs, field_help, shown_default
from nwt_data.curation.splits import ratios_text
from nwt_data.demo import foreign_episodes
from nwt_data.helptext import tidy
from nwt_data.stages.flags import FlagConfig
from nwt_data.stages.report import ReportConfig
from nwt_data.workspace import Workspace
from nwt_train.cli.app import app as train_app
from nwt_train.command_config import EncodeConfig, GenerateConfig
from nwt_train.demo import DemoConfig as TrainDemoConfig
from nwt_train.mnist.config import EXPERIMENTS, StudyConfig

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
    for leftover in (
        "<bool>",
        "<list",
        "<str>",
        "<path>",
        "<int>",
        "<float>",
        "[bold]",
        "[/]",
        "\\[",
        " RANGE",
        "FLOAT",
        "default: (",
        "\\[default",
    ):
        assert leftover not in text, leftover
    assert "{" not in text.splitlines()[0], "usage names a required argument MANIFEST, not {manifest}"
    if "--workspace" in text:  # created when missing only where the command creates it
        creates = (program, command) in {("nwt-data", "fetch"), ("nwt-data", "demo"), ("nwt-train", "demo")}
        assert ("created when missing" in " ".join(text.split())) == creates


CHOICES = [
    ("nwt-train", "dvae", "--preset [paper|tiny|tiny-real]"),
    ("nwt-train", "prior", "--preset [paper|tiny]"),
    ("nwt-train", "prior", "--arch [far|mar]"),
    ("nwt-train", "describe", "--preset [paper|tiny]"),
    ("nwt-train", "describe", "--arch [far|mar]"),
    ("nwt-train", "describe", "MODEL:[dvae|prior]"),
    ("nwt-train", "eval-dvae", "--split [train|val|test]"),
    ("nwt-train", "demo", "--arch [far|mar]"),
    ("nwt-train", "demo", "--speech [auto|espeak|babble]"),
    ("nwt-train", "mnist-study", f"--experiment [{'|'.join(EXPERIMENTS)}]"),
    ("nwt-data", "review", "--filter [unreviewed|flagged|rejected|all]"),
    ("nwt-data", "review", "--flag FLAG Only clips that raised this automatic flag: no_face, many_faces, cut,"
     " overlay, silence, small_face, no_speech, low_speech."),
    ("nwt-data", "mask", "--overlay-rule [graphic|paper]"),
    ("nwt-data", "demo", "--speech [auto|espeak|babble]"),
    *[("nwt-data", c, "--executor [local|ray]") for c in ("fetch", "segment", "flag", "mask", "shard")],
]  # fmt: skip


@pytest.mark.parametrize(
    ("program", "command", "choice"), CHOICES, ids=[f"{p} {c} {o.split()[0]}" for p, c, o in CHOICES]
)
def test_choices_are_listed(program: str, command: str, choice: str) -> None:
    text = _help(program, command)
    if choice.startswith("MODEL:"):  # an argument: its name, then its choices
        assert re.search(r"^\s+model \[dvae\|prior\]", text, re.M), text
    else:
        assert choice in " ".join(text.split()), choice


def test_markup_like_text_is_kept() -> None:
    assert "[model]" in _help("nwt-train", "dvae")  # Rich markup once swallowed it
    assert "[mask]" in " ".join(_help("nwt-data", "flag").split())


# --- defaults and descriptions come from the config dataclasses ----------------------------------
# Each command's options that set a config field (by the parameter's name, or the name given here).
COMMAND_CONFIGS = {
    ("nwt-data", "fetch"): (data_config.FetchConfig, data_config.RunConfig),
    ("nwt-data", "segment"): (data_config.SegmentConfig, data_config.RunConfig),
    ("nwt-data", "flag"): (FlagConfig, data_config.RunConfig),
    ("nwt-data", "mask"): (data_config.MaskConfig, data_config.RunConfig),
    ("nwt-data", "shard"): (data_config.ShardConfig, data_config.RunConfig),
    ("nwt-data", "report"): (ReportConfig,),
    ("nwt-data", "demo"): (data_config.DemoConfig,),
    ("nwt-train", "encode"): (EncodeConfig,),
    ("nwt-train", "generate"): (GenerateConfig,),
    ("nwt-train", "demo"): (TrainDemoConfig,),
    ("nwt-train", "mnist-study"): (StudyConfig,),
}
FIELD_OF = {"experiment": "experiments"}
# Options that are not config fields (what to run on, which items), so they have no config default.
NOT_FIELDS = {"workspace", "retry_failed", "redo", "episode", "split_ratios", "style_set", "help",
              "manifest", "dvae_run", "prior_run", "audio", "data", "out"}  # fmt: skip


def _command(program: str, command: str) -> click.Command:
    app = data_app if program == "nwt-data" else train_app
    return typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]


def _shown(param: click.Parameter, ctx: click.Context) -> tuple[str, str | None]:
    """An option's help text and its `[default: ...]` as --help shows them."""
    _, text = param.get_help_record(ctx)  # type: ignore[misc]
    match = re.search(r"\s*\[([^\]]*)\]$", text)
    extras = match[1].split("; ") if match else []
    default = next((e.removeprefix("default: ") for e in extras if e.startswith("default: ")), None)
    return (text[: match.start()] if match else text), default


@pytest.mark.parametrize(
    ("program", "command"), list(COMMAND_CONFIGS), ids=[" ".join(k) for k in COMMAND_CONFIGS]
)
def test_option_defaults_and_help_are_the_config_fields(program: str, command: str) -> None:
    cmd = _command(program, command)
    ctx = click.Context(cmd, info_name=command)
    fields = {f.name: cls for cls in COMMAND_CONFIGS[program, command] for f in dataclasses.fields(cls)}
    checked = 0
    for param in cmd.params:
        name = FIELD_OF.get(param.name or "", param.name or "")
        cls = fields.get(name)
        if cls is None or default_value(cls, name) is dataclasses.MISSING:  # a required input, no default
            continue
        text, default = _shown(param, ctx)
        # The dataclass default, as the user would type it back; never typed into the CLI.
        decls = [f"{param.opts[0]}/{param.secondary_opts[0]}"] if param.secondary_opts else param.opts
        assert default == shown_default(cls, name, decls), (param.name, default)
        assert " ".join(text.split()) == field_help(cls, name), param.name
        # The parameter itself is None: nwt.toml and then the dataclass decide what is not given.
        if name != "workspace":
            assert param.default is None, param.name
        checked += 1
    assert checked >= 2, f"{program} {command}: no option was checked against its config"
    others = {FIELD_OF.get(p.name or "", p.name) for p in cmd.params} - fields.keys()
    assert others <= NOT_FIELDS, others - NOT_FIELDS


def test_a_default_changed_in_the_config_changes_the_help(monkeypatch: pytest.MonkeyPatch) -> None:
    import nwt_data.cli.segment as segment_cli

    def trim_default() -> str | None:
        one = typer.Typer()
        one.command()(segment_cli.segment)
        one.command("other")(lambda: None)
        cmd = typer.main.get_command(tidy(one)).commands["segment"]  # type: ignore[attr-defined]
        trim = next(p for p in cmd.params if p.name == "trim")
        return _shown(trim, click.Context(cmd))[1]

    assert trim_default() == "0.25" and data_config.SegmentConfig().trim == 0.25
    monkeypatch.setattr(data_config.SegmentConfig.__dataclass_fields__["trim"], "default", 0.4)
    try:
        importlib.reload(segment_cli)
        assert trim_default() == "0.4"
    finally:
        monkeypatch.undo()
        importlib.reload(segment_cli)
    assert trim_default() == "0.25"


def test_field_docs_and_shown_defaults() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Example:
        required: str
        size: int = 2_000_000
        """Bytes of
        a thing."""
        ratio: float = 0.5
        """A share."""
        switch: bool = False
        named: str = dataclasses.field(default="x", metadata={"help": "From metadata."})
        items: tuple[str, ...] = ("a", "b")

    assert field_docs(Example) == {
        "size": "Bytes of a thing.",
        "ratio": "A share.",
        "named": "From metadata.",
    }
    assert shown_default(Example, "required") is None
    assert shown_default(Example, "ratio") == "0.5"
    assert shown_default(Example, "switch", ("--switch/--no-switch",)) == "no-switch"
    assert shown_default(Example, "switch", ("--switch",)) is None
    assert shown_default(Example, "items") == "a, b"
    with pytest.raises(TypeError, match="switch has no docstring"):
        field_help(Example, "switch")
    assert data_config.format_size(1_000_000_000) == "1GB" and data_config.format_size(65536) == "64KiB"
    assert data_config.parse_size(data_config.format_size(3 * 1024**3)) == 3 * 1024**3
    assert ratios_text(data_config.ShardConfig()) == "90,5,5"
    assert ratios_text(data_config.ShardConfig(val_fraction=0.1, test_fraction=0.1)) == "80,10,10"


# --- one form of --redo --------------------------------------------------------------------------
def test_every_stage_that_can_redo_takes_the_same_one_sided_redo() -> None:
    redo = {}
    for program, app in (("nwt-data", data_app), ("nwt-train", train_app)):
        for name, cmd in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
            for param in cmd.params:
                if "redo" in (param.name or "") or any(
                    "redo" in o for o in param.opts + param.secondary_opts
                ):
                    redo[f"{program} {name}"] = (
                        param.opts,
                        param.secondary_opts,
                        param.is_flag,
                        param.default,
                    )
    assert redo == {
        "nwt-data segment": (["--redo"], [], True, False),
        "nwt-data flag": (["--redo"], [], True, False),
    }
    result = CliRunner().invoke(data_app, ["segment", "--no-redo"])
    assert result.exit_code == 2 and "No such option: --no-redo" in result.output


# --- the demos read NWT_WORKSPACE like every other command ---------------------------------------
def _real_workspace(path: Path, episode: str) -> Path:
    ws = Workspace.open(path)
    Catalog(ws.catalog_path).add_episode(EpisodeSource(episode, "https://example.org/x", "url", None, {}))
    return ws.root


@pytest.mark.parametrize("program", ["nwt-data", "nwt-train"])
def test_the_demo_reads_NWT_WORKSPACE_and_never_mixes_into_a_real_dataset(
    program: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NWT_DEBUG", raising=False)
    app = data_app if program == "nwt-data" else train_app
    real = _real_workspace(tmp_path / "lwt", "lwt-2019-01-07")
    before = {p: p.read_bytes() for p in real.rglob("*") if p.is_file() and "catalog" not in p.name}
    result = CliRunner().invoke(app, ["demo"], env={"NWT_WORKSPACE": str(real)})
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert f"{real} holds episodes the demo did not make (lwt-2019-01-07)" in line
    assert "--workspace demo-workspace" in line
    assert not (real / "demo-media").exists()
    assert {p: p.read_bytes() for p in real.rglob("*") if p.is_file() and "catalog" not in p.name} == before
    assert [e["episode_id"] for e in Catalog(real / "catalog.sqlite").episodes()] == ["lwt-2019-01-07"]
    # --workspace beats the variable, as for every command.
    other = _real_workspace(tmp_path / "other", "other-1")
    result = CliRunner().invoke(app, ["demo", "-w", str(other)], env={"NWT_WORKSPACE": str(real)})
    assert result.exit_code == 2 and "(other-1)" in " ".join(result.output.split())


def test_demo_workspace_default_and_variable_resolve_like_the_other_commands(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for app in (data_app, train_app):
        demo = typer.main.get_command(app).commands["demo"]  # type: ignore[attr-defined]
        monkeypatch.delenv("NWT_WORKSPACE", raising=False)
        params = demo.make_context("demo", []).params
        assert params["workspace"] in (Path("demo-workspace"), None)  # None: DemoConfig's demo-workspace
        monkeypatch.setenv("NWT_WORKSPACE", str(tmp_path))
        assert demo.make_context("demo", []).params["workspace"] == tmp_path
    assert TrainDemoConfig().workspace == Path("demo-workspace") == Path(data_config.DEMO_DIR)
    assert foreign_episodes(["face-1", "face-12", "lwt-1", "face-x"]) == ["face-x", "lwt-1"]
