"""What the protocol runs on and how: its settings, its input, its runs and its validation splits.

`ProtocolConfig` holds every number of the protocol (the paper's defaults where it gives one), `ProtocolData`
the cached features of one corpus, `RunSpec` one training run, `fold_runs` the runs of a fold and
`validation_split` the items that pick each run's epoch. `synthetic_data` makes input with a learnable signal
for tests and benchmarks.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from amber2.arbitration import READINGS
from amber2.errors import UserError
from amber2.losses import HEADS, LossConfig, Scalar
from amber2.metrics import DISTRIBUTION_METRICS, HIGHER_IS_BETTER
from amber2.model import DEFAULT_AUDIO_ENCODER, DEFAULT_TEXT_ENCODER
from amber2.paper import KAPPA_GRID, LAMBDA_MAI_GRID, LAMBDA_RAI

# selection metric -> (amber2.metrics function group, higher is better)
SELECTION = {m: ("distribution" if m in DISTRIBUTION_METRICS else "classification", HIGHER_IS_BETTER[m])
             for m in ("js", "bc", "r2", "acc", "f1", "wf1")}


class ProtocolError(UserError, ValueError):
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


@dataclass
class ProtocolConfig:
    """Every number of the protocol. Defaults are the paper's (Section 4.2) where it gives one."""

    n_folds: int = 5                                     # must equal the number of distinct fold ids in the data
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    lambda_mai_grid: tuple[float, ...] = LAMBDA_MAI_GRID
    kappa_grid: tuple[float, ...] = KAPPA_GRID
    lambda_rai: float = LAMBDA_RAI
    student: str = "AT"
    # Where the paper is silent (amber2.losses.LossConfig): each expert's own rater term, and stop-gradients.
    # lambda_expert=0 with detach_experts=False and detach_weights=False is Eq. 6 exactly as written.
    lambda_expert: float = 1.0
    detach_experts: bool = True
    detach_weights: bool = True
    include_baseline: bool = True                        # the CB-CE runs (one per seed)
    max_epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-4
    weight_decay: float = 1e-2
    hidden_dim: int = 256
    fusion_dim: int = 256
    dropout: float = 0.1
    head_layers: int = 1                                 # hidden layers per head (1: the paper's two-layer MLP)
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
    precision: str = "auto"                              # first-layer products: auto, fp32 or bf16 (train.protocol)
    ensemble: str = "auto"                               # auto, fast or generic: how the runs train (train.ensemble)
    # what the final model's fused bar shows (amber2.arbitration): "arbitrated" or "student" (the paper's head);
    # every run fits the arbitrated reading's temperature either way, and the report scores both
    fused_reading: str = "arbitrated"

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
        if self.fused_reading not in READINGS:
            problems.append(f"fused_reading must be one of {', '.join(READINGS)}, got {self.fused_reading!r}")
        if self.student not in HEADS:
            problems.append(f"student must be one of {HEADS}, got {self.student!r}")
        if self.max_epochs < 1 or self.batch_size < 1 or self.runs_per_batch < 1 or self.eval_rows < 1:
            problems.append("max_epochs, batch_size, runs_per_batch and eval_rows must be positive")
        if not 0.0 < self.val_fraction < 1.0:
            problems.append(f"val_fraction must lie strictly between 0 and 1, got {self.val_fraction}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.selection_metric not in SELECTION:
            problems.append(f"selection_metric must be one of {sorted(SELECTION)}, got {self.selection_metric!r}")
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
            elif device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
                # e.g. more processes per machine than GPUs: each process takes cuda:LOCAL_RANK
                problems.append(f"device {self.device!r} was asked for but this machine has "
                                f"{torch.cuda.device_count()} GPU(s) (one process per GPU)")
        try:
            self.loss_config(self.lambda_mai_grid[0] if self.lambda_mai_grid else 0.5, 4.0)
        except ValueError as err:
            problems.append(str(err))
        if self.head_layers < 1:
            problems.append(f"head_layers must be at least 1, got {self.head_layers}")
        if self.ensemble not in ("auto", "fast", "generic"):
            problems.append(f'ensemble must be "auto", "fast" or "generic", got {self.ensemble!r}')
        elif self.ensemble == "fast" and self.head_layers != 1:
            problems.append("the fast ensemble is written for the paper's heads (head_layers=1); "
                            'use ensemble="generic" or "auto"')
        elif self.ensemble == "auto":
            self.ensemble = "fast" if self.head_layers == 1 else "generic"
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

    def loss_config(self, lambda_mai: Scalar, kappa: Scalar, method: str = "amber2") -> LossConfig:
        """The loss of one run: `method` at grid point (lambda_mai, kappa), with this config's loss choices."""
        return LossConfig(method=method, student=self.student, lambda_rai=self.lambda_rai, lambda_mai=lambda_mai,
                          kappa=kappa, lambda_expert=self.lambda_expert, detach_experts=self.detach_experts,
                          detach_weights=self.detach_weights)

    @property
    def grid(self) -> list[tuple[float, float]]:
        """The AmbER² grid points (lambda_mai, kappa), lambda-major."""
        return [(lambda_mai, kappa) for lambda_mai in self.lambda_mai_grid for kappa in self.kappa_grid]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint_dict(self) -> dict:
        """The settings that change results (not where or how fast they are computed)."""
        d = self.to_dict()
        for key in ("device", "runs_per_batch", "num_threads", "eval_rows", "n_bins", "bin_mode", "std_ddof",
                    "fused_reading"):
            d.pop(key)
        # fields added after results were first cached: left out at their defaults, so those folds stay valid
        for key, default in (("head_layers", 1), ("ensemble", "fast"), ("lambda_expert", 1.0),
                             ("detach_experts", True), ("detach_weights", True)):
            if d[key] == default:
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
    audio_encoder: str = DEFAULT_AUDIO_ENCODER
    text_encoder: str = DEFAULT_TEXT_ENCODER
    # (N, H) weight of each head's rater term per item, columns in HEADS order (None: all ones). An item whose
    # label describes one modality only (a voice's label paired with other words, train.pairing) has 0 for the
    # head that reads the other modality, so that head is not taught a label its input does not carry.
    head_weight: np.ndarray | None = None

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
        if self.head_weight is not None:
            self.head_weight = np.ascontiguousarray(self.head_weight, dtype=np.float32)
            if self.head_weight.shape != (n, len(HEADS)):
                problems.append(f"head_weight must be ({n}, {len(HEADS)}), got {self.head_weight.shape}")
            elif not np.isfinite(self.head_weight).all() or (self.head_weight < 0).any():
                problems.append("head_weight must hold non-negative finite weights")
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

    def head_weights(self) -> np.ndarray:
        """(N, H) weight of each head's rater term (ones where `head_weight` is not given)."""
        if self.head_weight is None:
            return np.ones((len(self.y), len(HEADS)), dtype=np.float32)
        return self.head_weight

    def fingerprint(self) -> str:
        h = hashlib.sha1()
        arrays = (self.audio, self.text, self.y, self.folds)
        # absent head weights hash as before, so finished folds of older runs stay valid
        for arr in arrays if self.head_weight is None else (*arrays, self.head_weight):
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
        runs += [RunSpec(seed, "amber2", lambda_mai, kappa) for lambda_mai, kappa in cfg.grid]
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
