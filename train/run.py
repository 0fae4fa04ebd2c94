"""`python -m train [run]`: corpus -> cached features -> protocol -> report -> final model -> checkpoint.

    python -m train --dataset iemocap --root /data/IEMOCAP_full_release --out runs/iemocap
    python -m train --dataset csv --csv votes.csv --space demo7 --out runs/mine --seeds 3 --epochs 20
    python -m train --dataset msp-podcast --root /data/MSP-Podcast --out runs/msp --push-to-hub me/amber2-msp

Output folder (OUT):
    report.json, report.md, figures   the paper's Tables 1-4 and Fig. 2 for this corpus (train.report)
    model/                            the final AmbER² checkpoint + model card: `python -m amber2 --model OUT/model`
    protocol/                         finished folds; re-running the same command resumes here
Features are cached in --cache-dir (default $AMBER2_CACHE/features), shared by every run on the same audio.

The same command runs as several processes under `accelerate launch` or `torchrun` (docs/distributed.md):
feature extraction and the folds are shared out, rank 0 writes the report and the checkpoint.

Every `ProtocolConfig` field is a flag (`--max-epochs`, `--lambda-mai-grid 0.3 0.5`, ...), plus the short forms
`--folds`, `--epochs` and `--seeds` (one number N: seeds 0..N-1; several numbers: those seeds).
Choices where the paper is silent:
* a corpus whose own folds (IEMOCAP: its five sessions) outnumber `--folds` has them merged round-robin
  (sorted fold ids, fold i -> i mod k) so quick runs can use fewer folds; the message says so;
* the final model is trained with `train.protocol.train_final` on the grid point selected most often across
  folds, with `--final-seed` (default: the first protocol seed).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from train.cli import (add_output_flags, add_protocol_flags, configure_logging, guarded, protocol_from_args,
                       redact_command)
from train.workflow import RunConfig, RunError, default_feature_cache, run_corpus, summary_text

log = logging.getLogger("train")


def build_parser() -> argparse.ArgumentParser:
    from train.datasets import DATASETS

    p = argparse.ArgumentParser(prog="python -m train", description=(
        "Train CB-CE and AmbER² on a corpus with the paper's protocol, write the report and a checkpoint. "
        "Other commands: `python -m train inspect ...`, `python -m train demo ...`, "
        "`python -m train evaluate ...`."))
    p.add_argument("--dataset", required=True, help=f"format of the corpus to train on: {', '.join(DATASETS)}")
    p.add_argument("--root", type=Path, help="where the corpus is: its release folder (csv: the CSV file)")
    p.add_argument("--csv", type=Path, help="the votes table for --dataset csv (instead of --root)")
    p.add_argument("--space", help="label space the votes are counted in (default: the corpus's own; required "
                                   "for csv)")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder for the report, the checkpoint and the protocol state (a second run with "
                        "the same folder resumes the first)")
    add_output_flags(p, default_feature_cache())
    add_protocol_flags(p, {"device": "auto"})
    return p


def dataset_options(dataset: str, space: str | None, n_folds: int) -> dict:
    """Keyword options for load_dataset: only those the dataset's options dataclass knows."""
    from train.datasets import DATASETS

    known = {f.name for f in dataclasses.fields(DATASETS[dataset][0])}
    wanted = {"space": space, "n_folds": n_folds}
    return {k: v for k, v in wanted.items() if k in known and v is not None}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m train [run]`; under a launcher, one process of several (train.distributed)."""
    from train.distributed import Launch, PeerFailure, lone_cpu_launch, start

    args = build_parser().parse_args(argv)
    try:
        launch = Launch.from_env()
    except PeerFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prefix = f"[rank {launch.rank} of {launch.world}] " if launch.world > 1 else ""
    configure_logging(prefix)
    if note := lone_cpu_launch():
        log.warning(note)
    if launch.cpu:   # `accelerate launch --cpu`: no process touches a GPU (the encoders pick one when they see it)
        os.environ["CUDA_VISIBLE_DEVICES"] = ""

    def body() -> int:
        from train.datasets import DATASETS, load_dataset

        dataset = args.dataset.lower().replace("_", "-")
        if dataset not in DATASETS:
            raise RunError(f"unknown dataset {args.dataset!r}; known: {', '.join(DATASETS)}")
        root = args.csv if dataset == "csv" and args.csv else args.root
        if root is None:
            raise RunError(f"--root is required for --dataset {dataset}" +
                           (" (or --csv FILE)" if dataset == "csv" else ""))
        protocol = protocol_from_args(args)
        device = launch.device(protocol.device)
        if device != protocol.device:
            protocol = dataclasses.replace(protocol, device=device)
        if device.startswith("cuda:"):   # the encoders' bare "cuda" then means this process's GPU too
            import torch

            torch.cuda.set_device(torch.device(device))
        cfg = RunConfig(out=args.out, audio_encoder=args.audio_encoder, text_encoder=args.text_encoder,
                        cache_dir=args.cache_dir, feature_batch_size=args.feature_batch_size,
                        final_seed=args.final_seed, push_to_hub=args.push_to_hub, private=args.private,
                        token=args.token, progress=not args.no_progress and launch.rank == 0)
        corpus = load_dataset(dataset, root, **dataset_options(dataset, args.space, protocol.n_folds))
        command = " ".join(["python -m train", *(argv if argv is not None else sys.argv[1:])])
        group = start(args.out, launch)
        try:
            outcome = run_corpus(corpus, cfg, protocol, card={"command": redact_command(command)}, group=group)
        except BaseException as exc:
            group.fail(exc)
            raise
        finally:
            group.close()
        print(summary_text(outcome))
        return 0

    return guarded(body, prefix)
