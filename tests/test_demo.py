import json
from pathlib import Path

from nwt_data.catalog import Catalog

ARGS = ("--episodes", "2", "--seconds", "10", "--speech", "babble")


def test_demo_runs_end_to_end_and_resumes(tmp_path: Path, cli) -> None:
    ws = tmp_path / "demo"
    first = cli("demo", "--workspace", ws, *ARGS)
    assert first.exit_code == 0, first.output
    catalog = Catalog(ws / "catalog.sqlite")
    episodes = catalog.episodes()
    assert [e["episode_id"] for e in episodes] == ["face-1", "face-2"]
    assert all(e["fetch_status"] == "done" and e["segment_status"] == "done" for e in episodes)
    assert episodes[0]["downloader"].startswith("yt-dlp ")
    assert episodes[1]["downloader"] == "copy"
    clips = catalog.clips()
    # 10 s at a keyframe every 2 s: 4 s, 4 s and a 2 s tail that trimming leaves too short.
    assert len(clips) == 6
    assert sum(c["status"] == "ok" for c in clips) == 4
    assert all(c["mask_status"] == "done" and c["shard"] for c in clips if c["status"] == "ok")
    dataset = json.loads((ws / "shards" / "dataset.json").read_text())
    assert sum(dataset["samples"].values()) == 4
    media = ws / "demo-media"
    assert (media / "held-out-speech.wav").is_file() and (media / "face-1.speech.npy").is_file()
    second = cli("demo", "--workspace", ws, *ARGS)
    assert second.exit_code == 0, second.output
    assert "all demo episodes already fetched" in second.output
    assert "already segmented" in second.output
    assert [tuple(c) for c in Catalog(ws / "catalog.sqlite").clips()] == [tuple(c) for c in clips]


def test_demo_refuses_an_unknown_speech_engine(tmp_path: Path, cli) -> None:
    result = cli("demo", "--workspace", tmp_path / "ws", "--speech", "tts")
    assert result.exit_code == 2
    assert "'tts' is not one of 'auto', 'espeak', 'babble'" in " ".join(result.output.split())
