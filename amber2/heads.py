"""The model's three heads in one table: how the model, the losses, an `Analysis` and the app name each one.

The model and the losses say "A", "T", "AT" (audio, text, their fusion); an `Analysis` and everything a
visitor sees say "audio", "text", "fused". Both vocabularies, the labels and the colours come from `TABLE`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Head:
    """One head: its key (model, losses), its field (`Analysis`, app), how a visitor reads it, its colour."""

    key: str     # "A", "T", "AT"
    field: str   # "audio", "text", "fused"
    label: str   # a summary table's row
    short: str   # a chart legend: one line on a phone
    color: str
    reads: str   # what the network feeds it: "audio", "text" or "fusion" (the gated fusion of both)
    paper: str   # its row in the paper's tables


# Okabe-Ito colours: told apart by colour-blind visitors too, and fixed per head across every figure.
# The audio head hears the voice, the text head reads the words.
# A head added here (a key, a field, its words, what it reads) is built by the model, trained and scored by
# the protocol, drawn by the charts and kept by the rooms; the paper's student/expert roles name heads by key.
TABLE: tuple[Head, ...] = (
    Head("A", "audio", "Voice (audio)", "Voice", "#E69F00", "audio", "Audio (p_A)"),
    Head("T", "text", "Words (text)", "Words", "#0072B2", "text", "Text (p_T)"),
    Head("AT", "fused", "Fused (both)", "Fused", "#009E73", "fusion", "Audio + Text (p_A+T)"),
)
INPUTS = ("audio", "text", "fusion")     # what a head can read
HEADS: tuple[str, ...] = tuple(h.key for h in TABLE)     # the order of every per-head structure
FIELDS: tuple[str, ...] = tuple(h.field for h in TABLE)
_BY_NAME = {name: h for h in TABLE for name in (h.key, h.field)}
assert all(h.reads in INPUTS for h in TABLE) and len(_BY_NAME) == 2 * len(TABLE), "heads.TABLE: bad entry"


def get_head(name: str) -> Head:
    """The head called `name`, by key ("A", "T", "AT") or by field ("audio", "text", "fused")."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"head must be one of {', '.join(map(repr, [*FIELDS, *HEADS]))}, got {name!r}") from None
