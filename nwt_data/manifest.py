"""Read episode manifests.

A manifest is a UTF-8 CSV file with a header row. Required columns: `episode_id` and `url`. Any
other column (title, air_date, notes...) is kept as optional metadata of the episode. Lines starting
with `#` and blank lines are ignored. `url` is an http(s) URL (downloaded with yt-dlp), a `file://`
URL, or a local path (absolute, or relative to the manifest's folder), which is copied.

    episode_id,url,title
    lwt-2019-03-03,https://www.youtube.com/watch?v=XXXXXXXXXXX,Season 6 Episode 3
    my-local-take,recordings/take1.mp4,
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from nwt_data.catalog import EpisodeSource
from nwt_data.errors import ManifestError, NwtError
from nwt_data.workspace import check_episode_id

REQUIRED = ("episode_id", "url")


@dataclass(frozen=True)
class LineError:
    line: int
    episode_id: str
    error: NwtError


@dataclass(frozen=True)
class Manifest:
    path: Path
    entries: list[tuple[int, EpisodeSource]]
    errors: list[LineError]


def read_manifest(path: Path) -> Manifest:
    """Parse a manifest; bad lines become `errors`, the good ones `entries`."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise ManifestError(f"manifest {path} not found", hint="give the path of a CSV manifest") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"cannot read manifest {path}: {err}") from err
    lines = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise ManifestError(
            f"manifest {path} is empty", hint="add a header row 'episode_id,url' and one row per episode"
        )
    numbers = [number for number, _ in lines]
    reader = csv.reader(io.StringIO("\n".join(line for _, line in lines)))
    header = [name.strip().lower() for name in next(reader)]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise ManifestError(
            f"manifest {path} has no {' or '.join(missing)} column",
            hint="the first row must name the columns, e.g. 'episode_id,url'",
        )
    entries: list[tuple[int, EpisodeSource]] = []
    errors: list[LineError] = []
    first_line: dict[str, int] = {}
    consumed = reader.line_num  # physical lines read so far: a quoted field may span several
    for row in reader:
        number, consumed = numbers[consumed], reader.line_num
        values = {name: value.strip() for name, value in zip(header, row, strict=False)}
        episode_id = values.get("episode_id", "")
        try:
            if len(row) > len(header):
                raise ManifestError(f"line has {len(row)} fields but the header has {len(header)}",
                                    hint="quote values that contain commas")  # fmt: skip
            check_episode_id(episode_id)
            # Ids that differ only in case would share a file on case-insensitive file systems.
            if episode_id.lower() in first_line:
                raise ManifestError(
                    f"duplicate episode_id {episode_id!r} (first on line {first_line[episode_id.lower()]})",
                    hint="give every episode its own id",
                )
            first_line[episode_id.lower()] = number
            url, kind = _source(values.get("url", ""), path.parent)
            extra = {k: v for k, v in values.items() if k not in REQUIRED and v}
            entries.append((number, EpisodeSource(episode_id, url, kind, str(path.resolve()), extra)))
        except NwtError as err:
            errors.append(LineError(number, episode_id or "?", err))
    return Manifest(path, entries, errors)


def _source(url: str, base: Path) -> tuple[str, str]:
    if not url:
        raise ManifestError("empty url", hint="give an http(s) URL or a local file path")
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        return url, "url"
    if parsed.scheme == "file":
        local = Path(unquote(parsed.path))
    elif "://" in url:
        raise ManifestError(
            f"unsupported URL scheme {parsed.scheme!r}", hint="use http(s), file:// or a path"
        )
    else:
        local = Path(url).expanduser()
        if not local.is_absolute():
            local = base / local
    local = local.resolve()
    if not local.is_file():
        raise ManifestError(f"local file {local} not found", hint="fix the path in the manifest")
    return str(local), "file"
