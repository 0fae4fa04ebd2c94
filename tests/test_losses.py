"""JS divergence, the AmbER² loss (Eq. 3-6) and the CB-CE baseline, against independent references."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from amber2.losses import (HEADS, LossConfig, amber2_loss, cb_ce_loss, class_balanced_weights, expert_weights,
                           js_divergence, training_loss)

F64 = torch.float64  # double precision so comparisons with the written-out formulas are tight


def _dirichlet(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).dirichlet(np.ones(shape[-1]), size=shape[:-1]))


def test_js_matches_scipy_squared_distance():
    p, q = _dirichlet(50, 5, seed=1), _dirichlet(50, 5, seed=2)
    p[:10, 0] = 0  # zeros in one argument
    p[:10] /= p[:10].sum(-1, keepdim=True)
    ref = np.array([jensenshannon(a, b) ** 2 for a, b in zip(p.numpy(), q.numpy())])
    np.testing.assert_allclose(js_divergence(p, q).numpy(), ref, atol=1e-7)


def test_js_symmetric_zero_only_on_equal_and_finite_with_zeros():
    p, q = _dirichlet(20, 4, seed=3), _dirichlet(20, 4, seed=4)
    assert torch.allclose(js_divergence(p, q), js_divergence(q, p))
    assert torch.all(js_divergence(p, q) > 1e-6)
    assert torch.allclose(js_divergence(p, p), torch.zeros(20, dtype=F64), atol=1e-12)
    one_hot_a, one_hot_b = torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0])
    assert js_divergence(one_hot_a, one_hot_b).item() == pytest.approx(np.log(2))  # the maximum
    assert torch.isfinite(js_divergence(one_hot_a, one_hot_a)) and js_divergence(one_hot_a, one_hot_a) == 0


def test_js_batched_over_leading_axes():
    p, q = _dirichlet(3, 7, 5, seed=5), _dirichlet(7, 5, seed=6)
    out = js_divergence(p, q.unsqueeze(0))
    assert out.shape == (3, 7)
    assert torch.allclose(out[2], js_divergence(p[2], q))


def test_expert_weights_softmax_over_experts():
    y = _dirichlet(6, 4, seed=7)
    near = 0.9 * y + 0.1 / 4
    far = _dirichlet(6, 4, seed=8)
    experts = torch.stack([far, near])
    u = expert_weights(experts, y, kappa=4.0)
    assert u.shape == (2, 6)
    assert torch.allclose(u.sum(0), torch.ones(6, dtype=F64))
    assert torch.all(u[1] > u[0])  # the expert closer to the raters weighs more
    assert torch.allclose(expert_weights(experts, y, 0.0), torch.full((2, 6), 0.5, dtype=F64))
    sharp = expert_weights(experts, y, torch.tensor(1e4))
    assert torch.allclose(sharp, torch.stack([torch.zeros(6, dtype=F64), torch.ones(6, dtype=F64)]), atol=1e-6)
    # Eq. 5 written out: exp(-kappa D_m) / sum exp(-kappa D_m')
    d = torch.stack([js_divergence(e, y) for e in experts])
    assert torch.allclose(u, torch.exp(-4 * d) / torch.exp(-4 * d).sum(0))


def _logits(b=8, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {h: torch.randn(b, c, generator=g, dtype=F64, requires_grad=True) for h in HEADS}


def test_amber2_loss_is_eq6_plus_expert_terms():
    logits, y = _logits(), _dirichlet(8, 4, seed=9)
    cfg = LossConfig(lambda_rai=1.0, lambda_mai=0.7, kappa=2.0, lambda_expert=0.3)
    total, parts = amber2_loss(logits, y, cfg)
    p = {h: torch.softmax(z, -1) for h, z in logits.items()}
    rai = js_divergence(y, p["AT"]).mean()
    d_a, d_t = js_divergence(p["A"], y), js_divergence(p["T"], y)
    u_a = torch.exp(-2 * d_a) / (torch.exp(-2 * d_a) + torch.exp(-2 * d_t))
    mai = (u_a * js_divergence(p["AT"], p["A"]) + (1 - u_a) * js_divergence(p["AT"], p["T"])).mean()
    expert = (js_divergence(y, p["A"]) + js_divergence(y, p["T"])).mean()
    assert torch.allclose(total, rai + 0.7 * mai + 0.3 * expert)
    assert torch.allclose(parts["rai"], rai) and torch.allclose(parts["mai"], mai)
    assert torch.allclose(parts["u_A"] + parts["u_T"], torch.tensor(1.0, dtype=F64))


@pytest.mark.parametrize("student", ["A", "T", "AT"])
def test_any_head_can_be_the_student(student):
    logits, y = _logits(seed=1), _dirichlet(8, 4, seed=10)
    cfg = LossConfig(student=student)
    assert set(cfg.experts) == set(HEADS) - {student}
    total, parts = amber2_loss(logits, y, cfg)
    p = torch.softmax(logits[student], -1)
    assert torch.allclose(parts["rai"], js_divergence(y, p).mean())
    assert {f"u_{h}" for h in cfg.experts} <= set(parts)


def test_gradients_finite_with_zeros_and_detach_flags():
    logits, y = _logits(seed=2), torch.tensor([[1.0, 0, 0, 0]] * 4 + [[0.5, 0.5, 0, 0]] * 4)
    logits["A"].data[:, 0] = 60.0  # a saturated softmax: exact zeros in p_A
    total, _ = amber2_loss(logits, y, LossConfig())
    total.backward()
    for h in HEADS:
        assert torch.all(torch.isfinite(logits[h].grad))
    # with detach_experts and lambda_expert, experts learn from y only: their gradient equals JS(y||p_m)'s
    logits2 = {h: z.detach().clone().requires_grad_(True) for h, z in logits.items()}
    js_divergence(y, torch.softmax(logits2["T"], -1)).mean().backward()
    assert torch.allclose(logits["T"].grad, logits2["T"].grad)


def test_undetached_experts_receive_mai_gradient():
    logits, y = _logits(seed=3), _dirichlet(8, 4, seed=11)
    cfg = LossConfig(lambda_expert=0.0, detach_experts=False, detach_weights=False)
    total, _ = amber2_loss(logits, y, cfg)
    total.backward()
    assert logits["A"].grad.abs().sum() > 0 and logits["T"].grad.abs().sum() > 0


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="student must be one of"):
        LossConfig(student="V")
    with pytest.raises(ValueError, match="unknown loss method"):
        LossConfig(method="ce")
    with pytest.raises(ValueError, match="receive no gradient"):
        LossConfig(lambda_expert=0.0)
    with pytest.raises(ValueError, match="needs class_weights"):
        training_loss(_logits(), _dirichlet(8, 4, seed=0), LossConfig(method="cbce"))


def test_class_balanced_weights_worked_example():
    # N = 4, K = 4, threshold 1/4. Dominant counts n = [3, 1, 0, 0] (y == 0.25 is not > 0.25).
    y = torch.tensor([[0.5, 0.5, 0, 0], [1.0, 0, 0, 0], [0.6, 0.2, 0.2, 0], [0.25, 0.25, 0.25, 0.25]])
    beta = 3 / 4
    raw = [(1 - beta) / (1 - beta**3), (1 - beta) / (1 - beta**1), 1.0, 1.0]  # n = 0 treated as n = 1
    expected = torch.tensor(raw) * 4 / sum(raw)
    w = class_balanced_weights(y)
    assert torch.allclose(w, expected)
    # by hand: raw = [0.25 / (1 - 0.421875), 1, 1, 1] = [0.432432, 1, 1, 1], sum 3.432432, times 4 / sum
    assert w.tolist() == pytest.approx([0.503937, 1.165354, 1.165354, 1.165354], abs=1e-6)
    assert w.sum().item() == pytest.approx(4.0) and torch.all(torch.isfinite(w))
    assert w[0] < w[1]  # the frequent class weighs less


def test_cb_ce_loss_formula():
    y = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    z = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])
    w = torch.tensor([0.5, 1.0, 1.5])
    logp = torch.log_softmax(z, -1)
    s = torch.tensor([0.75, 1.5])
    expected = (-(s[0]) * (0.5 * logp[0, 0] + 0.5 * logp[0, 1]) - s[1] * logp[1, 2]) / 2
    assert torch.allclose(cb_ce_loss(z, y, w), expected)
    # with uniform weights it is the plain soft cross-entropy
    assert torch.allclose(cb_ce_loss(z, y, torch.ones(3)), torch.nn.functional.cross_entropy(z, y))


def test_training_loss_cbce_sums_the_three_heads():
    logits, y = _logits(seed=4), _dirichlet(8, 4, seed=12)
    w = class_balanced_weights(y)
    total, parts = training_loss(logits, y, LossConfig(method="cbce"), w)
    assert torch.allclose(total, sum(cb_ce_loss(logits[h], y, w) for h in HEADS))
    assert set(parts) == {"cbce_A", "cbce_T", "cbce_AT", "total"}


def test_sample_weights_mask_padding():
    logits, y = _logits(seed=5), _dirichlet(8, 4, seed=13)
    mask = torch.tensor([1.0] * 5 + [0.0] * 3)
    masked, _ = amber2_loss(logits, y, LossConfig(), weight=mask)
    first5, _ = amber2_loss({h: z[:5] for h, z in logits.items()}, y[:5], LossConfig())
    assert torch.allclose(masked, first5)


def test_vmap_over_runs_with_tensor_hyperparameters():
    """The protocol trains runs side by side: kappa and lambdas as 0-d tensors under vmap."""
    runs = 3
    logits = {h: torch.randn(runs, 8, 4, dtype=F64) for h in HEADS}
    y = _dirichlet(8, 4, seed=14)
    kappas, mais = torch.tensor([2.0, 4.0, 8.0], dtype=F64), torch.tensor([0.3, 0.5, 0.7], dtype=F64)

    def one(lg, kappa, lam):
        return amber2_loss(lg, y, LossConfig(kappa=kappa, lambda_mai=lam))[0]

    batched = torch.func.vmap(one)(logits, kappas, mais)
    for r in range(runs):
        expected = one({h: z[r] for h, z in logits.items()}, kappas[r].item(), mais[r].item())
        assert torch.allclose(batched[r], expected)
