"""Does the fused head read voices and words as the app meets them? A check set of what the project never
trained on, each source scored as the app scores a clip.

    python -m train evaluate --model assets/amber2-demo --dataset fused [--root ../shared/data]

The sources (ROOT is the shared data folder; a source whose data is missing is left out with a note):

* ``emovo-whisper``: every EMOVO clip (Italian actors, 7 emotions) with the words Whisper writes for it, as
  `Analyzer.analyze` reads an upload. Truth: the acted emotion.
* ``emovo-plain-words``: every EMOVO clip with a plain English sentence typed in (`reanalyze_text`; the
  neutral sentences of assets/eval/plain-sentences.tsv, in turn). Truth: the acted emotion.
* ``emovo-neutral-voice-emotional-words``: EMOVO's neutral clips with each emotional sentence of that file
  typed in, in turn. Truth: the sentence's emotion.
* ``flat-voice-words``: every sentence of that file spoken by espeak-ng voices outside the demo's flat-voice
  pool, transcript given. Truth: the sentence's emotion.

Per source: UAR (over the classes present) of the voice, words and fused heads, and the share of clips whose
fused top class is neither the voice's nor the words' ("invented"). What Whisper heard and each clip's voice
vector are cached per audio encoder (CACHE_DIR/fused-check), so scoring another checkpoint of the same
encoders costs only the heads.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from amber2.arbitration import invents
from amber2.files import atomic_write
from amber2.heads import FIELDS
from train.eval_sets import load_checkpoint, load_sentences, load_voices
from train.features import sha1_file, sha1_text

log = logging.getLogger("train")

SOURCES = ("emovo-whisper", "emovo-plain-words", "emovo-neutral-voice-emotional-words", "flat-voice-words")
# espeak-ng voices none of train.demo.POOL_VOICES uses (variant, words per minute, pitch)
CHECK_VOICES = (("en-us+f2", 150, 55), ("en-gb-x-rp+m2", 160, 45), ("en-us+Storm", 145, 50))
TIMELINE_SECONDS = 240.0     # the recording the timeline check joins from EMOVO clips
SAVE_EVERY = 50              # clips heard between saves of the hearing cache


@dataclass
class HeadReadings:
    """The three heads' distributions over N items of one source, and each item's true class index."""

    audio: np.ndarray
    text: np.ndarray
    fused: np.ndarray
    truth: np.ndarray


def invented(readings: HeadReadings) -> np.ndarray:
    """(N,) whether the fused top class is neither the voice's nor the words' top class."""
    return invents(readings.audio, readings.text, readings.fused)


def fused_scores(readings: HeadReadings, classes: Sequence[str]) -> dict:
    """UAR of each head over the classes present in the truth, and the invented share."""
    from train.scoring import uar

    present = sorted(set(readings.truth.tolist()))
    out = {"n": int(len(readings.truth)), "classes": [classes[k] for k in present]}
    for f in FIELDS:
        out[f"uar_{f}"] = uar(readings.truth, getattr(readings, f).argmax(1), present)[0]
    out["invented"] = float(invented(readings).mean())
    return out


def fused_table(scores: dict[str, dict]) -> list[str]:
    """Markdown rows: one per source, UAR of each head and the invented share."""
    lines = ["| source | items | voice UAR | words UAR | fused UAR | fused top neither expert's |",
             "|---|---|---|---|---|---|"]
    for name, s in scores.items():
        lines.append(f"| {name} | {s['n']} | {s['uar_audio']:.3f} | {s['uar_text']:.3f} | {s['uar_fused']:.3f} | "
                     f"{s['invented']:.1%} |")
    return lines


def readings_of(analyses: Sequence, truth: Sequence[int]) -> HeadReadings:
    """HeadReadings from `amber2.pipeline.Analysis` objects."""
    return HeadReadings(*(np.stack([getattr(a, f) for a in analyses]) for f in FIELDS),
                        truth=np.asarray(truth, dtype=np.int64))


# ----------------------------------------------------------------------------------------------------------
# What Whisper heard, cached per clip


def heard(analyzer, paths: Sequence[Path], cache: Path, progress: bool = True) -> list:
    """`Analyzer.analyze` of each clip, through a cache of (transcript, voice vector, what Whisper heard) keyed
    by the file's sha1 and the audio encoder; the heads are re-run on the cached vectors with
    `Analyzer.score_many`, so every model of the same encoders reads what the app would."""
    from tqdm.auto import tqdm

    from amber2.pipeline import HEARING

    cache.mkdir(parents=True, exist_ok=True)
    store = cache / (sha1_text(analyzer.model.audio_encoder)[:12] + ".npz")
    known: dict[str, dict] = {}
    if store.exists():
        with np.load(store, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            known = {k: {**m, "vector": z["vectors"][i]} for i, (k, m) in enumerate(meta.items())}
    keys = [sha1_file(p) for p in paths]
    todo = [(k, p) for k, p in zip(keys, paths) if k not in known]

    def save() -> None:   # whole files only: an interrupted run keeps what it heard up to the last save
        meta = {k: {n: v for n, v in m.items() if n != "vector"} for k, m in known.items()}

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, meta=json.dumps(meta), vectors=np.stack([m["vector"] for m in known.values()]))

        atomic_write(store, write)

    for i, (k, p) in enumerate(tqdm(todo, desc="Whisper hears the check clips", unit="clip", disable=not progress)):
        a = analyzer.analyze(p)
        known[k] = {"transcript": a.transcript, "duration": a.duration, "vector": a.audio_embedding,
                    **{h: getattr(a, h) for h in HEARING}}
        if (i + 1) % SAVE_EVERY == 0 or i + 1 == len(todo):
            save()
    rows = [known[k] for k in keys]
    return analyzer.score_many(np.stack([r["vector"] for r in rows]), [r["transcript"] for r in rows],
                               [r["duration"] for r in rows], [{h: r[h] for h in HEARING} for r in rows])


def with_words(analyzer, analyses: Sequence, sentences: Sequence[str]) -> list:
    """Each analysis re-read with the words typed in (`Analyzer.reanalyze_text`, in one batch)."""
    from amber2.pipeline import HEARING

    return analyzer.score_many(np.stack([a.audio_embedding for a in analyses]), [s.strip() for s in sentences],
                               [a.duration for a in analyses],
                               [{h: getattr(a, h) for h in HEARING} for a in analyses])


# ----------------------------------------------------------------------------------------------------------
# The check set


def first_per_class(items: Sequence, per_class: int) -> list:
    """The first `per_class` items of each majority class, in the given order."""
    taken: dict[int, int] = {}
    chosen = []
    for it in items:
        label = int(np.argmax(it.votes))
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            chosen.append(it)
    return chosen


def emovo_items(analyzer, shared_data: Path) -> list:
    """EMOVO's clips in the model's label space, sorted by file (empty, with a note, when it is missing)."""

    root = Path(shared_data) / "emovo"
    if not root.exists():
        log.warning("fused check: EMOVO not found at %s; its sources are left out", root)
        return []
    return sorted(load_voices("emovo", root, analyzer.model.label_space).items, key=lambda it: str(it.audio))


def check_set(analyzer, emovo: Sequence, sentences_tsv: Path, cache: Path, progress: bool = True,
              per_class: int | None = None) -> dict[str, HeadReadings]:
    """source -> HeadReadings of `analyzer`'s model (see the module docstring); `emovo`: EMOVO's items
    (`emovo_items`), `per_class` caps them per emotion (None: all)."""
    from train.speech import synthesize

    classes = list(analyzer.classes)
    sentences, sentence_class = load_sentences(sentences_tsv, classes)
    neutral = classes.index("neutral")
    plain = [s for s, c in zip(sentences, sentence_class) if c == neutral]
    emotional = [(s, c) for s, c in zip(sentences, sentence_class) if c != neutral]
    out: dict[str, HeadReadings] = {}

    if emovo:
        items = first_per_class(emovo, per_class) if per_class is not None else list(emovo)
        truth = np.array([int(np.argmax(it.votes)) for it in items])
        clips = heard(analyzer, [it.audio for it in items], Path(cache), progress)
        out["emovo-whisper"] = readings_of(clips, truth)
        out["emovo-plain-words"] = readings_of(
            with_words(analyzer, clips, [plain[i % len(plain)] for i in range(len(clips))]), truth)
        calm = [a for a, t in zip(clips, truth) if t == neutral]
        if calm:
            voices = [calm[i % len(calm)] for i in range(len(emotional))]
            out["emovo-neutral-voice-emotional-words"] = readings_of(
                with_words(analyzer, voices, [s for s, _ in emotional]), [c for _, c in emotional])

    speech = Path(cache) / "speech"
    flat, truth = [], []
    for voice in CHECK_VOICES:
        for s, c in zip(sentences, sentence_class):
            flat.append(analyzer.analyze(synthesize(s, speech, *voice), transcript=s))
            truth.append(c)
    out["flat-voice-words"] = readings_of(flat, truth)
    return out


def interleaved(items: Sequence) -> list:
    """Items taken one class at a time in turn (each class in its given order), so neighbours differ."""
    by_class: dict[int, list] = {}
    for it in items:
        by_class.setdefault(int(np.argmax(it.votes)), []).append(it)
    queues = [by_class[k] for k in sorted(by_class)]
    out = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def timeline_check(analyzer, paths: Sequence[Path], seconds: float = TIMELINE_SECONDS, gap: float = 0.4) -> dict:
    """One recording of the clips joined (`gap` s of silence between them, up to `seconds`) through
    `amber2.timeline.analyze_timeline`: the share of speech segments whose fused top class is neither
    expert's, and whether the whole recording's fused summary names an expert's top class."""
    from amber2.audio import SAMPLE_RATE, load_audio
    from amber2.timeline import analyze_timeline

    pieces, total, silence = [], 0, np.zeros(int(gap * SAMPLE_RATE), np.float32)
    for path in paths:
        if total >= seconds * SAMPLE_RATE:
            break
        pieces += [load_audio(path), silence]
        total += len(pieces[-2]) + len(silence)
    timeline = analyze_timeline(analyzer, np.concatenate(pieces)[: int(seconds * SAMPLE_RATE)])
    speech = [s.analysis for s in timeline.segments if s.speech]
    made_up = [bool(invents(a.audio, a.text, a.fused)) for a in speech]
    summary = {f: timeline.summary.top(f) for f in FIELDS}
    return {"seconds": round(timeline.duration, 1), "clips": len(pieces) // 2, "segments": len(timeline.segments),
            "speech_segments": len(speech), "invented": float(np.mean(made_up)) if speech else 0.0,
            "summary": summary, "summary_fused_is_an_experts": summary["fused"] in (summary["audio"], summary["text"])}


def evaluate_fused(model_ref, shared_data: Path, sentences_tsv: Path, out: Path, cache_dir: Path,
                   progress: bool = True, per_class: int | None = None) -> dict:
    """The check set's scores for a checkpoint; writes OUT/evaluation.json and OUT/evaluation.md."""
    from amber2.files import atomic_write_text
    from amber2.pipeline import Analyzer

    analyzer = Analyzer(load_checkpoint(model_ref))
    emovo = emovo_items(analyzer, shared_data)
    readings = check_set(analyzer, emovo, sentences_tsv, Path(cache_dir) / "fused-check", progress, per_class)
    scores = {name: fused_scores(r, analyzer.classes) for name, r in readings.items()}
    result = {"model": str(model_ref), "dataset": "fused", "root": str(shared_data),
              "temperatures": analyzer.model.config.temperatures, "sources": scores}
    if emovo:
        log.info("fused check: a %.0f s recording of EMOVO clips through the timeline", TIMELINE_SECONDS)
        result["timeline"] = timeline_check(analyzer, [it.audio for it in interleaved(emovo)])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "evaluation.json", json.dumps(result, indent=1))
    atomic_write_text(out / "evaluation.md", "\n".join([f"# Fused-head check of {model_ref}", "",
                                                        *fused_table(scores), "", *timeline_lines(result), ""]))
    return result


def timeline_lines(result: dict) -> list[str]:
    """The timeline check in words (nothing when it was not run)."""
    t = result.get("timeline")
    if not t:
        return []
    s = t["summary"]
    return [f"Timeline: {t['clips']} EMOVO clips joined into {t['seconds']:.0f} s, {t['speech_segments']} speech "
            f"segments of {t['segments']}; fused top class neither expert's on {t['invented']:.1%} of them. Whole "
            f"recording: voice {s['audio']}, words {s['text']}, fused {s['fused']}"
            f" ({'an expert' if t['summary_fused_is_an_experts'] else 'neither expert'}'s reading)."]
