"""`nwt-data demo`: the whole pipeline, end to end, on generated input."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

from nwt_data import config as cfg
from nwt_data.catalog import Catalog
from nwt_data.cli.common import console, handle_errors, run_stage, workspace_option
from nwt_data.cli.options import config_option, given
from nwt_data.cli.status import status
from nwt_data.config import DEMO_DIR, SPEECH_ENGINES, DemoConfig
from nwt_data.demo import (
    HELD_OUT_SPEECH,
    foreign_episodes,
    make_episode,
    make_held_out_speech,
    serve_folder,
    write_demo_manifest,
)
from nwt_data.errors import WorkspaceError
from nwt_data.stages.fetch import run_fetch
from nwt_data.stages.mask import run_mask
from nwt_data.stages.segment import run_segment
from nwt_data.stages.shard import run_shard
from nwt_data.synthetic import demo_episodes
from nwt_data.workspace import Workspace, resolve_root


def open_demo_workspace(path: Path) -> Workspace:
    """The demo's workspace (--workspace, else $NWT_WORKSPACE, else demo-workspace), never a real dataset.

    The demo adds its synthetic episodes to whatever workspace it is given, so one whose catalog holds
    episodes the demo did not make is refused before anything is written to it.
    """
    existing = Workspace(resolve_root(path))
    if existing.catalog_path.is_file():
        foreign = foreign_episodes(e["episode_id"] for e in Catalog(existing.catalog_path).episodes())
        if foreign:
            raise WorkspaceError(
                f"{existing.root} holds episodes the demo did not make ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); the demo would add its synthetic ones to them",
                hint=f"give the demo a workspace of its own, e.g. --workspace {DEMO_DIR}",
            )
    return Workspace.open(path)


DemoWorkspaceOpt = Annotated[
    Path,
    workspace_option("Workspace of the demo; created when missing (one holding other episodes is refused)."),
]


@handle_errors
def demo(
    workspace: DemoWorkspaceOpt = Path(DEMO_DIR),
    episodes: Annotated[int | None, config_option(DemoConfig, "episodes", min=2)] = None,
    seconds: Annotated[float | None, config_option(DemoConfig, "seconds", min=8)] = None,
    speech: Annotated[Literal[SPEECH_ENGINES] | None, config_option(DemoConfig, "speech")] = None,
) -> None:
    """Run fetch, segment, mask and shard on synthetic talking-face episodes (1280x720, 29.97 fps).

    A cartoon face whose mouth follows speech (espeak-ng when installed, else synthetic babble). One
    episode is served over HTTP on 127.0.0.1 and downloaded by yt-dlp; the others are local files.
    `nwt-train demo` goes on from these shards to a trained model and a generated video.

    Uses only generated media; running it again resumes and skips finished work.

    [bold]Example:[/] nwt-data demo --workspace demo-workspace
    """
    config = DemoConfig(**given(episodes=episodes, seconds=seconds, speech=speech))
    ws = open_demo_workspace(workspace)
    media = ws.root / "demo-media"
    media.mkdir(exist_ok=True)
    console.rule("[bold]1. generate synthetic talking-face episodes")
    faces = demo_episodes(config.episodes, config.seconds)
    with console.status("  drawing faces and encoding episodes..."), ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda e: make_episode(media / f"{e.name}.mp4", e, engine=config.speech), faces))
    for episode in faces:
        console.print(f"  {episode.name}: 1280x720 @ 29.97 fps, {episode.seconds:g} s, own face and speech")
    make_held_out_speech(media / f"{HELD_OUT_SPEECH.name}.wav", engine=config.speech)
    console.print(f"  {HELD_OUT_SPEECH.name}.wav: {HELD_OUT_SPEECH.seconds:g} s of speech no episode has")
    catalog = Catalog(ws.catalog_path)
    console.rule("[bold]2. nwt-data fetch demo.csv")
    done = {row["episode_id"] for row in catalog.episodes("fetch_status = 'done'")}
    if done >= {episode.name for episode in faces}:
        # The server's port changes between runs, so its URLs would not match the catalog's.
        console.print("  all demo episodes already fetched")
    else:
        with serve_folder(media) as base_url:
            manifest = write_demo_manifest(media, base_url, faces)
            fetch_config = cfg.build(
                cfg.FetchConfig, "fetch", ws.config_table("fetch"), {"retry_failed": True}
            )
            saved = {**cfg.to_dict(fetch_config), "manifest": str(manifest)}
            run_stage(
                ws, "fetch", saved, lambda catalog: run_fetch(ws, catalog, manifest, fetch_config, console)
            )
    for number, (name, config_cls, run) in enumerate(
        [
            ("segment", cfg.SegmentConfig, run_segment),
            ("mask", cfg.MaskConfig, run_mask),
            ("shard", cfg.ShardConfig, run_shard),
        ],
        start=3,
    ):
        console.rule(f"[bold]{number}. nwt-data {name}")
        # Nobody reviews the demo's clips: mask takes the unreviewed ones too.
        overrides = {"include_unreviewed": True} if name == "mask" else {}
        config = cfg.build(config_cls, name, ws.config_table(name), overrides)
        run_stage(ws, name, cfg.to_dict(config), partial(run, ws, config=config, console=console))
    console.rule("[bold]6. nwt-data status")
    status(workspace=ws.root, as_json=False)
    console.print(f"\n[green]demo data done:[/] shards and dataset.json in {ws.shards_dir}")
