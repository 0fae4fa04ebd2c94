"""amber2.audio: every kind of input a user may give becomes 16 kHz mono float32, or a readable AudioError."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from amber2.audio import SAMPLE_RATE, AudioError, AudioLimits, load_audio, peak_dbfs

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg binary not installed")


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def spectrum_peaks(x: np.ndarray, rate: int = SAMPLE_RATE, n: int = 1) -> list[float]:
    """Frequencies (Hz) of the `n` strongest spectral peaks, at least 50 Hz apart."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    peaks: list[float] = []
    for i in np.argsort(spec)[::-1]:
        if all(abs(freqs[i] - p) > 50 for p in peaks):
            peaks.append(float(freqs[i]))
        if len(peaks) == n:
            break
    return peaks


def ffmpeg_encode(src: Path, dst: Path) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), str(dst)], check=True, timeout=60)
    return dst


@pytest.fixture
def tone_wav(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    sf.write(path, tone(440, 2.0, 44100), 44100, subtype="PCM_16")
    return path


# --- what comes out -----------------------------------------------------------------------------------


def test_eight_khz_stereo_is_resampled_and_averaged(tmp_path: Path):
    left, right = tone(440, 2.0, 8000, 0.4), tone(1000, 2.0, 8000, 0.4)
    path = tmp_path / "stereo8k.wav"
    sf.write(path, np.stack([left, right], axis=1), 8000, subtype="PCM_16")
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert len(x) == 2 * SAMPLE_RATE  # duration kept exactly
    assert sorted(round(f) for f in spectrum_peaks(x, n=2)) == [440, 1000]
    # the average of two uncorrelated tones of amplitude 0.4 each has RMS sqrt(2 * (0.2**2 / 2)) = 0.2
    assert np.sqrt(np.mean(x[1000:-1000] ** 2)) == pytest.approx(0.2, rel=0.02)


def test_resampled_tone_matches_a_tone_generated_at_16k(tmp_path: Path):
    path = tmp_path / "tone48k.flac"
    sf.write(path, tone(440, 1.0, 48000), 48000)
    x = load_audio(path)
    reference = tone(440, 1.0, SAMPLE_RATE)
    # away from the edges (where the resampling filter sees the zero padding) the waveforms agree
    assert np.max(np.abs(x[200:-200] - reference[200:-200])) < 1e-3


def test_ravdess_flac_is_read(ravdess_clip: Path):
    info = sf.info(ravdess_clip)
    x = load_audio(ravdess_clip)
    assert len(x) == pytest.approx(info.duration * SAMPLE_RATE, abs=2)
    assert -50 < peak_dbfs(x) <= 0


@needs_ffmpeg
@pytest.mark.parametrize("ext", ["mp3", "ogg", "m4a", "webm"])
def test_compressed_formats(tone_wav: Path, tmp_path: Path, ext: str):
    x = load_audio(ffmpeg_encode(tone_wav, tmp_path / f"tone.{ext}"))
    assert len(x) == pytest.approx(2 * SAMPLE_RATE, rel=0.03)  # encoders add a few ms of priming
    assert spectrum_peaks(x)[0] == pytest.approx(440, abs=2)


def test_gradio_tuple_int16_stereo():
    samples = (tone(440, 1.0, 48000) * 32767).astype(np.int16)
    x = load_audio((48000, np.stack([samples, samples], axis=1)))
    assert len(x) == SAMPLE_RATE and x.dtype == np.float32
    assert np.max(np.abs(x)) == pytest.approx(0.5, rel=0.01)  # int16 scaled back to [-1, 1]


@pytest.mark.parametrize("dtype,scale", [(np.int16, 2**15), (np.int32, 2**31), (np.float64, 1.0)])
def test_array_types_are_scaled(dtype, scale):
    x = load_audio((tone(440, 1.0, SAMPLE_RATE) * scale).astype(dtype), sr=SAMPLE_RATE)
    assert np.max(np.abs(x)) == pytest.approx(0.5, rel=0.01)


def test_uint8_pcm_is_centred():
    samples = np.round(tone(440, 1.0, SAMPLE_RATE) * 127 + 128).astype(np.uint8)
    x = load_audio(samples)
    assert abs(float(x.mean())) < 0.01 and np.max(np.abs(x)) == pytest.approx(0.5, rel=0.02)


def test_channels_first_array_and_default_rate():
    mono = tone(300, 1.0, SAMPLE_RATE)
    x = load_audio(np.stack([mono, mono]))  # torchaudio layout (channels, n); rate defaults to 16 kHz
    np.testing.assert_allclose(x, mono, atol=1e-7)


def test_read_only_array_and_float_rate_are_accepted():
    x = tone(300, 1.0, 22050)
    x.flags.writeable = False
    assert len(load_audio(x, sr=22050.0)) == SAMPLE_RATE
    assert "whole number" in refused(x, sr=22050.5)


def test_torch_tensor_is_accepted():
    import torch

    x = load_audio(torch.from_numpy(tone(300, 1.0, 22050)), sr=22050)
    assert len(x) == SAMPLE_RATE


# --- what is refused ----------------------------------------------------------------------------------


def refused(source, **kw) -> str:
    with pytest.raises(AudioError) as info:
        load_audio(source, **kw)
    message = str(info.value)
    assert "Traceback" not in message and message.endswith((".", ")")), message
    return message


def test_silence_is_refused(tmp_path: Path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(3 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    assert "silent" in refused(path)
    # very quiet hiss (-66 dBFS) on a DC offset is still silence
    rng = np.random.default_rng(0)
    assert "silent" in refused(0.3 + 0.0005 * rng.standard_normal(SAMPLE_RATE).astype(np.float32))


def test_silence_is_explained_in_plain_words_with_the_decibels_last():
    message = refused(np.full(SAMPLE_RATE, 1e-4, np.float32) * np.sin(np.arange(SAMPLE_RATE)))
    words, _, numbers = message.partition("(")
    assert "microphone" in words and "dBFS" not in words and "-50" not in words
    assert message.endswith(").") and "dBFS" in numbers
    assert "digital silence" in refused(np.zeros(SAMPLE_RATE, np.float32))


def test_quiet_speech_level_is_accepted():
    x = tone(300, 1.0, SAMPLE_RATE, amplitude=10 ** (-40 / 20))  # peak -40 dBFS: quiet but real
    assert len(load_audio(x)) == SAMPLE_RATE


def test_three_minute_file_says_how_long_and_the_limit(tmp_path: Path):
    path = tmp_path / "long.wav"
    sf.write(path, tone(300, 180.0, 8000, 0.3), 8000, subtype="PCM_16")
    message = refused(path)
    assert "3 min 0 s" in message and "60 s" in message


@needs_ffmpeg
def test_three_minute_m4a_says_how_long(tmp_path: Path):
    wav = tmp_path / "long.wav"
    sf.write(wav, tone(300, 180.0, 8000, 0.3), 8000, subtype="PCM_16")
    message = refused(ffmpeg_encode(wav, tmp_path / "long.m4a"))
    assert "3 min 0 s" in message and "60 s" in message


def test_custom_limits():
    x = tone(300, 5.0, SAMPLE_RATE)
    assert "5 s" in refused(x, limits=AudioLimits(max_seconds=4.0))
    assert len(load_audio(x, limits=AudioLimits(max_seconds=6.0))) == 5 * SAMPLE_RATE


def test_too_short_is_refused():
    message = refused(tone(300, 0.1, SAMPLE_RATE))
    assert "0.10 s" in message and "0.3 s" in message


def test_text_renamed_wav_is_refused(tmp_path: Path):
    path = tmp_path / "notes.wav"
    path.write_text("These are my meeting notes, not a recording.\n" * 20)
    assert "notes.wav" in refused(path)


def test_empty_and_missing_files(tmp_path: Path):
    empty = tmp_path / "empty.wav"
    empty.touch()
    assert "empty" in refused(empty)
    assert "does not exist" in refused(tmp_path / "missing.wav")
    assert "folder" in refused(tmp_path)


def test_wav_with_no_samples(tmp_path: Path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE)
    assert "no samples" in refused(path)


@needs_ffmpeg
def test_video_without_audio_is_refused(tmp_path: Path):
    path = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=1", str(path)],
                   check=True, timeout=60)
    assert "no audio track" in refused(path)


def test_missing_ffmpeg_is_explained(tmp_path: Path, monkeypatch):
    import amber2.audio as audio

    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    path = tmp_path / "voice.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    assert "ffmpeg" in refused(path)


def test_ffmpeg_that_hangs_is_stopped(tmp_path: Path, monkeypatch):
    # A stand-in ffmpeg that never finishes: load_audio must give up after the timeout, not hang.
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    path = tmp_path / "voice.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    assert "took longer" in refused(path, limits=AudioLimits(ffmpeg_timeout_s=0.5))


@pytest.mark.parametrize("bad", [None, "", "  ", (16000, None), (0, np.zeros(16000)), (16000,),
                                 np.array(["a", "b"]), np.zeros((2, 3, 16000))])
def test_malformed_inputs(bad):
    refused(bad)


def test_nan_samples_are_refused():
    x = tone(300, 1.0, SAMPLE_RATE)
    x[100] = np.nan
    assert "NaN" in refused(x)


def test_loudness_normalisation_makes_the_speech_level_gain_free():
    """The same speech at -45 and -15 dBFS comes out at one level, pauses not counted."""
    from amber2.audio import LOUDNESS_DBFS, loud_frames_rms, normalize_loudness

    rng = np.random.default_rng(0)
    speech = np.concatenate([np.zeros(8000), rng.normal(0, 1, 16000), np.zeros(8000)]).astype(np.float32)
    quiet, loud = speech * 10 ** (-45 / 20), speech * 10 ** (-15 / 20)
    a, b = normalize_loudness(quiet), normalize_loudness(loud)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    assert 20 * np.log10(loud_frames_rms(a)) == pytest.approx(LOUDNESS_DBFS, abs=0.01)
    assert a.dtype == np.float32


def test_loudness_normalisation_never_blows_up_silence():
    from amber2.audio import MAX_GAIN_DB, normalize_loudness

    assert not normalize_loudness(np.zeros(16000, np.float32)).any()
    tiny = np.full(16000, 1e-9, np.float32)
    assert np.abs(normalize_loudness(tiny)).max() <= 1e-9 * 10 ** (MAX_GAIN_DB / 20) * 1.0001
