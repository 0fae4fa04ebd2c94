"""Emotion corpora with per-rater votes -> a `Corpus` of `Item`s (one label space, folds, speaker groups).

Loaders: IEMOCAP and MSP-Podcast (licensed: parsed from the user's release folder, never shipped), a generic
votes CSV, RAVDESS, nEMO and EMOVO (speech, one intended label per clip), EmotionLines and GoEmotions (text).
Each reads raw rater labels, counts them in one `LabelSpace` (`LabelSpace.count_votes`: labels outside the space
are dropped, renormalisation happens later in `votes_to_distribution`), excludes items left with no vote
(counted in `Corpus.skipped`) and fails early, with a `DatasetError` naming the file and what was expected, on a
folder it does not recognise.

Folds: IEMOCAP uses its five sessions; MSP-Podcast uses five equal-sized, stratified folds (paper Section 4.2,
not the speaker partitions); the other corpora are split by group (actor / dialogue / speaker; GoEmotions:
each comment, i.e. at random) so that no group straddles two folds.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from amber2.labels import LabelSpace, entropy, get_space
from amber2.metrics import MetricsError, ambiguity_bin_edges, bin_index

DEFAULT_FOLDS = 5

# Keys of Corpus.skipped (items excluded, by reason).
SKIP_NO_VOTE = "no_vote_in_space"        # every rater label fell outside the label space
SKIP_NO_ANNOTATION = "no_annotation"     # the item has no rater label at all
SKIP_NO_TRANSCRIPT = "missing_transcript"
SKIP_NO_AUDIO = "missing_audio"
SKIP_NOT_SPEECH = "not_speech"           # RAVDESS song clips (vocal channel 02)


class DatasetError(ValueError):
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


# ----------------------------------------------------------------------------------------------------------
# Shared helpers


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


def _space(name: str, merge_excited: bool = False) -> LabelSpace:
    try:
        return get_space(name, merge_excited=merge_excited) if merge_excited else get_space(name)
    except (KeyError, ValueError) as e:
        raise DatasetError(f"unknown label space {name!r}: {e.args[0] if e.args else e}") from None


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise DatasetError(f"missing {what}: expected the file {path}")
    try:
        return path.read_text(encoding="utf-8-sig", errors="replace")   # -sig: spreadsheets write a BOM
    except OSError as e:
        raise DatasetError(f"cannot read {what} {path}: {e.strerror or e}") from e


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"missing {what}: expected the folder {path}")
    return path


def _require_root(root: Path | str | None, dataset: str) -> Path:
    if root is None:
        raise DatasetError(f"dataset {dataset!r} needs a root folder (--root)")
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{dataset} root {root} does not exist")
    return root


def _check_missing_policy(missing: str) -> None:
    if missing not in ("error", "skip"):
        raise DatasetError(f"missing must be 'error' or 'skip', got {missing!r}")


class _Collector:
    """Builds the item list: counts votes in the space, drops items with none, tallies skips."""

    def __init__(self, space: LabelSpace, missing: str = "error"):
        _check_missing_policy(missing)
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

    def corpus(self, name: str) -> Corpus:
        if not self.items:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items())) or "nothing found"
            raise DatasetError(f"{name}: no usable item in the {self.space.name} label space ({reasons})")
        return Corpus(name, self.space, self.items, dict(self.skipped), self.votes_dropped)


def _fill_group_folds(items: list[Item], n_folds: int, seed: int) -> None:
    for it, f in zip(items, assign_group_folds([it.group for it in items], n_folds, seed)):
        it.fold = f


# ----------------------------------------------------------------------------------------------------------
# IEMOCAP (facts.md §4)


@dataclass
class IemocapOptions:
    """IEMOCAP choices where the paper is silent.

    include_self: also count the actors' self-evaluations (C-F1 / C-M1 lines); off by default because the
        soft labels of prior work (AER-LLM, EMO-SUPERB) come from the external evaluators (C-E*).
    merge_excited: count 'Excited' votes as 'happy'; off by default (facts.md §3, AER-LLM).
    A C- line with several labels ('Neutral; Anger;') gives one vote to each label.
    """

    space: str = "iemocap4"
    include_self: bool = False
    merge_excited: bool = False
    sessions: tuple[int, ...] = (1, 2, 3, 4, 5)
    missing: str = "error"     # a listed utterance without audio/transcript: "error" or "skip"


_IEMOCAP_HEADER = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(Ses\d\d[FM]_\S+)\s+(\S+)")
_IEMOCAP_VOTE = re.compile(r"^C-([A-Za-z]+\d*)\s*:\s*(.*)$")
_IEMOCAP_TRANSCRIPT = re.compile(r"^(Ses\d\d[FM]_\S+)\s+\[[\d.]+\s*-\s*[\d.]+\]\s*:\s?(.*)$")


def parse_iemocap_evaluation(text: str, include_self: bool = False) -> dict[str, list[str]]:
    """Utterance id -> raw categorical labels of one EmoEvaluation file, one entry per (evaluator, label)."""
    votes: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        line = line.strip()
        if m := _IEMOCAP_HEADER.match(line):
            current = m.group(3)
            votes[current] = []
        elif current is not None and (m := _IEMOCAP_VOTE.match(line)):
            evaluator, rest = m.group(1), m.group(2)
            if not (evaluator.startswith("E") or include_self):
                continue
            labels = rest.split("(", 1)[0]   # '(comment)' follows the labels and may itself contain ';'
            votes[current].extend(lab.strip() for lab in labels.split(";") if lab.strip())
        elif not line:
            current = None
    return votes


def parse_iemocap_transcripts(text: str) -> dict[str, str]:
    """Utterance id -> words; lines that are not 'ID [start-end]: words' are ignored."""
    out = {}
    for line in text.splitlines():
        if m := _IEMOCAP_TRANSCRIPT.match(line.strip()):
            out[m.group(1)] = m.group(2).strip()
    return out


def iemocap_speaker(utt_id: str) -> str:
    """'Ses01F_impro01_M003' -> 'Ses01M': the session and the gender of who speaks (not of the dialog)."""
    last = utt_id.rsplit("_", 1)[-1]
    if not re.match(r"^Ses\d\d", utt_id) or last[:1] not in ("F", "M"):
        raise DatasetError(f"unexpected IEMOCAP utterance id {utt_id!r} (expected e.g. Ses01F_impro01_F000)")
    return utt_id[:5] + last[0]


def load_iemocap(root: Path, opts: IemocapOptions) -> Corpus:
    """IEMOCAP release folder (containing Session1..Session5); fold = session - 1, group = speaker."""
    col = _Collector(_space(opts.space, opts.merge_excited), opts.missing)
    for s in opts.sessions:
        session = _require_dir(root / f"Session{s}", f"IEMOCAP session {s}")
        evald = _require_dir(session / "dialog" / "EmoEvaluation", f"Session{s} evaluations")
        files = sorted(p for p in evald.glob("*.txt") if not p.name.startswith("."))
        if not files:
            raise DatasetError(f"no evaluation file in {evald}: expected <dialog>.txt files such as "
                               f"Ses0{s}F_impro01.txt")
        for ev in files:
            dialog = ev.stem
            votes = parse_iemocap_evaluation(_read_text(ev, "IEMOCAP evaluation"), opts.include_self)
            if not votes:
                raise DatasetError(f"no utterance block in {ev}: expected lines like "
                                   f"'[6.2901 - 8.2357]\t{dialog}_F000\tneu\t[2.5, 2.5, 2.5]' followed by "
                                   f"'C-E2:\tNeutral;\t()'")
            words = parse_iemocap_transcripts(
                _read_text(session / "dialog" / "transcriptions" / f"{dialog}.txt", "IEMOCAP transcription"))
            for utt, raw in votes.items():
                wav = session / "sentences" / "wav" / dialog / f"{utt}.wav"
                if utt not in words:
                    col.absent(SKIP_NO_TRANSCRIPT, f"{utt} has no line in {session}/dialog/transcriptions/"
                                                   f"{dialog}.txt")
                    continue
                if not wav.is_file():
                    col.absent(SKIP_NO_AUDIO, f"missing audio for {utt}: expected {wav}")
                    continue
                col.add(utt, wav, words[utt], raw, s - 1, iemocap_speaker(utt))
    return col.corpus("iemocap")


# ----------------------------------------------------------------------------------------------------------
# MSP-Podcast (v1.10-1.12, facts.md §4)


@dataclass
class MspPodcastOptions:
    """MSP-Podcast choices. Votes are the primary emotions of labels_detailed.csv (one per annotation)."""

    space: str = "msp8"
    n_folds: int = DEFAULT_FOLDS
    seed: int = 0
    missing: str = "error"


_MSP_CONSENSUS = ("labels_consensus.csv", "labels_concensus.csv")   # the second spelling before v1.10
_MSP_DETAILED = "labels_detailed.csv"
_MSP_UNKNOWN_SPEAKERS = {"", "unknown", "nan", "none"}


def _msp_layout(root: Path) -> tuple[Path, Path]:
    """(consensus csv, detailed csv) of a release, or a DatasetError saying what a known layout holds."""
    expected = ("expected an MSP-Podcast v1.10-1.12 folder with Audios/*.wav, Transcripts/<name>.txt, "
                "Labels/labels_consensus.csv (labels_concensus.csv before v1.10) and Labels/labels_detailed.csv")
    labels = root / "Labels"
    missing = [d for d in ("Audios", "Transcripts", "Labels") if not (root / d).is_dir()]
    consensus = next((labels / n for n in _MSP_CONSENSUS if (labels / n).is_file()), None)
    detailed = labels / _MSP_DETAILED
    if missing or consensus is None or not detailed.is_file():
        found = sorted(p.name for p in root.iterdir())[:12] if root.is_dir() else []
        lacks = missing + ([] if consensus else ["Labels/labels_consensus.csv"]) + \
            ([] if detailed.is_file() else ["Labels/labels_detailed.csv"])
        raise DatasetError(f"unknown MSP-Podcast layout in {root}: lacks {', '.join(lacks)}; {expected}"
                           f" (found: {', '.join(found) or 'nothing'})")
    return consensus, detailed


def _csv_rows(path: Path, required: tuple[str, ...], what: str) -> tuple[list[str], list[list[str]]]:
    text = _read_text(path, what)
    rows = list(csv.reader(io.StringIO(text)))   # not splitlines(): a quoted cell may hold a newline
    if not rows:
        raise DatasetError(f"{path} is empty: expected a header with {', '.join(required)}")
    header = [h.strip() for h in rows[0]]
    lacking = [c for c in required if c not in header]
    if lacking:
        raise DatasetError(f"{path}: header lacks column(s) {', '.join(lacking)}; expected "
                           f"{', '.join(required)} (found {', '.join(header)})")
    return header, rows[1:]


def parse_msp_detailed(path: Path) -> dict[str, list[str]]:
    """File stem -> primary emotions of its annotations (the 2nd ';' field of EmoDetail)."""
    header, rows = _csv_rows(path, ("FileName", "EmoDetail"), "MSP-Podcast detailed labels")
    i_name, i_detail = header.index("FileName"), header.index("EmoDetail")
    out: dict[str, list[str]] = {}
    for n, row in enumerate(rows, start=2):
        if not row or not any(c.strip() for c in row):
            continue
        # The secondary-emotion list holds commas; rejoining the tail accepts quoted and unquoted rows alike.
        detail = ",".join(row[i_detail:]) if i_detail == len(header) - 1 else row[i_detail]
        fields = [f.strip() for f in detail.split(";")]
        if len(fields) < 2 or not fields[1]:
            raise DatasetError(f"{path} line {n}: EmoDetail {detail!r} is not like "
                               f"'WORKER00012; Angry; Angry,Frustrated; A:4.0; V:2.0; D:5.0;'")
        out.setdefault(Path(row[i_name].strip()).stem, []).append(fields[1])
    return out


def load_msp_podcast(root: Path, opts: MspPodcastOptions) -> Corpus:
    """MSP-Podcast release folder; five equal stratified folds; group = SpkrID (unknown speaker: the file)."""
    consensus, detailed = _msp_layout(root)
    header, rows = _csv_rows(consensus, ("FileName", "SpkrID"), "MSP-Podcast consensus labels")
    i_name, i_spk = header.index("FileName"), header.index("SpkrID")
    votes = parse_msp_detailed(detailed)
    col = _Collector(_space(opts.space), opts.missing)
    for n, row in enumerate(rows, start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < len(header):
            raise DatasetError(f"{consensus} line {n}: {len(row)} field(s), expected {len(header)}")
        stem = Path(row[i_name].strip()).stem
        wav = root / "Audios" / f"{stem}.wav"
        tr = root / "Transcripts" / f"{stem}.txt"
        if not tr.is_file():
            col.absent(SKIP_NO_TRANSCRIPT, f"missing transcript for {stem}: expected {tr}")
            continue
        if not wav.is_file():
            col.absent(SKIP_NO_AUDIO, f"missing audio for {stem}: expected {wav}")
            continue
        speaker = row[i_spk].strip()
        # 'Unknown' is not one speaker: treating it as a group would glue thousands of files together.
        group = f"file:{stem}" if speaker.lower() in _MSP_UNKNOWN_SPEAKERS else f"spk:{speaker}"
        col.add(stem, wav, " ".join(_read_text(tr, "transcript").split()), votes.get(stem, []), None, group)
    corpus = col.corpus("msp-podcast")
    folds = assign_stratified_folds([it.id for it in corpus.items], corpus.votes(), opts.n_folds, opts.seed)
    for it, f in zip(corpus.items, folds):
        it.fold = f
    return corpus


# ----------------------------------------------------------------------------------------------------------
# Generic votes CSV


@dataclass
class CsvOptions:
    """A votes table: audio, transcript, one vote-count column per class of `space`; optional id, fold,
    speaker or group, n_votes (checked against the class columns). Audio paths may be relative to the CSV."""

    space: str | None = None
    n_folds: int = DEFAULT_FOLDS
    seed: int = 0
    require_audio: bool = True   # False: an empty audio cell gives a text-only item (audio None)


def _csv_number(value: str, where: str) -> float:
    try:
        x = float(value) if value.strip() else 0.0
    except ValueError:
        raise DatasetError(f"{where}: {value!r} is not a number") from None
    if not np.isfinite(x) or x < 0:
        raise DatasetError(f"{where}: vote count {value!r} must be a non-negative number")
    return x


def load_votes_csv(root: Path, opts: CsvOptions) -> Corpus:
    """A votes CSV (root is the file, or a folder holding votes.csv); the space must be named."""
    path = root / "votes.csv" if root.is_dir() else root
    if not opts.space:
        raise DatasetError("the csv dataset needs space=<name> (--space) naming the label space of its vote "
                           "columns")
    space = _space(opts.space)
    header, rows = _csv_rows(path, ("audio", "transcript") + tuple(space.classes), "votes CSV")
    idx = {h: i for i, h in enumerate(header)}
    group_col = next((c for c in ("group", "speaker") if c in idx), None)
    col = _Collector(space)
    seen: set[str] = set()
    folds_given: list[bool] = []
    for n, row in enumerate(rows, start=2):
        if not row or not any(c.strip() for c in row):
            continue
        where = f"{path} row {n}"
        if len(row) != len(header):
            raise DatasetError(f"{where}: {len(row)} field(s), expected {len(header)} ({', '.join(header)})")
        cell = {h: row[i].strip() for h, i in idx.items()}
        audio: Path | None = None
        if cell["audio"]:
            audio = Path(cell["audio"]).expanduser()
            audio = audio if audio.is_absolute() else path.parent / audio
            if not audio.is_file():
                raise DatasetError(f"{where}: audio file {audio} does not exist")
        elif opts.require_audio:
            raise DatasetError(f"{where}: empty audio cell (pass require_audio=False for text-only items)")
        item_id = cell.get("id") or cell["audio"] or f"row{n}"
        if item_id in seen:
            hint = "" if "id" in idx else " (without an id column the audio path is the id: add one)"
            raise DatasetError(f"{where}: duplicate id {item_id!r}{hint}")
        seen.add(item_id)
        counts = [_csv_number(cell[c], f"{where}, column {c}") for c in space.classes]
        # n_votes may exceed the class columns (raters who chose a class outside the space: counted as
        # dropped votes) but never fall short of them.
        outside = 0.0
        if cell.get("n_votes"):
            outside = _csv_number(cell["n_votes"], f"{where}, column n_votes") - sum(counts)
            if outside < -1e-6:
                raise DatasetError(f"{where}: n_votes {cell['n_votes']} is less than the sum of the class "
                                   f"columns ({sum(counts):g})")
        fold = None
        if cell.get("fold"):
            try:
                fold = int(cell["fold"])
            except ValueError:
                raise DatasetError(f"{where}: fold {cell['fold']!r} is not an integer") from None
            if fold < 0:
                raise DatasetError(f"{where}: fold must be >= 0, got {fold}")
        folds_given.append(fold is not None)
        if any(abs(k - round(k)) > 1e-9 for k in counts):
            raise DatasetError(f"{where}: vote counts must be whole numbers, got {counts}")
        # Counts are already in the space: repeat each class name so the shared vote path applies.
        raw = [c for c, k in zip(space.classes, counts) for _ in range(int(round(k)))]
        col.add(item_id, audio, cell["transcript"], raw, fold, cell[group_col] if group_col and
                cell[group_col] else item_id, outside=int(round(outside)))
    if any(folds_given) and not all(folds_given):
        raise DatasetError(f"{path}: the fold column is filled on some rows only; fill it on every row or "
                           f"leave it empty everywhere")
    corpus = col.corpus(f"csv:{path.name}")
    if not any(folds_given):
        _fill_group_folds(corpus.items, opts.n_folds, opts.seed)
    return corpus


def write_votes_csv(corpus: Corpus, path: Path) -> Path:
    """One row per item: id, fold, transcript, audio, one vote column per class, n_votes, group.

    The inverse of the csv loader (load it back with space=corpus.space.name).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    classes = list(corpus.space.classes)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "fold", "transcript", "audio", *classes, "n_votes", "group"])
        for it in corpus.items:
            counts = [f"{v:g}" for v in it.votes]
            w.writerow([it.id, "" if it.fold is None else it.fold, it.transcript,
                        "" if it.audio is None else str(it.audio), *counts, f"{float(np.sum(it.votes)):g}",
                        it.group])
    return path


# ----------------------------------------------------------------------------------------------------------
# RAVDESS (speech, audio-only: 03-01-EE-II-SS-RR-AA)


@dataclass
class RavdessOptions:
    """RAVDESS: one vote for the intended emotion; space 'ravdess8' or 'demo7' (where the space maps calm to
    neutral: RAVDESS's calm is a low-arousal neutral delivery)."""

    space: str = "ravdess8"
    n_folds: int = DEFAULT_FOLDS
    seed: int = 0


RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                    "07": "disgust", "08": "surprised"}
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def load_ravdess(root: Path, opts: RavdessOptions) -> Corpus:
    """RAVDESS speech folder of Actor_NN/*.flac|*.wav; group = actor, folds by actor."""
    actors = sorted(p for p in root.glob("Actor_*") if p.is_dir())
    if not actors:
        raise DatasetError(f"no Actor_NN folder in {root}: expected RAVDESS speech, Actor_01/03-01-01-01-01-01-01"
                           f".flac ...")
    space = _space(opts.space)
    col = _Collector(space)
    for actor in actors:
        files = sorted(p for p in actor.iterdir() if p.suffix.lower() in (".flac", ".wav"))
        if not files:
            raise DatasetError(f"no .flac/.wav clip in {actor}")
        for clip in files:
            m = _RAVDESS_NAME.match(clip.stem)
            if not m or m.group(3) not in RAVDESS_EMOTIONS or m.group(5) not in RAVDESS_STATEMENTS:
                raise DatasetError(f"unexpected RAVDESS file name {clip}: expected MM-VV-EE-II-SS-RR-AA, e.g. "
                                   f"03-01-05-02-01-01-01.flac")
            if m.group(2) != "01":   # vocal channel 02 is song: not speech
                col.skipped[SKIP_NOT_SPEECH] += 1
                continue
            emotion = RAVDESS_EMOTIONS[m.group(3)]
            col.add(clip.stem, clip, RAVDESS_STATEMENTS[m.group(5)], [emotion], None,
                    actor.name)
    corpus = col.corpus("ravdess")
    _fill_group_folds(corpus.items, opts.n_folds, opts.seed)
    return corpus


# ----------------------------------------------------------------------------------------------------------
# EmotionLines (Friends): 5 crowd votes per utterance


@dataclass
class EmotionLinesOptions:
    """EmotionLines: the 'annotation' digits are vote counts; all three files pooled, folds by dialogue."""

    space: str = "emotionlines7"
    splits: tuple[str, ...] = ("train", "dev", "test")
    n_folds: int = DEFAULT_FOLDS
    seed: int = 0


EMOTIONLINES_ORDER = ("neutral", "joy", "sadness", "fear", "anger", "surprise", "disgust")
_CP1252_C1 = {i: bytes([i]).decode("cp1252", errors="ignore") or chr(i) for i in range(0x80, 0xA0)}


def fix_cp1252(text: str) -> str:
    """Undo the release's mis-decoding: its apostrophes are C1 controls ('\\x92') that cp1252 means as '’'."""
    return text.translate(_CP1252_C1)


def load_emotionlines(root: Path, opts: EmotionLinesOptions) -> Corpus:
    """friends_{train,dev,test}.json: lists of dialogues of {speaker, utterance, emotion, annotation}."""
    space = _space(opts.space)
    col = _Collector(space)
    for split in opts.splits:
        path = root / f"friends_{split}.json"
        try:
            dialogues = json.loads(_read_text(path, "EmotionLines file"))
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(dialogues, list):
            raise DatasetError(f"{path}: expected a JSON list of dialogues")
        for d, dialogue in enumerate(dialogues):
            for u, utt in enumerate(dialogue):
                where = f"{path} dialogue {d} utterance {u}"
                ann = str(utt.get("annotation", "")) if isinstance(utt, dict) else ""
                if not (len(ann) == len(EMOTIONLINES_ORDER) and ann.isdigit()):
                    raise DatasetError(f"{where}: annotation {ann!r} is not {len(EMOTIONLINES_ORDER)} vote digits "
                                       f"({', '.join(EMOTIONLINES_ORDER)})")
                raw = [name for name, k in zip(EMOTIONLINES_ORDER, ann) for _ in range(int(k))]
                col.add(f"{split}_d{d:03d}_u{u:02d}", None, fix_cp1252(str(utt.get("utterance", ""))).strip(),
                        raw, None, f"{split}_d{d:03d}")
    corpus = col.corpus("emotionlines")
    _fill_group_folds(corpus.items, opts.n_folds, opts.seed)
    return corpus


# ----------------------------------------------------------------------------------------------------------
# nEMO (Polish speech, 9 actors, varied sentences with transcripts)


@dataclass
class NemoOptions:
    """nEMO: one vote for the acted emotion, transcript = raw_text, folds by speaker."""

    space: str = "demo7"
    n_folds: int = DEFAULT_FOLDS
    seed: int = 0
    missing: str = "error"     # a listed clip without audio: "error" or "skip"


NEMO_EMOTIONS = ("anger", "fear", "happiness", "sadness", "surprised", "neutral")
_NEMO_COLUMNS = ("file_id", "emotion", "raw_text", "normalized_text", "speaker_id", "gender", "age")


def load_nemo(root: Path, opts: NemoOptions) -> Corpus:
    """data.tsv (file_id, emotion, raw_text, normalized_text, speaker_id, gender, age) + samples/<stem>.ogg."""
    path = root / "data.tsv"
    lines = _read_text(path, "nEMO table").splitlines()
    header = [h.strip() for h in lines[0].split("\t")] if lines else []
    if header[:len(_NEMO_COLUMNS)] != list(_NEMO_COLUMNS):
        raise DatasetError(f"{path}: expected a tab-separated header {', '.join(_NEMO_COLUMNS)} (found "
                           f"{', '.join(header) or 'an empty file'})")
    col = _Collector(_space(opts.space), opts.missing)
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        row = line.split("\t")
        if len(row) < len(_NEMO_COLUMNS):
            raise DatasetError(f"{path} line {n}: {len(row)} tab-separated field(s), expected "
                               f"{len(_NEMO_COLUMNS)} ({', '.join(_NEMO_COLUMNS)})")
        stem, emotion, speaker = Path(row[0].strip()).stem, row[1].strip().lower(), row[4].strip()
        if emotion not in NEMO_EMOTIONS:
            raise DatasetError(f"{path} line {n}: unknown emotion {row[1]!r}; expected one of "
                               f"{', '.join(NEMO_EMOTIONS)}")
        audio = root / "samples" / f"{stem}.ogg"
        if not audio.is_file():
            col.absent(SKIP_NO_AUDIO, f"missing audio for {stem}: expected {audio}")
            continue
        col.add(stem, audio, row[2].strip(), [emotion], None, speaker)
    corpus = col.corpus("nemo")
    _fill_group_folds(corpus.items, opts.n_folds, opts.seed)
    return corpus


# ----------------------------------------------------------------------------------------------------------
# EMOVO (Italian speech, 6 actors; for evaluation: no transcript)


@dataclass
class EmovoOptions:
    """EMOVO: one vote for the acted emotion, no transcript (""), folds by speaker."""

    space: str = "demo7"
    n_folds: int = DEFAULT_FOLDS
    seed: int = 0


EMOVO_EMOTIONS = {"dis": "disgust", "gio": "joy", "neu": "neutral", "pau": "fear", "rab": "anger",
                  "sor": "surprise", "tri": "sadness"}
EMOVO_SPEAKERS = ("f1", "f2", "f3", "m1", "m2", "m3")
_EMOVO_NAME = re.compile(r"^([a-z]{3})-([fm]\d)-(\w+)$")


def load_emovo(root: Path, opts: EmovoOptions) -> Corpus:
    """EMOVO folder of {f1,...,m3}/EMO-SPEAKER-SENTENCE.flac|.wav; group = speaker."""
    folders = [root / s for s in EMOVO_SPEAKERS if (root / s).is_dir()]
    if not folders:
        raise DatasetError(f"no speaker folder in {root}: expected EMOVO's {', '.join(EMOVO_SPEAKERS)} folders "
                           f"of clips such as f1/rab-f1-b1.flac")
    col = _Collector(_space(opts.space))
    for folder in folders:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".flac", ".wav"))
        if not files:
            raise DatasetError(f"no .flac/.wav clip in {folder}")
        for clip in files:
            m = _EMOVO_NAME.match(clip.stem.lower())
            if not m or m.group(1) not in EMOVO_EMOTIONS:
                raise DatasetError(f"unexpected EMOVO file name {clip}: expected EMO-SPEAKER-SENTENCE with EMO one "
                                   f"of {', '.join(EMOVO_EMOTIONS)}, e.g. rab-f1-b1.flac")
            col.add(clip.stem, clip, "", [EMOVO_EMOTIONS[m.group(1)]], None, m.group(2))
    corpus = col.corpus("emovo")
    _fill_group_folds(corpus.items, opts.n_folds, opts.seed)
    return corpus


# ----------------------------------------------------------------------------------------------------------
# GoEmotions (Reddit comments, multi-label; text only)


@dataclass
class GoEmotionsOptions:
    """GoEmotions: each fine label is one vote for its Ekman group (neutral stays neutral); random folds."""

    space: str = "demo7"
    splits: tuple[str, ...] = ("train", "dev", "test")
    n_folds: int = DEFAULT_FOLDS
    seed: int = 0


def goemotions_groups(root: Path) -> list[str | None]:
    """Ekman group of each label id (the lines of emotions.txt): 'joy', ..., 'neutral', or None if unmapped."""
    names = [n.strip() for n in _read_text(root / "emotions.txt", "GoEmotions label list").splitlines()
             if n.strip()]
    path = root / "ekman_mapping.json"
    try:
        mapping = json.loads(_read_text(path, "GoEmotions Ekman mapping"))
        group_of = {fine: group for group, fines in mapping.items() for fine in fines}
    except (json.JSONDecodeError, AttributeError, TypeError) as e:
        raise DatasetError(f"{path}: expected a JSON object of Ekman group -> fine emotions ({e})") from None
    return [group_of.get(n, "neutral" if n == "neutral" else None) for n in names]


def load_goemotions(root: Path, opts: GoEmotionsOptions) -> Corpus:
    """{train,dev,test}.tsv rows 'text<TAB>label ids<TAB>comment id'; audio None, group = comment id."""
    groups = goemotions_groups(root)
    col = _Collector(_space(opts.space))
    for split in opts.splits:
        path = root / f"{split}.tsv"
        for n, line in enumerate(_read_text(path, "GoEmotions split").splitlines(), start=1):
            if not line.strip():
                continue
            row = line.split("\t")
            ids = row[1].split(",") if len(row) == 3 else []
            if not ids or not all(i.strip().isdigit() and int(i) < len(groups) for i in ids):
                raise DatasetError(f"{path} line {n}: expected 'text<TAB>label ids (0-{len(groups) - 1}, comma-"
                                   f"separated)<TAB>comment id', got {line[:80]!r}")
            raw = [groups[int(i)] for i in ids]
            col.add(row[2].strip(), None, row[0].strip(), [g for g in raw if g], None, row[2].strip(),
                    outside=raw.count(None))
    corpus = col.corpus("goemotions")
    _fill_group_folds(corpus.items, opts.n_folds, opts.seed)
    return corpus


# ----------------------------------------------------------------------------------------------------------
# Summary (what `python -m train inspect` prints)


@dataclass
class CorpusSummary:
    """Counts that tell whether a corpus is usable: per majority class, per fold, per ambiguity bin."""

    name: str
    space: str
    classes: list[str]
    n_items: int
    n_votes: int
    class_counts: dict[str, int]              # items per majority class (ties to the first class)
    fold_counts: dict[int | None, int]
    fold_class_counts: dict[int | None, dict[str, int]]
    ambiguity_bins: list[tuple[float, float, int]]   # (lo, hi, items) over the soft labels' entropy (nats)
    groups: int
    skipped: dict[str, int]
    dropped_votes: int = 0


def summarize(corpus: Corpus, n_bins: int = 4, bin_mode: str = "width") -> CorpusSummary:
    """Class, fold and ambiguity counts of a corpus (ambiguity bins as amber2.metrics bins them)."""
    if not corpus.items:
        raise DatasetError(f"{corpus.name} has no item to summarize")
    classes = list(corpus.space.classes)
    votes = corpus.votes()
    p = corpus.distributions()
    major = np.argmax(p, axis=1)
    folds = sorted({it.fold for it in corpus.items}, key=lambda f: (f is None, f or 0))
    fold_class = {f: dict.fromkeys(classes, 0) for f in folds}
    for it, m in zip(corpus.items, major):
        fold_class[it.fold][classes[m]] += 1
    try:
        edges = ambiguity_bin_edges(p, n_bins=n_bins, mode=bin_mode)
    except MetricsError as e:
        raise DatasetError(str(e)) from None
    which = bin_index(p, edges)
    bins = [(float(edges[b]), float(edges[b + 1]), int(np.sum(which == b))) for b in range(len(edges) - 1)]
    return CorpusSummary(
        name=corpus.name, space=corpus.space.name, classes=classes, n_items=len(corpus.items),
        n_votes=int(votes.sum()), class_counts={c: int(np.sum(major == k)) for k, c in enumerate(classes)},
        fold_counts={f: sum(fold_class[f].values()) for f in folds}, fold_class_counts=fold_class,
        ambiguity_bins=bins, groups=len({it.group for it in corpus.items}), skipped=dict(corpus.skipped),
        dropped_votes=corpus.dropped_votes)


# ----------------------------------------------------------------------------------------------------------
# Registry


Loader = Callable[[Path, object], Corpus]
DATASETS: dict[str, tuple[type, Loader]] = {
    "iemocap": (IemocapOptions, load_iemocap),
    "msp-podcast": (MspPodcastOptions, load_msp_podcast),
    "csv": (CsvOptions, load_votes_csv),
    "ravdess": (RavdessOptions, load_ravdess),
    "emotionlines": (EmotionLinesOptions, load_emotionlines),
    "nemo": (NemoOptions, load_nemo),
    "emovo": (EmovoOptions, load_emovo),
    "goemotions": (GoEmotionsOptions, load_goemotions),
}


def register_dataset(name: str, options: type, loader: Loader) -> None:
    """Add a corpus (e.g. the demo corpus) to `load_dataset`: `options` is a dataclass of its keyword options."""
    DATASETS[name] = (options, loader)


def _options(name: str, cls: type, given: dict) -> object:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise DatasetError(f"unknown option(s) for dataset {name!r}: {', '.join(unknown)}; valid: "
                           f"{', '.join(fields)}")
    kwargs = {k: v for k, v in given.items() if v is not None}
    for k, v in kwargs.items():   # a list from a CLI or JSON config where the default is a tuple
        if isinstance(fields[k].default, tuple) and isinstance(v, list):
            kwargs[k] = tuple(v)
    return cls(**kwargs)


def load_dataset(name: str, root: Path | str | None, **options) -> Corpus:
    """Load corpus `name` (a key of DATASETS: 'iemocap', 'msp-podcast', 'csv', 'ravdess', 'emotionlines',
    'nemo', 'emovo', 'goemotions') from `root`.

    Options are the fields of the corpus's options dataclass (e.g. space=, n_folds=, seed=); None means the
    default. Raises DatasetError with a readable message on anything unexpected.
    """
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    cls, loader = DATASETS[key]
    opts = _options(key, cls, options)
    return loader(_require_root(root, key), opts)
