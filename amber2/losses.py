"""Training objectives: the AmbER² loss (paper Eq. 3-6) and the class-balanced cross-entropy baseline.

Everything here is batched and free of Python control flow on tensor values, so the protocol can train many
runs at once under ``torch.func.vmap`` with ``kappa`` and the lambdas as 0-d tensors.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from amber2.paper import KAPPA_DEFAULT, LAMBDA_MAI_DEFAULT, LAMBDA_RAI
from amber2.heads import HEADS  # "A", "T", "AT": audio, text, fusion (one table: amber2.heads)
METHODS = ("cbce", "amber2")  # the baseline first, as in the paper's tables and every report

Scalar = float | Tensor


@dataclass
class LossConfig:
    """How a batch is scored. The paper's defaults (amber2.paper): student AT, lambda_rai 1.0, lambda_mai in
    {0.3, 0.5, 0.7}, kappa in {2, 4, 8}. The three fields below the paper's are our choices where it is silent."""

    method: str = "amber2"          # "amber2" or "cbce" (the EMO-SUPERB baseline, all three heads)
    student: str = "AT"             # "A", "T" or "AT"; the other two heads are experts
    lambda_rai: Scalar = LAMBDA_RAI
    lambda_mai: Scalar = LAMBDA_MAI_DEFAULT
    kappa: Scalar = KAPPA_DEFAULT
    # The paper trains all heads jointly but does not say what teaches the experts: each expert head gets its
    # own rater term JS(y || p_m), weighted by lambda_expert (0 reduces the loss to exactly Eq. 6).
    lambda_expert: Scalar = 1.0
    # u_m is a reliability estimate; letting gradients through it would let the model lower MAI by making
    # an expert look worse rather than by moving the student.
    detach_weights: bool = True
    # MAI teaches the student only; experts are not pulled toward the student.
    detach_experts: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown loss method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.student not in HEADS:
            raise ValueError(f"student must be one of {', '.join(HEADS)}, got {self.student!r}")
        if (self.method == "amber2" and self.detach_experts and isinstance(self.lambda_expert, (int, float))
                and self.lambda_expert == 0):
            raise ValueError("with detach_experts=True and lambda_expert=0 the expert heads receive no "
                             "gradient and stay at their random initialisation; raise lambda_expert or "
                             "set detach_experts=False")

    @property
    def experts(self) -> tuple[str, ...]:
        return tuple(h for h in HEADS if h != self.student)


def _xlogy_ratio(p: Tensor, q: Tensor, eps: float) -> Tensor:
    # p * log(p / q) with 0 log 0 = 0; clamping inside the logs keeps the value and its gradient finite
    return p * (torch.log(p.clamp_min(eps)) - torch.log(q.clamp_min(eps)))


def js_divergence(p: Tensor, q: Tensor, eps: float = 1e-8) -> Tensor:
    """Jensen-Shannon divergence (natural log) over the last axis: (..., C), (..., C) -> (...)."""
    m = 0.5 * (p + q)
    js = 0.5 * (_xlogy_ratio(p, m, eps) + _xlogy_ratio(q, m, eps)).sum(-1)
    return js.clamp_min(0.0)  # rounding can leave -1e-9 on equal inputs


def _mean(values: Tensor, weight: Tensor | None) -> Tensor:
    """Batch mean, or the weighted mean when per-sample weights (e.g. a padding mask) are given."""
    if weight is None:
        return values.mean()
    return (values * weight).sum() / weight.sum().clamp_min(1e-12)


def expert_weights(experts: Tensor, y: Tensor, kappa: Scalar) -> Tensor:
    """Eq. 5: u_m = softmax over experts of -kappa JS(p_m || y), per sample. (E, B, C), (B, C) -> (E, B)."""
    distance = js_divergence(experts, y.unsqueeze(0))
    return torch.softmax(-kappa * distance, dim=0)


def _head_weight(weight: Tensor | None, head_weight: Tensor | None, head: str) -> Tensor | None:
    """Per-sample weights of one head's rater term: `weight` times that head's column of `head_weight`."""
    if head_weight is None:
        return weight
    column = head_weight[..., HEADS.index(head)]
    return column if weight is None else weight * column


def amber2_loss(logits: dict[str, Tensor], y: Tensor, cfg: LossConfig, weight: Tensor | None = None,
                head_weight: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 6 (lambda_rai RAI + lambda_mai MAI) plus lambda_expert times the experts' own rater terms.

    logits: {"A", "T", "AT"} -> (B, C); y: (B, C) soft labels; weight: optional (B,) per-sample weights.
    head_weight: optional (B, H) weights of each head's rater term (columns in HEADS order): 0 where the label
    says nothing about what that head reads (a voice's label paired with other words: train.pairing). MAI and
    the expert weights u_m of Eq. 5 are left as they are.
    Returns (total, parts); parts are detached and include the mean weight u_<m> of each expert.
    """
    probs = {h: torch.softmax(logits[h], dim=-1) for h in HEADS}
    student = probs[cfg.student]
    experts = torch.stack([probs[h] for h in cfg.experts])            # (E, B, C)
    teachers = experts.detach() if cfg.detach_experts else experts

    rai = _mean(js_divergence(y, student), _head_weight(weight, head_weight, cfg.student))   # Eq. 3
    u = expert_weights(teachers, y, cfg.kappa)                         # Eq. 5
    if cfg.detach_weights:
        u = u.detach()
    mai = _mean((u * js_divergence(student.unsqueeze(0), teachers)).sum(0), weight)  # Eq. 4
    expert_rater = sum(_mean(js_divergence(y, probs[h]), _head_weight(weight, head_weight, h))
                       for h in cfg.experts)
    total = cfg.lambda_rai * rai + cfg.lambda_mai * mai + cfg.lambda_expert * expert_rater

    parts = {"rai": rai, "mai": mai, "expert": expert_rater, "total": total}
    parts.update({f"u_{h}": u[i].mean() for i, h in enumerate(cfg.experts)})
    return total, {k: v.detach() for k, v in parts.items()}


def class_balanced_weights(y_train: Tensor) -> Tensor:
    """EMO-SUPERB class weights (facts.md §3) from the (N, C) training soft labels; they sum to C.

    n_k counts training items with y_k > 1/C, beta = (N-1)/N, w_k = (1-beta)/(1-beta^n_k). A class that
    dominates no training item (n_k = 0 would divide by zero) is treated as n_k = 1: the largest weight,
    as rare as a class can be while still being present.
    """
    if y_train.ndim != 2 or y_train.shape[0] == 0:
        raise ValueError(f"class weights need (N, C) training labels with N > 0, got shape {tuple(y_train.shape)}")
    n_items, n_classes = y_train.shape
    n_k = (y_train > 1.0 / n_classes).sum(0).clamp_min(1).to(y_train.dtype)
    beta = (n_items - 1) / n_items
    w = (1.0 - beta) / (1.0 - torch.pow(torch.as_tensor(beta, dtype=y_train.dtype), n_k))
    return w * (n_classes / w.sum())


def cb_ce_loss(logits: Tensor, y: Tensor, class_weights: Tensor, weight: Tensor | None = None) -> Tensor:
    """mean_i[-s_i sum_k y_ik log softmax(z_i)_k] with s_i = sum_k w_k y_ik (EMO-SUPERB's soft-label CB-CE)."""
    s = (y * class_weights).sum(-1)
    ce = -(y * torch.log_softmax(logits, dim=-1)).sum(-1)
    return _mean(s * ce, weight)


def training_loss(logits: dict[str, Tensor], y: Tensor, cfg: LossConfig, class_weights: Tensor | None = None,
                  weight: Tensor | None = None, head_weight: Tensor | None = None
                  ) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss of cfg.method: AmbER² (Eq. 6 + expert terms), or CB-CE summed over the three heads.

    head_weight (B, H) weighs each head's rater term per sample, for both methods (see amber2_loss)."""
    if cfg.method == "amber2":
        return amber2_loss(logits, y, cfg, weight, head_weight)
    if class_weights is None:
        raise ValueError("the cbce method needs class_weights (see class_balanced_weights)")
    parts = {f"cbce_{h}": cb_ce_loss(logits[h], y, class_weights, _head_weight(weight, head_weight, h))
             for h in HEADS}
    total = sum(parts.values())
    parts["total"] = total
    return total, {k: v.detach() for k, v in parts.items()}
