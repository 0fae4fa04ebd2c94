"""The protocol: batched runs equal AmbER2Model, selection, pooled results, resume, bad input."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from amber2.metrics import all_metrics, distribution_metrics
from amber2.model import AmbER2Model
from amber2.losses import HEADS
from train.config import (ProtocolConfig, ProtocolData, ProtocolError, RunSpec, fold_runs, native_bf16,
                          synthetic_data, validation_split)
from train.ensemble import FastEnsemble, GenericEnsemble
from train.fit import train_ensemble
from train.protocol import final_hyperparameters, run_fold, run_protocol, select_grid_point, train_final

Ensemble = FastEnsemble   # the hand-written tests below pin the fast path; the generic one is tested against it

# Small and quick: one thread avoids OpenMP spinning on a shared 2-core machine; a larger learning rate
# lets a few epochs learn the synthetic signal.
SMALL = dict(n_folds=2, seeds=(0, 1), lambda_mai_grid=(0.3, 0.7), kappa_grid=(4.0,), max_epochs=6,
             batch_size=32, hidden_dim=32, fusion_dim=32, lr=3e-3, num_threads=1)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here trains: see conftest.one_thread."""


@pytest.fixture(scope="module")
def data() -> ProtocolData:
    return synthetic_data(n_items=480, audio_dim=20, text_dim=16, n_classes=4, n_folds=2, seed=0)


@pytest.fixture(scope="module")
def result(data):
    torch.set_num_threads(1)
    return run_protocol(data, ProtocolConfig(**SMALL))


def _models(n: int, dropout: float, dtype=torch.float64, head_layers: int = 1) -> list[AmbER2Model]:
    models = []
    for seed in range(n):
        torch.manual_seed(seed)
        models.append(AmbER2Model(12, 10, ["a", "b", "c"], "test", hidden_dim=8, fusion_dim=6,
                                  dropout=dropout, head_layers=head_layers).to(dtype))
    return models


# ---------------------------------------------------------------------------------------------- ensemble


@pytest.mark.parametrize("kind, head_layers", [(FastEnsemble, 1), (GenericEnsemble, 1), (GenericEnsemble, 2)],
                         ids=["fast", "generic", "generic-deeper-heads"])
@pytest.mark.parametrize("shared", [False, True], ids=["rows-per-group", "same-rows-for-all"])
def test_batched_forward_and_gradients_equal_amber2model(shared, kind, head_layers):
    """Run r of the ensemble computes what AmbER2Model with run r's weights computes, and the same gradient."""
    models = _models(4, dropout=0.0, head_layers=head_layers)
    ens = kind(models, group_size=2, dtype=torch.float64)
    xa, xt = torch.randn(2, 5, 12, dtype=torch.float64), torch.randn(2, 5, 10, dtype=torch.float64)
    if shared:
        xa, xt = xa[:1].expand(2, 5, 12), xt[:1].expand(2, 5, 10)
    logits, cache = ens.forward(*((xa[0], xt[0]) if shared else (xa.clone(), xt.clone())), train=True)
    upstream = [torch.randn_like(lg) for lg in logits]
    ens.backward(cache, upstream)
    for r, model in enumerate(models):
        s = r // 2                                           # runs 0, 1 read group 0's rows; 2, 3 group 1's
        out = model(xa[s], xt[s])
        for m, head in enumerate(HEADS):
            torch.testing.assert_close(logits[m][r].T, out[head], rtol=0, atol=1e-12)
        model.zero_grad()
        sum((out[h] * upstream[m][r].T).sum() for m, h in enumerate(HEADS)).backward()
        extracted = ens.write_into(_models(1, 0.0, head_layers=head_layers)[0], r, grads=True)
        for (name, p), q in zip(model.named_parameters(), extracted.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=1e-12, msg=f"run {r} {name}")


def test_fast_path_equals_generic_path():
    """The hand-written ensemble is only an optimisation: same logits, same gradients, same predictions."""
    models = _models(4, dropout=0.0)
    fast, generic = FastEnsemble(models, 2, dtype=torch.float64), GenericEnsemble(models, 2, dtype=torch.float64)
    xa, xt = torch.randn(2, 9, 12, dtype=torch.float64), torch.randn(2, 9, 10, dtype=torch.float64)
    upstream = [torch.randn(4, 3, 9, dtype=torch.float64) for _ in HEADS]
    grads = []
    for ens in (fast, generic):
        logits, cache = ens.forward(xa.clone(), xt.clone(), train=True)
        ens.backward(cache, upstream)
        grads.append([p.grad for r in range(4) for p in ens.write_into(_models(1, 0.0)[0], r, grads=True).parameters()])
        if ens is fast:
            ref_logits = logits
    for a, b in zip(ref_logits, logits):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    torch.testing.assert_close(fast.predict(xa[0], xt[0]), generic.predict(xa[0], xt[0]), rtol=0, atol=1e-12)


def test_both_paths_read_the_models_input_statistics():
    """Models that carry non-identity input statistics (AmbER2Model.set_input_stats) are read as their own
    forward reads them, by the fast path too (it once read only the Linear layers)."""
    models = _models(4, dropout=0.0)
    g = torch.Generator().manual_seed(3)
    stats = dict(audio_mean=torch.randn(12, generator=g, dtype=torch.float64),
                 audio_std=torch.rand(12, generator=g, dtype=torch.float64) + 0.5,
                 text_mean=torch.randn(10, generator=g, dtype=torch.float64),
                 text_std=torch.rand(10, generator=g, dtype=torch.float64) + 0.5)
    for m in models:
        m.set_input_stats(**stats)
    xa, xt = 3 * torch.randn(2, 7, 12, dtype=torch.float64) + 1, torch.randn(2, 7, 10, dtype=torch.float64) - 2
    upstream = [torch.randn(4, 3, 7, dtype=torch.float64) for _ in HEADS]
    grads = []
    for kind in (FastEnsemble, GenericEnsemble):
        ens = kind(models, 2, dtype=torch.float64)
        logits, cache = ens.forward(xa.clone(), xt.clone(), train=True)
        for r, model in enumerate(models):
            out = model(xa[r // 2], xt[r // 2])
            for m, head in enumerate(HEADS):
                torch.testing.assert_close(logits[m][r].T, out[head], rtol=0, atol=1e-10)
        ens.backward(cache, upstream)
        grads.append([p.grad for r in range(4) for p in ens.write_into(_models(1, 0.0)[0], r, grads=True).parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_fast_path_refuses_a_model_whose_maths_it_does_not_reproduce():
    """A changed fusion that keeps the layer names would otherwise train the old maths."""
    from amber2.model import GatedFusion

    class SumFusion(GatedFusion):
        def forward(self, audio, text):
            return torch.tanh(self.audio(audio)) + torch.tanh(self.text(text))

    models = _models(2, 0.0)
    for m in models:
        m.fusion.__class__ = SumFusion
    with pytest.raises(ProtocolError, match="--ensemble generic"):
        FastEnsemble(models, group_size=1, dtype=torch.float64)
    GenericEnsemble(models, group_size=1, dtype=torch.float64)   # the model's own forward trains it as it is


def test_fast_path_refuses_deeper_heads():
    with pytest.raises(ProtocolError, match="head_layers"):
        FastEnsemble(_models(2, 0.0, head_layers=2), group_size=1)
    with pytest.raises(ProtocolError, match="head_layers"):
        ProtocolConfig(head_layers=2, ensemble="fast")
    assert ProtocolConfig().ensemble == "fast" and ProtocolConfig(head_layers=2).ensemble == "generic"


def test_deeper_heads_train_through_the_protocol(data, tmp_path):
    """Any architecture the config expresses trains with no new gradient code, and ships as a checkpoint."""
    cfg = ProtocolConfig(**{**SMALL, "seeds": (0,), "lambda_mai_grid": (0.5,), "max_epochs": 3, "head_layers": 2})
    result = run_protocol(data, cfg)
    assert result.metrics["amber2"]["AT"]["js"]["mean"] < 0.5
    model = train_final(data, cfg, 0.5, 4.0)
    assert model.config.head_layers == 2 and len(model.heads["A"]) == 7
    from amber2.model import load_model
    model.save_pretrained(tmp_path)
    audio, text = torch.randn(3, 20), torch.randn(3, 16)
    torch.testing.assert_close(load_model(tmp_path).predict(audio, text)["AT"], model.predict(audio, text)["AT"])


def test_extracted_model_predicts_like_the_ensemble():
    models = _models(3, dropout=0.1, dtype=torch.float32)
    ens = Ensemble(models, group_size=3)
    with torch.no_grad():                                    # move away from the initial weights
        for t in ens.params.values():
            t.add_(0.05 * torch.randn_like(t))
        ens.params["b_t"].view(3, -1, 1)[:, 6:12] = 0            # the text block has no gate bias
    audio, text = torch.randn(7, 12), torch.randn(7, 10)
    probs = ens.predict(audio, text)                         # (R, 3, N, C)
    for r in range(3):
        model = ens.write_into(_models(1, 0.1, torch.float32)[0], r)
        got = model.predict(audio, text)
        for m, head in enumerate(HEADS):
            torch.testing.assert_close(probs[r, m], got[head], rtol=1e-5, atol=1e-6)


def test_dropout_gradient_matches_finite_differences():
    """With dropout on, the hand-written backward is the derivative of the (fixed-mask) forward."""
    ens = Ensemble(_models(2, dropout=0.5), group_size=1, dropout=0.5, dtype=torch.float64)
    xa, xt = torch.randn(2, 6, 12, dtype=torch.float64), torch.randn(2, 6, 10, dtype=torch.float64)
    upstream = [torch.randn(2, 3, 6, dtype=torch.float64) for _ in HEADS]
    state = ens.generator.get_state()

    def loss() -> float:
        ens.generator.set_state(state)                     # the same dropout masks every time
        logits, cache = ens.forward(xa.clone(), xt.clone(), train=True)
        return float(sum((lg * u).sum() for lg, u in zip(logits, upstream))), cache

    value, cache = loss()
    ens.backward(cache, upstream)
    zero_hidden = (cache["hidden"][0] == 0).double().mean()
    assert 0.3 < zero_hidden < 0.9                           # dropout (and ReLU) really zeroed units
    direction = {n: torch.randn_like(t) for n, t in ens.params.items()}
    direction["b_t"].view(2, -1, 1)[:, 6:12] = 0             # the text block has no gate bias
    analytic = sum(float((ens.params[n].grad * d).sum()) for n, d in direction.items())
    eps = 1e-6
    with torch.no_grad():
        for n, d in direction.items():
            ens.params[n].add_(eps * d)
        plus, _ = loss()
        for n, d in direction.items():
            ens.params[n].sub_(2 * eps * d)
        minus, _ = loss()
    assert abs((plus - minus) / (2 * eps) - analytic) < 1e-6 * max(1.0, abs(analytic))


def test_dropout_drops_the_configured_fraction():
    ens = Ensemble(_models(4, dropout=0.1, dtype=torch.float32), group_size=2, dropout=0.1,
                   dtype=torch.float32)
    xa, xt = torch.randn(2, 400, 12), torch.randn(2, 400, 10)
    _, train = ens.forward(xa.clone(), xt.clone(), train=True)
    _, evaluation = ens.forward(xa.clone(), xt.clone(), train=False)
    for m in range(3):
        active = evaluation["hidden"][m] > 0
        dropped = (train["hidden"][m] == 0) & active
        assert dropped.sum() / active.sum() == pytest.approx(0.1, abs=0.01)
        kept = active & ~dropped                               # survivors unchanged; 1/keep goes on the product
        torch.testing.assert_close(train["hidden"][m][kept], evaluation["hidden"][m][kept])
    assert train["scale"] == pytest.approx(1 / 0.9, rel=1e-4)


@pytest.mark.parametrize("shared", [False, True], ids=["rows-per-group", "same-rows-for-all"])
def test_bfloat16_products_stay_close_to_float32(shared):
    """Mixed precision: bfloat16 first-layer products change outputs and gradients by rounding only, and the
    weights and their gradients stay float32 (what AdamW updates)."""
    models = _models(4, dropout=0.0, dtype=torch.float32)
    exact = Ensemble(models, group_size=2)
    mixed = Ensemble(models, group_size=2, matmul_dtype=torch.bfloat16)
    xa, xt = torch.randn(2, 64, 12), torch.randn(2, 64, 10)
    args = (xa[0], xt[0]) if shared else (xa, xt)
    upstream = [torch.randn(4, 3, 64) for _ in HEADS]
    outputs = []
    for ens in (exact, mixed):
        logits, cache = ens.forward(*args, train=True)
        ens.backward(cache, upstream)
        outputs.append((logits, {n: t.grad.clone() for n, t in ens.params.items()}))
    (ref_logits, ref_grads), (low_logits, low_grads) = outputs
    for ref, low in zip(ref_logits, low_logits):
        assert low.dtype == torch.float32
        assert 0 < (low - ref).norm() / ref.norm() < 2e-2      # rounded, so not identical, but close
    for name, ref in ref_grads.items():
        assert mixed.params[name].dtype == low_grads[name].dtype == torch.float32
        assert (low_grads[name] - ref).norm() <= 5e-2 * ref.norm(), name   # sums over rows of rounded terms


def test_bfloat16_protocol_selects_like_float32(data):
    """The same fold trained in both precisions reaches the same validation scores and test predictions:
    measured 0.0002 apart in validation JS and 0.0007 JS between predictions, where two seeds differ by 0.03."""
    folds = {p: run_fold(data, ProtocolConfig(**{**SMALL, "precision": p}), fold=0) for p in ("fp32", "bf16")}
    exact, mixed = folds["fp32"], folds["bf16"]
    assert np.abs(mixed.best_val - exact.best_val).max() < 0.005         # validation JS of every run
    student = HEADS.index("AT")
    ref, low = exact.test_pred[:, student], mixed.test_pred[:, student]
    assert distribution_metrics(ref.reshape(-1, ref.shape[-1]), low.reshape(-1, low.shape[-1]))["js"] < 0.01


def test_precision_flag():
    assert ProtocolConfig(precision="fp32").matmul_dtype == torch.float32
    assert ProtocolConfig(precision="bf16").matmul_dtype == torch.bfloat16
    auto = ProtocolConfig().precision                         # resolved like device="auto"
    assert auto == ("bf16" if native_bf16(torch.device("cpu")) else "fp32")
    with pytest.raises(ProtocolError, match="precision"):
        ProtocolConfig(precision="fp16")


@pytest.mark.parametrize("kind", [FastEnsemble, GenericEnsemble], ids=["fast", "generic"])
def test_best_epoch_weights_are_restored(data, kind):
    """Each run ends with the weights of its best validation epoch, chosen per run by masking."""
    cfg = ProtocolConfig(**{**SMALL, "max_epochs": 5, "lr": 3e-2, "dropout": 0.0})
    runs = fold_runs(cfg)
    fit, val = validation_split(np.flatnonzero(data.folds != 0), data.groups, 0.2, 0)
    init = {s: AmbER2Model(20, 16, list(data.classes), "synthetic", 32, 32, 0.0) for s in cfg.seeds}
    ens = kind([init[r.seed] for r in runs], 3)
    tensors = {k: torch.from_numpy(getattr(data, k)) for k in ("audio", "text", "y")}
    from amber2.losses import class_balanced_weights
    trained = train_ensemble(ens, runs, tensors, fit, val, cfg, class_balanced_weights(tensors["y"][fit]),
                             [1, 2], data.y[val])
    assert trained.val_curve.shape == (len(runs), 5)
    np.testing.assert_array_equal(trained.best_epoch, trained.val_curve.argmin(1) + 1)
    assert (trained.best_epoch < 5).any(), \
        "a large learning rate should make some run peak before the last epoch"
    probs = ens.predict(tensors["audio"][val], tensors["text"][val])[:, HEADS.index("AT")].numpy()
    now = [distribution_metrics(data.y[val], p)["js"] for p in probs]
    np.testing.assert_allclose(now, trained.best_val, rtol=1e-5)


# --------------------------------------------------------------------------------------------- selection


def test_selection_uses_the_mean_over_seeds():
    runs = [RunSpec(s, "amber2", lam, 4.0) for s in (0, 1) for lam in (0.3, 0.5, 0.7)] + [RunSpec(0, "cbce")]
    # lambda 0.3 has the single best run (0.10) but lambda 0.5 the best mean (0.20 vs 0.25 and 0.35)
    best_val = np.array([0.10, 0.20, 0.30, 0.40, 0.20, 0.40, 0.33])
    sel = select_grid_point(runs, best_val, "js")
    assert (sel["amber2"]["lambda_mai"], sel["amber2"]["kappa"]) == (0.5, 4.0)
    assert sel["amber2"]["score"] == pytest.approx(0.20)
    assert sel["amber2"]["scores"]["lambda_mai=0.3,kappa=4"] == pytest.approx(0.25)
    assert sel["cbce"]["key"] == "cbce"
    # a metric where higher is better picks the other end
    assert select_grid_point(runs, best_val, "bc")["amber2"]["lambda_mai"] == 0.7


def test_final_hyperparameters_are_the_most_selected(result):
    picks = [f.selection["amber2"]["key"] for f in result.folds]
    lam, kap = final_hyperparameters(result)
    assert f"lambda_mai={lam:g},kappa={kap:g}" in picks
    if len(set(picks)) == 1:
        assert f"lambda_mai={lam:g},kappa={kap:g}" == picks[0]


# ------------------------------------------------------------------------------------------ the protocol


def test_protocol_results_shape_and_content(result, data):
    cfg = ProtocolConfig(**SMALL)
    n_runs = len(cfg.seeds) * (len(cfg.grid) + 1)
    assert [f.fold for f in result.folds] == [0, 1]
    for f in result.folds:
        assert f.test_pred.shape == (n_runs, 3, len(f.test_index), 4)
        assert f.val_curve.shape == (n_runs, cfg.max_epochs)
        assert not set(f.val_index) & set(f.test_index)
        assert set(data.groups[f.val_index]).isdisjoint(data.groups[np.setdiff1d(
            np.flatnonzero(data.folds != f.fold), f.val_index)])
    for method in ("cbce", "amber2"):
        pred = result.predictions[method]
        assert pred.shape == (2, 3, len(data.y), 4) and np.isfinite(pred).all()
        for h, head in enumerate(HEADS):
            block = result.metrics[method][head]
            assert set(block) == {"js", "jsd_bits", "bc", "r2", "acc", "f1", "wf1", "ece"}
            for s in range(2):                               # per seed: amber2.metrics on pooled predictions
                expected = all_metrics(data.y, pred[s, h])
                assert block["js"]["per_seed"][s] == pytest.approx(expected["js"])
                assert block["wf1"]["per_seed"][s] == pytest.approx(expected["wf1"])
            assert block["js"]["mean"] == pytest.approx(np.mean(block["js"]["per_seed"]))
            assert block["js"]["std"] == pytest.approx(np.std(block["js"]["per_seed"], ddof=1))
            assert block["js"]["std"] > 0                   # seeds really differ
        bins = result.binned[method]["AT"]
        assert len(bins) == 4 and sum(b["n"] for b in bins) == len(data.y)
    json.dumps(result.to_dict())                             # every number is JSON-ready


def test_both_methods_beat_a_uniform_guess(result, data):
    uniform = distribution_metrics(data.y, np.full_like(data.y, 0.25))
    for method in ("cbce", "amber2"):
        m = result.metrics[method]["AT"]
        assert m["js"]["mean"] < uniform["js"] - 0.02, method
        assert m["r2"]["mean"] > 0.2, method


def test_pooled_predictions_come_from_the_selected_runs(result, data):
    f = result.folds[1]
    r = f.run_index(1, "amber2")
    assert f.runs[r].grid_key() == f.selection["amber2"]["key"]
    np.testing.assert_array_equal(result.predictions["amber2"][1][:, f.test_index], f.test_pred[r])


def test_chunking_does_not_change_results(data):
    """runs_per_batch only changes how many runs train at once (exactly the same without dropout)."""
    base = {**SMALL, "max_epochs": 2, "dropout": 0.0}
    a = run_fold(data, ProtocolConfig(**base), fold=1)
    b = run_fold(data, ProtocolConfig(**base, runs_per_batch=2), fold=1)
    np.testing.assert_allclose(a.test_pred, b.test_pred, atol=2e-5)
    np.testing.assert_array_equal(a.best_epoch, b.best_epoch)


def test_resume_skips_finished_folds(data, tmp_path):
    cfg = ProtocolConfig(**{**SMALL, "max_epochs": 2})

    class Stop(Exception):
        pass

    def stop_after_first(fold_result):
        raise Stop(fold_result.fold)

    with pytest.raises(Stop):
        run_protocol(data, cfg, tmp_path, on_fold_done=stop_after_first)
    saved = tmp_path / "folds" / "fold_0.npz"
    assert saved.exists() and (tmp_path / "folds" / "fold_0.json").exists()
    assert not (tmp_path / "folds" / "fold_1.json").exists()
    stamp = saved.stat().st_mtime_ns
    computed = []
    res = run_protocol(data, cfg, tmp_path, on_fold_done=lambda f: computed.append(f.fold))
    assert computed == [1]
    assert saved.stat().st_mtime_ns == stamp
    assert res.predictions["amber2"].shape[2] == len(data.y)
    # a third call computes nothing and gives the same numbers
    again = run_protocol(data, cfg, tmp_path, on_fold_done=lambda f: computed.append(f.fold))
    assert computed == [1]
    assert again.metrics == res.metrics
    # other settings in the same folder: refused, not silently mixed
    with pytest.raises(ProtocolError, match="fresh output folder"):
        run_protocol(data, dataclasses.replace(cfg, lr=1e-2), tmp_path)


def test_train_final_returns_a_working_model(data):
    cfg = ProtocolConfig(**{**SMALL, "max_epochs": 8})
    model = train_final(data, cfg, lambda_mai=0.5, kappa=4.0, seed=3)
    assert isinstance(model, AmbER2Model)
    assert model.provenance["lambda_mai"] == 0.5 and 1 <= model.provenance["best_epoch"] <= 8
    probs = model.predict(torch.from_numpy(data.audio), torch.from_numpy(data.text))["AT"].numpy()
    uniform = distribution_metrics(data.y, np.full_like(data.y, 0.25))["js"]
    assert distribution_metrics(data.y, probs)["js"] < uniform - 0.02
    torch.testing.assert_close(model.audio_mean, torch.from_numpy(data.audio).mean(0), atol=0.2, rtol=0)


def test_every_run_is_calibrated_on_its_validation_split_and_the_report_says_so(result, data, tmp_path):
    """Each run's heads get a temperature; the calibrated predictions keep the top class, the report gives ECE
    before and after, a saved fold keeps its temperatures, and the shipped model carries its own."""
    from amber2.calibration import apply_temperature
    from train.results import load_fold, pooled_predictions, save_fold

    for fold in result.folds:
        assert fold.temperatures.shape == (len(fold.runs), 3) and (fold.temperatures > 0).all()
    calibrated = pooled_predictions(result.folds, len(data.y), SMALL["seeds"], calibrated=True)
    for method, pred in result.predictions.items():
        assert np.array_equal(calibrated[method].argmax(-1), pred.argmax(-1))
    f = result.folds[0]
    r = f.run_index(SMALL["seeds"][0], "amber2")
    first = f.test_index
    assert np.allclose(calibrated["amber2"][0][:, first], apply_temperature(f.test_pred[r], f.temperatures[r]))
    summary = result.to_dict()["calibrated"]
    assert set(summary) == {"ece", "temperature", "reliability", "reading"}
    assert all(0 <= summary["ece"][m][h]["mean"] <= 1 for m in ("cbce", "amber2") for h in ("A", "T", "AT"))
    save_fold(f, tmp_path, "x")
    assert np.array_equal(load_fold(tmp_path, f.fold, "x").temperatures, f.temperatures)
    model = train_final(data, ProtocolConfig(**{**SMALL, "max_epochs": 3}), 0.5, 4.0, seed=0)
    assert set(model.config.temperatures) == {"A", "T", "AT"}
    assert all(0.125 <= t <= 8 for t in model.config.temperatures.values())


def test_the_fused_bar_reads_the_experts_mixture_the_student_chooses(result, data, tmp_path):
    """Every run fits a temperature for the arbitrated reading on its validation split; the report scores it
    beside the student (it invents a top class no expert shows less often); the final model ships with it,
    and --fused-reading student keeps the paper's fusion head on the page."""
    from amber2.arbitration import arbitrate
    from train.results import load_fold, save_fold

    for fold in result.folds:
        assert fold.reading_temperatures.shape == (len(fold.runs),) and (fold.reading_temperatures > 0).all()
    f = result.folds[0]
    save_fold(f, tmp_path, "x")
    assert np.array_equal(load_fold(tmp_path, f.fold, "x").reading_temperatures, f.reading_temperatures)
    reading = result.to_dict()["calibrated"]["reading"]
    for method in ("cbce", "amber2"):
        rows = reading[method]
        assert set(rows) == {"student", "arbitrated", "temperature"}
        assert rows["arbitrated"]["invented"]["mean"] <= rows["student"]["invented"]["mean"]
        assert 0 <= rows["arbitrated"]["ece"]["mean"] <= 1
    from train.report import write_report

    write_report(result, tmp_path / "report", "toy")
    assert "## The fused bar as the app shows it" in (tmp_path / "report" / "report.md").read_text()

    cfg = ProtocolConfig(**{**SMALL, "max_epochs": 3})
    model = train_final(data, cfg, 0.5, 8.0, seed=0)
    assert model.config.fused_reading == "arbitrated" and model.config.reading_kappa == 8.0
    a, t = torch.from_numpy(data.audio[:20]), torch.from_numpy(data.text[:20])
    shown = model.predict(a, t)
    model.config.fused_reading = "student"
    heads = model.predict(a, t)
    want = arbitrate(*(heads[h].double().numpy() for h in ("A", "T", "AT")), 8.0, model.config.reading_temperature)
    np.testing.assert_allclose(shown["AT"].numpy(), want, atol=1e-5)
    student = train_final(data, ProtocolConfig(**{**SMALL, "max_epochs": 3, "fused_reading": "student"}), 0.5, 8.0)
    assert student.config.fused_reading == "student"


# ----------------------------------------------------------------------------------- splits and bad input


def test_validation_split_keeps_groups_whole():
    groups = np.array([f"g{i // 10}" for i in range(200)])
    fit, val = validation_split(np.arange(200), groups, 0.1, seed=5)
    assert len(val) == 20 and set(groups[fit]).isdisjoint(groups[val])
    assert np.array_equal(np.sort(np.concatenate([fit, val])), np.arange(200))
    fit2, val2 = validation_split(np.arange(200), groups, 0.1, seed=5)
    assert np.array_equal(val, val2)
    with pytest.raises(ProtocolError, match="only 1 group"):
        validation_split(np.arange(10), np.array(["one"] * 10), 0.1, seed=0)


def test_bad_input_gets_a_clear_message(data):
    with pytest.raises(ProtocolError, match="one row per item"):
        ProtocolData(data.audio[:10], data.text, data.y, data.folds, data.groups)
    with pytest.raises(ProtocolError, match="sum to 1"):
        ProtocolData(data.audio, data.text, data.y * 2, data.folds, data.groups)
    bad_audio = data.audio.copy()
    bad_audio[3, 1] = np.nan
    with pytest.raises(ProtocolError, match="NaN"):
        ProtocolData(bad_audio, data.text, data.y, data.folds, data.groups)
    with pytest.raises(ProtocolError, match="2 folds"):
        run_protocol(data, ProtocolConfig(n_folds=5))
    with pytest.raises(ProtocolError, match="selection_metric"):
        ProtocolConfig(selection_metric="loss")
    with pytest.raises(ProtocolError, match="val_fraction"):
        ProtocolConfig(val_fraction=1.5)
    with pytest.raises(ProtocolError, match="bin_mode"):
        ProtocolConfig(bin_mode="log")
    with pytest.raises(ProtocolError, match="not a torch device"):
        ProtocolConfig(device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ProtocolError, match="no CUDA GPU"):
            ProtocolConfig(device="cuda")
    assert ProtocolConfig(device="auto").device == ("cuda" if torch.cuda.is_available() else "cpu")


def test_eq6_exactly_as_written():
    """`lambda_expert=0` without stop-gradients is the paper's Eq. 6: the experts learn only through MAI (and
    u_m), so with lambda_mai = 0 their heads get no gradient, and with lambda_mai > 0 they do."""
    from train.fit import EnsembleLoss

    with pytest.raises(ProtocolError, match="lambda_expert"):
        ProtocolConfig(lambda_expert=0.0)          # detached experts with no rater term would never learn
    cfg = ProtocolConfig(lambda_expert=0.0, detach_experts=False, detach_weights=False)
    logits = [torch.randn(2, 4, 8) for _ in HEADS]
    y = torch.softmax(torch.randn(1, 8, 4), -1)
    runs = [RunSpec(0, "amber2", 0.0, 4.0), RunSpec(0, "amber2", 0.5, 4.0)]
    grads, _ = EnsembleLoss(runs, cfg, None, torch.device("cpu"))(logits, y, group_size=2)
    audio, text, fused = grads
    assert audio[0].abs().max() == 0 and text[0].abs().max() == 0 and fused[0].abs().max() > 0
    assert audio[1].abs().max() > 0 and text[1].abs().max() > 0
    default = EnsembleLoss(runs, ProtocolConfig(), None, torch.device("cpu"))(logits, y, group_size=2)[0]
    assert default[0][0].abs().max() > 0            # the default: each expert also learns from the raters


def test_predictions_file_recomputes_the_reported_metrics(result, data, tmp_path):
    from train.results import save_predictions

    path = save_predictions(result, tmp_path / "predictions.npz", ids=[f"item{i}" for i in range(len(data.y))])
    with np.load(path) as z:
        assert z["ids"][3] == "item3" and z["y"].shape == data.y.shape
        np.testing.assert_array_equal(z["folds"], data.folds)
        for method in ("cbce", "amber2"):
            for head in HEADS:
                pred = z[f"{method}_{head}"]
                assert pred.shape == (len(SMALL["seeds"]), *data.y.shape)
                for seed, p in enumerate(pred):
                    got = all_metrics(z["y"], p)
                    for metric, value in got.items():
                        assert value == pytest.approx(result.metrics[method][head][metric]["per_seed"][seed])


def test_paired_bootstrap_interval(result, data):
    """AmbER² minus CB-CE on the same items: the point difference is that of the reported means, the interval
    holds it, a resample's metrics equal amber2.metrics on the resampled items, and seeds are counted."""
    from amber2.metrics import item_parts, metrics_of_items
    from train.results import paired_bootstrap

    ours, base = result.predictions["amber2"][:, 2], result.predictions["cbce"][:, 2]
    rows = np.random.default_rng(5).integers(0, len(data.y), len(data.y))
    parts = item_parts(data.y, ours[0])
    expected = all_metrics(data.y[rows], ours[0][rows])
    for k, v in metrics_of_items(parts, rows, data.y.shape[1]).items():
        assert v == pytest.approx(expected[k])
    boot = paired_bootstrap(data.y, ours, base, n_resamples=200, seed=0)
    for k, row in boot.items():
        reported = result.metrics["amber2"]["AT"][k]["mean"] - result.metrics["cbce"]["AT"][k]["mean"]
        assert row["difference"] == pytest.approx(reported, abs=1e-9)
        assert row["low"] <= row["difference"] <= row["high"] and row["low"] < row["high"]
        assert 0 <= row["better_seeds"] <= 2
    same = paired_bootstrap(data.y, ours, ours, n_resamples=50)
    assert all(r["low"] == r["high"] == r["difference"] == 0 for r in same.values())
