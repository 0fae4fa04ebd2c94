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

Output (OUT, default runs/evaluate-<dataset>): evaluation.json (every number), evaluation.md (the table) and
confusion.png (the audio head's confusion matrix: rows true, columns predicted). Whisper vectors share the
trainer's feature cache (--cache-dir); eGeMAPS vectors are cached beside them, keyed by the file's sha1.

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
import dataclasses
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from amber2.examples import SHARED

from train.run import DEFAULT_CACHE, RunError, configure_logging, guarded, load_encoders

log = logging.getLogger("train")

ROOT = Path(__file__).resolve().parents[1]
VOICE_DATASETS = ("emovo", "ravdess", "nemo", "csv")
DEFAULT_ANCHORS = {"ravdess": SHARED / "data" / "ravdess", "nemo": SHARED / "data" / "nemo"}
EGEMAPS_ENCODER = "opensmile-egemaps-v02"
EGEMAPS_DIM = 88
TILT_CUTOFF_HZ = 1000.0
METHODS = {"audio_head": "model audio head", "spectral_tilt": "spectral tilt", "egemaps_lr": "eGeMAPS+LR"}
SENTENCES = "sentences"
SENTENCES_TSV = ROOT / "assets" / "eval" / "plain-sentences.tsv"
TEXT_ANCHOR_CORPORA = ("emotionlines", "goemotions")
TEXT_METHODS = {"text_head": "model text head", "tfidf_lr": "TF-IDF+LR"}


# ----------------------------------------------------------------------------------------------------------
# The measures


def spectral_tilt(samples: np.ndarray, sr: int = 16000) -> float:
    """Share of spectral power above 1 kHz over the frames at least as energetic as the median frame.

    25 ms Hann-windowed frames every 10 ms; frame loudness = frame energy. A silent clip gives 0.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    size, hop = round(0.025 * sr), round(0.010 * sr)
    x = np.pad(x, (0, max(0, size - len(x))))
    frames = np.lib.stride_tricks.sliding_window_view(x, size)[::hop] * np.hanning(size)
    energy = np.sum(frames ** 2, axis=1)
    power = np.abs(np.fft.rfft(frames[energy >= np.median(energy)], axis=1)) ** 2
    total = power.sum()
    high = power[:, np.fft.rfftfreq(size, 1.0 / sr) > TILT_CUTOFF_HZ].sum()
    return float(high / total) if total > 0 else 0.0


def uar(y_true: Sequence, y_pred: Sequence, classes: Sequence | None = None) -> tuple[float, dict[str, float]]:
    """Unweighted average recall over `classes` (default: those in y_true) and each class's recall."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = list(classes) if classes is not None else sorted(set(y_true.tolist()))
    recall = {}
    for c in classes:
        mask = y_true == c
        if not mask.any():
            raise ValueError(f"class {c!r} has no item in y_true: its recall is undefined")
        recall[str(c)] = float(np.mean(y_pred[mask] == c))
    return float(np.mean(list(recall.values()))), recall


def angry_neutral_auc(y_true: Sequence[str], scores: Sequence[float]) -> float | None:
    """ROC AUC of `scores` (higher = angrier) over the clips labelled angry or neutral; None without both."""
    from sklearn.metrics import roc_auc_score

    y, s = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    mask = (y == "angry") | (y == "neutral")
    positive = y[mask] == "angry"
    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, s[mask]))


def egemaps_features(paths: Sequence[Path], cache_dir: Path, progress: bool = True,
                     batch_size: int = 64) -> tuple[np.ndarray, list[int]]:
    """(N, 88) eGeMAPSv02 functionals of the readable files and their indices in `paths`.

    Vectors are cached by the file's sha1 (kind "egemaps"), one shard per finished batch, so a stopped
    extraction resumes; unreadable files are logged and left out.
    """
    from tqdm.auto import tqdm

    from amber2.audio import SAMPLE_RATE, AudioError, load_audio
    from train.features import ShardCache, sha1_file

    cache = ShardCache(Path(cache_dir), "egemaps", EGEMAPS_ENCODER, EGEMAPS_DIM)
    keys: dict[int, str] = {}
    for i, path in enumerate(paths):
        try:
            keys[i] = sha1_file(Path(path))
        except OSError as exc:
            log.warning("eGeMAPS: cannot read %s: %s", path, exc.strerror or exc)
    todo = {k: Path(paths[i]) for i, k in keys.items() if k not in cache.vectors}
    smile = None
    done_keys, done = [], []
    for key, path in tqdm(todo.items(), desc="eGeMAPS functionals", unit="clip", disable=not progress,
                          dynamic_ncols=True):
        try:
            samples = load_audio(path)
        except (AudioError, OSError) as exc:
            log.warning("eGeMAPS: skipped %s: %s", path, exc)
            continue
        if smile is None:
            import opensmile

            smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                    feature_level=opensmile.FeatureLevel.Functionals)
        done_keys.append(key)
        done.append(smile.process_signal(samples, SAMPLE_RATE).to_numpy(dtype=np.float32).ravel())
        if len(done) >= batch_size:
            cache.put(done_keys, np.stack(done))
            done_keys, done = [], []
    if done:
        cache.put(done_keys, np.stack(done))
    cache.compact()
    kept = [i for i in range(len(paths)) if keys.get(i) in cache.vectors]
    x = np.stack([cache.vectors[keys[i]] for i in kept]) if kept else np.zeros((0, EGEMAPS_DIM), np.float32)
    return x, kept


def balanced_lr_probs(features, train_x, train_y: np.ndarray, eval_x, n_classes: int, what: str) -> np.ndarray:
    """Fit `features` (a sklearn transformer) + LogisticRegression(max_iter=2000, class_weight="balanced") on
    (train_x, class indices train_y); (N, n_classes) probabilities for eval_x (0 for classes absent from
    training). `what` names the training items in the error."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if len(set(np.asarray(train_y).tolist())) < 2:
        raise RunError(f"the {what} anchor needs training items of at least two classes")
    clf = make_pipeline(features, LogisticRegression(max_iter=2000, class_weight="balanced"))
    clf.fit(train_x, train_y)
    probs = np.zeros((len(eval_x), n_classes))
    probs[:, clf.classes_] = clf.predict_proba(eval_x)
    return probs


def egemaps_anchor(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, n_classes: int) -> np.ndarray:
    """Standardised eGeMAPS functionals + balanced logistic regression (`balanced_lr_probs`)."""
    from sklearn.preprocessing import StandardScaler

    return balanced_lr_probs(StandardScaler(), np.nan_to_num(train_x), train_y, np.nan_to_num(eval_x), n_classes,
                             "eGeMAPS")


def tfidf_anchor(train_texts: Sequence[str], train_y: np.ndarray, eval_texts: Sequence[str],
                 n_classes: int) -> np.ndarray:
    """TF-IDF (word 1-2 grams, sublinear tf, min_df=2) + balanced logistic regression (`balanced_lr_probs`)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return balanced_lr_probs(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2), list(train_texts),
                             train_y, list(eval_texts), n_classes, "TF-IDF")


def classifier_scores(probs: np.ndarray, truth: np.ndarray, classes: Sequence[str]) -> dict:
    """UAR, accuracy, per-class recall (over the classes in `truth`) and angry-vs-neutral AUC (p(angry))."""
    names = np.asarray(classes)
    true_names, pred_names = names[truth], names[np.argmax(probs, axis=1)]
    present = [c for c in classes if c in set(true_names.tolist())]
    score, recall = uar(true_names, pred_names, present)
    auc = angry_neutral_auc(true_names, probs[:, list(classes).index("angry")]) if "angry" in classes else None
    return {"n_clips": int(len(truth)), "uar": score, "accuracy": float(np.mean(true_names == pred_names)),
            "recall": recall, "auc_angry_neutral": auc}


def confusion(truth: np.ndarray, pred: np.ndarray, rows: Sequence[int], n_classes: int) -> np.ndarray:
    """Counts: one row per true class in `rows`, one column per class of the label space."""
    counts = np.zeros((len(rows), n_classes), dtype=np.int64)
    row_of = {c: r for r, c in enumerate(rows)}
    for t, p in zip(truth, pred):
        counts[row_of[int(t)], int(p)] += 1
    return counts


def plot_confusion(counts: np.ndarray, rows: Sequence[str], columns: Sequence[str], title: str, path: Path,
                   xlabel: str = "predicted (audio head, empty transcript)",
                   ylabel: str = "true (majority label)") -> Path:
    """Confusion-matrix PNG: counts written in the cells, colour = share of the row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(2.5 + 0.9 * len(columns), 2.0 + 0.7 * len(rows)), constrained_layout=True)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for r in range(len(rows)):
        for c in range(len(columns)):
            ax.text(c, r, str(counts[r, c]), ha="center", va="center", fontsize=10,
                    color="white" if share[r, c] > 0.5 else "black")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    fig.colorbar(image, ax=ax, label="share of the true class")
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.2)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------------------
# The evaluation


def _same_folder(a: Path, b: Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def load_voices(dataset: str, root: Path, space: str):
    """A voice corpus in the model's label space, with its clips (items without audio left out).

    Folds are not used here: two are asked for, so that a corpus of only two speakers loads.
    """
    from train.datasets import load_dataset

    corpus = load_dataset(dataset, root, space=space, n_folds=2)
    corpus.items = [it for it in corpus.items if it.audio is not None]
    if not corpus.items:
        raise RunError(f"{dataset} at {root} has no clip with audio")
    return corpus


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


def evaluate(model_ref: str | Path, dataset: str, root: Path, out: Path, cache_dir: Path = DEFAULT_CACHE,
             anchors: dict[str, Path] | None = None, progress: bool = True, batch_size: int = 8) -> dict:
    """Score a checkpoint's audio head and the two anchors on a voice corpus; write OUT's three files.

    anchors: eGeMAPS training corpora (name -> folder); None = DEFAULT_ANCHORS that exist, {} = no anchor.
    Returns what evaluation.json holds.
    """
    from amber2.audio import load_audio
    from tqdm.auto import tqdm

    from train.features import extract_features

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
    items = [dataclasses.replace(it, transcript="") for it in corpus.items]   # the voice alone
    log.info("%s: %d clips; audio head of %s (features cached in %s)", dataset, len(items), model_ref, cache_dir)
    feats = extract_features(items, *load_encoders(model.audio_encoder, model.text_encoder), cache_dir,
                             batch_size, progress=progress)
    clips = [items[i] for i in feats.kept]
    truth = np.array([int(np.argmax(it.votes)) for it in clips])
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
                  f"{_model_name(model_ref)} audio head on {dataset} ({len(clips)} clips)")
    return result


# ----------------------------------------------------------------------------------------------------------
# The text head on plain sentences


def load_sentences(path: Path, classes: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The sentences of a TSV with the header `emotion<TAB>sentence`, and their indices in `classes`."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"sentences file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"cannot read {path} as UTF-8 text: {exc}") from None
    if not lines or [h.strip().lower() for h in lines[0].split("\t")] != ["emotion", "sentence"]:
        raise RunError(f"{path}: the first line must be the header 'emotion<TAB>sentence'")
    index = {c.lower(): k for k, c in enumerate(classes)}
    texts, truth = [], []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        emotion, sep, text = line.partition("\t")
        emotion, text = emotion.strip(), text.strip()
        if not sep or not text or "\t" in text:
            raise RunError(f"{path} line {n}: expected 'emotion<TAB>sentence', got {line[:60]!r}")
        if emotion.lower() not in index:
            raise RunError(f"{path} line {n}: unknown emotion {emotion!r}; the model's classes are "
                           f"{', '.join(classes)}")
        texts.append(text)
        truth.append(index[emotion.lower()])
    if not texts:
        raise RunError(f"{path} has no sentence")
    return texts, np.array(truth)


def text_head_probs(model, sentences: Sequence[str], encoder=None) -> np.ndarray:
    """(N, C) probabilities of the model's text head ("T"), the sentences embedded by `encoder` (default: the
    checkpoint's own text encoder). The audio vector is zeros: the text head never reads it."""
    import torch

    from amber2.encoders import load_text_encoder

    encoder = encoder or load_text_encoder(model.text_encoder)
    text = torch.as_tensor(encoder.embed(list(sentences)), dtype=torch.float32)
    return model.predict(torch.zeros(len(text), model.audio_dim), text)["T"].numpy()


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
                  f"{_model_name(model_ref)} text head on {Path(tsv).name} ({len(sentences)} sentences)",
                  xlabel="predicted (text head)", ylabel="true (TSV label)")
    return result


# ----------------------------------------------------------------------------------------------------------
# Shared by both


def load_checkpoint(model_ref: str | Path):
    """The checkpoint, or a one-line RunError."""
    from amber2.model import load_model

    try:
        return load_model(model_ref)
    except ValueError as exc:
        raise RunError(f"cannot load the model: {exc}") from None


def _model_name(model_ref: str | Path) -> str:
    return Path(str(model_ref).rstrip("/")).name or str(model_ref)


def class_summary(truth: np.ndarray, classes: Sequence[str]) -> dict:
    """The classes present in `truth` (label-space order), their counts, and chance UAR."""
    present = [classes[k] for k in sorted(set(truth.tolist()))]
    names = np.asarray(classes)[truth]
    return {"classes": present, "class_counts": {c: int(np.sum(names == c)) for c in present},
            "chance": 1.0 / len(present)}


def head_scores(probs: np.ndarray, truth: np.ndarray, classes: Sequence[str]) -> dict:
    """`classifier_scores` + the confusion counts (rows: the true classes present; columns: every class)."""
    rows = sorted(set(truth.tolist()))
    scores = classifier_scores(probs, truth, classes)
    counts = confusion(truth, np.argmax(probs, axis=1), rows, len(classes))
    scores["confusion"] = {"rows": [classes[k] for k in rows], "columns": list(classes), "counts": counts.tolist()}
    return scores


def write_outputs(out: Path, result: dict, head: str, title: str, **labels: str) -> None:
    """OUT/confusion.png (of result[head]), OUT/evaluation.json and OUT/evaluation.md."""
    out.mkdir(parents=True, exist_ok=True)
    matrix = result[head]["confusion"]
    plot_confusion(np.array(matrix["counts"]), matrix["rows"], matrix["columns"], title, out / "confusion.png",
                   **labels)
    (out / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "evaluation.md").write_text(markdown_report(result))


# ----------------------------------------------------------------------------------------------------------
# Tables


def _is_text(result: dict) -> bool:
    return "text_head" in result


def _cell(result: dict, method: str, *keys: str) -> str:
    value = result[method]
    for k in keys:
        value = value.get(k) if isinstance(value, dict) else None
    return "-" if value is None else f"{value:.3f}"


def table_rows(result: dict) -> list[list[str]]:
    """Header + rows for each method ('-' where it does not apply): voices UAR, accuracy, angry-vs-neutral AUC;
    sentences accuracy, UAR; then each class's recall."""
    methods = TEXT_METHODS if _is_text(result) else METHODS
    uar_row = [f"UAR (chance {result['chance']:.3f})", *(_cell(result, m, "uar") for m in methods)]
    accuracy_row = ["accuracy", *(_cell(result, m, "accuracy") for m in methods)]
    if _is_text(result):
        rows = [["", *methods.values()], accuracy_row, uar_row]
    else:
        rows = [["", *methods.values()], uar_row, accuracy_row,
                ["AUC angry vs neutral", *(_cell(result, m, "auc_angry_neutral") for m in methods)]]
    rows += [[f"recall {c} (n={n})", *(_cell(result, m, "recall", c) for m in methods)]
             for c, n in result["class_counts"].items()]
    return rows


def _anchor_note(result: dict) -> str:
    name, anchor, unit = (("TF-IDF+LR", result["tfidf_lr"], "texts") if _is_text(result)
                          else ("eGeMAPS+LR", result["egemaps_lr"], "clips"))
    if "skipped" in anchor:
        return f"{name} not run: {anchor['skipped']}"
    note = f"{name} trained on " + ", ".join(f"{k} ({v[f'n_{unit}']} {unit})" for k, v in anchor["train"].items())
    if anchor.get("missing"):
        note += "; not found, left out: " + ", ".join(f"{k} ({v})" for k, v in anchor["missing"].items())
    return note


def _headline(result: dict) -> str:
    if _is_text(result):
        return (f"{result['model']}: text head on {result['root']} ({result['n_sentences']} sentences, "
                f"{len(result['classes'])} classes)")
    return (f"{result['model']}: audio head (empty transcript) on {result['dataset']} ({result['n_clips']} clips, "
            f"{len(result['classes'])} classes)")


def text_report(result: dict) -> str:
    """The table as printed by the command."""
    rows = table_rows(result)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [_headline(result), ""]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
              for r in rows]
    return "\n".join(lines + ["", _anchor_note(result)])


def _markdown_intro(result: dict) -> list[str]:
    if _is_text(result):
        return [f"# {result['model']}: text head on {Path(result['root']).name}", "",
                f"{result['n_sentences']} sentences from `{result['root']}`, {len(result['classes'])} classes; the "
                f"text head reads each sentence's {result['text_encoder']} vector (the audio vector is zeros, "
                f"which that head never reads). A class's row is its recall, the share of its sentences labelled "
                f"right. {_anchor_note(result)}."]
    return [f"# {result['model']}: audio head on {result['dataset']}", "",
            f"{result['n_clips']} clips from `{result['root']}`, {len(result['classes'])} classes; the audio "
            f"head reads each clip with an empty transcript (the voice alone). Spectral tilt is a single "
            f"untrained score, so it has an AUC only. {_anchor_note(result)}."]


def markdown_report(result: dict) -> str:
    """evaluation.md: the same table in markdown."""
    rows = table_rows(result)
    lines = [*_markdown_intro(result), "",
             "| " + " | ".join(rows[0]) + " |", "|---|" + "---:|" * (len(rows[0]) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines + ["", "![confusion matrix](confusion.png)", ""])


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
    p.add_argument("--model", required=True, help="checkpoint folder or Hugging Face repo id")
    p.add_argument("--dataset", required=True,
                   help=f"voice corpus format ({', '.join(VOICE_DATASETS)}) or {SENTENCES} (the text head)")
    p.add_argument("--root", type=Path, help="corpus folder (csv: the CSV file; sentences: the TSV, default "
                                             f"{SENTENCES_TSV.relative_to(ROOT)})")
    p.add_argument("--out", type=Path, help="output folder (default runs/evaluate-<dataset>)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"feature cache (default {DEFAULT_CACHE})")
    p.add_argument("--anchor-train", nargs="*", metavar="NAME=DIR",
                   help="voice corpora the eGeMAPS anchor is trained on (default: ravdess and nemo under "
                        f"{SHARED / 'data'}); the flag alone skips that anchor")
    p.add_argument("--feature-batch-size", type=int, default=8, help="clips per encoder call")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run_command(args: argparse.Namespace, out: Path) -> dict:
    """The evaluation the arguments ask for: the text head on sentences, or the audio head on a voice corpus."""
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
        print(text_report(result))
        print(f"\nwrote {out / 'evaluation.json'}, {out / 'evaluation.md'}, {out / 'confusion.png'}")
        return 0

    return guarded(body)
