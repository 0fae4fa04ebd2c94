"""Plain-language wording: an `Analysis`, the Learn tab's expert weights, a checkpoint's card, in words.

Words only: the numbers come from `amber2.pipeline` and `amber2_app.trust_curves`, the figures from `amber2_app.charts`.

Where the paper is silent (it defines no wording), the choices are:
- a head's ambiguity is its entropy normalised by ln C (0 = one class, 1 = uniform), cut into
  "clear" / "somewhat mixed" / "very mixed" at `ExplainConfig.mixed_from` and `.very_mixed_from`;
- whether voice and words agree follows what a person sees in the bars: the same top emotion or not, and
  whether each head is sure of its top emotion (top probability at or above `ExplainConfig.sure_from`):
  same top -> "agree"; different tops, both sure -> "disagree"; one sure -> "partly disagree"; neither
  sure -> "unclear" (close calls that hardly disagree). The Jensen-Shannon distance of `Analysis.conflict`
  (0 to sqrt(ln 2)) is the number shown behind the verdict;
- no speech heard (`Analysis.speech_heard`) and no words (`Analysis.has_words`) come first: there is then
  nothing to compare ("no speech", "no words"), and the voice is not said to sound like anything when no
  speech was heard;
- a language other than the one the models were trained on (`Analysis.language_heard`) is named, with what
  the heads can and cannot say about it (`ExplainConfig.words_trained_on`, `.voice_trained_on`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from amber2.heads import TABLE
from amber2.metrics import js_distance

if TYPE_CHECKING:  # type hints only: explain must not import the pipeline (Whisper, encoders)
    from amber2.pipeline import Analysis
    from amber2_app.trust_curves import WeightCurve

JS_DISTANCE_MAX = math.sqrt(math.log(2.0))  # JS distance, natural log, between two disjoint distributions

# Adjectives for "the voice sounds ..."; a class not listed here is used as it is.
ADJECTIVES = {
    "neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry", "fear": "fearful",
    "fearful": "fearful", "disgust": "disgusted", "surprise": "surprised", "contempt": "contemptuous",
    "calm": "calm", "frustrated": "frustrated", "excited": "excited", "joy": "joyful",
}

AMBIGUITY_LEVELS = ("clear", "somewhat mixed", "very mixed")
# What `agreement` says of voice and words; the last two when there is nothing to compare.
AGREEMENT_LEVELS = ("agree", "unclear", "partly disagree", "disagree", "no words", "no speech")


@dataclass(frozen=True)
class ExplainConfig:
    """Thresholds that turn numbers into words (all on a 0-1 scale)."""

    mixed_from: float = 0.35        # normalised entropy at or above which a head is "somewhat mixed"
    very_mixed_from: float = 0.70   # ... and "very mixed"
    sure_from: float = 0.5          # top probability at or above which a head is "sure" of its emotion
    # What the bundled demo model was trained on (assets/amber2-demo/README.md), said to a visitor whose
    # speech is in another language.
    words_language: str = "en"
    words_trained_on: str = "English text"
    voice_trained_on: str = "English and Polish acted speech"

    def __post_init__(self) -> None:
        if not 0.0 < self.mixed_from < self.very_mixed_from <= 1.0:
            raise ValueError("ExplainConfig needs 0 < mixed_from < very_mixed_from <= 1")
        if not 0.0 < self.sure_from < 1.0:
            raise ValueError("ExplainConfig needs 0 < sure_from < 1")


DEFAULT = ExplainConfig()


def adjective(emotion: str) -> str:
    """'angry' -> 'angry', 'fear' -> 'fearful': the word that follows 'sounds' or 'read'."""
    return ADJECTIVES.get(emotion.lower(), emotion.lower())


def normalized_entropy(entropy: float, n_classes: int) -> float:
    """Entropy (natural log) divided by ln C, clipped to [0, 1]."""
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes to speak of ambiguity, got {n_classes}")
    return float(min(max(entropy / math.log(n_classes), 0.0), 1.0))


def ambiguity_level(entropy: float, n_classes: int, cfg: ExplainConfig = DEFAULT) -> str:
    """'clear', 'somewhat mixed' or 'very mixed' for a distribution with this entropy."""
    h = normalized_entropy(entropy, n_classes)
    if h >= cfg.very_mixed_from:
        return AMBIGUITY_LEVELS[2]
    if h >= cfg.mixed_from:
        return AMBIGUITY_LEVELS[1]
    return AMBIGUITY_LEVELS[0]


def normalized_conflict(conflict: float) -> float:
    """JS distance divided by its maximum sqrt(ln 2), clipped to [0, 1]."""
    return float(min(max(conflict / JS_DISTANCE_MAX, 0.0), 1.0))


def _percent(p: np.ndarray) -> str:
    return f"{float(np.max(p)):.0%}"


def agreement(analysis: Analysis, cfg: ExplainConfig = DEFAULT) -> str:
    """One of AGREEMENT_LEVELS: whether voice and words tell the same emotion, as the bars show it."""
    if not analysis.speech_heard:
        return "no speech"
    if not analysis.has_words:
        return "no words"
    if analysis.top("audio") == analysis.top("text"):
        return "agree"
    sure = [float(np.max(getattr(analysis, f))) >= cfg.sure_from for f in ("audio", "text")]
    return ("unclear", "partly disagree", "disagree")[sum(sure)]


def disagrees(analysis: Analysis, cfg: ExplainConfig = DEFAULT) -> bool:
    """Whether voice and words tell different emotions with at least one of them sure ("disagree" or
    "partly disagree"): what the timeline marks."""
    return agreement(analysis, cfg) in ("disagree", "partly disagree")


def conflict_sentence(analysis: Analysis, cfg: ExplainConfig = DEFAULT) -> str:
    """One sentence on whether the voice and the words tell the same emotion."""
    level = agreement(analysis, cfg)
    if level == "no speech":
        if analysis.has_words:
            return "No speech was heard, so there is no voice to compare the words with."
        return "No speech was heard, so there is neither a voice nor words to compare."
    voice, words = adjective(analysis.top("audio")), adjective(analysis.top("text"))
    pv, pw = _percent(analysis.audio), _percent(analysis.text)
    if level == "no words":
        return (f"There are no words to read, so the words give no reading and the fused reading rests on the "
                f"voice alone: it sounds {voice} ({pv}).")
    sure_voice = float(np.max(analysis.audio)) >= cfg.sure_from
    sure_words = float(np.max(analysis.text)) >= cfg.sure_from
    if level == "agree":
        if sure_voice and sure_words:
            return f"Voice and words agree: both read {voice} (voice {pv}, words {pw})."
        if sure_voice or sure_words:
            unsure = "the words are" if sure_voice else "the voice is"
            return f"Voice and words both lean {voice} (voice {pv}, words {pw}), though {unsure} not sure."
        return f"Voice and words both lean {voice} (voice {pv}, words {pw}), though neither is sure."
    if level == "disagree":
        return f"The voice sounds {voice} ({pv}) while the words read {words} ({pw}).{_sides(analysis)}"
    if level == "partly disagree":
        if sure_voice:
            return (f"The voice sounds {voice} ({pv}); the words lean {words} but are not sure ({pw})."
                    f"{_sides(analysis)}")
        return f"The words read {words} ({pw}); the voice leans {voice} but is not sure ({pv}).{_sides(analysis)}"
    return (f"The voice leans {voice} ({pv}) and the words lean {words} ({pw}), but neither is sure, "
            "so they hardly disagree.")


def _sides(analysis: Analysis) -> str:
    """ " The fused reading sides with the voice: angry (62%)." (the expert whose bars are nearer the fused)."""
    near_voice = js_distance(analysis.fused, analysis.audio)[0] <= js_distance(analysis.fused, analysis.text)[0]
    return (f" The fused reading sides with the {'voice' if near_voice else 'words'}: "
            f"{adjective(analysis.top('fused'))} ({_percent(analysis.fused)}).")


def hearing_sentence(analysis: Analysis, cfg: ExplainConfig = DEFAULT) -> str:
    """What Whisper heard, when a visitor needs telling: no speech, or speech in another language ("" else)."""
    if not analysis.speech_heard:
        sure = (f" (Whisper is {analysis.no_speech_prob:.0%} sure the recording holds no speech)"
                if analysis.no_speech_prob is not None else "")
        return (f"No speech was heard{sure}, so no words were written down, and the bars show what the heads "
                "make of the sound, not the emotion of a speaker.")
    code, name = analysis.language_heard, analysis.language_name
    if code is None or code == cfg.words_language:
        return ""
    return (f"Whisper heard {name} ({analysis.language_prob:.0%} sure) and wrote the words down in {name}. "
            f"The words head was trained on {cfg.words_trained_on} only, so its reading of {name} words says "
            f"little. The voice head was trained on {cfg.voice_trained_on}: it reads the tone of the voice, "
            f"but has never learnt how {name} speakers sound, so take its reading as a rough guess.")


CONFLICT_MEANING = ("Voice and words agree when their top emotions are the same; a head is sure when its top "
                    f"emotion has at least {DEFAULT.sure_from:.0%}. Conflict is the Jensen-Shannon distance "
                    "between the voice and the words distributions: 0 when they are identical, "
                    f"{JS_DISTANCE_MAX:.2f} when they share nothing.")


def _reading(analysis: Analysis, field: str) -> str:
    """Whether a head's bars are a reading: "present", "no speech" (the voice of a clip without speech) or
    "no words" (the words of an empty transcript; the fused head then gives the voice's reading)."""
    if field == "audio" and not analysis.speech_heard:
        return "no speech"
    if field == "text" and not analysis.has_words:
        return "no words"
    if field == "fused":
        return "no speech" if not analysis.speech_heard else "voice only" if not analysis.has_words else "present"
    return "present"


def summary(analysis: Analysis, cfg: ExplainConfig = DEFAULT) -> dict:
    """JSON-ready wording and numbers: what Whisper heard, each head, and whether voice and words agree."""
    n = len(analysis.classes)
    heads = {}
    for head in TABLE:
        top = analysis.top(head.field)
        h = float(analysis.entropy[head.field])
        heads[head.field] = {
            "label": head.label,
            "top": top,
            "probability": float(np.max(getattr(analysis, head.field))),
            "entropy": h,
            "ambiguity": normalized_entropy(h, n),
            "level": ambiguity_level(h, n, cfg),
            "reading": _reading(analysis, head.field),
        }
    return {
        "transcript": analysis.transcript,
        "hearing": {
            "speech_heard": bool(analysis.speech_heard),
            "no_speech_prob": analysis.no_speech_prob,
            "language": analysis.language_heard,
            "language_name": analysis.language_name,
            "language_prob": analysis.language_prob,
            "sentence": hearing_sentence(analysis, cfg),
        },
        "heads": heads,
        "conflict": {
            "value": float(analysis.conflict),
            "normalized": normalized_conflict(analysis.conflict),
            "level": agreement(analysis, cfg),
            "sentence": conflict_sentence(analysis, cfg),
        },
    }


# Table cells for a head whose bars are not a reading (`_reading`).
NOT_A_READING = {"no speech": "no speech heard", "no words": "no words"}


def summary_markdown(info: dict) -> str:
    """The `summary` as a short Markdown block for the panel beside the chart."""
    lines = []
    hearing = info["hearing"]
    if hearing["sentence"]:
        title = "No speech heard" if not hearing["speech_heard"] else f"Speech in {hearing['language_name']}"
        lines += [f"**{title}.** {hearing['sentence']}", ""]
    # Three columns, so the table still fits a phone's width.
    lines += ["| | top emotion | ambiguity |", "|---|---|---|"]
    for head in TABLE:
        h = info["heads"][head.field]
        if h["reading"] in NOT_A_READING:
            lines.append(f"| **{h['label']}** | {NOT_A_READING[h['reading']]} | – |")
            continue
        note = ", from the voice alone" if h["reading"] == "voice only" else ""
        lines.append(f"| **{h['label']}** | {h['top']} ({h['probability']:.0%}){note} | "
                     f"{h['level']} ({h['ambiguity']:.2f}) |")
    c = info["conflict"]
    if c["level"] in ("no speech", "no words"):
        lines += ["", c["sentence"]]
    else:
        # The level follows the top emotions and how sure each head is; the conflict measures whole bars.
        tops = "same top emotion" if c["level"] == "agree" else "different top emotions"
        lines += ["", f"**Voice vs words: {c['level']}** ({tops}; conflict {c['value']:.2f} of "
                      f"{JS_DISTANCE_MAX:.2f}). {c['sentence']}"]
    lines += ["", f"<small>{CONFLICT_MEANING} Ambiguity is the entropy divided by ln C: "
              "0 = one emotion, 1 = all equally likely.</small>"]
    return "\n".join(lines)


# ---- Learn tab: what Eq. 5's weights (amber2_app.trust_curves) mean ----

def weights_sentence(curve: WeightCurve, kappa: float, source: str, dominant_from: float = 0.6) -> str:
    """What Eq. 5 gives at `kappa`: the distances D_m, the weights u_m, and whom the student follows."""
    u_a, u_t = curve.at(kappa)
    follows = ("mostly from the voice" if u_a >= dominant_from else
               "mostly from the words" if u_t >= dominant_from else "from both about equally")
    return (f"{source}. D_A = JS(p_A ‖ y) = {curve.d_audio:.3f}, "
            f"D_T = JS(p_T ‖ y) = {curve.d_text:.3f}. At κ = {kappa:g}: **u_A = {u_a:.2f}**, "
            f"**u_T = {u_t:.2f}**: the fused student learns {follows}.")
