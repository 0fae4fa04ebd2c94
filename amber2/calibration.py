"""Temperature scaling: one number per head that makes its bars as sure as it is right (Guo et al. 2017).

A head's probabilities p become softmax(log p / T): T > 1 flattens over-confident bars, T < 1 sharpens shy
ones, and the top class never changes. T is fitted on held-out items (the protocol's validation split) by
minimising the soft-label negative log-likelihood -sum_k y_k log p_k, the proper scoring rule for the raters'
distribution, over a log-spaced grid: no optimiser, the same answer on every machine, vectorised over runs
and heads. A checkpoint stores its heads' temperatures in config.json (`AmbER2Config.temperatures`); one
without them reads at T = 1.
"""
from __future__ import annotations

import numpy as np

# T from 1/8 to 8 in 241 steps of 1.75%: finer than the spread of T between seeds of one run
TEMPERATURE_GRID = np.exp(np.linspace(np.log(0.125), np.log(8.0), 241))
_EPS = 1e-12


def apply_temperature(probs: np.ndarray, temperature: np.ndarray | float) -> np.ndarray:
    """softmax(log(probs) / T) over the last axis; `temperature` broadcasts against probs[..., 0, 0]
    (one T per leading index: (R, H) temperatures for (R, H, N, C) probabilities)."""
    t = np.asarray(temperature, dtype=np.float64)[..., None, None]
    logits = np.log(np.clip(probs, _EPS, None)) / t
    logits -= logits.max(-1, keepdims=True)
    out = np.exp(logits)
    return (out / out.sum(-1, keepdims=True)).astype(probs.dtype)


def soft_nll(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean over items of -sum_k y_k log p_k: (..., N, C), (N, C) -> (...)."""
    return -(y * np.log(np.clip(probs, _EPS, None))).sum(-1).mean(-1)


def fit_temperature(probs: np.ndarray, y: np.ndarray, grid: np.ndarray = TEMPERATURE_GRID) -> np.ndarray:
    """The grid temperature with the lowest soft NLL on (probs, y): (..., N, C), (N, C) -> (...).

    Equal scores go to the temperature nearest 1 (the grid is searched from T = 1 outwards)."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if probs.shape[-2:] != y.shape:
        raise ValueError(f"probabilities {probs.shape} and labels {y.shape} do not match")
    log_p = np.log(np.clip(probs, _EPS, None))
    order = np.argsort(np.abs(np.log(grid)), kind="stable")
    best_t = np.ones(probs.shape[:-2])
    best = np.full(probs.shape[:-2], np.inf)
    for t in grid[order]:
        z = log_p / t
        log_q = z - np.logaddexp.reduce(z, axis=-1, keepdims=True)
        nll = -(y * log_q).sum(-1).mean(-1)
        better = nll < best - 1e-12
        best = np.where(better, nll, best)
        best_t = np.where(better, t, best_t)
    return best_t
