"""AmbER²: dual ambiguity-aware emotion recognition from speech and text.

    from amber2 import analyze, Analyzer, load_model

Names are imported on first use (module ``__getattr__``), so ``import amber2`` stays light: torch, Whisper
and the pipeline load only when a caller asks for them.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "load_model": "amber2.model",
    "AmbER2Model": "amber2.model",
    "analyze": "amber2.pipeline",
    "Analyzer": "amber2.pipeline",
    "Analysis": "amber2.pipeline",
}
__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # for type checkers and IDEs only
    # "X as X" marks a re-export for linters, which cannot read the __all__ built from _LAZY
    from amber2.model import AmbER2Model as AmbER2Model, load_model as load_model
    from amber2.pipeline import Analysis as Analysis, Analyzer as Analyzer, analyze as analyze


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'amber2' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
