"""Label spaces: raw annotation names -> classes, votes -> soft distributions (Eq. 1), ambiguity (entropy).

Every corpus spells emotions its own way (IEMOCAP ``neu``/``Neutral``, MSP-Podcast ``N``/``Neutral``, RAVDESS
``fearful``, EmotionLines ``joy``). Raw names first map to a shared *concept* (``RAW_CONCEPTS``), and each
label space says which of its classes a concept lands in (``LabelSpace.aliases`` is the composition). A vote
for a concept the space does not have (IEMOCAP ``fru`` in ``iemocap4``, MSP ``O`` "other") is dropped and the
remaining votes renormalised: the AER-LLM convention for IEMOCAP (facts.md §3), applied to every space.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping

import numpy as np

from amber2.errors import UserError


class LabelError(UserError, ValueError):
    """A label or vote vector that cannot be used; the message is meant for a person."""


# Raw annotation name (lower-cased) -> concept. Codes are IEMOCAP summary codes and MSP-Podcast EmoClass letters.
RAW_CONCEPTS: dict[str, str] = {
    **dict.fromkeys(["neutral", "neu", "n", "neutral state"], "neutral"),
    **dict.fromkeys(["calm"], "calm"),
    **dict.fromkeys(["happy", "happiness", "hap", "h", "joy", "joyful"], "happy"),
    **dict.fromkeys(["excited", "excitement", "exc"], "excited"),
    **dict.fromkeys(["sad", "sadness", "s"], "sad"),
    **dict.fromkeys(["angry", "anger", "ang", "a"], "angry"),
    **dict.fromkeys(["fear", "fearful", "fea", "f"], "fear"),
    **dict.fromkeys(["surprise", "surprised", "sur", "u"], "surprise"),
    **dict.fromkeys(["disgust", "disgusted", "dis", "d"], "disgust"),
    **dict.fromkeys(["contempt", "c"], "contempt"),
    **dict.fromkeys(["frustration", "frustrated", "fru"], "frustration"),
    # Known names that no space has a class for: always dropped, but recognised (not a typo).
    **dict.fromkeys(["other", "oth", "o", "x", "xxx", "non-neutral"], "other"),
}


@dataclass(frozen=True)
class LabelSpace:
    """An ordered set of emotion classes and the raw names that count as a vote for each."""

    name: str
    classes: tuple[str, ...]
    aliases: Mapping[str, str] = field(repr=False)  # lower-cased raw label -> class name in this space

    @property
    def size(self) -> int:
        return len(self.classes)

    def index(self, raw: str) -> int | None:
        """Class index of a raw label name (case-insensitive), or None when it is outside this space."""
        if not isinstance(raw, str):
            raise LabelError(f"a label must be a string, got {type(raw).__name__} {raw!r}")
        name = self.aliases.get(raw.strip().lower())
        return None if name is None else self.classes.index(name)

    def count_votes(self, raw_labels: Iterable[str],
                    unknown: Literal["drop", "error"] = "drop") -> tuple[np.ndarray, int]:
        """Count raw labels into a (C,) float vector; returns (counts, number of labels dropped).

        unknown="drop" (default) drops labels outside the space (classes it does not have, such as IEMOCAP
        "fru" in iemocap4, and unrecognised names); unknown="error" raises LabelError on the first one.
        """
        if unknown not in ("drop", "error"):
            raise LabelError(f'unknown must be "drop" or "error", got {unknown!r}')
        if isinstance(raw_labels, str):
            raise LabelError(f"count_votes takes a list of labels, got the single string {raw_labels!r}")
        counts = np.zeros(self.size, dtype=np.float64)
        dropped = 0
        for raw in raw_labels:
            k = self.index(raw)
            if k is None:
                if unknown == "error":
                    known = "a known emotion outside" if raw.strip().lower() in RAW_CONCEPTS else "not a label of"
                    raise LabelError(f"label {raw!r} is {known} the {self.name} space {list(self.classes)}")
                dropped += 1
            else:
                counts[k] += 1
        return counts, dropped

    def with_concepts(self, extra: Mapping[str, str], name: str | None = None) -> "LabelSpace":
        """A copy whose concepts in `extra` (concept -> class) also count, e.g. {"excited": "happy"}."""
        for cls in extra.values():
            if cls not in self.classes:
                raise LabelError(f"{cls!r} is not a class of the {self.name} space")
        added = {raw: extra[c] for raw, c in RAW_CONCEPTS.items() if c in extra}
        return LabelSpace(name or self.name, self.classes, {**self.aliases, **added})


def _space(name: str, classes: Iterable[str], concept_to_class: Mapping[str, str]) -> LabelSpace:
    classes = tuple(classes)
    aliases = {raw: concept_to_class[c] for raw, c in RAW_CONCEPTS.items() if c in concept_to_class}
    aliases.update({c: c for c in classes})  # a space's own class names always name themselves
    return LabelSpace(name, classes, aliases)


_SAME = {c: c for c in ("neutral", "happy", "sad", "angry", "disgust", "fear", "surprise", "contempt")}

SPACES: dict[str, LabelSpace] = {
    s.name: s
    for s in (
        _space("iemocap4", ("neutral", "happy", "angry", "sad"),
               {c: c for c in ("neutral", "happy", "angry", "sad")}),
        _space("msp8", ("neutral", "happy", "sad", "angry", "disgust", "fear", "surprise", "contempt"), _SAME),
        _space("ravdess8", ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
               {**{c: c for c in ("neutral", "calm", "happy", "sad", "angry", "disgust")},
                "fear": "fearful", "surprise": "surprised"}),
        # Class order = the digit order of EmotionLines' "annotation" strings ("0500000" = five joy votes).
        _space("emotionlines7", ("neutral", "joy", "sadness", "fear", "anger", "surprise", "disgust"),
               {"neutral": "neutral", "happy": "joy", "sad": "sadness", "fear": "fear", "angry": "anger",
                "surprise": "surprise", "disgust": "disgust"}),
        # The demo's common ground of RAVDESS and EmotionLines: calm counts as neutral, joy as happy.
        _space("demo7", ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"),
               {**{c: c for c in ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")},
                "calm": "neutral"}),
    )
}


def get_space(name: str, *, merge_excited: bool = False) -> LabelSpace:
    """The named label space; merge_excited=True also counts "excited"/"exc" votes as happy.

    Excitement is not merged by default (the AER-LLM convention for IEMOCAP, facts.md §3); merging is the
    other common IEMOCAP setup. The merged space keeps its name: the classes are the same, only the votes differ.
    """
    try:
        space = SPACES[name]
    except KeyError:
        raise LabelError(f"unknown label space {name!r}; known: {', '.join(SPACES)}") from None
    if merge_excited:
        if "happy" not in space.classes:
            raise LabelError(f"merge_excited needs a 'happy' class, which the {name} space does not have")
        space = space.with_concepts({"excited": "happy"})
    return space


def convert_counts(counts: np.ndarray, source: LabelSpace, target: LabelSpace) -> tuple[np.ndarray, float]:
    """Re-express vote counts from `source` classes in `target` classes; returns (counts, votes dropped)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (source.size,):
        raise LabelError(f"expected {source.size} counts for the {source.name} space, got shape {counts.shape}")
    out = np.zeros(target.size, dtype=np.float64)
    dropped = 0.0
    for cls, n in zip(source.classes, counts):
        k = target.index(cls)
        if k is None:
            dropped += n
        else:
            out[k] += n
    return out, dropped


def votes_to_distribution(counts: np.ndarray) -> np.ndarray | None:
    """Eq. 1: y_c = n_c / N. Returns None (never NaN) when there is no valid vote."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise LabelError(f"vote counts must be a non-empty 1-D vector, got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise LabelError(f"vote counts must be finite and non-negative, got {counts.tolist()}")
    total = counts.sum()
    if total <= 0:
        return None
    return counts / total


def vote_distribution(counts: Iterable[float]) -> np.ndarray:
    """Eq. 1 for vote counts a person sets (the app's Learn tab): `votes_to_distribution`, but a table with
    no vote is refused with a `LabelError` a person can read, rather than returned as None."""
    y = votes_to_distribution(np.asarray(list(counts), dtype=np.float64))
    if y is None:
        raise LabelError("give at least one vote: with no rater, there is no distribution")
    return y


def entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats over the last axis (0 log 0 = 0): the ambiguity of a distribution."""
    p = np.asarray(p, dtype=np.float64)
    logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(axis=-1)
