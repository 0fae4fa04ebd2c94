"""What the protocol produces and keeps: one result per fold (saved as it finishes), pooled test predictions,
and the metrics over seeds.

A fold is saved as an .npz of arrays and a .json that marks it finished (written last, both atomically), so a
stopped run resumes without redoing finished folds, and refuses folds computed with other data or settings.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from amber2.files import atomic_write, atomic_write_text
from amber2.losses import HEADS, METHODS
from train.config import ProtocolConfig, ProtocolError, RunSpec


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
    temperatures: np.ndarray | None = None   # (R, 3) each run's head temperatures, fitted on the validation split
    reading_temperatures: np.ndarray | None = None   # (R,) each run's arbitrated fused reading's temperature

    def run_index(self, seed: int, method: str) -> int:
        """Index of the selected run of `method` for `seed`."""
        sel = self.selection[method]
        for r, run in enumerate(self.runs):
            if run.seed == seed and run.method == method and run.grid_key() == sel["key"]:
                return r
        raise KeyError(f"fold {self.fold}: no run for seed {seed}, method {method}")



def _fold_paths(out_dir: Path, fold: int) -> tuple[Path, Path]:
    return out_dir / "folds" / f"fold_{fold}.npz", out_dir / "folds" / f"fold_{fold}.json"


def save_fold(res: FoldResult, out_dir: Path, fingerprint: str) -> None:
    """Arrays first, then the JSON that marks the fold finished."""
    npz, js = _fold_paths(Path(out_dir), res.fold)

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            extra = {name: value for name, value in (("temperatures", res.temperatures),
                                                     ("reading_temperatures", res.reading_temperatures))
                     if value is not None}
            np.savez(fh, test_index=res.test_index, val_index=res.val_index, test_pred=res.test_pred,
                     val_curve=res.val_curve, best_epoch=res.best_epoch, best_val=res.best_val, **extra)

    meta = {"fold": res.fold, "fingerprint": fingerprint, "seconds": res.seconds,
            "runs": [dataclasses.asdict(r) for r in res.runs], "selection": res.selection}
    atomic_write(npz, write_npz)
    atomic_write_text(js, json.dumps(meta, indent=1))


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
                      meta["seconds"], arrays.get("temperatures"), arrays.get("reading_temperatures"))


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
    paired: dict = dataclasses.field(default_factory=dict)   # metric -> `paired_bootstrap` row (student head)
    calibration: dict = dataclasses.field(default_factory=dict)   # method -> head -> reliability diagram numbers
    # the same after temperature scaling: {"ece": method -> head -> mean/std over seeds, "temperature": method ->
    # head -> mean/std of the selected runs' temperatures, "reliability": method -> head -> diagram numbers}
    calibrated: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        """Every number, JSON-ready (predictions excluded; a non-finite number becomes None)."""
        return _json_safe({"config": self.config, "classes": list(self.classes), "n_items": int(len(self.y)),
                "metrics": self.metrics, "bin_edges": self.bin_edges.tolist(), "binned": self.binned,
                "selected": {str(k): v for k, v in self.selected.items()},
                "folds": [{"fold": f.fold, "n_test": int(len(f.test_index)), "n_val": int(len(f.val_index)),
                           "seconds": f.seconds, "selection": f.selection,
                           "runs": _epochs_by_run(f)}
                          for f in self.folds],
                "seconds": self.seconds, "paired": self.paired, "calibration": self.calibration,
                "calibrated": self.calibrated})


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


def pooled_predictions(folds: Sequence[FoldResult], n_items: int, seeds: Sequence[int],
                       calibrated: bool = False) -> dict[str, np.ndarray]:
    """method -> (n_seeds, 3, N, C): the selected run's test predictions of every fold, side by side.

    calibrated: each run's predictions at its heads' validation temperatures (`amber2.calibration`); a fold
    saved without temperatures reads at T = 1."""
    from amber2.calibration import apply_temperature

    out = {}
    for method in METHODS:
        if not all(method in f.selection for f in folds):
            continue
        C = folds[0].test_pred.shape[-1]
        pred = np.full((len(seeds), len(HEADS), n_items, C), np.nan, dtype=np.float32)
        seen = np.zeros(n_items, dtype=np.int64)
        for f in folds:
            seen[f.test_index] += 1
            for i, seed in enumerate(seeds):
                r = f.run_index(seed, method)
                run_pred = f.test_pred[r]
                if calibrated and f.temperatures is not None:
                    run_pred = apply_temperature(run_pred, f.temperatures[r])
                pred[i][:, f.test_index] = run_pred
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




PREDICTIONS_FILE = "predictions.npz"


def item_folds(folds: Sequence[FoldResult], n_items: int) -> np.ndarray:
    """(N,) the test fold of every item."""
    out = np.full(n_items, -1, dtype=np.int64)
    for f in folds:
        out[f.test_index] = f.fold
    return out


def save_predictions(result: ProtocolResult, path: str | Path, ids: Sequence[str] | None = None) -> Path:
    """`predictions.npz`: `ids` (N,), `y` (N, C), `folds` (N,) and, for each method m and head h, `{m}_{h}`
    (seeds, N, C): the selected runs' test predictions, each item predicted once per seed by a model that
    never saw its fold. Every metric of the report can be recomputed from it."""
    n = len(result.y)
    ids = np.array([str(i) for i in ids] if ids is not None else [str(i) for i in range(n)])
    if len(ids) != n:
        raise ProtocolError(f"{len(ids)} ids for {n} predicted items")
    arrays = {"ids": ids, "y": result.y, "folds": item_folds(result.folds, n)}
    for method, pred in result.predictions.items():
        for h, head in enumerate(HEADS):
            arrays[f"{method}_{head}"] = pred[:, h]

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    return atomic_write(Path(path), write)


def calibration_summary(folds: Sequence[FoldResult], predictions: dict[str, np.ndarray], y: np.ndarray,
                        seeds: Sequence[int], ddof: int = 1) -> dict:
    """ECE and reliability of the test predictions at each run's validation temperatures, and the temperatures
    of the selected runs (mean and std over folds and seeds): `ProtocolResult.calibrated`."""
    from amber2.metrics import calibration_metrics

    if any(f.temperatures is None for f in folds):
        return {}
    ece = {m: {head: _mean_std([calibration_metrics(y, pred[s, h])["ece"] for s in range(len(pred))], ddof)
               for h, head in enumerate(HEADS)} for m, pred in predictions.items()}
    temps = {m: {head: _mean_std([float(f.temperatures[f.run_index(s, m), h]) for f in folds for s in seeds], ddof)
                 for h, head in enumerate(HEADS)} for m in predictions}
    out = {"ece": ece, "temperature": temps, "reliability": reliability_curves(predictions, y)}
    if all(f.reading_temperatures is not None for f in folds):
        out["reading"] = reading_summary(folds, predictions, y, seeds, ddof)
    return out


def run_kappa(run: RunSpec) -> float:
    """The kappa a run's arbitrated fused reading uses: its own Eq. 5 kappa (a CB-CE run has none)."""
    from amber2.paper import KAPPA_DEFAULT

    return float(run.kappa) if run.kappa is not None else KAPPA_DEFAULT


def pooled_readings(folds: Sequence[FoldResult], calibrated: dict[str, np.ndarray], seeds: Sequence[int]
                    ) -> dict[str, np.ndarray]:
    """method -> (n_seeds, N, C): the arbitrated fused reading (`amber2.arbitration`) of the selected runs'
    calibrated test predictions (`pooled_predictions(..., calibrated=True)`), each run at its own kappa and
    reading temperature."""
    from amber2.arbitration import STUDENT, VOICE, WORDS, arbitrate

    out = {}
    for method, pred in calibrated.items():
        reading = np.empty_like(pred[:, 0])
        for f in folds:
            for i, seed in enumerate(seeds):
                r = f.run_index(seed, method)
                heads = pred[i][[HEADS.index(h) for h in (VOICE, WORDS, STUDENT)]][:, f.test_index]
                reading[i][f.test_index] = arbitrate(*heads, run_kappa(f.runs[r]), f.reading_temperatures[r])
        out[method] = reading
    return out


def reading_summary(folds: Sequence[FoldResult], calibrated: dict[str, np.ndarray], y: np.ndarray,
                    seeds: Sequence[int], ddof: int = 1) -> dict:
    """method -> measure -> mean/std over seeds, for the arbitrated fused reading beside the student it
    replaces on the page: JS, BC, ACC, ECE, the share of items whose top class is neither expert's, and the
    reading temperatures."""
    from amber2.arbitration import STUDENT
    from amber2.metrics import all_metrics, calibration_metrics

    readings = pooled_readings(folds, calibrated, seeds)
    out = {}
    for method, pred in calibrated.items():
        rows = {}
        for name, fused in (("student", pred[:, HEADS.index(STUDENT)]), ("arbitrated", readings[method])):
            scores = [{**{k: all_metrics(y, p)[k] for k in ("js", "bc", "acc")},
                       "ece": calibration_metrics(y, p)["ece"], "invented": _invented_share(pred[s], p)}
                      for s, p in enumerate(fused)]
            rows[name] = {k: _mean_std([sc[k] for sc in scores], ddof) for k in scores[0]}
        rows["temperature"] = _mean_std([float(f.reading_temperatures[f.run_index(s, method)])
                                         for f in folds for s in seeds], ddof)
        out[method] = rows
    return out


def _invented_share(heads: np.ndarray, fused: np.ndarray) -> float:
    """Share of items whose `fused` top class is neither the voice head's nor the words head's (heads: (H, N, C)
    in HEADS order)."""
    from amber2.arbitration import VOICE, WORDS, invents

    return float(invents(heads[HEADS.index(VOICE)], heads[HEADS.index(WORDS)], fused).mean())


def reliability_curves(predictions: dict[str, np.ndarray], y: np.ndarray) -> dict:
    """method -> head -> `amber2.metrics.reliability` of the pooled test predictions, all seeds together."""
    from amber2.metrics import reliability

    return {method: {head: reliability(np.tile(y, (len(pred), 1)), pred[:, h].reshape(-1, y.shape[1]))
                     for h, head in enumerate(HEADS)} for method, pred in predictions.items()}


def paired_bootstrap(y: np.ndarray, ours: np.ndarray, baseline: np.ndarray, n_resamples: int = 1000,
                     seed: int = 0, level: float = 0.95) -> dict[str, dict]:
    """Per metric: ours minus baseline (each averaged over seeds), a paired bootstrap interval over items and
    the number of seeds where ours is better.

    ours, baseline: (seeds, N, C) predictions of the same N items. Each resample draws N items with
    replacement (the same draw for both methods and every seed); the interval is the percentile interval of
    the seed-averaged difference. `better_seeds` counts seeds whose full-sample metric is better for ours
    (`amber2.metrics.HIGHER_IS_BETTER`)."""
    from amber2.metrics import ALL_METRICS, HIGHER_IS_BETTER, item_parts, metrics_of_items

    if ours.shape != baseline.shape or ours.shape[1:] != y.shape:
        raise ProtocolError(f"paired predictions must share one shape (seeds, N, C) matching y {y.shape}, got "
                            f"{ours.shape} and {baseline.shape}")
    n, n_classes = y.shape
    parts = [[item_parts(y, p) for p in preds] for preds in (ours, baseline)]
    everything = np.arange(n)

    def difference(rows: np.ndarray) -> dict[str, float]:
        scores = [[metrics_of_items(pp, rows, n_classes) for pp in method] for method in parts]
        means = [{k: np.mean([m[k] for m in method]) for k in ALL_METRICS} for method in scores]
        return {k: means[0][k] - means[1][k] for k in ALL_METRICS}

    full = difference(everything)
    rng = np.random.default_rng(seed)
    draws = [difference(rng.integers(0, n, n)) for _ in range(n_resamples)]
    alpha = (1 - level) / 2
    out = {}
    for k in ALL_METRICS:
        higher = HIGHER_IS_BETTER[k]
        per_seed = [(metrics_of_items(a, everything, n_classes)[k], metrics_of_items(b, everything, n_classes)[k])
                    for a, b in zip(*parts)]
        lo, hi = np.quantile([d[k] for d in draws], [alpha, 1 - alpha])
        out[k] = {"difference": full[k], "low": float(lo), "high": float(hi), "level": level,
                  "better_seeds": int(sum((a > b) if higher else (a < b) for a, b in per_seed)),
                  "seeds": len(per_seed), "resamples": n_resamples, "higher_is_better": higher}
    return out
