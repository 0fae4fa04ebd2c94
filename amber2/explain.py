"""Plain-language wording: an `Analysis`, the Learn tab's expert weights, a checkpoint's card, in words.

Words only: the numbers come from `amber2.pipeline` and `amber2.weights`, the figures from `amber2.charts`.

Where the paper is silent (it defines no wording), the choices are:
- a head's ambiguity is its entropy normalised by ln C (0 = one class, 1 = uniform), cut into
  "clear" / "somewhat mixed" / "very mixed" at `ExplainConfig.mixed_from` and `.very_mixed_from`;
- the audio-text conflict is the Jensen-Shannon distance of `Analysis.conflict` normalised by its maximum
  sqrt(ln 2), cut into "agree" / "partly disagree" / "disagree" at `.conflict_some_from` and
  `.conflict_strong_from`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from amber2.heads import TABLE

if TYPE_CHECKING:  # type hints only: explain must not import the pipeline (Whisper, encoders)
    from amber2.pipeline import Analysis
    from amber2.weights import WeightCurve

JS_DISTANCE_MAX = math.sqrt(math.log(2.0))  # JS distance, natural log, between two disjoint distributions

# Adjectives for "the voice sounds ..."; a class not listed here is used as it is.
ADJECTIVES = {
    "neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry", "fear": "fearful",
    "fearful": "fearful", "disgust": "disgusted", "surprise": "surprised", "contempt": "contemptuous",
    "calm": "calm", "frustrated": "frustrated", "excited": "excited", "joy": "joyful",
}

AMBIGUITY_LEVELS = ("clear", "somewhat mixed", "very mixed")
CONFLICT_LEVELS = ("agree", "partly disagree", "disagree")


@dataclass(frozen=True)
class ExplainConfig:
    """Thresholds that turn numbers into words (all on a 0-1 scale)."""

    mixed_from: float = 0.35        # normalised entropy at or above which a head is "somewhat mixed"
    very_mixed_from: float = 0.70   # ... and "very mixed"
    conflict_some_from: float = 0.25    # normalised JS distance at or above which voice and words "partly disagree"
    conflict_strong_from: float = 0.50  # ... and "disagree"

    def __post_init__(self) -> None:
        if not 0.0 < self.mixed_from < self.very_mixed_from <= 1.0:
            raise ValueError("ExplainConfig needs 0 < mixed_from < very_mixed_from <= 1")
        if not 0.0 < self.conflict_some_from < self.conflict_strong_from <= 1.0:
            raise ValueError("ExplainConfig needs 0 < conflict_some_from < conflict_strong_from <= 1")


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


def conflict_level(conflict: float, cfg: ExplainConfig = DEFAULT) -> str:
    """'agree', 'partly disagree' or 'disagree' for a JS distance between audio and text."""
    c = normalized_conflict(conflict)
    if c >= cfg.conflict_strong_from:
        return CONFLICT_LEVELS[2]
    if c >= cfg.conflict_some_from:
        return CONFLICT_LEVELS[1]
    return CONFLICT_LEVELS[0]


def conflict_sentence(analysis: Analysis, cfg: ExplainConfig = DEFAULT) -> str:
    """One sentence on whether the voice and the words tell the same emotion."""
    voice, words = adjective(analysis.top("audio")), adjective(analysis.top("text"))
    level = conflict_level(analysis.conflict, cfg)
    if voice != words:
        if level == "disagree":
            return f"The voice sounds {voice} while the words read {words}."
        if level == "partly disagree":
            return f"The voice leans {voice} while the words lean {words}: they partly disagree."
        return (f"The voice leans {voice} and the words lean {words}, but both are close calls, "
                "so they hardly disagree.")
    if level == "agree":
        return f"Voice and words agree: both suggest {voice}."
    return f"Voice and words both lean {voice}, but they differ on what else it could be."


CONFLICT_MEANING = ("Conflict is the Jensen-Shannon distance between the voice and the words distributions: "
                    f"0 when they are identical, {JS_DISTANCE_MAX:.2f} when they share nothing.")


def summary(analysis: Analysis, cfg: ExplainConfig = DEFAULT) -> dict:
    """JSON-ready wording and numbers for each head and for the audio-text conflict."""
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
        }
    return {
        "transcript": analysis.transcript,
        "heads": heads,
        "conflict": {
            "value": float(analysis.conflict),
            "normalized": normalized_conflict(analysis.conflict),
            "level": conflict_level(analysis.conflict, cfg),
            "sentence": conflict_sentence(analysis, cfg),
        },
    }


def summary_markdown(info: dict) -> str:
    """The `summary` as a short Markdown block for the panel beside the chart."""
    # Three columns, so the table still fits a phone's width.
    lines = ["| | top emotion | ambiguity |", "|---|---|---|"]
    for head in TABLE:
        h = info["heads"][head.field]
        lines.append(f"| **{h['label']}** | {h['top']} ({h['probability']:.0%}) | "
                     f"{h['level']} ({h['ambiguity']:.2f}) |")
    c = info["conflict"]
    lines += ["", f"**Voice vs words: {c['level']}** (conflict {c['value']:.2f}). {c['sentence']}",
              "", f"<small>{CONFLICT_MEANING} Ambiguity is the entropy divided by ln C: "
              "0 = one emotion, 1 = all equally likely.</small>"]
    return "\n".join(lines)


# ---- Learn tab: what Eq. 5's weights (amber2.weights) mean ----

def weights_sentence(curve: WeightCurve, kappa: float, source: str, dominant_from: float = 0.6) -> str:
    """What Eq. 5 gives at `kappa`: the distances D_m, the weights u_m, and whom the student follows."""
    u_a, u_t = curve.at(kappa)
    follows = ("mostly from the voice" if u_a >= dominant_from else
               "mostly from the words" if u_t >= dominant_from else "from both about equally")
    return (f"Predictions from {source}. D_A = JS(p_A ‖ y) = {curve.d_audio:.3f}, "
            f"D_T = JS(p_T ‖ y) = {curve.d_text:.3f}. At κ = {kappa:g}: **u_A = {u_a:.2f}**, "
            f"**u_T = {u_t:.2f}**: the fused student learns {follows}.")


# ---- Model panel: what checkpoint is loaded, in its own words ----

def _strip_front_matter(card: str) -> str:
    if card.startswith("---"):
        end = card.find("\n---", 3)
        if end != -1:
            return card[end + 4:].lstrip("\n")
    return card


def _cell(text: object) -> str:
    # A '|' or a newline inside a value would split the Markdown table row.
    return str(text).replace("|", "\\|").replace("\n", " ")


# Provenance keys a visitor asks about first (what data, how trained, under which licence); others follow.
PROVENANCE_FIRST = ("dataset", "n_items", "method", "hyperparameters", "license")


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value)
    return str(value)


def describe_model(source: str, config: dict, card: str | None = None) -> dict[str, str]:
    """Markdown for the model panel from a checkpoint's `config.json` and model card.

    Returns {"summary": a short table, "card": the card's body without its YAML front matter ("" if none)}.
    """
    rows = [("checkpoint", f"`{source}`"),
            ("label space", f"{config.get('label_space', '?')}: {', '.join(config.get('classes', []))}"),
            ("audio encoder", str(config.get("audio_encoder", "?"))),
            ("text encoder", str(config.get("text_encoder", "?")))]
    provenance = config.get("provenance") or {}
    keys = [k for k in PROVENANCE_FIRST if k in provenance] + \
        [k for k in provenance if k not in PROVENANCE_FIRST]
    rows += [(str(k).replace("_", " "), _value(provenance[k])) for k in keys]
    table = "\n".join(["| checkpoint | (from its config.json) |", "|---|---|"] +
                      [f"| **{_cell(k)}** | {_cell(v)} |" for k, v in rows])
    return {"summary": table, "card": _strip_front_matter(card).strip() if card else ""}
