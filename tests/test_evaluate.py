"""train.evaluate, train.baselines, train.scoring: spectral tilt, UAR, AUC and the eGeMAPS anchor on synthetic data;
`python -m train evaluate` end to end on a tiny checkpoint and an EMOVO-format folder of espeak-ng clips (real
Whisper, MiniLM, opensmile); the text head on a 7-sentence TSV with its TF-IDF anchor trained on a tiny
EmotionLines folder (real MiniLM)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

from amber2.model import AmbER2Model
from train.__main__ import main
import train.evaluate as evaluate_module
from train.baselines import egemaps_anchor, spectral_tilt
from train.evaluate import anchor_corpora, evaluate_sentences, parse_anchors
from train.workflow import RunError
from train.scoring import angry_neutral_auc, uar

SR = 16000
CLASSES = ["neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"]


def tone(hz: float, seconds: float = 1.0) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * hz * np.arange(int(SR * seconds)) / SR)


def test_spectral_tilt_of_tones_and_noise():
    assert spectral_tilt(tone(300)) < 0.01
    assert spectral_tilt(tone(3000)) > 0.99
    noise = np.random.default_rng(0).normal(0, 0.1, SR)
    assert 0.85 < spectral_tilt(noise) < 0.92          # 7/8 of a flat 0-8 kHz spectrum lies above 1 kHz
    # only the louder half of the frames counts: a quiet 3 kHz tail does not move a loud 300 Hz clip
    assert spectral_tilt(np.concatenate([tone(300), 0.01 * tone(3000)])) < 0.01
    assert spectral_tilt(np.zeros(SR)) == 0.0 and 0.99 < spectral_tilt(tone(3000, 0.01)) <= 1.0


def test_uar_matches_sklearn():
    rng = np.random.default_rng(1)
    names = np.array(["neutral", "angry", "sad", "happy"])
    y_true, y_pred = names[rng.integers(0, 4, 200)], names[rng.integers(0, 4, 200)]
    score, per_class = uar(y_true, y_pred)
    assert score == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    labels = sorted(per_class)
    assert [per_class[c] for c in labels] == pytest.approx(recall_score(y_true, y_pred, labels=labels,
                                                                        average=None))
    assert uar(["a", "a", "b"], ["a", "b", "b"], ["b", "a"]) == (0.75, {"b": 1.0, "a": 0.5})
    with pytest.raises(ValueError, match="'c' has no item"):
        uar(["a"], ["a"], ["a", "c"])


def test_angry_neutral_auc_uses_only_those_two_classes():
    y = ["angry", "neutral", "sad", "angry", "neutral", "happy"]
    s = [0.9, 0.2, 5.0, 0.4, 0.6, -3.0]
    assert angry_neutral_auc(y, s) == pytest.approx(roc_auc_score([1, 0, 1, 0], [0.9, 0.2, 0.4, 0.6]))
    assert angry_neutral_auc(["angry", "neutral"], [1.0, 0.0]) == 1.0
    assert angry_neutral_auc(["angry", "sad"], [1.0, 0.0]) is None


def test_egemaps_anchor_gives_probabilities_in_label_space_order():
    rng = np.random.default_rng(2)
    centres = {0: 0.0, 3: 4.0, 2: -4.0}                  # neutral, angry, sad; no other class in training
    y = np.repeat(list(centres), 30)
    x = rng.normal(0, 1, (len(y), 5)) + np.array([centres[k] for k in y])[:, None]
    probs = egemaps_anchor(x * 1000, y, np.array([[4.0] * 5, [0.0] * 5]) * 1000, len(CLASSES))
    assert probs.shape == (2, 7) and np.allclose(probs.sum(axis=1), 1)
    assert probs.argmax(axis=1).tolist() == [3, 0] and probs[:, [1, 4, 5, 6]].sum() == 0
    with pytest.raises(RunError, match="at least two classes"):
        egemaps_anchor(x, np.zeros(len(y), dtype=int), x, 7)


def test_anchor_specs_and_the_evaluated_corpus_is_never_an_anchor(tmp_path):
    assert parse_anchors(None) is None and parse_anchors([]) == {}
    assert parse_anchors(["RAVDESS=/x", "nemo=~/n"]) == {"ravdess": Path("/x"), "nemo": Path("~/n").expanduser()}
    with pytest.raises(RunError, match="NAME=DIR"):
        parse_anchors(["goemotions=/x"])
    (tmp_path / "a").mkdir()
    assert anchor_corpora({"emovo": tmp_path / "a", "ravdess": tmp_path / "b"}, "emovo", tmp_path / "a") == \
        {"ravdess": tmp_path / "b"}


# ---------------------------------------------------------------- end to end


def emovo_folder(root: Path, speak, clips: list[tuple[str, str, str]]) -> Path:
    """EMOVO layout (speaker/EMO-SPEAKER-SENTENCE.flac) of espeak-ng clips."""
    for emo, speaker, text in clips:
        samples, rate = sf.read(speak(text, speed=170))
        (root / speaker).mkdir(parents=True, exist_ok=True)
        sf.write(root / speaker / f"{emo}-{speaker}-{text.split()[0].lower()}.flac", samples, rate)
    return root


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    model = AmbER2Model(512, 384, CLASSES, "demo7", hidden_dim=16, fusion_dim=8)
    model.save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_evaluate_cli_end_to_end(tmp_path, speak, checkpoint, capsys):
    words = ["Open the door now", "Where is the car", "Bring me the book", "Nobody came today"]
    emovo = emovo_folder(tmp_path / "emovo", speak, [(e, s, w) for s, e in (("f1", "rab"), ("m1", "neu"),
                                                                           ("f1", "tri"), ("m1", "gio"))
                                                     for w in words[:2]])
    anchor = emovo_folder(tmp_path / "anchor", speak, [(e, s, w) for s in ("f2", "m2")
                                                       for e, w in zip(("rab", "neu", "tri", "gio"), words)])
    out = tmp_path / "out"
    rc = main(["evaluate", "--model", str(checkpoint), "--dataset", "emovo", "--root", str(emovo), "--out",
               str(out), "--cache-dir", str(tmp_path / "cache"), "--anchor-train", f"emovo={anchor}",
               "--no-progress"])
    printed, err = capsys.readouterr()
    assert rc == 0, err
    result = json.loads((out / "evaluation.json").read_text())
    assert result["n_clips"] == 8 and result["dataset"] == "emovo" and result["label_space"] == "demo7"
    assert result["classes"] == ["neutral", "happy", "sad", "angry"] and result["chance"] == 0.25
    assert result["class_counts"] == {c: 2 for c in result["classes"]}
    for method in ("audio_head", "egemaps_lr"):
        scores = result[method]
        assert 0 <= scores["uar"] <= 1 and 0 <= scores["accuracy"] <= 1 and 0 <= scores["auc_angry_neutral"] <= 1
        assert set(scores["recall"]) == set(result["classes"])
    assert result["egemaps_lr"]["train"]["emovo"]["n_clips"] == 8
    assert 0 <= result["spectral_tilt"]["auc_angry_neutral"] <= 1
    confusion = result["audio_head"]["confusion"]
    assert confusion["columns"] == CLASSES and np.array(confusion["counts"]).sum(axis=1).tolist() == [2] * 4
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "evaluation.md").read_text()
    assert "| AUC angry vs neutral |" in md and "eGeMAPS+LR" in md and "recall angry (n=2)" in md
    assert "model audio head" in printed and "UAR (chance 0.250)" in printed
    # a second run reads every vector from the caches (eGeMAPS included)
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*.npz"))
    assert any("egemaps" in str(p) for p in (tmp_path / "cache").rglob("*.npz"))
    assert main(["evaluate", "--model", str(checkpoint), "--dataset", "emovo", "--root", str(emovo), "--out",
                 str(out), "--cache-dir", str(tmp_path / "cache"), "--anchor-train", "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*.npz")) == cached
    assert "skipped" in json.loads((out / "evaluation.json").read_text())["egemaps_lr"]


@pytest.mark.parametrize("args, message", [
    (["--dataset", "emovo", "--root", "{tmp}/nowhere"], "emovo root .*nowhere does not exist"),
    (["--dataset", "goemotions", "--root", "{tmp}"], "--dataset must be one of emovo, ravdess, nemo, csv"),
    (["--dataset", "emovo", "--root", "{tmp}", "--model", "{tmp}/no-model"], "cannot load the model: no checkpoint"),
    (["--dataset", "emovo", "--root", "{tmp}", "--anchor-train", "timit"], "--anchor-train takes NAME=DIR"),
    (["--dataset", "emovo"], "--root is required for --dataset emovo"),
])
def test_evaluate_cli_errors_are_one_line(tmp_path, checkpoint, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    model = [] if "--model" in args else ["--model", str(checkpoint)]
    assert main(["evaluate", *model, *args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert re.search(message, err[0])


# ---------------------------------------------------------------- the text head on sentences

SENTENCES = {"neutral": "The meeting is at noon in the office.", "happy": "I am so happy and glad today!",
             "sad": "I feel so sad and lonely tonight.", "angry": "I am furious, this makes me so angry!",
             "fear": "I am scared, so afraid of the dark.", "disgust": "That smell is gross and disgusting.",
             "surprise": "Wow, what a surprise, I never expected that!"}
# EmotionLines vote digits, in its order: neutral, joy, sadness, fear, anger, surprise, disgust
EMOTIONLINES_LINES = [("5000000", "The meeting is at noon."), ("4100000", "The office is on the second floor."),
                      ("0500000", "I am so happy!"), ("0410000", "So glad and happy for you."),
                      ("0050000", "I feel so sad."), ("0140000", "Sad and lonely again."),
                      ("0005000", "I am scared."), ("0004100", "So afraid and scared."),
                      ("0000500", "I am furious!"), ("0000410", "So angry and furious."),
                      ("0000050", "Wow, what a surprise!"), ("0000041", "Never expected that, wow."),
                      ("0000005", "That is gross."), ("0000014", "Gross and disgusting.")]


def sentences_tsv(path: Path, rows=None) -> Path:
    rows = SENTENCES.items() if rows is None else rows
    path.write_text("emotion\tsentence\n" + "".join(f"{e}\t{t}\n" for e, t in rows))
    return path


def emotionlines_shared(shared: Path) -> Path:
    """A shared folder holding a tiny EmotionLines (the same two dialogues in each split) and no GoEmotions."""
    folder = shared / "data" / "emotionlines"
    folder.mkdir(parents=True)
    dialogues = [[{"speaker": "A", "utterance": text, "emotion": "x", "annotation": votes}
                  for votes, text in EMOTIONLINES_LINES[i::2]] for i in (0, 1)]
    for split in ("train", "dev", "test"):
        (folder / f"friends_{split}.json").write_text(json.dumps(dialogues))
    return shared


class HashEncoder:
    """A stand-in for the text encoder: a fixed random 384-d vector per sentence."""

    def embed(self, texts):
        return np.stack([np.random.default_rng(sum(map(ord, t))).normal(size=384) for t in texts]).astype("float32")


def test_evaluate_sentences_cli_end_to_end(tmp_path, checkpoint, capsys, monkeypatch):
    monkeypatch.setattr(evaluate_module, "SHARED", emotionlines_shared(tmp_path / "shared"))
    out = tmp_path / "out"
    rc = main(["evaluate", "--model", str(checkpoint), "--dataset", "sentences", "--root",
               str(sentences_tsv(tmp_path / "s.tsv")), "--out", str(out), "--no-progress"])
    printed, err = capsys.readouterr()
    assert rc == 0, err
    result = json.loads((out / "evaluation.json").read_text())
    assert result["dataset"] == "sentences" and result["n_sentences"] == 7 and result["text_encoder"] == "minilm-l6"
    assert result["classes"] == CLASSES and result["class_counts"] == {c: 1 for c in CLASSES}
    for method in ("text_head", "tfidf_lr"):
        scores = result[method]
        assert 0 <= scores["accuracy"] <= 1 and 0 <= scores["uar"] <= 1 and set(scores["recall"]) == set(CLASSES)
        assert scores["accuracy"] == pytest.approx(np.mean(list(scores["recall"].values())))
    anchor = result["tfidf_lr"]
    assert anchor["train"]["emotionlines"]["n_texts"] == 3 * len(EMOTIONLINES_LINES)
    assert list(anchor["missing"]) == ["goemotions"]
    assert anchor["accuracy"] >= 5 / 7                 # the sentences share their emotion words with training
    assert np.array(result["text_head"]["confusion"]["counts"]).sum() == 7
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "evaluation.md").read_text()
    assert "| model text head | TF-IDF+LR |" in md and "| recall fear (n=1) |" in md
    assert "not found, left out: goemotions" in md
    assert "model text head" in printed and "UAR (chance 0.143)" in printed


def test_evaluate_sentences_reads_the_text_head_and_skips_a_missing_anchor(tmp_path, checkpoint):
    from amber2.model import load_model

    result = evaluate_sentences(checkpoint, sentences_tsv(tmp_path / "s.tsv"), tmp_path / "out",
                                shared=tmp_path / "no-shared", text_encoder=HashEncoder())
    assert "absent" in result["tfidf_lr"]["skipped"] and "accuracy" not in result["tfidf_lr"]
    assert set(result["text_head"]["recall"]) == set(CLASSES)
    model = load_model(checkpoint)
    with torch.no_grad():
        logits = model.heads["T"](torch.as_tensor(HashEncoder().embed(list(SENTENCES.values()))))
    expected = np.zeros((7, 7), dtype=int)
    expected[np.arange(7), logits.argmax(dim=1).numpy()] = 1
    assert result["text_head"]["confusion"]["counts"] == expected.tolist()
    assert "TF-IDF+LR not run" in (tmp_path / "out" / "evaluation.md").read_text()


@pytest.mark.parametrize("tsv, extra, message", [
    ("emotion\tsentence\nhappy\tGreat!\njoyful\tSo great!\n", [], r"line 3: unknown emotion 'joyful'; the "
     r"model's classes are neutral, happy"),
    (None, [], r"sentences file .*missing\.tsv does not exist"),
    ("label\ttext\nhappy\tGreat!\n", [], "first line must be the header 'emotion<TAB>sentence'"),
    ("emotion\tsentence\nhappy Great!\n", [], "line 2: expected 'emotion<TAB>sentence'"),
    ("emotion\tsentence\nhappy\tGreat!\n", ["--anchor-train"], "--anchor-train is for voice corpora"),
])
def test_evaluate_sentences_errors_are_one_line(tmp_path, checkpoint, capsys, tsv, extra, message):
    path = tmp_path / "missing.tsv"
    if tsv is not None:
        path = tmp_path / "s.tsv"
        path.write_text(tsv)
    assert main(["evaluate", "--model", str(checkpoint), "--dataset", "sentences", "--root", str(path),
                 "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert re.search(message, err[0])
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_evaluate_fused_cli_end_to_end(tmp_path, speak, checkpoint, capsys):
    """The fused check set from the command line: EMOVO clips as the app reads them (Whisper's words, typed
    words), flat voices with sentences, and the timeline of the clips joined; the clips' hearing is cached."""
    emovo = emovo_folder(tmp_path / "shared" / "emovo", speak,
                         [(e, s, w) for s, e in (("f1", "rab"), ("m1", "neu"), ("f1", "tri"), ("m1", "gio"))
                          for w in ("Open the door now", "Where is the car")])
    tsv = tmp_path / "sentences.tsv"
    tsv.write_text("emotion\tsentence\nneutral\tThe shop opens at nine.\nangry\tI am furious with you!\n"
                   "sad\tI miss her so much.\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["evaluate", "--model", str(checkpoint), "--dataset", "fused", "--root", str(emovo.parent), "--out",
            str(out), "--cache-dir", str(tmp_path / "cache"), "--sentences", str(tsv), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "evaluation.json").read_text())
    sources = result["sources"]
    assert list(sources) == ["emovo-whisper", "emovo-plain-words", "emovo-neutral-voice-emotional-words",
                             "flat-voice-words"]
    assert sources["emovo-whisper"]["n"] == 8 and sources["emovo-neutral-voice-emotional-words"]["n"] == 2
    assert sources["flat-voice-words"]["n"] == 9                       # 3 sentences x 3 voices
    for s in sources.values():
        assert all(0 <= s[k] <= 1 for k in ("uar_audio", "uar_text", "uar_fused", "invented"))
    timeline = result["timeline"]
    assert timeline["clips"] == 8 and timeline["speech_segments"] <= timeline["segments"]
    assert "| flat-voice-words | 9 |" in printed and "Timeline: 8 EMOVO clips" in printed
    assert "| emovo-whisper | 8 |" in (out / "evaluation.md").read_text()
    stores = list((tmp_path / "cache" / "fused-check").glob("*.npz"))
    assert len(stores) == 1                                            # what Whisper heard, kept for next time
