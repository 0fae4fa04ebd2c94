"""Any audio a user gives -> 16 kHz mono float32, or an `AudioError` a person can read.

Accepted sources: a file path (WAV, FLAC, MP3, OGG/Opus, AIFF through soundfile; M4A, WebM, MP4 and anything
else ffmpeg decodes through the ffmpeg binary), a numpy array (or anything array-like, e.g. a torch tensor),
or gradio's `(sample_rate, array)` tuple. Integer samples are scaled to [-1, 1], channels are averaged, and
the rate is converted with `torchaudio.functional.resample`.
"""
from __future__ import annotations

import math
import os
import re
import signal
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
# Whisper's audio constants, named once for the whole package: SAMPLE_RATE (16 kHz, what every audio encoder
# expects), N_FFT / HOP_LENGTH (25 ms mel frames every 10 ms), N_SAMPLES / N_FRAMES (one 30 s encoder window,
# in samples and in mel frames), N_SAMPLES_PER_TOKEN (320 samples: one encoder frame, after its stride 2).
from whisper.audio import HOP_LENGTH, N_FFT, N_FRAMES, N_SAMPLES, N_SAMPLES_PER_TOKEN, SAMPLE_RATE  # noqa: F401

from amber2.errors import UserError

MAX_CHANNELS = 8     # a 2-D array with at most this many rows/columns on one axis is read as channels

AudioSource = Union[str, Path, np.ndarray, tuple]


class AudioError(UserError, ValueError):
    """Audio that cannot be used; the message is shown to a person as is."""


class NotAudio(AudioError):
    """The file cannot be read as audio at all (missing, empty, damaged, not audio, no audio track)."""


class AudioTooLong(AudioError):
    """Audio longer than the limit (`AudioLimits.max_seconds`): a caller may offer the timeline instead."""


@dataclass
class AudioLimits:
    """What `load_audio` accepts. Silence is judged on the peak level after removing any DC offset: a clip
    whose loudest sample stays below `silence_dbfs` (decibels relative to full scale) holds no usable sound.
    The peak rather than the RMS is used so that quiet speech with long pauses is never refused."""

    max_seconds: float = 60.0
    min_seconds: float = 0.3
    silence_dbfs: float = -50.0
    ffmpeg_timeout_s: float = 30.0  # decoding never hangs: ffmpeg is killed after this long


def load_audio(source: AudioSource, sr: int | None = None, limits: AudioLimits = AudioLimits()) -> np.ndarray:
    """16 kHz mono float32 samples of `source`.

    `sr` is the sample rate of a bare array (default 16 kHz); files and gradio tuples carry their own rate,
    so `sr` is ignored for them. Raises `AudioError` with a plain sentence for anything unusable: missing,
    empty or unreadable files, non-audio files, clips shorter than `limits.min_seconds` or longer than
    `limits.max_seconds`, and silence.
    """
    if source is None or (isinstance(source, str) and not source.strip()):
        raise AudioError("No audio was given.")
    if isinstance(source, (str, Path)):
        samples, rate = _read_file(Path(source), limits)
    elif isinstance(source, tuple):
        samples, rate = _from_tuple(source)
    else:
        samples, rate = _as_array(source, "The audio"), _check_rate(SAMPLE_RATE if sr is None else sr)
    samples = _to_mono_float(samples)
    _check(samples, rate, limits)
    if rate != SAMPLE_RATE:
        # np.require copies only a read-only array (torch refuses to wrap those without a warning)
        samples = AF.resample(torch.from_numpy(np.require(samples, requirements="W")), rate, SAMPLE_RATE).numpy()
    return np.ascontiguousarray(samples, dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------
# Sources


def unreadable(path: str | Path) -> str | None:
    """Why the file cannot be read as audio (`NotAudio`'s message), or None when it can: a file that is merely
    too long, too short or silent is audio. Decodes at most its first seconds."""
    try:
        load_audio(path, limits=AudioLimits(max_seconds=1.0))
    except NotAudio as err:
        return str(err)
    except AudioError:
        return None
    return None


def _from_tuple(source: tuple) -> tuple[np.ndarray, int]:
    """gradio's `gr.Audio(type="numpy")` value: (sample_rate, int16 array of shape (n,) or (n, channels))."""
    if len(source) != 2:
        raise AudioError("Audio given as a pair must be (sample_rate, samples).")
    rate, samples = source
    if samples is None:
        raise AudioError("No audio was given.")
    return _as_array(samples, "The audio"), _check_rate(rate)


def _check_rate(rate: object) -> int:
    whole = isinstance(rate, (int, np.integer)) or (isinstance(rate, (float, np.floating)) and float(rate).is_integer())
    if isinstance(rate, (bool, np.bool_)) or not whole or rate <= 0:
        raise AudioError(f"The sample rate must be a positive whole number of hertz, not {rate!r}.")
    return int(rate)


def _as_array(samples: object, what: str) -> np.ndarray:
    if hasattr(samples, "detach"):  # a torch tensor
        samples = samples.detach().cpu().numpy()
    try:
        array = np.asarray(samples)
    except (TypeError, ValueError) as err:
        raise AudioError(f"{what} is not a list of samples ({type(samples).__name__}).") from err
    if array.dtype.kind not in "iuf":
        raise AudioError(f"{what} must hold numbers (integer or floating-point samples), not {array.dtype}.")
    return array


def _read_file(path: Path, limits: AudioLimits) -> tuple[np.ndarray, int]:
    if not path.exists():
        raise NotAudio(f"The file {path.name} does not exist.")
    if not path.is_file():
        raise NotAudio(f"{path.name or path} is a folder, not an audio file.")
    if path.stat().st_size == 0:
        raise NotAudio(f"The file {path.name} is empty.")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):  # a format libsndfile does not know (M4A, WebM, ...)
        return _read_with_ffmpeg(path, limits)
    if info.samplerate > 0 and info.frames / info.samplerate > limits.max_seconds:
        # Refuse before reading: a long file would otherwise be decoded into memory just to be rejected.
        raise AudioTooLong(_too_long(info.frames / info.samplerate, limits))
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise NotAudio(f"{path.name} looks like audio but could not be decoded ({err}).") from err
    return samples, rate


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")


def _read_with_ffmpeg(path: Path, limits: AudioLimits) -> tuple[np.ndarray, int]:
    """Decode with the ffmpeg binary straight to 16 kHz mono float32 (ffmpeg averages the channels)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise NotAudio(f"{path.name} is not a WAV, FLAC, MP3 or OGG file, and reading other formats "
                         "needs ffmpeg, which is not installed.")
    # Decode at most a little past the limit so a 3-hour file costs no more than a 61 s one.
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-i", str(path), "-vn", "-t", f"{limits.max_seconds + 1:.3f}",
           "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-"]
    returncode, stdout, log = _run_with_timeout(cmd, limits.ffmpeg_timeout_s, path.name)
    if returncode != 0 or not stdout:
        no_track = returncode == 0 or "does not contain any stream" in log or "matches no streams" in log
        reason = "it holds no audio track" if no_track else "it is not an audio file, or it is damaged"
        raise NotAudio(f"{path.name} could not be read as audio: {reason}.")
    samples = np.frombuffer(stdout, dtype="<f4").copy()
    if len(samples) / SAMPLE_RATE > limits.max_seconds:
        match = _DURATION.search(log)
        full = (int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])) if match else None
        raise AudioTooLong(_too_long(full, limits))
    return samples, SAMPLE_RATE


def _run_with_timeout(cmd: list[str], timeout: float, name: str) -> tuple[int, bytes, str]:
    """(return code, stdout, stderr text) of `cmd`; after `timeout` seconds its whole process group is
    killed (a plain kill could leave a child holding the pipes open, and reading them would then hang)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as err:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AudioError(f"Decoding {name} took longer than {timeout:g} s; the file may be damaged.") from err
    return proc.returncode, stdout, stderr.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------------------
# Samples


_INT_SCALE = {np.dtype(np.int8): 2.0**7, np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31,
              np.dtype(np.int64): 2.0**63}


def _to_mono_float(samples: np.ndarray) -> np.ndarray:
    """(n,), (n, channels) or (channels, n) samples of any numeric type -> (n,) float32 in [-1, 1] scale."""
    if samples.dtype.kind == "f":
        floats = samples.astype(np.float32, copy=False)
    elif samples.dtype.kind == "i":
        floats = (samples / _INT_SCALE[samples.dtype]).astype(np.float32)
    else:  # unsigned PCM is centred on half its range (8-bit WAV)
        half = 2.0 ** (8 * samples.dtype.itemsize - 1)
        floats = ((samples - half) / half).astype(np.float32)
    if floats.ndim == 2:
        # soundfile and gradio give (n, channels); torchaudio gives (channels, n).
        channel_axis = 1 if floats.shape[1] <= MAX_CHANNELS or floats.shape[1] <= floats.shape[0] else 0
        floats = floats.mean(axis=channel_axis, dtype=np.float32)
    elif floats.ndim != 1:
        raise AudioError(f"Audio must be one or two dimensional (samples, or samples x channels); "
                         f"got shape {samples.shape}.")
    if not np.all(np.isfinite(floats)):
        raise AudioError("The audio contains invalid samples (NaN or infinity).")
    return floats


def _too_long(seconds: float | None, limits: AudioLimits) -> str:
    length = f"{_duration(seconds)} long" if seconds is not None else "too long"
    return f"The recording is {length}; the limit is {_duration(limits.max_seconds)}. Please trim it."


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s" if seconds % 1 else f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def peak_dbfs(samples: np.ndarray) -> float:
    """Peak level in dB relative to full scale (1.0), after removing the DC offset; -inf for silence."""
    if samples.size == 0:
        return -math.inf
    peak = float(np.max(np.abs(samples - samples.mean(dtype=np.float64))))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def silence_message(level: float, limits: AudioLimits) -> str:
    """The refusal of a silent clip in a visitor's words; the decibels only in parentheses at the end."""
    measured = "only digital silence" if level == -math.inf else f"loudest moment {level:.0f} dBFS"
    return ("The recording is silent: the microphone picked up no sound loud enough to be speech. Check that "
            "the right microphone is chosen and not muted, speak closer to it, and try again "
            f"({measured}; the limit is {limits.silence_dbfs:g} dBFS).")


def _check(samples: np.ndarray, rate: int, limits: AudioLimits) -> None:
    if samples.size == 0:
        raise AudioError("The audio contains no samples.")
    seconds = samples.size / rate
    if seconds > limits.max_seconds:
        raise AudioTooLong(_too_long(seconds, limits))
    if seconds < limits.min_seconds:
        raise AudioError(f"The recording is only {seconds:.2f} s long; at least {limits.min_seconds:g} s "
                         "of speech is needed.")
    level = peak_dbfs(samples)
    if level < limits.silence_dbfs:
        raise AudioError(silence_message(level, limits))


# A clip's level says more about the microphone and the studio than about the speaker (RAVDESS's neutral clips
# sit near -47 dBFS and its angry ones near -30; nEMO is normalised to about -23 for every emotion), so the
# voice features see every clip at one speech level.
LOUDNESS_DBFS = -20.0
MAX_GAIN_DB = 60.0        # never amplify near-silence into full scale


def frame_energy(samples: np.ndarray) -> np.ndarray:
    """Mean square of each 25 ms frame, one every 10 ms (Whisper's mel frames): frame i starts at sample
    i * HOP_LENGTH."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP_LENGTH]
    # In blocks of a minute: squaring a 10-minute file's frames at once would take 190 MB.
    block = 60 * SAMPLE_RATE // HOP_LENGTH
    return np.concatenate([np.mean(frames[i:i + block] ** 2, axis=1) for i in range(0, len(frames), block)])


def loud_frames_rms(samples: np.ndarray) -> float:
    """RMS over the louder half of the 25 ms frames (10 ms hop, Whisper's mel frames): the speech level,
    ignoring pauses."""
    energy = frame_energy(samples)
    return float(np.sqrt(np.mean(energy[energy >= np.median(energy)])))


def normalize_loudness(samples: np.ndarray, target_dbfs: float = LOUDNESS_DBFS) -> np.ndarray:
    """`samples` scaled so that `loud_frames_rms` is `target_dbfs` (gain capped at MAX_GAIN_DB); float32."""
    level = loud_frames_rms(samples)
    gain = 10 ** (target_dbfs / 20) / level if level > 0 else 1.0
    return (np.asarray(samples, dtype=np.float32) * np.float32(min(gain, 10 ** (MAX_GAIN_DB / 20))))
