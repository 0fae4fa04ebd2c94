"""A small end-to-end training run: AmbER² loss + model + metrics learn a planted signal."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from amber2.labels import votes_to_distribution
from amber2.losses import LossConfig, class_balanced_weights, training_loss
from amber2.metrics import all_metrics
from amber2.model import AmbER2Model

C, DA, DT = 4, 32, 24


def _corpus(n: int, seed: int):
    """Embeddings whose class evidence is split across modalities; labels are 5 sampled rater votes."""
    rng = np.random.default_rng(seed)
    wa, wt = np.random.default_rng(99).normal(size=(2, DA, C)), np.random.default_rng(98).normal(size=(DT, C))
    audio, text = rng.normal(size=(n, DA)), rng.normal(size=(n, DT))
    logits = 1.5 * (audio @ wa[0] / np.sqrt(DA) + text @ wt / np.sqrt(DT)) * 2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    votes = np.stack([np.bincount(rng.choice(C, size=5, p=row), minlength=C) for row in p])
    y = np.stack([votes_to_distribution(v) for v in votes])
    return (torch.tensor(audio, dtype=torch.float32), torch.tensor(text, dtype=torch.float32),
            torch.tensor(y, dtype=torch.float32))


@pytest.mark.parametrize("method", ["amber2", "cbce"])
def test_training_lowers_the_loss_and_beats_a_uniform_guess(method, one_thread):
    torch.manual_seed(0)
    a, t, y = _corpus(512, seed=1)
    a_test, t_test, y_test = _corpus(300, seed=2)
    model = AmbER2Model(DA, DT, [f"c{k}" for k in range(C)], "toy", hidden_dim=32, fusion_dim=32)
    model.set_input_stats(a.mean(0), a.std(0), t.mean(0), t.std(0))
    cfg = LossConfig(method=method)
    weights = class_balanced_weights(y)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)

    epoch_losses = []
    for epoch in range(15):
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
        total = 0.0
        for idx in perm.split(128):
            loss, parts = training_loss(model(a[idx], t[idx]), y[idx], cfg, weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert torch.isfinite(loss)
            total += loss.item() * len(idx)
        epoch_losses.append(total / len(y))
    assert epoch_losses[-1] < 0.6 * epoch_losses[0]

    probs = model.predict(a_test, t_test)
    uniform = all_metrics(y_test.numpy(), np.full((len(y_test), C), 1 / C))
    fused = all_metrics(y_test.numpy(), probs["AT"].numpy())
    assert fused["js"] < 0.7 * uniform["js"]
    assert fused["bc"] > uniform["bc"] and fused["acc"] > 0.6
    if method == "amber2":
        # both modalities carry half the evidence: the fused student beats each expert
        for head in ("A", "T"):
            assert fused["js"] < all_metrics(y_test.numpy(), probs[head].numpy())["js"]
