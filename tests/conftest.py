"""Shared test fixtures: where the real data lies, and speech synthesised at test time."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
from amber2.files import SHARED

RAVDESS = SHARED / "data" / "ravdess"
EMOTIONLINES = SHARED / "data" / "emotionlines"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED} (set AMBER2_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def ravdess_clip(shared_dir: Path) -> Path:
    """An angry, strong-intensity RAVDESS clip saying 'Kids are talking by the door'."""
    return RAVDESS / "Actor_01" / "03-01-05-02-01-01-01.flac"


def synthesize(text: str, path: Path, voice: str = "en-us", speed: int = 150) -> Path:
    """Speak `text` into a WAV file with espeak-ng (a flat, emotionless voice)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (make test installs it: scripts/system-deps.sh)")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


@pytest.fixture
def speak(tmp_path: Path):
    """Factory: speak(text) -> path of a WAV file made with espeak-ng."""
    counter = iter(range(10**6))

    def _speak(text: str, **kw) -> Path:
        return synthesize(text, tmp_path / f"speech_{next(counter)}.wav", **kw)

    return _speak


@pytest.fixture
def one_thread():
    """Training tests run on one thread: with tiny matmuls on a shared 2-core CPU, intra-op thread hand-offs
    cost more than the arithmetic."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
