"""The anchors `python -m train evaluate` scores beside a checkpoint, to say what its numbers are worth.

* spectral tilt: the share of spectral energy above 1 kHz in the louder half of the frames, one acoustic
  number with no training (used as an angry-vs-neutral score);
* eGeMAPS + LR: the 88 eGeMAPSv02 functionals (opensmile), standardised, and a class-balanced logistic
  regression;
* TF-IDF + LR: word 1-2 grams (sublinear tf, min_df 2) and a class-balanced logistic regression.

Which corpora train them is the evaluation's choice (train.evaluate); here are only the methods.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from train.workflow import RunError

log = logging.getLogger("train")

EGEMAPS_ENCODER = "opensmile-egemaps-v02"   # the feature cache's encoder name for these vectors
EGEMAPS_DIM = 88
TILT_CUTOFF_HZ = 1000.0


def spectral_tilt(samples: np.ndarray, sr: int = 16000) -> float:
    """Share of spectral power above 1 kHz over the frames at least as energetic as the median frame.

    25 ms Hann-windowed frames every 10 ms; frame loudness = frame energy. A silent clip gives 0.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    size, hop = round(0.025 * sr), round(0.010 * sr)
    x = np.pad(x, (0, max(0, size - len(x))))
    frames = np.lib.stride_tricks.sliding_window_view(x, size)[::hop] * np.hanning(size)
    energy = np.sum(frames ** 2, axis=1)
    power = np.abs(np.fft.rfft(frames[energy >= np.median(energy)], axis=1)) ** 2
    total = power.sum()
    high = power[:, np.fft.rfftfreq(size, 1.0 / sr) > TILT_CUTOFF_HZ].sum()
    return float(high / total) if total > 0 else 0.0


def egemaps_features(paths: Sequence[Path], cache_dir: Path, progress: bool = True,
                     batch_size: int = 64) -> tuple[np.ndarray, list[int]]:
    """(N, 88) eGeMAPSv02 functionals of the readable files and their indices in `paths`.

    Vectors are cached by the file's sha1 (kind "egemaps"), one shard per finished batch, so a stopped
    extraction resumes; unreadable files are logged and left out.
    """
    from tqdm.auto import tqdm

    from amber2.audio import SAMPLE_RATE, AudioError, load_audio
    from train.features import ShardCache, sha1_file

    cache = ShardCache(Path(cache_dir), "egemaps", EGEMAPS_ENCODER, EGEMAPS_DIM)
    keys: dict[int, str] = {}
    for i, path in enumerate(paths):
        try:
            keys[i] = sha1_file(Path(path))
        except OSError as exc:
            log.warning("eGeMAPS: cannot read %s: %s", path, exc.strerror or exc)
    todo = {k: Path(paths[i]) for i, k in keys.items() if k not in cache.vectors}
    smile = None
    done_keys, done = [], []
    for key, path in tqdm(todo.items(), desc="eGeMAPS functionals", unit="clip", disable=not progress,
                          dynamic_ncols=True):
        try:
            samples = load_audio(path)
        except (AudioError, OSError) as exc:
            log.warning("eGeMAPS: skipped %s: %s", path, exc)
            continue
        if smile is None:
            import opensmile

            smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                    feature_level=opensmile.FeatureLevel.Functionals)
        done_keys.append(key)
        done.append(smile.process_signal(samples, SAMPLE_RATE).to_numpy(dtype=np.float32).ravel())
        if len(done) >= batch_size:
            cache.put(done_keys, np.stack(done))
            done_keys, done = [], []
    if done:
        cache.put(done_keys, np.stack(done))
    cache.compact()
    kept = [i for i in range(len(paths)) if keys.get(i) in cache.vectors]
    x = np.stack([cache.vectors[keys[i]] for i in kept]) if kept else np.zeros((0, EGEMAPS_DIM), np.float32)
    return x, kept


def balanced_lr_probs(features, train_x, train_y: np.ndarray, eval_x, n_classes: int, what: str) -> np.ndarray:
    """Fit `features` (a sklearn transformer) + LogisticRegression(max_iter=2000, class_weight="balanced") on
    (train_x, class indices train_y); (N, n_classes) probabilities for eval_x (0 for classes absent from
    training). `what` names the training items in the error."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if len(set(np.asarray(train_y).tolist())) < 2:
        raise RunError(f"the {what} anchor needs training items of at least two classes")
    clf = make_pipeline(features, LogisticRegression(max_iter=2000, class_weight="balanced"))
    clf.fit(train_x, train_y)
    probs = np.zeros((len(eval_x), n_classes))
    probs[:, clf.classes_] = clf.predict_proba(eval_x)
    return probs


def egemaps_anchor(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, n_classes: int) -> np.ndarray:
    """Standardised eGeMAPS functionals + balanced logistic regression (`balanced_lr_probs`)."""
    from sklearn.preprocessing import StandardScaler

    return balanced_lr_probs(StandardScaler(), np.nan_to_num(train_x), train_y, np.nan_to_num(eval_x), n_classes,
                             "eGeMAPS")


def tfidf_anchor(train_texts: Sequence[str], train_y: np.ndarray, eval_texts: Sequence[str],
                 n_classes: int) -> np.ndarray:
    """TF-IDF (word 1-2 grams, sublinear tf, min_df=2) + balanced logistic regression (`balanced_lr_probs`)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return balanced_lr_probs(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2), list(train_texts),
                             train_y, list(eval_texts), n_classes, "TF-IDF")
