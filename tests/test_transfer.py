"""Leave-one-corpus-out: a voice that carries over scores high on the corpus left out, one that does not is
near chance, and bad requests say what is wrong."""
from __future__ import annotations

import numpy as np
import pytest

from train.config import ProtocolConfig, ProtocolData, ProtocolError
from train.transfer import check_corpus, corpus_of, leave_one_corpus_out, subset, transfer_table

QUICK = dict(n_folds=2, seeds=(0, 1), max_epochs=8, batch_size=32, hidden_dim=32, fusion_dim=32, lr=3e-3,
             num_threads=1)
C, DA, DT = 4, 12, 8


def corpora(same_voice: bool, seed: int = 0) -> ProtocolData:
    """Two voice corpora (a, b) and a text corpus (t). Voices of a class share a prototype in both corpora
    when same_voice, else corpus b's voices follow prototypes of their own; text items have a flat voice."""
    rng = np.random.default_rng(seed)
    protos = {"a": rng.normal(size=(C, DA)) * 2}
    protos["b"] = protos["a"] if same_voice else rng.normal(size=(C, DA)) * 2
    words = rng.normal(size=(C, DT)) * 2
    audio, text, y, ids, groups = [], [], [], [], []
    for corpus, n in (("a", 160), ("b", 160), ("t", 160)):
        labels = np.arange(n) % C
        for i, k in enumerate(labels):
            voice = corpus != "t"
            audio.append((protos[corpus][k] if voice else np.zeros(DA)) + rng.normal(size=DA) * 0.5)
            text.append((np.zeros(DT) if voice else words[k]) + rng.normal(size=DT) * 0.5)
            y.append(np.eye(C)[k])
            ids.append(f"{corpus}/{i}")
            groups.append(f"{corpus}-speaker{i % 8}")
    n = len(y)
    return ProtocolData(audio=np.array(audio), text=np.array(text), y=np.array(y), folds=np.arange(n) % 2,
                        groups=np.array(groups), classes=tuple(f"c{k}" for k in range(C)), ids=np.array(ids))


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here trains: see conftest.one_thread."""


def test_a_voice_that_carries_over_scores_high_on_the_corpus_left_out():
    scores = leave_one_corpus_out(corpora(same_voice=True), ProtocolConfig(**QUICK), 0.3, 4.0, ["a", "b"])
    assert set(scores) == {"a", "b"} and all(set(s) == {0, 1} for s in scores.values())
    assert min(v for s in scores.values() for v in s.values()) > 0.9


def test_a_voice_of_its_own_is_near_chance_on_the_corpus_left_out():
    scores = leave_one_corpus_out(corpora(same_voice=False), ProtocolConfig(**QUICK), 0.3, 4.0, ["b"])
    assert np.mean(list(scores["b"].values())) < 0.5          # chance is 0.25; trained on a, it reads a's voices


def test_the_held_out_corpus_is_never_trained_on(monkeypatch):
    import train.protocol as protocol

    seen = []
    real = protocol.train_final
    monkeypatch.setattr(protocol, "train_final", lambda data, *a: seen.append(set(corpus_of(data.ids))) or
                        real(data, *a))
    leave_one_corpus_out(corpora(True), ProtocolConfig(**{**QUICK, "seeds": (0,), "max_epochs": 1}), 0.3, 4.0,
                         ["a", "b"])
    assert seen == [{"b", "t"}, {"a", "t"}]


def test_subset_keeps_the_fields_in_step():
    data = corpora(True)
    part = subset(data, corpus_of(data.ids) == "t")
    assert len(part.y) == len(part.audio) == len(part.groups) == len(part.ids) == 160
    assert set(corpus_of(part.ids)) == {"t"} and np.all(part.audio == data.audio[320:])


def test_bad_requests_say_what_is_wrong():
    data, cfg = corpora(True), ProtocolConfig(**QUICK)
    with pytest.raises(ProtocolError, match="no item of corpus 'emovo'"):
        leave_one_corpus_out(data, cfg, 0.3, 4.0, ["emovo"])
    with pytest.raises(ProtocolError, match="needs item ids"):
        leave_one_corpus_out(ProtocolData(audio=data.audio, text=data.text, y=data.y, folds=data.folds,
                                          groups=data.groups), cfg, 0.3, 4.0, ["a"])
    only_a = subset(data, corpus_of(data.ids) == "a")
    with pytest.raises(ProtocolError, match="nothing would be left"):
        leave_one_corpus_out(only_a, cfg, 0.3, 4.0, ["a"])


def test_table_shows_each_seed_the_mean_and_the_check_apart():
    table = transfer_table({"ravdess": {0: 0.40, 1: 0.44}, "nemo": {0: 0.30, 1: 0.26}}, {"EMOVO": {0: 0.5, 1: 0.4}})
    lines = table.splitlines()
    assert "| ravdess | 0.400 | 0.440 | 0.420 ± 0.020 |" in lines
    assert "| nemo | 0.300 | 0.260 | 0.280 ± 0.020 |" in lines
    assert lines[-2].startswith("| mean over the corpora left out") and lines[-2].endswith("| 0.350 |")
    assert lines[-1] == "| check: EMOVO, trained on every corpus | 0.500 | 0.400 | 0.450 ± 0.050 |"


def test_a_check_corpus_is_scored_by_a_model_trained_on_every_corpus():
    train_on, other = corpora(True, seed=0), corpora(True, seed=0)
    voice = corpus_of(other.ids) == "b"
    scores = check_corpus(train_on, ProtocolConfig(**{**QUICK, "seeds": (3,)}), 0.3, 4.0, other.audio[voice],
                          other.text[voice], other.y[voice].argmax(1))
    assert list(scores) == [3] and scores[3] > 0.9
