"""Speech in, video out on CPU: shards -> dVAE (tiny) -> encode -> prior (FAR, MAR) -> generate."""

from __future__ import annotations

import io
import json
import math
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nwt_data.media.ffmpeg import run_ffmpeg
from nwt_train import checkpoint
from nwt_train.cli.app import app
from nwt_train.config import prior_tiny, tiny, with_overrides
from nwt_train.encode import sample_codes, weights_digest
from nwt_train.eval_dvae import load_dvae
from nwt_train.train_dvae import train_dvae
from nwt_train.train_prior import train_prior

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def _invoke(*args: str) -> object:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """This module trains on one torch thread. Its asserted figures (the overfit's cross-entropy above
    all) then come out bit for bit the same on every run; with one thread a core they move with the
    core count, and on a busy machine the threads wait on each other at every op."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _members(tar_path: Path) -> dict[str, bytes]:
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's four 256x224 clips of two talking-face episodes, made by the real `nwt-data demo`."""
    from nwt_data.cli.app import app as data_app

    workspace = tmp_path_factory.mktemp("prior-data") / "ws"
    args = ["demo", "--workspace", str(workspace), "--episodes", "2", "--seconds", "10", "--speech", "babble"]
    result = CliRunner().invoke(data_app, args)
    assert result.exit_code == 0, result.output
    return workspace / "shards"


@pytest.fixture(scope="module")
def dvae_run(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny dVAE trained long enough that its posterior is confident (mean entropy ~0.1 nats)."""
    run = tmp_path_factory.mktemp("prior") / "dvae"
    # Logits 8x the Gumbel noise's spread from the start: a confident posterior in 60 steps, so the
    # codes are nearly deterministic and the prior can overfit them (the default starts at 1.28).
    config = with_overrides(tiny(), {"steps": 60, "lr": 1e-3, "log_every": 20, "video_every": 1000,
                                     "model.memcode_logit_std": 10.0})  # fmt: skip
    train_dvae(config, shards, run)
    return run


@pytest.fixture(scope="module")
def codes(dvae_run: Path, shards: Path) -> Path:
    out = dvae_run.parent / "codes"
    result = _invoke("encode", "--dvae", dvae_run, "--data", shards, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """whisper_jfk.flac from ../shared/media, or 3 s of generated 16 kHz audio when that is absent."""
    jfk = SHARED_MEDIA / "whisper_jfk.flac"
    if jfk.is_file():
        return jfk
    out = tmp_path_factory.mktemp("speech") / "speech.wav"
    run_ffmpeg(["-y", "-f", "lavfi", "-i", "sine=frequency=220:duration=3", "-ar", "16000", str(out)])
    return out


def test_encode_writes_sampled_memcodes_with_the_aligned_mel(
    codes: Path, dvae_run: Path, shards: Path
) -> None:
    description = json.loads((codes / "codes.json").read_text())
    model, saved = load_dvae(dvae_run)
    assert description["complete"] and description["dvae"]["weights_sha256"] == weights_digest(model)
    assert description["dvae"]["step"] == saved["step"] == 60
    assert description["grid"] == [8, 7] and description["heads"] == 4
    source = json.loads((shards / "dataset.json").read_text())
    assert description["samples"] == {k: v for k, v in source["samples"].items() if v}
    for shard in description["shards"]:
        written, original = _members(codes / shard["name"]), _members(shards / shard["name"])
        keys = {name.rsplit(".", 1)[0] for name in original if name.endswith(".mp4")}
        for key in keys:
            meta = json.loads(written[f"{key}.json"])
            grid = np.load(io.BytesIO(written[f"{key}.codes.npy"]))
            assert grid.dtype == np.uint8 and grid.shape == (meta["frames"], 8, 7, 4) and grid.max() < 8
            assert meta["frames"] == json.loads(original[f"{key}.json"])["frames"]
            assert written[f"{key}.mel.npy"] == original[f"{key}.mel.npy"]  # byte for byte


def test_encode_samples_reproducibly_and_not_argmax(dvae_run: Path, shards: Path) -> None:
    model, _ = load_dvae(dvae_run)
    tar = next(shards.glob("train-*.tar"))
    members = _members(tar)
    key = next(name[:-4] for name in members if name.endswith(".mp4"))
    from nwt_train.data import decode_video_window, to_unit_range
    from nwt_train.train_dvae import fit_frames

    frames = decode_video_window(members[f"{key}.mp4"], 0, json.loads(members[f"{key}.json"])["frames"])
    first = sample_codes(model, frames, seed=7, chunk=16)
    assert np.array_equal(first, sample_codes(model, frames, seed=7, chunk=16))
    assert not np.array_equal(first, sample_codes(model, frames, seed=8, chunk=16))
    with torch.no_grad():
        video = fit_frames(to_unit_range(frames)[None], model.config.frame_size)
        argmax = model.encode(video, sample=False)[0].numpy()
    assert (first != argmax).any()  # footnote 2: sampled from q(z|x), not its argmax


def test_encode_resumes_and_refuses_codes_of_another_dvae(codes: Path, shards: Path, tmp_path: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in codes.glob("*.tar")}
    again = _invoke("encode", "--dvae", codes.parent / "dvae", "--data", shards, "--out", codes)
    assert again.exit_code == 0, again.output
    assert {p.name: p.stat().st_mtime_ns for p in codes.glob("*.tar")} == before  # nothing redone
    other = tmp_path / "other-dvae"
    train_dvae(with_overrides(tiny(), {"steps": 1, "seed": 3}), shards, other)
    refused = _invoke("encode", "--dvae", other, "--data", shards, "--out", codes)
    assert refused.exit_code == 2 and "another dVAE" in refused.output


def _prior_config(arch: str, **overrides: object):  # type: ignore[no-untyped-def]
    return with_overrides(prior_tiny(arch), {"batch_size": 2, "log_every": 1, **overrides})


def test_prior_resumes_exactly(codes: Path, tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_prior(_prior_config("far", steps=4), codes, straight)
    train_prior(_prior_config("far", steps=2), codes, split)
    train_prior(_prior_config("far", steps=4), codes, split)
    a, b = checkpoint.load(straight), checkpoint.load(split)
    assert a["step"] == b["step"] == 4
    for name, tensor in a["prior"].items():
        assert torch.equal(tensor, b["prior"][name]), name
    assert {"dvae", "episodes"} <= set(a["codes"])


@pytest.fixture(scope="module")
def far_run(codes: Path) -> tuple[Path, list[dict[str, float]]]:
    """The overfit run: FAR on the tiny encoded set until its cross-entropy is far below log 8."""
    seen: list[dict[str, float]] = []
    run = codes.parent / "far"
    config = _prior_config("far", steps=60, lr_halving_every=100_000)
    train_prior(config, codes, run, progress=lambda step, values: seen.append(values))
    return run, seen


def test_far_prior_overfits_well_below_uniform(far_run: tuple[Path, list[dict[str, float]]]) -> None:
    run, seen = far_run
    uniform = math.log(8)
    first, last = seen[0]["loss/ce"], seen[-1]["loss/ce"]
    heads = [round(seen[-1][f"ce/head{h}"], 4) for h in range(4)]
    figures = f"cross-entropy first {first:.4f}, last {last:.4f}, per head {heads}; log 8 = {uniform:.4f}"
    assert first > 0.9 * uniform, figures  # starts near a uniform guess
    assert last < 0.25 * uniform, figures  # the tiny dVAE's codes are nearly deterministic
    assert max(heads) < 0.4 * uniform, figures
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 500


@pytest.fixture(scope="module")
def mar_run(codes: Path) -> Path:
    run = codes.parent / "mar"
    result = _invoke("prior", "--data", codes, "--out", run, "--arch", "mar", "--preset", "tiny",
                     "--set", "steps=4", "--set", "batch_size=2")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["model"]["arch"] == "mar"
    return run


def _probe(path: Path) -> dict[str, float]:
    import av

    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames = sum(1 for _ in container.decode(video=0))
        return {
            "fps": float(video.average_rate),
            "frames": frames,
            "video_s": float(video.duration * video.time_base),
            "audio_s": float(audio.duration * audio.time_base),
            "width": video.width,
            "height": video.height,
        }


def _audio_seconds(path: Path) -> float:
    from nwt_train.generate import read_audio

    samples, rate = read_audio(path)
    return len(samples) / rate


@pytest.mark.parametrize("arch", ["far", "mar"])
def test_generate_writes_an_mp4_of_the_speech_at_30_fps(
    arch: str, far_run: tuple[Path, list[dict[str, float]]], mar_run: Path, codes: Path, speech: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    run = far_run[0] if arch == "far" else mar_run
    # MAR samples one Memcode per step: its test generates the first 1.5 s; FAR generates it all.
    seconds = None if arch == "far" else 1.5
    out = tmp_path / f"{arch}.mp4"
    args = ["generate", "--prior", run, "--dvae", codes.parent / "dvae", "--audio", speech,
            "--episode", "face-2", "--out", out, "--seed", "3"]  # fmt: skip
    if seconds:
        args += ["--seconds", str(seconds)]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    duration = seconds or _audio_seconds(speech)
    expected_frames = math.ceil(duration * 30 - 1e-6)
    info = _probe(out)
    assert info["fps"] == 30 and info["frames"] == expected_frames
    assert (info["width"], info["height"]) == (56, 64)  # the tiny dVAE's frames
    assert abs(info["video_s"] - expected_frames / 30) < 1e-3
    assert abs(info["audio_s"] - duration) < 1 / 30 + 0.03  # the audio is the input's, up to AAC padding
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["frames"] == expected_frames and summary["arch"] == arch and summary["frames_per_s"] > 0


def test_generate_style_controls(far_run: tuple[Path, list[dict[str, float]]], codes: Path, speech: Path,
                                 shards: Path, tmp_path: Path) -> None:  # fmt: skip
    run, dvae = far_run[0], codes.parent / "dvae"
    base = ["generate", "--prior", run, "--dvae", dvae, "--audio", speech, "--episode", "face-2",
            "--seconds", "0.5"]  # fmt: skip
    members = _members(next(shards.glob("train-*.tar")))
    reference = tmp_path / "reference.mp4"
    reference.write_bytes(next(v for k, v in members.items() if k.endswith(".mp4")))

    summaries = {}
    for name, extra in {
        "prior": [],
        "prior-again": [],
        "variate": ["--style-set", "2=2.5"],
        "reference": ["--style-from", reference],
        "other-seed": ["--seed", "5"],
    }.items():
        out = tmp_path / f"{name}.mp4"
        result = _invoke(*base, "--out", out, *extra)
        assert result.exit_code == 0, result.output
        summaries[name] = json.loads(out.with_suffix(".json").read_text())
    assert summaries["prior"]["z_l"] == summaries["prior-again"]["z_l"]  # seeded
    assert summaries["variate"]["z_l"][2] == 2.5
    assert summaries["variate"]["z_l"][:2] == summaries["prior"]["z_l"][:2]  # the others stay drawn
    assert summaries["reference"]["style"] == "reference"
    assert summaries["reference"]["z_l"] != summaries["prior"]["z_l"]
    assert summaries["other-seed"]["z_l"] != summaries["prior"]["z_l"]


def test_generate_explains_bad_input(far_run: tuple[Path, list[dict[str, float]]], codes: Path, speech: Path,
                                     tmp_path: Path, make_video) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    run, dvae = far_run[0], codes.parent / "dvae"
    base = ["generate", "--prior", run, "--audio", speech, "--out", tmp_path / "x.mp4"]
    unknown = _invoke(*base, "--dvae", dvae, "--episode", "nope")
    assert (
        unknown.exit_code == 2 and "unknown episode 'nope'" in unknown.output and "face-2" in unknown.output
    )
    wrong = _invoke(*base, "--dvae", tmp_path, "--episode", "face-2")
    assert wrong.exit_code == 2 and "no checkpoint" in wrong.output
    silent = make_video("silent.mp4", with_audio=False, seconds=1.0)
    mute = _invoke("generate", "--prior", run, "--dvae", dvae, "--audio", silent, "--episode", "face-2",
                   "--out", tmp_path / "y.mp4")  # fmt: skip
    assert mute.exit_code == 2 and "no audio stream" in mute.output
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "y.mp4").exists()


def test_prior_trains_under_torchrun_with_two_processes(codes: Path, tmp_path: Path) -> None:
    """The real launcher: two gloo ranks, DDP around the prior, rank 0 saves."""
    import subprocess
    import sys

    run = tmp_path / "ddp"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "nwt_train.cli", "prior", "--data", str(codes), "--out", str(run), "--arch", "far",
            "--preset", "tiny", "--set", "steps=2", "--set", "batch_size=2"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    saved = checkpoint.load(run)
    assert saved["step"] == 2 and saved["config"]["batch_size"] == 2


def test_prior_and_encode_refuse_what_cannot_work(codes: Path, shards: Path, tmp_path: Path) -> None:
    # Windows longer than every clip: a clear error instead of resampling shards forever.
    with pytest.raises(ValueError, match="shorter than the 100000-frame window"):
        train_prior(_prior_config("far", steps=1, frames=100_000), codes, tmp_path / "long")
    # An encode folder resumes only with the seed that started it.
    other_seed = _invoke("encode", "--dvae", codes.parent / "dvae", "--data", shards, "--out", codes,
                         "--seed", "5")  # fmt: skip
    assert other_seed.exit_code == 2 and "--seed 0" in other_seed.output
    # A prior run is not a dVAE; a device that does not exist is a one-line error, not a traceback.
    swapped = _invoke("encode", "--dvae", codes.parent / "far", "--data", shards, "--out", tmp_path / "c")
    assert swapped.exit_code == 2 and "not a dVAE run" in swapped.output
    bad_device = _invoke("prior", "--data", codes, "--out", tmp_path / "d", "--preset", "tiny",
                         "--set", "device=nonsense")  # fmt: skip
    assert bad_device.exit_code == 2 and "error:" in bad_device.output


@pytest.mark.parametrize("arch", ["far", "mar"])
def test_chunked_conditioning_samples_the_same_codes(arch: str) -> None:
    """Conditioning computed a few frames at a time gives the codes of the whole clip's conditioning."""
    from nwt_train.generate import sample_memcodes
    from nwt_train.models.prior import Prior, PriorConfig

    torch.manual_seed(0)
    prior = Prior(PriorConfig.tiny(arch)).eval()
    frames = 23 if arch == "far" else 9
    mel = torch.rand(1, prior.config.n_mels, 4 * frames) + 1e-3
    episode, z = torch.tensor([1]), torch.randn(1, prior.config.style_dim)
    runs = {}
    for chunk in (4, 1000):
        generator = torch.Generator().manual_seed(7)
        runs[chunk] = sample_memcodes(prior, mel, episode, z, temperature=1.0, generator=generator,
                                      chunk=chunk)  # fmt: skip
    assert runs[4].dtype == torch.uint8 and runs[4].shape[1] == frames
    assert torch.equal(runs[4], runs[1000])
    whole = prior.conditioning(mel, episode, z)
    part = prior.conditioning_frames(mel, episode, z, 5, 9)
    torch.testing.assert_close(part, whole[:, :, 5:9], rtol=0, atol=1e-6)


def test_decoded_chunks_equal_the_whole_clip(dvae_run: Path) -> None:
    from nwt_train.generate import decoded_chunks
    from nwt_train.metrics import to_uint8_frames

    dvae, _ = load_dvae(dvae_run)
    m = dvae.config
    grid = (m.frame_size[0] // 8, m.frame_size[1] // 8)
    shape = (1, 21, *grid, m.heads)
    codes = torch.randint(0, m.codebook_size, shape, generator=torch.Generator().manual_seed(1))
    episode = torch.tensor([0])
    with torch.no_grad():
        whole = to_uint8_frames(dvae.decode(codes, episode)[0])
    parts = list(decoded_chunks(dvae, codes.to(torch.uint8), episode, chunk=5))
    assert [len(p) for p in parts] == [5, 5, 5, 5, 1]
    assert np.abs(np.concatenate(parts).astype(int) - whole.astype(int)).max() <= 1  # float rounding only


PEAK_RSS = """
import json, resource, sys
from pathlib import Path
from nwt_train.generate import GenerateConfig, generate
prior, dvae, audio, out = map(Path, sys.argv[1:5])
config = GenerateConfig(prior=prior, dvae=dvae, audio=audio, out=out, episode="face-2", device="cpu")
frames = generate(config)["frames"]
print(json.dumps({"frames": frames, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def test_generate_memory_does_not_grow_with_the_speech(
    far_run: tuple[Path, list[dict[str, float]]], codes: Path, tmp_path: Path
) -> None:
    """10 minutes of speech: the peak memory stays within a fixed margin of 20 seconds' (it grew by
    ~3 GB when the whole clip's conditioning and pixels were held)."""
    import subprocess
    import sys

    peaks = {}
    for seconds in (20, 600):
        audio = tmp_path / f"speech-{seconds}.wav"
        run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=16000:duration={seconds}",
                    "-af", "volume=0.5", str(audio)])  # fmt: skip
        argv = [sys.executable, "-c", PEAK_RSS, str(far_run[0]), str(codes.parent / "dvae"), str(audio),
                str(tmp_path / f"out-{seconds}.mp4")]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["frames"] == seconds * 30
        peaks[seconds] = result["peak_mb"]
    assert _probe(tmp_path / "out-600.mp4")["frames"] == 18_000
    # The audio, its mel and the codes grow: ~150 MB for 10 minutes at most.
    assert peaks[600] - peaks[20] < 250, peaks
