"""amber2_app.charts: the figures carry the numbers they claim to show, in fixed colours, at an explicit height."""
from __future__ import annotations

import json

import numpy as np
import plotly.io as pio

from amber2_app import charts
from amber2.labels import vote_distribution
from amber2_app.trust_curves import expert_weight_curve
from test_explain import DEMO7, UNIFORM, FakeAnalysis, peaked


def _analysis():
    return FakeAnalysis(audio=peaked("angry", 0.7), text=peaked("neutral", 0.6), fused=peaked("angry", 0.5))


def test_distribution_figure_is_one_grouped_chart_with_three_heads():
    a = _analysis()
    fig = charts.distribution_figure(a)
    assert fig.layout.barmode == "group"
    assert [t.type for t in fig.data] == ["bar"] * 3
    assert [t.name for t in fig.data] == ["Voice", "Words", "Fused"]
    for trace, head in zip(fig.data, ("audio", "text", "fused")):
        assert list(trace.x) == DEMO7
        np.testing.assert_allclose(trace.y, getattr(a, head))
        assert trace.marker.color == charts.DEFAULT_STYLE.colors[head]
        assert "%{y" in trace.hovertemplate  # values on hover
    assert len({t.marker.color for t in fig.data}) == 3
    assert fig.layout.height == charts.DEFAULT_STYLE.height
    assert fig.layout.showlegend is not False
    # It serialises for the browser (what gr.Plot sends) with the numbers as plain lists, not base64 typed
    # arrays that API clients and older plotly.js cannot read.
    sent = json.loads(pio.to_json(fig))
    np.testing.assert_allclose(sent["data"][2]["y"], a.fused)


def test_style_is_configuration():
    style = charts.ChartStyle(height=300, colors={"audio": "red", "text": "blue", "fused": "green"})
    fig = charts.distribution_figure(_analysis(), style)
    assert fig.layout.height == 300 and fig.data[0].marker.color == "red"


def test_placeholder_shows_classes_and_message():
    fig = charts.placeholder_figure(DEMO7, "Upload a clip")
    assert list(fig.data[0].x) == DEMO7 and fig.layout.annotations[0].text == "Upload a clip"


def test_votes_figure_shows_eq1():
    counts = [1, 0, 1, 3, 0, 0, 0]
    y = vote_distribution(counts)
    fig = charts.votes_figure(DEMO7, counts, y)
    np.testing.assert_allclose(fig.data[0].y, [0.2, 0, 0.2, 0.6, 0, 0, 0])
    assert fig.data[0].text[3] == "3 votes" and fig.data[0].text[0] == "1 vote"
    assert "N = 5" in fig.data[0].name and fig.layout.showlegend is True


def test_expert_weight_figure_marks_the_chosen_kappa():
    y = vote_distribution([1, 0, 1, 3, 0, 0, 0])
    curve = expert_weight_curve(peaked("angry", 0.6), peaked("neutral", 0.6), y)
    fig = charts.expert_weight_figure(curve, kappa=4.0)
    lines = [t for t in fig.data if t.mode == "lines"]
    markers = [t for t in fig.data if t.mode == "markers"]
    assert len(lines) == 2 and len(markers) == 2
    np.testing.assert_allclose(lines[0].y, curve.u_audio)
    np.testing.assert_allclose([m.y[0] for m in markers], curve.at(4.0))
    assert all(m.x[0] == 4.0 for m in markers)
    assert lines[0].line.color == charts.DEFAULT_STYLE.colors["audio"]


def test_edited_transcript_keeps_whisper_reading_as_outlines():
    heard, edited = _analysis(), FakeAnalysis(audio=peaked("angry", 0.7), text=peaked("happy", 0.8),
                                              fused=peaked("happy", 0.6))
    fig = charts.distribution_figure(edited, before=heard)
    outlines = [t for t in fig.data if t.legendgroup == "before"]
    assert [t.offsetgroup for t in outlines] == ["text", "fused"]  # drawn on the words and fused bars
    np.testing.assert_allclose(outlines[0].y, heard.text)
    np.testing.assert_allclose(outlines[1].y, heard.fused)
    assert [t.showlegend for t in outlines] == [True, False] and "Whisper" in outlines[0].name
    assert len(charts.distribution_figure(edited).data) == 3  # nothing extra before any edit


def test_x_labels_never_turn_ninety_degrees():
    for fig in (charts.distribution_figure(_analysis()), charts.placeholder_figure(DEMO7, "x"),
                charts.votes_figure(DEMO7, [1] * 7, np.full(7, 1 / 7))):
        assert max(fig.layout.xaxis.autotickangles) <= 45


def test_votes_figure_draws_y_beside_both_experts_and_says_when_there_are_no_votes():
    counts = [1, 0, 1, 3, 0, 0, 0]
    y = vote_distribution(counts)
    p_a, p_t = peaked("angry", 0.6), peaked("neutral", 0.6)
    fig = charts.votes_figure(DEMO7, counts, y, p_audio=p_a, p_text=p_t)
    assert [t.name.split(" ")[0] for t in fig.data] == ["y", "p_A", "p_T"]
    np.testing.assert_allclose(fig.data[1].y, p_a)
    np.testing.assert_allclose(fig.data[2].y, p_t)
    assert fig.layout.showlegend is True
    empty = charts.votes_figure(DEMO7, [0] * 7, None)
    assert "No votes" in empty.layout.annotations[0].text


def test_bars_that_read_no_speaker_are_faint_and_say_why():
    """White noise: no speech heard, no words. The chart does not draw confident-looking bars for it."""
    noise = FakeAnalysis(audio=peaked("neutral", 0.89), text=UNIFORM, fused=peaked("neutral", 0.89),
                         transcript="", speech_heard=False, no_speech_prob=0.97)
    fig = charts.distribution_figure(noise)
    assert all(t.opacity == charts.FAINT_OPACITY for t in fig.data)
    assert any(charts.NO_SPEECH_NOTE in a.text for a in fig.layout.annotations)
    typed_none = FakeAnalysis(audio=peaked("angry", 0.7), text=UNIFORM, fused=peaked("angry", 0.7), transcript="")
    opacity = {t.name: t.opacity for t in charts.distribution_figure(typed_none).data}
    assert opacity == {"Voice": 1.0, "Words": charts.FAINT_OPACITY, "Fused": 1.0}
    assert not charts.distribution_figure(_analysis()).layout.annotations


def test_vote_counts_stay_readable_beside_the_models_bars():
    counts = [3, 1, 1, 0, 0, 0, 0]
    y = np.array(counts, float) / 5
    alone = charts.votes_figure(DEMO7, counts, y)
    beside = charts.votes_figure(DEMO7, counts, y, p_audio=peaked("angry"), p_text=peaked("neutral"),
                                 p_fused=peaked("angry"))
    assert alone.data[0].text[0] == "3 votes" and beside.data[0].text[0] == "3"
    assert "numbers: votes" in beside.data[0].name
    assert beside.layout.uniformtext.minsize == beside.data[0].textfont.size   # plotly may not shrink them
