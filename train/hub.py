"""Checkpoint folders with a model card, and publishing them on the Hugging Face Hub.

A checkpoint folder is what ``AmbER2Model.save_pretrained`` writes (model.safetensors + config.json) plus our
README.md model card: training data, label space, encoders, protocol, measured metrics, licences, how to load.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import torch

from amber2.errors import UserError
from amber2.metrics import ALL_METRICS, METRIC_LABELS
from amber2.model import CONFIG_FILE, WEIGHTS_FILE, AmbER2Model, load_model

CARD_FILE = "README.md"
CHECKPOINT_FILES = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE)
PAPER = "AmbER²: Dual Ambiguity-Aware Emotion Recognition Applied to Speech and Text"
TAGS = ["emotion-recognition", "speech-emotion-recognition", "multimodal", "soft-labels", "amber2"]
# Weights trained on RAVDESS or nEMO inherit their share-alike licence (CC BY-NC-SA 4.0).
SHARE_ALIKE = {"ravdess": "cc-by-nc-sa-4.0", "nemo": "cc-by-nc-sa-4.0"}


class HubError(UserError, RuntimeError):
    """A checkpoint that cannot be written or published; the message is meant for a person."""


@dataclass
class CardInfo:
    """What a model card states. Fields left None are read from the checkpoint's config.json."""

    dataset: str = "unspecified"
    n_items: int | None = None
    n_skipped: int | None = None
    label_space: str | None = None
    classes: list[str] | None = None
    audio_encoder: str | None = None
    text_encoder: str | None = None
    protocol: Mapping[str, Any] | str | None = None
    hyperparameters: Mapping[str, Any] | None = None
    # method -> metric -> value, where value is a float or {"mean": ..., "std": ...}
    metrics: Mapping[str, Mapping[str, Any]] | None = None
    metrics_note: str = ("Cross-validated test metrics of the fused head (mean ± std over seeds; JS is the "
                         "Jensen-Shannon distance with natural log, R² the squared per-utterance Pearson "
                         "correlation, F1 macro-averaged):")
    licences: list[str] = field(default_factory=list)
    license: str | None = None      # Hub licence id; derived from the data when None
    command: str | None = None      # how the checkpoint was trained
    repo_id: str | None = None      # used in the "how to load" snippet
    extra: dict[str, Any] = field(default_factory=dict)  # anything else: shown under "Training data"

    @classmethod
    def from_mapping(cls, info: Mapping[str, Any] | "CardInfo") -> "CardInfo":
        """Known keys fill fields; other keys (e.g. a corpus recipe) go to `extra`."""
        if isinstance(info, CardInfo):
            return info
        if not isinstance(info, Mapping):
            raise HubError(f"card info must be a dict or CardInfo, got {type(info).__name__}")
        known = {f.name for f in fields(cls)} - {"extra"}
        card = cls(**{k: v for k, v in info.items() if k in known})
        card.extra = {**dict(info.get("extra") or {}), **{k: v for k, v in info.items() if k not in known | {"extra"}}}
        return card

    def weights_license(self) -> str:
        """The explicit licence, else CC BY-NC-SA 4.0 when RAVDESS or nEMO is among the data, else "other"."""
        if self.license:
            return self.license
        text = json.dumps([self.dataset, self.licences, self.extra], default=str).lower()
        for corpus, licence in SHARE_ALIKE.items():
            if corpus in text:
                return licence
        return "other"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _bullets(mapping: Mapping[str, Any]) -> list[str]:
    return [f"- **{k}**: {_fmt(v)}" for k, v in mapping.items() if not isinstance(v, Mapping)] + [
        line for k, v in mapping.items() if isinstance(v, Mapping)
        for line in [f"- **{k}**:"] + ["  " + b for b in _bullets(v)]]


def _metric_cell(value: Any) -> str:
    if isinstance(value, Mapping):
        mean, std = value.get("mean"), value.get("std")
        if mean is None:
            return "–"
        return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"
    return "–" if value is None else f"{value:.3f}"


def metric_table(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A markdown table: one row per method, the six metrics first (paper order), then any others."""
    names = [m for m in ALL_METRICS if any(m in row for row in metrics.values())]
    names += sorted({m for row in metrics.values() for m in row} - set(names))
    lines = ["| Method | " + " | ".join(METRIC_LABELS.get(m, m) for m in names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for method, row in metrics.items():
        lines.append(f"| {method} | " + " | ".join(_metric_cell(row.get(m)) for m in names) + " |")
    return lines


def render_card(card: CardInfo, config: Mapping[str, Any]) -> str:
    """The README.md text (YAML front matter + markdown) of a checkpoint with this config.json."""
    from huggingface_hub import ModelCardData

    space = card.label_space or config.get("label_space", "?")
    classes = card.classes or config.get("classes", [])
    audio_enc = card.audio_encoder or config.get("audio_encoder", "?")
    text_enc = card.text_encoder or config.get("text_encoder", "?")
    licence = card.weights_license()
    meta = ModelCardData(license=licence, library_name="amber2", tags=TAGS, language=["en"])
    if licence == "other":
        meta.license_name = "training-data-licences"  # the card's Licences section spells them out
    load_ref = card.repo_id or "path/to/this/folder"

    out = ["---", meta.to_yaml().strip(), "---", "",
           f"# AmbER² emotion heads ({space})", "",
           f"Audio, text and fused emotion heads of *{PAPER}*: they map an utterance's {audio_enc} audio vector "
           f"and {text_enc} text vector to three distributions over {len(classes)} emotions. The encoders are "
           "not stored here; `load_model` refuses to pair this checkpoint with other encoders.", "",
           "## Training data", "", f"- **dataset**: {card.dataset}"]
    if card.n_items is not None:
        out.append(f"- **items used**: {card.n_items}")
    if card.n_skipped is not None:
        out.append(f"- **items skipped** (no valid vote or unreadable audio): {card.n_skipped}")
    out += _bullets(card.extra)
    out += ["", "## Label space", "", f"`{space}`, in output order:", "", "| index | class |", "|---|---|"]
    out += [f"| {i} | {c} |" for i, c in enumerate(classes)]
    out += ["", "Soft labels are rater vote shares (paper Eq. 1); votes for classes outside the space are dropped.",
            "", "## Encoders", "",
            f"- **audio**: `{audio_enc}` ({config.get('audio_dim', '?')}-d utterance vector)",
            f"- **text**: `{text_enc}` ({config.get('text_dim', '?')}-d utterance vector)",
            f"- **heads**: gated fusion ({config.get('fusion_dim', '?')}-d) and three MLPs of "
            f"{config.get('head_layers', 1) + 1} layers "
            f"({config.get('hidden_dim', '?')} hidden units): A (audio), T (text), AT (fused student)",
            "", "## Protocol", ""]
    if isinstance(card.protocol, Mapping):
        out += _bullets(card.protocol)
    elif card.protocol:
        out.append(str(card.protocol))
    else:
        out.append("Not recorded.")
    if card.hyperparameters:
        out += ["", "Final model hyperparameters:", ""] + _bullets(card.hyperparameters)
    if config.get("temperatures"):
        out += ["", "Calibration: every reading divides each head's logits by its temperature, fitted on the final "
                "model's validation split by the soft-label negative log-likelihood (`amber2.calibration`; the top "
                "class never changes):", ""] + _bullets(config["temperatures"])
    if config.get("fused_reading") == "arbitrated":
        out += ["", f"Fused reading: arbitrated (`amber2.arbitration`). The fused distribution a reading shows is "
                f"the voice and words heads' mixture, each weighted by Eq. 5 with the fusion head in the raters' "
                f"place (kappa {config.get('reading_kappa')}), at temperature {config.get('reading_temperature')} "
                f"fitted on the validation split; `python -m amber2 analyze --fused-reading student` shows the "
                f"fusion head itself, whose metrics the paper's tables give."]
    if card.command:
        out += ["", "Trained with:", "", "```bash", card.command.strip(), "```"]
    out += ["", "## Results", ""]
    if card.metrics:
        out += [card.metrics_note, ""]
        out += metric_table(card.metrics)
    else:
        out.append("No evaluation recorded.")
    out += ["", "## Licences", "", f"These weights: **{licence}**.", ""]
    out += [f"- {text}" for text in card.licences] or ["No training-data licence recorded."]
    out += ["", "## How to load", "", "```python", "from amber2 import Analyzer, load_model", "",
            f'model = load_model("{load_ref}")  # strict: refuses missing tensors or other encoders',
            f'analysis = Analyzer(model="{load_ref}").analyze("speech.wav")',
            "print(analysis.top(\"fused\"), analysis.fused)", "```", ""]
    return "\n".join(out)


def _read_config(model_dir: Path) -> dict:
    try:
        return json.loads((model_dir / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise HubError(f"{model_dir} has no {CONFIG_FILE}; write the checkpoint first (save_checkpoint)") from None
    except json.JSONDecodeError as err:
        raise HubError(f"{model_dir / CONFIG_FILE} is not valid JSON: {err}") from err


def write_model_card(model_dir: str | Path, info: Mapping[str, Any] | CardInfo) -> Path:
    """Write README.md (the model card) into a checkpoint folder; returns its path."""
    model_dir = Path(model_dir)
    card = CardInfo.from_mapping(info)
    path = model_dir / CARD_FILE
    path.write_text(render_card(card, _read_config(model_dir)), encoding="utf-8")
    return path


def _provenance(card: CardInfo) -> dict:
    """The part of the card kept inside config.json, so a bare checkpoint still says where it came from."""
    from amber2 import __version__

    keep = {"dataset": card.dataset, "n_items": card.n_items, "hyperparameters": card.hyperparameters,
            "license": card.weights_license(), "amber2_version": __version__}
    return json.loads(json.dumps({k: v for k, v in keep.items() if v is not None}, default=str))


def save_checkpoint(model: AmbER2Model, out_dir: str | Path, card_info: Mapping[str, Any] | CardInfo) -> Path:
    """Write model.safetensors + config.json (provenance filled in) + README.md into out_dir.

    The folder is assembled beside out_dir and checked by a strict reload with identical outputs before it
    replaces out_dir's checkpoint files, so a failed save never leaves a half-written checkpoint. Other files
    in out_dir are left alone.
    """
    out_dir = Path(out_dir)
    card = CardInfo.from_mapping(card_info)
    config = model.init_config()
    config["provenance"] = {**config["provenance"], **_provenance(card)}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        model.save_pretrained(staging, config=config)
        write_model_card(staging, card)
        _verify(model, staging)
        out_dir.mkdir(exist_ok=True)
        for name in CHECKPOINT_FILES:
            (staging / name).replace(out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _verify(model: AmbER2Model, folder: Path) -> None:
    """Reload strictly and compare outputs on random inputs: the saved folder must be this model."""
    reloaded = load_model(folder)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, model.audio_dim, generator=g)
    t = torch.randn(4, model.text_dim, generator=g)
    want, got = model.predict(a, t), reloaded.predict(a, t)
    if any(not torch.allclose(want[h], got[h]) for h in want):
        raise HubError(f"the checkpoint written to {folder} does not reproduce the model's outputs")


def push_to_hub(model_dir: str | Path, repo_id: str, token: str | None = None, private: bool = False,
                api: Any = None) -> str:
    """Create (or reuse) the model repo and upload the checkpoint folder; returns the repo URL.

    api: an ``huggingface_hub.HfApi``-like object (tests pass a recorder); by default a real HfApi, which
    needs a token (argument, HF_TOKEN or `hf auth login`) and the network.
    """
    import httpx2  # huggingface_hub's HTTP client: its transport errors are not OSErrors
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError
    from huggingface_hub.utils import validate_repo_id

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise HubError(f"no checkpoint folder at {model_dir}")
    missing = [name for name in CHECKPOINT_FILES if not (model_dir / name).is_file()]
    if missing:
        raise HubError(f"{model_dir} is not a complete checkpoint (missing {', '.join(missing)}); "
                       "write it with save_checkpoint first")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HubError(f"{repo_id!r} is not a valid Hub repo id (expected 'owner/name'): {err}") from None
    if api is None:
        if constants.is_offline_mode():
            raise HubError("the Hugging Face Hub is switched off (HF_HUB_OFFLINE=1); unset it to publish")
        token = token or get_token()
        if not token:
            raise HubError("no Hugging Face token: pass --token, set HF_TOKEN, or run `hf auth login`")
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True, token=token)
        api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(model_dir), token=token,
                          commit_message="Upload AmbER² checkpoint", ignore_patterns=[".*", "**/.*"])
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise HubError(f"the Hub refused the token for {repo_id} (HTTP {status}); check it has write "
                           "access") from None
        raise HubError(f"the Hub refused the upload to {repo_id}: {err}") from None
    except (ConnectionError, OSError, httpx2.TransportError) as err:  # offline mode, network failures
        raise HubError(f"could not reach the Hugging Face Hub to publish {repo_id} "
                       f"({type(err).__name__}: {err}); check the network, or publish later with "
                       "push_to_hub") from None
    return str(url) if url else f"https://huggingface.co/{repo_id}"
