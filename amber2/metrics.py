"""Evaluation metrics exactly as AER-LLM computes them (facts.md §3), overall and per ambiguity bin.

Distribution metrics are computed per utterance and averaged: JS = Jensen-Shannon *distance* (square root of
the divergence, natural log, as AER-LLM's code), JSD bits = the Jensen-Shannon *divergence* in bits (base-2
log, in [0, 1]; most likely the paper's "JS", see `jsd_bits`), BC = Bhattacharyya coefficient, R² = squared
Pearson correlation between the true and predicted class vectors (population statistics; 0 when either vector
is constant, e.g. a uniform prediction, instead of NaN). Classification metrics compare argmax(true) with
argmax(pred), ties to the first index; macro-F1 averages over the classes present in either (scikit-learn's
default), weighted-F1 weights each class by its true support. ECE (expected calibration error) bins the
predicted top probability into 10 equal widths; an item is correct when argmax(pred) = argmax(true); ECE = sum
over bins of n_b/N |accuracy_b - confidence_b|. Inputs are numpy (n, C) probability arrays; outputs are plain floats.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from amber2.errors import UserError
from amber2.labels import entropy

DISTRIBUTION_METRICS = ("js", "jsd_bits", "bc", "r2")
CLASSIFICATION_METRICS = ("acc", "f1", "wf1")
CALIBRATION_METRICS = ("ece",)
ALL_METRICS = DISTRIBUTION_METRICS + CLASSIFICATION_METRICS + CALIBRATION_METRICS
# How reports, model cards and figures name each metric, with the direction that is better.
METRIC_LABELS = {"js": "JS dist. (nat) ↓", "jsd_bits": "JSD (bits) ↓", "bc": "BC ↑", "r2": "R² ↑", "acc": "ACC ↑",
                 "f1": "F1 ↑", "wf1": "W-F1 ↑", "ece": "ECE ↓"}
HIGHER_IS_BETTER = {"js": False, "jsd_bits": False, "bc": True, "r2": True, "acc": True, "f1": True, "wf1": True,
                    "ece": False}
ECE_BINS = 10


class MetricsError(UserError, ValueError):
    """Inputs the metrics cannot score; the message is meant for a person."""


def _check(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != y_pred.shape:
        raise MetricsError(f"expected two (n, C) arrays of the same shape, got {y_true.shape} and {y_pred.shape}")
    if y_true.shape[0] == 0:
        raise MetricsError("no items to score")
    for name, a in (("y_true", y_true), ("y_pred", y_pred)):
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise MetricsError(f"{name} must hold finite, non-negative probabilities")
        bad = np.abs(a.sum(axis=1) - 1.0) > 1e-3
        if bad.any():
            raise MetricsError(f"{name} row {int(np.argmax(bad))} sums to {a[bad][0].sum():.4f}, not 1")
    return y_true, y_pred


def js_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-row Jensen-Shannon distance (natural log, range [0, sqrt(ln 2)]) over the last axis of (..., C)
    distributions (a single (C,) distribution gives a (1,) array)."""
    p, q = np.atleast_2d(p), np.atleast_2d(q)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> np.ndarray:
        ratio = np.where(a > 0, a / np.where(m > 0, m, 1.0), 1.0)
        return (a * np.log(ratio)).sum(axis=-1)

    return np.sqrt(np.clip(0.5 * kl(p) + 0.5 * kl(q), 0.0, None))


def jsd_bits(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-row Jensen-Shannon divergence in bits (base-2 log, range [0, 1]): `js_distance` squared / ln 2.

    The paper's tables most likely report this: for all eight of their rows JS / (1 - BC) lies in 1.09-1.12,
    which the base-2 divergence reaches and the natural-log distance (about 1.4 on our runs) does not."""
    return js_distance(p, q) ** 2 / np.log(2.0)


def r2_per_item(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    pc = p - p.mean(axis=1, keepdims=True)
    qc = q - q.mean(axis=1, keepdims=True)
    denom = np.sqrt((pc**2).sum(axis=1) * (qc**2).sum(axis=1))
    # a constant vector has no correlation to speak of: score 0, the value of a uniform guess
    r = np.divide((pc * qc).sum(axis=1), denom, out=np.zeros(len(p)), where=denom > 1e-12)
    return r**2


def distribution_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """{"js", "jsd_bits", "bc", "r2"}, each the mean over utterances."""
    y_true, y_pred = _check(y_true, y_pred)
    return {
        "js": float(js_distance(y_true, y_pred).mean()),
        "jsd_bits": float(jsd_bits(y_true, y_pred).mean()),
        "bc": float(np.sqrt(y_true * y_pred).sum(axis=1).mean()),
        "r2": float(r2_per_item(y_true, y_pred).mean()),
    }


def _f1_per_class(t: np.ndarray, p: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class F1 (0 where undefined), true support, and which classes occur in either labelling."""
    tp = np.bincount(t[t == p], minlength=n_classes).astype(np.float64)
    support = np.bincount(t, minlength=n_classes).astype(np.float64)
    predicted = np.bincount(p, minlength=n_classes).astype(np.float64)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)
    return f1, support, denom > 0


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """{"acc", "f1" (macro), "wf1" (support-weighted)} on argmax labels."""
    y_true, y_pred = _check(y_true, y_pred)
    t, p = y_true.argmax(axis=1), y_pred.argmax(axis=1)
    f1, support, present = _f1_per_class(t, p, y_true.shape[1])
    return {
        "acc": float((t == p).mean()),
        "f1": float(f1[present].mean()),
        "wf1": float((f1 * support).sum() / support.sum()),
    }


def confidence_bin(confidence: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Equal-width bin of each top probability: lo <= c < hi, 1.0 in the last bin."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)


def reliability(y_true: np.ndarray, y_pred: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, list]:
    """The reliability diagram's numbers: per equal-width bin of the top probability, its edges, the number of
    items, their mean confidence and their accuracy (None in an empty bin)."""
    y_true, y_pred = _check(y_true, y_pred)
    confidence = y_pred.max(axis=1)
    correct = (y_pred.argmax(axis=1) == y_true.argmax(axis=1)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = confidence_bin(confidence, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    conf = np.bincount(idx, weights=confidence, minlength=n_bins)
    acc = np.bincount(idx, weights=correct, minlength=n_bins)
    mean = lambda total: [float(t / n) if n else None for t, n in zip(total, counts)]  # noqa: E731
    return {"edges": edges.tolist(), "n": counts.tolist(), "confidence": mean(conf), "accuracy": mean(acc)}


def _ece(bins: np.ndarray, correct: np.ndarray, confidence: np.ndarray, n_bins: int = ECE_BINS) -> float:
    # sum over bins of n_b/N |accuracy_b - confidence_b| = sum over bins of |sum of (correct - confidence)| / N
    gap = np.bincount(bins, weights=correct - confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / len(bins))


def calibration_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """{"ece"}: expected calibration error of the top probability, 10 equal-width bins."""
    y_true, y_pred = _check(y_true, y_pred)
    confidence = y_pred.max(axis=1)
    correct = (y_pred.argmax(axis=1) == y_true.argmax(axis=1)).astype(np.float64)
    return {"ece": _ece(confidence_bin(confidence), correct, confidence)}


def item_parts(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """What every metric is made of, per item (JS, JSD, BC and R² terms, true and predicted class, top
    probability and its bin), so `metrics_of_items` can score any resample of the items without recomputing."""
    y_true, y_pred = _check(y_true, y_pred)
    confidence = y_pred.max(axis=1)
    return {"js": js_distance(y_true, y_pred), "jsd_bits": jsd_bits(y_true, y_pred),
            "bc": np.sqrt(y_true * y_pred).sum(axis=1), "r2": r2_per_item(y_true, y_pred),
            "t": y_true.argmax(axis=1), "p": y_pred.argmax(axis=1), "confidence": confidence,
            "bin": confidence_bin(confidence)}


def metrics_of_items(parts: dict[str, np.ndarray], rows: np.ndarray, n_classes: int) -> dict[str, float]:
    """`all_metrics` of the items `rows` (repeats allowed, e.g. a bootstrap resample) from `item_parts`."""
    t, p = parts["t"][rows], parts["p"][rows]
    f1, support, present = _f1_per_class(t, p, n_classes)
    correct = (t == p).astype(np.float64)
    return {**{k: float(parts[k][rows].mean()) for k in DISTRIBUTION_METRICS},
            "acc": float(correct.mean()), "f1": float(f1[present].mean()),
            "wf1": float((f1 * support).sum() / support.sum()),
            "ece": _ece(parts["bin"][rows], correct, parts["confidence"][rows])}


def all_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Every metric together: js, jsd_bits, bc, r2, acc, f1, wf1, ece."""
    return {**distribution_metrics(y_true, y_pred), **classification_metrics(y_true, y_pred),
            **calibration_metrics(y_true, y_pred)}


def ambiguity_bin_edges(y_true: np.ndarray, n_bins: int = 4,
                        mode: Literal["width", "quantile"] = "width") -> np.ndarray:
    """Entropy bin edges (n_bins + 1,): "width" splits [0, ln C] evenly, "quantile" gives equal-count bins."""
    y_true = np.asarray(y_true, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape[0] == 0:
        raise MetricsError(f"expected a non-empty (n, C) array of soft labels, got shape {y_true.shape}")
    if n_bins < 1:
        raise MetricsError(f"n_bins must be at least 1, got {n_bins}")
    if mode == "width":
        return np.linspace(0.0, np.log(y_true.shape[1]), n_bins + 1)
    if mode == "quantile":
        return np.quantile(entropy(y_true), np.linspace(0.0, 1.0, n_bins + 1))
    raise MetricsError(f'mode must be "width" or "quantile", got {mode!r}')


def bin_index(y_true: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each item: lo <= H < hi, the last bin closed; entropies outside the edges go to the end bins."""
    edges = np.asarray(edges, dtype=np.float64)
    n_bins = len(edges) - 1
    if n_bins < 1 or np.any(np.diff(edges) < 0):
        raise MetricsError(f"bin edges must be at least two non-decreasing values, got {edges.tolist()}")
    idx = np.searchsorted(edges, entropy(y_true), side="right") - 1
    return np.clip(idx, 0, n_bins - 1)


def binned_metrics(y_true: np.ndarray, y_pred: np.ndarray, edges: np.ndarray) -> list[dict]:
    """Per entropy bin: {"lo", "hi", "n", and every metric}; an empty bin has n=0 and None metrics."""
    y_true, y_pred = _check(y_true, y_pred)
    idx = bin_index(y_true, edges)
    rows = []
    for b in range(len(edges) - 1):
        mask = idx == b
        n = int(mask.sum())
        scores = all_metrics(y_true[mask], y_pred[mask]) if n else dict.fromkeys(ALL_METRICS)
        rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": n, **scores})
    return rows
