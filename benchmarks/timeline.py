"""Emotion over time on a 5-minute recording: the whole timeline against Whisper transcription alone, and the
peak memory of a timeline.

    python benchmarks/timeline.py [--model DIR] [--reps 3] [--minutes 5]

The recording is real speech: RAVDESS clips (many actors, sentences and emotions) joined end to end, with
the pauses they hold. The two are timed side by side, interleaved in one process (order alternating every
repetition, so drift in machine load hits both), after one warm-up call each on a 30 s excerpt:
- timeline: `amber2.timeline.analyze_timeline` (Whisper with timestamps, window by window; each segment's
  voice vector on its own frames; MiniLM on the segments' words; the heads);
- transcription: openai-whisper's own `whisper.transcribe` on the same model and samples, with the decoding
  the timeline uses (English, temperature 0 without fallback, not conditioned on the previous window).
Target: timeline <= 1.15 x transcription. The peak resident memory is that of a fresh child process that
loads the models and makes the timeline (ru_maxrss; target < 2 GB).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import ROOT, make_clip, model_ref, time_interleaved  # noqa: E402  (the shared timing helpers)

sys.path.insert(0, str(ROOT))


@dataclass
class BenchConfig:
    minutes: float = 5.0
    reps: int = 3
    model: str | None = None
    ratio_target: float = 1.15
    memory_target_gb: float = 2.0


def make_recording(minutes: float) -> np.ndarray:
    """`minutes` of real speech: RAVDESS clips (every 5th file: all actors, emotions, both sentences) joined."""
    return make_clip(minutes * 60, every=5)


def transcribe_alone(analyzer, samples: np.ndarray) -> dict:
    """Whisper transcription alone: openai-whisper's transcribe with the timeline's decoding choices."""
    import whisper

    return whisper.transcribe(analyzer.asr.model, samples, language="en", temperature=0.0,
                              condition_on_previous_text=False, fp16=False, verbose=None)


def peak_memory_child(ref: str, minutes: float) -> None:
    """Child process body: load the models, make the timeline, print the peak RSS (bytes) as JSON."""
    from amber2.pipeline import Analyzer
    from amber2.timeline import analyze_timeline

    t = analyze_timeline(Analyzer(model=ref), make_recording(minutes))
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    print(json.dumps({"peak_rss_bytes": kib * 1024, "segments": len(t.segments)}))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--reps", type=int, default=BenchConfig.reps)
    p.add_argument("--minutes", type=float, default=BenchConfig.minutes)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        return peak_memory_child(args.memory_child, args.minutes)
    cfg = BenchConfig(minutes=args.minutes, reps=args.reps, model=args.model)

    import torch

    from amber2.audio import SAMPLE_RATE
    from amber2.pipeline import Analyzer
    from amber2.timeline import analyze_timeline

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        ref = model_ref(cfg.model, Path(scratch))
        analyzer = Analyzer(model=ref)
        samples = make_recording(cfg.minutes)
        warm = samples[:30 * SAMPLE_RATE]
        analyze_timeline(analyzer, warm), transcribe_alone(analyzer, warm)  # lazy loads, first-call costs
        print(f"CPU threads: {torch.get_num_threads()}, repetitions: {cfg.reps} (median), model: {ref}, "
              f"recording: {len(samples) / SAMPLE_RATE / 60:.1f} min of RAVDESS speech")
        timeline = analyze_timeline(analyzer, samples)
        print(f"{len(timeline.segments)} segments ({sum(s.speech for s in timeline.segments)} with speech)")
        t = time_interleaved({"timeline": lambda: analyze_timeline(analyzer, samples),
                              "transcribe": lambda: transcribe_alone(analyzer, samples)}, cfg.reps, warm_up=False)
        print(f"{'':>5} {'timeline':>9} {'transcribe':>11} {'ratio':>7}  (target ratio <= {cfg.ratio_target})")
        for kind in ("wall", "cpu"):
            a, asr = getattr(t["timeline"], kind), getattr(t["transcribe"], kind)
            verdict = "ok" if a / asr <= cfg.ratio_target else "OVER TARGET"
            print(f"{kind:>5} {a:8.2f}s {asr:10.2f}s {a / asr:7.3f}  {verdict}")
        done = subprocess.run([sys.executable, __file__, "--memory-child", ref, "--minutes", str(cfg.minutes)],
                              capture_output=True, text=True, check=True)
        rss = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_bytes"]
    gb = rss / 1e9
    verdict = "ok" if gb < cfg.memory_target_gb else "OVER TARGET"
    print(f"peak resident memory of a timeline process: {gb:.2f} GB (target < {cfg.memory_target_gb} GB)  {verdict}")


if __name__ == "__main__":
    main()
