"""The trainer's feature cache: hits, resume after an interruption, bad audio, damaged shards."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from train.features import Features, FeatureError, ShardCache, extract_features

SR = 16000


@dataclass
class FakeItem:
    id: str
    audio: Path | None
    transcript: str


class SpyAudioEncoder:
    """Deterministic stand-in for a real encoder (a boundary here: these tests are about the cache)."""

    def __init__(self, name: str = "spy-audio", dim: int = 6, fail_on_call: int | None = None):
        self.name, self.dim = name, dim
        self.calls: list[int] = []          # batch sizes seen
        self.fail_on_call = fail_on_call

    def embed(self, audios: list[np.ndarray]) -> np.ndarray:
        if self.fail_on_call is not None and len(self.calls) + 1 == self.fail_on_call:
            raise KeyboardInterrupt("simulated interruption")
        self.calls.append(len(audios))
        rows = []
        for a in audios:
            spectrum = np.abs(np.fft.rfft(a))
            rows.append([len(a) / SR, a.std(), np.argmax(spectrum) * SR / len(a), a.max(), a.min(),
                         float(np.mean(np.abs(a)))])
        return np.asarray(rows, dtype=np.float32)[:, : self.dim]


class SpyTextEncoder:
    def __init__(self, name: str = "spy-text", dim: int = 4):
        self.name, self.dim = name, dim
        self.calls: list[int] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return np.asarray([[len(t), t.count(" "), sum(map(ord, t)) % 97, 1.0] for t in texts],
                          dtype=np.float32)[:, : self.dim]


def tone(path: Path, freq: float, seconds: float = 1.0) -> Path:
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32), SR)
    return path


@pytest.fixture
def items(tmp_path: Path) -> list[FakeItem]:
    clips = tmp_path / "clips"
    clips.mkdir()
    return [FakeItem(f"utt{i}", tone(clips / f"utt{i}.wav", 200 + 50 * i, 0.8 + 0.1 * i), f"sentence number {i}")
            for i in range(10)]


def extract(items, cache, audio=None, text=None, batch_size=3, **kw) -> Features:
    return extract_features(items, audio or SpyAudioEncoder(), text or SpyTextEncoder(), cache,
                            batch_size=batch_size, progress=False, **kw)


def test_rows_are_the_encoders_vectors_of_each_item(items, tmp_path):
    from amber2.audio import load_audio

    enc = SpyAudioEncoder()
    audio, text = extract(items, tmp_path / "cache", audio=enc)
    assert audio.shape == (10, 6) and text.shape == (10, 4)
    assert audio.dtype == np.float32 and text.dtype == np.float32
    fresh = SpyAudioEncoder()
    for i in (0, 4, 9):
        np.testing.assert_allclose(audio[i], fresh.embed([load_audio(items[i].audio)])[0], rtol=1e-6)
        np.testing.assert_allclose(text[i], SpyTextEncoder().embed([items[i].transcript])[0])
    # 10 clips in batches of at most 3
    assert enc.calls == [3, 3, 3, 1]


def test_second_extraction_calls_the_encoders_zero_times(items, tmp_path):
    first = extract(items, tmp_path / "cache", batch_size=1)
    audio_spy, text_spy = SpyAudioEncoder(), SpyTextEncoder()
    second = extract(items, tmp_path / "cache", audio=audio_spy, text=text_spy)
    assert audio_spy.calls == [] and text_spy.calls == []
    np.testing.assert_array_equal(first.audio, second.audio)
    np.testing.assert_array_equal(first.text, second.text)
    # the ten one-clip shards were merged after the run
    assert len(list((tmp_path / "cache").rglob("audio/*/shard-*.npz"))) == 1


def test_cache_is_keyed_by_content_and_encoder_name(items, tmp_path):
    extract(items, tmp_path / "cache")
    # a renamed copy of a clip is a cache hit; an edited clip is embedded again
    copy = tmp_path / "renamed.wav"
    shutil.copy(items[0].audio, copy)
    edited = tone(tmp_path / "edited.wav", 1234.0)
    spy = SpyAudioEncoder()
    feats = extract([FakeItem("a", copy, items[0].transcript), FakeItem("b", edited, "new words")],
                    tmp_path / "cache", audio=spy)
    assert spy.calls == [1]
    assert feats.audio[1][2] == pytest.approx(1234.0, abs=2)
    # another encoder name never reads these vectors
    other = SpyAudioEncoder(name="other-audio")
    extract(items, tmp_path / "cache", audio=other)
    assert sum(other.calls) == 10


def test_interrupted_extraction_keeps_finished_shards_and_resumes(items, tmp_path):
    crashing = SpyAudioEncoder(fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        extract(items, tmp_path / "cache", audio=crashing)
    assert crashing.calls == [3, 3]
    assert not list((tmp_path / "cache").rglob("*.tmp")), "no half-written file may be left"
    resumed = SpyAudioEncoder()
    feats = extract(items, tmp_path / "cache", audio=resumed)
    assert sum(resumed.calls) == 4, "the 6 clips embedded before the interruption are not redone"
    reference = extract(items, tmp_path / "fresh-cache")
    np.testing.assert_array_equal(feats.audio, reference.audio)


def test_unreadable_audio_is_reported_and_skipped(items, tmp_path, caplog):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is a text file renamed to .wav\n")
    bad = [FakeItem("renamed-text", not_audio, "x"), FakeItem("missing", tmp_path / "nope.wav", "y"),
           FakeItem("no-audio", None, "z")]
    mixed = items[:3] + bad[:1] + items[3:5] + bad[1:]
    with caplog.at_level(logging.WARNING, logger="train.features"):
        feats = extract(mixed, tmp_path / "cache")
    assert feats.ids == ["utt0", "utt1", "utt2", "utt3", "utt4"]
    assert feats.kept == [0, 1, 2, 4, 5]
    assert feats.audio.shape == (5, 6) and feats.text.shape == (5, 4)
    assert set(feats.skipped) == {"renamed-text", "missing", "no-audio"}
    assert "notes.wav" in feats.skipped["renamed-text"]
    assert "nope.wav" in feats.skipped["missing"]
    for item_id in feats.skipped:
        assert item_id in caplog.text


def test_all_items_unreadable_is_a_clear_error(tmp_path):
    with pytest.raises(FeatureError, match="no usable item"):
        extract([FakeItem("missing", tmp_path / "nope.wav", "y")], tmp_path / "cache")


def test_damaged_shard_is_set_aside_and_recomputed(items, tmp_path, caplog):
    first = extract(items, tmp_path / "cache")
    shard = next((tmp_path / "cache").rglob("audio/*/shard-*.npz"))
    with np.load(shard) as z:
        lost = len(z["keys"])
    shard.write_bytes(shard.read_bytes()[:100])       # truncated, as a full disk might leave a foreign file
    (shard.parent / ".shard-leftover.npz.tmp").write_bytes(b"partial")
    spy = SpyAudioEncoder()
    with caplog.at_level(logging.WARNING, logger="train.features"):
        again = extract(items, tmp_path / "cache", audio=spy)
    assert "unreadable" in caplog.text
    assert sum(spy.calls) == lost, "only the damaged shard's clips are embedded again"
    np.testing.assert_array_equal(first.audio, again.audio)
    assert list(shard.parent.glob("*.corrupt"))


def test_shard_cache_rejects_wrongly_shaped_vectors(tmp_path):
    cache = ShardCache(tmp_path, "audio", "enc", 3)
    with pytest.raises(FeatureError, match=r"expected \(2, 3\)"):
        cache.put(["a", "b"], np.zeros((2, 4)))


@pytest.mark.slow
def test_whisper_vectors_are_the_apps_pooled_encoder_output(ravdess_clip, tmp_path):
    """The training vector is exactly the app's: the 30 s padded encoder output pooled over the clip's frames."""
    import torch

    from amber2.asr import load_whisper
    from amber2.audio import load_audio
    from amber2.encoders import load_audio_encoder, load_text_encoder

    backbone = load_whisper("base")
    audio_enc = load_audio_encoder("whisper-base", whisper=backbone)
    text_enc = load_text_encoder("minilm-l6")
    item = FakeItem("clip", ravdess_clip, "Kids are talking by the door")
    feats = extract_features([item], audio_enc, text_enc, tmp_path / "cache", progress=False)
    signal = load_audio(ravdess_clip)
    encoded = backbone.encode(signal)
    n_frames = int(np.ceil(len(signal) / 320))
    expected = encoded[:n_frames].float().mean(dim=0)
    assert feats.audio.shape == (1, 512) and feats.text.shape == (1, 384)
    np.testing.assert_allclose(feats.audio[0], expected.numpy(), rtol=1e-4, atol=1e-5)
    assert torch.is_tensor(encoded)


def test_lazy_encoder_is_not_loaded_when_everything_is_cached(items, tmp_path):
    from train.features import LazyEncoder

    extract(items, tmp_path / "cache")
    loads = []

    def loader(make):
        return lambda: loads.append(1) or make()

    audio = LazyEncoder("spy-audio", loader(SpyAudioEncoder), known_dim=6)
    text = LazyEncoder("spy-text", loader(SpyTextEncoder), known_dim=4)
    feats = extract(items, tmp_path / "cache", audio=audio, text=text)
    assert loads == [] and feats.audio.shape == (10, 6)
    extract(items + [FakeItem("new", tone(tmp_path / "new.wav", 999.0), "brand new words")], tmp_path / "cache",
            audio=audio, text=text)
    assert loads == [1, 1] and audio.loaded and text.loaded
