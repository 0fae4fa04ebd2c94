"""Metrics against independent references: scipy, numpy.corrcoef, scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import accuracy_score, f1_score

from amber2.labels import entropy
from amber2.metrics import (ALL_METRICS, MetricsError, all_metrics, ambiguity_bin_edges, binned_metrics,
                            classification_metrics, distribution_metrics)


def _probs(n, c, seed, alpha=1.0):
    return np.random.default_rng(seed).dirichlet(np.full(c, alpha), size=n)


def _votes(n, c, seed):
    """Soft labels from a few integer votes: zeros and ties, as real rater distributions have."""
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, c, size=rng.integers(1, 6)), minlength=c) for _ in range(n)])
    return counts / counts.sum(1, keepdims=True)


def test_distribution_metrics_against_references():
    y, p = _votes(200, 4, 1), _probs(200, 4, 2)
    m = distribution_metrics(y, p)
    assert m["js"] == pytest.approx(np.mean([jensenshannon(a, b) for a, b in zip(y, p)]), abs=1e-12)
    assert m["bc"] == pytest.approx(np.mean([np.sum(np.sqrt(a * b)) for a, b in zip(y, p)]), abs=1e-12)
    r2 = [np.corrcoef(a, b)[0, 1] ** 2 if np.std(a) > 0 else 0.0 for a, b in zip(y, p)]
    assert m["r2"] == pytest.approx(np.mean(r2), abs=1e-12)


def test_perfect_and_uniform_predictions():
    y = _votes(50, 4, 3)
    assert distribution_metrics(y, y) == pytest.approx({"js": 0.0, "jsd_bits": 0.0, "bc": 1.0, "r2": 1.0}, abs=1e-7)
    uniform = np.full_like(y, 0.25)
    m = distribution_metrics(y, uniform)
    assert m["r2"] == 0.0 and np.isfinite(list(m.values())).all()
    disjoint = distribution_metrics(np.array([[1.0, 0]]), np.array([[0, 1.0]]))
    assert disjoint["js"] == pytest.approx(np.sqrt(np.log(2))) and disjoint["bc"] == 0.0


def test_classification_metrics_match_sklearn():
    y, p = _votes(300, 5, 4), _probs(300, 5, 5)
    t, q = y.argmax(1), p.argmax(1)
    m = classification_metrics(y, p)
    assert m["acc"] == pytest.approx(accuracy_score(t, q))
    assert m["f1"] == pytest.approx(f1_score(t, q, average="macro"))
    assert m["wf1"] == pytest.approx(f1_score(t, q, average="weighted"))


def test_classes_missing_from_one_side_follow_sklearn():
    # class 3 never true and never predicted; class 2 predicted but never true
    y = np.eye(4)[[0, 0, 1, 1, 1]]
    p = np.eye(4)[[0, 2, 1, 1, 0]]
    m = classification_metrics(y, p)
    t, q = y.argmax(1), p.argmax(1)
    assert m["f1"] == pytest.approx(f1_score(t, q, average="macro", zero_division=0))
    assert m["wf1"] == pytest.approx(f1_score(t, q, average="weighted", zero_division=0))


def test_ties_go_to_the_first_class():
    y = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])
    assert classification_metrics(y, np.array([[0.6, 0.4, 0.0], [0.0, 0.6, 0.4]]))["acc"] == 1.0
    assert classification_metrics(y, np.array([[0.4, 0.6, 0.0], [0.0, 0.4, 0.6]]))["acc"] == 0.0


def test_jsd_bits_is_scipys_base2_divergence():
    """The paper's most likely JS: scipy's base-2 Jensen-Shannon distance, squared (a divergence in bits)."""
    y, p = _votes(200, 5, 11), _probs(200, 5, 12)
    m = distribution_metrics(y, p)
    assert m["jsd_bits"] == pytest.approx(np.mean([jensenshannon(a, b, base=2) ** 2 for a, b in zip(y, p)]),
                                          abs=1e-12)
    assert distribution_metrics(np.array([[1.0, 0]]), np.array([[0, 1.0]]))["jsd_bits"] == pytest.approx(1.0)


def _ece_reference(y, p, n_bins=10):
    """ECE written out item by item, as the issue defines it."""
    bins = [[] for _ in range(n_bins)]
    for a, b in zip(y, p):
        conf = float(np.max(b))
        k = min(int(np.floor(conf * n_bins + 1e-12)), n_bins - 1)
        bins[k].append((conf, float(np.argmax(b) == np.argmax(a))))
    return sum(len(items) / len(y) * abs(np.mean([c for _, c in items]) - np.mean([f for f, _ in items]))
               for items in bins if items)


def test_ece_matches_a_direct_implementation():
    from amber2.metrics import calibration_metrics, reliability

    y, p = _votes(500, 4, 13), _probs(500, 4, 14, alpha=0.3)
    assert calibration_metrics(y, p)["ece"] == pytest.approx(_ece_reference(y, p), abs=1e-12)
    curve = reliability(y, p)
    assert sum(curve["n"]) == 500 and len(curve["edges"]) == 11
    confident = np.eye(4)[y.argmax(1)]                      # always right, always sure: perfectly calibrated
    assert calibration_metrics(y, confident)["ece"] == pytest.approx(0.0)
    wrong = np.eye(4)[(y.argmax(1) + 1) % 4]                  # always wrong, always sure: ECE 1
    assert calibration_metrics(y, wrong)["ece"] == pytest.approx(1.0)


def test_all_metrics_has_every_key():
    assert tuple(all_metrics(_votes(10, 3, 6), _probs(10, 3, 7))) == ALL_METRICS


@pytest.mark.parametrize("y, p, match", [
    (np.ones((3, 2)) / 2, np.ones((3, 3)) / 3, "same shape"),
    (np.array([[0.5, 0.6]]), np.array([[0.5, 0.5]]), "sums to 1.1"),
    (np.array([[np.nan, 1.0]]), np.array([[0.5, 0.5]]), "finite"),
    (np.zeros((0, 2)), np.zeros((0, 2)), "no items"),
])
def test_bad_inputs_are_refused(y, p, match):
    with pytest.raises(MetricsError, match=match):
        all_metrics(y, p)


def test_width_bins_cover_zero_to_log_c():
    y = _votes(40, 4, 8)
    edges = ambiguity_bin_edges(y, n_bins=4, mode="width")
    assert edges.tolist() == pytest.approx(np.linspace(0, np.log(4), 5).tolist())


def test_quantile_bins_are_equal_count():
    y = _probs(400, 4, 9)  # continuous entropies: no ties
    rows = binned_metrics(y, _probs(400, 4, 10), ambiguity_bin_edges(y, 4, "quantile"))
    assert [r["n"] for r in rows] == [100, 100, 100, 100]


def test_binned_metrics_partition_items_and_match_subset_metrics():
    y, p = _votes(300, 4, 11), _probs(300, 4, 12)
    edges = ambiguity_bin_edges(y, n_bins=3)
    rows = binned_metrics(y, p, edges)
    assert sum(r["n"] for r in rows) == 300
    h = entropy(y)
    for r in rows:
        if r is rows[-1]:
            mask = (h >= r["lo"]) & (h <= r["hi"] + 1e-12)
        else:
            mask = (h >= r["lo"]) & (h < r["hi"])
        assert r["n"] == mask.sum()
        assert r["js"] == pytest.approx(all_metrics(y[mask], p[mask])["js"])


def test_empty_bins_report_zero_and_none():
    y = np.eye(4)[[0, 1, 2, 3, 0]]  # all entropy 0: only the first bin has items
    rows = binned_metrics(y, _probs(5, 4, 13), ambiguity_bin_edges(y, n_bins=4))
    assert rows[0]["n"] == 5
    for r in rows[1:]:
        assert r["n"] == 0 and all(r[k] is None for k in ALL_METRICS)
    with pytest.raises(MetricsError, match='mode must be "width" or "quantile"'):
        ambiguity_bin_edges(y, mode="equal")
