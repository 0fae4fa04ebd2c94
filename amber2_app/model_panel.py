"""The Model tab in plain words: what the loaded checkpoint is, how well it measured, which head is weak.

Words only, from what the checkpoint carries: its `config.json` (label space, encoders, provenance), its model
card (the "## Results" section is shown as written) and, where the trainer's `report.json` lies beside it,
the per-head metrics that say which expert head is the weak one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from amber2.files import ASSETS, DEFAULT_MODEL, ROOT
from amber2.heads import TABLE

# Provenance keys said in a sentence below; any other key is listed under "Other details".
_SAID = {"dataset", "n_items", "n_fit", "n_val", "best_epoch", "max_epochs", "method", "kappa", "lambda_mai",
         "hyperparameters", "license", "val_js", "seed"}
METHOD_DESCRIPTIONS = {
    "amber2": "AmbER² (soft labels from raters' votes; the fused head also learns from the voice and words heads)",
    "cbce": "class-balanced cross-entropy (the paper's baseline)"}
HEAD_NAMES = {h.key: f"{h.short.lower()} head" for h in TABLE}   # "voice head", "words head", "fused head"
# The words the Model tab and the report use, in plain words (shown under the results).
GLOSSARY = """**The words used here**

- **CB-CE** (class-balanced cross-entropy): the paper's baseline; it learns each clip's most voted emotion,
  rare emotions weighted up.
- **AmbER²**: learns the raters' whole vote distribution (RAI) and lets the fused head learn from the voice and
  words heads, each in proportion to how close it is to the raters (MAI, weighted by κ).
- **JS** (Jensen-Shannon distance): how far a head's bars are from the raters' votes; 0 is identical.
- **BC** (Bhattacharyya coefficient): how much the two distributions overlap; 1 is identical.
- **ACC / F1**: how often the top bar is the raters' most voted emotion (F1 averages over emotions).
- **ECE** (expected calibration error): how far the bars' sureness is from how often they are right; 0 means a
  70% bar is right 7 times in 10.
- **κ** (kappa): how strongly the fused head trusts the expert closer to the raters; the page's fused bar uses
  the same κ with the fused head in the raters' place."""


def strip_front_matter(card: str) -> str:
    if card.startswith("---"):
        end = card.find("\n---", 3)
        if end != -1:
            return card[end + 4:].lstrip("\n")
    return card


def card_section(card: str | None, title: str) -> str:
    """The body of the card's `## {title}` section ("" when the card has none)."""
    if not card:
        return ""
    lines = card.splitlines()
    for i, line in enumerate(lines):
        if line.strip().lower() == f"## {title}".lower():
            body = []
            for rest in lines[i + 1:]:
                if rest.startswith("## ") or rest.startswith("# "):
                    break
                body.append(rest)
            return "\n".join(body).strip()
    return ""


def tables_as_lists(markdown: str) -> str:
    """Markdown tables rewritten as one bullet per row ("**row**: header value; ..."): a 9-column table does
    not fit a phone, a list does. Other lines are kept."""
    out, header = [], None
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells is None:
            header = None
            out.append(line)
        elif header is None:
            header = cells
        elif not all(set(c) <= set("-: ") for c in cells):  # skip the |---| separator
            pairs = "; ".join(f"{h} {v}" for h, v in zip(header[1:], cells[1:]))
            out.append(f"- **{cells[0]}**: {pairs}")
    return "\n".join(out)


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def weak_head(heads: Mapping[str, Mapping[str, float]]) -> str | None:
    """"A" or "T": the expert head farther from the raters (larger JS distance); None without both."""
    if not all(k in heads and "js" in heads[k] for k in ("A", "T")):
        return None
    return "A" if heads["A"]["js"] > heads["T"]["js"] else "T"


def weak_head_sentence(heads: Mapping[str, Mapping[str, float]] | None) -> str:
    if not heads or (weak := weak_head(heads)) is None:
        return "This checkpoint does not say how each head does on its own."
    strong = "T" if weak == "A" else "A"

    def stats(key: str) -> str:
        h = heads[key]
        parts = [f"JS distance {h['js']:.3f}"]
        if "acc" in h:
            parts.append(f"accuracy {h['acc']:.0%}")
        return ", ".join(parts)

    fused = f" The fused head, which hears both, does best ({stats('AT')})." if "AT" in heads else ""
    return (f"**The {HEAD_NAMES[weak]} is the weak one:** on held-out test items it is farther from the raters "
            f"({stats(weak)}) than the {HEAD_NAMES[strong]} ({stats(strong)}); read its bars with more "
            f"caution.{fused}")


def describe(source: str, config: dict, card: str | None = None,
             heads: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, str]:
    """Markdown for the Model tab.

    `heads`: per-head test metrics {"A"|"T"|"AT": {"js", "acc", ...}} from the trainer's report, or None.
    Returns {"summary": what the model is, "results": measured results and the weak head,
    "card": the card's body without its YAML front matter ("" if none)}."""
    prov = dict(config.get("provenance") or {})
    hyper = prov.get("hyperparameters") or {}
    classes = list(config.get("classes", []))
    lines = [f"This app runs the checkpoint **`{source}`**.", "",
             f"- **Emotions it tells apart ({len(classes)}):** {', '.join(classes)}"
             f" (label space `{config.get('label_space', '?')}`).",
             f"- **How it listens:** the voice through `{config.get('audio_encoder', '?')}`, the words (Whisper's "
             f"transcript) through `{config.get('text_encoder', '?')}`."]
    if "dataset" in prov:
        counts = ""
        if "n_items" in prov:
            counts = f": {_number(prov['n_items'])} clips and texts"
            if "n_fit" in prov and "n_val" in prov:
                counts += (f" ({_number(prov['n_fit'])} to learn from, {_number(prov['n_val'])} kept aside to "
                           "choose when to stop")
                if "best_epoch" in prov and "max_epochs" in prov:
                    counts += f": pass {prov['best_epoch']} of {prov['max_epochs']} over the data was best"
                counts += ")"
        lines.append(f"- **Trained on:** {prov['dataset']}{counts}.")
    if "method" in prov:
        lines.append(f"- **Training method:** {METHOD_DESCRIPTIONS.get(prov['method'], prov['method'])}.")
    kappa = prov.get("kappa", hyper.get("kappa"))
    lambda_mai = prov.get("lambda_mai", hyper.get("lambda_mai"))
    if kappa is not None or lambda_mai is not None:
        said = []
        if kappa is not None:
            said.append(f"κ = {_number(kappa)} (how strongly the fused head favours the expert closer to "
                        "the raters)")
        if lambda_mai is not None:
            said.append(f"λ = {_number(lambda_mai)} (how much the fused head learns from the two experts)")
        lines.append(f"- **Settings chosen by cross-validation:** {'; '.join(said)}.")
    if "val_js" in prov:
        lines.append(f"- **Distance from the raters on the kept-aside items:** {_number(prov['val_js'])} "
                     "(Jensen-Shannon distance: 0 = the raters' votes exactly).")
    if "license" in prov:
        lines.append(f"- **Licence of the weights:** {prov['license']}.")
    other = {k: v for k, v in prov.items() if k not in _SAID}
    if other:
        lines.append("- **Other details:** " + ", ".join(f"{str(k).replace('_', ' ')} {_number(v)}"
                                                        for k, v in other.items()) + ".")
    measured = card_section(card, "Results")
    results = ["### How well it does (measured on held-out test items)",
               tables_as_lists(measured) or "The model card reports no measured results.", "",
               "### Which head is weak",
               weak_head_sentence(heads)]
    return {"summary": "\n".join(lines), "results": "\n".join(results),
            "card": strip_front_matter(card).strip() if card else ""}


def head_metrics(report: dict, method: str = "amber2") -> dict[str, dict[str, float]] | None:
    """Per-head mean test metrics {"A"|"T"|"AT": {"js", "acc", "f1"}} from a trainer `report.json`."""
    per_method = (report.get("metrics") or {}).get(method)
    if not per_method:
        return None
    return {head: {k: float(v["mean"]) for k, v in metrics.items() if isinstance(v, dict) and "mean" in v}
            for head, metrics in per_method.items()}


# ---- the checkpoint's files (I/O; the wording is `describe`) ----

def read_checkpoint(ref: str) -> tuple[dict, str | None]:
    """config.json and README.md of a checkpoint folder or Hub repo (the card may be missing)."""
    path = Path(ref)
    if path.is_dir():
        config = json.loads((path / "config.json").read_text())
        card = path / "README.md"
        return config, card.read_text() if card.is_file() else None
    from huggingface_hub import hf_hub_download  # a Hub repo: Analyzer has already fetched it

    config = json.loads(Path(hf_hub_download(ref, "config.json")).read_text())
    try:
        card_text = Path(hf_hub_download(ref, "README.md")).read_text()
    except Exception:  # a repo without a card is still a model
        card_text = None
    return config, card_text


# The bundled checkpoint's trainer report (per-head metrics) lies in its own folder, not in the checkpoint.
BUNDLED_REPORT = ASSETS / "demo-report" / "report.json"


def read_report(ref: str) -> dict | None:
    """The trainer's report.json for a checkpoint folder: inside it, or the bundled model's own; else None."""
    path = Path(ref)
    for candidate in (path / "report.json", BUNDLED_REPORT if path.resolve() == DEFAULT_MODEL.resolve() else None):
        if candidate is not None and candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except (OSError, ValueError):  # a report being rewritten: the panel does without it
                return None
    return None


def display_ref(ref: str) -> str:
    """A checkpoint folder inside this repository as a relative path (short, and it does not reveal the
    server's layout); anything else as given."""
    path = Path(ref).resolve()
    return str(path.relative_to(ROOT)) if path.is_dir() and path.is_relative_to(ROOT) else ref
