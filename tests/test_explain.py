"""amber2.explain: the wording a visitor reads; amber2.labels / amber2.weights: the Learn tab's numbers against
independent references."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy

from amber2 import explain
from amber2.explain import ExplainConfig
from amber2.labels import vote_distribution
from amber2.pipeline import Analysis
from amber2.weights import expert_weight_curve

DEMO7 = ["neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"]


def FakeAnalysis(audio: np.ndarray, text: np.ndarray, fused: np.ndarray, classes: list[str] | None = None,
                 transcript: str = "kids are talking by the door") -> Analysis:
    """An Analysis made without the models, its entropy and conflict computed by scipy (independent of amber2)."""
    dists = {"audio": audio, "text": text, "fused": fused}
    return Analysis(transcript=transcript, classes=list(classes or DEMO7), **dists,
                    entropy={h: float(scipy_entropy(p)) for h, p in dists.items()},
                    conflict=float(jensenshannon(audio, text)), duration=1.0)


def peaked(cls: str, mass: float = 0.9) -> np.ndarray:
    p = np.full(len(DEMO7), (1 - mass) / (len(DEMO7) - 1))
    p[DEMO7.index(cls)] = mass
    return p


UNIFORM = np.full(len(DEMO7), 1 / len(DEMO7))


def test_ambiguity_levels_follow_normalised_entropy():
    n = len(DEMO7)
    assert explain.ambiguity_level(scipy_entropy(peaked("angry", 0.97)), n) == "clear"
    assert explain.ambiguity_level(scipy_entropy(UNIFORM), n) == "very mixed"
    assert explain.normalized_entropy(scipy_entropy(UNIFORM), n) == pytest.approx(1.0)
    two_way = np.array([0.5, 0.5, 0, 0, 0, 0, 0])  # ln 2 / ln 7 = 0.356
    assert explain.ambiguity_level(scipy_entropy(two_way), n) == "somewhat mixed"
    # The thresholds are configuration, not constants buried in code.
    assert explain.ambiguity_level(scipy_entropy(two_way), n, ExplainConfig(mixed_from=0.5)) == "clear"


def test_angry_voice_neutral_words_is_named_a_conflict():
    a = FakeAnalysis(audio=peaked("angry"), text=peaked("neutral"), fused=peaked("angry", 0.6))
    assert explain.conflict_level(a.conflict) == "disagree"
    assert explain.conflict_sentence(a) == "The voice sounds angry while the words read neutral."


def test_agreement_and_adjectives():
    a = FakeAnalysis(audio=peaked("fear", 0.8), text=peaked("fear", 0.85), fused=peaked("fear"))
    assert explain.conflict_level(a.conflict) == "agree"
    assert explain.conflict_sentence(a) == "Voice and words agree: both suggest fearful."


def test_flat_distributions_with_different_tops_hardly_disagree():
    audio = UNIFORM + np.array([0.02, -0.02, 0, 0, 0, 0, 0])
    text = UNIFORM + np.array([-0.02, 0.02, 0, 0, 0, 0, 0])
    a = FakeAnalysis(audio=audio, text=text, fused=UNIFORM)
    sentence = explain.conflict_sentence(a)
    assert "neutral" in sentence and "happy" in sentence and "hardly disagree" in sentence


def test_conflict_is_normalised_by_the_js_distance_maximum():
    disjoint = FakeAnalysis(audio=np.eye(7)[0], text=np.eye(7)[3], fused=UNIFORM)
    assert disjoint.conflict == pytest.approx(math.sqrt(math.log(2)))
    assert explain.normalized_conflict(disjoint.conflict) == pytest.approx(1.0)


def test_summary_is_json_ready_and_consistent():
    import json

    a = FakeAnalysis(audio=peaked("sad", 0.7), text=peaked("happy", 0.5), fused=peaked("sad", 0.55))
    info = explain.summary(a)
    json.dumps(info)
    assert info["heads"]["audio"]["top"] == "sad" and info["heads"]["text"]["top"] == "happy"
    assert info["heads"]["audio"]["probability"] == pytest.approx(0.7)
    assert info["conflict"]["value"] == pytest.approx(a.conflict)
    md = explain.summary_markdown(info)
    assert info["conflict"]["sentence"] in md and "Voice (audio)" in md


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="mixed_from"):
        ExplainConfig(mixed_from=0.8, very_mixed_from=0.5)


def test_vote_distribution_is_eq1():
    # 5 raters: 3 angry, 1 neutral, 1 sad.
    counts = [1, 0, 1, 3, 0, 0, 0]
    np.testing.assert_allclose(vote_distribution(counts), np.array(counts) / 5)
    with pytest.raises(ValueError, match="at least one vote"):
        vote_distribution([0] * 7)
    with pytest.raises(ValueError, match="non-negative"):
        vote_distribution([1, -1, 0, 0, 0, 0, 0])


def eq5_reference(p_a, p_t, y, kappa):
    """Eq. 5 written out with scipy: D_m = JS divergence (natural log) = squared JS distance."""
    d = np.array([jensenshannon(p_a, y) ** 2, jensenshannon(p_t, y) ** 2])
    w = np.exp(-kappa * d)
    return w / w.sum(), d


def test_expert_weight_curve_matches_eq5():
    y = np.array([1, 0, 1, 3, 0, 0, 0]) / 5
    p_a, p_t = peaked("angry", 0.6), peaked("neutral", 0.6)
    curve = expert_weight_curve(p_a, p_t, y)
    assert curve.kappas[0] == 0 and curve.kappas[-1] == 16
    for k in (0.0, 2.0, 8.0, 16.0):
        (u_ref, d_ref) = eq5_reference(p_a, p_t, y, k)
        np.testing.assert_allclose(curve.at(k), u_ref, atol=1e-5)
    np.testing.assert_allclose([curve.d_audio, curve.d_text], d_ref, atol=1e-6)
    # kappa = 0 weighs the experts equally; the audio expert is closer to the raters, so it gains weight.
    assert curve.at(0) == pytest.approx((0.5, 0.5))
    assert np.all(np.diff(curve.u_audio) >= -1e-7) and curve.u_audio[-1] > 0.5
    np.testing.assert_allclose(curve.u_audio + curve.u_text, 1.0, atol=1e-6)


def test_expert_weight_curve_refuses_mismatched_classes():
    with pytest.raises(ValueError, match="classes"):
        expert_weight_curve(peaked("angry"), peaked("sad"), np.array([0.5, 0.5]))


def test_describe_model_reads_config_and_card():
    config = {"label_space": "demo7", "classes": DEMO7, "audio_encoder": "whisper-base",
              "text_encoder": "minilm-l6",
              "provenance": {"dataset": "demo (RAVDESS | EmotionLines)", "n_items": 420,
                             "hyperparameters": {"kappa": 4.0, "lambda_mai": 0.5}}}
    card = "---\nlicense: cc-by-nc-sa-4.0\n---\n# AmbER² demo\n\nTrained on the demo corpus.\n"
    panel = explain.describe_model("assets/amber2-demo", config, card)
    rows = panel["summary"].splitlines()
    assert all(r.count("|") - r.count("\\|") == 3 for r in rows)  # an escaped '|' does not split a cell
    assert "whisper-base" in panel["summary"] and "minilm-l6" in panel["summary"]
    assert "| **n items** | 420 |" in rows and "kappa: 4, lambda_mai: 0.5" in panel["summary"]
    assert rows.index("| **dataset** | demo (RAVDESS \\| EmotionLines) |") < rows.index("| **n items** | 420 |")
    assert panel["card"].startswith("# AmbER² demo") and "license:" not in panel["card"]
    assert explain.describe_model("x", config, None)["card"] == ""


def test_weights_sentence_names_the_expert_the_student_follows():
    y = np.array([1, 0, 1, 3, 0, 0, 0]) / 5
    curve = expert_weight_curve(peaked("angry", 0.6), peaked("neutral", 0.6), y)
    u_a, u_t = curve.at(16.0)
    assert u_a > 0.6
    assert "mostly from the voice" in explain.weights_sentence(curve, 16.0, "a test")
    assert "from both about equally" in explain.weights_sentence(curve, 0.0, "a test")
    assert f"u_A = {u_a:.2f}" in explain.weights_sentence(curve, 16.0, "a test")
