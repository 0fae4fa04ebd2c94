"""The one base class of every refusal a person can act on.

A bad upload, a missing model or Whisper, an unknown room, a votes file with a missing class, a wrong flag:
each module raises its own subclass of `UserError` (which also keeps its old built-in base, so `except
ValueError` still catches `AudioError`), and the commands and the app catch `UserError` once, print its
message as one sentence and never a traceback. Anything else is a bug and keeps its traceback (in the log,
for the app). This module imports nothing, so an error path never pays for torch.
"""
from __future__ import annotations


class UserError(Exception):
    """A refusal whose message is written for a person: what went wrong and what to do."""


def one_line(error: BaseException) -> str:
    """The error's message on one line (library messages, e.g. the Hub's, can span several)."""
    return " ".join(str(error).split()) or type(error).__name__
