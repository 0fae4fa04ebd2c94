"""Emotion over time: a long recording (a conversation, a lecture) -> segments, each with its transcript and
its audio, text and fused distributions, and a summary of the whole recording.

    timeline = analyze_timeline(analyzer, "talk.mp3")      # up to TimelineConfig.max_seconds (10 min)
    for s in timeline.segments: print(s.start, s.end, s.analysis.transcript, s.analysis.top("audio"))

How (what it costs):
1. Whisper hears the file once, 30 s window by window, with its own segment timestamps
   (`WhisperBackbone.heard_windows`: each window encoded once, temperature 0, no fallback re-decoding).
2. Whisper's segments are trimmed to where there is sound, then joined or split so each lasts roughly
   `min_segment` to `max_segment` s (`plan_segments`, pure). The stretches between them that hold no words
   (silence, music, noise, windows Whisper heard no speech in) become segments marked as holding no speech:
   the segments tile the file, in order, with no gap.
3. Each segment's audio vector comes from its own samples, exactly as `Analyzer.analyze` would make it for
   that segment cut out as a clip (the demo model's encoder runs blocks 1-4 on a clip's own frames, so the
   transcription windows cannot be reused; batched by length). Its words go through the text encoder in one
   batch, and the heads score all segments at once (`Analyzer.score_many`).

Choices where the issue is silent:
- a Whisper segment longer than `max_segment` is cut into equal parts, its words shared out in proportion
  to time (Whisper gives no word times without a second alignment pass);
- a segment without words keeps the voice head's reading of its sound (a laugh or a sob has no words), the
  text head gives none (uniform) and its conflict is None: no words to disagree with;
- the summary averages the segments weighted by their duration: voice and fused over the segments that hold
  speech, words over those with words (no-speech stretches count towards none; a recording without any
  speech is summarised by the voice head over all of it, marked as no speech).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from amber2.asr import WhisperSegment
from amber2.audio import HOP_LENGTH, SAMPLE_RATE, AudioLimits, frame_energy, load_audio
from amber2.heads import FIELDS
from amber2.labels import entropy
from amber2.metrics import js_distance

if TYPE_CHECKING:
    from amber2.pipeline import Analysis, Analyzer

# progress(fraction done in [0, 1], what is happening in words)
Progress = Callable[[float, str], None]
TRANSCRIBING_SHARE = 0.9   # of the progress bar: Whisper's pass dominates the time


@dataclass(frozen=True)
class TimelineConfig:
    """What a timeline accepts and how it cuts a recording into segments (seconds)."""

    max_seconds: float = 600.0     # longer recordings are refused with a sentence naming the limit
    min_segment: float = 2.0       # shorter speech is joined with a neighbour, or padded with the silence around
    max_segment: float = 15.0      # longer segments are cut into equal parts
    join_gap: float = 1.0          # speech pieces at most this far apart may be joined into one segment
    min_silence: float = 2.0       # a stretch without words at least this long becomes a no-speech segment
    silence_db: float = 35.0       # frames this far below the recording's speech level count as silence
    margin: float = 0.2            # kept around the sound when a Whisper segment is trimmed to it
    short_clip: float = 30.0       # the app: clips up to this long keep the one-clip view

    def __post_init__(self) -> None:
        if not 0 < self.min_segment < self.max_segment:
            raise ValueError("TimelineConfig needs 0 < min_segment < max_segment")

    @property
    def limits(self) -> AudioLimits:
        return AudioLimits(max_seconds=self.max_seconds)


@dataclass
class Segment:
    """A stretch of the recording and its reading (`analysis.duration` = end - start)."""

    start: float
    end: float
    analysis: "Analysis"

    @property
    def speech(self) -> bool:
        """Whether the segment holds speech (words Whisper wrote down)."""
        return self.analysis.speech_heard and self.analysis.has_words

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: start, end, speech, then `Analysis.to_dict()`; conflict is None without words."""
        d = {"start": round(self.start, 3), "end": round(self.end, 3), "speech": self.speech,
             **self.analysis.to_dict()}
        if not self.analysis.has_words:
            d["conflict"] = None
        return d


@dataclass
class Timeline:
    """A recording's segments in order (they tile 0..duration) and its duration-weighted summary."""

    duration: float
    segments: list[Segment]
    summary: "Analysis"
    classes: list[str] = field(default_factory=list)
    source: str = ""   # the file's name when it came from a file

    def rows(self) -> list[dict[str, Any]]:
        """One `Segment.to_dict()` per segment."""
        return [s.to_dict() for s in self.segments]


# ---------------------------------------------------------------------------------------------------------
# Planning the segments (pure: Whisper's segments and the sound's level in, (start, end, text) out)


def sound_spans(samples: np.ndarray, said: list[WhisperSegment], cfg: TimelineConfig = TimelineConfig()
                ) -> list[WhisperSegment]:
    """Whisper's segments trimmed to where there is sound: Whisper's times drift over pauses (a segment may
    swallow seconds of silence after it). A frame is sound when it is at most `cfg.silence_db` below the
    recording's speech level; a segment without any sound is dropped (words heard in silence are invented)."""
    energy = frame_energy(samples)
    level = float(np.mean(energy[energy >= np.median(energy)]))
    loud = energy >= level * 10 ** (-cfg.silence_db / 10)
    step = HOP_LENGTH / SAMPLE_RATE
    out = []
    for s in said:
        first, last = int(s.start / step), min(len(loud), int(math.ceil(s.end / step)))
        hits = np.flatnonzero(loud[first:last])
        if hits.size == 0 or not s.text:
            continue
        start = max(s.start, (first + hits[0]) * step - cfg.margin)
        end = min(s.end, (first + hits[-1] + 1) * step + cfg.margin)
        out.append(replace(s, start=start, end=end))
    return out


def _split(s: WhisperSegment, max_len: float) -> list[WhisperSegment]:
    """`s` cut into equal parts of at most `max_len` s, its words shared out in proportion to time."""
    n = math.ceil((s.end - s.start) / max_len - 1e-9)
    if n <= 1:
        return [s]
    words, step = s.text.split(), (s.end - s.start) / n
    cuts = [round(len(words) * i / n) for i in range(n + 1)]
    return [WhisperSegment(s.start + i * step, s.start + (i + 1) * step, " ".join(words[cuts[i]:cuts[i + 1]]))
            for i in range(n)]


def _join(spans: list[WhisperSegment], cfg: TimelineConfig) -> list[WhisperSegment]:
    """Neighbouring pieces joined while one of them is shorter than `min_segment`, they are at most
    `join_gap` apart and together no longer than `max_segment`."""
    out: list[WhisperSegment] = []
    for s in spans:
        if out:
            g = out[-1]
            short = min(g.end - g.start, s.end - s.start) < cfg.min_segment
            if short and s.start - g.end <= cfg.join_gap and s.end - g.start <= cfg.max_segment:
                out[-1] = WhisperSegment(g.start, s.end, f"{g.text} {s.text}".strip())
                continue
        out.append(s)
    return out


def plan_segments(spans: list[WhisperSegment], duration: float, cfg: TimelineConfig = TimelineConfig()
                  ) -> list[WhisperSegment]:
    """Segments that tile [0, duration] in order: the speech `spans` (sorted, within the file) joined or
    split to about `min_segment`-`max_segment` s, and between them segments with no text ("") wherever at
    least `min_silence` s hold no words (cut to at most `max_segment` s). A shorter pause is shared between
    its neighbours; a short speech segment first takes what it needs to reach `min_segment` from the
    pauses beside it."""
    speech: list[WhisperSegment] = []
    for s in sorted(spans, key=lambda s: s.start):
        start = max(s.start, speech[-1].end if speech else 0.0)
        end = min(s.end, duration)
        if end > start:
            speech.append(replace(s, start=start, end=end))
    speech = [part for s in _join(speech, cfg) for part in _split(s, cfg.max_segment)]
    bounds = [0.0] + [t for s in speech for t in (s.start, s.end)] + [duration]
    # Pauses: (start, end) before, between and after the speech segments.
    pauses = [(bounds[2 * i], bounds[2 * i + 1]) for i in range(len(speech) + 1)]
    starts = [s.start for s in speech]
    ends = [s.end for s in speech]
    silent: list[tuple[float, float]] = []
    for i, (a, b) in enumerate(pauses):
        left, right = i - 1, i  # speech segments before and after this pause (-1 / len: the file's edges)
        # The segment before has had its share of the pause on its left: this pause gives it the rest.
        need_l = max(0.0, cfg.min_segment - (ends[left] - starts[left])) if left >= 0 else 0.0
        need_r = max(0.0, cfg.min_segment - (ends[right] - starts[right])) / 2 if right < len(speech) else 0.0
        if b - a - need_l - need_r >= cfg.min_silence:
            a2, b2 = a + need_l, b - need_r
            n = math.ceil((b2 - a2) / cfg.max_segment - 1e-9)
            silent += [(a2 + (b2 - a2) * k / n, a2 + (b2 - a2) * (k + 1) / n) for k in range(n)]
            cut_l, cut_r = a2, b2
        else:  # no room for a silent segment: the pause goes to its neighbours
            if left < 0:
                cut_l = cut_r = a
            elif right >= len(speech):
                cut_l = cut_r = b
            else:
                cut_l = cut_r = (a + b) / 2
        if left >= 0:
            ends[left] = cut_l
        if right < len(speech):
            starts[right] = cut_r
    out = ([WhisperSegment(a, b, "") for a, b in silent]
           + [WhisperSegment(a, b, s.text) for a, b, s in zip(starts, ends, speech)])
    return [s for s in sorted(out, key=lambda s: s.start) if s.end > s.start]


# ---------------------------------------------------------------------------------------------------------
# The analysis


def analyze_timeline(analyzer: "Analyzer", audio: Any, cfg: TimelineConfig = TimelineConfig(),
                     progress: Progress | None = None) -> Timeline:
    """The timeline of a recording (a path, a 16 kHz array or gradio's (rate, array)) of up to
    `cfg.max_seconds`; bad or too long audio raises `amber2.audio.AudioError`. `progress` is told how far
    it got, window by window and batch by batch. The analyzer's lock is held one step at a time, so
    short clips analysed meanwhile (the app) need not wait for a whole long recording."""
    report = progress or (lambda fraction, message: None)
    samples = load_audio(audio, limits=cfg.limits)
    duration = len(samples) / SAMPLE_RATE
    report(0.0, f"Whisper is listening to {_clock(duration)} of audio…")
    said: list[WhisperSegment] = []
    first = None
    windows = analyzer.asr.heard_windows(samples, analyzer.config.language)
    while True:
        with analyzer._lock:
            window = next(windows, None)
        if window is None:
            break
        first = first or window
        said += window.said
        report(TRANSCRIBING_SHARE * min(window.end, duration) / duration,
               f"Whisper heard {_clock(min(window.end, duration))} of {_clock(duration)}: "
               f"{len(said)} segments so far")
    plan = plan_segments(sound_spans(samples, said, cfg), duration, cfg)
    hearing = {"language": first.language if first else None,
               "language_prob": first.language_prob if first else None}
    segments = _score_segments(analyzer, samples, plan, hearing, report)
    report(1.0, f"{len(segments)} segments read")
    source = Path(audio).name if isinstance(audio, (str, Path)) else ""
    return Timeline(duration, segments, summarize(segments, analyzer, hearing), list(analyzer.classes), source)


def _score_segments(analyzer: "Analyzer", samples: np.ndarray, plan: list[WhisperSegment], hearing: dict,
                    report: Progress, batch_size: int = 16) -> list[Segment]:
    """Audio vectors of each planned segment's own samples, then the heads, `batch_size` segments a step;
    the segments in time order."""
    # Steps of similar lengths (shortest first): the encoder pads a batch to its longest clip. Measured on
    # 78 segments of a 5 min recording: 3.5 s of encoder time against 4.0 s in time order.
    order = sorted(range(len(plan)), key=lambda i: plan[i].end - plan[i].start)
    readings: dict[int, Analysis] = {}
    for i in range(0, len(order), batch_size):
        batch = [plan[j] for j in order[i:i + batch_size]]
        clips = [cut(samples, s.start, s.end) for s in batch]
        with analyzer._lock:
            vectors = analyzer.audio_encoder.embed(clips)
            scored = analyzer.score_many(
                vectors, [s.text.strip() for s in batch], [s.end - s.start for s in batch],
                [{"speech_heard": bool(s.text.strip()), "no_speech_prob": None, **hearing} for s in batch])
        readings.update(zip(order[i:i + batch_size], scored))
        report(TRANSCRIBING_SHARE + (1 - TRANSCRIBING_SHARE) * len(readings) / len(plan),
               f"Reading the segments: {len(readings)} of {len(plan)}")
    return [Segment(s.start, s.end, readings[i]) for i, s in enumerate(plan)]


def cut(samples: np.ndarray, start: float, end: float) -> np.ndarray:
    """The samples from `start` to `end` seconds (at least one)."""
    a = int(round(start * SAMPLE_RATE))
    return samples[a:max(int(round(end * SAMPLE_RATE)), a + 1)]


def summarize(segments: list[Segment], analyzer: "Analyzer", hearing: dict) -> "Analysis":
    """The whole recording as one `Analysis`: each head's distribution averaged over the segments, weighted
    by duration (voice and fused over the speech segments, words over those with words; see the module
    docstring); transcript: all the words."""
    from amber2.pipeline import Analysis, without_words

    speech = [s for s in segments if s.speech] or segments
    words = [s for s in segments if s.analysis.has_words]

    def mean(parts: list[Segment], field_name: str) -> np.ndarray:
        weights = np.array([s.end - s.start for s in parts])
        return np.average(np.stack([getattr(s.analysis, field_name) for s in parts]), axis=0, weights=weights)

    dists = {"audio": mean(speech, "audio"), "fused": mean(speech, "fused")}
    dists["text"] = mean(words, "text") if words else None
    if dists["text"] is None:
        dists = without_words(dists)
    dists = {key: dists[key] for key in FIELDS}
    transcript = " ".join(s.analysis.transcript for s in words)
    return Analysis(
        transcript=transcript, classes=list(analyzer.classes), **dists,
        entropy={key: float(entropy(p)) for key, p in dists.items()},
        conflict=float(js_distance(dists["audio"], dists["text"])[0]),
        duration=float(sum(s.end - s.start for s in segments)),
        speech_heard=any(s.speech for s in segments), no_speech_prob=None, **hearing)


# ---------------------------------------------------------------------------------------------------------
# Rows for the command line and the app's download

ROW_KEYS = ("file", "start", "end", "speech", "transcript", "classes", *FIELDS, "conflict", "entropy")


def segment_rows(file: str, timeline: Timeline) -> list[dict[str, Any]]:
    """One JSON-ready dict per segment with `ROW_KEYS`: where it lies, its words, the three distributions
    (lists over `classes`), the voice-vs-words conflict (None without words) and each head's entropy."""
    return [{"file": file, **{k: row[k] for k in ROW_KEYS[1:]}} for row in timeline.rows()]


def table_columns(classes: list[str]) -> list[str]:
    """The flat table's columns: one per head and class ("audio_angry", ...) in place of the lists."""
    return ["file", "start", "end", "speech", "transcript", *[f"{h}_{c}" for h in FIELDS for c in classes],
            "conflict", *[f"entropy_{h}" for h in FIELDS]]


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """A `segment_rows` dict flattened for a CSV table (probabilities rounded to 4 decimals)."""
    out = {k: row[k] for k in ("file", "start", "end", "speech", "transcript")}
    for h in FIELDS:
        out.update({f"{h}_{c}": round(p, 4) for c, p in zip(row["classes"], row[h])})
    out["conflict"] = None if row["conflict"] is None else round(row["conflict"], 4)
    out.update({f"entropy_{h}": round(row["entropy"][h], 4) for h in FIELDS})
    return out


def write_csv(path: str | Path, rows: list[dict[str, Any]], classes: list[str]) -> Path:
    """The rows of `segment_rows` (any number of files) as a CSV table, written atomically."""
    import csv

    from amber2.files import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=table_columns(classes))
            writer.writeheader()
            writer.writerows(flat_row(r) for r in rows)

    return atomic_write(path, write)


def _clock(seconds: float) -> str:
    """12:05 (minutes:seconds)."""
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}:{rest:02d}"
