"""Protocol reports: report.json (every number), report.md (the paper's Tables 1-4), Fig. 2 as PNG and HTML.

Rendering only: every number comes from a `ProtocolResult` (or its `to_dict()`, e.g. a saved report.json).
Where the dataset is IEMOCAP or MSP-Podcast the paper's own figures (Tables 1-4, copied below) are shown
beside ours.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from amber2.errors import UserError
from amber2.files import atomic_write_text
from amber2.heads import HEADS, get_head
from amber2.metrics import DISTRIBUTION_METRICS, METRIC_LABELS

CLASSIFICATION = ("f1", "wf1", "acc")            # the paper's column order in Tables 2 and 4
PAPER_ROWS = ("T", "A", "AT")    # the paper's row order; a head the paper has not follows
HEAD_LABELS = {k: get_head(k).paper for k in (*PAPER_ROWS, *(h for h in HEADS if h not in PAPER_ROWS))}
METHOD_LABELS = {"cbce": "Baseline (CB-CE)", "amber2": "AmbER²"}
FIG2_PANELS = (("js", "bc", "r2"), ("acc", "wf1"))   # Fig. 2: top row, bottom row

# The paper's Tables 1-4 (mean, std over 5 seeds). Tables 1/2: CB-CE per head; Tables 3/4: AmbER² (A+T).
# The paper's "JS" is filed as jsd_bits (the JS divergence in bits), the figure it most likely is: JS_NOTE.
PAPER: dict[str, dict[str, dict[str, dict[str, tuple[float, float]]]]] = {
    "iemocap": {
        "cbce": {
            "T": {"jsd_bits": (0.302, 0.001), "bc": (0.723, 0.001), "r2": (0.540, 0.001),
                  "f1": (0.581, 0.007), "wf1": (0.574, 0.005), "acc": (0.571, 0.006)},
            "A": {"jsd_bits": (0.275, 0.004), "bc": (0.747, 0.003), "r2": (0.526, 0.003),
                  "f1": (0.654, 0.004), "wf1": (0.538, 0.006), "acc": (0.544, 0.006)},
            "AT": {"jsd_bits": (0.216, 0.001), "bc": (0.803, 0.001), "r2": (0.628, 0.001),
                   "f1": (0.690, 0.003), "wf1": (0.655, 0.003), "acc": (0.654, 0.003)},
        },
        "amber2": {
            "AT": {"jsd_bits": (0.193, 0.002), "bc": (0.825, 0.001), "r2": (0.665, 0.002),
                   "f1": (0.695, 0.005), "wf1": (0.675, 0.004), "acc": (0.683, 0.003)},
        },
    },
    "msp-podcast": {
        "cbce": {
            "T": {"jsd_bits": (0.386, 0.001), "bc": (0.648, 0.001), "r2": (0.355, 0.005),
                  "f1": (0.247, 0.003), "wf1": (0.535, 0.003), "acc": (0.446, 0.007)},
            "A": {"jsd_bits": (0.388, 0.001), "bc": (0.646, 0.001), "r2": (0.359, 0.002),
                  "f1": (0.247, 0.001), "wf1": (0.522, 0.001), "acc": (0.478, 0.002)},
            "AT": {"jsd_bits": (0.368, 0.003), "bc": (0.664, 0.000), "r2": (0.378, 0.002),
                   "f1": (0.276, 0.001), "wf1": (0.552, 0.002), "acc": (0.473, 0.003)},
        },
        "amber2": {
            "AT": {"jsd_bits": (0.328, 0.001), "bc": (0.707, 0.000), "r2": (0.425, 0.001),
                   "f1": (0.369, 0.003), "wf1": (0.445, 0.002), "acc": (0.520, 0.001)},
        },
    },
}
PAPER_NAMES = {"iemocap": "IEMOCAP", "msp-podcast": "MSP-Podcast"}
JS_NOTE = ("Two JS figures: *JS dist. (nat)* is the Jensen-Shannon distance with natural log (AER-LLM's code); "
           "*JSD (bits)* is the Jensen-Shannon divergence in bits (= distance² / ln 2). The paper's \"JS\" sits in "
           "the JSD (bits) column: for all eight of its rows JS / (1 − BC) lies between 1.09 and 1.12, which the "
           "base-2 divergence reaches and the natural-log distance does not (ours: {ours}).")


class ReportError(UserError, ValueError):
    """A result the report cannot be written from; the message is meant for a person."""


def paper_key(dataset_name: str) -> str | None:
    """"iemocap" / "msp-podcast" for names of those corpora (any spelling), else None."""
    flat = "".join(ch for ch in dataset_name.lower() if ch.isalnum())
    if flat.startswith("iemocap"):
        return "iemocap"
    if flat.startswith("msp"):
        return "msp-podcast"
    return None


def _as_dict(result: Any) -> dict:
    data = result.to_dict() if hasattr(result, "to_dict") else result
    if not isinstance(data, dict) or "metrics" not in data or "binned" not in data:
        raise ReportError("write_report needs a ProtocolResult or its to_dict() (with 'metrics' and 'binned')")
    return data


def _cell(stat: dict | tuple | None) -> str:
    """'0.216 ± 0.001' from {"mean", "std"} or a (mean, std) tuple; '–' where missing."""
    if stat is None:
        return "–"
    mean, std = (stat["mean"], stat["std"]) if isinstance(stat, dict) else stat
    if mean is None:
        return "–"
    return f"{mean:.3f} ± {std or 0.0:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _per_head_table(metrics: dict, paper: dict | None, keys: tuple[str, ...], paper_name: str | None) -> str:
    """Tables 1/2: the baseline per head; the paper's rows follow ours."""
    rows = [[HEAD_LABELS[h]] + [_cell(metrics["cbce"][h][k]) for k in keys] for h in HEAD_LABELS]
    if paper:
        rows += [[f"{HEAD_LABELS[h]}, paper ({paper_name})"] + [_cell(paper["cbce"][h].get(k)) for k in keys]
                 for h in HEAD_LABELS]
    return _table(["Modality"] + [METRIC_LABELS[k] for k in keys], rows)


def _versus_table(metrics: dict, paper: dict | None, keys: tuple[str, ...], student: str,
                  paper_name: str | None) -> str:
    """Tables 3/4: Baseline (A+T) vs AmbER², ours and the paper's side by side."""
    header = ["Metric", "Baseline (A+T)", "AmbER²"]
    if paper:
        header += [f"Baseline (A+T), paper ({paper_name})", f"AmbER², paper ({paper_name})"]
    rows = []
    for k in keys:
        row = [METRIC_LABELS[k], _cell(metrics["cbce"][student][k]), _cell(metrics["amber2"][student][k])]
        if paper:
            row += [_cell(paper["cbce"]["AT"].get(k)), _cell(paper["amber2"]["AT"].get(k))]
        rows.append(row)
    return _table(header, rows)


def _binned_table(binned: dict, student: str) -> str:
    keys = ("js", "jsd_bits", "bc", "r2", "acc", "wf1")
    rows = []
    for method in ("cbce", "amber2"):
        for b in binned[method][student]:
            rows.append([METHOD_LABELS[method], f"[{b['lo']:.2f}, {b['hi']:.2f}]", str(b["n"])]
                        + [_cell(b[k]) for k in keys])
    return _table(["Method", "entropy bin", "n"] + [METRIC_LABELS[k] for k in keys], rows)


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _selection_table(data: dict) -> str:
    rows = []
    for fold in data["folds"]:
        sel = fold["selection"]
        chosen = sel.get("amber2", {})
        rows.append([str(fold["fold"]), str(fold["n_test"]), str(fold["n_val"]),
                     f"{chosen.get('lambda_mai')}", f"{chosen.get('kappa')}", _number(chosen.get("score")),
                     _number(sel.get("cbce", {}).get("score"))])
    metric = data["config"]["selection_metric"]
    return _table(["Test fold", "test items", "validation items", "λ_MAI", "κ",
                   f"AmbER² validation {metric}", f"CB-CE validation {metric}"], rows)


def _timing(data: dict) -> str:
    # a resumed run loads finished folds from disk in no time: report the time the folds took to train
    folds = data.get("folds", [])
    trained = sum(f.get("seconds", 0.0) for f in folds)
    return (f"Training time: {trained:.1f} s for the {len(folds)} folds (each timed when it was computed; "
            f"this invocation took {data.get('seconds', 0.0):.1f} s).")


_PRECISION = {"fp32": "Arithmetic: float32.",
              "bf16": "Arithmetic: mixed precision (first-layer products in bfloat16; weights, optimizer and loss "
                      "in float32)."}


def _js_ratios(metrics: dict, student: str) -> str:
    """Our JS / (1 − BC) for both figures (CB-CE and AmbER², student head): the evidence of JS_NOTE."""
    out = []
    for method in ("cbce", "amber2"):
        m = metrics[method][student]
        if m.get("jsd_bits") and m["bc"]["mean"] is not None and m["bc"]["mean"] < 1:
            gap = 1 - m["bc"]["mean"]
            out.append(f"{METHOD_LABELS[method]} distance {m['js']['mean'] / gap:.2f}, bits "
                       f"{m['jsd_bits']['mean'] / gap:.2f}")
    return "; ".join(out) or "not available"


READING_MEASURES = (("js", "JS ↓"), ("bc", "BC ↑"), ("acc", "ACC ↑"), ("ece", "ECE ↓"),
                    ("invented", "top class neither expert's ↓"))


def reading_section(data: dict) -> list[str]:
    """The fused bar as the shipped model shows it (`amber2.arbitration`): the student against the arbitrated
    reading on the test folds, both calibrated on validation (absent in reports made before it)."""
    reading = (data.get("calibrated") or {}).get("reading")
    if not reading:
        return []
    rows = [[f"{METHOD_LABELS[m]}, {name}"] + [_cell(reading[m][name][k]) for k, _ in READING_MEASURES]
            for m in ("cbce", "amber2") for name in ("student", "arbitrated")]
    temps = "; ".join(f"{METHOD_LABELS[m]} {_cell(reading[m]['temperature'])}" for m in ("cbce", "amber2"))
    return ["## The fused bar as the app shows it",
            "The fusion head (the student, whose metrics the tables above give, as in the paper) against the "
            "arbitrated reading a checkpoint with `fused_reading: arbitrated` shows: the voice and words heads' "
            "mixture weighted by Eq. 5 with the student in the raters' place, at each run's kappa "
            "(amber2.arbitration). Heads at their validation temperatures, the reading at its own (" + temps
            + "); test folds, mean ± std over seeds.",
            _table(["Fused reading"] + [label for _, label in READING_MEASURES], rows)]


def _calibration_section(data: dict, png: str, html: str) -> list[str]:
    """ECE per head and method, and the reliability diagram (absent in reports made before them)."""
    metrics = data["metrics"]
    if not data.get("calibration") or "ece" not in metrics["cbce"]["AT"]:
        return []
    rows = [[METHOD_LABELS[m]] + [_cell(metrics[m][h]["ece"]) for h in HEAD_LABELS] for m in ("cbce", "amber2")]
    calibrated = data.get("calibrated") or {}
    if calibrated:
        rows += [[f"{METHOD_LABELS[m]}, temperature-scaled"] + [_cell(calibrated["ece"][m][h]) for h in HEAD_LABELS]
                 for m in ("cbce", "amber2")]
        rows += [[f"{METHOD_LABELS[m]}: temperature"] + [_cell(calibrated["temperature"][m][h]) for h in HEAD_LABELS]
                 for m in ("cbce", "amber2")]
    return ["## Calibration",
            "ECE: 10 equal-width bins of the predicted top probability; an item counts as correct when the "
            "predicted class is the raters' majority (ties to the first class); mean ± std over seeds. The "
            "reliability diagram pools every seed's test predictions (bins of fewer than "
            f"{RELIABILITY_MIN_ITEMS} items are not drawn): a calibrated model's points lie on the diagonal. "
            "Temperature-scaled: each run's heads at the temperature fitted on its validation split (soft-label "
            "NLL, amber2.calibration), as the shipped checkpoint reads; the other metrics are the raw "
            "predictions', as in the paper.",
            _table(["Method"] + [HEAD_LABELS[h] for h in HEAD_LABELS], rows),
            f"![Reliability diagram]({png})", f"Interactive version: [{html}]({html})."]


def _paired_section(data: dict, student: str) -> list[str]:
    """AmbER² minus CB-CE with paired bootstrap intervals over items (absent in reports made before them)."""
    paired = data.get("paired")
    if not paired:
        return []
    first = next(iter(paired.values()))
    rows = []
    for k, r in paired.items():
        verdict = ("AmbER² better" if (r["low"] > 0) == r["higher_is_better"] else "CB-CE better") \
            if r["low"] > 0 or r["high"] < 0 else "tie (interval holds 0)"
        rows.append([METRIC_LABELS[k], f"{r['difference']:+.4f}", f"[{r['low']:+.4f}, {r['high']:+.4f}]",
                     f"{r['better_seeds']} of {r['seeds']}", verdict])
    return [f"## AmbER² minus CB-CE, paired over items ({student} head)",
            f"Difference of the seed-averaged metrics on the same items; {first['level']:.0%} percentile interval "
            f"of {first['resamples']} paired bootstrap resamples of the items (fixed seed); seeds where AmbER² "
            "is better on the full sample. Per-item predictions: predictions.npz.",
            _table(["Metric", "AmbER² − CB-CE", "interval", "seeds AmbER² better", "verdict"], rows)]


def render_markdown(data: dict, dataset_name: str, paper_key_: str | None, figure: str, html: str,
                    reliability_png: str = "reliability.png", reliability_html: str = "reliability.html") -> str:
    """report.md: the paper's Tables 1-4 layout, then selection and the Fig. 2 analysis."""
    cfg, metrics, student = data["config"], data["metrics"], data["config"]["student"]
    paper = PAPER.get(paper_key_) if paper_key_ else None
    pname = PAPER_NAMES.get(paper_key_) if paper_key_ else None
    if not {"cbce", "amber2"} <= set(metrics):
        raise ReportError("the report compares the CB-CE baseline with AmbER²: the result must hold both")
    grid = ", ".join(f"{v:g}" for v in cfg["lambda_mai_grid"])
    kappas = ", ".join(f"{v:g}" for v in cfg["kappa_grid"])
    parts = [
        f"# AmbER² protocol report: {dataset_name}",
        f"{data['n_items']} utterances, classes {', '.join(data['classes'])}. {cfg['n_folds']}-fold "
        f"cross-validation (each fold is the test set once) x {len(cfg['seeds'])} seeds; mean ± std over seeds "
        f"of metrics computed on the test predictions pooled over all folds (each utterance predicted once per "
        f"seed). AdamW (lr {cfg['lr']:g}, weight decay {cfg['weight_decay']:g}), batch {cfg['batch_size']}, "
        f"at most {cfg['max_epochs']} epochs, hidden {cfg['hidden_dim']}; the epoch of every run and, per "
        f"fold, λ_MAI ∈ {{{grid}}} x κ ∈ {{{kappas}}} are chosen on a {cfg['val_fraction']:.0%} validation "
        f"split of the training folds ({cfg['selection_metric']} of the {student} head, mean over seeds). "
        f"Student head: {student}. {_PRECISION[cfg.get('precision', 'fp32')]}",
    ]
    if paper:
        parts.append(f"Rows and columns marked *paper* are the figures published for {pname} (Tables 1-4 of "
                     "the paper, Wav2Vec2 + BERT features); ours come from the features this run was given.")
    parts += [
        "## Table 1. Baseline (CB-CE) per modality, distribution metrics",
        _per_head_table(metrics, paper, DISTRIBUTION_METRICS, pname),
        "## Table 2. Baseline (CB-CE) per modality, classification metrics",
        _per_head_table(metrics, paper, CLASSIFICATION, pname),
        "## Table 3. AmbER² vs baseline, distribution metrics",
        _versus_table(metrics, paper, DISTRIBUTION_METRICS, student, pname),
        JS_NOTE.format(ours=_js_ratios(metrics, student)),
        "## Table 4. AmbER² vs baseline, classification metrics",
        _versus_table(metrics, paper, CLASSIFICATION, student, pname),
        "## AmbER² per head",
        _table(["Modality"] + [METRIC_LABELS[k] for k in DISTRIBUTION_METRICS + CLASSIFICATION],
               [[HEAD_LABELS[h]] + [_cell(metrics["amber2"][h][k]) for k in DISTRIBUTION_METRICS + CLASSIFICATION]
                for h in HEAD_LABELS]),
        *_paired_section(data, student),
        *_calibration_section(data, reliability_png, reliability_html),
        *reading_section(data),
        "## Selected hyper-parameters per fold",
        _selection_table(data),
        f"## Fig. 2. Performance at different ambiguity levels ({student} head)",
        f"Ambiguity = entropy of the rater distribution (natural log), {cfg['n_bins']} bins "
        f"({cfg['bin_mode']}); points are means over seeds, whiskers ± std over seeds.",
        f"![Fig. 2]({figure})",
        f"Interactive version: [{html}]({html}).",
        _binned_table(data["binned"], student),
        _timing(data),
    ]
    return "\n\n".join(parts) + "\n"


def _bin_labels(rows: list[dict]) -> list[str]:
    return [f"{b['lo']:.2f}–{b['hi']:.2f}\nn={b['n']}" for b in rows]


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    means = [float("nan") if b[key]["mean"] is None else b[key]["mean"] for b in rows]
    stds = [0.0 if b[key]["std"] is None else b[key]["std"] for b in rows]
    return means, stds


COLORS = {"cbce": "#8c8c8c", "amber2": "#d1495b"}
# Reliability bins holding fewer items are not drawn: one or two items make a point at accuracy 0 or 1 that
# says nothing (ECE weighs every bin by its size, so it is unaffected).
RELIABILITY_MIN_ITEMS = 20


def _reliability_points(curve: dict) -> list[tuple[float, float, int]]:
    """(confidence, accuracy, n) of the bins worth drawing."""
    return [(c, a, n) for c, a, n in zip(curve["confidence"], curve["accuracy"], curve["n"])
            if n >= RELIABILITY_MIN_ITEMS]


def render_fig2_png(binned: dict, student: str, path: Path, title: str) -> None:
    """Fig. 2 with matplotlib: top row JS/BC/R², bottom row ACC/W-F1 and the bin sizes; baseline vs AmbER².

    Markers with ± std whiskers on an axis fitted to the data (bars from 0 would hide differences of 0.01).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = {m: binned[m][student] for m in ("cbce", "amber2")}
    labels = _bin_labels(rows["cbce"])
    x = np.arange(len(labels))
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), constrained_layout=True)
    dodge = 0.1
    for r, keys in enumerate(FIG2_PANELS):
        for c, key in enumerate(keys):
            ax = axes[r, c]
            for i, method in enumerate(("cbce", "amber2")):
                means, stds = _series(rows[method], key)
                ax.errorbar(x + (i - 0.5) * dodge, means, yerr=stds, capsize=4, color=COLORS[method],
                            marker="os"[i], markersize=7, linewidth=2, label=METHOD_LABELS[method])
            ax.set_title(METRIC_LABELS[key], fontsize=13)
            ax.set_xticks(x, labels, fontsize=9)
            ax.set_xlim(-0.4, len(labels) - 0.6)
            ax.grid(axis="y", alpha=0.3)
    ax = axes[1, 2]
    ax.bar(x, [b["n"] for b in rows["cbce"]], 0.6, color="#4a6fa5")
    ax.set_title("utterances per bin", fontsize=13)
    ax.set_xticks(x, labels, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("ambiguity (entropy of the rater distribution)", fontsize=10)
    handles, names = axes[0, 0].get_legend_handles_labels()
    # The legend below the panels, so a long corpus name in the title never runs into it.
    fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=11, frameon=False)
    fig.suptitle(textwrap.fill(title, 110), fontsize=14, x=0.01, ha="left")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_fig2_html(binned: dict, student: str, path: Path, title: str) -> None:
    """Fig. 2 as an interactive plotly page with plotly.js embedded (works offline)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = {m: binned[m][student] for m in ("cbce", "amber2")}
    labels = [lab.replace("\n", " ") for lab in _bin_labels(rows["cbce"])]
    titles = [METRIC_LABELS[k] for k in FIG2_PANELS[0]] + [METRIC_LABELS[k] for k in FIG2_PANELS[1]] \
        + ["utterances per bin"]
    fig = make_subplots(rows=2, cols=3, subplot_titles=titles, vertical_spacing=0.16)
    for r, keys in enumerate(FIG2_PANELS):
        for c, key in enumerate(keys):
            for method in ("cbce", "amber2"):
                means, stds = _series(rows[method], key)
                fig.add_trace(go.Scatter(x=labels, y=means, error_y=dict(type="data", array=stds),
                                         mode="lines+markers", name=METHOD_LABELS[method],
                                         marker_color=COLORS[method], legendgroup=method,
                                         showlegend=(r, c) == (0, 0)), row=r + 1, col=c + 1)
    fig.add_trace(go.Bar(x=labels, y=[b["n"] for b in rows["cbce"]], marker_color="#4a6fa5", name="n",
                         showlegend=False), row=2, col=3)
    fig.update_layout(title=title, height=720, width=1200, template="plotly_white")
    path.write_text(fig.to_html(include_plotlyjs=True, full_html=True), encoding="utf-8")


def render_reliability_png(calibration: dict, path: Path, title: str) -> None:
    """Reliability diagram with matplotlib: one panel per head, accuracy against mean confidence per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(HEAD_LABELS), figsize=(13, 4.6), constrained_layout=True)
    for ax, head in zip(axes, HEAD_LABELS):
        ax.plot([0, 1], [0, 1], color="#bbbbbb", linestyle="--", linewidth=1, label="calibrated")
        for i, method in enumerate(("cbce", "amber2")):
            pts = [(c, a) for c, a, _ in _reliability_points(calibration[method][head])]
            if not pts:
                continue
            ax.plot(*zip(*pts), marker="os"[i], color=COLORS[method], linewidth=2, label=METHOD_LABELS[method])
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean top probability (confidence)", title=HEAD_LABELS[head])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (predicted class = raters' majority)")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=3, fontsize=11, frameon=False)
    fig.suptitle(textwrap.fill(title, 110), fontsize=13, x=0.01, ha="left")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_reliability_html(calibration: dict, path: Path, title: str) -> None:
    """The reliability diagram as an interactive plotly page (plotly.js embedded, works offline)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(HEAD_LABELS), subplot_titles=list(HEAD_LABELS.values()))
    for c, head in enumerate(HEAD_LABELS, start=1):
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dash", color="#bbbbbb"),
                                 name="calibrated", showlegend=c == 1), row=1, col=c)
        for method in ("cbce", "amber2"):
            pts = _reliability_points(calibration[method][head])
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                     text=[f"n={p[2]}" for p in pts], name=METHOD_LABELS[method],
                                     marker_color=COLORS[method], legendgroup=method, showlegend=c == 1),
                          row=1, col=c)
    fig.update_xaxes(range=[0, 1], title="confidence")
    fig.update_yaxes(range=[0, 1], title="accuracy")
    fig.update_layout(title=title, height=460, width=1200, template="plotly_white")
    path.write_text(fig.to_html(include_plotlyjs=True, full_html=True), encoding="utf-8")


def write_report(result: Any, out_dir: str | Path, dataset_name: str,
                 paper: str | bool | None = None) -> dict[str, Path]:
    """Write report.json, report.md, Fig. 2 (fig2_ambiguity.png, .html) and the reliability diagram
    (reliability.png, .html) into out_dir.

    result: a ProtocolResult or its to_dict(). paper: None picks the paper's figures from dataset_name
    (IEMOCAP, MSP-Podcast); "iemocap" / "msp-podcast" forces a set; False shows none.
    Returns the paths written, by kind ("json", "md", "png", "html", and "reliability_png" and
    "reliability_html" when the result carries calibration curves).
    """
    data = _as_dict(result)
    if paper is None:
        key = paper_key(dataset_name)
    elif paper is False:
        key = None
    elif paper in PAPER:
        key = str(paper)
    else:
        raise ReportError(f"paper must be None, False or one of {sorted(PAPER)}, got {paper!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "png": out / "fig2_ambiguity.png",
             "html": out / "fig2_ambiguity.html", "reliability_png": out / "reliability.png",
             "reliability_html": out / "reliability.html"}
    student = data["config"]["student"]
    title = f"{dataset_name}: baseline (CB-CE) vs AmbER² by ambiguity level ({student} head)"
    markdown = render_markdown(data, dataset_name, key, paths["png"].name, paths["html"].name,
                               paths["reliability_png"].name, paths["reliability_html"].name)
    render_fig2_png(data["binned"], student, paths["png"], title)
    render_fig2_html(data["binned"], student, paths["html"], title)
    if data.get("calibration"):
        calibration_title = f"{dataset_name}: reliability of each head, baseline (CB-CE) vs AmbER²"
        render_reliability_png(data["calibration"], paths["reliability_png"], calibration_title)
        render_reliability_html(data["calibration"], paths["reliability_html"], calibration_title)
    else:
        del paths["reliability_png"], paths["reliability_html"]
    payload = {"dataset": dataset_name, **data, "paper": {"dataset": PAPER_NAMES[key], **PAPER[key]} if key else None}
    atomic_write_text(paths["json"], json.dumps(payload, indent=1, allow_nan=False))
    atomic_write_text(paths["md"], markdown)
    return paths
