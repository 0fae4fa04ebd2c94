"""Cached, resumable utterance embeddings for training.

Every vector is stored on disk under a key made of the encoder's name and a hash of its input: the sha1 of
the audio file's bytes for the audio encoder, the sha1 of the transcript's UTF-8 bytes for the text encoder.
Re-running an extraction therefore costs only the hashing, a renamed copy of a clip is found in the cache,
and an edited clip is re-embedded.

The cache is a folder of small ``.npz`` shards, one written per finished batch. Each shard is written to a
temporary file and renamed into place (``os.replace`` is atomic), so an interrupted run leaves only whole
shards behind and the next run resumes after the last finished batch. Shards are merged once an extraction
completes, so the folder stays small.

The audio vectors come from the audio encoder's own ``embed`` (e.g. ``whisper-base/L3-meanstd``: Whisper's
blocks 1-3 on the clip's own frames, mean and std over time) applied to ``amber2.audio.load_audio`` output:
what the app computes at inference time. Clips are embedded in order of file size, so a batch holds clips of
similar length.

Under a launcher (`train.distributed`) every process hashes every item, the batches of missing vectors are
planned once (the same plan a single process would follow) and dealt across the processes; each writes only
its own batches' shards, then all wait until every vector is in the cache and read the others' shards. A
batch holds the same clips whichever process embeds it, so the vectors equal a one-process extraction's.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Protocol, Sequence

import numpy as np

from amber2.errors import UserError
from amber2.files import atomic_write

if TYPE_CHECKING:
    from train.distributed import Group

log = logging.getLogger(__name__)

# Bump when the way vectors are computed changes, so old caches are not mixed with new vectors.
CACHE_VERSION = 1
# Merge shards once an extraction has left more than this many in one encoder's folder.
COMPACT_ABOVE = 8
# Leftover temporary files older than this (seconds) come from a killed run and are removed.
STALE_TMP_SECONDS = 3600


class Embedder(Protocol):
    """What an amber2 audio or text encoder offers (amber2.encoders)."""

    name: str
    dim: int

    def embed(self, inputs: list) -> np.ndarray: ...


class LazyEncoder:
    """An encoder loaded on its first ``embed``: a run whose vectors are all cached never loads the model.

    ``dim`` is taken from ``known_dim`` when given (the encoder tables of amber2.encoders), else it loads.
    """

    def __init__(self, name: str, load: Callable[[], Embedder], known_dim: int | None = None):
        self.name, self._load, self._known_dim = name, load, known_dim
        self._encoder: Embedder | None = None

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def encoder(self) -> Embedder:
        if self._encoder is None:
            self._encoder = self._load()
            if self._known_dim is not None and self._encoder.dim != self._known_dim:
                raise FeatureError(f"encoder {self.name!r} gives {self._encoder.dim}-d vectors, "
                                   f"expected {self._known_dim}")
        return self._encoder

    @property
    def dim(self) -> int:
        return self._known_dim if self._known_dim is not None else self.encoder().dim

    def embed(self, inputs: list) -> np.ndarray:
        return self.encoder().embed(inputs)


class FeatureError(UserError, RuntimeError):
    """Feature extraction cannot go on (e.g. every item was skipped); the message is for a person."""


class Features(tuple):
    """The ``(audio, text)`` pair of the contract, plus which items made it.

    Unpacks as ``audio, text = extract_features(...)``. ``kept`` holds the indices (into the items passed in)
    of the rows, in order; ``skipped`` maps the id of each item left out to the reason.
    """

    audio: np.ndarray
    text: np.ndarray
    kept: list[int]
    ids: list[str]
    skipped: dict[str, str]

    def __new__(cls, audio: np.ndarray, text: np.ndarray, kept: list[int], ids: list[str],
                skipped: dict[str, str]) -> "Features":
        self = super().__new__(cls, (audio, text))
        self.audio, self.text, self.kept, self.ids, self.skipped = audio, text, kept, ids, skipped
        return self

    def __getnewargs__(self):  # pickling a tuple subclass with extra attributes
        return (self.audio, self.text, self.kept, self.ids, self.skipped)


def sha1_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha1 of a file's bytes."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha1_text(text: str) -> str:
    """Hex sha1 of a string's UTF-8 bytes."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _folder_name(encoder_name: str) -> str:
    # Encoder names may be paths ("wav2vec2:/some/dir"): keep a readable stem, and a hash so two names never
    # share a folder.
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder_name)[:60]
    return f"{stem}-{sha1_text(encoder_name)[:8]}"


class ShardCache:
    """Vectors of one encoder and one input kind, keyed by content hash, stored as atomic npz shards."""

    def __init__(self, root: Path, kind: str, encoder_name: str, dim: int):
        self.dir = Path(root) / f"v{CACHE_VERSION}" / kind / _folder_name(encoder_name)
        self.encoder_name, self.dim = encoder_name, int(dim)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._clean_stale_tmp()
        self.vectors: dict[str, np.ndarray] = {}
        self._shards: list[Path] = []
        self._written: list[Path] = []   # shards this object wrote, and their keys
        self._written_keys: list[str] = []
        self.refresh()

    def refresh(self) -> None:
        """Read the shards that appeared since this cache was last read (other processes' batches)."""
        known = set(self._shards)
        for shard in sorted(self.dir.glob("shard-*.npz")):
            if shard in known:
                continue
            loaded = self._read(shard)
            if loaded is not None:
                self._shards.append(shard)
                self.vectors.update(loaded)

    def _clean_stale_tmp(self) -> None:
        now = time.time()
        for tmp in self.dir.glob(".*.tmp"):
            try:
                if now - tmp.stat().st_mtime > STALE_TMP_SECONDS:
                    tmp.unlink()
            except OSError:
                pass  # another process may have just renamed or removed it

    def _read(self, shard: Path) -> dict[str, np.ndarray] | None:
        if not shard.exists():
            return None   # merged away by a concurrent compaction; its vectors are in the merged shard
        try:
            with np.load(shard, allow_pickle=False) as z:
                keys, vecs, name = z["keys"], z["vectors"], str(z["encoder"])
            if name != self.encoder_name or vecs.ndim != 2 or vecs.shape[1] != self.dim \
                    or len(keys) != len(vecs):
                raise ValueError(f"holds {name!r} vectors of shape {vecs.shape}, "
                                 f"expected {self.encoder_name!r} with {self.dim} columns")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            # Atomic writes make this unlikely; a damaged shard is set aside (not deleted: it may be evidence)
            # and its vectors are simply computed again.
            log.warning("feature cache shard %s is unreadable (%s); ignoring it", shard, exc)
            try:
                shard.rename(shard.with_suffix(".corrupt"))
            except OSError:
                pass
            return None
        return {str(k): v for k, v in zip(keys, vecs.astype(np.float32, copy=False))}

    def missing(self, keys: Iterable[str]) -> list[str]:
        """Unique keys not cached yet, in first-seen order."""
        return [k for k in dict.fromkeys(keys) if k not in self.vectors]

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> Path:
        """Store a finished batch as one shard, atomically."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(keys), self.dim):
            raise FeatureError(f"encoder {self.encoder_name!r} returned vectors of shape {vectors.shape} "
                               f"for {len(keys)} inputs; expected ({len(keys)}, {self.dim})")
        shard = self._write(list(keys), vectors)
        self._shards.append(shard)
        self._written.append(shard)
        self._written_keys += keys
        self.vectors.update(zip(keys, vectors))
        return shard

    def _write(self, keys: list[str], vectors: np.ndarray) -> Path:
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.npz"

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, keys=np.array(keys, dtype=str), vectors=vectors, encoder=np.array(self.encoder_name))
                f.flush()
                os.fsync(f.fileno())   # the shard is whole on disk before its name appears

        return atomic_write(self.dir / name, write)

    def compact(self) -> None:
        """Merge this process's view of the shards into one, then remove the merged ones."""
        if len(self._shards) <= COMPACT_ABOVE:
            return
        keys = list(self.vectors)
        merged = self._write(keys, np.stack([self.vectors[k] for k in keys]))
        for shard in self._shards:
            try:
                shard.unlink()
            except FileNotFoundError:
                pass  # a concurrent run compacted it already; its vectors are in `merged` anyway
        self._shards, self._written, self._written_keys = [merged], [], []

    def compact_written(self) -> None:
        """Merge the shards this object wrote into one (no other process reads them yet: see extract_features)."""
        if len(self._written) <= 1:
            return
        keys = list(dict.fromkeys(self._written_keys))
        merged = self._write(keys, np.stack([self.vectors[k] for k in keys]))
        for shard in self._written:
            shard.unlink(missing_ok=True)
        self._shards = [s for s in self._shards if s not in self._written] + [merged]
        self._written, self._written_keys = [merged], keys


@dataclass
class _Pending:
    """Audio items waiting for their vectors: the cache key and where to read the audio from."""

    key: str
    path: Path
    item_ids: list[str]


def _default_loader() -> Callable[[Path], np.ndarray]:
    from amber2.audio import load_audio

    return load_audio


def _audio_errors() -> tuple[type[BaseException], ...]:
    from amber2.audio import AudioError

    return (AudioError, OSError)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _batches(seq: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(seq), size):
        yield seq[start:start + size]


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="clip" if "audio" in desc else "text",
                disable=not enabled or total == 0, dynamic_ncols=True)


def extract_features(corpus_items: Sequence, audio_encoder: Embedder, text_encoder: Embedder,
                     cache_dir: str | Path, batch_size: int = 8, progress: bool = True,
                     load_audio: Callable[[Path], np.ndarray] | None = None, group: "Group | None" = None) -> Features:
    """Embed every item's audio file and transcript, reusing and extending the on-disk cache.

    ``corpus_items`` are ``train.datasets.Item``s (anything with ``id``, ``audio`` and ``transcript``).
    Items whose audio is missing or unreadable are logged (id + reason), left out of the arrays and listed in
    ``Features.skipped``; they are not cached, so a fixed file is picked up next time. ``load_audio`` defaults to
    ``amber2.audio.load_audio`` (what the app uses). ``group`` (``train.distributed.start``) shares the work
    among the processes of a launch; every process then gets the whole result. Returns ``Features`` (unpacks
    to ``(audio, text)``, float32 arrays of shapes (N, audio_encoder.dim) and (N, text_encoder.dim)).
    """
    from train.distributed import SINGLE

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    group = group or SINGLE
    loader = load_audio or _default_loader()
    errors = _audio_errors()
    skipped: dict[str, str] = {}

    audio_cache = ShardCache(Path(cache_dir), "audio", audio_encoder.name, audio_encoder.dim)
    text_cache = ShardCache(Path(cache_dir), "text", text_encoder.name, text_encoder.dim)

    audio_keys: dict[str, str] = {}   # item id -> audio cache key
    pending: dict[str, _Pending] = {}
    hashed: dict[Path, str] = {}      # many items may share one clip (the demo's flat-voice pool)
    for item in corpus_items:
        if item.audio is None:
            skipped[item.id] = "no audio file"
            continue
        try:
            path = Path(item.audio)
            key = hashed[path] if path in hashed else hashed.setdefault(path, sha1_file(path))
        except OSError as exc:
            skipped[item.id] = f"cannot read {item.audio}: {exc.strerror or exc}"
            continue
        audio_keys[item.id] = key
        if key not in audio_cache.vectors:
            pending.setdefault(key, _Pending(key, Path(item.audio), [])).item_ids.append(item.id)

    # Similar lengths side by side (file size as the cheap proxy): encoders that pad a batch to its longest
    # clip waste less.
    order = sorted(pending.values(), key=lambda p: (p.path.suffix, _size(p.path)))
    batches = list(_batches(order, batch_size))
    # Every process has read the cache (so all plan the same batches) before any of them writes to it.
    group.wait("features-plan")
    mine = group.deal(batches)
    log.info("audio features (%s): %d of %d clips cached, %d to embed%s", audio_encoder.name,
             len(set(audio_keys.values())) - len(pending), len(set(audio_keys.values())), len(pending),
             f" ({sum(map(len, mine))} by rank {group.rank})" if group.world > 1 else "")
    _embed_audio(mine, audio_encoder, audio_cache, loader, errors, progress, skipped, group.check)
    if group.world > 1:
        audio_cache.compact_written()
        reasons = {k: v for share in group.wait("features-audio", skipped) for k, v in share.items()}
        skipped = {item.id: reasons[item.id] for item in corpus_items if item.id in reasons}
        audio_cache.refresh()
    for item_id in skipped:
        audio_keys.pop(item_id, None)

    kept = [i for i, item in enumerate(corpus_items) if item.id in audio_keys]
    text_keys = {corpus_items[i].id: sha1_text(corpus_items[i].transcript or "") for i in kept}
    _embed_text(corpus_items, kept, text_keys, text_encoder, text_cache, batch_size, progress, group)
    if group.world > 1:
        text_cache.compact_written()
        group.wait("features-text")
        text_cache.refresh()
    else:   # with several processes, others may still be reading the shards compaction would remove
        audio_cache.compact()
        text_cache.compact()

    for item_id, reason in skipped.items():
        log.warning("skipped %s: %s", item_id, reason)
    if not kept:
        raise FeatureError(f"no usable item among {len(corpus_items)}: every audio file was missing or "
                           f"unreadable (first: {next(iter(skipped.items()), ('-', '-'))})")
    ids = [corpus_items[i].id for i in kept]
    lost = [i for i in ids if audio_keys[i] not in audio_cache.vectors or text_keys[i] not in text_cache.vectors]
    if lost:   # only when processes do not see one cache folder
        raise FeatureError(f"{len(lost)} item(s) have no vector after every process finished (first: {lost[0]}); "
                           f"is {cache_dir} on a filesystem every process shares?")
    audio = np.stack([audio_cache.vectors[audio_keys[i]] for i in ids]).astype(np.float32, copy=False)
    text = np.stack([text_cache.vectors[text_keys[i]] for i in ids]).astype(np.float32, copy=False)
    return Features(audio, text, kept, ids, skipped)


def _embed_audio(batches: list[Sequence[_Pending]], encoder: Embedder, cache: ShardCache,
                 loader: Callable[[Path], np.ndarray], errors: tuple[type[BaseException], ...],
                 progress: bool, skipped: dict[str, str], check: Callable[[], None]) -> None:
    with _progress(sum(map(len, batches)), f"audio features ({encoder.name})", progress) as bar:
        for batch in batches:
            check()
            keys, signals = [], []
            for p in batch:
                try:
                    signals.append(loader(p.path))
                    keys.append(p.key)
                except errors as exc:
                    for item_id in p.item_ids:
                        skipped[item_id] = f"unreadable audio {p.path}: {exc}"
            if signals:
                cache.put(keys, encoder.embed(signals))
            bar.update(len(batch))


def _embed_text(items: Sequence, kept: list[int], text_keys: dict[str, str], encoder: Embedder,
                cache: ShardCache, batch_size: int, progress: bool, group: "Group") -> None:
    by_key = {text_keys[items[i].id]: items[i].transcript or "" for i in kept}
    missing = cache.missing(by_key)
    # Text is cheap to embed and benefits from bigger batches; the batch size caps audio memory, not this.
    mine = group.deal(list(_batches(missing, max(batch_size, 64))))
    with _progress(sum(map(len, mine)), f"text features ({encoder.name})", progress) as bar:
        for keys in mine:
            group.check()
            cache.put(keys, encoder.embed([by_key[k] for k in keys]))
            bar.update(len(keys))
