"""Whisper, loaded once per process: the encoder, the pooling of its states into an audio vector, decoding.

`WhisperBackbone` is the one place Whisper runs. It pools in two ways (`Pooling`, named by the audio encoder
names of `amber2.encoders`):
- the window pass ("whisper-base"): the encoder output of the clip zero-padded to 30 s, as Whisper was
  trained, mean-pooled over the frames that hold the clip. The decoder reads that very output, so
  `transcribe_and_embed` encodes a clip once for both jobs;
- blocks on the clip's own frames ("whisper-base/L2+3+4-mean-loudnorm"): the residual stream after chosen
  encoder blocks, run on the clip's frames only (no padding), each block pooled over time, then averaged.
Training features (`amber2.encoders` -> `train.features`) and the app go through the same methods, so train
and inference vectors match. Where the weights come from is `amber2.packaged`.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import whisper
from torch import Tensor

from amber2.audio import N_FRAMES, N_SAMPLES, N_SAMPLES_PER_TOKEN, normalize_loudness
from amber2.packaged import load_whisper_model


# ---------------------------------------------------------------------------------------------------------
# Pooling


@dataclass(frozen=True)
class Pooling:
    """Which of Whisper's states make an audio vector and how they are pooled.

    `layers` empty: the 30 s window pass's output, mean-pooled over the clip's frames. Otherwise the encoder
    blocks (1-based) run on the clip's own frames, each pooled over time (its mean, then its population std
    for "meanstd"), the blocks' vectors averaged; `loudnorm` first brings the clip to one speech level."""

    layers: tuple[int, ...] = ()
    stat: str = "mean"
    loudnorm: bool = False

    @property
    def window(self) -> bool:
        """True when the vector pools the 30 s window pass (the output the decoder reads)."""
        return not self.layers

    def dim(self, width: int) -> int:
        """Vector size for a Whisper whose frames are `width`-d."""
        return width * (2 if self.stat == "meanstd" else 1)


WINDOW = Pooling()


def whisper_frame_count(n_samples: int, n_frames: int = N_FRAMES // 2) -> int:
    """Number of encoder frames holding a clip of `n_samples` 16 kHz samples: ceil(n / 320), in 1..n_frames."""
    return max(1, min(n_frames, math.ceil(n_samples / N_SAMPLES_PER_TOKEN)))


def pool_whisper_frames(encoded: Tensor, n_samples: int) -> Tensor:
    """(d,) mean of the first ``whisper_frame_count(n_samples)`` frames of a (1500, d) Whisper encoder
    output: the clip's own frames, not the zero padding that fills the 30 s window."""
    if encoded.ndim != 2:
        raise ValueError(f"encoded must be (frames, d) as WhisperBackbone.encode returns; got {tuple(encoded.shape)}")
    n = whisper_frame_count(n_samples, encoded.shape[0])
    return encoded[:n].float().mean(0)


def pool_states(states: Tensor, layers: Sequence[int], stat: str) -> Tensor:
    """(n_layers, T, d) hidden states -> one vector: each chosen block (1-based) pooled over time (its mean,
    followed by its population std when `stat` is "meanstd"), then averaged over the chosen blocks."""
    picked = states[[i - 1 for i in layers]].float()
    parts = [picked.mean(1)]
    if stat == "meanstd":
        parts.append(picked.std(1, unbiased=False))
    return torch.cat(parts, -1).mean(0)


def _to_numpy(vectors: Tensor) -> np.ndarray:
    return vectors.float().cpu().numpy().astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------------------
# The backbone: encoder passes, pooling, decoding


@dataclass(frozen=True)
class DecodeConfig:
    """How transcripts are decoded. Greedy, temperature 0 and no timestamps make a transcript a pure
    function of the audio; fp32 (also on a GPU) keeps the encoder output, which is the audio embedding,
    the same numbers, up to rounding, as the features the heads were trained on."""

    temperature: float = 0.0
    without_timestamps: bool = True
    fp16: bool = False


class WhisperBackbone:
    """A loaded openai-whisper model: encoder passes (the 30 s window, or blocks on a clip's own frames), the
    pooling of their states into audio vectors, and decoding from the window pass's output."""

    def __init__(self, model: whisper.Whisper, config: DecodeConfig = DecodeConfig()) -> None:
        self.model = model.eval()
        self.config = config
        self.dim = model.dims.n_audio_state   # the width of a frame, not of every pooled vector (Pooling.dim)
        self.device = next(model.parameters()).device
        self.dtype = torch.float16 if config.fp16 else torch.float32

    @property
    def multilingual(self) -> bool:
        return self.model.is_multilingual

    # ---- encoder passes

    @torch.inference_mode()
    def encode_windows(self, audios: Sequence[np.ndarray]) -> Tensor:
        """(B, n_audio_ctx, d) = (B, 1500, d): one encoder call over the first 30 s of each 16 kHz clip,
        zero-padded to 30 s as Whisper was trained (50 frames per second of audio; the rest encode the
        padding). Run in the backbone's own precision, never autocast, so training features and the app's
        vectors are the same numbers."""
        mels = torch.stack([
            # torch.tensor copies: the input may be read-only
            whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.tensor(np.asarray(a, dtype=np.float32).ravel())),
                                        n_mels=self.model.dims.n_mels)
            for a in audios
        ]).to(self.device, self.dtype)
        return self.model.encoder(mels)

    def encode(self, audio: np.ndarray) -> Tensor:
        """(1500, d) window-pass output of one clip: `encode_windows([audio])[0]`."""
        return self.encode_windows([audio])[0]

    @torch.inference_mode()
    def hidden_states(self, audios: Sequence[np.ndarray], n_layers: int) -> list[Tensor]:
        """The encoder's residual stream after each of its first `n_layers` blocks, on each clip's own
        frames: a list of (n_layers, T_i, d) tensors, T_i = frames of the first 30 s of clip i (50 per s).

        Unlike `encode`, nothing is padded to 30 s, so a 3 s clip costs a tenth of a window and its frames
        do not attend to silence. Clips of a batch are padded to the longest one and masked (the padded
        frames are zeroed between the convolutions and never attended to), so a clip's states do not depend
        on its neighbours, up to float rounding."""
        enc = self.model.encoder
        if not 1 <= n_layers <= len(enc.blocks):
            raise ValueError(f"n_layers must be in 1..{len(enc.blocks)}, got {n_layers}")
        mels = [whisper.log_mel_spectrogram(torch.tensor(np.asarray(a, np.float32).ravel()[:N_SAMPLES]),
                                            n_mels=self.model.dims.n_mels) for a in audios]
        n_mel = torch.tensor([m.shape[-1] for m in mels])
        n_out = (n_mel + 1) // 2  # conv2 has stride 2
        x = torch.zeros(len(mels), mels[0].shape[0], int(n_mel.max()))
        for i, m in enumerate(mels):
            x[i, :, :m.shape[-1]] = m
        x = x.to(self.device, self.dtype)
        valid_in = (torch.arange(x.shape[-1])[None] < n_mel[:, None]).to(self.device)
        x = F.gelu(enc.conv1(x)) * valid_in[:, None]
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        valid = (torch.arange(x.shape[1])[None] < n_out[:, None]).to(self.device)
        x = (x + enc.positional_embedding[:x.shape[1]]) * valid[..., None]
        # keys a query may attend to, (B, 1, 1, T); None when nothing is padded (one clip, or equal lengths):
        # the same numbers, and SDPA's unmasked kernel is about 8% faster on a 15 s clip
        attend = None if bool(valid.all()) else valid[:, None, None, :]
        layers = []
        for block in enc.blocks[:n_layers]:
            x = x + _masked_self_attention(block.attn, block.attn_ln(x), attend)
            x = x + block.mlp(block.mlp_ln(x))
            layers.append(x)
        states = torch.stack(layers, 1)  # (B, n_layers, T, d)
        return [states[i, :, :int(n)] for i, n in enumerate(n_out)]

    # ---- audio vectors

    def embed(self, audios: Sequence[np.ndarray], pooling: Pooling = WINDOW, batch_size: int = 8) -> np.ndarray:
        """(N, pooling.dim(self.dim)) float32 vectors of 16 kHz clips; only each clip's first 30 s is heard.

        Own-frames clips are batched by length (shortest first), which wastes little on padding; window
        passes are all 30 s long and keep the given order."""
        if pooling.loudnorm:
            audios = [normalize_loudness(a) for a in audios]
        order = list(range(len(audios)))
        if not pooling.window:
            order.sort(key=lambda i: len(audios[i]))
        out = np.zeros((len(audios), pooling.dim(self.dim)), np.float32)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            clips = [audios[i] for i in batch]
            if pooling.window:
                vectors = [pool_whisper_frames(e, len(a)) for e, a in zip(self.encode_windows(clips), clips)]
            else:
                states = self.hidden_states(clips, max(pooling.layers))
                vectors = [pool_states(s, pooling.layers, pooling.stat) for s in states]
            for i, vector in zip(batch, vectors):
                out[i] = _to_numpy(vector)
        return out

    def transcribe_and_embed(self, samples: np.ndarray, pooling: Pooling = WINDOW, transcript: str | None = None,
                             language: str | None = "en") -> tuple[str, np.ndarray]:
        """(transcript, (dim,) vector) of one 16 kHz clip; a given `transcript` is returned as is (no ASR).

        With window pooling, the clip's first window is encoded once: its output is both pooled and decoded
        (windows past 30 s are then decoded one after the other). Own-frames pooling needs a pass of its
        own, besides the window passes the decoder reads."""
        if not pooling.window:
            text = self.transcribe(samples, language) if transcript is None else transcript
            return text, self.embed([samples], pooling)[0]
        encoded = self.encode(samples)
        vector = _to_numpy(pool_whisper_frames(encoded, len(samples)))
        if transcript is None:
            transcript = self.transcribe_encoded(encoded, language)
            if len(samples) > N_SAMPLES:
                rest = self.transcribe(samples[N_SAMPLES:], language)
                transcript = " ".join(t for t in (transcript, rest) if t)
        return transcript, vector

    # ---- decoding

    @torch.inference_mode()
    def transcribe_encoded(self, encoded: Tensor, language: str | None = "en") -> str:
        """Decode the text of one 30 s window from its encoder output (the encoder is not run again).
        `language=None` lets a multilingual model detect the language."""
        dims = self.model.dims
        if tuple(encoded.shape) != (dims.n_audio_ctx, dims.n_audio_state):
            raise ValueError(f"encoded must be shaped ({dims.n_audio_ctx}, {dims.n_audio_state}) as returned "
                             f"by encode(); got {tuple(encoded.shape)}")
        if not self.multilingual and language not in (None, "en"):
            raise ValueError(f"This Whisper model understands English only; cannot transcribe {language!r}.")
        options = whisper.DecodingOptions(
            task="transcribe", language=language, temperature=self.config.temperature,
            without_timestamps=self.config.without_timestamps, fp16=self.config.fp16,
        )
        result = whisper.decode(self.model, encoded.to(self.device, self.dtype), options)
        return result.text.strip()

    def transcribe(self, audio: np.ndarray, language: str | None = "en") -> str:
        """Transcript of 16 kHz `audio`: encode + decode each 30 s window, texts joined by a space. For clips
        up to 30 s this equals `transcribe_encoded(encode(audio))`. Longer clips are cut at fixed 30 s
        boundaries (a word spanning one may be split)."""
        samples = np.asarray(audio, dtype=np.float32).ravel()
        windows = [samples[i:i + N_SAMPLES] for i in range(0, max(len(samples), 1), N_SAMPLES)]
        texts = (self.transcribe_encoded(self.encode(w), language) for w in windows)
        return " ".join(t for t in texts if t)


def _masked_self_attention(attn: "whisper.model.MultiHeadAttention", x: Tensor, attend: Tensor | None) -> Tensor:
    """openai-whisper's self-attention (same weights and scaling) with a key mask (None: attend to all), which
    its own `MultiHeadAttention.forward` does not take."""
    b, t, d = x.shape
    heads = attn.n_head
    q, k, v = (proj(x).view(b, t, heads, d // heads).transpose(1, 2) for proj in (attn.query, attn.key, attn.value))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
    return attn.out(out.transpose(1, 2).reshape(b, t, d))


_LOADED: dict[tuple[str, str], WhisperBackbone] = {}
_LOCK = threading.Lock()



_LOADED: dict[tuple[str, str], WhisperBackbone] = {}
_LOCK = threading.Lock()


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_whisper(name: str = "base", device: str | None = None) -> WhisperBackbone:
    """The Whisper model `name` ("base", "tiny.en", another openai-whisper name, or a checkpoint path) on
    `device` (default: CUDA when available, else CPU), loaded once per process. Packaged weights are used
    offline; other names fall back to openai-whisper's download (`amber2.packaged.load_whisper_model`)."""
    device = device or _default_device()
    key = (name, device)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = WhisperBackbone(load_whisper_model(name, device))
        return _LOADED[key]
