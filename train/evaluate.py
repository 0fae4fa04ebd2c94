"""`python -m train evaluate`: how a checkpoint's voice reading carries over to a labelled corpus it never saw.

    python -m train evaluate --model assets/amber2-demo --dataset emovo --root ../shared/data/emovo

The AUDIO head scores every clip with an empty transcript (the voice alone); each clip's class is the majority
label of its votes, and the numbers are taken over the classes the corpus has. Two anchors on the same clips
say what the number is worth:

* spectral tilt: the share of spectral energy above 1 kHz in the louder half of the frames, one acoustic
  number with no training, as an angry-vs-neutral AUC;
* eGeMAPS + logistic regression: the 88 eGeMAPSv02 functionals (opensmile), standardised, a class-balanced
  logistic regression trained on other voice corpora (`--anchor-train NAME=DIR ...`, default RAVDESS and
  nEMO from the shared folder; the evaluation corpus itself is never among them).

Output (OUT, default runs/evaluate-<dataset>, train.evaluation_report): evaluation.json (every number),
evaluation.md (the table) and confusion.png (the audio head's confusion matrix: rows true, columns predicted).
Whisper vectors share the trainer's feature cache (--cache-dir); eGeMAPS vectors are cached beside them, keyed
by the file's sha1. The anchors themselves are train.baselines; the scores, train.scoring.

The TEXT head, on plain written sentences:

    python -m train evaluate --model assets/amber2-demo --dataset sentences [--root assets/eval/plain-sentences.tsv]

--root is a TSV with the header `emotion<TAB>sentence` (default: the 105 plain, clearly emotional English
sentences of assets/eval, 15 per demo7 class); each emotion must be one of the model's classes. Each sentence
goes through the checkpoint's text encoder and the text head ("T"; the audio vector is zeros, which that head
never reads). The anchor on the same sentences: TF-IDF (word 1-2 grams, sublinear tf, min_df 2) + a
class-balanced logistic regression trained on the demo corpus's words, EmotionLines and GoEmotions under
../shared/data (each text's label: the argmax of its votes, ties to the first class); a corpus not found there
is left out, and the anchor is skipped with a note when neither is. Same three output files.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from amber2.files import ASSETS, ROOT, SHARED
from train.baselines import egemaps_anchor, egemaps_features, spectral_tilt, tfidf_anchor
from train.evaluation_report import text_report, write_outputs
from train.cli import configure_logging, guarded
from train.eval_sets import (load_checkpoint, load_sentences, load_voices, model_name, text_head_probs,
                             voice_features)
from train.workflow import RunError, default_feature_cache, load_encoders
from train.scoring import angry_neutral_auc, class_summary, classifier_scores, head_scores

log = logging.getLogger("train")

VOICE_DATASETS = ("emovo", "ravdess", "nemo", "csv")
DEFAULT_ANCHORS = {"ravdess": SHARED / "data" / "ravdess", "nemo": SHARED / "data" / "nemo"}
SENTENCES = "sentences"
FUSED = "fused"          # the fused-head check set (train.fused_check)
SENTENCES_TSV = ASSETS / "eval" / "plain-sentences.tsv"
TEXT_ANCHOR_CORPORA = ("emotionlines", "goemotions")


# ----------------------------------------------------------------------------------------------------------
# The audio head on a voice corpus


def _same_folder(a: Path, b: Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def anchor_corpora(anchors: dict[str, Path] | None, dataset: str, root: Path) -> dict[str, Path]:
    """The eGeMAPS training corpora: the given ones, or the defaults that exist; never the evaluated corpus."""
    chosen = dict(DEFAULT_ANCHORS) if anchors is None else dict(anchors)
    out = {}
    for name, folder in chosen.items():
        if anchors is None and not Path(folder).exists():
            log.warning("eGeMAPS anchor: default training corpus %s not found at %s; left out", name, folder)
        elif name == dataset and Path(folder).exists() and _same_folder(folder, root):
            log.warning("eGeMAPS anchor: not training on %s, the corpus being evaluated", name)
        else:
            out[name] = Path(folder)
    return out


def run_egemaps_anchor(eval_paths: list[Path], truth: np.ndarray, anchors: dict[str, Path], space: str,
                       classes: list[str], cache_dir: Path, progress: bool) -> dict:
    """Train the eGeMAPS + LR anchor on `anchors` and score it on the evaluation clips."""
    if not anchors:
        return {"skipped": "no training corpus (--anchor-train)"}
    xs, ys, train = [], [], {}
    for name, folder in anchors.items():
        corpus = load_voices(name, folder, space)
        log.info("eGeMAPS anchor: %s, %d clips from %s", name, len(corpus.items), folder)
        x, kept = egemaps_features([it.audio for it in corpus.items], cache_dir, progress)
        xs.append(x)
        ys.append(np.array([int(np.argmax(corpus.items[i].votes)) for i in kept]))
        train[name] = {"root": str(folder), "n_clips": len(kept)}
    eval_x, kept = egemaps_features(eval_paths, cache_dir, progress)
    probs = egemaps_anchor(np.concatenate(xs), np.concatenate(ys), eval_x, len(classes))
    return {**classifier_scores(probs, truth[kept], classes), "train": train}


def evaluate(model_ref: str | Path, dataset: str, root: Path, out: Path, cache_dir: Path | None = None,
             anchors: dict[str, Path] | None = None, progress: bool = True, batch_size: int = 8) -> dict:
    """Score a checkpoint's audio head and the two anchors on a voice corpus; write OUT's three files.

    cache_dir: the feature cache (default: the trainer's); anchors: eGeMAPS training corpora (name -> folder),
    None = DEFAULT_ANCHORS that exist, {} = no anchor. Returns what evaluation.json holds.
    """
    from amber2.audio import load_audio
    from tqdm.auto import tqdm

    cache_dir = Path(cache_dir) if cache_dir else default_feature_cache()
    dataset = dataset.lower().replace("_", "-")
    if dataset not in VOICE_DATASETS:
        raise RunError(f"evaluate scores voices: --dataset must be one of {', '.join(VOICE_DATASETS)} "
                       f"(or {SENTENCES} for the text head), not {dataset!r}")
    if not Path(root).exists():
        raise RunError(f"{dataset} root {root} does not exist")
    model = load_checkpoint(model_ref)
    classes = list(model.classes)
    corpus = load_voices(dataset, root, model.label_space)
    if list(corpus.space.classes) != classes:
        raise RunError(f"the model's classes {classes} are not those of its label space {model.label_space} "
                       f"{list(corpus.space.classes)}")
    log.info("%s: %d clips; audio head of %s (features cached in %s)", dataset, len(corpus.items), model_ref,
             cache_dir)
    clips, feats, truth = voice_features(corpus, load_encoders(model.audio_encoder, model.text_encoder), cache_dir,
                                         batch_size, progress)
    probs = model.predict(feats.audio, feats.text)["A"].numpy()
    summary = class_summary(truth, classes)
    present, names = summary["classes"], np.asarray(classes)[truth]

    log.info("anchors: spectral tilt, then eGeMAPS + logistic regression")
    tilt = np.array([spectral_tilt(load_audio(it.audio)) for it in
                     tqdm(clips, desc="spectral tilt", unit="clip", disable=not progress, dynamic_ncols=True)])
    egemaps = run_egemaps_anchor([it.audio for it in clips], truth, anchor_corpora(anchors, dataset, root),
                                 model.label_space, classes, cache_dir, progress)

    result = {
        "model": str(model_ref), "audio_encoder": model.audio_encoder, "label_space": model.label_space,
        "dataset": dataset, "root": str(root), "n_clips": len(clips),
        "n_skipped": len(feats.skipped) + int(sum(corpus.skipped.values())),
        **summary,
        "audio_head": head_scores(probs, truth, classes),
        "spectral_tilt": {"n_clips": len(clips), "auc_angry_neutral": angry_neutral_auc(names, tilt),
                          "mean_by_class": {c: float(tilt[names == c].mean()) for c in present}},
        "egemaps_lr": egemaps,
    }
    write_outputs(Path(out), result, "audio_head",
                  f"{model_name(model_ref)} audio head on {dataset} ({len(clips)} clips)")
    return result


# ----------------------------------------------------------------------------------------------------------
# The text head on plain sentences


def text_anchor_data(shared: Path, space: str, classes: list[str]) -> tuple[list[str], np.ndarray, dict, dict]:
    """The TF-IDF anchor's training texts and labels (argmax of the votes, ties to the first class) from the
    TEXT_ANCHOR_CORPORA under shared/data; also {name: {root, n_texts}} and {name: folder} of those absent."""
    from train.datasets import load_dataset

    texts, labels, train, missing = [], [], {}, {}
    for name in TEXT_ANCHOR_CORPORA:
        folder = Path(shared) / "data" / name
        if not folder.exists():
            log.warning("TF-IDF anchor: %s not found at %s; left out", name, folder)
            missing[name] = str(folder)
            continue
        corpus = load_dataset(name, folder, space=space)
        if list(corpus.space.classes) != classes:
            raise RunError(f"{name} loads into classes {list(corpus.space.classes)}, not the model's {classes}")
        items = [it for it in corpus.items if it.transcript.strip()]
        texts += [it.transcript for it in items]
        labels += [int(np.argmax(it.votes)) for it in items]
        train[name] = {"root": str(folder), "n_texts": len(items)}
        log.info("TF-IDF anchor: %s, %d texts from %s", name, len(items), folder)
    return texts, np.array(labels, dtype=np.int64), train, missing


def run_tfidf_anchor(sentences: list[str], truth: np.ndarray, shared: Path, space: str, classes: list[str]) -> dict:
    """Train the TF-IDF + LR anchor on the demo corpus's words under `shared` and score it on the sentences."""
    if not Path(shared).is_dir():
        return {"skipped": f"the shared folder {shared} is absent (no EmotionLines or GoEmotions to train on)"}
    texts, labels, train, missing = text_anchor_data(shared, space, classes)
    if not train:
        return {"skipped": f"neither {' nor '.join(TEXT_ANCHOR_CORPORA)} found under {Path(shared) / 'data'}",
                "missing": missing}
    probs = tfidf_anchor(texts, labels, sentences, len(classes))
    return {**classifier_scores(probs, truth, classes), "train": train, "missing": missing}


def evaluate_sentences(model_ref: str | Path, tsv: Path = SENTENCES_TSV, out: Path = Path("runs/evaluate-sentences"),
                       shared: Path = SHARED, text_encoder=None) -> dict:
    """Score a checkpoint's text head and the TF-IDF + LR anchor on a TSV of sentences; write OUT's three files.

    shared: the folder whose data/emotionlines and data/goemotions train the anchor (absent: anchor skipped);
    text_encoder: an object with .embed(texts) (default: the checkpoint's). Returns what evaluation.json holds.
    """
    model = load_checkpoint(model_ref)
    classes = list(model.classes)
    sentences, truth = load_sentences(tsv, classes)
    log.info("%d sentences from %s; text head of %s (%s)", len(sentences), tsv, model_ref, model.text_encoder)
    probs = text_head_probs(model, sentences, text_encoder)
    log.info("anchor: TF-IDF + logistic regression on the words under %s", shared)
    result = {
        "model": str(model_ref), "text_encoder": model.text_encoder, "label_space": model.label_space,
        "dataset": SENTENCES, "root": str(tsv), "n_sentences": len(sentences),
        **class_summary(truth, classes),
        "text_head": head_scores(probs, truth, classes),
        "tfidf_lr": run_tfidf_anchor(sentences, truth, shared, model.label_space, classes),
    }
    write_outputs(Path(out), result, "text_head",
                  f"{model_name(model_ref)} text head on {Path(tsv).name} ({len(sentences)} sentences)",
                  xlabel="predicted (text head)", ylabel="true (TSV label)")
    return result



# ----------------------------------------------------------------------------------------------------------
# Command line


def parse_anchors(specs: list[str] | None) -> dict[str, Path] | None:
    """['ravdess=/data/ravdess', ...] -> {name: folder}; None stays None (the defaults)."""
    if specs is None:
        return None
    anchors = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        name = name.strip().lower().replace("_", "-")
        if not sep or not folder or name not in VOICE_DATASETS:
            raise RunError(f"--anchor-train takes NAME=DIR with NAME one of {', '.join(VOICE_DATASETS)}, "
                           f"got {spec!r}")
        anchors[name] = Path(folder).expanduser()
    return anchors


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train evaluate", description=(
        "Score a checkpoint's audio head on a labelled voice corpus it was not trained on, next to two "
        "acoustic anchors (spectral tilt, eGeMAPS + logistic regression); or, with --dataset sentences, its text "
        "head on a TSV of sentences, next to a TF-IDF + logistic regression anchor."))
    p.add_argument("--model", required=True,
                   help="the checkpoint to score: a folder written by the trainer or a Hugging Face repo id")
    p.add_argument("--dataset", required=True,
                   help=f"what to score it on: a voice corpus in one of the formats {', '.join(VOICE_DATASETS)} "
                        f"(the audio head, empty transcripts), {SENTENCES} (the text head on a TSV), or {FUSED} "
                        "(the three heads as the app reads clips: EMOVO with Whisper's or typed words, flat "
                        "voices with emotional words; train/fused_check.py)")
    p.add_argument("--root", type=Path,
                   help="where that data is: the corpus folder (csv: the CSV file; sentences: the TSV, default "
                        f"{SENTENCES_TSV.relative_to(ROOT)}; fused: the shared data folder, default "
                        f"{SHARED / 'data'})")
    p.add_argument("--out", type=Path, help="folder that receives evaluation.json, evaluation.md and confusion.png "
                                            "(default runs/evaluate-<dataset>)")
    p.add_argument("--cache-dir", type=Path, default=default_feature_cache(),
                   help="folder where Whisper and eGeMAPS vectors are cached and reused (default %(default)s)")
    p.add_argument("--anchor-train", nargs="*", metavar="NAME=DIR",
                   help="voice corpora the eGeMAPS anchor is trained on, as format=folder (default: ravdess and "
                        f"nemo under {SHARED / 'data'}); the flag alone skips that anchor")
    p.add_argument("--feature-batch-size", type=int, default=8,
                   help="clips per encoder call while extracting features (default %(default)s)")
    p.add_argument("--per-class", type=int,
                   help=f"{FUSED}: at most this many EMOVO clips per emotion (default: all 588)")
    p.add_argument("--sentences", type=Path, default=SENTENCES_TSV,
                   help=f"{FUSED}: the TSV of typed and spoken sentences (default {SENTENCES_TSV.relative_to(ROOT)})")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars (e.g. when logging to a file)")
    return p


def run_command(args: argparse.Namespace, out: Path) -> dict:
    """The evaluation the arguments ask for: the text head on sentences, the three heads on the fused check
    set, or the audio head on a voice corpus."""
    if args.dataset.lower() == FUSED:
        from train.fused_check import evaluate_fused

        return evaluate_fused(args.model, args.root or SHARED / "data", args.sentences, out, args.cache_dir,
                              progress=not args.no_progress, per_class=args.per_class)
    if args.dataset.lower() == SENTENCES:
        if args.anchor_train is not None:
            raise RunError(f"--anchor-train is for voice corpora; the {SENTENCES} anchor trains on "
                           f"{' and '.join(TEXT_ANCHOR_CORPORA)} under {SHARED / 'data'}")
        return evaluate_sentences(args.model, args.root or SENTENCES_TSV, out, shared=SHARED)
    if args.root is None:
        raise RunError(f"--root is required for --dataset {args.dataset}")
    return evaluate(args.model, args.dataset, args.root, out, args.cache_dir, parse_anchors(args.anchor_train),
                    progress=not args.no_progress, batch_size=args.feature_batch_size)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m train evaluate`."""
    args = build_parser().parse_args(argv)
    configure_logging()

    def body() -> int:
        out = args.out or Path("runs") / f"evaluate-{args.dataset.lower()}"
        result = run_command(args, out)
        if args.dataset.lower() == FUSED:
            from train.fused_check import fused_table, timeline_lines

            print("\n".join([*fused_table(result["sources"]), "", *timeline_lines(result)]))
            print(f"\nwrote {out / 'evaluation.json'}, {out / 'evaluation.md'}")
            return 0
        print(text_report(result))
        print(f"\nwrote {out / 'evaluation.json'}, {out / 'evaluation.md'}, {out / 'confusion.png'}")
        return 0

    return guarded(body)
