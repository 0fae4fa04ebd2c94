"""amber2_app.views: the Learn tab's limits, the waiting message, the Learn wording (no browser)."""
from __future__ import annotations

import numpy as np
import soundfile as sf

from amber2_app import views


def test_typed_values_are_brought_inside_the_slider_range():
    assert views.clamp_votes([25, -3, None, 2.6, float("nan")]) == [10.0, 0.0, 0.0, 3.0, 0.0]
    assert views.clamp(40, 0, views.LEARN.kappa_max) == views.LEARN.kappa_max


def test_learn_says_the_votes_are_made_up():
    assert "made up" in views.learn_source(None) and "illustration" in views.learn_source(None)
    text = views.learn_source("Kids are talking by the door")
    assert "made up" in text and "no rater heard your clip" in text and "Kids are talking" in text
    assert not text.startswith("your clip")


def test_waiting_message_warns_about_long_clips(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(16000 * 50, dtype=np.float32), 16000)
    seconds = views.clip_seconds(path)
    assert seconds == 50.0
    assert "50 s" in views.waiting_message(seconds) and "minute" in views.waiting_message(seconds)
    assert "minute" not in views.waiting_message(3.0)
    assert views.clip_seconds(tmp_path / "missing.webm") is None and views.waiting_message(None)


def test_upload_accepts_webm_whatever_type_the_browser_gives_it():
    assert ".webm" in views.UPLOAD_TYPES and "audio" in views.UPLOAD_TYPES
    assert views.TRANSCRIPT_EDITED != views.TRANSCRIPT_HEARD and "Whisper" not in views.TRANSCRIPT_EDITED.split("(")[0]


def test_an_edit_is_told_from_whisper_words():
    assert views.is_edited("I hate you", "Kids are talking by the door")
    assert not views.is_edited(" Kids are talking by the door ", "Kids are talking by the door")


def test_the_transcript_box_is_closed_while_the_chart_reads_a_whole_recording():
    whole = views.transcript_box("", None, whole_recording=True)
    assert whole["interactive"] is False and "Click a segment" in whole["info"]
    heard = views.transcript_box("kids are talking", "kids are talking", whole_recording=True)   # a segment read
    assert heard["interactive"] and heard["label"] == views.TRANSCRIPT_HEARD
    edited = views.transcript_box("dogs are sitting", "kids are talking", whole_recording=False)
    assert edited["interactive"] and edited["label"] == views.TRANSCRIPT_EDITED
    assert views.transcript_box("", None, whole_recording=False)["interactive"]     # nothing analysed yet
    assert len(views.SEGMENT_WIDTHS) == len(views.SEGMENT_COLUMNS)
    assert sum(int(w.rstrip("%")) for w in views.SEGMENT_WIDTHS) == 100


def test_learn_and_vote_start_from_the_checkpoints_own_kappa():
    from amber2.paper import KAPPA_DEFAULT

    assert views.model_kappa({"kappa": 8.0}) == 8.0
    assert views.model_kappa({}) == views.model_kappa(None) == views.model_kappa({"kappa": None}) == KAPPA_DEFAULT
    assert views.model_kappa({"kappa": 1e9}) == KAPPA_DEFAULT        # outside the slider: the paper's default


def test_the_page_says_how_far_to_trust_the_bars():
    assert "calibrated on held-out clips" in views.trust_note({"temperatures": {"A": 2.0}})
    assert "not calibrated" in views.trust_note({})
    assert "voice head is right less often" in views.trust_note({})
