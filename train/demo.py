"""The open demo corpus and the recipe of the shipped demo model (`python -m train demo`).

IEMOCAP and MSP-Podcast cannot be shipped, so the bundled checkpoint is trained on two real, open corpora
mapped into the 7-class demo space (neutral, happy, sad, angry, fear, disgust, surprise):

* RAVDESS speech: 24 actors voice eight emotions on two fixed, neutral sentences, each twice. The label is
  the actor's intended emotion (one vote; calm counts as neutral). The voice is informative, the words are not.
* EmotionLines (Friends) text with its real five-rater vote distributions, each utterance spoken by espeak-ng,
  a flat synthetic voice. The words are informative, the voice is not.

So every item has one informative modality and one weak one: the situation AmbER²'s reliability-weighted
experts (Eq. 5) are designed for. Folds: RAVDESS by actor, EmotionLines by dialogue (5 folds each); the two
corpora share fold numbers, so every test fold holds both kinds of item.

Choices the paper does not make (it has no demo corpus), each a flag of `DemoConfig`:
* Compute budget: every clip costs one Whisper-base encoder pass over a 30 s padded window (0.4-0.6 s of a
  2-core CPU), so the shipped model uses both takes of the first RAVDESS sentence (`ravdess_statements=(1,)`,
  `ravdess_repetitions=(1, 2)`: 720 clips, all 24 actors, every emotion and intensity; sentence 2 is the same
  actors, emotions and intensities again, and stays unseen, so the app's sentence-2 example clips are held
  out) and 1,500 EmotionLines utterances (about 25 min of feature extraction on a fresh 2-core machine, then
  5 min of protocol). 1,500 rather than the 600 of the first demo model: the text head learned its words from
  too few utterances (text-only JS 0.600 at 600, 0.528 at 1,500).
* EmotionLines subset (`emotionlines_max` of 14,503 utterances): whole dialogues only, so a dialogue never
  straddles folds; dialogues are taken in decreasing order of their share of utterances whose majority vote
  is not neutral (55% of EmotionLines has a neutral majority; RAVDESS brings neutral and calm clips too),
  ties broken by a hash of the dialogue's text (so the choice does not depend on file order or ids),
  skipping any dialogue that would overflow the budget.
* Folds of the chosen dialogues are dealt round-robin in that hashed order, so the five folds are equal-sized.
* Speech: espeak-ng voice `en-us`, 150 words per minute, WAVs cached by a hash of (voice, speed, text).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AMBER2_SHARED", ROOT.parent / "shared"))
DEMO_SPACE = "demo7"
NEUTRAL = 0   # index of "neutral" in demo7 (DESIGN.md class order)
ESPEAK_TIMEOUT_S = 30.0
# EmotionLines' Windows-1252 punctuation, should it arrive as raw C1 control characters, read as ASCII
# (train.datasets already repairs it to typographic quotes, which espeak-ng reads correctly). Changing this
# table changes the spoken audio, hence the feature cache keys.
_SPEAKABLE = str.maketrans({"\u0091": "'", "\u0092": "'", "\u0093": '"', "\u0094": '"', "\u0085": "...",
                            "\u0096": "-", "\u0097": "-"})


class DemoError(RuntimeError):
    """The demo corpus cannot be built (missing data, espeak-ng absent or failing); message for a person."""


@dataclass
class DemoConfig:
    """Where the demo's data lies and how its corpus is made."""

    ravdess_root: Path = SHARED / "data" / "ravdess"
    emotionlines_root: Path = SHARED / "data" / "emotionlines"
    emotionlines_max: int = 1500
    ravdess_repetitions: tuple[int, ...] = (1, 2)
    ravdess_statements: tuple[int, ...] = (1,)
    folds: int = 5
    voice: str = "en-us"
    words_per_minute: int = 150
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get(
        "AMBER2_CACHE", Path.home() / ".cache" / "amber2")) / "demo")

    @property
    def speech_dir(self) -> Path:
        return Path(self.cache_dir) / "speech"


def _content_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _majority(votes: np.ndarray) -> int:
    return int(np.argmax(votes))


RAVDESS_FIELDS = ("modality", "channel", "emotion", "intensity", "statement", "repetition", "actor")


def ravdess_field(item_id: str, name: str) -> int:
    """One numeric field of a RAVDESS clip name MM-VV-EE-II-SS-RR-AA, e.g. "statement" (1 or 2)."""
    return int(Path(item_id).name.split("-")[RAVDESS_FIELDS.index(name)])


def select_dialogues(items: Sequence, max_items: int, folds: int = 5) -> list:
    """Whole dialogues (items grouped by ``group``) up to ``max_items`` utterances, most emotional first.

    Returns copies of the chosen items, in dialogue order, with ``fold`` dealt round-robin over the chosen
    dialogues. Deterministic: the order depends only on the votes and the text.
    """
    dialogues: dict[str, list] = defaultdict(list)
    for item in items:
        dialogues[item.group].append(item)

    def rank(group: str) -> tuple[float, str]:
        utts = dialogues[group]
        emotional = np.mean([_majority(u.votes) != NEUTRAL for u in utts])
        return (-float(emotional), _content_hash("\n".join(u.transcript for u in utts)))

    chosen, total = [], 0
    for group in sorted(dialogues, key=rank):
        size = len(dialogues[group])
        if total + size <= max_items:
            chosen.append(group)
            total += size
    order = sorted(chosen, key=lambda g: _content_hash("\n".join(u.transcript for u in dialogues[g])))
    fold_of = {g: i % folds for i, g in enumerate(order)}
    return [replace(u, fold=fold_of[g]) for g in chosen for u in dialogues[g]]


def speakable(text: str) -> str:
    """The transcript as espeak-ng should read it (C1 punctuation as ASCII, spaces collapsed)."""
    return " ".join(text.translate(_SPEAKABLE).split())


def synthesize(text: str, directory: Path, voice: str = "en-us", words_per_minute: int = 150) -> Path:
    """Speak ``text`` with espeak-ng into a cached WAV (written atomically); returns its path."""
    if shutil.which("espeak-ng") is None:
        raise DemoError("espeak-ng is not installed; install it (scripts/system-deps.sh or "
                        "`apt-get install espeak-ng`) to build the demo corpus")
    spoken = speakable(text)
    path = Path(directory) / f"{_content_hash(f'{voice}|{words_per_minute}|{spoken}')}.wav"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".wav.tmp")
    os.close(fd)
    try:
        # "--" keeps an utterance starting with "-" from being read as an option
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", tmp, "--", spoken],
                       check=True, capture_output=True, timeout=ESPEAK_TIMEOUT_S)
        os.replace(tmp, path)
    except subprocess.TimeoutExpired as exc:
        raise DemoError(f"espeak-ng took longer than {ESPEAK_TIMEOUT_S:.0f} s on {spoken[:60]!r}") from exc
    except subprocess.CalledProcessError as exc:
        raise DemoError(f"espeak-ng failed on {spoken[:60]!r}: {exc.stderr.decode(errors='replace')}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def build_demo_corpus(cfg: DemoConfig = DemoConfig(), progress: bool = True):
    """RAVDESS voices + spoken EmotionLines dialogues, as one demo7 ``Corpus`` with 5 shared folds."""
    from tqdm.auto import tqdm

    from train.datasets import Corpus, load_dataset

    ravdess = load_dataset("ravdess", Path(cfg.ravdess_root), space=DEMO_SPACE)
    ravdess.items = [it for it in ravdess.items if ravdess_field(it.id, "repetition") in cfg.ravdess_repetitions
                     and ravdess_field(it.id, "statement") in cfg.ravdess_statements]
    lines = load_dataset("emotionlines", Path(cfg.emotionlines_root), space=DEMO_SPACE)
    if ravdess.space.classes != lines.space.classes:
        raise DemoError("RAVDESS and EmotionLines loaded into different label spaces")
    chosen = select_dialogues(lines.items, cfg.emotionlines_max, cfg.folds)
    spoken = [replace(item, audio=synthesize(item.transcript, cfg.speech_dir, cfg.voice, cfg.words_per_minute))
              for item in tqdm(chosen, desc="espeak-ng (EmotionLines)", unit="utt", disable=not progress)]
    voices = [replace(item, id=f"ravdess/{item.id}", group=f"ravdess/{item.group}",
                      fold=item.fold % cfg.folds) for item in ravdess.items]
    spoken = [replace(item, id=f"emotionlines/{item.id}", group=f"emotionlines/{item.group}")
              for item in spoken]
    skipped = dict(Counter(ravdess.skipped) + Counter(lines.skipped))
    return Corpus(name="RAVDESS + EmotionLines demo", space=ravdess.space, items=voices + spoken, skipped=skipped)


# ----------------------------------------------------------------------------------------------------------
# `python -m train demo`

DEMO_OUT = ROOT / "assets" / "amber2-demo"
DEMO_REPORT = ROOT / "assets" / "demo-report"
# The paper's protocol (5 folds x 5 seeds x 30 epochs, full grid): cheap once features are cached.
DEMO_PROTOCOL = {"n_folds": 5, "seeds": (0, 1, 2, 3, 4), "max_epochs": 30}
LICENCES = [
    "RAVDESS (Livingstone & Russo 2018, PLoS ONE 13(5): e0196391) is CC BY-NC-SA 4.0; these weights are derived "
    "from it and are shared under CC BY-NC-SA 4.0: attribution, non-commercial use only, share-alike.",
    "EmotionLines (Hsu et al. 2018, LREC) is released for research use; its transcripts and votes were used "
    "for training only and are not redistributed here.",
]


def corpus_description(corpus, cfg: DemoConfig) -> dict:
    """Counts and recipe of the demo corpus, for the model card and the report."""
    ravdess = [it for it in corpus.items if it.id.startswith("ravdess/")]
    lines = [it for it in corpus.items if it.id.startswith("emotionlines/")]
    statements = ", ".join(map(str, cfg.ravdess_statements))
    takes = ", ".join(map(str, cfg.ravdess_repetitions))
    return {
        "corpus": "AmbER² open demo corpus (demo7)",
        "ravdess_clips": len(ravdess),
        "ravdess_actors": len({it.group for it in ravdess}),
        "emotionlines_utterances": len(lines),
        "emotionlines_dialogues": len({it.group for it in lines}),
        "recipe": (
            f"{len(ravdess)} RAVDESS speech clips (all {len({it.group for it in ravdess})} actors, every emotion "
            f"and intensity; sentence(s) {statements}, take(s) {takes}; label = the actor's intended emotion, "
            f"one vote; calm counted as neutral; transcript = the clip's fixed sentence) plus {len(lines)} "
            f"EmotionLines "
            f"utterances from {len({it.group for it in lines})} whole Friends dialogues (their five raters' vote "
            f"distributions; dialogues chosen by decreasing share of non-neutral majority votes, at most "
            f"{cfg.emotionlines_max} utterances) spoken by espeak-ng (voice {cfg.voice}, "
            f"{cfg.words_per_minute} words per minute). Each item has one informative modality (RAVDESS: "
            f"the voice; EmotionLines: the words) and one weak one. Folds: RAVDESS by actor, EmotionLines by "
            f"dialogue, 5 folds."),
    }


def write_demo_readme(report_dir: Path, card: dict, model_dir: Path) -> Path:
    """README.md beside the demo's report: what the corpus is, how to rebuild it, the licences."""
    demo = card["demo"]
    text = "\n".join([
        "# The demo model's run", "",
        f"`report.md` and the figures in this folder are the cross-validated comparison (CB-CE vs AmbER²) "
        f"behind the bundled checkpoint `{model_dir.name}/`.", "",
        "## Corpus", "", demo["recipe"], "",
        f"- RAVDESS clips: {demo['ravdess_clips']} ({demo['ravdess_actors']} actors)",
        f"- EmotionLines utterances: {demo['emotionlines_utterances']} ({demo['emotionlines_dialogues']} dialogues)",
        "", "## Reproduce", "", "```bash", card["command"], "```", "",
        "## Licences", "", *[f"- {line}" for line in card["licences"]], ""])
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def build_parser():
    import argparse

    from train.run import add_output_flags, add_protocol_flags

    p = argparse.ArgumentParser(prog="python -m train demo", description=(
        "Rebuild the bundled demo model: RAVDESS voices + EmotionLines votes spoken by espeak-ng, CB-CE vs "
        "AmbER² through the protocol, report into --report-dir, checkpoint into --out."))
    p.add_argument("--out", type=Path, default=DEMO_OUT, help=f"checkpoint folder (default {DEMO_OUT})")
    p.add_argument("--report-dir", type=Path, default=DEMO_REPORT, help=f"report folder (default {DEMO_REPORT})")
    p.add_argument("--ravdess-root", type=Path, default=DemoConfig.ravdess_root)
    p.add_argument("--emotionlines-root", type=Path, default=DemoConfig.emotionlines_root)
    p.add_argument("--emotionlines-max", type=int, default=DemoConfig.emotionlines_max,
                   help="most EmotionLines utterances (whole dialogues)")
    p.add_argument("--ravdess-repetitions", type=int, nargs="+", default=list(DemoConfig.ravdess_repetitions),
                   choices=(1, 2), help="which of each RAVDESS sentence's two takes to use (default: 1 2)")
    p.add_argument("--ravdess-statements", type=int, nargs="+", default=list(DemoConfig.ravdess_statements),
                   choices=(1, 2), help="RAVDESS sentences: 1 'Kids are talking by the door', 2 'Dogs are "
                                        "sitting by the door' (default: 1)")
    p.add_argument("--voice", default=DemoConfig.voice, help="espeak-ng voice")
    p.add_argument("--words-per-minute", type=int, default=DemoConfig.words_per_minute)
    p.add_argument("--work-dir", type=Path, help="protocol state (default: CACHE_DIR/protocol-<settings hash>)")
    add_output_flags(p, DemoConfig().cache_dir)
    add_protocol_flags(p, {**DEMO_PROTOCOL, "device": "auto"})
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m train demo`."""
    import dataclasses
    import json
    import sys

    from train.run import (RunConfig, configure_logging, guarded, protocol_from_args, redact_command,
                           run_corpus, summary_text)

    args = build_parser().parse_args(argv)
    configure_logging()

    def body() -> int:
        if args.emotionlines_max < 0:
            raise DemoError("--emotionlines-max must be 0 or more")
        protocol = protocol_from_args(args)
        cfg = DemoConfig(ravdess_root=args.ravdess_root, emotionlines_root=args.emotionlines_root,
                         emotionlines_max=args.emotionlines_max, folds=protocol.n_folds, voice=args.voice,
                         ravdess_repetitions=tuple(args.ravdess_repetitions),
                         ravdess_statements=tuple(args.ravdess_statements),
                         words_per_minute=args.words_per_minute, cache_dir=args.cache_dir)
        corpus = build_demo_corpus(cfg, progress=not args.no_progress)
        # The protocol state depends on the corpus recipe and the protocol settings: one folder per pair.
        recipe = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "cache_dir"}
        settings = _content_hash(json.dumps([recipe, protocol.fingerprint_dict()], sort_keys=True,
                                            default=str))[:10]
        run_cfg = RunConfig(out=args.out, model_dir=args.out, report_dir=args.report_dir,
                            work_dir=args.work_dir or Path(cfg.cache_dir) / f"protocol-{settings}",
                            audio_encoder=args.audio_encoder, text_encoder=args.text_encoder,
                            cache_dir=Path(cfg.cache_dir) / "features",
                            feature_batch_size=args.feature_batch_size, final_seed=args.final_seed,
                            push_to_hub=args.push_to_hub, private=args.private, token=args.token,
                            progress=not args.no_progress)
        command = "python -m train demo " + " ".join(argv if argv is not None else sys.argv[2:])
        card = {"demo": corpus_description(corpus, cfg), "licences": LICENCES,
                "command": redact_command(command)}
        outcome = run_corpus(corpus, run_cfg, protocol, card=card)
        write_demo_readme(Path(args.report_dir), card, Path(args.out))
        print(summary_text(outcome))
        return 0

    return guarded(body)
