"""The inference pipeline: speech in, three distributions out, with the real Whisper and MiniLM weights.

Until the trained demo checkpoint exists, the heads are a randomly initialised AmbER2Model saved to a temp
folder: the distributions are then meaningless, but everything a user relies on besides the numbers'
meaning (transcripts, shapes, normalisation, caching, errors) is real.
"""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from amber2 import pipeline
from amber2.audio import AudioError, load_audio
from amber2.labels import get_space
from amber2.model import AmbER2Model
from amber2.pipeline import Analysis, Analyzer

DEMO7 = list(get_space("demo7").classes)
pytestmark = pytest.mark.slow  # real Whisper base + MiniLM weights


def save_random_model(directory, **overrides):
    torch.manual_seed(0)
    kwargs = dict(audio_dim=512, text_dim=384, classes=DEMO7, label_space="demo7",
                  audio_encoder="whisper-base", text_encoder="minilm-l6")
    AmbER2Model(**{**kwargs, **overrides}).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("amber2-random"))


@pytest.fixture(scope="session")
def analyzer(model_dir) -> Analyzer:
    return Analyzer(model=model_dir)


class EncoderSpy:
    """Counts forward passes of the Whisper encoder (all paths to it go through `model.encoder`)."""

    def __init__(self, backbone):
        self.calls = 0
        self._handle = backbone.model.encoder.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.calls += 1

    def close(self):
        self._handle.remove()


@pytest.fixture
def encoder_spy(analyzer):
    spy = EncoderSpy(analyzer.asr)
    yield spy
    spy.close()


def js_distance(p, q):
    """Independent reference: sqrt of the JS divergence, natural log."""
    m = (p + q) / 2
    kl = lambda a, b: float(np.sum(np.where(a > 0, a * np.log(a / b), 0.0)))
    return np.sqrt(0.5 * kl(p, m) + 0.5 * kl(q, m))


def assert_valid(a: Analysis, classes=DEMO7):
    assert a.classes == classes
    for key in ("audio", "text", "fused"):
        p = getattr(a, key)
        assert p.shape == (len(classes),)
        assert (p >= 0).all() and p.sum() == pytest.approx(1.0, abs=1e-5)
        assert a.entropy[key] == pytest.approx(-np.sum(p * np.log(p)), abs=1e-6)
    assert a.conflict == pytest.approx(js_distance(a.audio, a.text), abs=1e-6)
    assert 0 <= a.conflict <= np.sqrt(np.log(2)) + 1e-9


@pytest.fixture(scope="session")
def ravdess_analysis(analyzer, ravdess_clip) -> Analysis:
    return analyzer.analyze(ravdess_clip)


def test_ravdess_clip_transcript_and_three_distributions(ravdess_analysis):
    a = ravdess_analysis
    words = a.transcript.lower()
    for word in ("kids", "talking", "door"):
        assert word in words, a.transcript
    assert_valid(a)
    assert a.duration == pytest.approx(65666 / 16000, abs=1e-3)
    assert a.top("fused") == DEMO7[int(np.argmax(a.fused))] == a.top("AT")


def test_audio_vector_is_the_training_feature(analyzer, ravdess_analysis, ravdess_clip):
    """The pipeline pools the shared encoder pass; training uses encoders.embed: they must agree."""
    from amber2.encoders import load_audio_encoder

    reference = load_audio_encoder("whisper-base", whisper=analyzer.asr).embed([load_audio(ravdess_clip)])[0]
    np.testing.assert_allclose(ravdess_analysis.audio_embedding, reference, rtol=1e-5, atol=1e-5)


def test_one_encoder_pass_per_clip(analyzer, encoder_spy, ravdess_clip):
    analyzer.analyze(ravdess_clip)
    assert encoder_spy.calls == 1


def test_espeak_speech_is_transcribed(analyzer, speak):
    a = analyzer.analyze(speak("I am so happy to see you again."))
    assert "happy" in a.transcript.lower() and "see you" in a.transcript.lower()
    assert_valid(a)


def test_given_transcript_skips_asr(analyzer, ravdess_clip, monkeypatch):
    def no_asr(*_, **__):
        raise AssertionError("ASR ran although a transcript was given")

    monkeypatch.setattr(analyzer.asr, "transcribe_encoded", no_asr)
    a = analyzer.analyze(ravdess_clip, transcript="  I will never forgive you.  ")
    assert a.transcript == "I will never forgive you."
    assert_valid(a)


def test_reanalyze_text_reuses_audio(analyzer, ravdess_analysis, encoder_spy):
    again = analyzer.reanalyze_text(ravdess_analysis, "I love you so much, this is wonderful!")
    assert encoder_spy.calls == 0
    assert again.transcript == "I love you so much, this is wonderful!"
    np.testing.assert_array_equal(again.audio, ravdess_analysis.audio)
    assert not np.allclose(again.text, ravdess_analysis.text)
    assert not np.allclose(again.fused, ravdess_analysis.fused)
    assert again.duration == ravdess_analysis.duration
    assert_valid(again)
    # Same words back: same numbers as the original analysis.
    back = analyzer.reanalyze_text(again, ravdess_analysis.transcript)
    np.testing.assert_allclose(back.fused, ravdess_analysis.fused, atol=1e-6)


def test_reanalyze_needs_an_audio_embedding(analyzer, ravdess_analysis):
    fields = {k: v for k, v in ravdess_analysis.to_dict().items() if k != "has_words"}  # a property
    bare = Analysis(**{**fields, "audio": ravdess_analysis.audio,
                       "text": ravdess_analysis.text, "fused": ravdess_analysis.fused})
    with pytest.raises(ValueError, match="analyze the audio again"):
        analyzer.reanalyze_text(bare, "hello")


def test_to_dict_is_json_without_the_embedding(ravdess_analysis):
    d = json.loads(json.dumps(ravdess_analysis.to_dict()))
    assert {"transcript", "classes", "audio", "text", "fused", "entropy", "conflict", "speech_heard",
            "no_speech_prob", "language", "language_prob", "has_words"} <= set(d)
    assert "audio_embedding" not in d and len(d["fused"]) == len(DEMO7)
    assert set(d["entropy"]) == {"audio", "text", "fused"}


def test_concurrent_requests_match_sequential(analyzer, ravdess_clip, ravdess_analysis):
    results: list = [None, None]

    def run(i):
        results[i] = analyzer.analyze(ravdess_clip, transcript=ravdess_analysis.transcript)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_allclose(r.fused, ravdess_analysis.fused, atol=1e-6)


def write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make_source, message", [
    (lambda tmp: tmp / "missing.wav", "does not exist"),
    (lambda tmp: write(tmp / "empty.wav", b""), "is empty"),
    (lambda tmp: write(tmp / "notes.wav", b"these are not sounds " * 50), "notes.wav"),
    (lambda tmp: np.zeros(16000 * 2, np.float32), "silent"),
    (lambda tmp: np.full(800, 0.1, np.float32) * np.sin(np.arange(800)), "only 0.05 s"),
    (lambda tmp: np.random.default_rng(0).normal(size=16000 * 61).astype(np.float32) * 0.1, "long"),
    (lambda tmp: None, "No audio"),
])
def test_bad_input_gives_a_clear_audio_error(analyzer, tmp_path, make_source, message):
    with pytest.raises(AudioError, match=message) as info:
        analyzer.analyze(make_source(tmp_path))
    text = str(info.value)
    assert len(text) > 15 and "Traceback" not in text and "\n" not in text


def test_transcript_must_be_text(analyzer, ravdess_clip):
    with pytest.raises(TypeError, match="transcript must be a str"):
        analyzer.analyze(ravdess_clip, transcript=42)


def test_module_analyze_uses_the_env_checkpoint(model_dir, ravdess_clip, ravdess_analysis, monkeypatch):
    monkeypatch.setenv("AMBER2_MODEL", str(model_dir))
    monkeypatch.setattr(pipeline, "_DEFAULT", None)
    a = pipeline.analyze(ravdess_clip)
    assert pipeline.default_analyzer() is pipeline.default_analyzer()
    np.testing.assert_allclose(a.fused, ravdess_analysis.fused, atol=1e-6)


def test_missing_default_checkpoint_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.delenv("AMBER2_MODEL", raising=False)
    monkeypatch.setattr(pipeline, "DEFAULT_MODEL", tmp_path / "amber2-demo")
    with pytest.raises(ValueError, match="python -m train demo"):
        Analyzer()


def test_checkpoint_inconsistent_with_its_encoder_is_refused(tmp_path):
    save_random_model(tmp_path, audio_dim=384)   # says whisper-base, which makes 512-d vectors
    with pytest.raises(ValueError, match="512-d"):
        Analyzer(model=tmp_path)


def test_other_encoders_without_whisper(tmp_path, ravdess_clip, monkeypatch):
    """A wav2vec2 + BERT checkpoint (the paper's encoders, tiny and random here): with a transcript given,
    no Whisper is needed at all."""
    from transformers import BertConfig, BertModel, Wav2Vec2Config, Wav2Vec2Model

    from amber2 import asr, encoders

    w2v, bert = tmp_path / "w2v", tmp_path / "bert"
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
                                 conv_kernel=(10, 4), num_conv_pos_embeddings=16,
                                 num_conv_pos_embedding_groups=2)).save_pretrained(w2v)
    bert.mkdir()
    (bert / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "kids", "door"]))
    (bert / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}')
    BertModel(BertConfig(vocab_size=7, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(bert)
    ckpt = save_random_model(tmp_path / "ckpt", audio_dim=32, text_dim=16, audio_encoder=f"wav2vec2:{w2v}",
                             text_encoder=f"bert:{bert}")
    analyzer = Analyzer(model=ckpt)

    def no_whisper(*_, **__):
        raise AssertionError("Whisper was loaded although a transcript was given")

    monkeypatch.setattr(asr, "load_whisper", no_whisper)
    monkeypatch.setattr(encoders, "load_whisper", no_whisper)
    a = analyzer.analyze(ravdess_clip, transcript="kids door")
    assert_valid(a)   # Whisper was never needed
    again = analyzer.reanalyze_text(a, "door")
    np.testing.assert_array_equal(again.audio, a.audio)


def test_clip_longer_than_whisper_window(analyzer, ravdess_clip, speak, encoder_spy):
    """Past 30 s: the transcript covers the whole clip, the audio vector the first 30 s (as in training)."""
    from amber2.encoders import load_audio_encoder

    first = load_audio(ravdess_clip)
    second = load_audio(speak("Please open the window."))
    samples = np.concatenate([first, np.zeros(31 * 16000 - len(first), np.float32), second])
    a = analyzer.analyze(samples)
    assert "door" in a.transcript.lower() and "window" in a.transcript.lower(), a.transcript
    assert a.duration == pytest.approx(len(samples) / 16000)
    assert encoder_spy.calls == 2   # one pass per 30 s window: the first serves transcript and embedding
    reference = load_audio_encoder("whisper-base", whisper=analyzer.asr).embed([samples])[0]
    np.testing.assert_allclose(a.audio_embedding, reference, rtol=1e-5, atol=1e-5)


def test_own_frames_checkpoint_vector_is_the_training_feature(tmp_path, ravdess_clip):
    """A checkpoint with the demo model's encoder (blocks 1-4 on the clip's own frames, bf16): the app's audio
    vector is the vector `python -m train` extracts for the same file, and Whisper is loaded once for both jobs."""
    from amber2.encoders import load_audio_encoder, load_text_encoder
    from train.demo import DEMO_AUDIO_ENCODER
    from train.features import extract_features

    model_dir = save_random_model(tmp_path / "m", audio_dim=512, audio_encoder=DEMO_AUDIO_ENCODER)
    own = Analyzer(model=model_dir)
    assert own.asr is own.audio_encoder.backbone
    a = own.analyze(ravdess_clip)
    assert_valid(a)
    assert "door" in a.transcript.lower()

    class Item:
        id, audio, transcript = "clip", ravdess_clip, ""
    feats = extract_features([Item()], load_audio_encoder(DEMO_AUDIO_ENCODER),
                             load_text_encoder("minilm-l6"), tmp_path / "cache", progress=False)
    np.testing.assert_allclose(a.audio_embedding, feats.audio[0], rtol=1e-5, atol=1e-5)


# --- what Whisper heard: speech or not, which language; no words ---------------------------------------


def test_english_speech_is_heard_in_english(ravdess_analysis):
    a = ravdess_analysis
    assert a.speech_heard and a.has_words and a.no_speech_prob < 0.3
    assert a.language == "en" and a.language_heard == "en" and a.language_prob > 0.9


def test_white_noise_is_no_speech_no_words_and_a_voice_only_reading(analyzer):
    from amber2_app import explain

    noise = (np.random.default_rng(0).standard_normal(3 * 16000) * 0.1).astype(np.float32)
    a = analyzer.analyze(noise)
    assert not a.speech_heard and a.no_speech_prob > 0.6
    assert a.transcript == "" and not a.has_words and a.language_heard is None
    assert_valid(a)
    np.testing.assert_allclose(a.text, np.full(len(DEMO7), 1 / len(DEMO7)))
    np.testing.assert_array_equal(a.fused, a.audio)
    md = explain.summary_markdown(explain.summary(a))
    assert md.startswith("**No speech heard.**") and "sounds" not in md


def test_french_speech_reports_its_language(analyzer, speak):
    from amber2_app import explain

    a = analyzer.analyze(speak("Bonjour, je suis très content de vous voir aujourd'hui.", voice="fr"))
    assert a.speech_heard and a.language_heard == "fr" and a.language_name == "French"
    assert "bonjour" in a.transcript.lower(), a.transcript
    assert "Whisper heard French" in explain.summary_markdown(explain.summary(a))


def test_empty_transcript_means_no_words_reading(analyzer, ravdess_analysis):
    """A cleared transcript: uniform words, the fused reading is the voice's; what Whisper heard is kept."""
    again = analyzer.reanalyze_text(ravdess_analysis, "   ")
    assert again.transcript == "" and not again.has_words
    np.testing.assert_allclose(again.text, np.full(len(DEMO7), 1 / len(DEMO7)))
    np.testing.assert_array_equal(again.fused, again.audio)
    np.testing.assert_array_equal(again.audio, ravdess_analysis.audio)
    assert (again.speech_heard, again.no_speech_prob, again.language) == \
        (ravdess_analysis.speech_heard, ravdess_analysis.no_speech_prob, ravdess_analysis.language)
    assert_valid(again)


def test_given_transcript_measures_nothing(analyzer, ravdess_clip):
    a = analyzer.analyze(ravdess_clip, transcript="Leave me alone.")
    assert a.speech_heard and a.no_speech_prob is None and a.language is None and a.has_words
