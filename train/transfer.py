"""How far the voice head carries to a corpus it never heard: leave one voice corpus out.

For each held-out corpus, the final-model recipe (`train.protocol.train_final` at one (lambda_MAI, kappa)) is
trained on every other item (the other voice corpora and all text items) and its AUDIO head scores the held-out
corpus's clips: UAR over the classes that corpus has. This is the rule the demo's training choices are made by
(`python -m train demo --transfer`, see docs/demo-model.md), so that EMOVO stays a check nothing was tuned on.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from train.config import ProtocolConfig, ProtocolData, ProtocolError
from train.fused_check import HeadReadings


def corpus_of(ids: np.ndarray) -> np.ndarray:
    """The corpus of each item: its id up to the first "/" ("ravdess/03-01-..." -> "ravdess"); a row paired by
    train.pairing reads as its rule ("pair:voice-plain")."""
    return np.array([str(i).split("/", 1)[0] for i in ids])


def touches(ids: np.ndarray, corpus: str) -> np.ndarray:
    """Whether each row holds anything of `corpus`: an item of it, or a paired row with its voice or words."""
    from train.pairing import members

    return np.array([any(part.split("/", 1)[0] == corpus for part in members(i)) for i in ids])


def subset(data: ProtocolData, mask: np.ndarray) -> ProtocolData:
    """The items of `data` where `mask` is true, every field kept in step."""
    return replace(data, audio=data.audio[mask], text=data.text[mask], y=data.y[mask], folds=data.folds[mask],
                   groups=data.groups[mask], ids=None if data.ids is None else data.ids[mask],
                   head_weight=None if data.head_weight is None else data.head_weight[mask])


def check_readings(data: ProtocolData, cfg: ProtocolConfig, lambda_mai: float, kappa: float, audio: np.ndarray,
                   text: np.ndarray, truth: np.ndarray) -> dict[int, HeadReadings]:
    """{seed: the three heads on clips outside `data`} (truth: class indices), trained on all of `data`."""
    from train.protocol import train_final

    out = {}
    for seed in cfg.seeds:
        probs = train_final(data, cfg, lambda_mai, kappa, seed).predict(audio, text)
        out[seed] = HeadReadings(probs["A"].numpy(), probs["T"].numpy(), probs["AT"].numpy(), np.asarray(truth))
    return out


def voice_uar(readings: dict[int, HeadReadings]) -> dict[int, float]:
    """{seed: the audio head's UAR} over the classes present in the truth."""
    from train.scoring import uar

    return {seed: uar(r.truth, r.audio.argmax(1))[0] for seed, r in readings.items()}


def check_corpus(data: ProtocolData, cfg: ProtocolConfig, lambda_mai: float, kappa: float, audio: np.ndarray,
                 text: np.ndarray, truth: np.ndarray) -> dict[int, float]:
    """{seed: audio-head UAR} on clips outside `data` (truth: class indices), trained on all of `data`."""
    return voice_uar(check_readings(data, cfg, lambda_mai, kappa, audio, text, truth))


def leave_one_corpus_out_readings(data: ProtocolData, cfg: ProtocolConfig, lambda_mai: float, kappa: float,
                                  held_out: Sequence[str]) -> dict[str, dict[int, HeadReadings]]:
    """{corpus: {seed: the three heads on that corpus's items, with their own words}} for a model trained on
    every row that holds nothing of it (paired rows with its voices or words are left out too)."""
    if data.ids is None:
        raise ProtocolError("leave-one-corpus-out needs item ids (corpus/...) to tell the corpora apart")
    source = corpus_of(data.ids)
    out: dict[str, dict[int, HeadReadings]] = {}
    for corpus in held_out:
        test = source == corpus
        if not test.any():
            raise ProtocolError(f"no item of corpus {corpus!r}; the corpora are {sorted(set(source))}")
        train = ~touches(data.ids, corpus)
        if not train.any():
            raise ProtocolError(f"corpus {corpus!r} holds every item: nothing would be left to train on")
        out[corpus] = check_readings(subset(data, train), cfg, lambda_mai, kappa, data.audio[test],
                                     data.text[test], data.y[test].argmax(1))
    return out


def leave_one_corpus_out(data: ProtocolData, cfg: ProtocolConfig, lambda_mai: float, kappa: float,
                         held_out: Sequence[str]) -> dict[str, dict[int, float]]:
    """{corpus: {seed: audio-head UAR on that corpus}} for a model trained without it, one per seed of cfg."""
    readings = leave_one_corpus_out_readings(data, cfg, lambda_mai, kappa, held_out)
    return {corpus: voice_uar(per_seed) for corpus, per_seed in readings.items()}


def fused_transfer_table(readings: dict[str, dict[int, HeadReadings]], classes: Sequence[str]) -> str:
    """Markdown: per corpus left out (or checked), the three heads' UAR and the invented share, mean over seeds."""
    from train.fused_check import fused_scores

    lines = ["| voice corpus, its own words | voice UAR | words UAR | fused UAR | fused top neither expert's |",
             "|---|---|---|---|---|"]
    for corpus, per_seed in readings.items():
        scores = [fused_scores(r, classes) for r in per_seed.values()]
        mean = {k: float(np.mean([s[k] for s in scores])) for k in ("uar_audio", "uar_text", "uar_fused", "invented")}
        lines.append(f"| {corpus} | {mean['uar_audio']:.3f} | {mean['uar_text']:.3f} | {mean['uar_fused']:.3f} | "
                     f"{mean['invented']:.1%} |")
    return "\n".join(lines)


def transfer_table(scores: dict[str, dict[int, float]], check: dict[str, dict[int, float]] | None = None) -> str:
    """Markdown: one row per held-out corpus (UAR per seed, mean +- std), the mean over them, then the rows of
    `check` (corpora nothing is chosen by, scored by a model trained on every corpus)."""
    seeds = sorted({s for per_seed in scores.values() for s in per_seed})
    lines = ["| voice corpus left out | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |",
             "|---|" + "---|" * (len(seeds) + 1)]

    def row(name: str, per_seed: dict[int, float]) -> str:
        values = np.array([per_seed[s] for s in seeds])
        return (f"| {name} | " + " | ".join(f"{v:.3f}" for v in values)
                + f" | {values.mean():.3f} ± {values.std():.3f} |")

    lines += [row(corpus, per_seed) for corpus, per_seed in scores.items()]
    means = [np.mean(list(per_seed.values())) for per_seed in scores.values()]
    lines.append("| mean over the corpora left out | " + " | ".join("" for _ in seeds) + f" | {np.mean(means):.3f} |")
    lines += [row(f"check: {name}, trained on every corpus", per_seed) for name, per_seed in (check or {}).items()]
    return "\n".join(lines)
