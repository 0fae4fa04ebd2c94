"""`python -m train inspect`: what a corpus holds before training on it (classes, folds, ambiguity, skips).

    python -m train inspect --dataset iemocap --root /data/IEMOCAP_full_release [--csv items.csv]
    python -m train.inspect --dataset csv --root votes.csv --space demo7
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from train.datasets import (DATASETS, CorpusSummary, DatasetError, load_dataset, summarize,
                            write_votes_csv)


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
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="corpus format")
    p.add_argument("--root", required=True, type=Path, help="corpus folder (for csv: the CSV file)")
    p.add_argument("--space", help="label space (default: the corpus's own; required for csv)")
    p.add_argument("--csv", type=Path, help="also write one row per item (id, fold, transcript, audio, votes)")
    p.add_argument("--bins", type=int, default=4, help="number of ambiguity bins (default 4)")
    p.add_argument("--bin-mode", choices=("width", "quantile"), default="width",
                   help="equal-width entropy bins over [0, ln C] (default) or equal-count bins")
    p.add_argument("--n-folds", type=int, help="folds to assign where the corpus has none (default 5)")
    p.add_argument("--seed", type=int, help="seed of the fold assignment (default 0)")
    p.add_argument("--include-self", action="store_true", default=None,
                   help="IEMOCAP: count the actors' self-evaluations too")
    p.add_argument("--merge-excited", action="store_true", default=None, help="IEMOCAP: count excited as happy")
    p.add_argument("--missing", choices=("error", "skip"),
                   help="IEMOCAP/MSP-Podcast: an utterance without audio or transcript stops the load (error, "
                        "default) or is counted and left out (skip)")
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
