"""The paper's protocol (Section 4.2): folds x seeds x grid, CB-CE baseline vs AmbER², on cached features.

Every fold in turn is the test set. Inside the training folds a validation split (by group, so no speaker or
dialogue is cut) picks the epoch of every run (best validation score of the student head) and, per fold, the
AmbER² grid point (lambda_MAI x kappa) with the best validation score averaged over seeds. Results are the
test predictions of the selected runs pooled over all folds (each utterance predicted exactly once per seed),
scored per seed with `amber2.metrics`, then mean +- std over seeds.

The trainer reads top to bottom in four modules: `train.config` (settings, input, runs, validation splits),
`train.ensemble` and `train.fit` (all runs of a fold trained at once as one batched ensemble of
`AmbER2Model`s), this module (the fold loop and the shipped model) and `train.results` (fold files, pooled
predictions, metrics over seeds).

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
- `ensemble` "auto" (the default) trains the paper's architecture with the hand-written `FastEnsemble` and any
  other (`head_layers` > 1) with `GenericEnsemble`, the model's own code under `torch.func`;
- `precision` "auto" (the default) multiplies the first layer, the bulk of the arithmetic, in bfloat16 on
  hardware that does so natively (CPUs with AVX512-BF16 or AMX, CUDA GPUs from Ampere on) and in float32
  elsewhere: mixed precision as `torch.autocast` does it, with float32 weights, optimizer state, activations,
  biases and loss. "fp32" forces float32 everywhere, "bf16" forces the bfloat16 products;
- the final model (`train_final`) uses the grid point selected most often across folds (ties: the one with
  the better mean validation score), trained on all items minus a validation split that picks its epoch;
- calibration: every run's heads get a temperature fitted on its validation split (`amber2.calibration`).
  The report's metrics are the raw predictions' (as the paper's); ECE is also reported at the fitted
  temperatures, and the shipped model stores its own in config.json, which every reading applies.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from amber2.arbitration import fit_reading_temperature
from amber2.calibration import apply_temperature, fit_temperature
from amber2.losses import HEADS, METHODS, class_balanced_weights
from amber2.model import feature_stats, standardize
from train.config import (SELECTION, ProtocolConfig, ProtocolData, ProtocolError, RunSpec, fold_runs,
                          validation_split)
from train.ensemble import initial_model, make_ensemble
from train.fit import train_ensemble
from train.results import (FoldResult, ProtocolResult, calibration_summary, load_fold, paired_bootstrap,
                           pooled_predictions, reliability_curves, run_kappa, save_fold, summarize)

if TYPE_CHECKING:
    from train.distributed import Group


def select_grid_point(runs: Sequence[RunSpec], best_val: np.ndarray, metric: str) -> dict:
    """Per method, the grid point whose best validation score, averaged over seeds, is best (first on ties)."""
    higher = SELECTION[metric][1]
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
            "y": torch.from_numpy(data.y).to(device), "head_weight": torch.from_numpy(data.head_weights()).to(device)}


def input_stats(tensors: dict[str, Tensor], fit_idx: np.ndarray) -> dict[str, Tensor]:
    """Per-dimension mean and std of the fit items (`amber2.model.feature_stats`), named as the model's buffers."""
    rows = torch.as_tensor(fit_idx, device=tensors["audio"].device)
    stats = {}
    for name in ("audio", "text"):
        stats[f"{name}_mean"], stats[f"{name}_std"] = feature_stats(tensors[name][rows])
    return stats


def _standardized(tensors: dict[str, Tensor], stats: dict[str, Tensor] | None) -> dict[str, Tensor]:
    # the ensemble sees standardised features; an extracted AmbER2Model gets the same stats as buffers
    if stats is None:
        return tensors
    return {**tensors, **{n: standardize(tensors[n], stats[f"{n}_mean"], stats[f"{n}_std"]) for n in ("audio", "text")}}


def run_fold(data: ProtocolData, cfg: ProtocolConfig, fold: int, tensors: dict[str, Tensor] | None = None,
             log: Callable[[str], None] | None = None) -> FoldResult:
    """Train every run of one test fold (seeds x grid + baseline) and predict its test items."""
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
    test_pred = np.zeros((len(runs), len(HEADS), len(test_idx), data.n_classes), dtype=np.float32)
    temperatures = np.ones((len(runs), len(HEADS)))
    reading_temperatures = np.ones(len(runs))
    val_t = torch.as_tensor(val_idx, device=cfg.device)
    curve = np.zeros((len(runs), cfg.max_epochs))
    best_epoch = np.zeros(len(runs), dtype=np.int64)
    best_val = np.zeros(len(runs))
    test_t = torch.as_tensor(test_idx, device=cfg.device)
    for members, group_size in _chunks(runs, cfg.runs_per_batch):
        chunk_runs = [runs[r] for r in members]
        seeds = [chunk_runs[i].seed for i in range(0, len(chunk_runs), group_size)]
        init = {s: initial_model(data, cfg, s) for s in seeds}
        ens = make_ensemble([init[run.seed] for run in chunk_runs], group_size, cfg,
                            generator_seed=_derived_seed("dropout", fold, members[0]))
        trained = train_ensemble(ens, chunk_runs, tensors, fit_idx, val_idx, cfg, weights,
                                 [_derived_seed("shuffle", fold, s) for s in seeds], data.y[val_idx])
        test_pred[members] = ens.predict(tensors["audio"][test_t], tensors["text"][test_t],
                                         cfg.eval_rows).cpu().numpy()
        val_pred = ens.predict(tensors["audio"][val_t], tensors["text"][val_t], cfg.eval_rows).cpu().numpy()
        temperatures[members] = fit_temperature(val_pred, data.y[val_idx])
        reading_temperatures[members] = fit_reading_temperature(
            apply_temperature(val_pred, temperatures[members]), [run_kappa(run) for run in chunk_runs],
            data.y[val_idx])
        curve[members], best_epoch[members], best_val[members] = (trained.val_curve, trained.best_epoch,
                                                                  trained.best_val)
        if log:
            log(f"fold {fold}: trained {len(members)} runs ({time.perf_counter() - t0:.1f} s)")
    selection = select_grid_point(runs, best_val, cfg.selection_metric)
    return FoldResult(fold, runs, test_idx, val_idx, test_pred, curve, best_epoch, best_val, selection,
                      time.perf_counter() - t0, temperatures, reading_temperatures)


def protocol_fingerprint(data: ProtocolData, cfg: ProtocolConfig) -> str:
    """What a fold file must have been computed with to be reused: the settings that change results + the data."""
    return hashlib.sha1(json.dumps([cfg.fingerprint_dict(), data.fingerprint()], sort_keys=True,
                                   default=str).encode()).hexdigest()


def pending_folds(data: ProtocolData, cfg: ProtocolConfig, out_dir: str | Path) -> list[int]:
    """The fold ids not finished in out_dir yet (ProtocolError on a fold computed with other data or settings)."""
    fingerprint = protocol_fingerprint(data, cfg)
    return [f for f in data.fold_ids if load_fold(Path(out_dir), f, fingerprint) is None]


def run_folds(data: ProtocolData, cfg: ProtocolConfig, out_dir: str | Path | None, folds: Sequence[int], *,
              on_fold_done: Callable[[FoldResult], None] | None = None, log: Callable[[str], None] | None = None,
              before_fold: Callable[[], None] | None = None) -> list[FoldResult]:
    """The results of `folds`: loaded from out_dir when finished there, else trained (and saved to out_dir).

    on_fold_done is called after each newly computed fold has been saved, before_fold before each is trained."""
    fingerprint = protocol_fingerprint(data, cfg)
    old_threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        tensors = _to_device(data, cfg.device)
        results = []
        for fold in folds:
            res = load_fold(Path(out_dir), fold, fingerprint) if out_dir is not None else None
            if res is not None:
                if log:
                    log(f"fold {fold}: loaded from {out_dir}")
                results.append(res)
                continue
            if before_fold:
                before_fold()
            res = run_fold(data, cfg, fold, tensors, log)
            if out_dir is not None:
                save_fold(res, Path(out_dir), fingerprint)
            results.append(res)
            if on_fold_done:
                on_fold_done(res)
    finally:
        torch.set_num_threads(old_threads)
    return results


def run_protocol(data: ProtocolData, cfg: ProtocolConfig | None = None, out_dir: str | Path | None = None, *,
                 on_fold_done: Callable[[FoldResult], None] | None = None,
                 log: Callable[[str], None] | None = None, group: "Group | None" = None) -> ProtocolResult | None:
    """Run the whole protocol; with out_dir, finished folds are saved and a restart skips them.

    on_fold_done is called after each newly computed fold has been saved (not for folds loaded from disk).
    With a `group` of several processes (`train.distributed.start`), the unfinished folds are dealt across
    them (each fold is trained whole, exactly as one process trains it), all wait, and rank 0 pools the fold
    files and returns the result; the other processes return None.
    """
    cfg = cfg or ProtocolConfig()
    t0 = time.perf_counter()
    fold_ids = data.fold_ids
    if len(fold_ids) != cfg.n_folds:
        raise ProtocolError(f"the data has {len(fold_ids)} folds {fold_ids} but the configuration asks for "
                            f"{cfg.n_folds} (set ProtocolConfig.n_folds)")
    if group is not None and group.world > 1:
        if out_dir is None:
            raise ProtocolError("several processes pass their folds on through files: give out_dir")
        mine = group.deal(pending_folds(data, cfg, out_dir))
        group.wait("folds-plan")   # every process has listed the finished folds before any new one is written
        if log:
            log(f"folds for this process to train: {mine or 'none'}")
        run_folds(data, cfg, out_dir, mine, on_fold_done=on_fold_done, log=log, before_fold=group.check)
        group.wait("folds")
        if not group.is_main:
            return None
    folds = run_folds(data, cfg, out_dir, fold_ids, on_fold_done=on_fold_done, log=log)
    predictions = pooled_predictions(folds, len(data.y), cfg.seeds)
    metrics, edges, binned = summarize(predictions, data.y, cfg)
    selected = {f.fold: {m: {k: v for k, v in sel.items() if k != "scores"} for m, sel in f.selection.items()}
                for f in folds}
    student = HEADS.index(cfg.student)
    paired = paired_bootstrap(data.y, predictions["amber2"][:, student], predictions["cbce"][:, student]) \
        if {"amber2", "cbce"} <= set(predictions) else {}
    calibrated = calibration_summary(folds, pooled_predictions(folds, len(data.y), cfg.seeds, calibrated=True),
                                     data.y, cfg.seeds, cfg.std_ddof)
    return ProtocolResult(cfg.to_dict(), data.classes, folds, predictions, data.y, metrics, edges, binned,
                          selected, time.perf_counter() - t0, paired, reliability_curves(predictions, data.y),
                          calibrated)


# ----------------------------------------------------------------------------------------------------------
# The shipped model


def final_hyperparameters(result: ProtocolResult) -> tuple[float, float]:
    """(lambda_mai, kappa) selected most often across folds; ties go to the better mean validation score."""
    picks = [f.selection["amber2"] for f in result.folds if "amber2" in f.selection]
    if not picks:
        raise ProtocolError("the result holds no AmbER² runs")
    counts = Counter(p["key"] for p in picks)
    higher = SELECTION[result.config["selection_metric"]][1]
    mean_score = {k: np.mean([f.selection["amber2"]["scores"][k] for f in result.folds]) for k in counts}
    best = max(counts, key=lambda k: (counts[k], mean_score[k] if higher else -mean_score[k]))
    chosen = next(p for p in picks if p["key"] == best)
    return float(chosen["lambda_mai"]), float(chosen["kappa"])


def train_final(data: ProtocolData, cfg: ProtocolConfig, lambda_mai: float, kappa: float, seed: int = 0,
                method: str = "amber2"):
    """An AmbER2Model trained on all items minus a validation split (which picks the epoch).

    Use `final_hyperparameters(result)` for lambda_mai and kappa (the grid point selected most often).
    """
    if method not in METHODS:
        raise ProtocolError(f"method must be one of {METHODS}, got {method!r}")
    fit_idx, val_idx = validation_split(np.arange(len(data.y)), data.groups, cfg.val_fraction,
                                        _derived_seed(cfg.split_seed, "final"), cfg.val_by_group)
    run = RunSpec(seed, method, *((float(lambda_mai), float(kappa)) if method == "amber2" else (None, None)))
    tensors = _to_device(data, cfg.device)
    stats = input_stats(tensors, fit_idx) if cfg.standardize else None
    tensors = _standardized(tensors, stats)
    ens = make_ensemble([initial_model(data, cfg, seed)], 1, cfg, _derived_seed("dropout", seed))
    trained = train_ensemble(ens, [run], tensors, fit_idx, val_idx, cfg,
                             class_balanced_weights(torch.from_numpy(data.y[fit_idx])),
                             [_derived_seed("shuffle", "final", seed)], data.y[val_idx])
    val_t = torch.as_tensor(val_idx, device=cfg.device)
    val_pred = ens.predict(tensors["audio"][val_t], tensors["text"][val_t], cfg.eval_rows)[0].cpu().numpy()
    temperatures = fit_temperature(val_pred, data.y[val_idx])
    reading_temperature = fit_reading_temperature(apply_temperature(val_pred, temperatures), run_kappa(run),
                                                  data.y[val_idx])
    provenance = {"method": method, "lambda_mai": run.lambda_mai, "kappa": run.kappa, "seed": seed,
                  "best_epoch": int(trained.best_epoch[0]), "max_epochs": cfg.max_epochs,
                  f"val_{cfg.selection_metric}": float(trained.best_val[0]), "n_fit": int(len(fit_idx)),
                  "n_val": int(len(val_idx)), "calibration": "temperature per head, soft-label NLL on the "
                                                             "validation split (amber2.calibration)"}
    model = initial_model(data, cfg, seed, provenance=provenance)
    model.config.temperatures = {h: round(float(t), 4) for h, t in zip(HEADS, temperatures)}
    model.config.fused_reading = cfg.fused_reading
    model.config.reading_kappa = run_kappa(run)
    model.config.reading_temperature = round(float(reading_temperature), 4)
    ens.write_into(model, 0)
    if stats is not None:
        model.set_input_stats(**{k: v.cpu() for k, v in stats.items()})
    return model.eval()
