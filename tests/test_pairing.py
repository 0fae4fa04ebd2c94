"""Voices and words paired at the vector level: each rule's rows, targets, head weights and folds, and the loss
that leaves a head untaught where the target says nothing about what it reads."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from amber2.heads import HEADS
from amber2.losses import LossConfig, training_loss
from train.config import ProtocolData, ProtocolError
from train.pairing import RULES, PairingConfig, pair_items, pairing_counts, rule_of, source_of
from train.transfer import touches

CLASSES = ("neutral", "happy", "sad", "angry")


def corpus(n_per: int = 24) -> ProtocolData:
    """Voice items (ravdess, one vote, every class) and word items (emotionlines, votes), two folds."""
    rng = np.random.default_rng(0)
    audio, text, y, ids, groups, folds = [], [], [], [], [], []
    for i in range(n_per * 4):
        k = i % 4
        audio.append(rng.normal(size=6) + k)
        text.append(np.zeros(5))
        y.append(np.eye(4)[k])
        ids.append(f"ravdess/v{i:03d}")
        groups.append(f"actor{i % 6}")
        folds.append((i // 4) % 2)
    for i in range(n_per * 4):
        k = i % 4
        audio.append(np.zeros(6))
        text.append(rng.normal(size=5) + k)
        votes = np.eye(4)[k] if i % 3 else 0.6 * np.eye(4)[k] + 0.4 * np.eye(4)[(k + 1) % 4]
        y.append(votes)
        ids.append(f"emotionlines/t{i:03d}")
        groups.append(f"dialogue{i % 8}")
        folds.append((i // 4) % 2)
    return ProtocolData(audio=np.array(audio), text=np.array(text), y=np.array(y), folds=np.array(folds),
                        groups=np.array(groups), classes=CLASSES, ids=np.array(ids))


def test_each_rule_pairs_a_voice_and_words_of_one_fold_with_its_stated_target():
    data = corpus()
    paired = pair_items(data, PairingConfig(rules=RULES, calm_voice_items=40, conflict_items=30))
    n = len(data.y)
    assert np.array_equal(paired.audio[:n], data.audio) and np.array_equal(paired.y[:n], data.y)
    assert np.all(paired.head_weight[:n] == 1)
    index = {str(i): r for r, i in enumerate(data.ids)}
    seen = set()
    for r in range(n, len(paired.y)):
        rule = rule_of(paired.ids[r])
        seen.add(rule)
        voice_id, words_id = paired.ids[r].split("/", 1)[1].split("+")
        v, w = index[voice_id], index[words_id]
        assert voice_id.startswith("ravdess/") and words_id.startswith("emotionlines/")
        assert data.folds[v] == data.folds[w] == paired.folds[r]
        assert np.array_equal(paired.audio[r], data.audio[v]) and np.array_equal(paired.text[r], data.text[w])
        if rule == "voice-plain":
            assert data.y[w, 0] == 1.0                              # all raters said neutral
            assert np.array_equal(paired.y[r], data.y[v]) and list(paired.head_weight[r]) == [1, 0, 1]
        elif rule == "calm-voice-words":
            assert data.y[v].argmax() == 0 and data.y[w].argmax() != 0
            assert np.array_equal(paired.y[r], data.y[w]) and list(paired.head_weight[r]) == [0, 1, 1]
        else:
            assert data.y[v].argmax() != 0 and data.y[w].argmax() not in (0, data.y[v].argmax())
            assert np.allclose(paired.y[r], 0.5 * data.y[v] + 0.5 * data.y[w])
            assert list(paired.head_weight[r]) == [0, 0, 1]
    assert seen == {"voice-plain", "calm-voice-words", "conflict"}
    counts = pairing_counts(paired.ids)
    assert counts["pair:voice-plain"] == 96 and counts["ravdess"] == 96
    assert abs(counts["pair:calm-voice-words"] - 40) <= 1 and 0 < counts["pair:conflict"] <= 31


def test_pairing_is_deterministic_and_the_rules_can_be_chosen():
    data = corpus()
    a, b = pair_items(data, PairingConfig(rules=RULES)), pair_items(data, PairingConfig(rules=RULES))
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.y, b.y)
    only = pair_items(data, PairingConfig(rules=("voice-plain",)))
    assert {source_of(i) for i in only.ids} == {"ravdess", "emotionlines", "pair:voice-plain"}
    none = pair_items(data, PairingConfig(rules=()))
    assert len(none.y) == len(data.y) and np.all(none.head_weight == 1)


def test_pairing_refuses_what_it_cannot_read():
    data = corpus()
    with pytest.raises(ProtocolError, match="unknown pairing rule"):
        PairingConfig(rules=("shout",))
    with pytest.raises(ProtocolError, match="already paired"):
        pair_items(pair_items(data, PairingConfig(rules=RULES)))
    bare = ProtocolData(audio=data.audio, text=data.text, y=data.y, folds=data.folds, groups=data.groups,
                        classes=CLASSES)
    with pytest.raises(ProtocolError, match="needs item ids"):
        pair_items(bare)
    with pytest.raises(ProtocolError, match="'neutral' class"):
        pair_items(ProtocolData(audio=data.audio, text=data.text, y=data.y, folds=data.folds,
                                groups=data.groups, classes=("a", "b", "c", "d"), ids=data.ids))


def test_leaving_a_corpus_out_also_leaves_out_the_rows_paired_with_it():
    paired = pair_items(corpus(), PairingConfig(rules=RULES))
    ravdess = touches(paired.ids, "ravdess")
    assert ravdess[[source_of(i) == "ravdess" for i in paired.ids]].all()
    assert ravdess[[i.startswith("pair:") for i in paired.ids]].all()      # every pair holds a ravdess voice
    assert not ravdess[[source_of(i) == "emotionlines" for i in paired.ids]].any()


@pytest.mark.parametrize("method", ["amber2", "cbce"])
def test_a_head_weighted_zero_gets_no_gradient_from_the_raters(method):
    torch.manual_seed(0)
    logits = {h: torch.randn(4, 3, requires_grad=True) for h in HEADS}
    y = torch.softmax(torch.randn(4, 3), -1)
    heads = torch.tensor([[1.0, 0.0, 1.0]] * 4)                  # the words head is not taught
    cfg = LossConfig(method=method)
    loss, _ = training_loss(logits, y, cfg, class_weights=torch.ones(3), head_weight=heads)
    loss.backward()
    assert logits["T"].grad.abs().max() == 0
    assert logits["A"].grad.abs().max() > 0 and logits["AT"].grad.abs().max() > 0
    for h in HEADS:
        logits[h].grad = None
    ones, _ = training_loss(logits, y, cfg, class_weights=torch.ones(3), head_weight=torch.ones(4, 3))
    plain, _ = training_loss(logits, y, cfg, class_weights=torch.ones(3))
    assert torch.allclose(ones, plain)
