"""The `Corpus` of `Item`s every loader returns, how folds are drawn, and the helpers loaders share.

A loader reads raw rater labels and hands them to a `Collector`, which counts them in one `LabelSpace`
(`LabelSpace.count_votes`: labels outside the space are dropped, renormalisation happens later in
`votes_to_distribution`), excludes items left with no vote (counted in `Corpus.skipped`) and names the reason
when nothing is left. Every problem with the files is a `DatasetError` naming the file and what was expected.

Folds: a corpus's own (IEMOCAP sessions, a votes CSV's fold column), five equal stratified folds
(MSP-Podcast, paper Section 4.2), or folds by group (actor / dialogue / speaker / comment) so that no group
straddles two folds.
"""
from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from amber2.errors import UserError
from amber2.labels import LabelSpace, entropy, get_space

DEFAULT_FOLDS = 5
CLIP_SUFFIXES = (".flac", ".wav")

# Keys of Corpus.skipped (items excluded, by reason).
SKIP_NO_VOTE = "no_vote_in_space"        # every rater label fell outside the label space
SKIP_NO_ANNOTATION = "no_annotation"     # the item has no rater label at all
SKIP_NO_TRANSCRIPT = "missing_transcript"
SKIP_NO_AUDIO = "missing_audio"
SKIP_NOT_SPEECH = "not_speech"           # RAVDESS song clips (vocal channel 02)


class DatasetError(UserError, ValueError):
    """A corpus folder or file that cannot be read as expected; the message is meant for a person."""


@dataclass
class Item:
    """One utterance: where its audio is, what was said, and how many raters chose each class."""

    id: str
    audio: Path | None
    transcript: str
    votes: np.ndarray      # (C,) vote counts in the corpus label space
    fold: int | None       # given by the corpus (IEMOCAP session) or assigned
    group: str             # speaker / dialogue: validation splits never cut a group


@dataclass
class Corpus:
    """Items sharing one label space; `skipped` counts excluded items by reason, `dropped_votes` the rater labels
    of kept items that fell outside the space (e.g. IEMOCAP frustration in iemocap4)."""

    name: str
    space: LabelSpace
    items: list[Item]
    skipped: dict[str, int] = field(default_factory=dict)
    dropped_votes: int = 0

    def votes(self) -> np.ndarray:
        """(N, C) vote counts of all items."""
        return np.stack([it.votes for it in self.items]) if self.items else np.zeros((0, len(self.space.classes)))

    def distributions(self) -> np.ndarray:
        """(N, C) soft labels (Eq. 1) of all items."""
        v = self.votes()
        return v / np.maximum(v.sum(axis=1, keepdims=True), 1e-12)


@dataclass
class SplitOptions:
    """What the options of every corpus without folds of its own hold: its label space and how folds are drawn.
    Each such corpus's options subclass this, giving its own default space."""

    space: str | None = None
    n_folds: int = DEFAULT_FOLDS
    seed: int = 0


# ----------------------------------------------------------------------------------------------------------
# Folds


def _seeded_key(seed: int, key: str) -> str:
    """A stable pseudo-random sort key (Python's hash() is salted per process)."""
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


def assign_group_folds(groups: list[str], n_folds: int = DEFAULT_FOLDS, seed: int = 0) -> list[int]:
    """Fold of each item such that a group never spans two folds and folds hold about equal item counts.

    Greedy: groups from largest to smallest (ties broken by a seeded hash) each go to the fold with the fewest
    items so far. Deterministic given (groups, n_folds, seed).
    """
    if n_folds < 2:
        raise DatasetError(f"n_folds must be at least 2, got {n_folds}")
    sizes = Counter(groups)
    if len(sizes) < n_folds:
        raise DatasetError(f"cannot make {n_folds} folds from {len(sizes)} group(s): need at least one group "
                           f"per fold")
    order = sorted(sizes, key=lambda g: (-sizes[g], _seeded_key(seed, g)))
    load = [0] * n_folds
    fold_of: dict[str, int] = {}
    for g in order:
        f = min(range(n_folds), key=lambda k: (load[k], k))
        fold_of[g] = f
        load[f] += sizes[g]
    return [fold_of[g] for g in groups]


def assign_stratified_folds(ids: list[str], votes: np.ndarray, n_folds: int = DEFAULT_FOLDS,
                            seed: int = 0) -> list[int]:
    """Equal-sized folds (sizes differ by at most one) balanced in majority class and ambiguity.

    Items are ordered by (majority class, entropy of their soft label, seeded hash of the id) and dealt
    round-robin, so each fold receives every class and every ambiguity level in the same proportion; groups
    are deliberately ignored (the paper's MSP-Podcast folds, Section 4.2).
    """
    if n_folds < 2:
        raise DatasetError(f"n_folds must be at least 2, got {n_folds}")
    if len(ids) < n_folds:
        raise DatasetError(f"cannot make {n_folds} folds from {len(ids)} item(s)")
    p = votes / np.maximum(votes.sum(axis=1, keepdims=True), 1e-12)
    major = np.argmax(p, axis=1)
    h = np.round(entropy(p), 6)   # rounding: equal entropies must sort equal whatever the float noise
    order = sorted(range(len(ids)), key=lambda i: (int(major[i]), float(h[i]), _seeded_key(seed, ids[i])))
    folds = [0] * len(ids)
    for rank, i in enumerate(order):
        folds[i] = rank % n_folds
    return folds


# ----------------------------------------------------------------------------------------------------------
# Building a corpus


class Collector:
    """Builds the item list: counts votes in the space, drops items with none, tallies skips."""

    def __init__(self, space: LabelSpace, missing: str = "error"):
        if missing not in ("error", "skip"):
            raise DatasetError(f"missing must be 'error' or 'skip', got {missing!r}")
        self.space, self.missing = space, missing
        self.items: list[Item] = []
        self.skipped: Counter[str] = Counter()
        self.votes_dropped = 0

    def absent(self, reason: str, message: str) -> None:
        """An item whose audio/transcript is missing: an error, or a counted skip under missing='skip'."""
        if self.missing == "error":
            raise DatasetError(message + " (pass missing='skip' to leave such items out)")
        self.skipped[reason] += 1

    def add(self, id: str, audio: Path | None, transcript: str, raw_labels: list[str],
            fold: int | None, group: str, outside: int = 0) -> None:
        """Keep the item if a raw label falls in the space; `outside`: votes already known to fall outside."""
        if not raw_labels and not outside:
            self.skipped[SKIP_NO_ANNOTATION] += 1
            return
        counts, dropped = self.space.count_votes(raw_labels)
        if float(np.sum(counts)) <= 0:
            self.skipped[SKIP_NO_VOTE] += 1
            return
        self.votes_dropped += int(dropped) + outside
        self.items.append(Item(id, audio, transcript, np.asarray(counts, dtype=np.float64), fold, group))

    def corpus(self, name: str, split: SplitOptions | None = None) -> Corpus:
        """The kept items; with `split`, each item's fold is drawn by group (`assign_group_folds`)."""
        if not self.items:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items())) or "nothing found"
            raise DatasetError(f"{name}: no usable item in the {self.space.name} label space ({reasons})")
        if split is not None:
            folds = assign_group_folds([it.group for it in self.items], split.n_folds, split.seed)
            for it, f in zip(self.items, folds):
                it.fold = f
        return Corpus(name, self.space, self.items, dict(self.skipped), self.votes_dropped)


def label_space(name: str, merge_excited: bool = False) -> LabelSpace:
    """The named label space, or a DatasetError."""
    try:
        return get_space(name, merge_excited=merge_excited) if merge_excited else get_space(name)
    except (KeyError, ValueError) as e:
        raise DatasetError(f"unknown label space {name!r}: {e.args[0] if e.args else e}") from None


# ----------------------------------------------------------------------------------------------------------
# Reading files


def read_text(path: Path, what: str) -> str:
    """A text file's content (a BOM dropped, undecodable bytes replaced), or a DatasetError naming `what`."""
    if not path.is_file():
        raise DatasetError(f"missing {what}: expected the file {path}")
    try:
        return path.read_text(encoding="utf-8-sig", errors="replace")   # -sig: spreadsheets write a BOM
    except OSError as e:
        raise DatasetError(f"cannot read {what} {path}: {e.strerror or e}") from e


def require_dir(path: Path, what: str) -> Path:
    """`path`, or a DatasetError when it is not a folder."""
    if not path.is_dir():
        raise DatasetError(f"missing {what}: expected the folder {path}")
    return path


def csv_rows(path: Path, required: tuple[str, ...], what: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header of a CSV that must hold the `required` columns, and its non-blank rows with their line numbers."""
    rows = list(csv.reader(io.StringIO(read_text(path, what))))   # not splitlines(): a cell may hold a newline
    if not rows:
        raise DatasetError(f"{path} is empty: expected a header with {', '.join(required)}")
    header = [h.strip() for h in rows[0]]
    lacking = [c for c in required if c not in header]
    if lacking:
        raise DatasetError(f"{path}: header lacks column(s) {', '.join(lacking)}; expected "
                           f"{', '.join(required)} (found {', '.join(header)})")
    return header, [(n, row) for n, row in enumerate(rows[1:], start=2) if any(c.strip() for c in row)]


def speaker_clips(folders: list[Path], none_found: str) -> Iterator[tuple[Path, Path]]:
    """(folder, clip) for each .flac/.wav clip of each speaker folder, sorted; a DatasetError saying `none_found`
    when there is no folder, or naming a folder that holds no clip."""
    if not folders:
        raise DatasetError(none_found)
    for folder in folders:
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in CLIP_SUFFIXES)
        if not found:
            raise DatasetError(f"no .flac/.wav clip in {folder}")
        for clip in found:
            yield folder, clip
