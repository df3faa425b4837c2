"""Developer sessions: `nox -s tests`, `nox -s quick`, `nox -s lint`, `nox -s bench`, `nox -s demo`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

# The CPU wheel, installed before the project so that its `torch` requirement is already met and
# pip never pulls the multi-GB CUDA build. On a GPU machine, install your own torch instead.
TORCH = "torch==2.13.0"


def install(session: nox.Session, extras: str = "") -> None:
    session.install(TORCH)
    session.install("-e", f".{extras}")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (real ffmpeg, yt-dlp over 127.0.0.1, SQLite, a local Ray cluster)."""
    install(session, "[dev,ray]")
    ensure_chromium(session)
    session.run("pytest", *(session.posargs or ["-q"]))


def ensure_chromium(session: nox.Session) -> None:
    """The report test opens a report in headless Chromium: Debian's package, installed when missing
    and apt can (as root); otherwise that one test skips."""
    if shutil.which("chromium") or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    quiet = {"external": True, "silent": True, "success_codes": list(range(256))}
    session.run("apt-get", "update", "-qq", **quiet)
    session.run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium",
                env={"DEBIAN_FRONTEND": "noninteractive"}, **quiet)  # fmt: skip


@nox.session
def quick(session: nox.Session) -> None:
    """The fast tier for the inner loop: tests that build no media, shards, models or clusters."""
    install(session, "[dev]")
    session.run("pytest", "-m", "quick", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput benchmarks, each printing its figures against a baseline measured in the same run.

    `nox -s bench -- segment` runs only benchmarks/bench_segment.py (names: segment, prepare, review,
    flags, train, generate, and ray: local against Ray on 1 and 2 CPUs, with the Ray extra).
    """
    names = session.posargs or ["segment", "prepare", "review", "flags", "train", "generate"]
    install(session, "[ray]" if "ray" in names else "")
    for name in names:
        script = Path(f"benchmarks/bench_{name}.py")
        if not script.exists():
            session.error(f"no benchmark {script}")
        session.run("python", str(script))


@nox.session
def demo(session: nox.Session) -> None:
    """The whole mission on built-in generated footage: talking faces in, a generated video out."""
    install(session)
    session.run("nwt-train", "demo", "--workspace", "demo-workspace", *session.posargs)
