"""Feature extraction speed: the demo model's own-frames encoder against the 30 s padded one, side by side.

    python benchmarks/features.py [--clips 96] [--reps 3] [--batch-size 8] [--new ENCODER]

The same clips (real RAVDESS and nEMO speech from ../shared, or espeak-ng sentences where ../shared is
absent) are embedded by both audio encoders, alternating which goes first each repetition so that drift in
machine load hits both; the median clips per second of each and their ratio are printed. The "old" way is
the first demo model's: every clip zero-padded to Whisper's 30 s window, the whole encoder run, the last layer
pooled over the clip's frames (`whisper-base`). The "new" way runs the encoder on the clip's own frames only,
stops after the deepest block it pools, batches clips by length, and runs under bfloat16 autocast
(`whisper-base/L2+3+4-mean-loudnorm-bf16`).
The text encoder's sentences per second are printed too (transcripts of the same corpora).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train.demo import DEMO_AUDIO_ENCODER  # noqa: E402  (after the path insert; loads no weights)


def benchmark_clips(n: int) -> list:
    """`n` 16 kHz clips: RAVDESS and nEMO alternately, spread over speakers and emotions."""
    import subprocess
    import tempfile

    from amber2.audio import load_audio
    from amber2.files import SHARED

    files = sorted((SHARED / "data" / "ravdess").glob("Actor_*/*.flac"))[::7] + sorted(
        (SHARED / "data" / "nemo" / "samples").glob("*.ogg"))[::23]
    if files:
        files = [f for pair in zip(files[: len(files) // 2], files[len(files) // 2:]) for f in pair]
        return [load_audio(f) for f in files[:n]]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            wav = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-w", str(wav), f"Sentence number {i} is read aloud for this test."],
                           check=True)
            out.append(load_audio(wav))
    return out


def clips_per_second(encoder, clips: list) -> float:
    start = time.perf_counter()
    encoder.embed(clips)
    return len(clips) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=96, help="clips per timing (default %(default)s)")
    p.add_argument("--reps", type=int, default=3, help="timings of each encoder (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per encoder call (default %(default)s)")
    p.add_argument("--old", default="whisper-base", help="encoder of the first demo model")
    p.add_argument("--new", default=DEMO_AUDIO_ENCODER, help="encoder of the demo model (default %(default)s)")
    p.add_argument("--text", default="minilm-l6", help="text encoder (default %(default)s)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = p.parse_args(argv)

    from amber2.encoders import EncoderConfig, load_audio_encoder, load_text_encoder

    cfg = EncoderConfig(batch_size=args.batch_size)
    clips = benchmark_clips(args.clips)
    seconds = sum(len(c) for c in clips) / 16000
    encoders = {name: load_audio_encoder(name, config=cfg, device=args.device) for name in (args.old, args.new)}
    for enc in encoders.values():  # warm-up
        enc.embed(clips[:4])
    rates: dict[str, list[float]] = {name: [] for name in encoders}
    for rep in range(args.reps):
        for name in (list(encoders) if rep % 2 == 0 else list(encoders)[::-1]):
            rates[name].append(clips_per_second(encoders[name], clips))
    old, new = (statistics.median(rates[n]) for n in (args.old, args.new))
    print(f"{len(clips)} clips, {seconds / len(clips):.2f} s of audio each on average, batch {args.batch_size}, "
          f"device {next(iter(encoders.values())).backbone.device}")
    print(f"  old  {args.old:34s} {old:7.1f} clips/s")
    print(f"  new  {args.new:34s} {new:7.1f} clips/s")
    print(f"  speed-up (new / old, medians of {args.reps}): {new / old:.1f}x")

    text = load_text_encoder(args.text, config=cfg, device=args.device)
    sentences = [f"I can't believe it is already {i} o'clock, we are going to be so late!" for i in range(256)]
    text.embed(sentences[:16])
    start = time.perf_counter()
    text.embed(sentences)
    print(f"  text {args.text:34s} {len(sentences) / (time.perf_counter() - start):7.1f} sentences/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
