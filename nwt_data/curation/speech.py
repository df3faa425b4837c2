"""Speech in a clip's audio: Silero VAD, the ONNX model that ships inside the `silero-vad` wheel.

An energy threshold cannot tell a voice from laughter, applause or music, which talk shows are full
of; a trained voice-activity detector can. The model (silero_vad/data/silero_vad.onnx) is run with
onnxruntime on one thread, directly, 512 samples (32 ms) at 16 kHz a step with 64 samples of context
and its recurrent state carried over, as the wheel's own wrapper does; nothing is downloaded. A clip's
speech ratio is the share of its 32 ms steps whose speech probability reaches SPEECH_PROBABILITY.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from nwt_data.errors import MediaError

RATE = 16_000
STEP = 512  # samples per model call at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous step the model sees again
SPEECH_PROBABILITY = 0.5


@cache
def model_path() -> Path:
    """silero_vad.onnx inside the installed silero-vad wheel (found without importing the package)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise MediaError(
            "the voice-activity detector is not installed", hint="pip install silero-vad onnxruntime"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise MediaError(
            f"no VAD model at {path}", hint="reinstall silero-vad>=5, whose wheel ships its ONNX model"
        )
    return path


@cache
def _session() -> Any:
    """One onnxruntime session per process, shared by the worker threads (its run() is thread-safe;
    the recurrent state is passed in and out), on one intra-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path()), options, providers=["CPUExecutionProvider"])


def to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 audio at 16 kHz (soxr through librosa, as the mel path resamples)."""
    if rate == RATE:
        return audio.astype(np.float32, copy=False)
    import librosa

    return librosa.resample(audio.astype(np.float32), orig_sr=rate, target_sr=RATE, res_type="soxr_hq")


def speech_probabilities(audio: np.ndarray, rate: int) -> np.ndarray:
    """The speech probability of every 32 ms step of mono `audio` (a trailing partial step is dropped)."""
    x = to_16k(audio, rate)
    steps = len(x) // STEP
    if steps == 0:
        return np.zeros(0, np.float32)
    session = _session()
    state = np.zeros((2, 1, 128), np.float32)
    sr = np.array(RATE, np.int64)
    padded = np.concatenate([np.zeros(CONTEXT, np.float32), x[: steps * STEP]])
    out = np.empty(steps, np.float32)
    for i in range(steps):
        chunk = padded[i * STEP : i * STEP + STEP + CONTEXT][None]
        prob, state = session.run(None, {"input": chunk, "state": state, "sr": sr})
        out[i] = prob[0, 0]
    return out


def speech_ratio(audio: np.ndarray, rate: int) -> float:
    """Share of the clip's 32 ms steps that the detector calls speech (0 for a clip under 32 ms)."""
    probs = speech_probabilities(audio, rate)
    return float((probs >= SPEECH_PROBABILITY).mean()) if len(probs) else 0.0
