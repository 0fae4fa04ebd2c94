"""AmbER² network: gated fusion of an audio and a text embedding, and three MLP heads (A, T, AT).

Everything that shapes the network lives in one `AmbER2Config` (as whisper's `ModelDimensions` and nanoGPT's
`GPTConfig`); the Hugging Face mixin saves it as config.json. The encoders are not part of the checkpoint: the
model maps utterance vectors to logits, and its config names the encoders that made those vectors, so a
checkpoint is never paired with features it was not trained on.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model as load_safetensors
from torch import Tensor, nn

from amber2.arbitration import READINGS, STUDENT, VOICE, WORDS, arbitrate
from amber2.errors import UserError
from amber2.heads import HEADS, TABLE
from amber2.paper import KAPPA_DEFAULT

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# The encoders a checkpoint reads when its config names none, and the trainer's defaults (amber2.encoders).
DEFAULT_AUDIO_ENCODER = "whisper-base"
DEFAULT_TEXT_ENCODER = "minilm-l6"
STD_FLOOR = 1e-6   # a feature whose spread is below this is constant: it is centred, not scaled


def feature_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and std of (N, D) features; a std below STD_FLOOR counts as 1."""
    std = x.std(0, unbiased=False)
    return x.mean(0), torch.where(std < STD_FLOOR, torch.ones_like(std), std)


def standardize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """(x - mean) / std: how the model reads its inputs (`AmbER2Model.forward`), and how the trainer prepares a
    fold's features once for all its runs."""
    return (x - mean) / std


class ModelError(UserError, ValueError):
    """A checkpoint or model config that cannot be used (missing, malformed, or for other features)."""


class GatedFusion(nn.Module):
    """GMU: h = g * tanh(W_a a) + (1 - g) * tanh(W_t t), g = sigmoid(W_g [a; t])."""

    def __init__(self, audio_dim: int, text_dim: int, fusion_dim: int):
        super().__init__()
        self.audio = nn.Linear(audio_dim, fusion_dim)
        self.text = nn.Linear(text_dim, fusion_dim)
        self.gate = nn.Linear(audio_dim + text_dim, fusion_dim)

    def forward(self, audio: Tensor, text: Tensor) -> Tensor:
        g = torch.sigmoid(self.gate(torch.cat([audio, text], dim=-1)))
        return g * torch.tanh(self.audio(audio)) + (1 - g) * torch.tanh(self.text(text))


def mlp_head(in_dim: int, hidden_dim: int, n_classes: int, dropout: float, layers: int = 1) -> nn.Sequential:
    """`layers` x (Linear -> ReLU -> Dropout), then Linear to the logits (layers=1: the paper's two-layer MLP);
    the softmax lives in predict() and the losses."""
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks += [nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*blocks, nn.Linear(hidden_dim, n_classes))


@dataclass
class AmbER2Config:
    """Everything that shapes an AmbER2Model: input sizes, label space, layer widths, the encoders it reads."""

    audio_dim: int
    text_dim: int
    classes: list[str]
    label_space: str
    hidden_dim: int = 256          # units per hidden layer of each head
    fusion_dim: int = 256          # width of the gated fusion (GMU) output
    dropout: float = 0.1
    head_layers: int = 1           # hidden layers per head; 1 is the paper's two-layer MLP
    audio_encoder: str = DEFAULT_AUDIO_ENCODER
    text_encoder: str = DEFAULT_TEXT_ENCODER
    provenance: dict = field(default_factory=dict)   # how the weights were made (method, lambda, kappa, ...)
    # head key -> temperature fitted on validation items (amber2.calibration); a head not listed reads at 1
    temperatures: dict = field(default_factory=dict)
    # what the fused bar shows (amber2.arbitration): "student", the fusion head itself (the paper's), or
    # "arbitrated", the experts' mixture the student chooses by Eq. 5 at reading_kappa, at its own temperature
    fused_reading: str = "student"
    reading_kappa: float = KAPPA_DEFAULT
    reading_temperature: float = 1.0

    def __post_init__(self) -> None:
        self.classes = list(self.classes)
        self.provenance = dict(self.provenance or {})
        self.temperatures = {str(h): float(t) for h, t in (self.temperatures or {}).items()}
        if unknown := sorted(set(self.temperatures) - set(HEADS)):
            raise ModelError(f"temperatures name unknown heads {unknown}; the heads are {list(HEADS)}")
        if any(not (t > 0 and t < float("inf")) for t in self.temperatures.values()):
            raise ModelError(f"temperatures must be positive and finite, got {self.temperatures}")
        if self.fused_reading not in READINGS:
            raise ModelError(f"fused_reading must be one of {', '.join(READINGS)}, got {self.fused_reading!r}")
        self.reading_kappa, self.reading_temperature = float(self.reading_kappa), float(self.reading_temperature)
        if not (self.reading_kappa >= 0 and self.reading_temperature > 0
                and max(self.reading_kappa, self.reading_temperature) < float("inf")):
            raise ModelError(f"reading_kappa must be >= 0 and reading_temperature > 0, both finite; got "
                             f"{self.reading_kappa} and {self.reading_temperature}")
        if min(self.audio_dim, self.text_dim, self.hidden_dim, self.fusion_dim) < 1:
            raise ModelError("audio_dim, text_dim, hidden_dim and fusion_dim must be positive")
        if self.head_layers < 1:
            raise ModelError(f"head_layers must be at least 1, got {self.head_layers}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ModelError(f"classes must be at least two distinct names, got {self.classes!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "AmbER2Config":
        """The config of a config.json; names it does not know are refused (they would be silently lost)."""
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(values) - known):
            raise ModelError(f"unknown config fields {unknown}")
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class AmbER2Model(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="amber2",
    tags=["emotion-recognition", "speech", "text", "multimodal", "amber2"],
):
    """Audio head on the audio vector, text head on the text vector, fusion head on the GMU output.

    Inputs are standardised with per-dimension statistics stored as buffers (identity until
    ``set_input_stats`` is called), so a checkpoint carries the feature scaling it was trained with.
    """

    def __init__(self, *args, **fields):
        """`AmbER2Model(config)`, or the config's fields: `AmbER2Model(audio_dim, text_dim, classes, label_space,
        hidden_dim=..., ...)`."""
        super().__init__()
        one_config = len(args) == 1 and not fields and isinstance(args[0], AmbER2Config)
        config = args[0] if one_config else AmbER2Config(*args, **fields)
        self.config = config
        self._hub_mixin_config = config     # what save_pretrained writes as config.json
        self.fusion = GatedFusion(config.audio_dim, config.text_dim, config.fusion_dim)
        width = {"audio": config.audio_dim, "text": config.text_dim, "fusion": config.fusion_dim}
        self.heads = nn.ModuleDict({h.key: mlp_head(width[h.reads], config.hidden_dim, len(config.classes),
                                                    config.dropout, config.head_layers) for h in TABLE})
        for name, dim in (("audio", config.audio_dim), ("text", config.text_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    # the config's fields read as the model's own (model.classes, model.audio_encoder, ...)
    audio_dim = property(lambda self: self.config.audio_dim)
    text_dim = property(lambda self: self.config.text_dim)
    classes = property(lambda self: self.config.classes)
    label_space = property(lambda self: self.config.label_space)
    audio_encoder = property(lambda self: self.config.audio_encoder)
    text_encoder = property(lambda self: self.config.text_encoder)
    provenance = property(lambda self: self.config.provenance)

    def init_config(self) -> dict:
        """The config as a dict (what config.json holds)."""
        return self.config.to_dict()

    @torch.no_grad()
    def set_input_stats(self, audio_mean: Tensor, audio_std: Tensor, text_mean: Tensor, text_std: Tensor) -> None:
        """Store the training features' per-dimension mean and std (a std below STD_FLOOR is treated as 1)."""
        for name, value in (("audio_mean", audio_mean), ("audio_std", audio_std),
                            ("text_mean", text_mean), ("text_std", text_std)):
            buf = getattr(self, name)
            value = torch.as_tensor(value, dtype=buf.dtype)
            if value.shape != buf.shape:
                raise ModelError(f"{name} must have shape {tuple(buf.shape)}, got {tuple(value.shape)}")
            if name.endswith("std"):
                value = torch.where(value < STD_FLOOR, torch.ones_like(value), value)
            buf.copy_(value)

    def forward(self, audio: Tensor, text: Tensor) -> dict[str, Tensor]:
        """(B, audio_dim), (B, text_dim) -> logits of each head of `amber2.heads.TABLE` ("A", "T", "AT"), each
        (B, C)."""
        a = standardize(audio, self.audio_mean, self.audio_std)
        t = standardize(text, self.text_mean, self.text_std)
        inputs = {"audio": a, "text": t, "fusion": self.fusion(a, t)}
        return {h.key: self.heads[h.key](inputs[h.reads]) for h in TABLE}

    @torch.inference_mode()
    def predict(self, audio: Tensor, text: Tensor) -> dict[str, Tensor]:
        """Class probabilities of each head at its calibrated temperature (eval mode, no gradients); "AT" is
        the fused reading the config names (`fused_reading`: the student itself, or the arbitrated mixture)."""
        was_training = self.training
        self.eval()
        try:
            audio = torch.as_tensor(audio, dtype=torch.float32)
            text = torch.as_tensor(text, dtype=torch.float32)
            squeeze = audio.ndim == 1
            if squeeze:
                audio, text = audio.unsqueeze(0), text.unsqueeze(0)
            if audio.ndim != 2 or audio.shape[:-1] != text.shape[:-1]:
                raise ModelError(f"audio and text must be (B, D) batches of the same size, got shapes "
                                 f"{tuple(audio.shape)} and {tuple(text.shape)}")
            if audio.shape[-1] != self.audio_dim or text.shape[-1] != self.text_dim:
                raise ModelError(f"this model takes {self.audio_dim}-d audio ({self.audio_encoder}) and "
                                 f"{self.text_dim}-d text ({self.text_encoder}) vectors, got "
                                 f"{audio.shape[-1]} and {text.shape[-1]}")
            temperatures = self.config.temperatures
            probs = {h: torch.softmax(z / temperatures.get(h, 1.0), dim=-1) for h, z in self(audio, text).items()}
            if self.config.fused_reading == "arbitrated":
                fused = arbitrate(*(probs[h].double().cpu().numpy() for h in (VOICE, WORDS, STUDENT)),
                                  self.config.reading_kappa, self.config.reading_temperature)
                probs[STUDENT] = torch.from_numpy(fused).to(probs[STUDENT])
            return {h: p[0] for h, p in probs.items()} if squeeze else probs
        finally:
            self.train(was_training)


def _resolve(path_or_repo: str | Path) -> Path:
    """A local checkpoint folder, or a Hub repo id downloaded to the local cache."""
    path = Path(path_or_repo).expanduser()
    if path.is_dir():
        return path
    text = str(path_or_repo)
    if path.exists():
        raise ModelError(f"{text} is a file; a checkpoint is a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}")
    if not _REPO_ID.match(text):
        raise ModelError(f"no checkpoint folder at {text}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, "README.md"]))
    except Exception as err:  # offline, unknown repo, no access: all mean the same to the caller
        raise ModelError(f"no checkpoint folder at {text}, and it could not be fetched from the Hugging Face "
                         f"Hub as a repo id ({type(err).__name__}: {err})") from err


def _check_checkpoint(folder: Path, model: AmbER2Model) -> None:
    """Refuse, with the names, a weights file whose tensors differ from what the config builds."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as f:
        found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    problems = []
    if missing := sorted(set(expected) - set(found)):
        problems.append(f"missing tensors {missing}")
    if extra := sorted(set(found) - set(expected)):
        problems.append(f"unexpected tensors {extra}")
    if wrong := sorted(k for k in set(expected) & set(found) if expected[k] != found[k]):
        problems.append("wrong shapes " + ", ".join(f"{k} {found[k]} (expected {expected[k]})" for k in wrong))
    if problems:
        raise ModelError(f"checkpoint {folder} does not match its config.json: " + "; ".join(problems))


def load_model(path_or_repo: str | Path, *, audio_encoder: str | None = None,
               text_encoder: str | None = None) -> AmbER2Model:
    """Load a checkpoint folder (or Hub repo id) strictly, in eval mode.

    audio_encoder / text_encoder: the encoders the caller will feed the model with; a checkpoint trained on
    other encoders is refused (its inputs would mean nothing to it).
    """
    folder = _resolve(path_or_repo)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise ModelError(f"checkpoint folder {folder} has no {name}")
    try:
        model = AmbER2Model(AmbER2Config.from_dict(json.loads((folder / CONFIG_FILE).read_text())))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise ModelError(f"{folder / CONFIG_FILE} is not an AmbER² model config: {err}") from err
    for role, wanted in (("audio_encoder", audio_encoder), ("text_encoder", text_encoder)):
        have = getattr(model.config, role)
        if wanted is not None and have != wanted:
            raise ModelError(f"checkpoint {folder} was trained on {role.replace('_', ' ')} {have!r}, "
                             f"not {wanted!r}: its inputs would mean nothing to it")
    try:
        _check_checkpoint(folder, model)
        load_safetensors(model, str(folder / WEIGHTS_FILE), strict=True)
    except (OSError, SafetensorError) as err:
        raise ModelError(f"{folder / WEIGHTS_FILE} is not a readable safetensors file: {err}") from err
    return model.eval()
