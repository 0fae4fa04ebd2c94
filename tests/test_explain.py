"""amber2_app.explain: the wording a visitor reads; amber2.labels / amber2_app.trust_curves: the Learn tab's
numbers against independent references."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy

from amber2_app import explain
from amber2_app.explain import ExplainConfig
from amber2.labels import vote_distribution
from amber2.pipeline import Analysis
from amber2_app.trust_curves import expert_weight_curve

DEMO7 = ["neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"]


def FakeAnalysis(audio: np.ndarray, text: np.ndarray, fused: np.ndarray, classes: list[str] | None = None,
                 transcript: str = "kids are talking by the door", **heard) -> Analysis:
    """An Analysis made without the models, its entropy and conflict computed by scipy (independent of amber2);
    `heard`: speech_heard, no_speech_prob, language, language_prob."""
    dists = {"audio": audio, "text": text, "fused": fused}
    return Analysis(transcript=transcript, classes=list(classes or DEMO7), **dists,
                    entropy={h: float(scipy_entropy(p)) for h, p in dists.items()},
                    conflict=float(jensenshannon(audio, text)), duration=1.0, **heard)


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


def two_way(cls: str, mass: float, other: str) -> np.ndarray:
    """`mass` on `cls`, the rest on `other`."""
    p = np.zeros(len(DEMO7))
    p[DEMO7.index(cls)], p[DEMO7.index(other)] = mass, 1 - mass
    return p


def test_angry_voice_neutral_words_is_a_true_conflict():
    a = FakeAnalysis(audio=peaked("angry"), text=peaked("neutral"), fused=peaked("angry", 0.6))
    assert explain.agreement(a) == "disagree"
    assert explain.conflict_sentence(a) == ("The voice sounds angry (90%) while the words read neutral (90%). "
                                            "The fused reading sides with the voice: angry (60%).")
    md = explain.summary_markdown(explain.summary(a))
    assert f"**Voice vs words: disagree** (different top emotions; conflict {a.conflict:.2f} of 0.83)" in md


def test_same_top_emotion_with_both_sure_agrees_whatever_the_js_distance():
    """The issue's case: voice angry 99 %, words angry 81 % had been worded "partly disagree"."""
    a = FakeAnalysis(audio=two_way("angry", 0.99, "sad"), text=two_way("angry", 0.81, "neutral"),
                     fused=peaked("angry"))
    assert explain.normalized_conflict(a.conflict) > 0.25   # the old rule's "partly disagree"
    assert explain.agreement(a) == "agree"
    assert explain.conflict_sentence(a) == "Voice and words agree: both read angry (voice 99%, words 81%)."


def test_both_heads_neutral_agree():
    """The issue's case: both heads neutral had been worded "partly disagree (0.25)"."""
    a = FakeAnalysis(audio=two_way("neutral", 0.7, "sad"), text=two_way("neutral", 0.98, "happy"),
                     fused=peaked("neutral"))
    assert explain.normalized_conflict(a.conflict) >= 0.25
    assert explain.agreement(a) == "agree"
    assert explain.conflict_sentence(a) == "Voice and words agree: both read neutral (voice 70%, words 98%)."


def test_agreement_and_adjectives():
    a = FakeAnalysis(audio=peaked("fear", 0.8), text=peaked("fear", 0.85), fused=peaked("fear"))
    assert explain.agreement(a) == "agree"
    assert explain.conflict_sentence(a) == "Voice and words agree: both read fearful (voice 80%, words 85%)."


def test_same_top_with_an_unsure_head_still_agrees_and_says_who_is_unsure():
    a = FakeAnalysis(audio=peaked("sad", 0.8), text=peaked("sad", 0.3), fused=peaked("sad"))
    assert explain.agreement(a) == "agree"
    assert explain.conflict_sentence(a) == ("Voice and words both lean sad (voice 80%, words 30%), "
                                            "though the words are not sure.")


def test_one_sure_head_against_an_unsure_one_partly_disagrees():
    a = FakeAnalysis(audio=peaked("angry", 0.9), text=peaked("neutral", 0.35), fused=peaked("angry"))
    assert explain.agreement(a) == "partly disagree"
    assert explain.conflict_sentence(a) == ("The voice sounds angry (90%); the words lean neutral "
                                            "but are not sure (35%). The fused reading sides with the voice: "
                                            "angry (90%).")
    b = FakeAnalysis(audio=peaked("happy", 0.3), text=peaked("sad", 0.75), fused=peaked("sad"))
    assert explain.agreement(b) == "partly disagree"
    assert explain.conflict_sentence(b) == ("The words read sad (75%); the voice leans happy but is not sure "
                                            "(30%). The fused reading sides with the words: sad (90%).")


def test_flat_distributions_with_different_tops_hardly_disagree():
    audio = UNIFORM + np.array([0.02, -0.02, 0, 0, 0, 0, 0])
    text = UNIFORM + np.array([-0.02, 0.02, 0, 0, 0, 0, 0])
    a = FakeAnalysis(audio=audio, text=text, fused=UNIFORM)
    assert explain.agreement(a) == "unclear"
    sentence = explain.conflict_sentence(a)
    assert "neutral" in sentence and "happy" in sentence and "hardly disagree" in sentence


def test_sureness_threshold_is_configuration():
    a = FakeAnalysis(audio=peaked("angry", 0.9), text=peaked("neutral", 0.35), fused=peaked("angry"))
    assert explain.agreement(a, ExplainConfig(sure_from=0.3)) == "disagree"


# ---- no words, no speech, another language (the pipeline decides; explain words it) ----


def test_no_words_is_no_words_reading_not_a_neutral_verdict():
    """An empty transcript: the pipeline makes the text uniform and the fused the audio; explain says there
    are no words, and neither "neutral" for the words nor a disagreement."""
    audio = peaked("angry", 0.8)
    a = FakeAnalysis(audio=audio, text=UNIFORM, fused=audio, transcript="")
    assert not a.has_words
    assert explain.agreement(a) == "no words"
    sentence = explain.conflict_sentence(a)
    assert sentence == ("There are no words to read, so the words give no reading and the fused reading rests "
                        "on the voice alone: it sounds angry (80%).")
    info = explain.summary(a)
    assert info["heads"]["text"]["reading"] == "no words" and info["heads"]["fused"]["reading"] == "voice only"
    md = explain.summary_markdown(info)
    assert "| **Words (text)** | no words | – |" in md
    assert "angry (80%), from the voice alone" in md
    assert "disagree" not in md and "Voice vs words" not in md and "neutral (" not in md


def noise_analysis(transcript: str = "") -> Analysis:
    """What the pipeline returns for white noise: no speech heard, no words kept, a voice head reading angry."""
    audio = peaked("angry", 0.85)
    text = UNIFORM if not transcript else peaked("neutral")
    return FakeAnalysis(audio=audio, text=text, fused=audio if not transcript else peaked("angry", 0.5),
                        transcript=transcript, speech_heard=False, no_speech_prob=0.85, language="nn",
                        language_prob=0.53)


def test_noise_says_no_speech_was_heard_and_not_that_the_voice_sounds_angry():
    a = noise_analysis()
    assert explain.agreement(a) == "no speech"
    assert explain.hearing_sentence(a).startswith(
        "No speech was heard (Whisper is 85% sure the recording holds no speech), so no words were written down")
    md = explain.summary_markdown(explain.summary(a))
    assert md.startswith("**No speech heard.** No speech was heard")
    assert "| **Voice (audio)** | no speech heard | – |" in md and "| **Fused (both)** | no speech heard | – |" in md
    assert "angry" not in md and "sounds" not in md and "disagree" not in md
    assert explain.conflict_sentence(a) == "No speech was heard, so there is neither a voice nor words to compare."
    # Words typed over noise are read; there is still no voice to compare them with.
    typed = noise_analysis("I will never forgive you.")
    assert explain.conflict_sentence(typed) == "No speech was heard, so there is no voice to compare the words with."
    assert explain.summary(typed)["heads"]["text"]["reading"] == "present"


def test_french_speech_names_the_language_and_what_the_heads_can_say():
    a = FakeAnalysis(audio=peaked("happy", 0.6), text=peaked("neutral", 0.7), fused=peaked("happy", 0.5),
                     transcript="Bonjour, je suis très content.", no_speech_prob=0.08, language="fr",
                     language_prob=0.96)
    assert a.language_heard == "fr" and a.language_name == "French"
    sentence = explain.hearing_sentence(a)
    assert sentence.startswith("Whisper heard French (96% sure) and wrote the words down in French.")
    assert "trained on English text only" in sentence and "English and Polish acted speech" in sentence
    md = explain.summary_markdown(explain.summary(a))
    assert md.startswith("**Speech in French.** Whisper heard French")


def test_english_and_unsure_languages_need_no_sentence():
    english = FakeAnalysis(audio=peaked("angry"), text=peaked("angry"), fused=peaked("angry"),
                           no_speech_prob=0.07, language="en", language_prob=0.99)
    unsure = FakeAnalysis(audio=peaked("angry"), text=peaked("angry"), fused=peaked("angry"),
                          no_speech_prob=0.1, language="de", language_prob=0.4)
    given = FakeAnalysis(audio=peaked("angry"), text=peaked("angry"), fused=peaked("angry"))  # nothing measured
    for a in (english, unsure, given):
        assert explain.hearing_sentence(a) == ""
        assert explain.summary_markdown(explain.summary(a)).startswith("| |")


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
    assert info["conflict"]["level"] == "disagree" and info["hearing"]["speech_heard"]
    md = explain.summary_markdown(info)
    assert info["conflict"]["sentence"] in md and "Voice (audio)" in md


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="mixed_from"):
        ExplainConfig(mixed_from=0.8, very_mixed_from=0.5)
    with pytest.raises(ValueError, match="sure_from"):
        ExplainConfig(sure_from=1.5)


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


def test_weights_sentence_names_the_expert_the_student_follows():
    y = np.array([1, 0, 1, 3, 0, 0, 0]) / 5
    curve = expert_weight_curve(peaked("angry", 0.6), peaked("neutral", 0.6), y)
    u_a, u_t = curve.at(16.0)
    assert u_a > 0.6
    assert "mostly from the voice" in explain.weights_sentence(curve, 16.0, "a test")
    assert "from both about equally" in explain.weights_sentence(curve, 0.0, "a test")
    assert f"u_A = {u_a:.2f}" in explain.weights_sentence(curve, 16.0, "a test")
