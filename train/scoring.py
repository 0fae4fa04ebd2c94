"""How an evaluation scores a classifier's predictions on labelled clips or sentences: UAR and each class's
recall (over the classes present), accuracy, angry-vs-neutral ROC AUC and the confusion counts.

Truth is a class index per item (the majority label of its votes); predictions are (N, C) probabilities in the
model's label space.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def uar(y_true: Sequence, y_pred: Sequence, classes: Sequence | None = None) -> tuple[float, dict[str, float]]:
    """Unweighted average recall over `classes` (default: those in y_true) and each class's recall."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = list(classes) if classes is not None else sorted(set(y_true.tolist()))
    recall = {}
    for c in classes:
        mask = y_true == c
        if not mask.any():
            raise ValueError(f"class {c!r} has no item in y_true: its recall is undefined")
        recall[str(c)] = float(np.mean(y_pred[mask] == c))
    return float(np.mean(list(recall.values()))), recall


def angry_neutral_auc(y_true: Sequence[str], scores: Sequence[float]) -> float | None:
    """ROC AUC of `scores` (higher = angrier) over the clips labelled angry or neutral; None without both."""
    from sklearn.metrics import roc_auc_score

    y, s = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    mask = (y == "angry") | (y == "neutral")
    positive = y[mask] == "angry"
    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, s[mask]))


def classifier_scores(probs: np.ndarray, truth: np.ndarray, classes: Sequence[str]) -> dict:
    """UAR, accuracy, per-class recall (over the classes in `truth`) and angry-vs-neutral AUC (p(angry))."""
    names = np.asarray(classes)
    true_names, pred_names = names[truth], names[np.argmax(probs, axis=1)]
    present = [c for c in classes if c in set(true_names.tolist())]
    score, recall = uar(true_names, pred_names, present)
    auc = angry_neutral_auc(true_names, probs[:, list(classes).index("angry")]) if "angry" in classes else None
    return {"n_clips": int(len(truth)), "uar": score, "accuracy": float(np.mean(true_names == pred_names)),
            "recall": recall, "auc_angry_neutral": auc}


def confusion(truth: np.ndarray, pred: np.ndarray, rows: Sequence[int], n_classes: int) -> np.ndarray:
    """Counts: one row per true class in `rows`, one column per class of the label space."""
    counts = np.zeros((len(rows), n_classes), dtype=np.int64)
    row_of = {c: r for r, c in enumerate(rows)}
    for t, p in zip(truth, pred):
        counts[row_of[int(t)], int(p)] += 1
    return counts


def head_scores(probs: np.ndarray, truth: np.ndarray, classes: Sequence[str]) -> dict:
    """`classifier_scores` + the confusion counts (rows: the true classes present; columns: every class)."""
    rows = sorted(set(truth.tolist()))
    scores = classifier_scores(probs, truth, classes)
    counts = confusion(truth, np.argmax(probs, axis=1), rows, len(classes))
    scores["confusion"] = {"rows": [classes[k] for k in rows], "columns": list(classes), "counts": counts.tolist()}
    return scores


def class_summary(truth: np.ndarray, classes: Sequence[str]) -> dict:
    """The classes present in `truth` (label-space order), their counts, and chance UAR."""
    present = [classes[k] for k in sorted(set(truth.tolist()))]
    names = np.asarray(classes)[truth]
    return {"classes": present, "class_counts": {c: int(np.sum(names == c)) for c in present},
            "chance": 1.0 / len(present)}
