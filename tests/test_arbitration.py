"""The arbitrated fused reading: the experts' mixture, weighted by Eq. 5 with the student in the raters' place."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from amber2.arbitration import arbitrate, fit_reading_temperature, voice_trust
from amber2.model import AmbER2Config, AmbER2Model, load_model

CLASSES = ["neutral", "happy", "sad", "angry"]


def dist(*p: float) -> np.ndarray:
    return np.array(p, dtype=np.float64) / np.sum(p)


def test_plain_words_and_an_angry_voice_read_angry_when_the_student_sides_with_the_voice():
    voice, words = dist(0.2, 0.1, 0.1, 0.6), dist(0.55, 0.15, 0.15, 0.15)
    student = dist(0.25, 0.1, 0.1, 0.55)       # it learned that plain words carry no emotion
    fused = arbitrate(voice, words, student, kappa=8.0)
    assert CLASSES[fused.argmax()] == "angry"
    assert voice_trust(voice, words, student, 8.0) > 0.5
    # and the other way round: a flat voice, emotional words, a student that reads the words
    fused = arbitrate(dist(0.6, 0.1, 0.2, 0.1), dist(0.1, 0.1, 0.7, 0.1), dist(0.15, 0.1, 0.65, 0.1), 8.0)
    assert CLASSES[fused.argmax()] == "sad"


def test_the_reading_never_names_what_neither_expert_shows_when_they_agree_and_lies_between_them():
    rng = np.random.default_rng(0)
    voice, words, student = (rng.dirichlet(np.ones(7), 2000) for _ in range(3))
    fused = arbitrate(voice, words, student, kappa=4.0)
    np.testing.assert_allclose(fused.sum(-1), 1.0, atol=1e-9)
    u = voice_trust(voice, words, student, 4.0)[:, None]
    np.testing.assert_allclose(fused, u * voice + (1 - u) * words, atol=1e-12)
    agree = voice.argmax(1) == words.argmax(1)
    assert (fused.argmax(1)[agree] == voice.argmax(1)[agree]).all()
    # the bare student invents freely on random inputs; the mixture rarely (only where both experts are unsure)
    top = fused.argmax(1)
    invented = (top != voice.argmax(1)) & (top != words.argmax(1))
    assert invented.mean() < 0.1


def test_kappa_zero_is_the_plain_average_and_a_large_kappa_picks_the_expert_nearer_the_student():
    voice, words = dist(0.7, 0.1, 0.1, 0.1), dist(0.1, 0.1, 0.1, 0.7)
    np.testing.assert_allclose(arbitrate(voice, words, voice, 0.0), (voice + words) / 2)
    np.testing.assert_allclose(arbitrate(voice, words, dist(0.6, 0.1, 0.1, 0.2), 500.0), voice, atol=1e-6)


def test_the_reading_temperature_sharpens_a_shy_mixture():
    """Two experts that disagree mix into a flatter distribution than either: the fitted temperature is below 1
    when the raters side with one of them."""
    rng = np.random.default_rng(1)
    n = 400
    truth = rng.integers(0, 4, n)
    y = np.eye(4)[truth] * 0.85 + 0.15 / 4
    voice = np.where(rng.random((n, 1)) < 0.5, y, rng.dirichlet(np.ones(4), n))
    words = np.where(rng.random((n, 1)) < 0.5, y, rng.dirichlet(np.ones(4), n))
    student = (voice + words) / 2
    t = fit_reading_temperature(np.stack([voice, words, student])[None], [4.0], y)
    assert t.shape == (1,) and t[0] < 1.0


def test_a_checkpoint_says_which_fused_reading_it_shows_and_an_old_one_shows_the_student(tmp_path):
    model = AmbER2Model(audio_dim=6, text_dim=5, classes=CLASSES, label_space="toy")
    model.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    for key in ("fused_reading", "reading_kappa", "reading_temperature"):
        config.pop(key)        # a checkpoint written before the arbitrated reading existed
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    old = load_model(tmp_path / "old")
    a, t = torch.randn(8, 6), torch.randn(8, 5)
    assert old.config.fused_reading == "student"
    torch.testing.assert_close(old.predict(a, t)["AT"], torch.softmax(old(a, t)["AT"], -1))

    old.config.fused_reading, old.config.reading_kappa, old.config.reading_temperature = "arbitrated", 8.0, 0.6
    old.save_pretrained(tmp_path / "new")
    new = load_model(tmp_path / "new")
    assert (new.config.fused_reading, new.config.reading_kappa, new.config.reading_temperature) == (
        "arbitrated", 8.0, 0.6)
    shown = new.predict(a, t)
    with torch.no_grad():
        heads = {h: torch.softmax(z, -1).double().numpy() for h, z in new.eval()(a, t).items()}
    np.testing.assert_allclose(shown["AT"].numpy(), arbitrate(heads["A"], heads["T"], heads["AT"], 8.0, 0.6),
                               atol=1e-5)


@pytest.mark.parametrize("fields", [{"fused_reading": "vote"}, {"reading_kappa": -1.0},
                                    {"reading_temperature": 0.0}])
def test_a_config_with_a_bad_reading_is_refused(fields):
    with pytest.raises(ValueError, match="fused_reading|reading_kappa"):
        AmbER2Config(audio_dim=6, text_dim=5, classes=CLASSES, label_space="toy", **fields)
