"""Manifest parsing: line numbers, comments, quoted fields, ids."""

from __future__ import annotations

from pathlib import Path

from nwt_data.manifest import read_manifest


def test_line_numbers_survive_comments_and_multiline_fields(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "# a comment\n"
        "episode_id,url,notes\n"
        f'good,{video},"two\nlines"\n'
        "\n"
        f"bad.id,{video},\n"
        f"Good,{video},same id but for case\n"
    )
    parsed = read_manifest(manifest)
    assert [(line, source.episode_id) for line, source in parsed.entries] == [(3, "good")]
    assert parsed.entries[0][1].extra == {"notes": "two\nlines"}
    errors = {e.line: str(e.error) for e in parsed.errors}
    assert errors[6].startswith("invalid episode_id 'bad.id'")
    assert errors[7] == "duplicate episode_id 'Good' (first on line 3)"
