"""Emotion corpora with per-rater votes -> a `Corpus` of `Item`s: `load_dataset(name, root, **options)`.

    corpus.py     the Corpus and Item types, fold assignment, the helpers every loader shares
    licensed.py   IEMOCAP and MSP-Podcast (the user's licensed releases), a generic votes CSV
    public.py     RAVDESS, nEMO, EMOVO (speech), EmotionLines, GoEmotions (text)
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from train.datasets.corpus import Corpus, DatasetError, Item
from train.datasets.licensed import (CsvOptions, IemocapOptions, MspPodcastOptions, load_iemocap,
                                     load_msp_podcast, load_votes_csv)
from train.datasets.public import (EmotionLinesOptions, EmovoOptions, GoEmotionsOptions, NemoOptions,
                                   RavdessOptions, load_emotionlines, load_emovo, load_goemotions, load_nemo,
                                   load_ravdess)

__all__ = ["DATASETS", "LICENCES", "Corpus", "DatasetError", "Item", "load_dataset", "register_dataset"]

# What the licences of the corpora this trainer knows ask of a model trained on them (model card).
LICENCES = {
    "iemocap": "IEMOCAP is distributed by USC SAIL under a research licence; check it before sharing weights.",
    "msp-podcast": "MSP-Podcast is distributed by UT Dallas under an academic licence; check it before sharing "
                   "weights.",
    "ravdess": "RAVDESS (Livingstone & Russo 2018) is CC BY-NC-SA 4.0: weights derived from it are shared "
               "under CC BY-NC-SA 4.0 (attribution, non-commercial, share-alike).",
    "emotionlines": "EmotionLines (Hsu et al. 2018) is released for research use.",
    "nemo": "nEMO (Christop 2024) is CC BY-NC-SA 4.0: weights derived from it are shared under CC BY-NC-SA 4.0 "
            "(attribution, non-commercial, share-alike).",
    "goemotions": "GoEmotions (Demszky et al. 2020) is Apache-2.0.",
    "emovo": "EMOVO (Costantini et al. 2014) is released for research use.",
}

Loader = Callable[[Path, object], Corpus]
# name -> (options dataclass, loader)
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
    """Add a corpus to `load_dataset`: `options` is a dataclass of its keyword options."""
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


def _root(root: Path | str | None, dataset: str) -> Path:
    if root is None:
        raise DatasetError(f"dataset {dataset!r} needs a root folder (--root)")
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{dataset} root {root} does not exist")
    return root


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
    return loader(_root(root, key), _options(key, cls, options))
