"""Vote together, the numbers and words of a round: the class's votes as a distribution (Eq. 1), its ambiguity,
and after the reveal each head against the class (JS / BC / R², `amber2.metrics`) and the Eq. 5 expert weights
(`amber2_app.trust_curves`), with a sentence on whom AmbER² would trust. Also `start_round`: a clip -> a stored round.

No Gradio here: `amber2_app/vote_tab.py` wires these to components and `room_state` is also the API's answer.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING


from amber2_app import explain
from amber2.audio import load_audio
from amber2.heads import TABLE
from amber2.labels import entropy, votes_to_distribution
from amber2.paper import KAPPA_DEFAULT
from amber2.metrics import distribution_metrics
from amber2_app.rooms import HEADS, NewRound, RoomError, RoomStore, RoundState, Teacher
from amber2_app.trust_curves import expert_weight_curve

if TYPE_CHECKING:  # the pipeline loads torch and Whisper; only start_round needs an Analyzer
    from amber2.pipeline import Analyzer

ROUND_METRICS = ("js", "bc", "r2")
HEAD_WORDS = {h.field: h.short.lower() for h in TABLE}     # "voice", "words", "fused"


def start_round(store: RoomStore, analyzer: Analyzer, audio: str | Path | None, transcript: str | None = None,
                teacher: Teacher | None = None) -> tuple[Teacher, int]:
    """Analyse a clip and make it the room's next round (a new room when `teacher` is None).

    The clip is stored as 16 kHz FLAC and analysed from that file, so the export holds what the model read.
    An empty transcript lets Whisper write it. Returns (teacher, round number); refusals raise RoomError,
    bad audio AudioError."""
    if not audio:
        raise RoomError("No clip yet: record, upload or pick an example, then start the round.")
    if teacher is None:
        store.purge_expired()  # a new room is a good moment to delete expired ones (counts and disk)
    store.check_capacity(None if teacher is None else teacher.room, None if teacher is None else teacher.key)
    name = store.save_clip(load_audio(audio))
    try:
        a = analyzer.analyze(store.clip_path(name), transcript=(transcript or "").strip() or None)
        new = NewRound(name, a.transcript, {h: getattr(a, h) for h in HEADS})
        if teacher is None:
            return store.create_room(a.classes, analyzer.model.config.label_space, new), 1
        return teacher, store.add_round(teacher.room, teacher.key, new)
    except BaseException:
        store.discard_clip(name)
        raise


def round_summary(state: RoundState, kappa: float = KAPPA_DEFAULT) -> dict:
    """The round as JSON (the API's `room_state`): classes, counts, n, y (Eq. 1; None before the first vote),
    entropy and ambiguity, closed, revealed; after the reveal also model, metrics, weights and a sentence."""
    n = state.n
    y = votes_to_distribution(state.counts) if n else None
    h = None if y is None else float(entropy(y)) + 0.0  # + 0.0: one class only gives 0, not -0
    out = {"room": state.room, "round": state.number, "classes": list(state.classes),
           "counts": [int(c) for c in state.counts], "n": n, "y": None if y is None else [float(v) for v in y],
           "entropy": h, "ambiguity": None if h is None else explain.ambiguity_level(h, len(state.classes)),
           "closed": state.closed, "revealed": state.revealed, "expires_at": state.expires_at}
    if not state.revealed:
        return out
    out["model"] = {h: [float(v) for v in state.model[h]] for h in HEADS}
    out["transcript"] = state.transcript
    if y is None:
        out["sentence"] = out["plain_sentence"] = ("Nobody voted on this clip, so there is nothing to compare the "
                                                   "model with.")
        return out
    out["metrics"] = {h: {k: v for k, v in distribution_metrics(y[None], state.model[h][None]).items()
                          if k in ROUND_METRICS} for h in HEADS}
    curve = expert_weight_curve(state.model["audio"], state.model["text"], y)
    u_a, u_t = curve.at(kappa)
    out["weights"] = {"kappa": float(kappa), "u_audio": u_a, "u_text": u_t,
                      "d_audio": curve.d_audio, "d_text": curve.d_text}
    out["sentence"] = trust_sentence(out["metrics"], u_a, u_t, kappa, n)
    out["plain_sentence"] = plain_trust_sentence(out["metrics"], n)
    return out


def plain_trust_sentence(metrics: dict, n: int, tie: float = 0.01) -> str:
    """What a student's phone says after the reveal: whether the class heard it more like the voice or more like
    the words, without the numbers (the teacher's screen has them: `trust_sentence`)."""
    d_a, d_t = metrics["audio"]["js"], metrics["text"]["js"]
    who = f"Your class ({n} vote{'s' if n != 1 else ''})"
    if abs(d_a - d_t) < tie:
        return f"{who} heard this clip about as much like the voice as like the words."
    closer, other = ("voice", "words") if d_a < d_t else ("words", "voice")
    return (f"{who} heard this clip more like the model's reading of the **{closer}** than of the {other}, so a "
            f"model trained on your votes would learn more from its {closer}.")


def trust_sentence(metrics: dict, u_audio: float, u_text: float, kappa: float, n: int, tie: float = 0.01) -> str:
    """Which expert the class agrees with (smaller JS distance) and so which one Eq. 5 trusts at `kappa`."""
    d_a, d_t = metrics["audio"]["js"], metrics["text"]["js"]
    who = f"Your class ({n} vote{'s' if n != 1 else ''})"
    if abs(d_a - d_t) < tie:
        return (f"{who} is about as close to the voice as to the words (JS distance {d_a:.2f} and {d_t:.2f}): "
                f"AmbER² would trust both experts about equally (u_A = {u_audio:.2f}, u_T = {u_text:.2f} at "
                f"κ = {kappa:g}).")
    closer, other = ("voice", "words") if d_a < d_t else ("words", "voice")
    u_closer = u_audio if d_a < d_t else u_text
    return (f"{who} agrees more with the **{closer}** than with the {other} (JS distance {min(d_a, d_t):.2f} "
            f"against {max(d_a, d_t):.2f}), so AmbER² would trust the {closer} expert: u = {u_closer:.2f} at "
            f"κ = {kappa:g} (u_A = {u_audio:.2f}, u_T = {u_text:.2f}).")
