"""What an evaluation reads: the checkpoint, a labelled voice corpus (with its features), a TSV of labelled
sentences, and the text head's reading of sentences. `python -m train evaluate` (train.evaluate), the fused
check (train.fused_check) and the demo's transfer check (train.demo) all load through here.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from train.workflow import RunError


def load_checkpoint(model_ref: str | Path):
    """The checkpoint, or a one-line RunError."""
    from amber2.model import load_model

    try:
        return load_model(model_ref)
    except ValueError as exc:
        raise RunError(f"cannot load the model: {exc}") from None


def model_name(model_ref: str | Path) -> str:
    return Path(str(model_ref).rstrip("/")).name or str(model_ref)


def load_voices(dataset: str, root: Path, space: str):
    """A voice corpus in the model's label space, with its clips (items without audio left out).

    Folds are not used here: two are asked for, so that a corpus of only two speakers loads.
    """
    from train.datasets import load_dataset

    corpus = load_dataset(dataset, root, space=space, n_folds=2)
    corpus.items = [it for it in corpus.items if it.audio is not None]
    if not corpus.items:
        raise RunError(f"{dataset} at {root} has no clip with audio")
    return corpus


def voice_features(corpus, encoders: tuple, cache_dir: Path, batch_size: int, progress: bool):
    """(clips kept, their features, class index of each) for a voice corpus read with an empty transcript."""
    from train.features import extract_features

    items = [dataclasses.replace(it, transcript="") for it in corpus.items]   # the voice alone
    feats = extract_features(items, *encoders, cache_dir, batch_size, progress=progress)
    clips = [items[i] for i in feats.kept]
    return clips, feats, np.array([int(np.argmax(it.votes)) for it in clips])


def load_sentences(path: Path, classes: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The sentences of a TSV with the header `emotion<TAB>sentence`, and their indices in `classes`."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"sentences file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"cannot read {path} as UTF-8 text: {exc}") from None
    if not lines or [h.strip().lower() for h in lines[0].split("\t")] != ["emotion", "sentence"]:
        raise RunError(f"{path}: the first line must be the header 'emotion<TAB>sentence'")
    index = {c.lower(): k for k, c in enumerate(classes)}
    texts, truth = [], []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        emotion, sep, text = line.partition("\t")
        emotion, text = emotion.strip(), text.strip()
        if not sep or not text or "\t" in text:
            raise RunError(f"{path} line {n}: expected 'emotion<TAB>sentence', got {line[:60]!r}")
        if emotion.lower() not in index:
            raise RunError(f"{path} line {n}: unknown emotion {emotion!r}; the model's classes are "
                           f"{', '.join(classes)}")
        texts.append(text)
        truth.append(index[emotion.lower()])
    if not texts:
        raise RunError(f"{path} has no sentence")
    return texts, np.array(truth)


def text_head_probs(model, sentences: Sequence[str], encoder=None) -> np.ndarray:
    """(N, C) probabilities of the model's text head ("T"), the sentences embedded by `encoder` (default: the
    checkpoint's own text encoder). The audio vector is zeros: the text head never reads it."""
    import torch

    from amber2.encoders import load_text_encoder

    encoder = encoder or load_text_encoder(model.text_encoder)
    text = torch.as_tensor(encoder.embed(list(sentences)), dtype=torch.float32)
    return model.predict(torch.zeros(len(text), model.audio_dim), text)["T"].numpy()
