"""Where amber2 keeps its files, and how it writes them: whole or not at all.

Every cache (converted Whisper checkpoints, unpacked text encoders, feature shards, the demo corpus, protocol
state) lives under one root, `$AMBER2_CACHE` (default `~/.cache/amber2`). Every file another process may read
while it is being written (fold results, reports, shards, checkpoints) is written to a temporary file in the
same folder and renamed into place, which POSIX makes atomic: a reader, or a run resumed after a crash, sees
no file or the whole file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

# The checkout: its bundled assets (demo model, examples, check sets) and, beside it, the shared corpora
# (read-only, never copied into the project). Every module finds them here.
ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
DEFAULT_MODEL = ASSETS / "amber2-demo"     # the bundled demo checkpoint
SHARED_ENV = "AMBER2_SHARED"
SHARED = Path(os.environ.get(SHARED_ENV) or ROOT.parent / "shared")
CACHE_ENV = "AMBER2_CACHE"
DATA_ENV = "AMBER2_DATA"
# Hugging Face Spaces mounts a Space's persistent storage (when enabled) here; the rest of a Space is wiped on restart.
SPACES_PERSISTENT = Path("/data")


def cache_root() -> Path:
    """`$AMBER2_CACHE`, default `~/.cache/amber2` (read on every call, so tests and users can redirect it)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "amber2")


def data_root() -> Path:
    """Where the app keeps what users make (Vote together rooms and votes): `$AMBER2_DATA`; else a Space's
    persistent storage when it is mounted; else `<cache_root()>/data`."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    if os.environ.get("SPACE_ID") and SPACES_PERSISTENT.is_dir() and os.access(SPACES_PERSISTENT, os.W_OK):
        return SPACES_PERSISTENT / "amber2"
    return cache_root() / "data"


def atomic_write(path: str | Path, write: Callable[[Path], None], mode: int = 0o644) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it to `path`; returns `path`.

    The folder is created if needed; on any error the temporary file is removed and `path` is untouched.
    `mode` sets the file's permissions (mkstemp would leave it private to its owner; the default is an
    ordinary file's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`path` holding `text` (UTF-8), written atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
