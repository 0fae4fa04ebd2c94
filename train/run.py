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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from amber2.errors import UserError, one_line
from amber2.files import cache_root

log = logging.getLogger("train")

# What the licences of the corpora this trainer knows ask of a model trained on them (model card).
CORPUS_LICENCES = {
    "iemocap": "IEMOCAP is distributed by USC SAIL under a research licence; check it before sharing weights.",
    "msp-podcast": "MSP-Podcast is distributed by UT Dallas under an academic licence; check it before sharing "
                   "weights.",
    "ravdess": "RAVDESS (Livingstone & Russo 2018) is CC BY-NC-SA 4.0: weights derived from it are shared "
               "under CC BY-NC-SA 4.0 (attribution, non-commercial, share-alike).",
    "emotionlines": "EmotionLines (Hsu et al. 2018) is released for research use.",
    "nemo": "nEMO (Christop 2024) is CC BY-NC-SA 4.0: weights derived from it are shared under CC BY-NC-SA 4.0 "
            "(attribution, non-commercial, share-alike).",
    "goemotions": "GoEmotions (Demszky et al. 2020) is Apache-2.0.",
    "emovo": "EMOVO (Costantini et al. 2014) is released for research use.",
}


class RunError(UserError, RuntimeError):
    """A user mistake or an environment problem; printed as one line, no traceback."""


def default_feature_cache() -> Path:
    """Where extracted features are cached unless --cache-dir says otherwise: $AMBER2_CACHE/features."""
    return cache_root() / "features"


@dataclass
class RunConfig:
    """Where things are read and written, and which encoders embed them (not the protocol's numbers)."""

    out: Path
    audio_encoder: str = "whisper-base"
    text_encoder: str = "minilm-l6"
    cache_dir: Path = field(default_factory=default_feature_cache)
    feature_batch_size: int = 8
    final_seed: int | None = None
    push_to_hub: str | None = None
    private: bool = False
    token: str | None = None
    progress: bool = True
    report_dir: Path | None = None     # default: OUT
    model_dir: Path | None = None      # default: OUT/model
    work_dir: Path | None = None       # default: OUT/protocol

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.report_dir = Path(self.report_dir) if self.report_dir else self.out
        self.model_dir = Path(self.model_dir) if self.model_dir else self.out / "model"
        self.work_dir = Path(self.work_dir) if self.work_dir else self.out / "protocol"


@dataclass
class RunOutcome:
    """What a run produced (paths and the numbers the model card quotes)."""

    report_dir: Path
    model_dir: Path
    n_items: int
    skipped: dict[str, str]
    hyperparameters: dict[str, float]
    result: Any = None
    pushed_to: str | None = None
    data: Any = None                   # the protocol's input (ProtocolData), for follow-up runs on the same items
    metrics: dict = field(default_factory=dict)
    rank: int = 0                      # under a launcher: this process (only rank 0 writes the report and model)
    world: int = 1


# ----------------------------------------------------------------------------------------------------------
# The pipeline


def merge_folds(folds: Sequence[int | None], n_folds: int) -> np.ndarray:
    """Fold ids as 0..n_folds-1: a corpus with more folds than asked has them merged round-robin."""
    if any(f is None for f in folds):
        raise RunError("some items have no fold; the dataset loader should have assigned one")
    present = sorted(set(folds))
    if len(present) < n_folds:
        raise RunError(f"the corpus has {len(present)} fold(s) ({present}) but {n_folds} were asked for; "
                       f"pass --folds {len(present)}")
    if len(present) > n_folds:
        log.warning("merging the corpus's %d folds into %d (fold i -> i mod %d)", len(present), n_folds, n_folds)
    rank = {f: i % n_folds for i, f in enumerate(present)}
    return np.array([rank[f] for f in folds], dtype=np.int64)


def protocol_data(corpus, feats, n_folds: int, audio_encoder: str, text_encoder: str):
    """The protocol's input from a corpus and its extracted features (skipped items left out)."""
    from amber2.labels import votes_to_distribution
    from train.config import ProtocolData

    items = [corpus.items[i] for i in feats.kept]
    y = np.stack([votes_to_distribution(np.asarray(it.votes, dtype=np.float64)) for it in items])
    return ProtocolData(audio=feats.audio, text=feats.text, y=y.astype(np.float32),
                        folds=merge_folds([it.fold for it in items], n_folds),
                        groups=np.array([it.group for it in items]), classes=tuple(corpus.space.classes),
                        label_space=corpus.space.name, ids=np.array([it.id for it in items]),
                        audio_encoder=audio_encoder, text_encoder=text_encoder)


def load_encoders(audio_name: str, text_name: str):
    """The two encoders, by their amber2 names, loaded only when a vector is missing from the cache."""
    from amber2.encoders import encoder_dim, load_audio_encoder, load_text_encoder
    from train.features import LazyEncoder

    return (LazyEncoder(audio_name, lambda: load_audio_encoder(audio_name), encoder_dim(audio_name)),
            LazyEncoder(text_name, lambda: load_text_encoder(text_name), encoder_dim(text_name)))


def run_corpus(corpus, cfg: RunConfig, protocol, card: dict | None = None,
               encoders: tuple | None = None, group=None,
               prepare: Callable[[Any], Any] | None = None) -> RunOutcome:
    """Features -> protocol (resumable) -> report -> final model -> checkpoint (+ card) -> optional push.

    `prepare` maps the protocol's input before the protocol runs (the demo pairs voices and words with it:
    train.pairing). With a `group` of several processes (train.distributed.start), features and folds are
    shared out and only rank 0 goes on past the protocol; the others return an outcome without result."""
    from train import hub, protocol as proto, report
    from train.distributed import SINGLE
    from train.features import extract_features
    from train.results import PREDICTIONS_FILE, save_predictions

    group = group or SINGLE
    audio_enc, text_enc = encoders or load_encoders(cfg.audio_encoder, cfg.text_encoder)
    log.info("%s: %d items; extracting features (cache: %s)", corpus.name, len(corpus.items), cfg.cache_dir)
    feats = extract_features(corpus.items, audio_enc, text_enc, cfg.cache_dir, cfg.feature_batch_size,
                             progress=cfg.progress, group=group)
    if feats.skipped:
        log.warning("%d item(s) skipped for unreadable audio (listed above)", len(feats.skipped))
    data = protocol_data(corpus, feats, protocol.n_folds, audio_enc.name, text_enc.name)
    if prepare is not None:
        data = prepare(data)

    log.info("protocol: %d folds x %d seeds x %d grid points (+ CB-CE), %d epochs; state in %s",
             protocol.n_folds, len(protocol.seeds), len(protocol.grid), protocol.max_epochs, cfg.work_dir)
    result = proto.run_protocol(data, protocol, cfg.work_dir, log=log.info, group=group)
    if result is None:   # not rank 0: its folds are on disk, rank 0 pools them
        return RunOutcome(cfg.report_dir, cfg.model_dir, len(data.y), feats.skipped, {}, data=data,
                          rank=group.rank, world=group.world)
    report.write_report(result, cfg.report_dir, corpus.name)
    save_predictions(result, Path(cfg.report_dir) / PREDICTIONS_FILE, data.ids)

    lambda_mai, kappa = proto.final_hyperparameters(result)
    seed = protocol.seeds[0] if cfg.final_seed is None else cfg.final_seed
    log.info("final model: lambda_MAI=%g, kappa=%g, seed %d", lambda_mai, kappa, seed)
    model = proto.train_final(data, protocol, lambda_mai, kappa, seed)
    card_info = model_card_info(corpus, data, protocol, result, lambda_mai, kappa, seed, feats.skipped, card)
    hub.save_checkpoint(model, cfg.model_dir, card_info)

    outcome = RunOutcome(cfg.report_dir, cfg.model_dir, len(data.y), feats.skipped,
                         {"lambda_mai": lambda_mai, "kappa": kappa, "seed": seed}, result,
                         metrics=card_info["metrics"], data=data, rank=group.rank, world=group.world)
    if cfg.push_to_hub:
        outcome.pushed_to = hub.push_to_hub(cfg.model_dir, cfg.push_to_hub, token=cfg.token, private=cfg.private)
    return outcome


def headline_metrics(result, head: str = "AT") -> dict:
    """method -> metric -> {"mean", "std"} over seeds, for one head (the fused student by default)."""
    return {method: {name: {"mean": v["mean"], "std": v["std"]} for name, v in heads[head].items()}
            for method, heads in result.metrics.items()}


def model_card_info(corpus, data, protocol, result, lambda_mai: float, kappa: float, seed: int,
                    skipped: dict[str, str], extra: dict | None) -> dict:
    """What the model card states: data, label space, encoders, protocol, measured metrics, licences."""
    info = {
        "dataset": corpus.name,
        "n_items": int(len(data.y)),
        "n_skipped": len(skipped) + int(sum(corpus.skipped.values())),
        "label_space": corpus.space.name,
        "classes": list(corpus.space.classes),
        "audio_encoder": data.audio_encoder,
        "text_encoder": data.text_encoder,
        "protocol": dataclasses.asdict(protocol),
        "hyperparameters": {"lambda_mai": lambda_mai, "kappa": kappa, "seed": seed},
        "metrics": headline_metrics(result),
        "licences": [text for name, text in CORPUS_LICENCES.items() if name in corpus.name.lower()],
    }
    info.update(extra or {})
    return info


# ----------------------------------------------------------------------------------------------------------
# Command line


# What each ProtocolConfig field does, as its flag's help (the default is appended).
PROTOCOL_HELP = {
    "n_folds": "cross-validation folds; each is the test set once (a corpus with more folds of its own has them "
               "merged round-robin)",
    "lambda_mai_grid": "λ_MAI values tried on each fold's validation split: the weight of MAI, the student's "
                       "distance to the reliability-weighted expert heads (Eq. 4, 6)",
    "kappa_grid": "κ values tried on each fold's validation split: how sharply the expert weights favour the "
                  "expert closest to the raters (Eq. 5)",
    "lambda_rai": "λ_RAI, the weight of RAI, the student's distance to the rater distribution (Eq. 3, 6)",
    "student": "the head AmbER² teaches and the report compares: A (audio), T (text) or AT (fused)",
    "lambda_expert": "weight of each expert head's own distance to the rater distribution (0 with "
                     "--no-detach-experts --no-detach-weights is Eq. 6 exactly as written)",
    "detach_experts": "MAI teaches the student only (--no-detach-experts: it also pulls the experts toward "
                      "the student)",
    "detach_weights": "no gradient flows through the expert reliability weights of Eq. 5",
    "include_baseline": "also train the CB-CE baseline, one run per seed, for the report's comparison",
    "max_epochs": "epochs each run trains; the best epoch on the validation split is kept",
    "batch_size": "training items per optimizer step",
    "lr": "AdamW learning rate",
    "weight_decay": "AdamW weight decay",
    "hidden_dim": "hidden units of each head",
    "fusion_dim": "width of the gated fusion of the audio and text vectors",
    "dropout": "dropout rate in the heads during training",
    "head_layers": "hidden layers per head; 1 = the paper's two-layer MLP heads",
    "val_fraction": "share of the training folds held out to choose the epoch and the grid point",
    "val_by_group": "draw the validation split by speaker/dialogue group (--no-val-by-group: by item, at random)",
    "standardize": "z-score the features with the statistics of the items each run trains on",
    "split_seed": "seed of the validation splits",
    "selection_metric": "validation score of the student head that picks the epoch and the grid point: js, bc, "
                        "r2, acc, f1 or wf1",
    "n_bins": "ambiguity (rater-entropy) bins of the report's Fig. 2 analysis",
    "bin_mode": "ambiguity bins of equal entropy width (width) or equal item count (quantile)",
    "std_ddof": "delta degrees of freedom of the ± std over seeds (1: sample, 0: population)",
    "device": "torch device the runs train on: auto (a CUDA GPU when present), cpu, cuda, cuda:1, ...",
    "runs_per_batch": "most runs trained at once as one batched model; lower it when memory runs out",
    "num_threads": "CPU threads torch may use (default: as torch has it)",
    "eval_rows": "items per batched evaluation pass; lower it when memory runs out",
    "precision": "arithmetic of the first-layer products: auto (bf16 where the device has it natively), fp32 "
                 "or bf16",
    "ensemble": "how the runs train at once: auto (fast for the paper's heads, else generic), fast (written out "
                "by hand, head_layers 1 only) or generic (the model's own forward, vmapped)",
    "fused_reading": "what the final model's fused bar shows: arbitrated (the experts' mixture the fusion head "
                     "chooses by Eq. 5, amber2.arbitration) or student (the fusion head itself, as in the paper)",
}


# `--loss`: named sets of the loss fields; eq6 is the paper's Eq. 6 as written (experts learn only through MAI)
LOSS_PRESETS = {"default": {}, "eq6": {"lambda_expert": 0.0, "detach_experts": False, "detach_weights": False}}
# The loss fields of each named loss in full: the demo's ablation trains the one its run did not.
LOSS_FIELDS = {"default": {"lambda_expert": 1.0, "detach_experts": True, "detach_weights": True},
               "eq6": LOSS_PRESETS["eq6"]}


def loss_name(protocol) -> str | None:
    """Which of LOSS_FIELDS a ProtocolConfig trains with (None: another mix of the loss flags)."""
    return next((name for name, fields in LOSS_FIELDS.items()
                 if all(getattr(protocol, k) == v for k, v in fields.items())), None)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown(default: Any) -> str:
    return " ".join(map(str, default)) if isinstance(default, (tuple, list)) else str(default)


def add_protocol_flags(parser: argparse.ArgumentParser, defaults: dict[str, Any] | None = None) -> None:
    """One flag per ProtocolConfig field (typed from its default, described by PROTOCOL_HELP), plus the short
    forms --folds and --epochs and --seeds N."""
    from train.config import ProtocolConfig

    defaults = defaults or {}
    group = parser.add_argument_group("protocol (train.config.ProtocolConfig)")
    short = {"n_folds": "--folds", "max_epochs": "--epochs"}
    for f in dataclasses.fields(ProtocolConfig):
        if f.name == "seeds":
            continue
        # the declared default, not an instance's: __post_init__ resolves "auto" settings for this machine
        default = defaults.get(f.name, f.default)
        flags = [_flag(f.name)] + ([short[f.name]] if f.name in short else [])
        what = PROTOCOL_HELP.get(f.name, f.name.replace("_", " "))
        kw: dict[str, Any] = {"dest": f"protocol_{f.name}", "default": default, "metavar": f.name.upper(),
                              "help": what if default is None else f"{what} (default: {_shown(default)})"}
        if isinstance(default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kw.update(nargs="+", type=type(default[0]) if default else float)
        elif default is None:
            kw["type"] = int if "int" in str(f.type) else str
        else:
            kw["type"] = type(default)
        group.add_argument(*flags, **kw)
    group.add_argument("--loss", choices=sorted(LOSS_PRESETS), default="default",
                       help="loss preset: default (each expert also learns from the raters, stop-gradients as "
                            "documented) or eq6 (the paper's Eq. 6 exactly: --lambda-expert 0 "
                            "--no-detach-experts --no-detach-weights, overriding those flags)")
    seeds = defaults.get("seeds", ProtocolConfig.seeds)
    group.add_argument("--seeds", dest="protocol_seeds", nargs="+", type=int, default=list(seeds), metavar="N",
                       help="training seeds, each a full repeat of the protocol: one number N means seeds 0..N-1, "
                            f"several numbers those seeds (default: {_shown(seeds)})")


def protocol_from_args(args: argparse.Namespace):
    """ProtocolConfig from the parsed flags (device 'auto' -> cuda when present; --head-layers included)."""
    from train.config import ProtocolConfig

    values = {k[len("protocol_"):]: v for k, v in vars(args).items() if k.startswith("protocol_")}
    values.update(LOSS_PRESETS[getattr(args, "loss", "default")])
    seeds = values.pop("seeds")
    values["seeds"] = tuple(range(seeds[0])) if len(seeds) == 1 else tuple(seeds)
    if values.get("device") in (None, "auto"):
        import torch

        values["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    for k, v in values.items():
        if isinstance(v, list):
            values[k] = tuple(v)
    return ProtocolConfig(**values)


def add_output_flags(parser: argparse.ArgumentParser, cache_default: Path, audio_encoder: str = "whisper-base",
                     text_encoder: str = "minilm-l6",
                     cache_help: str = "folder where extracted features are cached and reused by later runs") -> None:
    """Flags shared by `run` and `demo`: encoders, cache, final model, hub, progress."""
    parser.add_argument("--audio-encoder", default=audio_encoder,
                        help="amber2 audio encoder that turns each clip into a vector: whisper-base (30 s padded "
                             "window, last layer, mean), whisper-base/L<blocks>-<mean|meanstd> (the clip's own "
                             "frames, e.g. whisper-base/L3-meanstd), whisper-tiny.en, wav2vec2:<hub id or dir> "
                             "(default %(default)s)")
    parser.add_argument("--text-encoder", default=text_encoder,
                        help="amber2 text encoder that turns each transcript into a vector: minilm-l6, mpnet-base, "
                             "bert:<id> (default %(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=cache_default, help=f"{cache_help} (default %(default)s)")
    parser.add_argument("--feature-batch-size", type=int, default=8,
                        help="clips per encoder call while extracting features (default %(default)s)")
    parser.add_argument("--final-seed", type=int,
                        help="seed of the final model trained on all items and shipped as the checkpoint "
                             "(default: the first protocol seed)")
    parser.add_argument("--push-to-hub", metavar="USER/REPO",
                        help="after training, upload the checkpoint folder to this Hugging Face model repo")
    parser.add_argument("--private", action="store_true", help="create that Hub repo as private")
    parser.add_argument("--token", help="Hugging Face token for the upload (default: $HF_TOKEN or the saved login)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars (e.g. when logging to a "
                                                                   "file)")


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


def configure_logging(prefix: str = "") -> None:
    logging.basicConfig(level=logging.INFO, format=prefix + "%(message)s", stream=sys.stderr)


def guarded(body: Callable[[], int], prefix: str = "") -> int:
    """Run a command body; a user-facing error becomes one `error:` line and exit status 2.

    `prefix` starts every line (under a launcher it names the process: "[rank 1 of 2] ")."""
    try:
        return body()
    except UserError as exc:     # amber2.errors: a refusal a person can act on; anything else is a bug
        print(f"{prefix}error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}interrupted: finished folds and cached features are kept; run the same command to resume",
              file=sys.stderr)
        return 130


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


def redact_command(command: str) -> str:
    """The command line as the model card shows it: a --token value is never written down."""
    parts = command.split()
    return " ".join("***" if i and parts[i - 1] == "--token" else
                    ("--token=***" if p.startswith("--token=") else p) for i, p in enumerate(parts))


def summary_text(outcome: RunOutcome) -> str:
    """What the command prints when it is done."""
    if outcome.rank:
        return (f"rank {outcome.rank} of {outcome.world}: features and folds done; rank 0 writes the report "
                f"and the checkpoint ({outcome.report_dir})")
    lines = [f"trained on {outcome.n_items} items ({len(outcome.skipped)} skipped for unreadable audio)",
             f"report:     {outcome.report_dir / 'report.md'}",
             f"checkpoint: {outcome.model_dir}  (python -m amber2 analyze FILE --model {outcome.model_dir})"]
    if outcome.pushed_to:
        lines.append(f"pushed:     {outcome.pushed_to}")
    if outcome.metrics:
        from train.hub import metric_table

        lines += ["", "fused head (AT), cross-validated test metrics, mean ± std over seeds:"]
        lines += metric_table(outcome.metrics)
    return "\n".join(lines)
