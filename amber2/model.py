"""AmbER² network: gated fusion of an audio and a text embedding, and three 2-layer MLP heads (A, T, AT).

The encoders are not part of the checkpoint: the model maps utterance vectors to logits, and its config
(the ``__init__`` arguments, saved as config.json by the Hugging Face mixin) names the encoders that made
those vectors, so a checkpoint is never paired with features it was not trained on.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from amber2.losses import HEADS

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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


def mlp_head(in_dim: int, hidden_dim: int, n_classes: int, dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout -> Linear; the softmax lives in predict() and the losses."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden_dim, n_classes))


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

    def __init__(self, audio_dim: int, text_dim: int, classes: list[str], label_space: str,
                 hidden_dim: int = 256, fusion_dim: int = 256, dropout: float = 0.1,
                 audio_encoder: str = "whisper-base", text_encoder: str = "minilm-l6",
                 provenance: dict | None = None):
        super().__init__()
        if audio_dim < 1 or text_dim < 1 or hidden_dim < 1 or fusion_dim < 1:
            raise ValueError("audio_dim, text_dim, hidden_dim and fusion_dim must be positive")
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"classes must be at least two distinct names, got {classes!r}")
        self.audio_dim, self.text_dim = audio_dim, text_dim
        self.hidden_dim, self.fusion_dim, self.dropout = hidden_dim, fusion_dim, dropout
        self.classes = list(classes)
        self.label_space = label_space
        self.audio_encoder, self.text_encoder = audio_encoder, text_encoder
        self.provenance = dict(provenance or {})
        self.fusion = GatedFusion(audio_dim, text_dim, fusion_dim)
        head_inputs = {"A": audio_dim, "T": text_dim, "AT": fusion_dim}
        self.heads = nn.ModuleDict({h: mlp_head(head_inputs[h], hidden_dim, len(classes), dropout)
                                    for h in HEADS})
        for name, dim in (("audio", audio_dim), ("text", text_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    def init_config(self) -> dict:
        """The ``__init__`` arguments that rebuild this model (what config.json holds)."""
        return {"audio_dim": self.audio_dim, "text_dim": self.text_dim, "classes": list(self.classes),
                "label_space": self.label_space, "hidden_dim": self.hidden_dim, "fusion_dim": self.fusion_dim,
                "dropout": self.dropout, "audio_encoder": self.audio_encoder, "text_encoder": self.text_encoder,
                "provenance": dict(self.provenance)}

    @torch.no_grad()
    def set_input_stats(self, audio_mean: Tensor, audio_std: Tensor, text_mean: Tensor, text_std: Tensor) -> None:
        """Store the training features' per-dimension mean and std (a std below 1e-6 is treated as 1)."""
        for name, value in (("audio_mean", audio_mean), ("audio_std", audio_std),
                            ("text_mean", text_mean), ("text_std", text_std)):
            buf = getattr(self, name)
            value = torch.as_tensor(value, dtype=buf.dtype)
            if value.shape != buf.shape:
                raise ValueError(f"{name} must have shape {tuple(buf.shape)}, got {tuple(value.shape)}")
            if name.endswith("std"):
                value = torch.where(value < 1e-6, torch.ones_like(value), value)
            buf.copy_(value)

    def forward(self, audio: Tensor, text: Tensor) -> dict[str, Tensor]:
        """(B, audio_dim), (B, text_dim) -> logits {"A", "T", "AT"}, each (B, C)."""
        a = (audio - self.audio_mean) / self.audio_std
        t = (text - self.text_mean) / self.text_std
        return {"A": self.heads["A"](a), "T": self.heads["T"](t), "AT": self.heads["AT"](self.fusion(a, t))}

    @torch.inference_mode()
    def predict(self, audio: Tensor, text: Tensor) -> dict[str, Tensor]:
        """Class probabilities of each head (eval mode for the call, no gradients)."""
        was_training = self.training
        self.eval()
        try:
            audio = torch.as_tensor(audio, dtype=torch.float32)
            text = torch.as_tensor(text, dtype=torch.float32)
            squeeze = audio.ndim == 1
            if squeeze:
                audio, text = audio.unsqueeze(0), text.unsqueeze(0)
            if audio.ndim != 2 or audio.shape[:-1] != text.shape[:-1]:
                raise ValueError(f"audio and text must be (B, D) batches of the same size, got shapes "
                                 f"{tuple(audio.shape)} and {tuple(text.shape)}")
            if audio.shape[-1] != self.audio_dim or text.shape[-1] != self.text_dim:
                raise ValueError(f"this model takes {self.audio_dim}-d audio ({self.audio_encoder}) and "
                                 f"{self.text_dim}-d text ({self.text_encoder}) vectors, got "
                                 f"{audio.shape[-1]} and {text.shape[-1]}")
            probs = {h: torch.softmax(z, dim=-1) for h, z in self(audio, text).items()}
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
        raise ValueError(f"{text} is a file; a checkpoint is a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}")
    if not _REPO_ID.match(text):
        raise ValueError(f"no checkpoint folder at {text}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, "README.md"]))
    except Exception as err:  # offline, unknown repo, no access: all mean the same to the caller
        raise ValueError(f"no checkpoint folder at {text}, and it could not be fetched from the Hugging Face "
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
        raise ValueError(f"checkpoint {folder} does not match its config.json: " + "; ".join(problems))


def load_model(path_or_repo: str | Path, *, audio_encoder: str | None = None,
               text_encoder: str | None = None) -> AmbER2Model:
    """Load a checkpoint folder (or Hub repo id) strictly, in eval mode.

    audio_encoder / text_encoder: the encoders the caller will feed the model with; a checkpoint trained on
    other encoders is refused (its inputs would mean nothing to it).
    """
    folder = _resolve(path_or_repo)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise ValueError(f"checkpoint folder {folder} has no {name}")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
        skeleton = AmbER2Model(**config)
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise ValueError(f"{folder / CONFIG_FILE} is not an AmbER² model config: {err}") from err
    for role, wanted in (("audio_encoder", audio_encoder), ("text_encoder", text_encoder)):
        have = getattr(skeleton, role)
        if wanted is not None and have != wanted:
            raise ValueError(f"checkpoint {folder} was trained on {role.replace('_', ' ')} {have!r}, "
                             f"not {wanted!r}: its inputs would mean nothing to it")
    try:
        _check_checkpoint(folder, skeleton)
    except (OSError, SafetensorError) as err:
        raise ValueError(f"{folder / WEIGHTS_FILE} is not a readable safetensors file: {err}") from err
    with contextlib.redirect_stdout(io.StringIO()):  # the mixin prints "Loading weights from local directory"
        model = AmbER2Model.from_pretrained(folder, strict=True)
    return model.eval()
