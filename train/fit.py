"""Training the runs of one ensemble: the loss of every run at once, the epochs, each run's best epoch.

`EnsembleLoss` scores all runs of a step through `amber2.losses` (vmapped over the runs of each method), so
the loss is written once, in the library. `train_ensemble` is the training loop: shuffled batches per seed
group, one AdamW over the stacked weights (elementwise, so R independent optimizers), a validation pass after
every epoch, and each run's best-validation weights kept.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
from torch import Tensor

from amber2.losses import HEADS, METHODS
from train.config import SELECTION, ProtocolConfig, ProtocolError, RunSpec
from train.ensemble import FastEnsemble, GenericEnsemble

Ensemble = Union[FastEnsemble, GenericEnsemble]


class EnsembleLoss:
    """Per-run training losses of an ensemble through `amber2.losses`, vmapped over the runs of each method.

    Returns the logit gradients of the sum of the runs' losses: runs share no weights, so each run gets the
    gradient of its own loss.
    """

    def __init__(self, runs: Sequence[RunSpec], cfg: ProtocolConfig, class_weights: Tensor | None,
                 device: torch.device):
        from amber2.losses import training_loss

        self.R = len(runs)
        self.methods = {}
        for method in METHODS:
            idx = [r for r, run in enumerate(runs) if run.method == method]
            if idx:
                self.methods[method] = torch.tensor(idx, device=device)
        amber2_runs = [runs[r] for r in self.methods.get("amber2", torch.tensor([])).tolist()]
        self.lambda_mai = torch.tensor([r.lambda_mai for r in amber2_runs], dtype=torch.float32, device=device)
        self.kappa = torch.tensor([r.kappa for r in amber2_runs], dtype=torch.float32, device=device)
        if "cbce" in self.methods and class_weights is None:
            raise ProtocolError("the CB-CE runs need class weights")
        self.class_weights = None if class_weights is None else class_weights.to(device)

        def amber2_run(logits, y, heads, lambda_mai, kappa):      # logits: (H, B, C) in HEADS order
            return training_loss(dict(zip(HEADS, logits)), y, cfg.loss_config(lambda_mai, kappa),
                                 head_weight=heads)[0]

        def cbce_run(logits, y, heads, weights):
            lc = cfg.loss_config(0.0, 0.0, method="cbce")
            return training_loss(dict(zip(HEADS, logits)), y, lc, class_weights=weights, head_weight=heads)[0]

        self._amber2 = torch.func.vmap(amber2_run)
        self._cbce = torch.func.vmap(cbce_run, in_dims=(0, 0, 0, None))

    def __call__(self, logits: Sequence[Tensor], y: Tensor, group_size: int,
                 head_weight: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """logits: H x (R, C, B) feature-major, in HEADS order; y: (S, B, C); head_weight: (S, B, H) weights of
        each head's rater term (ProtocolData.head_weight; None: all ones). Returns (H x (R, C, B) gradients, (R,)
        losses)."""
        leaves = [lg.detach().transpose(1, 2).contiguous().requires_grad_() for lg in logits]
        S, B, C = y.shape
        if head_weight is None:
            head_weight = y.new_ones(S, B, len(HEADS))
        y_runs = y.unsqueeze(1).expand(S, group_size, B, C).reshape(self.R, B, C)
        h_runs = head_weight.unsqueeze(1).expand(S, group_size, B, head_weight.shape[-1]).reshape(self.R, B, -1)
        losses = torch.zeros(self.R, device=y.device)
        for method, idx in self.methods.items():
            args = [t.index_select(0, idx) for t in (torch.stack(leaves, 1), y_runs, h_runs)]
            part = self._amber2(*args, self.lambda_mai, self.kappa) if method == "amber2" else self._cbce(
                *args, self.class_weights)
            losses = losses.index_add(0, idx, part)
        grads = torch.autograd.grad(losses.sum(), leaves)
        return [g.transpose(1, 2).contiguous() for g in grads], losses.detach()


def _scores(y_true: np.ndarray, probs: np.ndarray, metric: str) -> np.ndarray:
    """The selection metric of every run: probs (R, N, C) -> (R,), via amber2.metrics."""
    from amber2.metrics import classification_metrics, distribution_metrics

    fn = distribution_metrics if SELECTION[metric][0] == "distribution" else classification_metrics
    return np.array([fn(y_true, p)[metric] for p in probs], dtype=np.float64)


def _better(new: np.ndarray, old: np.ndarray, metric: str) -> np.ndarray:
    return new > old if SELECTION[metric][1] else new < old


@dataclass
class TrainedEnsemble:
    ensemble: Ensemble
    val_curve: np.ndarray        # (R, epochs) validation score of the student head after each epoch
    best_epoch: np.ndarray       # (R,) 1-based
    best_val: np.ndarray         # (R,)


@functools.cache
def retain_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the OS (once per process).

    A training step allocates and frees about 100 MB of tensors of the same sizes every time. By default glibc
    serves blocks this large with fresh mmaps, or trims them off the heap when freed, so every step pays some
    16,000 page faults: measured 233 ms a step instead of 148 in bfloat16 (201 vs 193 in float32) at the
    protocol's size. Returns whether the setting took (False off glibc, where nothing is changed).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 31))
    except (OSError, AttributeError):
        return False


def _optimizer(params: list[Tensor], cfg: ProtocolConfig) -> torch.optim.Optimizer:
    # AdamW is elementwise, so one optimizer over the stacked tensors is R independent optimizers
    kw = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    try:
        return torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, foreach=True, **kw)


def train_ensemble(ens: Ensemble, runs: Sequence[RunSpec], tensors: dict[str, Tensor], fit_idx: np.ndarray,
                   val_idx: np.ndarray, cfg: ProtocolConfig, class_weights: Tensor | None,
                   shuffle_seeds: Sequence[int], y_val: np.ndarray) -> TrainedEnsemble:
    """Train every run of `ens` for cfg.max_epochs; leave each run's best-validation weights in `ens`.

    tensors: "audio", "text", "y" and optionally "head_weight" (ProtocolData.head_weights) for all items on the
    ensemble's device. shuffle_seeds: one per seed group;
    each group draws its own permutation of the fit items every epoch.
    """
    dev, S, P, R = ens.device, ens.S, ens.P, ens.R
    retain_freed_memory()
    loss_fn = EnsembleLoss(runs, cfg, class_weights, dev)
    opt = _optimizer(list(ens.params.values()), cfg)
    best = {n: t.detach().clone() for n, t in ens.params.items()}
    generators = [torch.Generator().manual_seed(int(s)) for s in shuffle_seeds]
    fit_t = torch.as_tensor(fit_idx, device=dev)
    val_t = torch.as_tensor(val_idx, device=dev)
    audio_val, text_val = tensors["audio"][val_t], tensors["text"][val_t]
    student = HEADS.index(cfg.student)
    curve = np.full((R, cfg.max_epochs), np.nan)
    best_val = np.full(R, np.inf if not SELECTION[cfg.selection_metric][1] else -np.inf)
    best_epoch = np.zeros(R, dtype=np.int64)
    n = len(fit_idx)
    head_weight = tensors.get("head_weight")
    for epoch in range(cfg.max_epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(dev)   # (S, n)
        for start in range(0, n, cfg.batch_size):
            rows = fit_t[order[:, start:start + cfg.batch_size]].reshape(-1)
            b = rows.numel() // S
            xa = tensors["audio"].index_select(0, rows).view(S, b, -1)
            xt = tensors["text"].index_select(0, rows).view(S, b, -1)
            y = tensors["y"].index_select(0, rows).view(S, b, -1)
            heads = None if head_weight is None else head_weight.index_select(0, rows).view(S, b, -1)
            logits, cache = ens.forward(xa, xt, train=True)
            grads, _ = loss_fn(logits, y, P, heads)
            ens.backward(cache, grads)
            opt.step()
        probs = ens.predict(audio_val, text_val, cfg.eval_rows)[:, student].cpu().numpy()
        scores = _scores(y_val, probs, cfg.selection_metric)
        curve[:, epoch] = scores
        improved = _better(scores, best_val, cfg.selection_metric)
        best_val = np.where(improved, scores, best_val)
        best_epoch = np.where(improved, epoch + 1, best_epoch)
        if improved.any():
            mask = torch.as_tensor(improved, device=dev)
            with torch.no_grad():
                for name in ens.params:
                    ens.run_view(name, best[name])[mask] = ens.run_view(name)[mask]
    with torch.no_grad():
        for name in ens.params:
            ens.params[name].copy_(best[name])
    return TrainedEnsemble(ens, curve, best_epoch, best_val)


