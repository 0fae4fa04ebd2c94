"""Label spaces, vote counting (Eq. 1) and entropy."""
from __future__ import annotations

import json

import numpy as np
import pytest

from amber2.labels import (SPACES, LabelError, convert_counts, entropy, get_space, votes_to_distribution)


def test_class_orders_match_the_design():
    assert get_space("iemocap4").classes == ("neutral", "happy", "angry", "sad")
    assert get_space("msp8").classes == ("neutral", "happy", "sad", "angry", "disgust", "fear", "surprise",
                                         "contempt")
    assert get_space("demo7").classes == ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")
    assert get_space("emotionlines7").classes == ("neutral", "joy", "sadness", "fear", "anger", "surprise",
                                                  "disgust")
    assert len(get_space("ravdess8").classes) == 8
    assert set(SPACES) == {"iemocap4", "msp8", "ravdess8", "emotionlines7", "demo7"}


def test_unknown_space_is_a_clear_error():
    with pytest.raises(LabelError, match="unknown label space 'iemocap5'"):
        get_space("iemocap5")


@pytest.mark.parametrize("raw, expected", [
    ("neu", "neutral"), ("Neutral", "neutral"), ("ANG", "angry"), ("Anger", "angry"), ("Happiness", "happy"),
    ("hap", "happy"), ("sad", "sad"), (" Sadness ", "sad"),
])
def test_iemocap_names_map_case_insensitively(raw, expected):
    space = get_space("iemocap4")
    assert space.classes[space.index(raw)] == expected


@pytest.mark.parametrize("raw", ["exc", "Excited", "fru", "Frustration", "xxx", "oth", "sur", "Fear", "calm"])
def test_iemocap_labels_outside_the_space_are_none(raw):
    assert get_space("iemocap4").index(raw) is None


def test_excitement_is_separate_unless_merged():
    votes = ["Excited", "Happiness", "exc", "Neutral"]
    counts, dropped = get_space("iemocap4").count_votes(votes)
    assert counts.tolist() == [1, 1, 0, 0] and dropped == 2
    counts, dropped = get_space("iemocap4", merge_excited=True).count_votes(votes)
    assert counts.tolist() == [1, 3, 0, 0] and dropped == 0


@pytest.mark.parametrize("code, expected", [
    ("A", "angry"), ("S", "sad"), ("H", "happy"), ("U", "surprise"), ("F", "fear"), ("D", "disgust"),
    ("C", "contempt"), ("N", "neutral"), ("Surprise", "surprise"), ("Contempt", "contempt"), ("angry", "angry"),
])
def test_msp_codes_and_words(code, expected):
    space = get_space("msp8")
    assert space.classes[space.index(code)] == expected


def test_msp_other_and_no_agreement_are_dropped():
    counts, dropped = get_space("msp8").count_votes(["Other", "X", "O", "Angry", "Angry", "Sad"])
    assert dropped == 3
    assert votes_to_distribution(counts).tolist() == pytest.approx([0, 0, 1 / 3, 2 / 3, 0, 0, 0, 0])


def test_demo7_merges_calm_and_joy():
    demo = get_space("demo7")
    assert demo.classes[demo.index("calm")] == "neutral"
    assert demo.classes[demo.index("joy")] == "happy"
    assert demo.classes[demo.index("fearful")] == "fear"
    assert demo.classes[demo.index("surprised")] == "surprise"
    assert demo.index("contempt") is None


def test_ravdess_words():
    rav = get_space("ravdess8")
    for word in rav.classes:
        assert rav.classes[rav.index(word.upper())] == word
    assert rav.classes[rav.index("fear")] == "fearful"


def test_unknown_error_mode_names_the_label():
    with pytest.raises(LabelError, match="'fru' is a known emotion outside the iemocap4"):
        get_space("iemocap4").count_votes(["neu", "fru"], unknown="error")
    with pytest.raises(LabelError, match="'Angyr' is not a label of"):
        get_space("iemocap4").count_votes(["Angyr"], unknown="error")
    with pytest.raises(LabelError, match="single string"):
        get_space("iemocap4").count_votes("neu")


def test_votes_to_distribution_is_eq1():
    y = votes_to_distribution(np.array([3, 1, 0, 0]))
    assert y.tolist() == [0.75, 0.25, 0.0, 0.0]
    assert votes_to_distribution(np.zeros(4)) is None
    with pytest.raises(LabelError, match="non-negative"):
        votes_to_distribution(np.array([1, -1, 0]))
    with pytest.raises(LabelError, match="1-D"):
        votes_to_distribution(np.ones((2, 2)))


def test_entropy_in_nats_with_zeros():
    assert entropy(np.array([1.0, 0, 0, 0])) == 0.0
    assert entropy(np.array([0.25] * 4)) == pytest.approx(np.log(4))
    batch = entropy(np.array([[0.5, 0.5, 0], [1, 0, 0]]))
    assert batch.tolist() == pytest.approx([np.log(2), 0.0])
    assert np.all(np.isfinite(batch))


def test_real_emotionlines_annotations_count_in_digit_order(shared_dir):
    """The annotation digits are votes in emotionlines7 order; the majority matches the gold 'emotion'."""
    space = get_space("emotionlines7")
    dialogues = json.loads((shared_dir / "data" / "emotionlines" / "friends_dev.json").read_text())
    checked = 0
    for utt in (u for d in dialogues for u in d):
        counts = np.array([int(c) for c in utt["annotation"]], dtype=float)
        y = votes_to_distribution(counts)
        if utt["emotion"] == "non-neutral" or y is None or np.sort(y)[-1] == np.sort(y)[-2]:
            continue
        assert space.classes[int(np.argmax(y))] == space.classes[space.index(utt["emotion"])]
        checked += 1
    assert checked > 500


def test_convert_emotionlines_to_demo7():
    counts, dropped = convert_counts(np.array([1, 2, 0, 0, 1, 0, 1.0]), get_space("emotionlines7"),
                                     get_space("demo7"))
    assert dropped == 0
    assert counts.tolist() == [1, 2, 0, 1, 0, 1, 0]
    counts, dropped = convert_counts(np.array([0, 0, 0, 0, 0, 0, 0, 2.0]), get_space("msp8"), get_space("demo7"))
    assert dropped == 2 and counts.sum() == 0
