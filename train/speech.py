"""Sentences spoken by espeak-ng, a flat synthetic voice that carries no emotion: the demo corpus's voices
for its word items and the fused check's voices outside that pool. Each clip is cached by its words and
voice, and written atomically.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from amber2.errors import UserError
from amber2.files import atomic_write
from train.features import sha1_text

ESPEAK_TIMEOUT_S = 30.0
# EmotionLines' Windows-1252 punctuation, should it arrive as raw C1 control characters, read as ASCII
# (train.datasets already repairs it to typographic quotes, which espeak-ng reads correctly). Changing this
# table changes the spoken audio, hence the feature cache keys.
_SPEAKABLE = str.maketrans({"\u0091": "'", "\u0092": "'", "\u0093": '"', "\u0094": '"', "\u0085": "...",
                            "\u0096": "-", "\u0097": "-"})


class SpeechError(UserError, RuntimeError):
    """espeak-ng is missing, failed or hung; the message says which sentence."""


def speakable(text: str) -> str:
    """The transcript as espeak-ng should read it (C1 punctuation as ASCII, spaces collapsed)."""
    return " ".join(text.translate(_SPEAKABLE).split())


def synthesize(text: str, directory: Path, voice: str = "en-us", words_per_minute: int = 150,
               pitch: int = 50) -> Path:
    """Speak ``text`` with espeak-ng into a cached WAV (written atomically); returns its path."""
    if shutil.which("espeak-ng") is None:
        raise SpeechError("espeak-ng is not installed; install it (scripts/system-deps.sh or "
                          "`apt-get install espeak-ng`) to synthesise speech")
    spoken = speakable(text)
    # espeak-ng's default pitch (50) keeps the cache key it had before pitch was a parameter
    key = f"{voice}|{words_per_minute}|{spoken}" if pitch == 50 else f"{voice}|{words_per_minute}|p{pitch}|{spoken}"
    path = Path(directory) / f"{sha1_text(key)}.wav"
    if path.exists():
        return path

    def speak(tmp: Path) -> None:
        # "--" keeps an utterance starting with "-" from being read as an option
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-p", str(pitch), "-w", str(tmp),
                        "--", spoken],
                       check=True, capture_output=True, timeout=ESPEAK_TIMEOUT_S)

    try:
        return atomic_write(path, speak)
    except subprocess.TimeoutExpired as exc:
        raise SpeechError(f"espeak-ng took longer than {ESPEAK_TIMEOUT_S:.0f} s on {spoken[:60]!r}") from exc
    except subprocess.CalledProcessError as exc:
        raise SpeechError(f"espeak-ng failed on {spoken[:60]!r}: {exc.stderr.decode(errors='replace')}") from exc
