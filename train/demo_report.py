"""What the demo's run says in words: the report folder's README (paired comparison, per-source metrics,
calibration, the Eq. 6 ablation) and the measured notes appended to the model card.

Rendering only: every number comes from the protocol's report.json, its predictions, or docs/demo-model.md.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from amber2.files import ROOT


# Held-out metrics per source: (label, head key, metric); "invented" is the share of items whose fused top
# class is neither the voice head's nor the words head's. BAR is the fused bar the app shows (the arbitrated
# reading, amber2.arbitration), beside the fused head itself.
BAR = "bar"
SHOWN_JS = "fused bar JS (calibrated, as shown)"
VOICE_ROWS = (("voice head UAR", "A", "uar"), ("fused UAR", "AT", "uar"), ("fused bar UAR", BAR, "uar"),
              ("fused JS", "AT", "js"), (SHOWN_JS, BAR, "js"), ("fused top neither expert's", "AT", "invented"),
              ("fused bar's top neither expert's", BAR, "invented"))
WORDS_ROWS = (("words head JS", "T", "js"), ("fused JS", "AT", "js"), (SHOWN_JS, BAR, "js"),
              ("fused ACC", "AT", "acc"), ("fused bar ACC", BAR, "acc"))
SOURCE_ROWS = {
    "ravdess": VOICE_ROWS, "nemo": VOICE_ROWS, "emotionlines": WORDS_ROWS, "goemotions": WORDS_ROWS,
    "pair:voice-plain": (("voice head UAR", "A", "uar"), ("fused UAR", "AT", "uar"),
                         ("fused top neither expert's", "AT", "invented")),
    "pair:calm-voice-words": (("words head UAR", "T", "uar"), ("fused UAR", "AT", "uar"),
                              ("fused top neither expert's", "AT", "invented")),
    "pair:conflict": (("fused JS", "AT", "js"), ("fused top neither expert's", "AT", "invented")),
}


def source_breakdown(predictions: dict, y: np.ndarray, ids: Sequence[str], readings: dict | None = None) -> list[str]:
    """Markdown rows: test-fold metrics of each source (corpus or pairing rule), AmbER² vs CB-CE, mean ± std
    over seeds.

    `predictions` is `ProtocolResult.predictions` (method -> (seeds, heads, N, C)), aligned with `ids`;
    `readings` the fused bar of each (`train.results.pooled_readings`: method -> (seeds, N, C)); without it
    the BAR rows are left out."""
    from sklearn.metrics import recall_score

    from amber2.heads import HEADS
    from amber2.metrics import all_metrics
    from train.fused_check import HeadReadings, invented
    from train.pairing import source_of

    source = np.array([source_of(i) for i in ids])
    truth = y.argmax(1)

    def score(heads: np.ndarray, bar: np.ndarray | None, head: str, m: np.ndarray, metric: str) -> float:
        p = bar if head == BAR else heads[HEADS.index(head)]
        if metric == "uar":
            return float(recall_score(truth[m], p[m].argmax(1), labels=np.unique(truth[m]), average="macro"))
        if metric == "invented":
            return float(invented(HeadReadings(*(heads[HEADS.index(h)][m] for h in ("A", "T")), p[m],
                                               truth=truth[m])).mean())
        return float(all_metrics(y[m], p[m])[metric])

    lines = ["| source | items | measure | AmbER² | CB-CE |", "|---|---|---|---|---|"]
    for name, rows in SOURCE_ROWS.items():
        m = source == name
        if not m.any():
            continue
        for label, head, metric in rows:
            if head == BAR and readings is None:
                continue
            cells = []
            for method in ("amber2", "cbce"):
                bars = readings[method] if readings is not None else [None] * len(predictions[method])
                vals = [score(seed_pred, bar, head, m, metric) for seed_pred, bar in zip(predictions[method], bars)]
                cells.append(f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1) if len(vals) > 1 else 0.0:.3f}")
            lines.append(f"| {name} | {int(m.sum())} | {label} | {cells[0]} | {cells[1]} |")
    return lines


def _mean_std(stat: dict) -> str:
    return f"{stat['mean']:.3f} ± {stat['std'] or 0.0:.3f}"


def _interval(row: dict) -> str:
    return f"{row['difference']:+.4f} [{row['low']:+.4f}, {row['high']:+.4f}]"


def _verdict(row: dict, better: str, worse: str) -> str:
    if row["low"] <= 0 <= row["high"]:
        return "tie"
    return better if (row["low"] > 0) == row["higher_is_better"] else worse


def comparison_lines(report: dict) -> list[str]:
    """AmbER² vs CB-CE on the student head: both means, the paired interval, seeds won, the verdict."""
    from amber2.metrics import METRIC_LABELS

    paired, student, metrics = report.get("paired") or {}, report["config"]["student"], report["metrics"]
    rows = [[METRIC_LABELS[k], _mean_std(metrics["cbce"][student][k]), _mean_std(metrics["amber2"][student][k]),
             _interval(r), f"{r['better_seeds']} of {r['seeds']}", _verdict(r, "AmbER²", "CB-CE")]
            for k, r in paired.items()]
    if not rows:
        return []
    tally = Counter(row[-1] for row in rows)
    first = next(iter(paired.values()))
    return [f"Fused head ({student}), every item of the corpus predicted once per seed by a model that never saw "
            f"its fold. AmbER² − CB-CE with a {first['level']:.0%} paired bootstrap interval over items "
            f"({first['resamples']} resamples, seed-averaged); a metric is a win or a loss only when its interval "
            f"excludes 0. **AmbER² wins {tally['AmbER²']}, ties {tally['tie']}, loses {tally['CB-CE']}** of "
            f"{len(rows)} metrics.", "",
            "| metric | CB-CE | AmbER² | AmbER² − CB-CE [95% interval] | seeds AmbER² better | verdict |",
            "|---|---|---|---|---|---|", *["| " + " | ".join(r) + " |" for r in rows]]


def calibration_lines(report: dict) -> list[str]:
    """ECE per head and method (10 equal-width confidence bins), mean ± std over seeds: as trained, then at the
    temperatures each run fitted on its validation split (with those temperatures)."""
    metrics, calibrated = report["metrics"], report.get("calibrated") or {}
    if "ece" not in metrics["amber2"]["AT"]:
        return []
    heads = (("A", "voice head"), ("T", "words head"), ("AT", "fused head"))
    methods = (("cbce", "CB-CE"), ("amber2", "AmbER²"))
    lines = ["| method | " + " | ".join(name for _, name in heads) + " |", "|---|---|---|---|",
             *[f"| {label}, as trained | " + " | ".join(_mean_std(metrics[m][h]["ece"]) for h, _ in heads) + " |"
               for m, label in methods]]
    if calibrated:
        lines += [f"| {label}, temperature-scaled | " + " | ".join(_mean_std(calibrated["ece"][m][h])
                                                                     for h, _ in heads) + " |"
                  for m, label in methods]
        lines += [f"| {label}: temperature (mean ± std over folds and seeds) | "
                  + " | ".join(_mean_std(calibrated["temperature"][m][h]) for h, _ in heads) + " |"
                  for m, label in methods]
    from train.report import reading_section

    reading = reading_section(report)
    return [*lines, "", "Reliability diagram: `reliability.png` (`reliability.html` interactive).",
            *(["", "### " + reading[0].lstrip("# "), "", *reading[1:]] if reading else [])]


def ablation_lines(report: dict, ablation: dict, paired: dict) -> list[str]:
    """The paper's Eq. 6 as written against this project's default loss, same folds, seeds and grid."""
    from amber2.metrics import METRIC_LABELS

    student = report["config"]["student"]
    rows = [f"| {METRIC_LABELS[k]} | {_mean_std(report['metrics']['amber2'][student][k])} | "
            f"{_mean_std(ablation['metrics']['amber2'][student][k])} | {_interval(r)} | "
            f"{_verdict(r, 'Eq. 6', 'default')} |" for k, r in paired.items()]
    return ["Eq. 6 exactly as written (`--loss eq6`: no expert rater term, no stop-gradient, so the experts learn "
            "only through MAI and u_m) against the default (each expert also learns from the raters; MAI teaches "
            "the student only), AmbER² fused head, the same folds, seeds and grid; Eq. 6 − default with a 95% "
            "paired bootstrap interval over items.", "",
            "| metric | default | Eq. 6 | Eq. 6 − default [95% interval] | verdict |", "|---|---|---|---|---|",
            *rows]


def write_demo_readme(report_dir: Path, card: dict, model_dir: Path, breakdown: Sequence[str] = (),
                      report: dict | None = None, ablation: Sequence[str] = ()) -> Path:
    """README.md beside the demo's report: what the corpus is, where AmbER² wins (overall with paired intervals,
    per source, calibration, the Eq. 6 ablation), how to rebuild it, licences."""
    demo = card["demo"]
    overall = comparison_lines(report) if report else []
    calibration = calibration_lines(report) if report else []
    text = "\n".join([
        "# The demo model's run", "",
        f"`report.md` and the figures in this folder are the cross-validated comparison (CB-CE vs AmbER²) "
        f"behind the bundled checkpoint `{model_dir.name}/`.", "",
        "## Corpus", "", demo["recipe"], "",
        *[f"- {name}: {n} items ({demo['groups'][name]} speakers/dialogues/groups)"
          for name, n in demo["counts"].items()],
        *(["", "## AmbER² against CB-CE, paired over items", "", *overall] if overall else []),
        *(["", "## Where AmbER² wins: held-out metrics per source", "",
           "Test-fold predictions (each item predicted once per seed, by a model that never saw its speaker, "
           "dialogue or comment), split by the corpus the item came from; mean ± std over seeds. Voice items "
           "have one vote (the actor's intended emotion), so UAR is their natural measure; word items have "
           "rater distributions.", "", *breakdown] if breakdown else []),
        *(["", "## Calibration (ECE, lower is better)", "", *calibration] if calibration else []),
        *(["", "## Ablation: the paper's Eq. 6 as written", "", *ablation] if ablation else []),
        "", "## Reproduce", "", "```bash", card["command"], "```", "",
        "## Licences", "", *[f"- {line}" for line in card["licences"]], ""])
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


CARD_NOTES = ROOT / "docs" / "demo-model.md"


def append_card_notes(model_dir: Path, notes: Path = CARD_NOTES) -> Path:
    """Append the measured choices behind the demo model (docs/demo-model.md) to its model card."""
    card = Path(model_dir) / "README.md"
    text = card.read_text(encoding="utf-8").rstrip("\n")
    marker = "\n\n<!-- demo-model notes -->\n"
    text = text.split(marker)[0] + marker + notes.read_text(encoding="utf-8")
    card.write_text(text, encoding="utf-8")
    return card


