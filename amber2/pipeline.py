"""Speech in, three distributions out: ``analyze(audio, transcript=None) -> Analysis``.

Whisper writes the transcript; the checkpoint's audio encoder makes the audio vector (for the demo model,
`whisper-base/L2+3+4-mean-loudnorm`: the same Whisper's blocks 2-4 run on the clip's own frames, pooled; for a
`whisper-base` checkpoint, the very encoder pass the transcript is decoded from, pooled over the clip's frames,
so one pass serves both: `amber2.encoders.speech_encoder` decides); the text vector comes from the transcript;
the AmbER² heads turn the two vectors into the audio, text and fused distributions.

The models load once per `Analyzer` and are reused; calls are serialised by a lock, so one `Analyzer` can
serve concurrent requests (e.g. gradio workers). The audio vector stays in the returned `Analysis`, so an
edited transcript is re-scored (`reanalyze_text`) without touching the audio again.

Choices where the paper is silent:
- Clips longer than Whisper's 30 s window: the transcript covers the whole clip (further windows decoded
  one after the other), the audio vector the first 30 s (as in training, `amber2.encoders`).
- A given transcript is used as is (surrounding whitespace stripped); ASR is skipped (so nothing is known
  of speech or language: `no_speech_prob` and `language` are None, `speech_heard` True).
- Whisper tells whether speech was heard and in which language (`amber2.asr.Transcription`, its thresholds named
  there); without speech it writes no words (as `whisper.transcribe` drops such windows).
- No words (an empty transcript, given or heard) mean no words reading: `has_words` is False, the text
  distribution is uniform (the words tell nothing, rather than the heads' reading of an empty input, which
  came out "neutral 98%") and the fused distribution is the audio one (the reading rests on the voice).
- The heads run on the CPU whatever `device` says: they are a few small matrices.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from amber2.asr import LANGUAGE_SURE
from amber2.audio import SAMPLE_RATE, AudioLimits, load_audio
from amber2.files import DEFAULT_MODEL
from amber2.encoders import load_audio_encoder, load_text_encoder, speech_encoder
from amber2.heads import FIELDS, TABLE, get_head
from amber2.labels import entropy
from amber2.metrics import js_distance
from amber2.model import ModelError

if TYPE_CHECKING:
    from amber2.asr import WhisperBackbone
    from amber2.model import AmbER2Model

MODEL_ENV = "AMBER2_MODEL"


def default_model_ref() -> str:
    """`$AMBER2_MODEL` when set, else the bundled `assets/amber2-demo/` checkpoint."""
    return os.environ.get(MODEL_ENV) or str(DEFAULT_MODEL)


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline does beyond the models: the transcription language, the models' own (None: Whisper
    detects it; another language Whisper is sure of is written as heard, `amber2.asr.transcription_language`),
    and what audio it accepts."""

    language: str | None = "en"
    limits: AudioLimits = field(default_factory=AudioLimits)


@dataclass
class Analysis:
    """The three distributions of one clip, over `classes`, with their ambiguity and disagreement.

    `entropy` (nats) measures how mixed each distribution is; `conflict` is the Jensen-Shannon distance
    (natural log, in [0, sqrt(ln 2)]) between the audio and the text distributions. `audio_embedding` is the
    clip's audio vector, kept so that `Analyzer.reanalyze_text` need not encode the audio again.

    What Whisper heard in the first 30 s (None: not measured, a transcript was given): `no_speech_prob`, its
    probability that there is no speech; `speech_heard`, its verdict (`amber2.asr.speech_heard`);
    `language` and `language_prob`, the language it detected and how sure it is (None with an English-only
    Whisper)."""

    transcript: str
    classes: list[str]
    audio: np.ndarray
    text: np.ndarray
    fused: np.ndarray
    entropy: dict[str, float]
    conflict: float
    duration: float
    speech_heard: bool = True
    no_speech_prob: float | None = None
    language: str | None = None
    language_prob: float | None = None
    audio_embedding: np.ndarray | None = field(default=None, repr=False, compare=False)
    audio_encoder: str | None = field(default=None, repr=False, compare=False)

    @property
    def has_words(self) -> bool:
        """Whether there are words to read: without them the text distribution is uniform and the fused one
        is the audio one (see the module docstring)."""
        return bool(self.transcript.strip())

    @property
    def language_heard(self) -> str | None:
        """The language spoken when Whisper heard speech and is at least `amber2.asr.LANGUAGE_SURE` sure of
        it, else None."""
        sure = self.language_prob is not None and self.language_prob >= LANGUAGE_SURE
        return self.language if self.speech_heard and sure else None

    @property
    def language_name(self) -> str | None:
        """`language_heard` in words ("French"), from Whisper's own table of languages."""
        from whisper.tokenizer import LANGUAGES

        code = self.language_heard
        return None if code is None else LANGUAGES.get(code, code).title()

    def top(self, head: str) -> str:
        """Most probable class of head "audio", "text" or "fused" (or "A", "T", "AT"); the one place the
        top class is read off a distribution."""
        return self.classes[int(np.argmax(getattr(self, get_head(head).field)))]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: transcript, classes, audio, text, fused, entropy, conflict, duration, what Whisper
        heard (speech_heard, no_speech_prob, language, language_prob) and has_words (no embedding)."""
        return {
            "transcript": self.transcript,
            "classes": list(self.classes),
            **{key: [float(x) for x in getattr(self, key)] for key in FIELDS},
            "entropy": {k: float(v) for k, v in self.entropy.items()},
            "conflict": float(self.conflict),
            "duration": float(self.duration),
            "speech_heard": bool(self.speech_heard),
            "no_speech_prob": _optional_float(self.no_speech_prob),
            "language": self.language,
            "language_prob": _optional_float(self.language_prob),
            "has_words": self.has_words,
        }


# What Whisper heard in the audio: kept when only the words change (`Analyzer.reanalyze_text`).
HEARING = ("speech_heard", "no_speech_prob", "language", "language_prob")


class Analyzer:
    """Loaded models (checkpoint, Whisper, text encoder) and the analysis of clips with them."""

    def __init__(self, model: "str | Path | AmbER2Model | None" = None, whisper: str | None = None,
                 device: str | None = None, config: PipelineConfig = PipelineConfig()) -> None:
        """`model`: a checkpoint folder or Hub repo id (default `default_model_ref()`), or a loaded
        `AmbER2Model`. `whisper`: the Whisper model that transcribes; None (default) uses the checkpoint's own
        Whisper audio encoder when it has one (one shared encoder pass), else "base". Naming a different
        Whisper than the checkpoint's costs a second encoder pass per clip."""
        from amber2.model import AmbER2Model, load_model

        if isinstance(model, AmbER2Model):
            self.model = model.eval()
        else:
            self.model = load_model(_existing(model if model is not None else default_model_ref()))
        self.classes = list(self.model.classes)
        self.device, self.config = device, config
        self._lock = threading.RLock()
        # An audio encoder that also transcribes: a Whisper encoder lends its own Whisper when it is the one
        # asked for (one window pass serves both where its pooling allows); any other encoder is paired
        # with a separately loaded Whisper, loaded on first need.
        self.audio_encoder = speech_encoder(load_audio_encoder(self.model.audio_encoder, device=device),
                                          whisper, device)
        self.text_encoder = load_text_encoder(self.model.text_encoder, device=device)
        for role, encoder, dim in (("audio", self.audio_encoder, self.model.audio_dim),
                                   ("text", self.text_encoder, self.model.text_dim)):
            if encoder.dim != dim:
                raise ModelError(f"the checkpoint takes {dim}-d {role} vectors but {encoder.name!r} makes "
                                 f"{encoder.dim}-d ones: the checkpoint's config.json is inconsistent")

    @property
    def asr(self) -> "WhisperBackbone":
        """The Whisper model that transcribes (loaded on first use when it is not the audio encoder's)."""
        return self.audio_encoder.asr

    def analyze(self, audio: Any, transcript: str | None = None) -> Analysis:
        """Analyse one clip: a file path, a 16 kHz array, or gradio's (rate, array). With `transcript`,
        ASR is skipped and those words are scored. Bad audio raises `amber2.audio.AudioError`."""
        if transcript is not None and not isinstance(transcript, str):
            raise TypeError(f"transcript must be a str or None, got {type(transcript).__name__}")
        samples = load_audio(audio, limits=self.config.limits)
        with self._lock:
            heard, vector = self.audio_encoder.hear_and_embed(samples, transcript, self.config.language)
            hearing = {"speech_heard": heard.speech, "no_speech_prob": heard.no_speech_prob,
                       "language": heard.language, "language_prob": heard.language_prob}
            return self._score(vector, heard.text.strip(), len(samples) / SAMPLE_RATE, hearing)

    def reanalyze_text(self, previous: Analysis, transcript: str) -> Analysis:
        """`previous` with its text and fused distributions recomputed for an edited `transcript`; the
        cached audio vector, and what Whisper heard in the audio, are reused (the audio is not encoded again)."""
        if not isinstance(transcript, str):
            raise TypeError(f"transcript must be a str, got {type(transcript).__name__}")
        if previous.audio_embedding is None:
            raise ModelError("This analysis carries no audio embedding (it did not come from "
                             "Analyzer.analyze); analyze the audio again.")
        if previous.audio_encoder != self.model.audio_encoder:
            raise ModelError(f"This analysis was made with audio encoder {previous.audio_encoder!r}, but this "
                             f"model uses {self.model.audio_encoder!r}; analyze the audio again.")
        with self._lock:
            hearing = {key: getattr(previous, key) for key in HEARING}
            return self._score(previous.audio_embedding, transcript.strip(), previous.duration, hearing)

    def _score(self, audio_vector: np.ndarray, transcript: str, duration: float, hearing: dict) -> Analysis:
        """The heads on the two vectors; `hearing`: the `HEARING` fields of the Analysis."""
        return self.score_many(np.asarray(audio_vector)[None], [transcript], [duration], [hearing])[0]

    def score_many(self, audio_vectors: np.ndarray, transcripts: list[str], durations: list[float],
                   hearings: list[dict]) -> list[Analysis]:
        """One `Analysis` per row of (N, D) `audio_vectors` and its transcript (already stripped), in one
        text-encoder batch and one pass of the heads; `hearings`: each one's `HEARING` fields. The same
        numbers, up to float rounding, as scoring each alone."""
        if not transcripts:
            return []
        text_vectors = self.text_encoder.embed(list(transcripts))
        device = next(self.model.parameters()).device  # CPU unless the caller passed a model moved elsewhere
        audio_vectors = np.asarray(audio_vectors, np.float32)
        probs = self.model.predict(torch.from_numpy(audio_vectors).to(device),
                                   torch.from_numpy(text_vectors).to(device))
        probs = {h.field: probs[h.key].double().cpu().numpy().reshape(len(transcripts), -1) for h in TABLE}
        out = []
        for i, (transcript, duration, hearing) in enumerate(zip(transcripts, durations, hearings)):
            dists = {key: p[i] for key, p in probs.items()}
            if not transcript:
                dists = without_words(dists)
            out.append(Analysis(
                transcript=transcript, classes=list(self.classes), **dists,
                entropy={key: float(entropy(p)) for key, p in dists.items()},
                conflict=float(js_distance(dists["audio"], dists["text"])[0]), duration=float(duration),
                **hearing, audio_embedding=np.array(audio_vectors[i], np.float32, copy=True),
                audio_encoder=self.model.audio_encoder))
        return out


def without_words(dists: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The distributions of a clip with no words: the text one uniform (the words tell nothing), the fused
    one the audio one (the heads' fused reading of an empty text is not a reading of both)."""
    n = len(dists["audio"])
    return {"audio": dists["audio"], "text": np.full(n, 1.0 / n), "fused": dists["audio"].copy()}


def _optional_float(x: float | None) -> float | None:
    return None if x is None else float(x)


def _existing(ref: str | Path) -> str | Path:
    """`ref` unchanged, or a ValueError saying how to get a model when the bundled default is missing."""
    if Path(ref) == DEFAULT_MODEL and not DEFAULT_MODEL.is_dir():
        raise ModelError(f"No model checkpoint at {DEFAULT_MODEL}. Train the demo model with "
                         f"`python -m train demo`, or pass a checkpoint folder or Hub repo id "
                         f"(--model, or the {MODEL_ENV} environment variable).")
    return ref


_DEFAULT: Analyzer | None = None
_DEFAULT_LOCK = threading.Lock()


def default_analyzer() -> Analyzer:
    """The process-wide `Analyzer` of the default checkpoint, created on first use."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Analyzer()
        return _DEFAULT


def analyze(audio: Any, transcript: str | None = None) -> Analysis:
    """`Analyzer.analyze` with the default checkpoint (models load on the first call)."""
    return default_analyzer().analyze(audio, transcript)
