"""`python -m train inspect`: what a corpus holds before training on it (classes, folds, ambiguity, skips).

    python -m train inspect --dataset iemocap --root /data/IEMOCAP_full_release [--csv items.csv]
    python -m train.corpus_summary --dataset csv --root votes.csv --space demo7
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amber2.metrics import MetricsError, ambiguity_bin_edges, bin_index
from train.datasets import DATASETS, Corpus, DatasetError, load_dataset
from train.datasets.licensed import write_votes_csv


@dataclass
class CorpusSummary:
    """Counts that tell whether a corpus is usable: per majority class, per fold, per ambiguity bin."""

    name: str
    space: str
    classes: list[str]
    n_items: int
    n_votes: int
    class_counts: dict[str, int]              # items per majority class (ties to the first class)
    fold_counts: dict[int | None, int]
    fold_class_counts: dict[int | None, dict[str, int]]
    ambiguity_bins: list[tuple[float, float, int]]   # (lo, hi, items) over the soft labels' entropy (nats)
    groups: int
    skipped: dict[str, int]
    dropped_votes: int = 0


def summarize(corpus: Corpus, n_bins: int = 4, bin_mode: str = "width") -> CorpusSummary:
    """Class, fold and ambiguity counts of a corpus (ambiguity bins as amber2.metrics bins them)."""
    if not corpus.items:
        raise DatasetError(f"{corpus.name} has no item to summarize")
    classes = list(corpus.space.classes)
    votes = corpus.votes()
    p = corpus.distributions()
    major = np.argmax(p, axis=1)
    folds = sorted({it.fold for it in corpus.items}, key=lambda f: (f is None, f or 0))
    fold_class = {f: dict.fromkeys(classes, 0) for f in folds}
    for it, m in zip(corpus.items, major):
        fold_class[it.fold][classes[m]] += 1
    try:
        edges = ambiguity_bin_edges(p, n_bins=n_bins, mode=bin_mode)
    except MetricsError as e:
        raise DatasetError(str(e)) from None
    which = bin_index(p, edges)
    bins = [(float(edges[b]), float(edges[b + 1]), int(np.sum(which == b))) for b in range(len(edges) - 1)]
    return CorpusSummary(
        name=corpus.name, space=corpus.space.name, classes=classes, n_items=len(corpus.items),
        n_votes=int(votes.sum()), class_counts={c: int(np.sum(major == k)) for k, c in enumerate(classes)},
        fold_counts={f: sum(fold_class[f].values()) for f in folds}, fold_class_counts=fold_class,
        ambiguity_bins=bins, groups=len({it.group for it in corpus.items}), skipped=dict(corpus.skipped),
        dropped_votes=corpus.dropped_votes)


def format_summary(s: CorpusSummary) -> str:
    """Plain-text tables of a CorpusSummary."""
    lines = [f"{s.name}: {s.n_items} items, {s.n_votes} votes ({s.n_votes / max(s.n_items, 1):.2f} per item), "
             f"{s.groups} groups, label space {s.space}", "", "majority class (ties to the first class):"]
    width = max(len(c) for c in s.classes)
    for c in s.classes:
        n = s.class_counts[c]
        lines.append(f"  {c:<{width}}  {n:>7}  {100 * n / max(s.n_items, 1):5.1f}%")
    lines += ["", "folds:", "  fold  " + "".join(f"{c[:8]:>9}" for c in s.classes) + f"{'total':>9}"]
    for f, counts in s.fold_class_counts.items():
        label = "-" if f is None else str(f)
        lines.append(f"  {label:>4}  " + "".join(f"{counts[c]:>9}" for c in s.classes) + f"{s.fold_counts[f]:>9}")
    lines += ["", "ambiguity (entropy of the soft label, nats):"]
    for lo, hi, n in s.ambiguity_bins:
        lines.append(f"  [{lo:.3f}, {hi:.3f}]  {n:>7}  {100 * n / max(s.n_items, 1):5.1f}%")
    lines += ["", "skipped:"]
    lines += [f"  {k}: {v}" for k, v in sorted(s.skipped.items())] or ["  none"]
    lines.append(f"votes outside the label space (dropped from kept items): {s.dropped_votes}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train inspect",
                                description="Count a corpus's items per class, fold and ambiguity level.")
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="format of the corpus to read")
    p.add_argument("--root", required=True, type=Path, help="where the corpus is: its folder (csv: the CSV file)")
    p.add_argument("--space", help="label space the votes are counted in (default: the corpus's own; required "
                                   "for csv)")
    p.add_argument("--csv", type=Path, help="also write the loaded items to this votes CSV, one row per item (id, "
                                            "fold, transcript, audio, votes), readable by --dataset csv")
    p.add_argument("--bins", type=int, default=4, help="number of ambiguity bins (default %(default)s)")
    p.add_argument("--bin-mode", choices=("width", "quantile"), default="width",
                   help="equal-width entropy bins over [0, ln C] (width, the default) or equal-count bins "
                        "(quantile)")
    p.add_argument("--n-folds", type=int, help="folds to assign where the corpus has none of its own (default 5)")
    p.add_argument("--seed", type=int, help="seed of that fold assignment (default 0)")
    p.add_argument("--include-self", action="store_true", default=None,
                   help="IEMOCAP: also count the actors' self-evaluations as votes")
    p.add_argument("--merge-excited", action="store_true", default=None,
                   help="IEMOCAP: count excited votes as happy")
    p.add_argument("--missing", choices=("error", "skip"),
                   help="IEMOCAP/MSP-Podcast/nEMO: an utterance without audio or transcript stops the load "
                        "(error, the default) or is counted and left out (skip)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m train inspect`; returns the exit status (2 on a dataset error)."""
    args = build_parser().parse_args(argv)
    given = {"space": args.space, "n_folds": args.n_folds, "seed": args.seed,
             "include_self": args.include_self, "merge_excited": args.merge_excited, "missing": args.missing}
    accepted = {f for f in DATASETS[args.dataset][0].__dataclass_fields__}
    options = {k: v for k, v in given.items() if v is not None}
    ignored = sorted(set(options) - accepted)
    if ignored:
        print(f"error: option(s) {', '.join('--' + k.replace('_', '-') for k in ignored)} do not apply to "
              f"dataset {args.dataset}", file=sys.stderr)
        return 2
    try:
        corpus = load_dataset(args.dataset, args.root, **options)
        print(format_summary(summarize(corpus, n_bins=args.bins, bin_mode=args.bin_mode)))
        if args.csv:
            write_votes_csv(corpus, args.csv)
            print(f"\nwrote {len(corpus.items)} rows to {args.csv}")
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
