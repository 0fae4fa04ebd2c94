"""Emotion over time (`amber2.timeline`): long recordings built at test time from known parts (a flat espeak-ng
voice, real angry and sad RAVDESS voices, silence, noise) at known times."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from amber2.asr import WhisperSegment
from amber2.audio import SAMPLE_RATE, AudioError
from amber2.timeline import TimelineConfig, plan_segments, sound_spans
from conftest import RAVDESS, synthesize

CFG = TimelineConfig()
NEUTRAL_LINES = ["The train to the city leaves from the second platform every hour.",
                 "Please put the documents on the table next to the window.",
                 "The meeting has been moved to Thursday afternoon at three.",
                 "We need two more chairs and a longer cable for the projector."]
# RAVDESS names: modality-channel-emotion-intensity-statement-repetition-actor; 05 angry, 04 sad, strong (02).
ANGRY = [RAVDESS / "Actor_01" / "03-01-05-02-01-01-01.flac", RAVDESS / "Actor_03" / "03-01-05-02-02-01-03.flac",
         RAVDESS / "Actor_05" / "03-01-05-02-01-02-05.flac"]
SAD = [RAVDESS / "Actor_02" / "03-01-04-02-01-01-02.flac", RAVDESS / "Actor_04" / "03-01-04-02-02-01-04.flac",
       RAVDESS / "Actor_06" / "03-01-04-02-01-02-06.flac"]


@dataclass
class Part:
    kind: str      # "neutral", "angry", "sad", "silence", "noise"
    start: float
    end: float


def _read(path: Path) -> np.ndarray:
    from amber2.audio import load_audio

    return load_audio(path, limits=CFG.limits)


def build_recording(tmp_path: Path, minutes: float | None = None, seed: int = 0) -> tuple[Path, list[Part]]:
    """A recording of known parts: neutral espeak speech, an angry block (three RAVDESS clips), neutral, a sad
    block, 10 s of silence, 6 s of noise, neutral; repeated until `minutes` (None: once, about 1.5 min)."""
    rng = np.random.default_rng(seed)
    neutral = [_read(synthesize(line, tmp_path / f"neutral{i}.wav")) for i, line in enumerate(NEUTRAL_LINES)]
    pause = np.zeros(int(0.8 * SAMPLE_RATE), np.float32)
    blocks = [("neutral", neutral[0]), ("neutral", neutral[1]),
              ("angry", np.concatenate([_read(p) for p in ANGRY])), ("neutral", neutral[2]),
              ("sad", np.concatenate([_read(p) for p in SAD])), ("neutral", neutral[3]),
              ("silence", np.zeros(10 * SAMPLE_RATE, np.float32)),
              ("noise", (0.05 * rng.standard_normal(6 * SAMPLE_RATE)).astype(np.float32)),
              ("neutral", neutral[0])]
    pieces, parts, t = [], [], 0.0
    target = None if minutes is None else minutes * 60 * SAMPLE_RATE
    while True:
        for kind, samples in blocks:
            pieces += [samples, pause]
            parts.append(Part(kind, t, t + len(samples) / SAMPLE_RATE))
            t += (len(samples) + len(pause)) / SAMPLE_RATE
        if target is None or sum(map(len, pieces)) >= target:
            break
    audio = np.concatenate(pieces)
    if target is not None:
        audio = audio[:int(target)]
        parts = [p for p in parts if p.start < len(audio) / SAMPLE_RATE]
    path = tmp_path / "recording.wav"
    sf.write(path, audio, SAMPLE_RATE)
    return path, parts


def kind_at(parts: list[Part], start: float, end: float) -> str | None:
    """The part covering most of [start, end], if it covers at least 60 % of it."""
    best, cover = None, 0.0
    for p in parts:
        overlap = min(end, p.end) - max(start, p.start)
        if overlap > cover:
            best, cover = p.kind, overlap
    return best if cover >= 0.6 * (end - start) else None


def assert_tiles(segments, duration: float) -> None:
    """In order, no gap, no overlap, from 0 to the end."""
    assert segments[0].start == pytest.approx(0.0, abs=1e-6)
    assert segments[-1].end == pytest.approx(duration, abs=0.02)
    for a, b in zip(segments, segments[1:]):
        assert b.start == pytest.approx(a.end, abs=1e-6) and b.end > b.start


# ---- planning (pure) ----


def test_plan_tiles_the_file_and_marks_the_silence_between():
    spans = [WhisperSegment(0.4, 3.0, "one"), WhisperSegment(3.2, 4.0, "two"),
             WhisperSegment(12.0, 40.0, "a b c d e f"), WhisperSegment(41.0, 41.5, "end")]
    plan = plan_segments(spans, 50.0, CFG)
    assert_tiles(plan, 50.0)
    texts = [s.text for s in plan]
    assert texts[0] == "one two"                                  # a short piece joins its neighbour
    assert "" in texts[1:3]                                       # 4-12 s holds no words: a segment of its own
    long = [s for s in plan if s.text and s.text in "a b c d e f"]
    assert len(long) == 2 and all(s.end - s.start <= CFG.max_segment for s in long)  # 28 s cut in two
    assert " ".join(s.text for s in long) == "a b c d e f"        # the words shared out, none lost
    assert plan[-1].text == "" and plan[-1].end == 50.0           # the silent tail
    short = next(s for s in plan if s.text == "end")
    assert short.end - short.start >= CFG.min_segment - 1e-9      # padded from the silence around it
    assert all(s.end - s.start <= CFG.max_segment + 1e-9 for s in plan)


def test_plan_of_a_recording_without_words_is_silent_segments():
    plan = plan_segments([], 40.0, CFG)
    assert_tiles(plan, 40.0)
    assert all(s.text == "" and s.end - s.start <= CFG.max_segment for s in plan) and len(plan) == 3


def test_short_pauses_go_to_their_neighbours():
    plan = plan_segments([WhisperSegment(0.5, 5.0, "a"), WhisperSegment(5.6, 9.0, "b")], 9.8, CFG)
    assert [s.text for s in plan] == ["a", "b"]
    assert plan[0].start == 0 and plan[0].end == pytest.approx(5.3) and plan[1].end == 9.8


def test_sound_spans_trims_whispers_drift_over_silence():
    speech = (0.1 * np.sin(np.arange(3 * SAMPLE_RATE) * 0.05)).astype(np.float32)
    audio = np.concatenate([speech, np.zeros(8 * SAMPLE_RATE, np.float32)])
    trimmed = sound_spans(audio, [WhisperSegment(0.0, 11.0, "words"), WhisperSegment(5.0, 10.0, "heard in silence")],
                          CFG)
    assert len(trimmed) == 1 and trimmed[0].end == pytest.approx(3.0 + CFG.margin, abs=0.05)


def test_config_refuses_a_segment_range_that_cannot_hold():
    with pytest.raises(ValueError):
        TimelineConfig(min_segment=20, max_segment=15)


# ---- the analysis, with the bundled model (slow: Whisper and MiniLM) ----


@pytest.fixture(scope="module")
def analyzer():
    from amber2.pipeline import Analyzer

    return Analyzer()


@pytest.fixture(scope="module")
def recording(tmp_path_factory, shared_dir):
    return build_recording(tmp_path_factory.mktemp("timeline"))


@pytest.fixture(scope="module")
def timeline(analyzer, recording):
    from amber2.timeline import analyze_timeline

    seen: list[tuple[float, str]] = []
    t = analyze_timeline(analyzer, recording[0], progress=lambda f, m: seen.append((f, m)))
    t.progress_seen = seen  # for the progress test
    return t


@pytest.mark.slow
def test_segments_tile_the_recording_in_order(timeline, recording):
    duration = sf.info(str(recording[0])).duration
    assert timeline.duration == pytest.approx(duration, abs=1e-3)
    assert_tiles(timeline.segments, duration)
    assert all(s.end - s.start <= CFG.max_segment + 1e-6 for s in timeline.segments)
    assert timeline.source == "recording.wav"


@pytest.mark.slow
def test_the_angry_voice_scores_higher_on_angry_than_the_neutral_voice(timeline, recording):
    parts = recording[1]
    angry = timeline.classes.index("angry")
    by_kind: dict[str, list[float]] = {}
    for s in timeline.segments:
        kind = kind_at(parts, s.start, s.end)
        if kind and s.speech:
            by_kind.setdefault(kind, []).append(float(s.analysis.audio[angry]))
    assert by_kind.get("angry") and len(by_kind.get("neutral", [])) >= 3, by_kind
    assert min(by_kind["angry"]) > max(by_kind["neutral"]), by_kind
    assert np.mean(by_kind["angry"]) > np.mean(by_kind["neutral"]) + 0.3


@pytest.mark.slow
def test_silence_and_noise_are_segments_without_speech(timeline, recording):
    parts = recording[1]
    for kind in ("silence", "noise"):
        part = next(p for p in parts if p.kind == kind)
        # every segment over the stretch but its edges (Whisper's segment times are good to about a second)
        over = [s for s in timeline.segments if s.end > part.start + 1.0 and s.start < part.end - 1.0]
        assert over and not any(s.speech for s in over), (kind, over)
    for s in timeline.segments:
        if not s.speech:
            row = s.to_dict()
            assert row["transcript"] == "" and row["conflict"] is None and row["speech"] is False
    assert timeline.segments[-1].speech  # the neutral speech after them is still read


@pytest.mark.slow
def test_summary_is_the_duration_weighted_mean_of_the_speech(timeline):
    speech = [s for s in timeline.segments if s.speech]
    w = np.array([s.end - s.start for s in speech])
    for head in ("audio", "text", "fused"):
        expected = (np.stack([getattr(s.analysis, head) for s in speech]) * w[:, None]).sum(0) / w.sum()
        np.testing.assert_allclose(getattr(timeline.summary, head), expected, atol=1e-9)
    assert timeline.summary.duration == pytest.approx(timeline.duration, abs=0.02)


@pytest.mark.slow
def test_a_segment_reads_as_the_same_stretch_cut_out_as_a_clip(analyzer, timeline, recording):
    samples = _read(recording[0])
    for s in [s for s in timeline.segments if s.speech][:3]:
        clip = samples[int(round(s.start * SAMPLE_RATE)):int(round(s.end * SAMPLE_RATE))]  # cut out by hand
        alone = analyzer.analyze(clip, transcript=s.analysis.transcript)
        # The segments are encoded in batches, the clip alone; under the demo encoder's bf16 blocks the padding
        # of a batch moves a vector by rounding only (< 0.1 %; exact in fp32: tests/test_encoders.py).
        diff = np.linalg.norm(s.analysis.audio_embedding - alone.audio_embedding)
        assert diff <= 2e-3 * np.linalg.norm(alone.audio_embedding)
        for head in ("audio", "text", "fused"):
            np.testing.assert_allclose(getattr(s.analysis, head), getattr(alone, head), atol=5e-3)


@pytest.mark.slow
def test_progress_is_reported_window_by_window(timeline):
    fractions = [f for f, _ in timeline.progress_seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 5
    assert any("segments" in m for _, m in timeline.progress_seen)


@pytest.mark.slow
def test_each_window_is_encoded_once(analyzer, recording):
    """No encoder work twice: the full encoder runs once per 30 s window that Whisper decodes (the segments'
    voice vectors use blocks on their own frames, not the encoder's forward)."""
    asr = analyzer.asr
    calls = []
    handle = asr.model.encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        windows = list(asr.heard_windows(_read(recording[0])))
    finally:
        handle.remove()
    assert len(calls) == len(windows) >= 3


@pytest.mark.slow
def test_too_long_is_refused_naming_the_limit(analyzer, tmp_path):
    from amber2.timeline import analyze_timeline

    long = tmp_path / "eleven_minutes.wav"
    sf.write(long, np.full(11 * 60 * SAMPLE_RATE, 0.01, np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match=r"11 min 0 s long; the limit is 10 min 0 s"):
        analyze_timeline(analyzer, long)
    with pytest.raises(AudioError, match=r"the limit is 20 s"):
        analyze_timeline(analyzer, np.full(30 * SAMPLE_RATE, 0.01, np.float32), TimelineConfig(max_seconds=20))


@pytest.mark.slow
def test_noise_only_is_no_speech_not_an_error(analyzer):
    from amber2.timeline import analyze_timeline

    noise = (0.05 * np.random.default_rng(1).standard_normal(35 * SAMPLE_RATE)).astype(np.float32)
    t = analyze_timeline(analyzer, noise)
    assert_tiles(t.segments, 35.0)
    assert not any(s.speech for s in t.segments) and not t.summary.speech_heard


# ---- the command line, end to end on a 10-minute recording ----


@pytest.fixture(scope="module")
def ten_minutes(tmp_path_factory, shared_dir):
    return build_recording(tmp_path_factory.mktemp("ten"), minutes=10)


@pytest.mark.slow
def test_cli_follows_a_ten_minute_recording(ten_minutes, tmp_path):
    import csv
    import json
    import subprocess
    import sys

    from conftest import ROOT

    table = tmp_path / "segments.csv"
    done = subprocess.run([sys.executable, "-m", "amber2", "analyze", "--segments", str(ten_minutes[0]), "--json",
                           "--csv", str(table)], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {"file", "start", "end", "transcript", "classes", "audio", "text", "fused", "conflict"} <= set(rows[0])
    assert rows[0]["start"] == 0 and rows[-1]["end"] == pytest.approx(600.0, abs=0.01)
    assert all(b["start"] == pytest.approx(a["end"], abs=1e-3) for a, b in zip(rows, rows[1:]))
    # the known parts, found again over the whole ten minutes
    parts, angry = ten_minutes[1], rows[0]["classes"].index("angry")
    kinds = {}
    for r in rows:
        kind = kind_at(parts, r["start"], r["end"])
        if kind and r["speech"]:
            kinds.setdefault(kind, []).append(r["audio"][angry])
    assert np.mean(kinds["angry"]) > np.mean(kinds["neutral"]) + 0.3, kinds
    assert any(not r["speech"] for r in rows)                      # the silences, marked
    # progress on stderr as it goes, and the same rows in the CSV table
    progress = [line for line in done.stderr.splitlines() if "segments so far" in line]
    assert len(progress) >= 15 and "Traceback" not in done.stderr
    with open(table, newline="") as f:
        flat = list(csv.DictReader(f))
    assert len(flat) == len(rows) and float(flat[-1]["end"]) == rows[-1]["end"]
    assert float(flat[3]["audio_angry"]) == pytest.approx(rows[3]["audio"][angry], abs=1e-4)


@pytest.mark.slow
def test_cli_refuses_eleven_minutes_naming_the_limit(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    long = tmp_path / "eleven.wav"
    sf.write(long, np.full(11 * 60 * SAMPLE_RATE, 0.01, np.float32), SAMPLE_RATE)
    done = subprocess.run([sys.executable, "-m", "amber2", "analyze", "--segments", str(long)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "eleven.wav: The recording is 11 min 0 s long; the limit is 10 min 0 s" in done.stderr
    # without --segments, the one-clip limit (60 s) says where to go
    done = subprocess.run([sys.executable, "-m", "amber2", "analyze", str(long)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert "the limit is 60 s" in done.stderr and "--segments" in done.stderr


def test_cli_options_that_need_segments_are_refused(capsys):
    from amber2.__main__ import main

    with pytest.raises(SystemExit):
        main(["analyze", "x.wav", "--csv", "out.csv"])
    assert "--csv and --max-seconds go with --segments" in capsys.readouterr().err


# ---- the timeline picture and table (no model: made-up readings) ----


def _made_up_timeline():
    from amber2.pipeline import Analysis
    from amber2.timeline import Segment, Timeline

    classes = ["neutral", "happy", "sad", "angry"]

    def reading(audio, text, words="some words", speech=True):
        audio, text = np.array(audio, float), np.array(text, float)
        return Analysis(words, classes, audio, text, (audio + text) / 2, {"audio": 1.0, "text": 1.0, "fused": 1.0},
                        0.3, 5.0, speech_heard=speech)

    segs = [Segment(0, 5, reading([.7, .1, .1, .1], [.7, .1, .1, .1])),
            Segment(5, 9, reading([.1, .1, .1, .7], [.7, .1, .1, .1])),     # angry voice, neutral words
            Segment(9, 20, reading([.25] * 4, [.25] * 4, "", speech=False))]
    return Timeline(20.0, segs, segs[0].analysis, classes, "talk.wav")


def test_timeline_figure_has_a_lane_per_head_and_marks_the_disagreement():
    from amber2_app import charts, explain

    t = _made_up_timeline()
    disagree = [explain.disagrees(s.analysis) for s in t.segments]
    assert disagree == [False, True, False]
    fig = charts.timeline_figure(t, disagree, selected=1)
    bars = [tr for tr in fig.data if tr.type == "bar"]
    assert len(bars) == 3 * (len(t.classes) + 1)                  # per lane: each class + "no reading"
    assert {tr.yaxis for tr in bars} == {"y", "y2", "y3"}
    angry_voice = next(tr for tr in bars if tr.name == "angry" and tr.yaxis == "y")
    assert list(angry_voice.y) == [0.1, 0.7, 0.0]                 # the silent segment gives no reading
    assert list(angry_voice.width) == [5, 4, 11] and [c[0] for c in angry_voice.customdata] == [0, 1, 2]
    marker = next(tr for tr in fig.data if tr.type == "scatter")
    assert list(marker.x) == [7.0] and marker.name == "voice ≠ words"
    assert fig.layout.height and fig.layout.barmode == "stack"


def test_segment_table_and_csv_rows(tmp_path):
    import csv

    from amber2_app import explain, views
    from amber2.timeline import segment_rows, write_csv

    t = _made_up_timeline()
    table = views.segment_table(t.segments, [explain.agreement(s.analysis) for s in t.segments])
    assert table[1][:6] == [2, "0:05-0:09", "angry 70%", "neutral 70%", "neutral 40%", "disagree"]
    assert table[2][2:6] == ["no speech", "–", "–", "no speech"]
    rows = segment_rows("talk.wav", t)
    assert rows[2]["conflict"] is None and rows[0]["file"] == "talk.wav"
    write_csv(tmp_path / "t.csv", rows, t.classes)
    with open(tmp_path / "t.csv", newline="") as f:
        flat = list(csv.DictReader(f))
    assert [r["audio_angry"] for r in flat] == ["0.1", "0.7", "0.25"] and flat[2]["conflict"] == ""
