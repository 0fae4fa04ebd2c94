"""Latency of the whole `analyze()` against Whisper transcription alone, and the peak memory of analysis.

    python benchmarks/latency.py [--model DIR] [--reps 7] [--seconds 5 15]

For each clip length (RAVDESS clips concatenated and cut to length), the two are timed side by side,
interleaved in one process (the order alternating every repetition, so drift in machine load hits both),
after one warm-up call each; the medians and their ratio are printed (target: analyze <= 1.15 x
transcription, i.e. the emotion analysis costs at most 15 % on top of the ASR the app needs anyway).

The peak resident memory is measured in a fresh child process that loads the default models and analyses
one clip (ru_maxrss; target < 2 GB).

On a small CPU shared with other busy processes, small forward passes (MiniLM, Whisper's per-token decoder
steps) slow down many-fold with several torch threads (OpenMP workers wait for each other at every op):
MiniLM embedding a sentence was seen at 10 ms with 1 thread and ~480 ms with 2 on this 2-core machine at
load 3.5. `--threads N` sets torch's thread count to measure that.

Without a trained checkpoint (assets/amber2-demo/ missing), randomly initialised heads with the default
encoders are used: the time and memory are the same, only the numbers analysed are meaningless.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RAVDESS = ROOT.parent / "shared" / "data" / "ravdess"


@dataclass
class BenchConfig:
    seconds: list[float] = field(default_factory=lambda: [5.0, 15.0])
    reps: int = 7
    model: str | None = None
    ratio_target: float = 1.15
    memory_target_gb: float = 2.0


def make_clip(seconds: float, every: int = 37) -> np.ndarray:
    """`seconds` of real speech: every `every`-th RAVDESS clip (different actors, sentences and emotions)
    joined end to end."""
    from amber2.audio import SAMPLE_RATE, load_audio

    files = sorted(RAVDESS.glob("Actor_*/*.flac"))[::every]
    if not files:
        raise SystemExit(f"No RAVDESS clips under {RAVDESS}")
    pieces, total = [], 0
    for path in files:
        pieces.append(load_audio(path))
        total += len(pieces[-1])
        if total >= seconds * SAMPLE_RATE:
            break
    return np.concatenate(pieces)[: int(seconds * SAMPLE_RATE)]


def model_ref(requested: str | None, scratch: Path) -> str:
    """The checkpoint to time: the one asked for, the default, else random heads with the default encoders."""
    from amber2.pipeline import DEFAULT_MODEL, default_model_ref

    ref = requested or default_model_ref()
    if Path(ref) != DEFAULT_MODEL or DEFAULT_MODEL.is_dir():
        return ref
    import torch
    from amber2.labels import get_space
    from amber2.model import AmbER2Model

    torch.manual_seed(0)
    AmbER2Model(audio_dim=512, text_dim=384, classes=list(get_space("demo7").classes), label_space="demo7",
                audio_encoder="whisper-base", text_encoder="minilm-l6").save_pretrained(scratch)
    print(f"(no checkpoint at {DEFAULT_MODEL}: timing random heads with whisper-base + minilm-l6)")
    return str(scratch)


@dataclass
class Timing:
    """Median wall-clock and process-CPU seconds (CPU time is less disturbed by other processes)."""

    wall: float
    cpu: float


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def time_interleaved(runs: dict, reps: int, warm_up: bool = True) -> dict[str, Timing]:
    """Median timings of each zero-argument callable in `runs`, measured interleaved (order alternating);
    `warm_up`: one untimed call of each first (False: the caller has warmed up)."""
    for fn in runs.values() if warm_up else ():  # warm-up: first calls pay for lazy initialisation
        fn()
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    for rep in range(reps):
        for key in (list(runs) if rep % 2 == 0 else list(runs)[::-1]):
            samples[key].append(_timed(runs[key]))
    return {k: Timing(statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
            for k, v in samples.items()}


def time_clip(analyzer, clip: np.ndarray, reps: int) -> dict[str, Timing]:
    """analyze(clip) against transcribe(clip), and the emotion part alone (text + heads, reanalyze_text)."""
    previous = analyzer.analyze(clip)
    return time_interleaved({
        "analyze": lambda: analyzer.analyze(clip),
        "transcribe": lambda: analyzer.asr.transcribe(clip),
        "text+heads": lambda: analyzer.reanalyze_text(previous, previous.transcript),
    }, reps)


def peak_memory_child(ref: str) -> None:
    """Child process body: load the models, analyse a clip, print the peak RSS (bytes) as JSON."""
    from amber2.pipeline import Analyzer

    Analyzer(model=ref).analyze(make_clip(5.0))
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    print(json.dumps({"peak_rss_bytes": kib * 1024}))


def peak_memory(ref: str) -> float:
    done = subprocess.run([sys.executable, __file__, "--memory-child", ref], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_bytes"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--reps", type=int, default=BenchConfig.reps)
    p.add_argument("--seconds", type=float, nargs="+", default=BenchConfig().seconds)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        return peak_memory_child(args.memory_child)
    cfg = BenchConfig(seconds=args.seconds, reps=args.reps, model=args.model)

    import torch
    from amber2.pipeline import Analyzer

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        ref = model_ref(cfg.model, Path(scratch))
        analyzer = Analyzer(model=ref)
        print(f"CPU threads: {torch.get_num_threads()}, repetitions: {cfg.reps} (median), model: {ref}")
        print(f"{'clip':>6} {'':>5} {'analyze':>9} {'transcribe':>11} {'ratio':>7} {'text+heads':>11}"
              f"  (target ratio <= {cfg.ratio_target})")
        for seconds in cfg.seconds:
            t = time_clip(analyzer, make_clip(seconds), cfg.reps)
            for kind in ("wall", "cpu"):
                a, asr, extra = (getattr(t[k], kind) for k in ("analyze", "transcribe", "text+heads"))
                verdict = "ok" if a / asr <= cfg.ratio_target else "OVER TARGET"
                print(f"{seconds:5.0f}s {kind:>5} {a:8.3f}s {asr:10.3f}s {a / asr:7.3f} "
                      f"{1000 * extra:8.1f} ms  {verdict}")
        rss = peak_memory(ref)
    gb = rss / 1e9
    verdict = "ok" if gb < cfg.memory_target_gb else "OVER TARGET"
    print(f"peak resident memory of an analyze process: {gb:.2f} GB (target < {cfg.memory_target_gb} GB)  {verdict}")


if __name__ == "__main__":
    main()
