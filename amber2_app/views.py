"""What the app's components say in each situation, as plain values (no Gradio here): limits of the Learn
tab's inputs, the waiting message, the labels of an edited transcript, an error in place of a result.

`app.py` wires these to components; keeping them here lets them be tested without a browser.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from amber2.heads import FIELDS, TABLE
from amber2.paper import KAPPA_DEFAULT

TRANSCRIPT_HEARD = "What Whisper heard"
TRANSCRIPT_EDITED = "Your words (edited by you, not Whisper)"
TRANSCRIPT_INFO = "Edit the words and press Enter: only the text and fused heads re-read them."
TRANSCRIPT_EDITED_INFO = ("The chart now reads your words; the outlined bars show what Whisper's words gave. "
                          "Analyze the clip again to go back to Whisper's words.")
TRANSCRIPT_WHOLE = "Words of a segment"
TRANSCRIPT_WHOLE_INFO = ("The chart reads the whole recording, segment by segment. Click a segment on the "
                         "timeline or in the table to see its words here and edit them.")


def trust_note(config: dict) -> str:
    """How far to trust the bars, said where they are shown (small print under the chart): calibrated or not,
    and where the voice head is weak."""
    calibrated = ("The bars are calibrated on held-out clips: a bar at 60% is right about 6 times in 10 there. "
                  if config.get("temperatures") else
                  "This checkpoint's bars are not calibrated: a high bar may be surer than the head is right. ")
    return (f"<small>{calibrated}On voices from other studios and languages the voice head is right less often "
            "(the Model tab has the numbers); a voice reading of an unfamiliar speaker is a rough guess.</small>")


def model_kappa(provenance: dict | None) -> float:
    """The kappa the Learn and Vote tabs start from: the one the checkpoint was trained with (the Model tab
    names it), else the paper's default."""
    kappa = (provenance or {}).get("kappa")
    return float(kappa) if isinstance(kappa, (int, float)) and 0 <= kappa <= LEARN.kappa_max else KAPPA_DEFAULT


def transcript_box(transcript: str | None, heard: str | None, whole_recording: bool) -> dict:
    """What the transcript box says and whether it can be edited: Whisper's words, the visitor's edit, or
    nothing to edit while the chart reads a whole recording (`heard`: Whisper's words of the reading shown,
    None when there is none)."""
    if heard is None and whole_recording:
        return {"label": TRANSCRIPT_WHOLE, "info": TRANSCRIPT_WHOLE_INFO, "interactive": False}
    edited = heard is not None and is_edited(transcript, heard)
    return {"label": TRANSCRIPT_EDITED if edited else TRANSCRIPT_HEARD,
            "info": TRANSCRIPT_EDITED_INFO if edited else TRANSCRIPT_INFO, "interactive": True}

MIC_HINT = ("<small>Press **Record** and allow the microphone. Microphone blocked or missing? "
            "Upload a recording below instead (WAV, MP3, FLAC, OGG, M4A or WebM).</small>")
# Shown by the page's script (app.MIC_WATCH_JS) only when the browser refuses the microphone: permission denied,
# no device, or a page served without HTTPS (where browsers offer no microphone at all).
MIC_BLOCKED = ("**The browser gave no microphone** (blocked, missing, or this page is not served over HTTPS). "
               "Upload a recording in the box below instead, or allow the microphone in the address bar and "
               "press Record again.")

# Files the upload box takes: any audio type, and WebM/Matroska/MP4 whose audio Chromium reports as video/*.
UPLOAD_TYPES = ["audio", ".webm", ".weba", ".mkv", ".mp4", ".m4a", ".ogg", ".opus", ".flac", ".wav", ".mp3"]

NO_RESULT = "No result"
READY = "Press Analyze to see its emotions"


@dataclass(frozen=True)
class LearnLimits:
    """Ranges of the Learn tab's inputs; a typed value outside is brought back inside."""

    votes_max: int = 10
    kappa_max: float = 16.0


LEARN = LearnLimits()


def clamp(value: float | None, lo: float, hi: float) -> float:
    """`value` inside [lo, hi]; an empty box (None) or NaN counts as `lo`."""
    if value is None:
        return lo
    value = float(value)
    if math.isnan(value):
        return lo
    return min(max(value, lo), hi)


def clamp_votes(counts: Sequence[float | None], limits: LearnLimits = LEARN) -> list[float]:
    """Vote counts inside [0, votes_max], rounded to whole votes."""
    return [float(round(clamp(c, 0, limits.votes_max))) for c in counts]


def no_votes_message() -> str:
    return "**No votes yet.** Give at least one emotion a vote: y = votes / N needs N ≥ 1."


def learn_source(transcript: str | None) -> str:
    """Where the Learn tab's p_A and p_T come from; the votes are always made up by the visitor."""
    if transcript is None:
        return ("The votes are made up (set them above). p_A and p_T are an illustration: a voice that leans "
                "angry and words that lean neutral; analyze a clip to use its own heads")
    quoted = transcript if len(transcript) <= 60 else transcript[:57] + "…"
    return ("The votes are made up (set them above); no rater heard your clip. p_A and p_T are the voice and "
            f"words heads of the clip you analysed (“{quoted}”)")


def is_edited(transcript: str | None, heard: str) -> bool:
    """Whether the words in the box differ from Whisper's (surrounding spaces aside)."""
    return (transcript or "").strip() != heard.strip()


def error_markdown(message: str) -> str:
    """One message in the place of the results panel."""
    return f"### ⚠️ No result\n{message}"


def clip_seconds(path: str | Path | None) -> float | None:
    """Length of an audio file read from its header, without decoding it; None where the header does not
    say (e.g. WebM) or the file is not audio."""
    if not path:
        return None
    try:
        import soundfile as sf

        return float(sf.info(str(path)).duration)
    except Exception:  # not a format libsndfile reads: the message then does without the length
        return None


def waiting_message(seconds: float | None, long_from: float = 20.0) -> str:
    """What the visitor reads while a clip is analysed: the steps, and a warning for long clips."""
    if seconds is None:
        return "Whisper is writing down the words, then three heads read voice and words…"
    if seconds >= long_from:
        return (f"A {seconds:.0f} s clip: Whisper writes down every 30 s window in turn, which can take up to a "
                "minute on this server. The three heads follow in a moment…")
    return f"Whisper is writing down the {seconds:.0f} s clip, then three heads read voice and words…"


# ---- Emotion over time: a recording longer than a short clip gets a timeline (amber2.timeline) ----

SEGMENT_COLUMNS = ["#", "time", *(h.short.lower() for h in TABLE), "voice vs words", "what was said"]
# Shares of the table's width: the words get what the short columns leave, and wrap (a phone is 390 px wide).
SEGMENT_WIDTHS = ["6%", "13%", *(["13%"] * len(TABLE)), "13%", f"{100 - 6 - 13 - 13 * len(TABLE) - 13}%"]
TIMELINE_HINT = "Click a segment on the timeline or in the table to read it."


def is_long(seconds: float | None, short_clip: float) -> bool:
    """Whether a clip of `seconds` (None: unknown) gets a timeline rather than the one-clip view."""
    return seconds is not None and seconds > short_clip


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}:{rest:02d}"


def segment_table(segments, agreement: Sequence[str]) -> list[list]:
    """One row per timeline segment (`amber2.timeline.Segment`): index, time, each head's top emotion,
    `agreement` (`amber2_app.explain.agreement` of each), the words."""
    rows = []
    for i, (s, level) in enumerate(zip(segments, agreement)):
        a = s.analysis
        top = {f: f"{a.top(f)} {float(max(getattr(a, f))):.0%}" for f in FIELDS}
        if not s.speech:
            top = {f: "–" for f in FIELDS} | {"audio": "no speech"}
        elif not a.has_words:
            top["text"] = "no words"
        rows.append([i + 1, f"{_clock(s.start)}-{_clock(s.end)}", *(top[f] for f in FIELDS), level, a.transcript])
    return rows


def timeline_heading(duration: float, n_segments: int, n_speech: int) -> str:
    """Above the whole-recording reading: what the timeline holds."""
    silent = n_segments - n_speech
    rest = f", {silent} without speech" if silent else ""
    return (f"### Whole recording ({_clock(duration)}, {n_segments} segments{rest})\n"
            f"Each head's readings averaged over the segments, weighted by how long they last. {TIMELINE_HINT}")


def segment_heading(index: int, start: float, end: float) -> str:
    """Above one segment's reading."""
    return f"### Segment {index + 1} ({_clock(start)}-{_clock(end)})"
