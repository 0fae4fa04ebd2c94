"""Eq. 5's expert weights u_A, u_T over a range of kappa: the numbers behind the app's Learn tab.

Computed with the training loss's own `amber2.losses.expert_weights`, so what a visitor sees is what trains.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from amber2.losses import expert_weights, js_divergence

DEFAULT_KAPPAS = np.linspace(0.0, 16.0, 65)


@dataclass(frozen=True)
class WeightCurve:
    """Expert weights u_A, u_T (Eq. 5) over a range of kappa, with the distances D_m behind them."""

    kappas: np.ndarray      # (K,)
    u_audio: np.ndarray     # (K,)
    u_text: np.ndarray      # (K,)
    d_audio: float          # JS(p_A || y)
    d_text: float           # JS(p_T || y)

    def at(self, kappa: float) -> tuple[float, float]:
        """(u_A, u_T) at the grid point nearest to `kappa`."""
        i = int(np.argmin(np.abs(self.kappas - kappa)))
        return float(self.u_audio[i]), float(self.u_text[i])


def expert_weight_curve(p_audio: np.ndarray, p_text: np.ndarray, target: np.ndarray,
                        kappas: np.ndarray | None = None) -> WeightCurve:
    """u_A and u_T of Eq. 5 (fused head as student) for each kappa, via `amber2.losses.expert_weights`."""
    kappas = DEFAULT_KAPPAS if kappas is None else kappas
    experts = torch.tensor(np.stack([p_audio, p_text]), dtype=torch.float32)[:, None, :]  # (E=2, B=1, C)
    y = torch.tensor(np.asarray(target), dtype=torch.float32)[None, :]                      # (B=1, C)
    if experts.shape[-1] != y.shape[-1]:
        raise ValueError(f"the target has {y.shape[-1]} classes but the predictions have {experts.shape[-1]}")
    with torch.no_grad():
        u = torch.stack([expert_weights(experts, y, float(k))[:, 0] for k in kappas])  # (K, 2)
        d = js_divergence(experts[:, 0, :], y.expand(2, -1))                           # (2,)
    return WeightCurve(kappas=np.asarray(kappas, dtype=float), u_audio=u[:, 0].numpy().astype(float),
                       u_text=u[:, 1].numpy().astype(float), d_audio=float(d[0]), d_text=float(d[1]))
