"""Whisper, loaded once per process: the encoder, the pooling of its states into an audio vector, decoding.

`WhisperBackbone` is the one place Whisper runs. It pools in two ways (`Pooling`, named by the audio encoder
names of `amber2.encoders`):
- the window pass ("whisper-base"): the encoder output of the clip zero-padded to 30 s, as Whisper was
  trained, mean-pooled over the frames that hold the clip. The decoder reads that very output, so
  `hear_and_embed` encodes a clip once for both jobs;
- blocks on the clip's own frames ("whisper-base/L2+3+4-mean-loudnorm"): the residual stream after chosen
  encoder blocks, run on the clip's frames only (no padding), each block pooled over time, then averaged.
Training features (`amber2.encoders` -> `train.features`) and the app go through the same methods, so train
and inference vectors match. Where the weights come from is `amber2.packaged`.

Listening (`hear_encoded`, `hear`) is more than decoding: Whisper also says whether a window holds speech at all
(its no-speech probability) and, for a multilingual model, which language is spoken (`detect_language` on the
encoded window: one decoder step). The decisions, with their named thresholds:
- `speech_heard`: Whisper's own rule from `whisper.transcribe` (no speech when the no-speech probability
  exceeds `NO_SPEECH_THRESHOLD` and the decoded text is not confident, average log-probability below
  `LOGPROB_THRESHOLD`); a window without speech contributes no words, as `whisper.transcribe` drops it.
  Measured with base: speech 0.05-0.08, white noise 0.82-0.87, a 120 Hz hum 0.91.
- `transcription_language`: the words are written in the requested language (the models' own, English)
  unless Whisper is at least `LANGUAGE_SURE` sure that another language is spoken; then in that language, so
  the transcript shows what was said rather than an invented English sentence (forced to English, base turned
  French speech into a translation and German speech into an unrelated sentence). Measured: espeak French and
  German 0.95, English speech 0.93-0.99, white noise at most 0.56 (on "nn").
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import whisper
from torch import Tensor

from amber2.audio import HOP_LENGTH, N_FRAMES, N_SAMPLES, N_SAMPLES_PER_TOKEN, SAMPLE_RATE, normalize_loudness
from amber2.packaged import load_whisper_model

# ---------------------------------------------------------------------------------------------------------
# Listening: was speech heard, in which language (the module docstring gives the measurements)

NO_SPEECH_THRESHOLD = 0.6   # whisper.transcribe's no_speech_threshold default
LOGPROB_THRESHOLD = -1.0    # whisper.transcribe's logprob_threshold default: confident text is kept anyway
LANGUAGE_SURE = 0.7         # detection probability from which Whisper's language is taken as the one spoken
LOOP_COMPRESSION_RATIO = 6.0  # gzip ratio of a window's text from which it is one sentence repeated (a loop)


def speech_heard(no_speech_prob: float | None, avg_logprob: float | None = None) -> bool:
    """Whisper's own test of a window: False when it is more than `NO_SPEECH_THRESHOLD` sure there is no
    speech and its text is not confident (average log-probability below `LOGPROB_THRESHOLD`). Unknown
    probabilities (no ASR ran) count as speech."""
    if no_speech_prob is None or math.isnan(no_speech_prob) or no_speech_prob <= NO_SPEECH_THRESHOLD:
        return True
    return avg_logprob is not None and avg_logprob > LOGPROB_THRESHOLD


def window_speech(no_speech_prob: float, avg_logprob: float, compression_ratio: float) -> bool:
    """`speech_heard` for one window of a long recording, where no fallback re-decoding runs: a window Whisper
    thinks holds no speech and whose text loops (compression ratio above `LOOP_COMPRESSION_RATIO`: one invented
    sentence repeated over noise, decoded with confidence) holds no speech either. Measured with base: white
    noise 11.0 (no-speech probability 0.99, average log-probability -0.2); RAVDESS's two sentences spoken
    over and over, real speech, 3.4-4.2 (whisper.transcribe's fallback threshold, 2.4, would drop those)."""
    if compression_ratio > LOOP_COMPRESSION_RATIO and no_speech_prob > NO_SPEECH_THRESHOLD:
        return False
    return speech_heard(no_speech_prob, avg_logprob)


def transcription_language(requested: str | None, detected: str | None, probability: float | None) -> str | None:
    """The language the words are written in: `requested` (None: whatever Whisper detects), unless Whisper is
    at least `LANGUAGE_SURE` sure another language is spoken."""
    if detected is not None and probability is not None and probability >= LANGUAGE_SURE:
        return detected
    return requested if requested is not None else detected


@dataclass(frozen=True)
class Transcription:
    """What Whisper made of a clip: the words kept, and what they rest on (for the first 30 s window, which is
    also what the audio vector hears). `None` fields: not measured (a transcript was given, or an English-only
    model has no language detection)."""

    text: str
    no_speech_prob: float | None = None   # Whisper's probability that the window holds no speech
    avg_logprob: float | None = None      # mean log-probability of the decoded tokens
    language: str | None = None           # most likely spoken language (ISO code), from detect_language
    language_prob: float | None = None    # its probability
    written_in: str | None = None         # the language the text was decoded in

    @property
    def speech(self) -> bool:
        """Whether speech was heard (`speech_heard`)."""
        return speech_heard(self.no_speech_prob, self.avg_logprob)



# ---------------------------------------------------------------------------------------------------------
# Pooling


@dataclass(frozen=True)
class Pooling:
    """Which of Whisper's states make an audio vector and how they are pooled.

    `layers` empty: the 30 s window pass's output, mean-pooled over the clip's frames. Otherwise the encoder
    blocks (1-based) run on the clip's own frames, each pooled over time (its mean, then its population std
    for "meanstd"), the blocks' vectors averaged; `loudnorm` first brings the clip to one speech level;
    `bf16` runs the blocks under bfloat16 autocast (about half the time on a CPU with AVX512-BF16 or AMX, and on
    a GPU; the vectors move by well under 1%, which is why it is part of the encoder's name: heads trained on
    one precision are not paired with the other)."""

    layers: tuple[int, ...] = ()
    stat: str = "mean"
    loudnorm: bool = False
    bf16: bool = False

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


def as_float32(vectors: Tensor) -> np.ndarray:
    """A tensor of vectors as a float32 NumPy array on the CPU (what every encoder returns)."""
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
    def hidden_states(self, audios: Sequence[np.ndarray], n_layers: int, bf16: bool = False) -> list[Tensor]:
        """The encoder's residual stream after each of its first `n_layers` blocks, on each clip's own
        frames: a list of (n_layers, T_i, d) tensors, T_i = frames of the first 30 s of clip i (50 per s).

        Unlike `encode`, nothing is padded to 30 s, so a 3 s clip costs a tenth of a window and its frames
        do not attend to silence. Clips of a batch are padded to the longest one and masked (the padded
        frames are zeroed between the convolutions and never attended to), so a clip's states do not depend
        on its neighbours, up to float rounding. `bf16` runs it under bfloat16 autocast (states returned in
        float32)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            return [s.float() for s in self._hidden_states(audios, n_layers)]

    def _hidden_states(self, audios: Sequence[np.ndarray], n_layers: int) -> list[Tensor]:
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
                states = self.hidden_states(clips, max(pooling.layers), pooling.bf16)
                vectors = [pool_states(s, pooling.layers, pooling.stat) for s in states]
            for i, vector in zip(batch, vectors):
                out[i] = as_float32(vector)
        return out

    def hear_and_embed(self, samples: np.ndarray, pooling: Pooling = WINDOW, transcript: str | None = None,
                       language: str | None = "en") -> tuple[Transcription, np.ndarray]:
        """(what Whisper heard, (dim,) vector) of one 16 kHz clip; a given `transcript` is used as is (no ASR:
        `Transcription(transcript)`, nothing measured).

        With window pooling, the clip's first window is encoded once: its output is both pooled and heard
        (windows past 30 s are then heard one after the other). Own-frames pooling needs a pass of its
        own, besides the window passes the decoder reads."""
        if not pooling.window:
            heard = self.hear(samples, language) if transcript is None else Transcription(transcript)
            return heard, self.embed([samples], pooling)[0]
        encoded = self.encode(samples)
        vector = as_float32(pool_whisper_frames(encoded, len(samples)))
        heard = self.hear(samples, language, encoded) if transcript is None else Transcription(transcript)
        return heard, vector

    # ---- decoding

    def _check_encoded(self, encoded: Tensor) -> None:
        dims = self.model.dims
        if tuple(encoded.shape) != (dims.n_audio_ctx, dims.n_audio_state):
            raise ValueError(f"encoded must be shaped ({dims.n_audio_ctx}, {dims.n_audio_state}) as returned "
                             f"by encode(); got {tuple(encoded.shape)}")

    def _decode(self, encoded: Tensor, language: str | None, timestamps: bool = False) -> whisper.DecodingResult:
        self._check_encoded(encoded)
        if not self.multilingual and language not in (None, "en"):
            raise ValueError(f"This Whisper model understands English only; cannot transcribe {language!r}.")
        options = whisper.DecodingOptions(
            task="transcribe", language=language, temperature=self.config.temperature,
            without_timestamps=self.config.without_timestamps and not timestamps, fp16=self.config.fp16,
        )
        return whisper.decode(self.model, encoded.to(self.device, self.dtype), options)

    @torch.inference_mode()
    def transcribe_encoded(self, encoded: Tensor, language: str | None = "en") -> str:
        """Decode the text of one 30 s window from its encoder output (the encoder is not run again), in
        `language` as given (`None`: the language a multilingual model detects). No speech test: see
        `hear_encoded`."""
        return self._decode(encoded, language).text.strip()

    @torch.inference_mode()
    def detect_language(self, encoded: Tensor) -> tuple[str | None, float | None]:
        """(language code, probability) Whisper hears in one encoded window: `whisper.detect_language` on
        the encoder output, one decoder step; (None, None) for an English-only model."""
        self._check_encoded(encoded)
        if not self.multilingual:
            return None, None
        _, probs = whisper.detect_language(self.model, encoded.to(self.device, self.dtype))
        code = max(probs, key=probs.get)
        return code, float(probs[code])

    @torch.inference_mode()
    def hear_encoded(self, encoded: Tensor, language: str | None = "en") -> Transcription:
        """One 30 s window, from its encoder output: the language spoken, the words in
        `transcription_language(language, ...)`, and Whisper's no-speech probability; the words are dropped
        ("") when no speech was heard (`speech_heard`)."""
        detected, probability = self.detect_language(encoded)
        written_in = transcription_language(language, detected, probability)
        result = self._decode(encoded, written_in)
        heard = Transcription(result.text.strip(), float(result.no_speech_prob), float(result.avg_logprob),
                      detected, probability, written_in or result.language)
        return heard if heard.speech else replace(heard, text="")

    def hear(self, audio: np.ndarray, language: str | None = "en", encoded: Tensor | None = None) -> Transcription:
        """`hear_encoded` over a whole 16 kHz clip, 30 s window by window (`encoded`: the first window's
        output, when the caller has it). The texts of the windows that hold speech are joined by a space; the
        rest describes the first window. Windows are cut at fixed 30 s boundaries (a word spanning one may
        be split)."""
        samples = np.asarray(audio, dtype=np.float32).ravel()
        first = self.hear_encoded(self.encode(samples) if encoded is None else encoded, language)
        # Later windows keep the first one's language: one clip, one speaker.
        texts = [first.text] + [self.hear_encoded(self.encode(samples[i:i + N_SAMPLES]), first.written_in).text
                                for i in range(N_SAMPLES, len(samples), N_SAMPLES)]
        return replace(first, text=" ".join(t for t in texts if t))

    @torch.inference_mode()
    def heard_windows(self, audio: np.ndarray, language: str | None = "en") -> Iterator["WindowTranscription"]:
        """A long recording heard window by window, with Whisper's own segment timestamps: one
        `WindowTranscription` per 30 s window, lazily (the caller may report progress or release a lock between
        windows).

        `whisper.transcribe`'s seek loop, with what this project fixes: each window is encoded once and that
        output serves language detection (first window only, `transcription_language`) and decoding;
        temperature 0 without fallback re-decoding and without conditioning on the previous window's text, so
        the result is a pure function of the audio and its cost bounded (at most one decode per window); a
        window without speech (`window_speech`) contributes no words. As in `whisper.transcribe`, a window
        whose last segment is unfinished is followed by one starting at that segment's start."""
        samples = np.asarray(audio, dtype=np.float32).ravel()
        # The whole file's mel once, padded by a window of silence (as whisper.transcribe), sliced per window.
        mel = whisper.log_mel_spectrogram(torch.from_numpy(np.require(samples, requirements="W")),
                                          n_mels=self.model.dims.n_mels, padding=N_SAMPLES)
        content_frames = mel.shape[-1] - N_FRAMES
        seek, written_in, detected = 0, language, (None, None)
        while seek < content_frames:
            size = min(N_FRAMES, content_frames - seek)
            window = whisper.pad_or_trim(mel[:, seek:seek + size], N_FRAMES)
            encoded = self.model.encoder(window[None].to(self.device, self.dtype))[0]
            if seek == 0:
                detected = self.detect_language(encoded)
                written_in = transcription_language(language, *detected)
            result = self._decode(encoded, written_in, timestamps=True)
            offset = seek * HOP_LENGTH / SAMPLE_RATE
            heard = window_speech(result.no_speech_prob, result.avg_logprob, result.compression_ratio)
            said, advance = (_timed_segments(result.tokens, self._tokenizer(written_in), offset, size)
                             if heard else ((), size))
            yield WindowTranscription(offset, (seek + advance) * HOP_LENGTH / SAMPLE_RATE,
                              content_frames * HOP_LENGTH / SAMPLE_RATE, said, float(result.no_speech_prob),
                              float(result.avg_logprob), float(result.compression_ratio), *detected,
                              written_in or result.language)
            seek += advance

    def _tokenizer(self, language: str | None) -> "whisper.tokenizer.Tokenizer":
        return whisper.tokenizer.get_tokenizer(self.multilingual, num_languages=self.model.num_languages,
                                               language=language, task="transcribe")

    def transcribe(self, audio: np.ndarray, language: str | None = "en") -> str:
        """Transcript of 16 kHz `audio`: `hear(audio, language).text`. For a clip of speech up to 30 s in the
        requested language this equals `transcribe_encoded(encode(audio))`."""
        return self.hear(audio, language).text


@dataclass(frozen=True)
class WhisperSegment:
    """One of Whisper's own segments: what was said from `start` to `end` (seconds from the file's start)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class WindowTranscription:
    """One window of `WhisperBackbone.heard_windows`: it covered `start` to `end` seconds of a `duration` s
    recording (`end` is where the next window starts) and heard `said` there (empty: no speech heard)."""

    start: float
    end: float
    duration: float
    said: tuple[WhisperSegment, ...]
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    language: str | None = None        # detected in the first window (None: an English-only model)
    language_prob: float | None = None
    written_in: str | None = None

    @property
    def speech(self) -> bool:
        return window_speech(self.no_speech_prob, self.avg_logprob, self.compression_ratio)


TIME_PRECISION = N_SAMPLES_PER_TOKEN / SAMPLE_RATE   # 0.02 s: one timestamp token step
FRAMES_PER_TOKEN = N_SAMPLES_PER_TOKEN // HOP_LENGTH  # 2 mel frames per timestamp step


def _timed_segments(tokens: Sequence[int], tokenizer, offset: float, size: int
                    ) -> tuple[tuple[WhisperSegment, ...], int]:
    """(segments, mel frames to advance) from one window's decoded tokens, as `whisper.transcribe` reads them:
    two timestamp tokens in a row close a segment; a window that does not end on a lone timestamp ends in an
    unfinished segment, which the next window starts with."""
    begin = tokenizer.timestamp_begin
    stamp = [t >= begin for t in tokens]

    def said(piece: Sequence[int], start: float, end: float) -> WhisperSegment:
        return WhisperSegment(start, end, tokenizer.decode([t for t in piece if t < tokenizer.eot]).strip())

    ends_single = stamp[-2:] == [False, True]
    cuts = [i + 1 for i in range(len(tokens) - 1) if stamp[i] and stamp[i + 1]]
    if not cuts:  # one segment: up to its last timestamp, else the whole window
        stamps = [t for t in tokens if t >= begin]
        duration = ((stamps[-1] - begin) * TIME_PRECISION if stamps and stamps[-1] != begin
                    else size * HOP_LENGTH / SAMPLE_RATE)
        return (said(tokens, offset, offset + duration),), size
    out, last = [], 0
    for cut in cuts + ([len(tokens)] if ends_single else []):
        piece = tokens[last:cut]
        out.append(said(piece, offset + (piece[0] - begin) * TIME_PRECISION,
                        offset + (piece[-1] - begin) * TIME_PRECISION))
        last = cut
    advance = size if ends_single else (tokens[last - 1] - begin) * FRAMES_PER_TOKEN
    return tuple(out), advance if advance > 0 else size  # never stand still


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
