"""The paper's protocol (Section 4.2): folds x seeds x grid, CB-CE baseline vs AmbER², on cached features.

Every fold in turn is the test set. Inside the training folds a validation split (by group, so no speaker or
dialogue is cut) picks the epoch of every run (best validation score of the student head) and, per fold, the
AmbER² grid point (lambda_MAI x kappa) with the best validation score averaged over seeds. Results are the
test predictions of the selected runs pooled over all folds (each utterance predicted exactly once per seed),
scored per seed with `amber2.metrics`, then mean +- std over seeds.

Speed: all runs of a fold (seeds x grid points + the baseline) train at once as one *ensemble*: the weights
of R runs are stacked, every linear layer is a batched matrix product, and forward and backward of the MLP
are written out by hand (`Ensemble`) so the first layer reads each seed's batch once for all its runs and no
input gradient is computed for the raw features. Only the loss (tiny: logits of shape (R, B, C)) goes through
autograd, under `torch.func.vmap` of `amber2.losses`. The test `tests/test_protocol.py` checks that run r of
an ensemble computes exactly what `AmbER2Model` with run r's weights computes (outputs and gradients).

Choices where the paper is silent (all flags in `ProtocolConfig`):
- validation split: `val_fraction` (10%) of the training items, whole groups, drawn with `split_seed` and the
  fold id, the same for every seed and method of the fold (so grid points are compared on the same items);
- the epoch of a run is the one with the best validation score of the student head (`selection_metric`,
  JS distance by default); the baseline's epoch is chosen on the same head;
- grid selection per fold: the grid point with the best validation score averaged over seeds;
- CB-CE class weights come from the items the model is fitted on (training folds minus validation);
- features are standardised per dimension with the fit items' mean and std (`standardize`); the shipped
  model stores those statistics as its input buffers (`AmbER2Model.set_input_stats`);
- runs with the same seed share the initial weights (`AmbER2Model` built under `torch.manual_seed(seed)`)
  and the order of the training batches; dropout masks are drawn per ensemble, so a different
  `runs_per_batch` changes results by dropout noise only;
- std over seeds uses `std_ddof` (1: sample standard deviation);
- `precision` "auto" (the default) multiplies the first layer, the bulk of the arithmetic, in bfloat16 on
  hardware that does so natively (CPUs with AVX512-BF16 or AMX, CUDA GPUs from Ampere on) and in float32
  elsewhere: mixed precision as `torch.autocast` does it, with float32 weights, optimizer state, activations,
  biases and loss. "fp32" forces float32 everywhere, "bf16" forces the bfloat16 products;
- the final model (`train_final`) uses the grid point selected most often across folds (ties: the one with
  the better mean validation score), trained on all items minus a validation split that picks its epoch.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import hashlib
import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

HEADS = ("A", "T", "AT")
METHODS = ("cbce", "amber2")
# selection metric -> (metrics function group, higher is better)
_SELECTION = {"js": ("distribution", False), "bc": ("distribution", True), "r2": ("distribution", True),
              "acc": ("classification", True), "f1": ("classification", True), "wf1": ("classification", True)}


class ProtocolError(ValueError):
    """Input or configuration the protocol cannot run on; the message is meant for a person."""


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bfloat16 matrices in hardware (then about twice as fast as float32)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        cpu = getattr(torch._C, "_cpu", None)   # private, so probed with care: absent -> no bf16
        return any(getattr(cpu, probe, lambda: False)() for probe in
                   ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False


# ----------------------------------------------------------------------------------------------------------
# Configuration and input


@dataclass
class ProtocolConfig:
    """Every number of the protocol. Defaults are the paper's (Section 4.2) where it gives one."""

    n_folds: int = 5                                     # must equal the number of distinct fold ids in the data
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    lambda_mai_grid: tuple[float, ...] = (0.3, 0.5, 0.7)
    kappa_grid: tuple[float, ...] = (2.0, 4.0, 8.0)
    lambda_rai: float = 1.0
    student: str = "AT"
    include_baseline: bool = True                        # the CB-CE runs (one per seed)
    max_epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-4
    weight_decay: float = 1e-2
    hidden_dim: int = 256
    fusion_dim: int = 256
    dropout: float = 0.1
    val_fraction: float = 0.1
    val_by_group: bool = True                            # False: a random item-level split
    standardize: bool = True                             # z-score features with the fit items' statistics
    split_seed: int = 0
    selection_metric: str = "js"                         # student head's validation score: js bc r2 acc f1 wf1
    n_bins: int = 4                                      # ambiguity (entropy) bins of the analysis (Fig. 2)
    bin_mode: str = "width"                              # see amber2.metrics.ambiguity_bin_edges
    std_ddof: int = 1
    device: str = "cpu"
    runs_per_batch: int = 64                             # most runs trained at once (memory cap)
    num_threads: int | None = None                       # torch.set_num_threads for the run; None: leave as is
    eval_rows: int = 512                                 # rows per batched evaluation pass (memory cap)
    precision: str = "auto"                              # first-layer products: auto, fp32 or bf16 (see above)

    def __post_init__(self) -> None:
        self.seeds = tuple(int(s) for s in self.seeds)
        self.lambda_mai_grid = tuple(float(v) for v in self.lambda_mai_grid)
        self.kappa_grid = tuple(float(v) for v in self.kappa_grid)
        problems = []
        if self.n_folds < 2:
            problems.append(f"n_folds must be at least 2, got {self.n_folds}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            problems.append(f"seeds must be a non-empty list of distinct integers, got {self.seeds}")
        if not self.lambda_mai_grid or not self.kappa_grid:
            problems.append("lambda_mai_grid and kappa_grid must not be empty")
        if self.student not in HEADS:
            problems.append(f"student must be one of {HEADS}, got {self.student!r}")
        if self.max_epochs < 1 or self.batch_size < 1 or self.runs_per_batch < 1 or self.eval_rows < 1:
            problems.append("max_epochs, batch_size, runs_per_batch and eval_rows must be positive")
        if not 0.0 < self.val_fraction < 1.0:
            problems.append(f"val_fraction must lie strictly between 0 and 1, got {self.val_fraction}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.selection_metric not in _SELECTION:
            problems.append(f"selection_metric must be one of {sorted(_SELECTION)}, got {self.selection_metric!r}")
        if self.bin_mode not in ("width", "quantile") or self.n_bins < 1:
            problems.append(f'ambiguity bins need n_bins >= 1 and bin_mode "width" or "quantile", got '
                            f"{self.n_bins}, {self.bin_mode!r}")
        if self.std_ddof not in (0, 1):
            problems.append(f"std_ddof must be 0 or 1, got {self.std_ddof}")
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(self.device)
        except RuntimeError:
            problems.append(f"device {self.device!r} is not a torch device (cpu, cuda, cuda:1, auto)")
        else:
            if device.type == "cuda" and not torch.cuda.is_available():
                problems.append(f"device {self.device!r} was asked for but no CUDA GPU is available")
        if self.precision not in ("auto", "fp32", "bf16"):
            problems.append(f'precision must be "auto", "fp32" or "bf16", got {self.precision!r}')
        elif self.precision == "auto" and not problems:
            self.precision = "bf16" if native_bf16(torch.device(self.device)) else "fp32"
        if problems:
            raise ProtocolError("invalid protocol configuration: " + "; ".join(problems))

    @property
    def matmul_dtype(self) -> torch.dtype:
        """The dtype of the ensemble's first-layer products."""
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    @property
    def grid(self) -> list[tuple[float, float]]:
        """The AmbER² grid points (lambda_mai, kappa), lambda-major."""
        return [(lam, kap) for lam in self.lambda_mai_grid for kap in self.kappa_grid]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint_dict(self) -> dict:
        """The settings that change results (not where or how fast they are computed)."""
        d = self.to_dict()
        for key in ("device", "runs_per_batch", "num_threads", "eval_rows", "n_bins", "bin_mode", "std_ddof"):
            d.pop(key)
        return d


@dataclass
class ProtocolData:
    """Cached features of one corpus: the protocol's whole input."""

    audio: np.ndarray            # (N, Da) float32
    text: np.ndarray             # (N, Dt) float32
    y: np.ndarray                # (N, C) soft labels, rows sum to 1
    folds: np.ndarray            # (N,) int fold id (IEMOCAP: session)
    groups: np.ndarray           # (N,) str speaker / dialogue; validation splits never cut a group
    classes: tuple[str, ...] = ()
    label_space: str = "custom"
    ids: np.ndarray | None = None
    audio_encoder: str = "whisper-base"
    text_encoder: str = "minilm-l6"

    def __post_init__(self) -> None:
        self.audio = np.ascontiguousarray(self.audio, dtype=np.float32)
        self.text = np.ascontiguousarray(self.text, dtype=np.float32)
        self.y = np.ascontiguousarray(self.y, dtype=np.float32)
        self.groups = np.asarray(self.groups).astype(str)
        folds = np.asarray(self.folds)
        n = len(self.y)
        problems = []
        if self.audio.ndim != 2 or self.text.ndim != 2 or self.y.ndim != 2:
            problems.append(f"audio, text and y must be 2-D, got shapes {self.audio.shape}, {self.text.shape}, "
                            f"{self.y.shape}")
        elif not (len(self.audio) == len(self.text) == n == len(folds) == len(self.groups)):
            problems.append(f"audio, text, y, folds and groups must have one row per item, got lengths "
                            f"{len(self.audio)}, {len(self.text)}, {n}, {len(folds)}, {len(self.groups)}")
        elif n == 0:
            problems.append("no items")
        else:
            if not (np.isfinite(self.audio).all() and np.isfinite(self.text).all()):
                problems.append("audio/text features contain NaN or infinite values")
            if self.y.shape[1] < 2:
                problems.append(f"y needs at least 2 classes, got {self.y.shape[1]}")
            if not np.isfinite(self.y).all() or (self.y < 0).any():
                problems.append("y must hold non-negative finite probabilities")
            elif not np.allclose(self.y.sum(1), 1.0, atol=1e-3):
                bad = int(np.argmax(np.abs(self.y.sum(1) - 1.0)))
                problems.append(f"every row of y must sum to 1 (row {bad} sums to {self.y[bad].sum():.4f})")
            if not np.issubdtype(folds.dtype, np.integer):
                problems.append(f"folds must be integers, got dtype {folds.dtype}")
            if self.classes and len(self.classes) != self.y.shape[1]:
                problems.append(f"{len(self.classes)} class names for {self.y.shape[1]} columns of y")
        if problems:
            raise ProtocolError("invalid protocol data: " + "; ".join(problems))
        self.folds = folds.astype(np.int64)
        if not self.classes:
            self.classes = tuple(f"class_{k}" for k in range(self.y.shape[1]))
        self.classes = tuple(self.classes)

    @property
    def n_classes(self) -> int:
        return self.y.shape[1]

    @property
    def fold_ids(self) -> list[int]:
        return sorted(int(f) for f in np.unique(self.folds))

    def fingerprint(self) -> str:
        h = hashlib.sha1()
        for arr in (self.audio, self.text, self.y, self.folds):
            h.update(str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update("\n".join(self.groups.tolist()).encode())
        return h.hexdigest()


@dataclass(frozen=True)
class RunSpec:
    """One training run: a seed and a loss (CB-CE, or AmbER² at one grid point)."""

    seed: int
    method: str                  # "cbce" or "amber2"
    lambda_mai: float | None = None   # AmbER² only
    kappa: float | None = None

    def grid_key(self) -> str:
        return "cbce" if self.method == "cbce" else f"lambda_mai={self.lambda_mai:g},kappa={self.kappa:g}"


def fold_runs(cfg: ProtocolConfig) -> list[RunSpec]:
    """The runs of one fold, seed-major: every grid point of AmbER², then the baseline, for each seed."""
    runs = []
    for seed in cfg.seeds:
        runs += [RunSpec(seed, "amber2", lam, kap) for lam, kap in cfg.grid]
        if cfg.include_baseline:
            runs.append(RunSpec(seed, "cbce"))
    return runs


def validation_split(train_index: np.ndarray, groups: np.ndarray, fraction: float, seed: int,
                     by_group: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Split training items into (fit, validation) index arrays; whole groups go to validation when by_group.

    Groups are drawn in a seeded random order until the validation part reaches `fraction` of the items; the
    last group is kept only when that brings the size closer to the target.
    """
    train_index = np.asarray(train_index)
    rng = np.random.default_rng(seed)
    target = fraction * len(train_index)
    if not by_group:
        n_val = min(max(1, int(round(target))), len(train_index) - 1)
        perm = rng.permutation(len(train_index))
        return np.sort(train_index[perm[n_val:]]), np.sort(train_index[perm[:n_val]])
    names, inverse = np.unique(groups[train_index], return_inverse=True)
    if len(names) < 2:
        raise ProtocolError(f"cannot make a validation split by group: the training items hold only "
                            f"{len(names)} group ({names.tolist()}); give more groups or set val_by_group=False")
    sizes = np.bincount(inverse, minlength=len(names))
    chosen, total = [], 0
    for g in rng.permutation(len(names)):
        if total >= target or len(chosen) == len(names) - 1:
            break
        if chosen and abs(total + sizes[g] - target) > abs(total - target):
            break
        chosen.append(g)
        total += sizes[g]
    is_val = np.isin(inverse, chosen)
    return np.sort(train_index[~is_val]), np.sort(train_index[is_val])


# ----------------------------------------------------------------------------------------------------------
# The ensemble: R runs of AmbER2Model trained at once


def _model_linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """The nn.Linear layers of an AmbER2Model under stable names (the only place that knows its attributes)."""
    fusion, heads = model.fusion, model.heads
    return {"proj_a": fusion.audio, "proj_t": fusion.text, "gate": fusion.gate,
            **{f"{h}{i}": heads[h][j] for h in HEADS for i, j in ((1, 0), (2, 3))}}


def _grouped(op: Callable[..., Tensor], *args: Tensor, out: Tensor | None = None) -> Tensor:
    """op (torch.mm / torch.addmm) applied per leading index of 3-D args, written into one (S, ...) tensor."""
    if out is None:
        shape = (args[-2].shape[0], args[-2].shape[1], args[-1].shape[2])
        out = torch.empty(shape, dtype=args[-1].dtype, device=args[-1].device)
    for s in range(out.shape[0]):
        op(*(a[s] for a in args), out=out[s])
    return out


class Ensemble:
    """R runs of AmbER2Model as stacked tensors: S seed groups of P runs (R = S * P).

    Runs of one seed group see the same training rows at every step, so the first layer of all their
    networks is one matrix product per group: rows of `w_a` stack, per run, the audio projection, the audio
    half of the gate and the first layer of head A (`w_t` likewise for text). Weights keep nn.Linear's
    (out, in) layout; activations are feature-major, (R, features, batch).

    `matmul_dtype` bfloat16 runs the first-layer products (forward and weight gradient) in bfloat16 on
    bfloat16 copies of the weights and features; their results are added to the float32 biases and gradients,
    so everything else, the weights and the optimizer included, stays in the parameters' dtype.
    """

    PARAM_NAMES = ("w_a", "b_a", "w_t", "b_t", "w_at1", "b_at1", "w_out", "b_out")

    def __init__(self, models: Sequence[torch.nn.Module], group_size: int, dropout: float = 0.0,
                 device: str | torch.device = "cpu", generator_seed: int = 0, dtype: torch.dtype = torch.float32,
                 matmul_dtype: torch.dtype | None = None):
        if len(models) % group_size:
            raise ProtocolError(f"{len(models)} runs do not split into groups of {group_size}")
        self.R, self.P = len(models), group_size
        self.S = self.R // group_size
        # Dropout masks come from 16-bit random integers (a quarter of a 64-bit draw each, 2.5x faster than
        # uniform floats on the CPU): a unit is dropped when its integer falls below a threshold, so the
        # dropout rate is rounded to a multiple of 1/65536 (0.1 -> 0.10000610); survivors are scaled by the
        # exact 1/keep of that rate.
        self._drop_below = int(round(dropout * 65536)) - 32768
        self.keep = 1.0 - (self._drop_below + 32768) / 65536
        self.device = torch.device(device)
        self.matmul_dtype = matmul_dtype or dtype
        layers = [_model_linears(m) for m in models]
        first = layers[0]
        self.Da = first["proj_a"].in_features
        self.Dt = first["proj_t"].in_features
        self.F = first["proj_a"].out_features
        self.H = first["A1"].out_features
        self.C = first["A2"].out_features
        if first["AT1"].in_features != self.F or first["A1"].in_features != self.Da \
                or first["T1"].in_features != self.Dt:
            raise ProtocolError("AmbER2Model layout not understood: heads A/T must read the raw audio/text "
                                "vectors and head AT the fused vector")
        self.width = 2 * self.F + self.H          # rows per run in the first-layer blocks
        with torch.no_grad():
            self.params = {name: t.to(self.device, dtype).contiguous() for name, t in self._stack(layers).items()}
        for t in self.params.values():
            t.grad = torch.empty_like(t)   # backward overwrites every element
        # low-precision copies of the first-layer weights and their gradients, allocated once: fresh buffers
        # this large come from mmap and cost a page fault per 4 KiB on every step
        self._low = {name: torch.empty_like(self.params[name], dtype=self.matmul_dtype)
                     for name in ("w_a", "w_t")} if self.matmul_dtype != dtype else {}
        self._low_grad = {name: torch.empty_like(t) for name, t in self._low.items()}
        # text blocks carry no gate bias (the gate's one bias lives in the audio block): keep it at zero
        self._text_gate_rows = torch.zeros(self.R, self.width, 1, dtype=torch.bool, device=self.device)
        self._text_gate_rows[:, self.F:2 * self.F] = True
        self.generator = torch.Generator(device=self.device).manual_seed(generator_seed)

    # -- parameters ---------------------------------------------------------------------------------------
    def _stack(self, layers: list[dict[str, torch.nn.Linear]]) -> dict[str, Tensor]:
        F, Da = self.F, self.Da

        def block(lay, proj, gate_cols, head):
            w = torch.cat([lay[proj].weight, lay["gate"].weight[:, gate_cols], lay[head].weight], 0)
            gate_bias = lay["gate"].bias if proj == "proj_a" else torch.zeros_like(lay["gate"].bias)
            return w, torch.cat([lay[proj].bias, gate_bias, lay[head].bias])[:, None]

        a = [block(lay, "proj_a", slice(0, Da), "A1") for lay in layers]
        t = [block(lay, "proj_t", slice(Da, None), "T1") for lay in layers]
        stack = torch.stack
        return {
            "w_a": stack([w for w, _ in a]).view(self.S, self.P * self.width, Da),
            "b_a": stack([b for _, b in a]).view(self.S, self.P * self.width, 1),
            "w_t": stack([w for w, _ in t]).view(self.S, self.P * self.width, self.Dt),
            "b_t": stack([b for _, b in t]).view(self.S, self.P * self.width, 1),
            "w_at1": stack([lay["AT1"].weight for lay in layers]),
            "b_at1": stack([lay["AT1"].bias[:, None] for lay in layers]),
            "w_out": torch.stack([stack([lay[f"{h}2"].weight for lay in layers]) for h in HEADS]),
            "b_out": torch.stack([stack([lay[f"{h}2"].bias[:, None] for lay in layers]) for h in HEADS]),
        }

    def run_view(self, name: str, tensor: Tensor | None = None) -> Tensor:
        """A parameter (or a tensor shaped like it) viewed with the run as its first dimension."""
        t = self.params[name] if tensor is None else tensor
        if name == "w_out" or name == "b_out":
            return t.transpose(0, 1)
        return t.reshape(self.R, -1, t.shape[-1])

    def write_into(self, model: torch.nn.Module, r: int, grads: bool = False) -> torch.nn.Module:
        """Copy run r's weights (grads=True: its gradients, into `.grad`) into an AmbER2Model of the same
        shape; returns the model."""
        lay = _model_linears(model)
        F, Da, w = self.F, self.Da, self.width
        src = {n: (t.grad if grads else t) for n, t in self.params.items()}
        p = {name: self.run_view(name, src[name])[r].detach().cpu() for name in self.PARAM_NAMES}
        wa, ba, wt, bt = p["w_a"], p["b_a"][:, 0], p["w_t"], p["b_t"][:, 0]
        pieces = [(lay["proj_a"].weight, wa[:F]), (lay["proj_a"].bias, ba[:F]),
                  (lay["proj_t"].weight, wt[:F]), (lay["proj_t"].bias, bt[:F]),
                  (lay["gate"].weight, torch.cat([wa[F:2 * F], wt[F:2 * F]], 1)), (lay["gate"].bias, ba[F:2 * F]),
                  (lay["A1"].weight, wa[2 * F:w]), (lay["A1"].bias, ba[2 * F:w]),
                  (lay["T1"].weight, wt[2 * F:w]), (lay["T1"].bias, bt[2 * F:w]),
                  (lay["AT1"].weight, p["w_at1"]), (lay["AT1"].bias, p["b_at1"][:, 0])]
        pieces += [(lay[f"{h}2"].weight, p["w_out"][i]) for i, h in enumerate(HEADS)]
        pieces += [(lay[f"{h}2"].bias, p["b_out"][i][:, 0]) for i, h in enumerate(HEADS)]
        with torch.no_grad():
            for param, value in pieces:
                if grads:
                    param.grad = value.to(param.dtype).clone()
                else:
                    param.copy_(value)
        return model

    # -- forward / backward -------------------------------------------------------------------------------
    def forward(self, xa: Tensor, xt: Tensor, train: bool) -> tuple[list[Tensor], dict]:
        """Logits (R, C, B) of heads A, T, AT. xa (S, B, Da) / xt (S, B, Dt): each seed group's rows; or
        (B, Da) / (B, Dt): the same rows for every run. Returns (logits, cache for `backward`)."""
        p, R, F = self.params, self.R, self.F
        xa, xt = xa.to(self.matmul_dtype), xt.to(self.matmul_dtype)
        if not self._low:
            if xa.dim() == 2:   # the same rows for all runs: one broadcast product, no copies
                oa = torch.matmul(p["w_a"], xa.T).add_(p["b_a"])
                ot = torch.matmul(p["w_t"], xt.T).add_(p["b_t"])
            else:   # a loop of 2-D products per seed group measured faster than one bmm (MKL, 2 cores)
                oa = _grouped(torch.addmm, p["b_a"], p["w_a"], xa.transpose(1, 2))
                ot = _grouped(torch.addmm, p["b_t"], p["w_t"], xt.transpose(1, 2))
        else:   # low-precision products; adding the bias promotes them back to the parameters' dtype
            outs = []
            for w, b, x in (("w_a", "b_a", xa), ("w_t", "b_t", xt)):
                low = self._low[w].copy_(p[w])
                prod = torch.matmul(low, x.T) if x.dim() == 2 else _grouped(torch.mm, low, x.transpose(1, 2))
                outs.append(torch.add(p[b], prod))
            oa, ot = outs
        B = oa.shape[-1]
        oa4, ot4 = oa.view(R, self.width, B), ot.view(R, self.width, B)
        ha = oa4[:, :F].tanh_()
        ht = ot4[:, :F].tanh_()
        g = oa4[:, F:2 * F].add_(ot4[:, F:2 * F]).sigmoid_()
        diff = ha - ht
        h = torch.addcmul(ht, g, diff)                       # g * ha + (1 - g) * ht
        z_at = torch.baddbmm(p["b_at1"], p["w_at1"], h)
        hidden = [oa4[:, 2 * F:].relu_(), ot4[:, 2 * F:].relu_(), z_at.relu_()]
        scale = 1.0
        if train and self.keep < 1.0:
            # the 1/keep rescaling of the survivors is applied to the small (R, C, B) product instead
            scale = 1.0 / self.keep
            n = 3 * R * self.H * B
            bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=self.device)
            bits = bits.random_(-2**63, None, generator=self.generator).view(torch.int16)[:n]
            drop = bits.view(3, R, self.H, B) < self._drop_below
            for m, r in enumerate(hidden):
                r.masked_fill_(drop[m], 0.0)
        logits = [torch.baddbmm(p["b_out"][m], p["w_out"][m], hidden[m], alpha=scale) for m in range(3)]
        cache = {"xa": xa, "xt": xt, "ha": ha, "ht": ht, "g": g, "diff": diff, "h": h, "hidden": hidden,
                 "scale": scale, "B": B}
        return logits, cache

    def backward(self, cache: dict, grad_logits: Sequence[Tensor]) -> None:
        """Write into `params[name].grad` the gradient of the loss whose logit gradients are given."""
        p, R, F, B = self.params, self.R, self.F, cache["B"]
        aten = torch.ops.aten    # fused activation derivatives (one pass each, as autograd uses them)
        grads = {name: t.grad for name, t in p.items()}
        like = dict(device=self.device, dtype=p["w_a"].dtype)
        doa = torch.empty(R, self.width, B, **like)
        dot = torch.empty(R, self.width, B, **like)
        dz_at = torch.empty(R, self.H, B, **like)
        targets = [doa[:, 2 * F:], dot[:, 2 * F:], dz_at]   # dL/d(pre-activation) of each head's layer 1
        for m, (r, gl) in enumerate(zip(cache["hidden"], grad_logits)):
            gl = gl * cache["scale"] if cache["scale"] != 1.0 else gl     # logits = scale * W2 r + b2
            torch.bmm(gl, r.transpose(1, 2), out=grads["w_out"][m])
            torch.sum(grad_logits[m], dim=2, keepdim=True, out=grads["b_out"][m])
            dr = torch.bmm(p["w_out"][m].transpose(1, 2), gl)
            # r is ReLU then dropout: the gradient passes where r > 0
            aten.threshold_backward.grad_input(dr, r, 0, grad_input=targets[m])
        torch.bmm(dz_at, cache["h"].transpose(1, 2), out=grads["w_at1"])
        torch.sum(dz_at, dim=2, keepdim=True, out=grads["b_at1"])
        dh = torch.bmm(p["w_at1"].transpose(1, 2), dz_at)
        ha, ht, g = cache["ha"], cache["ht"], cache["g"]
        # h = g * ha + (1 - g) * ht, g = sigmoid(z_g): dL/dz_g = dh * (ha - ht) * g * (1 - g)
        aten.sigmoid_backward.grad_input(dh * cache["diff"], g, grad_input=doa[:, F:2 * F])
        dot[:, F:2 * F].copy_(doa[:, F:2 * F])
        dha = dh * g
        dht = dh.sub_(dha)                                   # dh * (1 - g); dh is not needed any more
        aten.tanh_backward.grad_input(dha, ha, grad_input=doa[:, :F])
        aten.tanh_backward.grad_input(dht, ht, grad_input=dot[:, :F])
        doa3, dot3 = doa.view(self.S, self.P * self.width, B), dot.view(self.S, self.P * self.width, B)
        xa, xt = cache["xa"], cache["xt"]
        for d, x, name in ((doa3, xa, "w_a"), (dot3, xt, "w_t")):
            if self._low:
                d, low = d.to(self.matmul_dtype), self._low_grad[name]
                grads[name].copy_(torch.matmul(d, x, out=low) if x.dim() == 2 else _grouped(torch.mm, d, x, out=low))
            elif x.dim() == 2:
                torch.matmul(d, x, out=grads[name])
            else:
                _grouped(torch.mm, d, x, out=grads[name])
        torch.sum(doa3, dim=2, keepdim=True, out=grads["b_a"])
        torch.sum(dot3, dim=2, keepdim=True, out=grads["b_t"])
        grads["b_t"].view(R, self.width, 1).masked_fill_(self._text_gate_rows, 0.0)

    @torch.no_grad()
    def predict(self, audio: Tensor, text: Tensor, rows: int = 512) -> Tensor:
        """Probabilities (R, 3, N, C) of heads A, T, AT for the same N rows under every run (eval mode)."""
        out = []
        for start in range(0, len(audio), rows):
            logits, _ = self.forward(audio[start:start + rows], text[start:start + rows], train=False)
            out.append(torch.stack([torch.softmax(lg, dim=1).transpose(1, 2) for lg in logits], 1))
        return torch.cat(out, 2)


# ----------------------------------------------------------------------------------------------------------
# Training one ensemble


def _build_model(data: ProtocolData, cfg: ProtocolConfig, seed: int, provenance: dict | None = None):
    """An AmbER2Model with `seed`'s initial weights."""
    from amber2.model import AmbER2Model

    torch.manual_seed(seed)
    return AmbER2Model(audio_dim=data.audio.shape[1], text_dim=data.text.shape[1], classes=list(data.classes),
                       label_space=data.label_space, hidden_dim=cfg.hidden_dim, fusion_dim=cfg.fusion_dim,
                       dropout=cfg.dropout, audio_encoder=data.audio_encoder, text_encoder=data.text_encoder,
                       provenance=provenance)


class EnsembleLoss:
    """Per-run training losses of an ensemble through `amber2.losses`, vmapped over the runs of each method.

    Returns the logit gradients of the sum of the runs' losses: runs share no weights, so each run gets the
    gradient of its own loss.
    """

    def __init__(self, runs: Sequence[RunSpec], cfg: ProtocolConfig, class_weights: Tensor | None,
                 device: torch.device):
        from amber2.losses import LossConfig, training_loss

        self.R = len(runs)
        self.methods = {}
        for method in METHODS:
            idx = [r for r, run in enumerate(runs) if run.method == method]
            if idx:
                self.methods[method] = torch.tensor(idx, device=device)
        am = [runs[r] for r in self.methods.get("amber2", torch.tensor([])).tolist()]
        self.lam = torch.tensor([r.lambda_mai for r in am], dtype=torch.float32, device=device)
        self.kap = torch.tensor([r.kappa for r in am], dtype=torch.float32, device=device)
        if "cbce" in self.methods and class_weights is None:
            raise ProtocolError("the CB-CE runs need class weights")
        self.class_weights = None if class_weights is None else class_weights.to(device)

        def amber2_run(la, lt, lat, y, lam, kap):
            lc = LossConfig(method="amber2", student=cfg.student, lambda_rai=cfg.lambda_rai, lambda_mai=lam,
                            kappa=kap)
            return training_loss({"A": la, "T": lt, "AT": lat}, y, lc)[0]

        def cbce_run(la, lt, lat, y, weights):
            lc = LossConfig(method="cbce", student=cfg.student)
            return training_loss({"A": la, "T": lt, "AT": lat}, y, lc, class_weights=weights)[0]

        self._amber2 = torch.func.vmap(amber2_run)
        self._cbce = torch.func.vmap(cbce_run, in_dims=(0, 0, 0, 0, None))

    def __call__(self, logits: Sequence[Tensor], y: Tensor, group_size: int) -> tuple[list[Tensor], Tensor]:
        """logits: 3 x (R, C, B) feature-major; y: (S, B, C). Returns (3 x (R, C, B) gradients, (R,) losses)."""
        leaves = [lg.detach().transpose(1, 2).contiguous().requires_grad_() for lg in logits]
        S, B, C = y.shape
        y_runs = y.unsqueeze(1).expand(S, group_size, B, C).reshape(self.R, B, C)
        losses = torch.zeros(self.R, device=y.device)
        for method, idx in self.methods.items():
            args = [t.index_select(0, idx) for t in (*leaves, y_runs)]
            part = self._amber2(*args, self.lam, self.kap) if method == "amber2" else self._cbce(
                *args, self.class_weights)
            losses = losses.index_add(0, idx, part)
        grads = torch.autograd.grad(losses.sum(), leaves)
        return [g.transpose(1, 2).contiguous() for g in grads], losses.detach()


def _scores(y_true: np.ndarray, probs: np.ndarray, metric: str) -> np.ndarray:
    """The selection metric of every run: probs (R, N, C) -> (R,), via amber2.metrics."""
    from amber2.metrics import classification_metrics, distribution_metrics

    fn = distribution_metrics if _SELECTION[metric][0] == "distribution" else classification_metrics
    return np.array([fn(y_true, p)[metric] for p in probs], dtype=np.float64)


def _better(new: np.ndarray, old: np.ndarray, metric: str) -> np.ndarray:
    return new > old if _SELECTION[metric][1] else new < old


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

    tensors: "audio", "text", "y" for all items on the ensemble's device. shuffle_seeds: one per seed group;
    each group draws its own permutation of the fit items every epoch.
    """
    dev, S, P, R = ens.device, ens.S, ens.P, ens.R
    retain_freed_memory()
    loss_fn = EnsembleLoss(runs, cfg, class_weights, dev)
    params = [ens.params[n] for n in Ensemble.PARAM_NAMES]
    opt = _optimizer(params, cfg)
    best = {n: t.detach().clone() for n, t in ens.params.items()}
    gens = [torch.Generator().manual_seed(int(s)) for s in shuffle_seeds]
    fit_t = torch.as_tensor(fit_idx, device=dev)
    val_t = torch.as_tensor(val_idx, device=dev)
    audio_val, text_val = tensors["audio"][val_t], tensors["text"][val_t]
    student = HEADS.index(cfg.student)
    curve = np.full((R, cfg.max_epochs), np.nan)
    best_val = np.full(R, np.inf if not _SELECTION[cfg.selection_metric][1] else -np.inf)
    best_epoch = np.zeros(R, dtype=np.int64)
    n = len(fit_idx)
    for epoch in range(cfg.max_epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(dev)   # (S, n)
        for start in range(0, n, cfg.batch_size):
            rows = fit_t[order[:, start:start + cfg.batch_size]].reshape(-1)
            b = rows.numel() // S
            xa = tensors["audio"].index_select(0, rows).view(S, b, -1)
            xt = tensors["text"].index_select(0, rows).view(S, b, -1)
            y = tensors["y"].index_select(0, rows).view(S, b, -1)
            logits, cache = ens.forward(xa, xt, train=True)
            grads, _ = loss_fn(logits, y, P)
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
                for name in Ensemble.PARAM_NAMES:
                    ens.run_view(name, best[name])[mask] = ens.run_view(name)[mask]
    with torch.no_grad():
        for name in Ensemble.PARAM_NAMES:
            ens.params[name].copy_(best[name])
    return TrainedEnsemble(ens, curve, best_epoch, best_val)


# ----------------------------------------------------------------------------------------------------------
# One fold


@dataclass
class FoldResult:
    """Everything one test fold produced; saved to out_dir/folds/fold_<id>.npz + .json."""

    fold: int
    runs: list[RunSpec]
    test_index: np.ndarray       # (Nt,) item indices of the test fold
    val_index: np.ndarray        # (Nv,) validation items (inside the training folds)
    test_pred: np.ndarray        # (R, 3, Nt, C) probabilities of heads A, T, AT with each run's best weights
    val_curve: np.ndarray        # (R, epochs) student validation score per epoch
    best_epoch: np.ndarray       # (R,)
    best_val: np.ndarray         # (R,)
    selection: dict              # method -> {"lambda_mai", "kappa", "score", "scores": {grid key: mean}}
    seconds: float = 0.0

    def run_index(self, seed: int, method: str) -> int:
        """Index of the selected run of `method` for `seed`."""
        sel = self.selection[method]
        for r, run in enumerate(self.runs):
            if run.seed == seed and run.method == method and run.grid_key() == sel["key"]:
                return r
        raise KeyError(f"fold {self.fold}: no run for seed {seed}, method {method}")


def select_grid_point(runs: Sequence[RunSpec], best_val: np.ndarray, metric: str) -> dict:
    """Per method, the grid point whose best validation score, averaged over seeds, is best (first on ties)."""
    higher = _SELECTION[metric][1]
    selection = {}
    for method in METHODS:
        keys: dict[str, list[float]] = {}
        specs: dict[str, RunSpec] = {}
        for run, score in zip(runs, best_val):
            if run.method == method:
                keys.setdefault(run.grid_key(), []).append(float(score))
                specs.setdefault(run.grid_key(), run)
        if not keys:
            continue
        means = {k: float(np.mean(v)) for k, v in keys.items()}
        pick = (max if higher else min)(means, key=means.get)
        selection[method] = {"key": pick, "lambda_mai": specs[pick].lambda_mai, "kappa": specs[pick].kappa,
                             "score": means[pick], "scores": means}
    return selection


def _chunks(runs: list[RunSpec], cap: int) -> list[tuple[list[int], int]]:
    """Split a fold's runs (seed-major, equal count per seed) into ensembles: (run indices, group size)."""
    per_seed: dict[int, list[int]] = {}
    for r, run in enumerate(runs):
        per_seed.setdefault(run.seed, []).append(r)
    groups = list(per_seed.values())
    P = len(groups[0])
    if P <= cap:
        k = cap // P
        return [([r for g in groups[i:i + k] for r in g], P) for i in range(0, len(groups), k)]
    return [(g[i:i + cap], len(g[i:i + cap])) for g in groups for i in range(0, P, cap)]


def _derived_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha1(repr(parts).encode()).digest()[:4], "little")


def _to_device(data: ProtocolData, device: str) -> dict[str, Tensor]:
    return {"audio": torch.from_numpy(data.audio).to(device), "text": torch.from_numpy(data.text).to(device),
            "y": torch.from_numpy(data.y).to(device)}


def input_stats(tensors: dict[str, Tensor], fit_idx: np.ndarray) -> dict[str, Tensor]:
    """Per-dimension mean and std of the fit items (a std below 1e-6 counts as 1, as AmbER2Model does)."""
    rows = torch.as_tensor(fit_idx, device=tensors["audio"].device)
    stats = {}
    for name in ("audio", "text"):
        x = tensors[name][rows]
        std = x.std(0, unbiased=False)
        stats[f"{name}_mean"], stats[f"{name}_std"] = x.mean(0), torch.where(std < 1e-6, 1.0, std)
    return stats


def _standardized(tensors: dict[str, Tensor], stats: dict[str, Tensor] | None) -> dict[str, Tensor]:
    # the ensemble sees standardised features; an extracted AmbER2Model gets the same stats as buffers
    if stats is None:
        return tensors
    return {**tensors, **{n: (tensors[n] - stats[f"{n}_mean"]) / stats[f"{n}_std"] for n in ("audio", "text")}}


def run_fold(data: ProtocolData, cfg: ProtocolConfig, fold: int, tensors: dict[str, Tensor] | None = None,
             log: Callable[[str], None] | None = None) -> FoldResult:
    """Train every run of one test fold (seeds x grid + baseline) and predict its test items."""
    from amber2.losses import class_balanced_weights

    t0 = time.perf_counter()
    tensors = tensors if tensors is not None else _to_device(data, cfg.device)
    test_idx = np.flatnonzero(data.folds == fold)
    train_idx = np.flatnonzero(data.folds != fold)
    if len(test_idx) == 0:
        raise ProtocolError(f"fold {fold} has no items (folds present: {data.fold_ids})")
    fit_idx, val_idx = validation_split(train_idx, data.groups, cfg.val_fraction,
                                        _derived_seed(cfg.split_seed, fold), cfg.val_by_group)
    weights = class_balanced_weights(torch.from_numpy(data.y[fit_idx]))
    tensors = _standardized(tensors, input_stats(tensors, fit_idx) if cfg.standardize else None)
    runs = fold_runs(cfg)
    test_pred = np.zeros((len(runs), 3, len(test_idx), data.n_classes), dtype=np.float32)
    curve = np.zeros((len(runs), cfg.max_epochs))
    best_epoch = np.zeros(len(runs), dtype=np.int64)
    best_val = np.zeros(len(runs))
    test_t = torch.as_tensor(test_idx, device=cfg.device)
    for members, group_size in _chunks(runs, cfg.runs_per_batch):
        chunk_runs = [runs[r] for r in members]
        seeds = [chunk_runs[i].seed for i in range(0, len(chunk_runs), group_size)]
        init = {s: _build_model(data, cfg, s) for s in seeds}
        ens = Ensemble([init[run.seed] for run in chunk_runs], group_size, cfg.dropout, cfg.device,
                       generator_seed=_derived_seed("dropout", fold, members[0]), matmul_dtype=cfg.matmul_dtype)
        trained = train_ensemble(ens, chunk_runs, tensors, fit_idx, val_idx, cfg, weights,
                                 [_derived_seed("shuffle", fold, s) for s in seeds], data.y[val_idx])
        test_pred[members] = ens.predict(tensors["audio"][test_t], tensors["text"][test_t],
                                         cfg.eval_rows).cpu().numpy()
        curve[members], best_epoch[members], best_val[members] = (trained.val_curve, trained.best_epoch,
                                                                  trained.best_val)
        if log:
            log(f"fold {fold}: trained {len(members)} runs ({time.perf_counter() - t0:.1f} s)")
    selection = select_grid_point(runs, best_val, cfg.selection_metric)
    return FoldResult(fold, runs, test_idx, val_idx, test_pred, curve, best_epoch, best_val, selection,
                      time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------------------
# Persistence (one file pair per finished fold, written atomically)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fold_paths(out_dir: Path, fold: int) -> tuple[Path, Path]:
    return out_dir / "folds" / f"fold_{fold}.npz", out_dir / "folds" / f"fold_{fold}.json"


def save_fold(res: FoldResult, out_dir: Path, fingerprint: str) -> None:
    """Arrays first, then the JSON that marks the fold finished."""
    npz, js = _fold_paths(Path(out_dir), res.fold)

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, test_index=res.test_index, val_index=res.val_index, test_pred=res.test_pred,
                     val_curve=res.val_curve, best_epoch=res.best_epoch, best_val=res.best_val)

    meta = {"fold": res.fold, "fingerprint": fingerprint, "seconds": res.seconds,
            "runs": [dataclasses.asdict(r) for r in res.runs], "selection": res.selection}
    _atomic_write(npz, write_npz)
    _atomic_write(js, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))


def load_fold(out_dir: Path, fold: int, fingerprint: str) -> FoldResult | None:
    """A finished fold, or None when it has not been run. Raises ProtocolError on a fold of another run."""
    npz, js = _fold_paths(Path(out_dir), fold)
    if not (npz.exists() and js.exists()):
        return None
    meta = json.loads(js.read_text())
    if meta.get("fingerprint") != fingerprint:
        raise ProtocolError(f"{js} was computed with other data or settings; use a fresh output folder "
                            f"or delete {npz.parent}")
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    runs = [RunSpec(**r) for r in meta["runs"]]
    return FoldResult(fold, runs, arrays["test_index"], arrays["val_index"], arrays["test_pred"],
                      arrays["val_curve"], arrays["best_epoch"], arrays["best_val"], meta["selection"],
                      meta["seconds"])


# ----------------------------------------------------------------------------------------------------------
# Results over all folds


@dataclass
class ProtocolResult:
    """Pooled test results: per method and head, the six metrics per seed, mean and std over seeds."""

    config: dict
    classes: tuple[str, ...]
    folds: list[FoldResult]
    predictions: dict[str, np.ndarray]   # method -> (n_seeds, 3, N, C): each item predicted once per seed
    y: np.ndarray                        # (N, C)
    metrics: dict                        # method -> head -> metric -> {"mean", "std", "per_seed"}
    bin_edges: np.ndarray                # entropy bin edges of the ambiguity analysis
    binned: dict                         # method -> head -> [{"lo", "hi", "n", metric: {"mean", "std"}}]
    selected: dict                       # fold id -> method -> {"lambda_mai", "kappa", "score"}
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """Every number, JSON-ready (predictions excluded; a non-finite number becomes None)."""
        return _json_safe({"config": self.config, "classes": list(self.classes), "n_items": int(len(self.y)),
                "metrics": self.metrics, "bin_edges": self.bin_edges.tolist(), "binned": self.binned,
                "selected": {str(k): v for k, v in self.selected.items()},
                "folds": [{"fold": f.fold, "n_test": int(len(f.test_index)), "n_val": int(len(f.val_index)),
                           "seconds": f.seconds, "selection": f.selection,
                           "runs": _epochs_by_run(f)}
                          for f in self.folds],
                "seconds": self.seconds})


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _epochs_by_run(f: FoldResult) -> list[dict]:
    return [{"seed": r.seed, "method": r.method, "grid": r.grid_key(), "best_epoch": int(e), "best_val": float(v)}
            for r, e, v in zip(f.runs, f.best_epoch, f.best_val)]


def pooled_predictions(folds: Sequence[FoldResult], n_items: int, seeds: Sequence[int]) -> dict[str, np.ndarray]:
    """method -> (n_seeds, 3, N, C): the selected run's test predictions of every fold, side by side."""
    out = {}
    for method in METHODS:
        if not all(method in f.selection for f in folds):
            continue
        C = folds[0].test_pred.shape[-1]
        pred = np.full((len(seeds), 3, n_items, C), np.nan, dtype=np.float32)
        seen = np.zeros(n_items, dtype=np.int64)
        for f in folds:
            seen[f.test_index] += 1
            for i, seed in enumerate(seeds):
                pred[i][:, f.test_index] = f.test_pred[f.run_index(seed, method)]
        if not (seen == 1).all():
            raise ProtocolError(f"{int((seen != 1).sum())} items are not predicted exactly once over the folds")
        out[method] = pred
    return out


def _mean_std(values: Sequence[float | None], ddof: int) -> dict:
    """mean and std over seeds; None (JSON null) where a value is missing (an empty ambiguity bin)."""
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
    ok = v[np.isfinite(v)]
    return {"mean": float(np.mean(ok)) if len(ok) else None,
            "std": (float(np.std(ok, ddof=ddof)) if len(ok) > ddof else 0.0) if len(ok) else None,
            "per_seed": [float(x) if np.isfinite(x) else None for x in v]}


def summarize(predictions: dict[str, np.ndarray], y: np.ndarray, cfg: ProtocolConfig
              ) -> tuple[dict, np.ndarray, dict]:
    """(metrics, bin edges, binned metrics) of pooled predictions; mean and std over seeds."""
    from amber2.metrics import all_metrics, ambiguity_bin_edges, binned_metrics

    edges = np.asarray(ambiguity_bin_edges(y, n_bins=cfg.n_bins, mode=cfg.bin_mode))
    metrics, binned = {}, {}
    for method, pred in predictions.items():
        metrics[method], binned[method] = {}, {}
        for h, head in enumerate(HEADS):
            per_seed = [all_metrics(y, pred[s, h]) for s in range(len(pred))]
            metrics[method][head] = {k: _mean_std([m[k] for m in per_seed], cfg.std_ddof) for k in per_seed[0]}
            bins_per_seed = [binned_metrics(y, pred[s, h], edges) for s in range(len(pred))]
            rows = []
            for b, first in enumerate(bins_per_seed[0]):
                row = {"lo": float(first["lo"]), "hi": float(first["hi"]), "n": int(first["n"])}
                for key in first:
                    if key not in ("lo", "hi", "n"):
                        row[key] = _mean_std([bs[b][key] for bs in bins_per_seed], cfg.std_ddof)
                rows.append(row)
            binned[method][head] = rows
    return metrics, edges, binned


def run_protocol(data: ProtocolData, cfg: ProtocolConfig | None = None, out_dir: str | Path | None = None, *,
                 on_fold_done: Callable[[FoldResult], None] | None = None,
                 log: Callable[[str], None] | None = None) -> ProtocolResult:
    """Run the whole protocol; with out_dir, finished folds are saved and a restart skips them.

    on_fold_done is called after each newly computed fold has been saved (not for folds loaded from disk).
    """
    cfg = cfg or ProtocolConfig()
    t0 = time.perf_counter()
    fold_ids = data.fold_ids
    if len(fold_ids) != cfg.n_folds:
        raise ProtocolError(f"the data has {len(fold_ids)} folds {fold_ids} but the configuration asks for "
                            f"{cfg.n_folds} (set ProtocolConfig.n_folds)")
    fingerprint = hashlib.sha1(json.dumps([cfg.fingerprint_dict(), data.fingerprint()], sort_keys=True,
                                          default=str).encode()).hexdigest()
    old_threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        tensors = _to_device(data, cfg.device)
        folds = []
        for fold in fold_ids:
            res = load_fold(Path(out_dir), fold, fingerprint) if out_dir is not None else None
            if res is not None:
                if log:
                    log(f"fold {fold}: loaded from {out_dir}")
                folds.append(res)
                continue
            res = run_fold(data, cfg, fold, tensors, log)
            if out_dir is not None:
                save_fold(res, Path(out_dir), fingerprint)
            folds.append(res)
            if on_fold_done:
                on_fold_done(res)
    finally:
        torch.set_num_threads(old_threads)
    predictions = pooled_predictions(folds, len(data.y), cfg.seeds)
    metrics, edges, binned = summarize(predictions, data.y, cfg)
    selected = {f.fold: {m: {k: v for k, v in sel.items() if k != "scores"} for m, sel in f.selection.items()}
                for f in folds}
    return ProtocolResult(cfg.to_dict(), data.classes, folds, predictions, data.y, metrics, edges, binned,
                          selected, time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------------------
# The shipped model


def final_hyperparameters(result: ProtocolResult) -> tuple[float, float]:
    """(lambda_mai, kappa) selected most often across folds; ties go to the better mean validation score."""
    picks = [f.selection["amber2"] for f in result.folds if "amber2" in f.selection]
    if not picks:
        raise ProtocolError("the result holds no AmbER² runs")
    counts = Counter(p["key"] for p in picks)
    higher = _SELECTION[result.config["selection_metric"]][1]
    mean_score = {k: np.mean([f.selection["amber2"]["scores"][k] for f in result.folds]) for k in counts}
    best = max(counts, key=lambda k: (counts[k], mean_score[k] if higher else -mean_score[k]))
    chosen = next(p for p in picks if p["key"] == best)
    return float(chosen["lambda_mai"]), float(chosen["kappa"])


def train_final(data: ProtocolData, cfg: ProtocolConfig, lambda_mai: float, kappa: float, seed: int = 0,
                method: str = "amber2"):
    """An AmbER2Model trained on all items minus a validation split (which picks the epoch).

    Use `final_hyperparameters(result)` for lambda_mai and kappa (the grid point selected most often).
    """
    from amber2.losses import class_balanced_weights

    if method not in METHODS:
        raise ProtocolError(f"method must be one of {METHODS}, got {method!r}")
    fit_idx, val_idx = validation_split(np.arange(len(data.y)), data.groups, cfg.val_fraction,
                                        _derived_seed(cfg.split_seed, "final"), cfg.val_by_group)
    run = RunSpec(seed, method, *((float(lambda_mai), float(kappa)) if method == "amber2" else (None, None)))
    tensors = _to_device(data, cfg.device)
    stats = input_stats(tensors, fit_idx) if cfg.standardize else None
    tensors = _standardized(tensors, stats)
    ens = Ensemble([_build_model(data, cfg, seed)], 1, cfg.dropout, cfg.device, _derived_seed("dropout", seed),
                   matmul_dtype=cfg.matmul_dtype)
    trained = train_ensemble(ens, [run], tensors, fit_idx, val_idx, cfg,
                             class_balanced_weights(torch.from_numpy(data.y[fit_idx])),
                             [_derived_seed("shuffle", "final", seed)], data.y[val_idx])
    provenance = {"method": method, "lambda_mai": run.lambda_mai, "kappa": run.kappa, "seed": seed,
                  "best_epoch": int(trained.best_epoch[0]), "max_epochs": cfg.max_epochs,
                  f"val_{cfg.selection_metric}": float(trained.best_val[0]), "n_fit": int(len(fit_idx)),
                  "n_val": int(len(val_idx))}
    model = _build_model(data, cfg, seed, provenance=provenance)
    ens.write_into(model, 0)
    if stats is not None:
        model.set_input_stats(**{k: v.cpu() for k, v in stats.items()})
    return model.eval()


# ----------------------------------------------------------------------------------------------------------
# Synthetic input (tests and benchmarks)


def synthetic_data(n_items: int = 600, audio_dim: int = 32, text_dim: int = 24, n_classes: int = 4,
                   n_folds: int = 2, groups_per_fold: int = 6, latent_dim: int = 8, seed: int = 0,
                   audio_noise: float = 1.0, text_noise: float = 1.5) -> ProtocolData:
    """Random cached features with a learnable signal: a latent vector per item drives its soft label (at an
    item-specific temperature, so ambiguity varies) and, through fixed random projections plus noise, both
    feature vectors (text noisier than audio, so the two modalities differ in reliability)."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_items, latent_dim))
    logits = latent @ rng.standard_normal((latent_dim, n_classes))
    temperature = rng.uniform(0.3, 2.5, size=(n_items, 1))
    z = logits / temperature
    y = np.exp(z - z.max(1, keepdims=True))
    y /= y.sum(1, keepdims=True)

    def view(dim: int, noise: float) -> np.ndarray:
        return latent @ rng.standard_normal((latent_dim, dim)) + noise * rng.standard_normal((n_items, dim))

    folds = np.arange(n_items) % n_folds
    groups = np.array([f"f{f}g{g}" for f, g in zip(folds, rng.integers(0, groups_per_fold, n_items))])
    return ProtocolData(view(audio_dim, audio_noise), view(text_dim, text_noise), y, folds, groups,
                        tuple(f"class_{k}" for k in range(n_classes)), "synthetic",
                        audio_encoder="synthetic", text_encoder="synthetic")
