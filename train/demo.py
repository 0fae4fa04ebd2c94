"""The open demo corpus and the recipe of the shipped demo model (`python -m train demo`).

IEMOCAP and MSP-Podcast cannot be shipped, so the bundled checkpoint is trained on four real, open corpora
mapped into the 7-class demo space (neutral, happy, sad, angry, fear, disgust, surprise):

* voices: RAVDESS (English, 24 actors, 1,440 clips of two fixed neutral sentences) and nEMO (Polish, 9 actors,
  4,481 clips, 90 sentences each spoken in every emotion). The label is the actor's intended emotion (one
  vote; RAVDESS's calm counts as neutral). The voice is informative, the words are not.
* words: EmotionLines (Friends lines with five raters' votes) and GoEmotions (Reddit comments, its 27 labels
  mapped onto the demo classes by the release's own Ekman mapping, each label one vote). Each is paired with a
  flat synthetic voice. The words are informative, the voice is not.

So every item has one informative modality and one weak one: the situation AmbER²'s reliability-weighted
experts (Eq. 5) are designed for. Folds: RAVDESS and nEMO by speaker, EmotionLines by dialogue, GoEmotions at
random; the corpora share fold numbers, so every test fold holds every kind of item. EMOVO (Italian) is never
trained on: `python -m train evaluate` scores the shipped voice head on it.

Choices the paper does not make (it has no demo corpus), each a field of `DemoConfig` and a flag:
* The voice of text items (`text_audio`): "pool" pairs each text with one of 768 espeak-ng clips of plain
  sentences (24 voices x 32 sentences), chosen by a hash of the text; "spoken" has espeak-ng read the item.
  The pool costs at most 768 encoder passes instead of one per item, and keeps the voice head from learning
  to read words (measured in assets/amber2-demo/README.md).
* Budget: all voices and all EmotionLines lines; GoEmotions capped per majority class
  (`goemotions_per_class`), which keeps every comment of the rare classes (fear, disgust) and caps the
  common ones (neutral, joy), so the words head sees every emotion often.
* EmotionLines subsets (`emotionlines_max` < 14,503): whole dialogues, most emotional first, see
  `select_dialogues`.
"""
from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from amber2.errors import UserError
from amber2.files import ASSETS, SHARED, cache_root
from amber2.model import DEFAULT_TEXT_ENCODER
from train.cli import (LOSS_FIELDS, add_output_flags, add_protocol_flags, configure_logging, guarded, loss_name,
                       protocol_from_args, redact_command)
from train.datasets import LICENCES as CORPUS_LICENCES
from train.eval_sets import load_voices, voice_features
from train.features import sha1_text
from train.pairing import RULES, PairingConfig, pair_items
from train.speech import synthesize
from train.results import pooled_predictions, pooled_readings
from train.workflow import RunConfig, load_encoders, protocol_data, run_corpus, summary_text

log = logging.getLogger("train")
DEMO_SPACE = "demo7"
NEUTRAL = 0   # index of "neutral" in demo7 (DESIGN.md class order)


class DemoError(UserError, RuntimeError):
    """The demo corpus cannot be built (missing data, espeak-ng absent or failing); message for a person."""


# The flat voice that text-only items are paired with: espeak-ng reading plain sentences that are not in any
# corpus, in varied voices, speeds and pitches (voice, words per minute, pitch 0-99). Changing these changes the
# pool's audio, hence its feature cache keys. The previous demo model had the first 16 sentences x the first 4
# voices: its fused head learned those 64 vectors as "a text item" and misread flat voices it had not met (a
# neutral sentence in a new espeak voice came out 63% surprise while both experts said neutral). 768 clips in 24
# voices teach it that a flat voice means "trust the words" (measured in docs/demo-model.md).
POOL_SENTENCES = (
    "The next bus leaves at half past four.", "Please put the box on the second shelf.",
    "The report has twelve pages.", "We moved the meeting to room nine.", "The shop opens at eight.",
    "Turn left after the bridge.", "The printer is next to the window.", "I will send the file tomorrow.",
    "The train stops at every station.", "There are three chairs in the hall.",
    "The list is on the kitchen table.", "Her office is on the fourth floor.",
    "The package weighs two kilograms.", "We need four more forms.", "The road runs along the river.",
    "This street has six houses.",
    "The library closes at six on Fridays.", "Add two cups of flour to the bowl.",
    "The parking lot is behind the building.", "My phone number ends in seven.", "The form asks for your address.",
    "The lecture starts after lunch.", "Water boils at one hundred degrees.",
    "The blue folder is in the top drawer.", "The bridge is about a mile long.",
    "Our flight number is on the ticket.", "The lamp needs a new bulb.",
    "The museum is on the north side of the park.", "Each box holds ten cans.",
    "The store sells paper and pens.", "The second page lists the prices.", "The garden has a wooden fence.",
)
POOL_VOICES = (("en-us", 150, 50), ("en-gb", 160, 50), ("en-us+f3", 140, 50), ("en-gb-x-rp+m3", 170, 50),
               ("en-us+m4", 155, 40), ("en-gb+f4", 145, 65), ("en-029", 150, 50), ("en-gb-scotland+m5", 160, 45),
               ("en-us+f5", 165, 55), ("en-gb-x-gbclan+m6", 140, 40), ("en-gb-x-gbcwmd+f1", 155, 60),
               ("en-us+m7", 135, 35), ("en-us+f1", 150, 70), ("en-gb+m3", 145, 45), ("en-gb-x-rp+f5", 160, 55),
               ("en-029+m3", 165, 40), ("en-us+Andy", 150, 50), ("en-gb+Annie", 155, 60), ("en-us+Denis", 140, 45),
               ("en-gb+Edward", 165, 50), ("en-us+Gene", 150, 40), ("en-gb+Linda", 145, 60), ("en-us+Mike", 160, 50),
               ("en-gb-scotland+f3", 150, 55))


@dataclass
class DemoConfig:
    """Where the demo's data lies and how its corpus is made (each field a flag of `python -m train demo`)."""

    ravdess_root: Path = SHARED / "data" / "ravdess"
    nemo_root: Path = SHARED / "data" / "nemo"
    emotionlines_root: Path = SHARED / "data" / "emotionlines"
    goemotions_root: Path = SHARED / "data" / "goemotions"
    emotionlines_max: int = 14503
    goemotions_per_class: int = 1500
    text_audio: str = "pool"          # "pool": a flat-voice clip from POOL_*; "spoken": espeak-ng reads the item
    folds: int = 5
    voice: str = "en-us"
    words_per_minute: int = 150
    # real voices with real words, paired at the vector level (train.pairing); PairingConfig(rules=()) adds none
    pairing: PairingConfig = field(default_factory=PairingConfig)
    cache_dir: Path = field(default_factory=lambda: cache_root() / "demo")

    @property
    def speech_dir(self) -> Path:
        return Path(self.cache_dir) / "speech"


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
        return (-float(emotional), sha1_text("\n".join(u.transcript for u in utts)))

    chosen, total = [], 0
    for group in sorted(dialogues, key=rank):
        size = len(dialogues[group])
        if total + size <= max_items:
            chosen.append(group)
            total += size
    order = sorted(chosen, key=lambda g: sha1_text("\n".join(u.transcript for u in dialogues[g])))
    fold_of = {g: i % folds for i, g in enumerate(order)}
    return [replace(u, fold=fold_of[g]) for g in chosen for u in dialogues[g]]


def pool_job(text: str) -> tuple[str, tuple[str, int, int]]:
    """(pool sentence, espeak-ng voice) of a transcript's flat-voice clip: chosen by a hash of the text, so it
    never depends on file order."""
    index = int(sha1_text(text), 16) % (len(POOL_SENTENCES) * len(POOL_VOICES))
    voice, sentence = divmod(index, len(POOL_SENTENCES))
    return POOL_SENTENCES[sentence], POOL_VOICES[voice]


def pool_clip(text: str, cfg: DemoConfig) -> Path:
    """The flat-voice pool clip a transcript is paired with (synthesised on first use, then cached)."""
    sentence, voice = pool_job(text)
    return synthesize(sentence, cfg.speech_dir, *voice)


def select_per_class(items: Sequence, per_class: int) -> list:
    """At most `per_class` items of each majority class (ties to the first class), in hashed text order, so
    rare emotions (GoEmotions' disgust, fear) keep all their items while joy and neutral are capped."""
    chosen, taken = [], Counter()
    for item in sorted(items, key=lambda it: sha1_text(f"{it.id}|{it.transcript}")):
        cls = _majority(item.votes)
        if taken[cls] < per_class:
            taken[cls] += 1
            chosen.append(item)
    return chosen


def build_demo_corpus(cfg: DemoConfig = DemoConfig(), progress: bool = True):
    """RAVDESS + nEMO voices, EmotionLines + GoEmotions words, as one demo7 ``Corpus`` with shared folds.

    Voice items keep their own transcript (RAVDESS's two fixed sentences, nEMO's Polish sentences, each
    spoken in every emotion, so the words carry no label). Text items get a flat voice: a pool clip
    (`text_audio="pool"`) or espeak-ng reading the item (`"spoken"`)."""
    from tqdm.auto import tqdm

    from train.datasets import Corpus, load_dataset

    if cfg.text_audio not in ("pool", "spoken"):
        raise DemoError(f"text_audio must be 'pool' or 'spoken', got {cfg.text_audio!r}")
    opts = {"space": DEMO_SPACE, "n_folds": cfg.folds}
    voices = {name: load_dataset(name, Path(root), **opts)
              for name, root in (("ravdess", cfg.ravdess_root), ("nemo", cfg.nemo_root))}
    texts = {name: load_dataset(name, Path(root), **opts)
             for name, root in (("emotionlines", cfg.emotionlines_root), ("goemotions", cfg.goemotions_root))}
    spaces = {c.space.classes for c in [*voices.values(), *texts.values()]}
    if len(spaces) != 1:
        raise DemoError("the demo corpora loaded into different label spaces")
    texts["emotionlines"].items = select_dialogues(texts["emotionlines"].items, cfg.emotionlines_max, cfg.folds)
    texts["goemotions"].items = select_per_class(texts["goemotions"].items, cfg.goemotions_per_class)

    pooled = cfg.text_audio == "pool"
    items = [replace(it, id=f"{name}/{it.id}", group=f"{name}/{it.group}")
             for name, corpus in voices.items() for it in corpus.items]
    for name, corpus in texts.items():
        for it in tqdm(corpus.items, desc=f"flat voice ({name})", disable=not progress):
            audio = pool_clip(it.transcript, cfg) if pooled else synthesize(
                it.transcript, cfg.speech_dir, cfg.voice, cfg.words_per_minute)
            items.append(replace(it, id=f"{name}/{it.id}", group=f"{name}/{it.group}", audio=audio))
    skipped = sum((Counter(c.skipped) for c in [*voices.values(), *texts.values()]), Counter())
    space = voices["ravdess"].space
    return Corpus(name="AmbER² demo (RAVDESS + nEMO voices, EmotionLines + GoEmotions words)", space=space,
                  items=items, skipped=dict(skipped))


# ----------------------------------------------------------------------------------------------------------
# `python -m train demo`

DEMO_OUT = ASSETS / "amber2-demo"
DEMO_REPORT = ASSETS / "demo-report"
# The paper's protocol (5 folds x 5 seeds x 30 epochs, full grid): cheap once features are cached.
DEMO_PROTOCOL = {"n_folds": 5, "seeds": (0, 1, 2), "max_epochs": 30}
# Chosen by leave-one-corpus-out on the voice corpora and on EmotionLines/GoEmotions validation data
# (assets/amber2-demo/README.md has the table).
VOICE_CORPORA = ("ravdess", "nemo")     # the demo's voice items, by id prefix; the rest are text items
TRANSFER_AT = (0.3, 8.0)                 # (lambda_MAI, kappa) the shipped demo model was trained at
DEMO_AUDIO_ENCODER = "whisper-base/L2+3+4-mean-loudnorm-bf16"
DEMO_TEXT_ENCODER = DEFAULT_TEXT_ENCODER
DEMO_CORPORA = ("ravdess", "nemo", "emotionlines", "goemotions")
LICENCES = [*(CORPUS_LICENCES[name] for name in DEMO_CORPORA),
            "The texts and labels of EmotionLines and GoEmotions were used for training only and are not "
            "redistributed here."]


SOURCES = {
    "ravdess": "RAVDESS (English acted speech, 24 actors, two fixed neutral sentences; label = intended emotion, "
               "one vote; calm counted as neutral)",
    "nemo": "nEMO (Polish acted speech, 9 actors, 90 sentences each spoken in all six emotions; label = intended "
            "emotion, one vote)",
    "emotionlines": "EmotionLines (Friends dialogue lines, five raters' votes each)",
    "goemotions": "GoEmotions (English Reddit comments; its 27 labels mapped onto the demo classes with the "
                  "release's own Ekman mapping, each label one vote; at most {per_class} items per majority class)",
}


def corpus_description(corpus, cfg: DemoConfig) -> dict:
    """Counts and recipe of the demo corpus, for the model card and the report."""
    counts = Counter(it.id.split("/", 1)[0] for it in corpus.items)
    groups = {name: len({it.group for it in corpus.items if it.id.startswith(name + "/")}) for name in counts}
    flat = ("a flat-voice clip chosen by a hash of the text from a pool of "
            f"{len(POOL_SENTENCES) * len(POOL_VOICES)} espeak-ng clips ({len(POOL_SENTENCES)} plain sentences "
            f"x {len(POOL_VOICES)} voices)" if cfg.text_audio == "pool" else
            f"espeak-ng reading the item (voice {cfg.voice}, {cfg.words_per_minute} words per minute)")
    parts = [f"{counts.get(name, 0)} items of {SOURCES[name].format(per_class=cfg.goemotions_per_class)}"
             for name in SOURCES]
    return {
        "corpus": "AmbER² open demo corpus (demo7)",
        "counts": dict(counts), "groups": groups,
        "recipe": (
            "Voices: " + "; ".join(parts[:2]) + ". Words: " + "; ".join(parts[2:]) + f". Text items are paired "
            f"with {flat}, so their voice says nothing. Each item has one informative modality and one weak one. "
            f"Folds ({cfg.folds}): RAVDESS and nEMO by speaker, EmotionLines by dialogue, GoEmotions at random."),
    }


def protocol_dir(cache_dir: Path, recipe: dict, protocol) -> Path:
    """The protocol's state folder: one per corpus recipe (flat-voice pool and pairing included), encoders and
    protocol settings, so a changed recipe never meets another's folds, and a run with `--loss eq6` finds the
    folds the ablation of a default run already trained (and the reverse)."""
    import json

    settings = sha1_text(json.dumps([recipe, protocol.fingerprint_dict()], sort_keys=True, default=str))[:10]
    return Path(cache_dir) / f"protocol-{settings}"


def eq6_ablation(protocol, outcome, report: dict, work_dir: Path) -> list[str]:
    """Run the protocol again on the same items with the other named loss (Eq. 6 as written after a default
    run, the default after an Eq. 6 run; state in `work_dir`, resumable) and return the README lines comparing
    the two on the student head (Eq. 6 - default)."""
    from amber2.heads import HEADS
    from train.demo_report import ablation_lines
    from train.protocol import run_protocol
    from train.results import paired_bootstrap

    ran = loss_name(protocol)
    data = outcome.data
    result = run_protocol(data, ablation_protocol(protocol), work_dir, log=log.info)
    student = HEADS.index(protocol.student)
    default, eq6 = (result, outcome.result) if ran == "eq6" else (outcome.result, result)
    paired = paired_bootstrap(data.y, eq6.predictions["amber2"][:, student],
                              default.predictions["amber2"][:, student])
    default_report = result.to_dict() if ran == "eq6" else report
    eq6_report = report if ran == "eq6" else result.to_dict()
    return ablation_lines(default_report, eq6_report, paired)


def ablation_protocol(protocol):
    """The ProtocolConfig the ablation trains beside `protocol` (see `eq6_ablation`)."""
    from train.config import ProtocolConfig

    return ProtocolConfig(**{**protocol.to_dict(), **LOSS_FIELDS["default" if loss_name(protocol) == "eq6" else "eq6"]})


def transfer(corpus, cfg: DemoConfig, args, protocol) -> int:
    """`--transfer`: the voice head's leave-one-corpus-out UAR on RAVDESS and nEMO, printed as a table."""
    from train.features import extract_features
    from train.transfer import (check_corpus, fused_transfer_table, leave_one_corpus_out_readings,
                                transfer_table, voice_uar)

    audio, text = load_encoders(args.audio_encoder, args.text_encoder)
    feats = extract_features(corpus.items, audio, text, Path(cfg.cache_dir) / "features", args.feature_batch_size,
                             progress=not args.no_progress)
    data = pair_items(protocol_data(corpus, feats, protocol.n_folds, audio.name, text.name), cfg.pairing)
    lambda_mai, kappa = args.transfer_at
    readings = leave_one_corpus_out_readings(data, protocol, lambda_mai, kappa, VOICE_CORPORA)
    scores = {name: voice_uar(per_seed) for name, per_seed in readings.items()}
    check = {}
    if args.emovo_root.exists():      # scored after the choice is made, never chosen by
        emovo = load_voices("emovo", args.emovo_root, corpus.space.name)
        _, ef, truth = voice_features(emovo, (audio, text), Path(cfg.cache_dir) / "features",
                                      args.feature_batch_size, not args.no_progress)
        check["EMOVO"] = check_corpus(data, protocol, lambda_mai, kappa, ef.audio, ef.text, truth)
    print(f"voice head UAR on a voice corpus it never heard (lambda_MAI {lambda_mai:g}, kappa {kappa:g}, "
          f"weight decay {protocol.weight_decay:g}, dropout {protocol.dropout:g}, pairing "
          f"{' '.join(cfg.pairing.rules) or 'none'}):")
    print(transfer_table(scores, check))
    print("\nthe same models on the corpus left out, each clip with its own words:")
    print(fused_transfer_table(readings, corpus.space.classes))
    return 0


def build_parser():
    import argparse


    p = argparse.ArgumentParser(prog="python -m train demo", description=(
        "Rebuild the bundled demo model from ../shared/data: RAVDESS + nEMO voices and EmotionLines + GoEmotions "
        "words (paired with a flat-voice pool), CB-CE vs AmbER² through the protocol, report into --report-dir, "
        "checkpoint and card into --out. Every stage is cached and resumes where it stopped."))
    p.add_argument("--out", type=Path, default=DEMO_OUT,
                   help="folder that receives the checkpoint and its model card (default %(default)s)")
    p.add_argument("--report-dir", type=Path, default=DEMO_REPORT,
                   help="folder that receives the cross-validated report and its README (default %(default)s)")
    for name in ("ravdess", "nemo", "emotionlines", "goemotions"):
        p.add_argument(f"--{name}-root", type=Path, default=getattr(DemoConfig, f"{name}_root"),
                       help=f"where the {name} release is (default %(default)s)")
    p.add_argument("--emotionlines-max", type=int, default=DemoConfig.emotionlines_max,
                   help="most EmotionLines utterances to use, as whole dialogues, most emotional first "
                        "(default %(default)s: all)")
    p.add_argument("--goemotions-per-class", type=int, default=DemoConfig.goemotions_per_class,
                   help="most GoEmotions comments per majority class (default %(default)s)")
    p.add_argument("--text-audio", choices=("pool", "spoken"), default=DemoConfig.text_audio,
                   help="voice of text-only items: a clip from a fixed flat-voice pool (pool, the default), or "
                        "espeak-ng reading each item (spoken; slow: one synthesis and one encoder pass per item)")
    p.add_argument("--voice", default=DemoConfig.voice,
                   help="espeak-ng voice that reads the items under --text-audio spoken (default %(default)s)")
    p.add_argument("--words-per-minute", type=int, default=DemoConfig.words_per_minute,
                   help="espeak-ng speed under --text-audio spoken (default %(default)s)")
    pairing = p.add_argument_group("pairing (train.pairing.PairingConfig): real voices with real words")
    pairing.add_argument("--pairing", nargs="*", choices=RULES, default=list(PairingConfig.rules), metavar="RULE",
                         help="rules that add voice-and-words rows to the protocol's input: voice-plain (every "
                              "voice item with plain words, the voice's label), calm-voice-words (emotional words "
                              "with a real neutral voice, the words' votes), conflict (an emotional voice with "
                              "other emotional words, a mixture of both labels); the flag alone adds none "
                              "(default: %(default)s)")
    pairing.add_argument("--plain-per-voice", type=int, default=PairingConfig.plain_per_voice,
                         help="voice-plain: plain-word partners of each voice item (default %(default)s)")
    pairing.add_argument("--calm-voice-items", type=int, default=PairingConfig.calm_voice_items,
                         help="calm-voice-words: rows made (default %(default)s)")
    pairing.add_argument("--conflict-items", type=int, default=PairingConfig.conflict_items,
                         help="conflict: rows made (default %(default)s)")
    pairing.add_argument("--conflict-voice-share", type=float, default=PairingConfig.conflict_voice_share,
                         help="conflict: the voice label's share of the target, the words' votes the rest "
                              "(default %(default)s)")
    p.add_argument("--eq6-ablation", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the protocol with the paper's Eq. 6 exactly as written (--loss eq6) and compare "
                        "it with the default loss in the report's README (about as long as the main protocol; "
                        "its state is kept beside the main one, so a rerun resumes)")
    p.add_argument("--transfer", action="store_true",
                   help="instead of the protocol, leave one voice corpus out (RAVDESS, then nEMO): train the "
                        "final-model recipe without it for each of --seeds and print its voice head's UAR on it "
                        "(train/transfer.py); the rule the demo's training choices are made by. Writes nothing")
    p.add_argument("--emovo-root", type=Path, default=SHARED / "data" / "emovo",
                   help="EMOVO, scored by --transfer as the check nothing is chosen by, when it exists "
                        "(default %(default)s)")
    p.add_argument("--transfer-at", nargs=2, type=float, default=TRANSFER_AT, metavar=("LAMBDA_MAI", "KAPPA"),
                   help="the grid point --transfer trains at (default: %(default)s, the shipped model's)")
    p.add_argument("--work-dir", type=Path,
                   help="folder of the protocol's finished folds, so a rerun resumes "
                        "(default: CACHE_DIR/protocol-<hash of the corpus recipe and protocol settings>)")
    add_output_flags(p, DemoConfig().cache_dir, DEMO_AUDIO_ENCODER, DEMO_TEXT_ENCODER,
                     cache_help="folder of the demo's caches: synthesised speech, features (CACHE_DIR/features) "
                                "and protocol state")
    add_protocol_flags(p, {**DEMO_PROTOCOL, "device": "auto"})
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m train demo`."""
    import dataclasses
    import json
    import sys

    from train.demo_report import append_card_notes, source_breakdown, write_demo_readme

    args = build_parser().parse_args(argv)
    configure_logging()

    def body() -> int:
        if args.emotionlines_max < 0:
            raise DemoError("--emotionlines-max must be 0 or more")
        protocol = protocol_from_args(args)
        cfg = DemoConfig(ravdess_root=args.ravdess_root, nemo_root=args.nemo_root,
                         emotionlines_root=args.emotionlines_root, goemotions_root=args.goemotions_root,
                         emotionlines_max=args.emotionlines_max, goemotions_per_class=args.goemotions_per_class,
                         text_audio=args.text_audio, folds=protocol.n_folds, voice=args.voice,
                         words_per_minute=args.words_per_minute, cache_dir=args.cache_dir,
                         pairing=PairingConfig(rules=tuple(args.pairing), plain_per_voice=args.plain_per_voice,
                                               calm_voice_items=args.calm_voice_items,
                                               conflict_items=args.conflict_items,
                                               conflict_voice_share=args.conflict_voice_share))
        corpus = build_demo_corpus(cfg, progress=not args.no_progress)
        if args.transfer:
            return transfer(corpus, cfg, args, protocol)
        recipe = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "cache_dir"}
        recipe.update(pool=[POOL_SENTENCES, POOL_VOICES], encoders=[args.audio_encoder, args.text_encoder])
        run_cfg = RunConfig(out=args.out, model_dir=args.out, report_dir=args.report_dir,
                            work_dir=args.work_dir or protocol_dir(cfg.cache_dir, recipe, protocol),
                            audio_encoder=args.audio_encoder, text_encoder=args.text_encoder,
                            cache_dir=Path(cfg.cache_dir) / "features",
                            feature_batch_size=args.feature_batch_size, final_seed=args.final_seed,
                            push_to_hub=args.push_to_hub, private=args.private, token=args.token,
                            progress=not args.no_progress)
        command = "python -m train demo " + " ".join(argv if argv is not None else sys.argv[2:])
        card = {"demo": corpus_description(corpus, cfg), "licences": LICENCES,
                "command": redact_command(command)}
        outcome = run_corpus(corpus, run_cfg, protocol, card=card, prepare=lambda d: pair_items(d, cfg.pairing))
        calibrated = pooled_predictions(outcome.result.folds, len(outcome.result.y), protocol.seeds, calibrated=True)
        readings = (pooled_readings(outcome.result.folds, calibrated, protocol.seeds)
                    if all(f.reading_temperatures is not None for f in outcome.result.folds) else None)
        breakdown = source_breakdown(outcome.result.predictions, outcome.result.y, list(outcome.data.ids), readings)
        report = json.loads((Path(args.report_dir) / "report.json").read_text(encoding="utf-8"))
        ablation = []
        if args.eq6_ablation:
            other = ablation_protocol(protocol)
            work = (Path(args.work_dir).with_name(Path(args.work_dir).name + "-ablation") if args.work_dir
                    else protocol_dir(cfg.cache_dir, recipe, other))
            ablation = eq6_ablation(protocol, outcome, report, work)
        write_demo_readme(Path(args.report_dir), card, Path(args.out), breakdown, report, ablation)
        append_card_notes(Path(args.out))
        print(summary_text(outcome))
        return 0

    return guarded(body)
