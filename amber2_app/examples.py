"""The app's example clips: what each shows, how the project synthesised it, what the demo model reads.

    python -m amber2_app.examples [--out assets/examples]     # re-make the committed clips

Every committed example is made by the project itself (espeak-ng, a flat synthetic voice that carries no
emotion; sox for the format): no corpus audio is committed. `EXAMPLES` lists, for every file, its words and
what the shipped model is expected to read; tests/test_examples.py checks the bundled checkpoint against it.
Where the shared corpora lie beside the checkout (`../shared`), `corpus_examples` adds real emotional voices
from EMOVO, a corpus the demo model never trained on; they are read at run time and never committed.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amber2.files import ASSETS, SHARED

EXAMPLES_DIR = ASSETS / "examples"


@dataclass(frozen=True)
class Example:
    file: str
    label: str                       # what the app shows beside the example
    words: str
    espeak: tuple[str, ...]          # espeak-ng options
    sox: tuple[str, ...] = ()        # sox effects applied after synthesis
    expect: tuple[tuple[str, str], ...] = ()   # (head, top emotion) the shipped model must read


FLAT = ("-v", "en-us", "-s", "150")
EXAMPLES = (
    Example("flat_voice_angry_words.wav", "flat voice, angry words (voice and words disagree)",
            "I'm sick of your lies. Get out of my house!", FLAT,
            expect=(("text", "angry"), ("fused", "angry"), ("audio", "neutral"))),
    Example("flat_voice_happy_words.wav", "flat voice, happy words",
            "I got the job! This is the best day of my life!", FLAT,
            expect=(("text", "happy"), ("fused", "happy"))),
    Example("flat_voice_sad_words.wav", "flat voice, sad words",
            "My dog died last night, and I can't stop crying.", FLAT,
            expect=(("text", "sad"), ("fused", "sad"))),
    Example("flat_voice_fearful_words.wav", "flat voice, fearful words",
            "I'm terrified. Someone is trying to open the door.", FLAT,
            expect=(("text", "fear"), ("fused", "fear"))),
    Example("flat_voice_neutral_words.wav", "flat voice, neutral words (voice and words agree)",
            "Okay, I will see you at the office tomorrow.", FLAT,
            expect=(("text", "neutral"), ("fused", "neutral"), ("audio", "neutral"))),
)


def make(example: Example, out_dir: Path) -> Path:
    """Synthesise one example as 16 kHz mono 16-bit WAV into `out_dir`."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/system-deps.sh installs it)")
    out = out_dir / example.file
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", *example.espeak, "-w", str(raw), "--", example.words], check=True)
        subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out), *example.sox,
                        "rate", "16000"], check=True)
    return out


# Real voices saying everyday words, from EMOVO (Italian; research use, so read in place, never copied):
# (file under data/emovo, label). Picked among EMOVO's "b" sentences as clips the demo model reads right; on
# all of EMOVO its voice head is right on 41% of clips (angry 90%, sad 24%: assets/amber2-demo/README.md).
CORPUS_EXAMPLES = (
    ("m1/rab-m1-b1.flac", "real angry voice (EMOVO, Italian, unseen)"),
    ("m1/tri-m1-b1.flac", "real sad voice (EMOVO, Italian, unseen)"),
)


def corpus_examples(shared: Path = SHARED) -> list[tuple[Path, str]]:
    """(path, label) of the real corpus examples present under `shared`; empty where it is absent."""
    root = Path(shared) / "data" / "emovo"
    return [(root / rel, label) for rel, label in CORPUS_EXAMPLES if (root / rel).is_file()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=EXAMPLES_DIR)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for example in EXAMPLES:
        print(make(example, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
