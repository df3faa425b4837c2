import json
from pathlib import Path

from nwt_data.catalog import Catalog


def test_demo_runs_end_to_end_and_resumes(tmp_path: Path, cli) -> None:
    ws = tmp_path / "demo"
    first = cli("demo", "--workspace", ws)
    assert first.exit_code == 0, first.output
    catalog = Catalog(ws / "catalog.sqlite")
    episodes = catalog.episodes()
    assert [e["episode_id"] for e in episodes] == ["demo-30fps", "demo-ntsc"]
    assert all(e["fetch_status"] == "done" and e["segment_status"] == "done" for e in episodes)
    assert episodes[0]["downloader"].startswith("yt-dlp ")
    assert episodes[1]["downloader"] == "copy"
    clips = catalog.clips()
    assert len(clips) == 7
    assert sum(c["status"] == "ok" for c in clips) == 5
    assert all(c["mask_status"] == "done" and c["shard"] for c in clips if c["status"] == "ok")
    dataset = json.loads((ws / "shards" / "dataset.json").read_text())
    assert sum(dataset["samples"].values()) == 5
    assert "video (32, 3, 256, 224)" in first.output and "mel (80, 128)" in " ".join(first.output.split())
    second = cli("demo", "--workspace", ws)
    assert second.exit_code == 0, second.output
    assert "all demo episodes already fetched" in second.output
    assert "already segmented" in second.output
    assert [tuple(c) for c in Catalog(ws / "catalog.sqlite").clips()] == [tuple(c) for c in clips]
