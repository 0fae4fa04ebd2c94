"""Voices and words paired at the vector level: training items that look like what the app meets.

The demo corpus has two kinds of item: an emotional voice saying fixed words (RAVDESS, nEMO) and emotional
words in a flat synthetic voice (EmotionLines, GoEmotions). A visitor brings neither: a real voice with real
words. Features are cached per modality, so an audio vector of one item and a text vector of another can be
paired for nothing, and each rule below adds such rows to the protocol's input, with a target it states:

* ``voice-plain``: every voice item again, with plain words (a text item all of whose raters said neutral,
  from the same fold). Target: the voice's label. The words head is not taught it (head weight 0).
* ``calm-voice-words``: emotional word items (majority not neutral) with a real neutral voice (a voice item
  labelled neutral, same fold). Target: the words' votes. The voice head is not taught it.
* ``conflict``: an emotional voice with emotional words of another majority class (same fold). Target: the
  mixture ``conflict_voice_share`` x the voice's label + the rest x the words' votes: the item is ambiguous,
  which is what the paper's soft labels are for. Neither expert is taught it; the fused student is.

Every rule pairs items of one fold, so a test fold's rows are made only of that fold's voices and words. A
paired row's id is ``pair:<rule>/<voice id>+<words id>``, its group the group of the item whose label it carries
(the voice's for voice-plain, the words' for calm-voice-words, the voice's for conflict). Choices are drawn
with `seed` and depend only on the items, not on their order in the file.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from amber2.heads import HEADS
from train.config import ProtocolData, ProtocolError

RULES = ("voice-plain", "calm-voice-words", "conflict")
PAIR_PREFIX = "pair:"
# Which heads' rater terms a rule's target describes (the fused head always; an expert only when the target
# is about what it reads).
RULE_HEADS = {"voice-plain": ("A", "AT"), "calm-voice-words": ("T", "AT"), "conflict": ("AT",)}


@dataclass(frozen=True)
class PairingConfig:
    """Which pairing rules add rows, and how many (each field a flag of `python -m train demo`)."""

    # None by default: on leave-one-corpus-out every rule tried made the fused head invent more, not less
    # (docs/demo-model.md); `python -m train demo --pairing voice-plain ...` turns them on.
    rules: tuple[str, ...] = ()
    voice_corpora: tuple[str, ...] = ("ravdess", "nemo")     # id prefixes of voice items; the rest are words
    plain_per_voice: int = 1           # voice-plain: plain-word partners of each voice item
    calm_voice_items: int = 4000       # calm-voice-words: emotional word items given a real neutral voice
    conflict_items: int = 2000         # conflict: emotional voices given conflicting words
    conflict_voice_share: float = 0.5  # conflict: the voice label's share of the target
    neutral: str = "neutral"           # the class that makes words "plain" and a voice "calm"
    seed: int = 0

    def __post_init__(self) -> None:
        if unknown := sorted(set(self.rules) - set(RULES)):
            raise ProtocolError(f"unknown pairing rule(s) {unknown}; choose from {', '.join(RULES)}")
        if min(self.plain_per_voice, self.calm_voice_items, self.conflict_items) < 0:
            raise ProtocolError("pairing counts must be 0 or more")
        if not 0.0 <= self.conflict_voice_share <= 1.0:
            raise ProtocolError(f"conflict_voice_share must lie in [0, 1], got {self.conflict_voice_share}")


def head_weight_row(rule: str | None) -> np.ndarray:
    """(H,) weights of each head's rater term for a row made by `rule` (None: an original item, all ones)."""
    heads = HEADS if rule is None else RULE_HEADS[rule]
    return np.array([1.0 if h in heads else 0.0 for h in HEADS], dtype=np.float32)


def rule_of(item_id: str) -> str | None:
    """The pairing rule that made a row, from its id (None for an original item)."""
    text = str(item_id)
    return text[len(PAIR_PREFIX):].split("/", 1)[0] if text.startswith(PAIR_PREFIX) else None


def members(item_id: str) -> list[str]:
    """The ids of the items a row is made of: itself, or a paired row's voice item and words item."""
    text = str(item_id)
    return text.split("/", 1)[1].split("+") if text.startswith(PAIR_PREFIX) else [text]


def source_of(item_id: str) -> str:
    """The source a row is reported under: its pairing rule's name, else its corpus ("ravdess/..." -> "ravdess")."""
    rule = rule_of(item_id)
    return f"{PAIR_PREFIX}{rule}" if rule else str(item_id).split("/", 1)[0]


def _pick(rng: np.random.Generator, pool: np.ndarray, size: int) -> np.ndarray:
    """`size` indices from `pool`, without repeats while the pool lasts (then round after round)."""
    if size == 0 or len(pool) == 0:
        return np.zeros(0, dtype=np.int64)
    rounds = -(-size // len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(rounds)])[:size]


def _sorted_by_id(rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return rows[np.argsort(ids[rows], kind="stable")]


def pair_items(data: ProtocolData, cfg: PairingConfig = PairingConfig()) -> ProtocolData:
    """`data` with the rows of `cfg.rules` appended (original rows first and unchanged) and `head_weight` set.

    Needs item ids with corpus prefixes (train.demo's) and a class named `cfg.neutral`."""
    if data.ids is None:
        raise ProtocolError("pairing needs item ids (corpus/...) to tell voice items from word items")
    if cfg.neutral not in data.classes:
        raise ProtocolError(f"pairing needs a {cfg.neutral!r} class; the classes are {list(data.classes)}")
    ids = np.asarray(data.ids).astype(str)
    if any(i.startswith(PAIR_PREFIX) for i in ids):
        raise ProtocolError("these items are already paired")
    neutral = data.classes.index(cfg.neutral)
    corpus = np.array([i.split("/", 1)[0] for i in ids])
    is_voice = np.isin(corpus, cfg.voice_corpora)
    top = data.y.argmax(1)
    plain_words = ~is_voice & (data.y[:, neutral] >= 1.0 - 1e-6)
    calm_voice = is_voice & (top == neutral)
    rng = np.random.default_rng(cfg.seed)

    rows: list[tuple[str, int, int, np.ndarray, str]] = []    # rule, voice row, words row, target, group
    for fold in data.fold_ids:
        here = data.folds == fold
        voices = _sorted_by_id(np.flatnonzero(here & is_voice), ids)
        plain = _sorted_by_id(np.flatnonzero(here & plain_words), ids)
        emotional_words = _sorted_by_id(np.flatnonzero(here & ~is_voice & (top != neutral)), ids)
        calm = _sorted_by_id(np.flatnonzero(here & calm_voice), ids)
        emotional_voices = _sorted_by_id(np.flatnonzero(here & is_voice & (top != neutral)), ids)
        share = here.sum() / len(ids)     # each fold gets its share of the counts
        if "voice-plain" in cfg.rules and len(plain):
            partners = _pick(rng, plain, len(voices) * cfg.plain_per_voice)
            for v, w in zip(np.repeat(voices, cfg.plain_per_voice), partners):
                rows.append(("voice-plain", v, w, data.y[v], data.groups[v]))
        if "calm-voice-words" in cfg.rules and len(calm):
            words = _pick(rng, emotional_words, round(cfg.calm_voice_items * share))
            for w, v in zip(words, _pick(rng, calm, len(words))):
                rows.append(("calm-voice-words", v, w, data.y[w], data.groups[w]))
        if "conflict" in cfg.rules and len(emotional_words):
            for v in _pick(rng, emotional_voices, round(cfg.conflict_items * share)):
                others = emotional_words[top[emotional_words] != top[v]]
                if len(others) == 0:
                    continue
                w = others[rng.integers(len(others))]
                target = cfg.conflict_voice_share * data.y[v] + (1 - cfg.conflict_voice_share) * data.y[w]
                rows.append(("conflict", v, w, target, data.groups[v]))
    if not rows:
        return replace(data, head_weight=data.head_weights())

    rule, voice, words = (np.array([r[i] for r in rows]) for i in range(3))
    return replace(
        data,
        audio=np.concatenate([data.audio, data.audio[voice]]),
        text=np.concatenate([data.text, data.text[words]]),
        y=np.concatenate([data.y, np.stack([r[3] for r in rows]).astype(np.float32)]),
        folds=np.concatenate([data.folds, data.folds[voice]]),
        groups=np.concatenate([data.groups, np.array([r[4] for r in rows])]),
        ids=np.concatenate([ids, [f"{PAIR_PREFIX}{r}/{ids[v]}+{ids[w]}" for r, v, w in zip(rule, voice, words)]]),
        head_weight=np.concatenate([data.head_weights(), np.stack([head_weight_row(r) for r in rule])]),
    )


def pairing_counts(ids: Sequence[str]) -> dict[str, int]:
    """Rows per source (corpus, or pair:<rule>) of a paired input, for the model card's pairing table."""
    out: dict[str, int] = {}
    for i in ids:
        out[source_of(i)] = out.get(source_of(i), 0) + 1
    return out
