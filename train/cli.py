"""What the trainer's commands share: one flag per `ProtocolConfig` field, the loss presets, the output
flags, logging, and `guarded` (a `UserError` becomes one line and exit status 2).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from amber2.errors import UserError, one_line
from amber2.model import DEFAULT_AUDIO_ENCODER, DEFAULT_TEXT_ENCODER

log = logging.getLogger("train")


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


def add_output_flags(parser: argparse.ArgumentParser, cache_default: Path, audio_encoder: str = DEFAULT_AUDIO_ENCODER,
                     text_encoder: str = DEFAULT_TEXT_ENCODER,
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


def redact_command(command: str) -> str:
    """The command line as the model card shows it: a --token value is never written down."""
    parts = command.split()
    return " ".join("***" if i and parts[i - 1] == "--token" else
                    ("--token=***" if p.startswith("--token=") else p) for i, p in enumerate(parts))
