"""The fused reading the page shows: the two experts' bars, mixed as the fusion head (the student) decides.

The paper trains the fusion head to match the raters and to learn from the experts each in proportion to how
close it is to the raters (Eq. 5: u_m = softmax_m(-kappa JS(p_m || y))). At reading time there are no raters;
the student is the model's best stand-in for them. So the arbitrated reading puts the student in the raters'
place in Eq. 5 and shows the experts' mixture:

    u_A = softmax(-kappa [JS(p_A || s), JS(p_T || s)])_A,    fused = u_A p_A + (1 - u_A) p_T

then a temperature fitted on validation items (a mixture of two experts that disagree is flatter than either,
so it reads shy without one; `amber2.calibration`). The student still decides everything a fused head should:
it has learned that plain words carry no emotion (and so sides with the voice) and that a flat voice carries
none (and so sides with the words); but the bar it shows lies between the two experts, so it no longer names
an emotion neither the voice nor the words show, which the bare student did on one clip in five of real
speech it never trained on (docs/demo-model.md has the numbers).

Where the paper is silent this is our choice (`AmbER2Config.fused_reading`): "student" keeps the paper's
fused head as it is, and every metric of the paper's tables is the student's either way.
"""
from __future__ import annotations

import numpy as np

from amber2.calibration import apply_temperature
from amber2.heads import HEADS
from amber2.metrics import js_distance

READINGS = ("student", "arbitrated")
VOICE, WORDS, STUDENT = "A", "T", "AT"     # the heads it reads, by key (amber2.heads)


def voice_trust(audio: np.ndarray, text: np.ndarray, student: np.ndarray, kappa: float | np.ndarray) -> np.ndarray:
    """u_A of Eq. 5 with the student in the raters' place: (..., C) x3 -> (...), in (0, 1).

    `kappa` broadcasts against the leading axes (one per run: shape (R, 1) for (R, N, C) inputs)."""
    lead = np.broadcast_shapes(np.shape(audio)[:-1], np.shape(text)[:-1], np.shape(student)[:-1])
    # JS divergences; > 0: the voice is closer to the student (js_distance gives a (C,) input one row)
    gap = (js_distance(text, student) ** 2 - js_distance(audio, student) ** 2).reshape(lead)
    return 1.0 / (1.0 + np.exp(-np.asarray(kappa, dtype=np.float64) * gap))


def arbitrate(audio: np.ndarray, text: np.ndarray, student: np.ndarray, kappa: float | np.ndarray,
              temperature: float | np.ndarray = 1.0) -> np.ndarray:
    """The arbitrated fused distribution (see the module docstring), at `temperature`; same shape as `audio`.

    `temperature` broadcasts like `amber2.calibration.apply_temperature` (one per leading index but the last
    two)."""
    u = voice_trust(audio, text, student, kappa)[..., None]
    mixed = (u * audio + (1.0 - u) * text).astype(np.asarray(audio).dtype)
    return apply_temperature(mixed, temperature) if np.any(np.asarray(temperature) != 1.0) else mixed


def fit_reading_temperature(calibrated: np.ndarray, kappa: float | np.ndarray, y: np.ndarray) -> np.ndarray:
    """The temperature of the arbitrated reading, fitted like a head's (`amber2.calibration.fit_temperature`):
    (..., H, N, C) calibrated probabilities of every head (HEADS order) on validation items, one kappa per
    leading index, (N, C) rater distributions -> (...)."""
    from amber2.calibration import fit_temperature

    calibrated = np.asarray(calibrated, dtype=np.float64)
    kappa = np.asarray(kappa, dtype=np.float64)[..., None]     # one per run, broadcast over items
    mixed = arbitrate(*(calibrated[..., HEADS.index(h), :, :] for h in (VOICE, WORDS, STUDENT)), kappa)
    return fit_temperature(mixed, y)


def invents(audio: np.ndarray, text: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """(...) whether a fused reading's top class is neither the voice head's nor the words head's: what the
    arbitrated reading is built to avoid, and what every report counts."""
    top = np.argmax(fused, -1)
    return (top != np.argmax(audio, -1)) & (top != np.argmax(text, -1))
