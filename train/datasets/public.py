"""Open corpora, one intended label or a few crowd votes per item: RAVDESS, nEMO and EMOVO (acted speech),
EmotionLines and GoEmotions (text). Folds by group: actor, speaker, dialogue, or (GoEmotions) each comment,
i.e. at random.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from train.datasets.corpus import (SKIP_NO_AUDIO, SKIP_NOT_SPEECH, Collector, Corpus, DatasetError, SplitOptions,
                                   label_space, read_text, speaker_clips)

# ----------------------------------------------------------------------------------------------------------
# RAVDESS (English speech, 24 actors, two fixed sentences: 03-01-EE-II-SS-RR-AA)


@dataclass
class RavdessOptions(SplitOptions):
    """RAVDESS: one vote for the intended emotion; space 'ravdess8' or 'demo7' (where the space maps calm to
    neutral: RAVDESS's calm is a low-arousal neutral delivery)."""

    space: str = "ravdess8"


RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                    "07": "disgust", "08": "surprised"}
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def load_ravdess(root: Path, opts: RavdessOptions) -> Corpus:
    """RAVDESS speech folder of Actor_NN/*.flac|*.wav; group = actor, folds by actor."""
    actors = sorted(p for p in root.glob("Actor_*") if p.is_dir())
    col = Collector(label_space(opts.space))
    for actor, clip in speaker_clips(actors, f"no Actor_NN folder in {root}: expected RAVDESS speech, "
                                             f"Actor_01/03-01-01-01-01-01-01.flac ..."):
        m = _RAVDESS_NAME.match(clip.stem)
        if not m or m.group(3) not in RAVDESS_EMOTIONS or m.group(5) not in RAVDESS_STATEMENTS:
            raise DatasetError(f"unexpected RAVDESS file name {clip}: expected MM-VV-EE-II-SS-RR-AA, e.g. "
                               f"03-01-05-02-01-01-01.flac")
        if m.group(2) != "01":   # vocal channel 02 is song: not speech
            col.skipped[SKIP_NOT_SPEECH] += 1
            continue
        col.add(clip.stem, clip, RAVDESS_STATEMENTS[m.group(5)], [RAVDESS_EMOTIONS[m.group(3)]], None, actor.name)
    return col.corpus("ravdess", opts)


# ----------------------------------------------------------------------------------------------------------
# nEMO (Polish speech, 9 actors, varied sentences with transcripts)


@dataclass
class NemoOptions(SplitOptions):
    """nEMO: one vote for the acted emotion, transcript = raw_text, folds by speaker."""

    space: str = "demo7"
    missing: str = "error"     # a listed clip without audio: "error" or "skip"


NEMO_EMOTIONS = ("anger", "fear", "happiness", "sadness", "surprised", "neutral")
_NEMO_COLUMNS = ("file_id", "emotion", "raw_text", "normalized_text", "speaker_id", "gender", "age")


def load_nemo(root: Path, opts: NemoOptions) -> Corpus:
    """data.tsv (file_id, emotion, raw_text, normalized_text, speaker_id, gender, age) + samples/<stem>.ogg."""
    path = root / "data.tsv"
    lines = read_text(path, "nEMO table").splitlines()
    header = [h.strip() for h in lines[0].split("\t")] if lines else []
    if header[:len(_NEMO_COLUMNS)] != list(_NEMO_COLUMNS):
        raise DatasetError(f"{path}: expected a tab-separated header {', '.join(_NEMO_COLUMNS)} (found "
                           f"{', '.join(header) or 'an empty file'})")
    col = Collector(label_space(opts.space), opts.missing)
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
    return col.corpus("nemo", opts)


# ----------------------------------------------------------------------------------------------------------
# EMOVO (Italian speech, 6 actors; for evaluation: no transcript)


@dataclass
class EmovoOptions(SplitOptions):
    """EMOVO: one vote for the acted emotion, no transcript (""), folds by speaker."""

    space: str = "demo7"


EMOVO_EMOTIONS = {"dis": "disgust", "gio": "joy", "neu": "neutral", "pau": "fear", "rab": "anger",
                  "sor": "surprise", "tri": "sadness"}
EMOVO_SPEAKERS = ("f1", "f2", "f3", "m1", "m2", "m3")
_EMOVO_NAME = re.compile(r"^([a-z]{3})-([fm]\d)-(\w+)$")


def load_emovo(root: Path, opts: EmovoOptions) -> Corpus:
    """EMOVO folder of {f1,...,m3}/EMO-SPEAKER-SENTENCE.flac|.wav; group = speaker."""
    folders = [root / s for s in EMOVO_SPEAKERS if (root / s).is_dir()]
    col = Collector(label_space(opts.space))
    for _, clip in speaker_clips(folders, f"no speaker folder in {root}: expected EMOVO's "
                                          f"{', '.join(EMOVO_SPEAKERS)} folders of clips such as f1/rab-f1-b1.flac"):
        m = _EMOVO_NAME.match(clip.stem.lower())
        if not m or m.group(1) not in EMOVO_EMOTIONS:
            raise DatasetError(f"unexpected EMOVO file name {clip}: expected EMO-SPEAKER-SENTENCE with EMO one of "
                               f"{', '.join(EMOVO_EMOTIONS)}, e.g. rab-f1-b1.flac")
        col.add(clip.stem, clip, "", [EMOVO_EMOTIONS[m.group(1)]], None, m.group(2))
    return col.corpus("emovo", opts)


# ----------------------------------------------------------------------------------------------------------
# EmotionLines (Friends): 5 crowd votes per utterance


@dataclass
class EmotionLinesOptions(SplitOptions):
    """EmotionLines: the 'annotation' digits are vote counts; all three files pooled, folds by dialogue."""

    space: str = "emotionlines7"
    splits: tuple[str, ...] = ("train", "dev", "test")


EMOTIONLINES_ORDER = ("neutral", "joy", "sadness", "fear", "anger", "surprise", "disgust")
_CP1252_C1 = {i: bytes([i]).decode("cp1252", errors="ignore") or chr(i) for i in range(0x80, 0xA0)}


def fix_cp1252(text: str) -> str:
    """Undo the release's mis-decoding: its apostrophes are C1 controls ('\\x92') that cp1252 means as '’'."""
    return text.translate(_CP1252_C1)


def load_emotionlines(root: Path, opts: EmotionLinesOptions) -> Corpus:
    """friends_{train,dev,test}.json: lists of dialogues of {speaker, utterance, emotion, annotation}."""
    col = Collector(label_space(opts.space))
    for split in opts.splits:
        path = root / f"friends_{split}.json"
        try:
            dialogues = json.loads(read_text(path, "EmotionLines file"))
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
    return col.corpus("emotionlines", opts)


# ----------------------------------------------------------------------------------------------------------
# GoEmotions (Reddit comments, multi-label; text only)


@dataclass
class GoEmotionsOptions(SplitOptions):
    """GoEmotions: each fine label is one vote for its Ekman group (neutral stays neutral); random folds."""

    space: str = "demo7"
    splits: tuple[str, ...] = ("train", "dev", "test")


def goemotions_groups(root: Path) -> list[str | None]:
    """Ekman group of each label id (the lines of emotions.txt): 'joy', ..., 'neutral', or None if unmapped."""
    names = [n.strip() for n in read_text(root / "emotions.txt", "GoEmotions label list").splitlines()
             if n.strip()]
    path = root / "ekman_mapping.json"
    try:
        mapping = json.loads(read_text(path, "GoEmotions Ekman mapping"))
        group_of = {fine: group for group, fines in mapping.items() for fine in fines}
    except (json.JSONDecodeError, AttributeError, TypeError) as e:
        raise DatasetError(f"{path}: expected a JSON object of Ekman group -> fine emotions ({e})") from None
    return [group_of.get(n, "neutral" if n == "neutral" else None) for n in names]


def load_goemotions(root: Path, opts: GoEmotionsOptions) -> Corpus:
    """{train,dev,test}.tsv rows 'text<TAB>label ids<TAB>comment id'; audio None, group = comment id."""
    groups = goemotions_groups(root)
    col = Collector(label_space(opts.space))
    for split in opts.splits:
        path = root / f"{split}.tsv"
        for n, line in enumerate(read_text(path, "GoEmotions split").splitlines(), start=1):
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
    return col.corpus("goemotions", opts)
