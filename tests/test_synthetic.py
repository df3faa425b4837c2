"""The synthetic talking face: its mouth follows the speech, blinks and sway do not, the measure reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nwt_data import synthetic
from nwt_data.synthetic import AUDIO_RATE, CROP_BOX, FaceEpisode


def test_babble_is_deterministic_speech_like_sound() -> None:
    a, b = synthetic.babble(6.0, seed=3), synthetic.babble(6.0, seed=3)
    assert np.array_equal(a, b) and len(a) == 6 * AUDIO_RATE
    loudness = synthetic.frame_loudness(a, AUDIO_RATE, 180)
    # Syllables and pauses: the loudness swings by tens of dB within seconds.
    assert np.percentile(loudness, 90) - np.percentile(loudness, 10) > 20
    assert not np.array_equal(a, synthetic.babble(6.0, seed=4))


def test_mouth_opening_follows_loudness_and_blinks_and_sway_do_not() -> None:
    audio = synthetic.babble(20.0, seed=5)
    frames = 599
    opening = synthetic.mouth_opening(audio, AUDIO_RATE, frames)
    loudness = synthetic.frame_loudness(audio, AUDIO_RATE, frames)
    assert opening.min() == 0 and opening.max() == 1
    assert np.corrcoef(opening, loudness)[0, 1] > 0.8
    for independent in (synthetic.blinks(frames, seed=5), synthetic.sway(frames, seed=5)):
        assert abs(np.corrcoef(independent, opening)[0, 1]) < 0.2


def test_lip_follow_tells_a_following_series_from_a_shifted_one() -> None:
    rng = np.random.default_rng(0)
    loudness = np.convolve(rng.standard_normal(600), np.ones(5) / 5, mode="same")
    follows = loudness + 0.3 * rng.standard_normal(600)
    result = synthetic.lip_follow(follows, loudness)
    assert result["r"] > 0.8 and result["null_p99"] < 0.3
    shifted = synthetic.lip_follow(np.roll(follows, 90), loudness)
    assert shifted["r"] < shifted["null_p99"] + 0.1


def test_a_drawn_frame_carries_the_mouth_opening_and_the_measure_reads_it() -> None:
    """In memory, no encoding: the drawing and the measure the rendered-episode test checks end to end."""
    x, y, w, h = CROP_BOX
    canvas = np.empty((synthetic.HEIGHT, synthetic.WIDTH, 3), np.uint8)
    openings = np.linspace(0, 1, 11)
    rng = np.random.default_rng(1)
    for seed in (3, 11):
        colours = synthetic._colours(seed)
        read = []
        for opening in openings:  # blinks and sway drawn at random: they must not move the reading
            synthetic.draw_frame(canvas, colours, float(opening), float(rng.choice([0.0, 1.0])),
                                 float(rng.uniform(-synthetic.SWAY, synthetic.SWAY)))  # fmt: skip
            read.append(synthetic.mouth_openness(canvas[None, y : y + h, x : x + w].copy())[0])
        assert np.all(np.diff(read) > 0), read
        assert np.corrcoef(read, openings)[0, 1] > 0.98


def test_rendered_episode_carries_the_mouth_in_the_crop(tmp_path: Path) -> None:
    import av

    path = synthetic.render_episode(tmp_path / "face.mp4", FaceEpisode("face", 4.0, seed=11), engine="babble")
    speech = np.load(tmp_path / "face.speech.npy")
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.width, video.height, video.average_rate) == (1280, 720, synthetic.FPS)
        assert audio.sample_rate == AUDIO_RATE
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    x, y, w, h = CROP_BOX
    openness = synthetic.mouth_openness(frames[:, y : y + h, x : x + w])
    expected = synthetic.mouth_opening(speech, AUDIO_RATE, len(frames))
    assert np.corrcoef(openness, expected)[0, 1] > 0.95
    # A second call keeps the file: episodes are made once.
    mtime = path.stat().st_mtime_ns
    synthetic.render_episode(path, FaceEpisode("face", 4.0, seed=11), engine="babble")
    assert path.stat().st_mtime_ns == mtime


def test_unknown_speech_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, espeak or babble"):
        synthetic.speech(1.0, seed=0, engine="tts")
