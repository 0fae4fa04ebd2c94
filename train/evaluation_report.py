"""What `python -m train evaluate` writes and prints: evaluation.json, evaluation.md (the table),
confusion.png, and the same table as plain text. Rendering only: every number comes from the result dict.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

# result key -> column title, in the tables' order
VOICE_METHODS = {"audio_head": "model audio head", "spectral_tilt": "spectral tilt", "egemaps_lr": "eGeMAPS+LR"}
TEXT_METHODS = {"text_head": "model text head", "tfidf_lr": "TF-IDF+LR"}


def _is_text(result: dict) -> bool:
    return "text_head" in result


def _cell(result: dict, method: str, *keys: str) -> str:
    value = result[method]
    for k in keys:
        value = value.get(k) if isinstance(value, dict) else None
    return "-" if value is None else f"{value:.3f}"


def table_rows(result: dict) -> list[list[str]]:
    """Header + rows for each method ('-' where it does not apply): voices UAR, accuracy, angry-vs-neutral AUC;
    sentences accuracy, UAR; then each class's recall."""
    methods = TEXT_METHODS if _is_text(result) else VOICE_METHODS
    uar_row = [f"UAR (chance {result['chance']:.3f})", *(_cell(result, m, "uar") for m in methods)]
    accuracy_row = ["accuracy", *(_cell(result, m, "accuracy") for m in methods)]
    if _is_text(result):
        rows = [["", *methods.values()], accuracy_row, uar_row]
    else:
        rows = [["", *methods.values()], uar_row, accuracy_row,
                ["AUC angry vs neutral", *(_cell(result, m, "auc_angry_neutral") for m in methods)]]
    rows += [[f"recall {c} (n={n})", *(_cell(result, m, "recall", c) for m in methods)]
             for c, n in result["class_counts"].items()]
    return rows


def _anchor_note(result: dict) -> str:
    name, anchor, unit = (("TF-IDF+LR", result["tfidf_lr"], "texts") if _is_text(result)
                          else ("eGeMAPS+LR", result["egemaps_lr"], "clips"))
    if "skipped" in anchor:
        return f"{name} not run: {anchor['skipped']}"
    note = f"{name} trained on " + ", ".join(f"{k} ({v[f'n_{unit}']} {unit})" for k, v in anchor["train"].items())
    if anchor.get("missing"):
        note += "; not found, left out: " + ", ".join(f"{k} ({v})" for k, v in anchor["missing"].items())
    return note


def _headline(result: dict) -> str:
    if _is_text(result):
        return (f"{result['model']}: text head on {result['root']} ({result['n_sentences']} sentences, "
                f"{len(result['classes'])} classes)")
    return (f"{result['model']}: audio head (empty transcript) on {result['dataset']} ({result['n_clips']} clips, "
            f"{len(result['classes'])} classes)")


def text_report(result: dict) -> str:
    """The table as printed by the command."""
    rows = table_rows(result)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [_headline(result), ""]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
              for r in rows]
    return "\n".join(lines + ["", _anchor_note(result)])


def _markdown_intro(result: dict) -> list[str]:
    if _is_text(result):
        return [f"# {result['model']}: text head on {Path(result['root']).name}", "",
                f"{result['n_sentences']} sentences from `{result['root']}`, {len(result['classes'])} classes; the "
                f"text head reads each sentence's {result['text_encoder']} vector (the audio vector is zeros, "
                f"which that head never reads). A class's row is its recall, the share of its sentences labelled "
                f"right. {_anchor_note(result)}."]
    return [f"# {result['model']}: audio head on {result['dataset']}", "",
            f"{result['n_clips']} clips from `{result['root']}`, {len(result['classes'])} classes; the audio "
            f"head reads each clip with an empty transcript (the voice alone). Spectral tilt is a single "
            f"untrained score, so it has an AUC only. {_anchor_note(result)}."]


def markdown_report(result: dict) -> str:
    """evaluation.md: the same table in markdown."""
    rows = table_rows(result)
    lines = [*_markdown_intro(result), "",
             "| " + " | ".join(rows[0]) + " |", "|---|" + "---:|" * (len(rows[0]) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines + ["", "![confusion matrix](confusion.png)", ""])


def plot_confusion(counts: np.ndarray, rows: Sequence[str], columns: Sequence[str], title: str, path: Path,
                   xlabel: str = "predicted (audio head, empty transcript)",
                   ylabel: str = "true (majority label)") -> Path:
    """Confusion-matrix PNG: counts written in the cells, colour = share of the row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(2.5 + 0.9 * len(columns), 2.0 + 0.7 * len(rows)), constrained_layout=True)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for r in range(len(rows)):
        for c in range(len(columns)):
            ax.text(c, r, str(counts[r, c]), ha="center", va="center", fontsize=10,
                    color="white" if share[r, c] > 0.5 else "black")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    fig.colorbar(image, ax=ax, label="share of the true class")
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.2)
    plt.close(fig)
    return path


def write_outputs(out: Path, result: dict, head: str, title: str, **labels: str) -> None:
    """OUT/confusion.png (of result[head]), OUT/evaluation.json and OUT/evaluation.md."""
    out.mkdir(parents=True, exist_ok=True)
    matrix = result[head]["confusion"]
    plot_confusion(np.array(matrix["counts"]), matrix["rows"], matrix["columns"], title, out / "confusion.png",
                   **labels)
    (out / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "evaluation.md").write_text(markdown_report(result))
