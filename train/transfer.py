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


def corpus_of(ids: np.ndarray) -> np.ndarray:
    """The corpus of each item: its id up to the first "/" ("ravdess/03-01-..." -> "ravdess")."""
    return np.array([str(i).split("/", 1)[0] for i in ids])


def subset(data: ProtocolData, mask: np.ndarray) -> ProtocolData:
    """The items of `data` where `mask` is true, every field kept in step."""
    return replace(data, audio=data.audio[mask], text=data.text[mask], y=data.y[mask], folds=data.folds[mask],
                   groups=data.groups[mask], ids=None if data.ids is None else data.ids[mask])


def check_corpus(data: ProtocolData, cfg: ProtocolConfig, lambda_mai: float, kappa: float, audio: np.ndarray,
                 text: np.ndarray, truth: np.ndarray) -> dict[int, float]:
    """{seed: audio-head UAR} on clips outside `data` (truth: class indices), trained on all of `data`."""
    from train.protocol import train_final
    from train.scoring import uar

    scores = {}
    for seed in cfg.seeds:
        probs = train_final(data, cfg, lambda_mai, kappa, seed).predict(audio, text)["A"].numpy()
        scores[seed] = uar(truth, probs.argmax(1))[0]
    return scores


def leave_one_corpus_out(data: ProtocolData, cfg: ProtocolConfig, lambda_mai: float, kappa: float,
                         held_out: Sequence[str]) -> dict[str, dict[int, float]]:
    """{corpus: {seed: audio-head UAR on that corpus}} for a model trained without it, one per seed of cfg."""
    if data.ids is None:
        raise ProtocolError("leave-one-corpus-out needs item ids (corpus/...) to tell the corpora apart")
    source = corpus_of(data.ids)
    scores: dict[str, dict[int, float]] = {}
    for corpus in held_out:
        test = source == corpus
        if not test.any():
            raise ProtocolError(f"no item of corpus {corpus!r}; the corpora are {sorted(set(source))}")
        if test.all():
            raise ProtocolError(f"corpus {corpus!r} holds every item: nothing would be left to train on")
        scores[corpus] = check_corpus(subset(data, ~test), cfg, lambda_mai, kappa, data.audio[test],
                                      data.text[test], data.y[test].argmax(1))
    return scores


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
