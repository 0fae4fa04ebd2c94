"""One corpus through the whole trainer: cached features -> protocol (resumable) -> report -> final model ->
checkpoint with its card -> optional push (`run_corpus`). `python -m train run` and `python -m train demo` both
call it; the commands themselves live in train.run and train.demo.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from amber2.errors import UserError
from amber2.files import cache_root
from amber2.model import DEFAULT_AUDIO_ENCODER, DEFAULT_TEXT_ENCODER
from train.datasets import LICENCES

log = logging.getLogger("train")


class RunError(UserError, RuntimeError):
    """A user mistake or an environment problem; printed as one line, no traceback."""


def default_feature_cache() -> Path:
    """Where extracted features are cached unless --cache-dir says otherwise: $AMBER2_CACHE/features."""
    return cache_root() / "features"


@dataclass
class RunConfig:
    """Where things are read and written, and which encoders embed them (not the protocol's numbers)."""

    out: Path
    audio_encoder: str = DEFAULT_AUDIO_ENCODER
    text_encoder: str = DEFAULT_TEXT_ENCODER
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
        "licences": [text for name, text in LICENCES.items() if name in corpus.name.lower()],
    }
    info.update(extra or {})
    return info


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
