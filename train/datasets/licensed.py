"""Corpora the user brings: IEMOCAP and MSP-Podcast (licensed, parsed from the user's own release folder, never
shipped) and any corpus written as a votes CSV.

Folds: IEMOCAP uses its five sessions; MSP-Podcast five equal-sized, stratified folds (paper Section 4.2, not
the speaker partitions); a votes CSV its fold column, else folds by speaker or group.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.datasets.corpus import (SKIP_NO_AUDIO, SKIP_NO_TRANSCRIPT, Collector, Corpus, DatasetError,
                                   SplitOptions, assign_stratified_folds, csv_rows, label_space, read_text,
                                   require_dir)

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
    col = Collector(label_space(opts.space, opts.merge_excited), opts.missing)
    for s in opts.sessions:
        session = require_dir(root / f"Session{s}", f"IEMOCAP session {s}")
        evald = require_dir(session / "dialog" / "EmoEvaluation", f"Session{s} evaluations")
        files = sorted(p for p in evald.glob("*.txt") if not p.name.startswith("."))
        if not files:
            raise DatasetError(f"no evaluation file in {evald}: expected <dialog>.txt files such as "
                               f"Ses0{s}F_impro01.txt")
        for ev in files:
            dialog = ev.stem
            votes = parse_iemocap_evaluation(read_text(ev, "IEMOCAP evaluation"), opts.include_self)
            if not votes:
                raise DatasetError(f"no utterance block in {ev}: expected lines like "
                                   f"'[6.2901 - 8.2357]\t{dialog}_F000\tneu\t[2.5, 2.5, 2.5]' followed by "
                                   f"'C-E2:\tNeutral;\t()'")
            words = parse_iemocap_transcripts(
                read_text(session / "dialog" / "transcriptions" / f"{dialog}.txt", "IEMOCAP transcription"))
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
class MspPodcastOptions(SplitOptions):
    """MSP-Podcast choices. Votes are the primary emotions of labels_detailed.csv (one per annotation)."""

    space: str = "msp8"
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


def parse_msp_detailed(path: Path) -> dict[str, list[str]]:
    """File stem -> primary emotions of its annotations (the 2nd ';' field of EmoDetail)."""
    header, rows = csv_rows(path, ("FileName", "EmoDetail"), "MSP-Podcast detailed labels")
    i_name, i_detail = header.index("FileName"), header.index("EmoDetail")
    out: dict[str, list[str]] = {}
    for n, row in rows:
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
    header, rows = csv_rows(consensus, ("FileName", "SpkrID"), "MSP-Podcast consensus labels")
    i_name, i_spk = header.index("FileName"), header.index("SpkrID")
    votes = parse_msp_detailed(detailed)
    col = Collector(label_space(opts.space), opts.missing)
    for n, row in rows:
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
        col.add(stem, wav, " ".join(read_text(tr, "transcript").split()), votes.get(stem, []), None, group)
    corpus = col.corpus("msp-podcast")
    folds = assign_stratified_folds([it.id for it in corpus.items], corpus.votes(), opts.n_folds, opts.seed)
    for it, f in zip(corpus.items, folds):
        it.fold = f
    return corpus


# ----------------------------------------------------------------------------------------------------------
# Generic votes CSV


@dataclass
class CsvOptions(SplitOptions):
    """A votes table: audio, transcript, one vote-count column per class of `space`; optional id, fold,
    speaker or group, n_votes (checked against the class columns). Audio paths may be relative to the CSV."""

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
    space = label_space(opts.space)
    header, rows = csv_rows(path, ("audio", "transcript") + tuple(space.classes), "votes CSV")
    idx = {h: i for i, h in enumerate(header)}
    group_col = next((c for c in ("group", "speaker") if c in idx), None)
    col = Collector(space)
    seen: set[str] = set()
    folds_given: list[bool] = []
    for n, row in rows:
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
    return col.corpus(f"csv:{path.name}", None if any(folds_given) else opts)


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
