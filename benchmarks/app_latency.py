"""Latency of the app against the library: a 5 s clip through gradio_client vs Analyzer.analyze alone.

    python benchmarks/app_latency.py [--model DIR] [--reps 7]

Both paths share one process and one loaded Analyzer (the app is launched in-process on a free port), and
the repetitions are interleaved (app, library, app, library, ...), so the ratio measures what the app adds:
upload, queue, pre/post-processing, figure and JSON serialisation. Target: median ratio <= 1.2.
"""
from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import app  # noqa: E402
from amber2.pipeline import Analyzer  # noqa: E402

CLIP_SECONDS = 5.0


def five_second_clip(out: Path) -> Path:
    """The bundled example clips joined and cut to exactly 5 s (16 kHz mono)."""
    parts = [sf.read(path, dtype="float32")[0] for path, _ in app.EXAMPLE_CLIPS[:2]]
    audio = np.concatenate(parts)[: int(CLIP_SECONDS * 16000)]
    sf.write(out, audio, 16000)
    return out


def random_checkpoint(out: Path) -> Path:
    """A randomly initialised demo7 checkpoint: the timing does not depend on the weights' values."""
    from amber2.labels import get_space
    from amber2.model import AmbER2Model

    space = get_space("demo7")
    AmbER2Model(audio_dim=512, text_dim=384, classes=list(space.classes), label_space="demo7",
                audio_encoder="whisper-base", text_encoder="minilm-l6").save_pretrained(out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="checkpoint (default: bundled, else a random one)")
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="amber2-bench-"))
    model = args.model or (str(app.DEFAULT_MODEL) if (app.DEFAULT_MODEL / "config.json").is_file()
                           else str(random_checkpoint(tmp / "random-demo")))
    clip = five_second_clip(tmp / "clip5s.wav")

    analyzer = Analyzer(model=model)
    config, card = app.read_checkpoint(model)
    demo = app.build_demo(analyzer, model, config, card)
    demo.queue(default_concurrency_limit=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)

    from gradio_client import Client, handle_file

    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    analyzer.analyze(str(clip))                                  # warm both paths once, untimed
    client.predict(handle_file(str(clip)), api_name="/analyze")
    t_app, t_lib = [], []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        client.predict(handle_file(str(clip)), api_name="/analyze")
        t_app.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        analyzer.analyze(str(clip))
        t_lib.append(time.perf_counter() - t0)
    demo.close()

    m_app, m_lib = statistics.median(t_app), statistics.median(t_lib)
    print(f"clip: {CLIP_SECONDS:.0f} s, model: {model}, {args.reps} interleaved repetitions, median")
    print(f"{'path':<34}{'median s':>10}{'min s':>10}{'max s':>10}")
    for name, t in (("app (gradio_client -> /analyze)", t_app), ("library (Analyzer.analyze)", t_lib)):
        print(f"{name:<34}{statistics.median(t):>10.3f}{min(t):>10.3f}{max(t):>10.3f}")
    ratio = m_app / m_lib
    print(f"ratio app / library: {ratio:.2f} (target <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'})")


if __name__ == "__main__":
    main()
