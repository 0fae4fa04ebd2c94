"""AmbER² demo: hear a clip, read what Whisper heard, see where the voice and the words disagree.

    python app.py [--model DIR_OR_REPO] [--host 127.0.0.1] [--port 7860] [--share]

A thin layer: Gradio components wired to `amber2` (pipeline, labels and weights for the numbers, explain for
the words, charts for the figures). The default checkpoint is the bundled `assets/amber2-demo/` and everything runs offline.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np

from amber2 import charts, explain
from amber2 import examples as example_clips
from amber2.audio import AudioError
from amber2.labels import vote_distribution
from amber2.pipeline import Analysis, Analyzer, default_model_ref
from amber2.weights import expert_weight_curve

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("amber2.app")

# Clickable examples: (path, what it shows). Synthesised clips are committed (amber2.examples, ATTRIBUTION.md);
# real voices from EMOVO are offered too where ../shared lies beside the checkout (read in place).
EXAMPLE_CLIPS = ([(example_clips.EXAMPLES_DIR / e.file, e.label) for e in example_clips.EXAMPLES]
                 + example_clips.corpus_examples())
# Learn tab before any clip is analysed: the votes of the paper's kind of example (5 raters: 3 angry,
# 1 neutral, 1 sad) and, as stand-in predictions, a voice that leans angry and words that lean neutral.
EXAMPLE_VOTES = {"angry": 3, "neutral": 1, "sad": 1}
STANDIN_LEAN = 0.55


@dataclass
class AppConfig:
    """Command-line options of the app."""

    model: str = field(default_factory=default_model_ref)  # $AMBER2_MODEL, else the bundled checkpoint
    # Hugging Face Spaces sets GRADIO_SERVER_NAME=0.0.0.0; run locally, the app stays on this machine.
    host: str = field(default_factory=lambda: os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    port: int = field(default_factory=lambda: int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    share: bool = False
    whisper: str | None = None    # None: the checkpoint's own Whisper transcribes (one shared encoder pass)
    concurrency: int = 2          # requests served at once; more only adds contention on a small CPU
    # Gradio refuses bigger uploads itself; a 3-minute 48 kHz stereo WAV (35 MB) still reaches the
    # pipeline, whose refusal says what is wrong (too long).
    max_file_size: str = "50mb"
    warmup: bool = True           # run one example at start-up so the first visitor does not wait for lazy loads


# ---- checkpoint card (I/O only; the wording is explain.describe_model) ----

def read_checkpoint(ref: str) -> tuple[dict, str | None]:
    """config.json and README.md of a checkpoint folder or Hub repo (the card may be missing)."""
    path = Path(ref)
    if path.is_dir():
        config = json.loads((path / "config.json").read_text())
        card = path / "README.md"
        return config, card.read_text() if card.is_file() else None
    from huggingface_hub import hf_hub_download  # a Hub repo: Analyzer has already fetched it

    config = json.loads(Path(hf_hub_download(ref, "config.json")).read_text())
    try:
        card_text = Path(hf_hub_download(ref, "README.md")).read_text()
    except Exception:  # a repo without a card is still a model
        card_text = None
    return config, card_text


def display_ref(ref: str) -> str:
    """A checkpoint folder inside this repository as a relative path (short, and it does not reveal the
    server's layout); anything else as given."""
    path = Path(ref).resolve()
    return str(path.relative_to(ROOT)) if path.is_dir() and path.is_relative_to(ROOT) else ref


# ---- event handlers ----

class Handlers:
    """The functions Gradio calls; each returns values for the components and turns failures into messages."""

    def __init__(self, analyzer: Analyzer, classes: list[str]):
        self.analyzer = analyzer
        self.classes = classes

    def _outputs(self, a: Analysis) -> tuple:
        info = explain.summary(a)
        numbers = {**a.to_dict(), "explanation": info}
        return charts.distribution_figure(a), explain.summary_markdown(info), numbers, a

    def analyze(self, audio_path: str | None):
        """Audio file -> transcript, chart, summary, JSON numbers, state."""
        if not audio_path:
            raise gr.Error("No audio yet: record with the microphone or upload a file, then press Analyze.")
        a = self._guard(lambda: self.analyzer.analyze(audio_path))
        return (a.transcript, *self._outputs(a))

    def reanalyze(self, transcript: str, previous: Analysis | None):
        """Edited transcript -> new text and fused predictions; the audio embedding of `previous` is reused."""
        if previous is None:
            raise gr.Error("Analyze a clip first; then edit its transcript and press Enter.")
        a = self._guard(lambda: self.analyzer.reanalyze_text(previous, transcript or ""))
        return self._outputs(a)

    def learn(self, previous: Analysis | None, kappa: float, *counts: float):
        """Votes -> y (Eq. 1) and the expert weights u_A, u_T over kappa (Eq. 5)."""
        try:
            y = vote_distribution(counts)
        except ValueError as e:
            raise gr.Error(str(e)) from None
        p_a, p_t, source = self._predictions(previous)
        curve = expert_weight_curve(p_a, p_t, y)
        return (charts.votes_figure(self.classes, counts, y), charts.expert_weight_figure(curve, kappa),
                explain.weights_sentence(curve, kappa, source))

    def _predictions(self, previous: Analysis | None) -> tuple[np.ndarray, np.ndarray, str]:
        if previous is not None:
            return previous.audio, previous.text, f"your clip (“{previous.transcript[:60]}”)"
        return standin(self.classes, "angry"), standin(self.classes, "neutral"), \
            "an illustration (analyze a clip to use its own predictions)"

    @staticmethod
    def _guard(run):
        try:
            return run()
        except (AudioError, ValueError) as e:  # refusals whose message is written for a person
            raise gr.Error(str(e)) from None
        except Exception as e:  # a visitor sees a sentence; the traceback goes to the log
            log.exception("analysis failed")
            raise gr.Error(f"Sorry, this clip could not be analysed ({type(e).__name__}). "
                           "Try another recording.") from None


def standin(classes: list[str], lean: str) -> np.ndarray:
    """A distribution leaning STANDIN_LEAN on `lean` (first class if absent), the rest spread evenly."""
    p = np.full(len(classes), (1 - STANDIN_LEAN) / (len(classes) - 1))
    p[classes.index(lean) if lean in classes else 0] = STANDIN_LEAN
    return p


# ---- layout ----

INTRO = """# AmbER²: voice and words, side by side
Record or upload a short English clip. Whisper writes down the words; three heads of an AmbER² model give
an emotion **distribution** each: from the **voice** (audio), from the **words** (text) and from **both**
(fused). When voice and words tell different emotions, you will see it here."""

CSS = ".gradio-container {max-width: 1100px !important; margin: auto;}"
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
LEARN_EQ1 = r"""### 1. Raters disagree: votes become a distribution (Eq. 1)
Several people label each clip. AmbER² keeps all their votes: $y_c = n_c / N$, the share of the $N$ raters
who chose class $c$. Set the votes below."""

LEARN_EQ5 = r"""### 2. Experts are trusted by how close they are to the raters (Eq. 5)
The fused head (the *student*) learns from the raters **and** from the audio and text heads (the *experts*),
each weighted by $u_m = \frac{\exp(-\kappa D_m)}{\sum_{m'} \exp(-\kappa D_{m'})}$, with
$D_m = \mathrm{JS}(p_m \,\|\, y)$. At $\kappa = 0$ both experts count equally; the larger $\kappa$,
the more the expert closer to the raters' votes takes over."""


def build_demo(analyzer: Analyzer, model_ref: str, config: dict, card: str | None) -> gr.Blocks:
    """The Blocks app around a loaded Analyzer."""
    classes = list(analyzer.classes)
    h = Handlers(analyzer, classes)
    panel = explain.describe_model(display_ref(model_ref), config, card)
    counts0 = [EXAMPLE_VOTES.get(c, 0) for c in classes]
    votes0, weights0, learn0 = h.learn(None, 4.0, *counts0)

    with gr.Blocks(title="AmbER² emotion from speech and text") as demo:
        state = gr.State(None)
        gr.Markdown(INTRO)
        with gr.Tab("Analyze"):
            with gr.Row():
                with gr.Column(scale=1, min_width=300):
                    audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Speech")
                    run = gr.Button("Analyze", variant="primary")
                    transcript = gr.Textbox(
                        label="What Whisper heard", lines=1, max_lines=4, interactive=True,
                        info="Edit the words and press Enter: only the text and fused heads re-read them.")
                with gr.Column(scale=2, min_width=300):
                    chart = gr.Plot(charts.placeholder_figure(classes, "Analyze a clip to see its emotions"),
                                    label="Emotion distributions", show_label=False)
                    summary = gr.Markdown("")
            # Below both columns, so that on a phone the chart comes right after the transcript.
            examples = gr.Examples([[str(path)] for path, _ in EXAMPLE_CLIPS], inputs=[audio],
                                   example_labels=[label for _, label in EXAMPLE_CLIPS],
                                   label="Examples (click one to analyze it)", cache_examples=False,
                                   api_name="load_example")
            with gr.Accordion("Numbers (JSON)", open=False):
                numbers = gr.JSON(label="Analysis")
        with gr.Tab("Learn"):
            gr.Markdown(LEARN_EQ1, latex_delimiters=LATEX)
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    votes = [gr.Slider(0, 10, value=v, step=1, label=f"votes: {c}") for c, v in
                             zip(classes, counts0)]
                votes_plot = gr.Plot(votes0, show_label=False)
            gr.Markdown(LEARN_EQ5, latex_delimiters=LATEX)
            kappa = gr.Slider(0, 16, value=4.0, step=0.25, label="κ (sharpness)")
            weights_plot = gr.Plot(weights0, show_label=False)
            learn_text = gr.Markdown(learn0)
        with gr.Tab("Model"):
            gr.Markdown(panel["summary"])
            if panel["card"]:
                with gr.Accordion("Model card", open=False):
                    gr.Markdown(panel["card"])

        learn_inputs = [state, kappa, *votes]
        learn_outputs = [votes_plot, weights_plot, learn_text]
        analyze_outputs = [transcript, chart, summary, numbers, state]
        run.click(h.analyze, inputs=[audio], outputs=analyze_outputs,
                  api_name="analyze").then(h.learn, learn_inputs, learn_outputs, api_name="learn_after_analyze")
        # A clicked example fills the audio input, then is analysed at once (not cached: facts.md §5).
        examples.load_input_event.then(h.analyze, inputs=[audio], outputs=analyze_outputs,
                                       api_name="analyze_example").then(
            h.learn, learn_inputs, learn_outputs, api_name="learn_after_example")
        transcript.submit(h.reanalyze, inputs=[transcript, state], outputs=[chart, summary, numbers, state],
                          api_name="reanalyze").then(h.learn, learn_inputs, learn_outputs,
                                                     api_name="learn_after_reanalyze")
        # .release: one update when the visitor lets go of a slider, not one per pixel dragged.
        gr.on([c.release for c in (kappa, *votes)], h.learn, learn_inputs, learn_outputs, api_name="learn")
    return demo


def parse_args(argv: list[str] | None = None) -> AppConfig:
    d = AppConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=d.model, help="checkpoint folder or Hub repo (env AMBER2_MODEL)")
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--share", action="store_true", help="open a public gradio.live link (off by default)")
    p.add_argument("--whisper", default=d.whisper,
                   help="Whisper size that transcribes (default: the checkpoint's own audio encoder)")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="requests served at once")
    p.add_argument("--no-warmup", dest="warmup", action="store_false")
    return AppConfig(**vars(p.parse_args(argv)))


def load(cfg: AppConfig) -> tuple[Analyzer, dict, str | None]:
    """Load the models once, before serving."""
    try:
        analyzer = Analyzer(model=cfg.model, whisper=cfg.whisper)
    except ValueError as e:  # no bundled checkpoint, or one that does not fit its encoders: say so, no traceback
        raise SystemExit(str(e)) from None
    config, card = read_checkpoint(cfg.model)
    if cfg.warmup:
        analyzer.analyze(str(EXAMPLE_CLIPS[0][0]))
    return analyzer, config, card


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO)
    cfg = parse_args(argv)
    analyzer, config, card = load(cfg)
    demo = build_demo(analyzer, cfg.model, config, card)
    demo.queue(default_concurrency_limit=cfg.concurrency)
    # Real corpus examples are read in place beside the checkout: Gradio must be allowed to serve them.
    corpus_dirs = sorted({str(path.parent) for path, _ in EXAMPLE_CLIPS if example_clips.SHARED in path.parents})
    demo.launch(server_name=cfg.host, server_port=cfg.port, share=cfg.share, max_file_size=cfg.max_file_size,
                theme=gr.themes.Soft(), css=CSS, allowed_paths=corpus_dirs)


if __name__ == "__main__":
    main()
