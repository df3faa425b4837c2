"""Speech moves the face: the whole chain on the synthetic talking face, each link measured on its own.

A smaller version of `benchmarks/audio_path.py`: three synthetic episodes, the tiny dVAE, encode, the
tiny FAR prior, and a video generated from speech that no episode contains. The generated mouth must
follow that speech clearly above a circular time-shift null.
"""

from __future__ import annotations

import dataclasses
import wave
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nwt_data.synthetic import AUDIO_RATE, babble, write_wav
from nwt_train.audio_path import dvae_follow, generation_follow, prior_cross_entropy
from nwt_train.config import prior_tiny, tiny
from nwt_train.encode import EncodeConfig, encode_shards
from nwt_train.eval_dvae import load_dvae
from nwt_train.train_dvae import train_dvae
from nwt_train.train_prior import train_prior

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from nwt_data.cli.app import app as data_app

    root = tmp_path_factory.mktemp("audio-path")
    ws = root / "ws"
    args = ["demo", "-w", str(ws), "--episodes", "3", "--seconds", "12", "--speech", "babble"]
    result = CliRunner().invoke(data_app, args)
    assert result.exit_code == 0, result.output
    shards, dvae_run, codes, prior_run = ws / "shards", root / "dvae", root / "codes", root / "far"
    train_dvae(dataclasses.replace(tiny(), steps=300, device="cpu", video_every=10**6), shards, dvae_run)
    encode_shards(EncodeConfig(dvae=dvae_run, data=shards, out=codes, device="cpu"))
    train_prior(dataclasses.replace(prior_tiny("far"), steps=300, device="cpu"), codes, prior_run)
    speech = root / "unseen-speech.wav"
    write_wav(speech, babble(8.0, seed=4242), AUDIO_RATE)  # a seed no episode uses
    return {"shards": shards, "dvae": dvae_run, "codes": codes, "prior": prior_run, "speech": speech,
            "root": root}  # fmt: skip


def test_the_dvae_reconstructs_the_mouth(chain: dict[str, Path]) -> None:
    model, _ = load_dvae(chain["dvae"])
    follow = dvae_follow(model, chain["shards"], "train")
    assert follow["source_vs_loudness"]["r"] > 0.8  # the footage itself: the mouth follows the speech
    assert follow["recon_vs_source_r"] > 0.5, follow
    assert follow["recon_vs_loudness"]["r"] > follow["recon_vs_loudness"]["null_p99"], follow


def test_the_prior_uses_the_audio(chain: dict[str, Path]) -> None:
    ce = prior_cross_entropy(chain["prior"], chain["codes"], "train")["ce_nats"]
    assert ce["true"] < ce["shifted_1s"] and ce["true"] < ce["shuffled"], ce


def test_generated_mouth_follows_unseen_speech(chain: dict[str, Path]) -> None:
    out = chain["root"] / "generated.mp4"
    follow = generation_follow(chain["prior"], chain["dvae"], chain["speech"], out, episode="face-1")
    assert out.is_file() and follow["frames"] >= 235
    assert follow["r"] > 0.3 and follow["r"] > follow["null_p99"] + 0.05, follow


def test_the_speech_file_is_what_the_measure_reads(chain: dict[str, Path]) -> None:
    with wave.open(str(chain["speech"])) as f:
        assert f.getframerate() == AUDIO_RATE and f.getnframes() == 8 * AUDIO_RATE
    assert np.isfinite(babble(1.0, seed=1)).all()
