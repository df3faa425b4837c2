"""A synthetic talking face: footage whose mouth follows real speech, built without third-party media.

Each episode is a 1280x720 video at 29.97 fps in which a flat-coloured cartoon face sits inside the
paper's crop box (`507,8,623,712@1280x720`). Its mouth opens with the loudness of the episode's
speech, frame by frame; blinks and a slow sideways sway are drawn from their own random streams, so
they carry no information about the audio. Every episode has its own background, shirt and skin
colours and its own stretch of speech. Because the true mouth opening of every frame is known, the
footage can prove that a model trained on it turns speech into a moving mouth (`lip_follow`).

Speech comes from `espeak-ng` when it is installed (random sentences, one voice per episode), else
from a formant "babble" synthesiser written here: voiced syllables grouped in words and phrases with
pauses between them, the loudness rhythm that matters for the mouth.

All geometry is in crop fractions (x across the 623-pixel box, y down its 712 rows), so the same
numbers locate the mouth in the 1280x720 episode, in a 224x256 training clip and in a 56x64 tiny
reconstruction.
"""

from __future__ import annotations

import itertools
import math
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

FPS = Fraction(30000, 1001)
WIDTH, HEIGHT = 1280, 720
CROP_BOX = (507, 8, 623, 712)
"""The paper's crop (x, y, w, h) in 1280x720: the face is drawn inside it."""
AUDIO_RATE = 24_000

# Face layout in crop fractions: (centre x, centre y, half width, half height).
FACE = (0.5, 0.50, 0.36, 0.36)
EYES = ((0.37, 0.40), (0.63, 0.40))
EYE_SIZE = (0.055, 0.045)
MOUTH = (0.5, 0.69)
MOUTH_HALF_WIDTH = 0.17
MOUTH_HALF_HEIGHT = (0.012, 0.115)
"""Closed and fully open half heights of the mouth."""
SWAY = 0.03
"""Largest sideways offset of the head, as a fraction of the crop width."""
MOUTH_REGION = (0.27, 0.55, 0.73, 0.84)
"""(x0, y0, x1, y1) in crop fractions: holds the mouth at full opening wherever the sway puts it."""
DARK = 90
"""Luma below which a pixel of the mouth region counts as open mouth (skin is far brighter)."""

_WORD_LIST = (
    "the a we you they this that what when where people time year way day man thing woman life child "
    "world school state family student group country problem hand part place case week company system "
    "program question work government number night point home water room mother area money story fact "
    "month lot right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city community name president team minute idea kid body "
    "information back parent face others level office door health person art war history party result "
    "change morning reason research girl guy moment air teacher force education said went made said "
    "told really never always maybe today tonight again about around because before after without"
)
WORDS = tuple(_WORD_LIST.split())


@dataclass(frozen=True)
class FaceEpisode:
    """One generated episode: its name (the episode id), length and the seed of everything in it."""

    name: str
    seconds: float
    seed: int


def demo_episodes(count: int = 4, seconds: float = 30.0) -> tuple[FaceEpisode, ...]:
    return tuple(FaceEpisode(f"face-{i + 1}", seconds, seed=101 + i) for i in range(count))


# --- speech ---------------------------------------------------------------------------------------


def babble(seconds: float, seed: int, rate: int = AUDIO_RATE) -> np.ndarray:
    """Speech-like sound: voiced syllables with moving formants, grouped in words and phrases.

    Not intelligible, but it has what a mouth follows: syllables at 4-6 per second, short gaps
    between words and longer pauses between phrases.
    """
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    total = int(seconds * rate)
    out = np.zeros(total, np.float32)
    vowels = ((730, 1090), (270, 2290), (530, 1840), (570, 840), (440, 1020), (300, 870), (660, 1720))
    pitch = rng.uniform(95, 190)
    position = int(rng.uniform(0.1, 0.4) * rate)
    while position < total:
        for _word in range(rng.integers(2, 7)):  # a phrase
            for _syllable in range(rng.integers(1, 4)):  # a word
                length = int(rng.uniform(0.12, 0.26) * rate)
                if position + length >= total:
                    break
                t = np.arange(length) / rate
                f0 = pitch * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(1, 3) * t))
                phase = 2 * np.pi * np.cumsum(f0) / rate
                source = np.sign(np.sin(phase)) * 0.5 + 0.02 * rng.standard_normal(length)
                sound = np.zeros(length)
                f1, f2 = vowels[rng.integers(len(vowels))]
                for formant, gain in ((f1, 1.0), (f2, 0.5), (2600, 0.2)):
                    r = math.exp(-math.pi * 90 / rate)
                    theta = 2 * math.pi * formant / rate
                    sound += gain * lfilter([1 - r], [1, -2 * r * math.cos(theta), r * r], source)
                envelope = np.sin(np.pi * np.arange(length) / length) ** 0.7
                out[position : position + length] = sound * envelope * rng.uniform(0.5, 1.0)
                position += length + int(rng.uniform(0.0, 0.04) * rate)
            position += int(rng.uniform(0.06, 0.16) * rate)
        position += int(rng.uniform(0.3, 0.8) * rate)
    return (0.3 * out / max(1e-6, float(np.abs(out).max()))).astype(np.float32)


def espeak(seconds: float, seed: int, rate: int = AUDIO_RATE) -> np.ndarray:
    """Random English sentences spoken by espeak-ng, with pauses between them, `seconds` long."""
    import librosa

    from nwt_data.media.ffmpeg import run_espeak

    rng = np.random.default_rng(seed)
    voice = ("en-us", "en", "en-us+m3", "en+f3", "en-us+f2", "en+m5")[seed % 6]
    speed, pitch = int(rng.integers(140, 180)), int(rng.integers(30, 70))
    pieces: list[np.ndarray] = [np.zeros(int(rng.uniform(0.1, 0.4) * rate), np.float32)]
    length = len(pieces[0])
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "sentence.wav"
        while length < seconds * rate:
            text = " ".join(rng.choice(WORDS, size=int(rng.integers(4, 11))))
            run_espeak(text, wav, voice=voice, speed=speed, pitch=pitch)
            audio, _ = librosa.load(wav, sr=rate, mono=True)
            pause = np.zeros(int(rng.uniform(0.25, 0.8) * rate), np.float32)
            pieces += [audio.astype(np.float32), pause]
            length += len(audio) + len(pause)
    audio = np.concatenate(pieces)[: int(seconds * rate)]
    return (0.3 * audio / max(1e-6, float(np.abs(audio).max()))).astype(np.float32)


def speech(seconds: float, seed: int, *, engine: str = "auto", rate: int = AUDIO_RATE) -> np.ndarray:
    """`seconds` of speech at `rate`: espeak-ng (engine 'espeak', or 'auto' when installed), else babble."""
    if engine not in ("auto", "espeak", "babble"):
        raise ValueError(f"speech engine must be auto, espeak or babble, not {engine!r}")
    if engine == "espeak" or (engine == "auto" and shutil.which("espeak-ng")):
        return espeak(seconds, seed, rate)
    return babble(seconds, seed, rate)


def frame_loudness(audio: np.ndarray, rate: int, frames: int, fps: float = float(FPS)) -> np.ndarray:
    """Loudness of each video frame's stretch of audio in dB below the clip's loud level, (frames,)."""
    edges = np.round(np.arange(frames + 1) * rate / fps).astype(int)
    power = np.array([np.mean(np.square(audio[a:b], dtype=np.float64)) if b > a else 0.0
                      for a, b in itertools.pairwise(edges)])  # fmt: skip
    db = 10 * np.log10(power + 1e-10)
    return db - np.percentile(db, 95)


def mouth_opening(audio: np.ndarray, rate: int, frames: int, fps: float = float(FPS)) -> np.ndarray:
    """Mouth opening in [0, 1] per frame: closed 30 dB under the loud level, fully open at it."""
    opening = np.clip((frame_loudness(audio, rate, frames, fps) + 30) / 30, 0, 1)
    return np.convolve(np.pad(opening, 1, mode="edge"), np.ones(3) / 3, mode="valid")  # no 1-frame flicker


# --- pictures -------------------------------------------------------------------------------------


def _colours(seed: int) -> dict[str, tuple[int, int, int]]:
    rng = np.random.default_rng(seed + 7919)
    hue = rng.uniform(0, 1)
    background = tuple(int(60 + 120 * (0.5 + 0.5 * math.sin(2 * math.pi * (hue + k / 3)))) for k in range(3))
    shirt = tuple(int(v) for v in rng.integers(20, 235, size=3))
    skin = tuple(int(v) for v in np.array([224, 180, 150]) + rng.integers(-25, 20, size=3))
    return {"background": background, "shirt": shirt, "skin": skin}  # type: ignore[dict-item]


def _crop_to_pixels(x: float, y: float) -> tuple[int, int]:
    left, top, width, height = CROP_BOX
    return round(left + x * width), round(top + y * height)


def _lengths(half_w: float, half_h: float) -> tuple[int, int]:
    return max(1, round(half_w * CROP_BOX[2])), max(1, round(half_h * CROP_BOX[3]))


def draw_frame(canvas: np.ndarray, colours: dict, opening: float, eyes_open: float, sway: float) -> None:
    """Draw the face into `canvas` (720, 1280, 3) RGB in place; opening, eyes_open in [0, 1]."""
    import cv2

    canvas[:] = colours["background"]
    cx, cy, fw, fh = FACE
    cx += sway
    # Shoulders: a shirt-coloured block under the head, swaying with it.
    x0, y0 = _crop_to_pixels(cx - 0.46, 0.86)
    x1, _ = _crop_to_pixels(cx + 0.46, 0.86)
    cv2.rectangle(canvas, (x0, y0), (x1, HEIGHT), colours["shirt"], thickness=-1)
    head = (_crop_to_pixels(cx, cy), _lengths(fw, fh))
    cv2.ellipse(canvas, *head, 0, 0, 360, colours["skin"], -1, cv2.LINE_AA)
    for ex, ey in EYES:
        half_w, half_h = EYE_SIZE
        centre = _crop_to_pixels(ex + sway, ey)
        cv2.ellipse(canvas, centre, _lengths(half_w, half_h), 0, 0, 360, (250, 250, 250), -1, cv2.LINE_AA)
        if eyes_open > 0.2:
            pupil = _lengths(half_w * 0.45, half_h * 0.8 * eyes_open)
            cv2.ellipse(canvas, centre, pupil, 0, 0, 360, (30, 30, 60), -1, cv2.LINE_AA)
        else:  # a closed lid
            lid = _lengths(half_w, half_h * 0.15)
            cv2.ellipse(canvas, centre, lid, 0, 0, 360, tuple(int(c * 0.7) for c in colours["skin"]), -1)
    closed, open_ = MOUTH_HALF_HEIGHT
    mouth = _lengths(MOUTH_HALF_WIDTH, closed + (open_ - closed) * opening)
    centre = _crop_to_pixels(MOUTH[0] + sway, MOUTH[1])
    cv2.ellipse(canvas, centre, (mouth[0] + 6, mouth[1] + 6), 0, 0, 360, (150, 50, 60), -1, cv2.LINE_AA)
    cv2.ellipse(canvas, centre, mouth, 0, 0, 360, (35, 8, 15), -1, cv2.LINE_AA)


def blinks(frames: int, seed: int, fps: float = float(FPS)) -> np.ndarray:
    """Eye openness per frame: open, with 4-frame blinks every 2-6 s (independent of the audio)."""
    rng = np.random.default_rng(seed + 17)
    eyes = np.ones(frames)
    t = int(rng.uniform(0.5, 3) * fps)
    while t < frames:
        eyes[t : t + 4] = (0.5, 0.0, 0.0, 0.5)[: len(eyes[t : t + 4])]
        t += int(rng.uniform(2, 6) * fps)
    return eyes


def sway(frames: int, seed: int, fps: float = float(FPS)) -> np.ndarray:
    """Sideways head offset per frame (crop fractions): a slow wobble with its own random period."""
    rng = np.random.default_rng(seed + 29)
    t = np.arange(frames) / fps
    period, phase = rng.uniform(5, 9), rng.uniform(0, 2 * np.pi)
    return SWAY * np.sin(2 * np.pi * t / period + phase)


def render_episode(path: Path, episode: FaceEpisode, *, engine: str = "auto") -> Path:
    """Write the episode's MP4 (H.264 + AAC, 1280x720 at 29.97 fps, a keyframe every 2 s).

    The speech is saved beside it as `NAME.speech.npy` (24 kHz float32): the ground truth the
    lip-follow measures use. Written under temporary names and renamed; an existing file is kept.
    """
    import av

    from nwt_data.media.ffmpeg import mux_audio_args, run_ffmpeg

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(episode.seconds * FPS)
    audio = speech(frames / float(FPS) + 0.1, episode.seed, engine=engine)
    opening = mouth_opening(audio, AUDIO_RATE, frames)
    eyes, offsets = blinks(frames, episode.seed), sway(frames, episode.seed)
    colours = _colours(episode.seed)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        video_only, wav = Path(tmp) / "video.mp4", Path(tmp) / "speech.wav"
        with av.open(str(video_only), "w") as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
            gop = str(round(2 * float(FPS)))
            stream.options = {"preset": "veryfast", "crf": "20", "g": gop, "keyint_min": gop,
                              "sc_threshold": "0", "threads": "1"}  # fmt: skip
            canvas = np.empty((HEIGHT, WIDTH, 3), np.uint8)
            for i in range(frames):
                draw_frame(canvas, colours, float(opening[i]), float(eyes[i]), float(offsets[i]))
                container.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
            container.mux(stream.encode(None))
        write_wav(wav, audio, AUDIO_RATE)
        partial = Path(tmp) / "episode.mp4"
        run_ffmpeg(mux_audio_args(video_only, wav, partial), timeout=600)
        speech_path = path.with_name(f"{path.stem}.speech.npy")
        np.save(Path(tmp) / "speech.npy", audio)
        (Path(tmp) / "speech.npy").replace(speech_path)
        partial.replace(path)
    return path


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    import wave

    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


# --- measuring a mouth ----------------------------------------------------------------------------


def mouth_openness(frames: np.ndarray) -> np.ndarray:
    """Share of dark pixels in the mouth region per frame: (T, H, W, 3) uint8 crop frames -> (T,).

    Frames are the cropped picture at any size (224x256 clips, 56x64 tiny reconstructions).
    """
    height, width = frames.shape[1:3]
    x0, y0, x1, y1 = MOUTH_REGION
    region = frames[:, round(y0 * height) : round(y1 * height), round(x0 * width) : round(x1 * width)]
    luma = region[..., 0] * 0.299 + region[..., 1] * 0.587 + region[..., 2] * 0.114
    return (luma < DARK).mean(axis=(1, 2))


def lip_follow(openness: np.ndarray, loudness: np.ndarray, *, min_shift: int = 30) -> dict[str, float]:
    """Correlation of mouth openness with speech loudness per frame, against a time-shift null.

    The null circularly shifts the loudness by every offset of at least `min_shift` frames (1 s) from
    the truth: r above the null's 99th percentile means the mouth follows this speech, not speech
    in general.
    """
    n = min(len(openness), len(loudness))
    a, b = np.asarray(openness[:n], float), np.asarray(loudness[:n], float)
    if n < 2 * min_shift + 2 or a.std() == 0 or b.std() == 0:
        return {"r": 0.0, "null_p99": float("nan"), "null_mean": float("nan"), "frames": n}
    null = [np.corrcoef(a, np.roll(b, shift))[0, 1] for shift in range(min_shift, n - min_shift + 1)]
    return {
        "r": float(np.corrcoef(a, b)[0, 1]),
        "null_p99": float(np.percentile(null, 99)),
        "null_mean": float(np.mean(null)),
        "frames": n,
    }
