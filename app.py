"""AmbER² demo: hear a clip, read what Whisper heard, see where the voice and the words disagree.

    python app.py [--model DIR_OR_REPO] [--host 127.0.0.1] [--port 7860] [--share]

A thin layer: Gradio components wired to `amber2` (pipeline, labels and weights for the numbers, explain and
model_panel for the words, views for what each component says when, charts for the figures). The default
checkpoint is the bundled `assets/amber2-demo/` and everything runs offline.
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np

from amber2_app import charts, explain, model_panel, page, views
from amber2_app import examples as example_clips
from amber2.audio import AudioTooLong, unreadable
from amber2.errors import UserError, one_line
from amber2.labels import vote_distribution
from amber2.files import data_root
from amber2.pipeline import Analysis, Analyzer, default_model_ref
from amber2_app.rooms import RoomStore
from amber2.timeline import Timeline, TimelineConfig, analyze_timeline, segment_rows, write_csv
from amber2_app.trust_curves import expert_weight_curve
from amber2_app import vote_tab

log = logging.getLogger("amber2.app")

# Clickable examples: (path, what it shows). Synthesised clips are committed (amber2_app.examples, ATTRIBUTION.md);
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
    data: Path = field(default_factory=data_root)  # Vote together's rooms and votes ($AMBER2_DATA)


# ---- event handlers ----

class Handlers:
    """The functions Gradio calls; each returns values for the components and turns failures into messages."""

    def __init__(self, analyzer: Analyzer, classes: list[str], timeline: TimelineConfig = TimelineConfig()):
        self.analyzer = analyzer
        self.classes = classes
        self.timeline = timeline

    def _outputs(self, a: Analysis, before: Analysis | None = None) -> tuple:
        info = explain.summary(a)
        numbers = {**a.to_dict(), "explanation": info}
        return charts.distribution_figure(a, before=before), explain.summary_markdown(info), numbers, a

    def _failed(self, message: str) -> tuple:
        """Every result component cleared, one message in the panel: nothing of an earlier clip stays."""
        return ("", charts.placeholder_figure(self.classes, views.NO_RESULT), views.error_markdown(message),
                {"error": message}, None, None, None)

    def cleared(self) -> tuple:
        """Results back to their start: a new clip is waiting for Analyze."""
        return "", charts.placeholder_figure(self.classes, views.READY), "", None, None, None, None, *NO_TIMELINE

    def uploaded(self, path: str | None) -> tuple:
        """An uploaded file becomes the clip to analyse (playable in the Speech box; the upload box empties,
        ready for the next file); old results go. A file that is not audio is refused at once and never
        reaches the player (which would show a broken 0:00 player)."""
        why = unreadable(path) if path else None
        if why:
            return (None, None, *self._failed(why), *NO_TIMELINE)
        return (path, None, *self.cleared())

    def analyze(self, audio_path: str | None, progress=gr.Progress()):
        """Audio file -> transcript, chart, summary, JSON numbers, state (current reading), heard (Whisper's).

        A refusal or failure comes back as values (`_failed`), not as gr.Error: an error would leave the last
        clip's results on screen under red pills."""
        if not audio_path:
            return self._failed("No audio yet: record with the microphone or upload a file, then press Analyze.")
        seconds = views.clip_seconds(audio_path)
        if views.is_long(seconds, self.timeline.short_clip):
            return self.analyze_long(audio_path, progress)
        progress(0.05, desc=views.waiting_message(seconds))
        too_long = []

        def one_clip() -> Analysis:
            try:
                return self.analyzer.analyze(audio_path)
            except AudioTooLong:
                too_long.append(True)
                raise

        a, message = self._guard(one_clip)
        if too_long:  # a length the file's header did not tell (e.g. WebM): the timeline takes it
            return self.analyze_long(audio_path, progress)
        if a is None:
            return self._failed(message)
        return (a.transcript, *self._outputs(a), a, None)

    def analyze_long(self, audio_path: str, progress) -> tuple:
        """A recording longer than a short clip: the whole recording's reading in the chart, and its timeline
        for `show_timeline`; a segment is read by clicking it (`segment`)."""
        t, message = self._guard(lambda: analyze_timeline(
            self.analyzer, audio_path, self.timeline, progress=lambda f, m: progress(f, desc=m)))
        if t is None:
            return self._failed(message)
        info = explain.summary(t.summary)
        heading = views.timeline_heading(t.duration, len(t.segments), sum(s.speech for s in t.segments))
        numbers = {**t.summary.to_dict(), "explanation": info, "segments": segment_rows(t.source, t)}
        return ("", charts.distribution_figure(t.summary), heading + "\n\n" + explain.summary_markdown(info),
                numbers, None, None, t)

    def show_timeline(self, t: Timeline | None) -> tuple:
        """The timeline's figure, its segments table and CSV download; hidden when no timeline is on screen."""
        if t is None:
            return NO_TIMELINE
        csv_path = write_csv(Path(tempfile.mkdtemp(prefix="amber2-")) / f"{Path(t.source).stem or 'recording'}"
                             "-segments.csv", segment_rows(t.source, t), t.classes)
        levels = [explain.agreement(s.analysis) for s in t.segments]
        return (gr.update(visible=True), self._timeline_figure(t), views.segment_table(t.segments, levels),
                str(csv_path))

    @staticmethod
    def _timeline_figure(t: Timeline, selected: int | None = None):
        return charts.timeline_figure(t, [explain.disagrees(s.analysis) for s in t.segments], selected=selected)

    def segment(self, t: Timeline | None, index: int) -> tuple:
        """One segment of the timeline on screen: its words (editable, as a clip's), the bar chart, its reading."""
        if t is None or not 0 <= index < len(t.segments):
            return (gr.update(),) * 7
        s = t.segments[index]
        a = s.analysis
        chart, summary, numbers, _ = self._outputs(a)
        summary = views.segment_heading(index, s.start, s.end) + "\n\n" + summary
        numbers = {"start": s.start, "end": s.end, **numbers}
        return a.transcript, chart, summary, numbers, a, a, self._timeline_figure(t, index)

    def segment_from_table(self, t: Timeline | None, evt: gr.SelectData) -> tuple:
        """A click on a row of the segments table."""
        return self.segment(t, int(evt.index[0]) if evt is not None and evt.index is not None else -1)

    def segment_from_plot(self, t: Timeline | None, picked: str) -> tuple:
        """A click on the timeline, relayed by page.TIMELINE_CLICK_JS as "index:nonce"."""
        try:
            index = int(str(picked).split(":")[0])
        except ValueError:
            index = -1
        return self.segment(t, index)

    def reanalyze(self, transcript: str, heard: Analysis | None):
        """Edited transcript -> new text and fused predictions, drawn over Whisper's reading (`heard`, whose
        audio embedding is reused)."""
        if heard is None:
            return self._failed("Analyze a clip first; then edit its transcript and press Enter.")[1:5]
        a, message = self._guard(lambda: self.analyzer.reanalyze_text(heard, transcript or ""))
        if a is None:
            return self._failed(message)[1:5]
        return self._outputs(a, before=heard if views.is_edited(transcript, heard.transcript) else None)

    @staticmethod
    def transcript_label(transcript: str | None, heard: Analysis | None, timeline: Timeline | None = None) -> dict:
        """The transcript box says whose words it holds (Whisper's, the visitor's edit), and is closed while the
        chart reads a whole recording (`views.transcript_box`)."""
        return gr.update(**views.transcript_box(transcript, None if heard is None else heard.transcript,
                                                timeline is not None))

    def learn(self, previous: Analysis | None, kappa: float | None, *counts: float | None):
        """Votes -> y (Eq. 1) beside p_A and p_T, and the expert weights u_A, u_T over kappa (Eq. 5).

        Values typed outside a slider's range are brought back inside (the slider shows the value used)."""
        kappa_used = views.clamp(kappa, 0.0, views.LEARN.kappa_max)
        used = views.clamp_votes(counts)
        fixes = [gr.update(value=u) if u != r else gr.update() for u, r in zip([kappa_used, *used], [kappa, *counts])]
        p_a, p_t = self._predictions(previous)
        source = views.learn_source(None if previous is None else previous.transcript)
        y = vote_distribution(used) if sum(used) > 0 else None
        if y is None:
            return (charts.votes_figure(self.classes, used, None), gr.update(), views.no_votes_message(), *fixes)
        curve = expert_weight_curve(p_a, p_t, y)
        return (charts.votes_figure(self.classes, used, y, p_audio=p_a, p_text=p_t),
                charts.expert_weight_figure(curve, kappa_used), explain.weights_sentence(curve, kappa_used, source),
                *fixes)

    def _predictions(self, previous: Analysis | None) -> tuple[np.ndarray, np.ndarray]:
        if previous is not None:
            return previous.audio, previous.text
        return standin(self.classes, "angry"), standin(self.classes, "neutral")

    @staticmethod
    def _guard(run) -> tuple[Analysis | None, str]:
        """(result, "") or (None, a sentence for the visitor)."""
        try:
            return run(), ""
        except UserError as e:  # refusals whose message is written for a person (amber2.errors)
            log.info("refused: %s", one_line(e))  # expected: one line, no traceback
            return None, str(e)
        except Exception as e:  # a visitor sees a sentence; the traceback goes to the log
            log.exception("analysis failed")
            return None, (f"Sorry, this clip could not be analysed ({type(e).__name__}). "
                          "Try another recording.")


ANALYZE = "Analyze"
# The timeline's part of the Analyze outputs, hidden (a short clip, a refusal, a new clip).
NO_TIMELINE = (gr.update(visible=False), None, None, None)
def busy() -> dict:
    return gr.update(interactive=False, value="Analysing…")


def idle() -> dict:
    return gr.update(interactive=True, value=ANALYZE)


class LenientSlider(gr.Slider):
    """A gr.Slider whose typed value outside its range reaches the handler, which brings it back inside and
    shows the value used (gr.Slider itself refuses it with an error that blanks the outputs).

    Gradio writes a stub `app.pyi` for any component class defined here; .gitignore lists it."""

    is_template = True  # drawn by gr.Slider's own frontend

    def preprocess(self, payload: float | None) -> float | None:
        return None if payload is None else float(payload)


def standin(classes: list[str], lean: str) -> np.ndarray:
    """A distribution leaning STANDIN_LEAN on `lean` (first class if absent), the rest spread evenly."""
    p = np.full(len(classes), (1 - STANDIN_LEAN) / (len(classes) - 1))
    p[classes.index(lean) if lean in classes else 0] = STANDIN_LEAN
    return p


# ---- layout ----

def build_demo(analyzer: Analyzer, model_ref: str, config: dict, card: str | None,
               rooms: RoomStore | None = None) -> gr.Blocks:
    """The Blocks app around a loaded Analyzer (`rooms`: Vote together's store, default under data_root())."""
    rooms = rooms if rooms is not None else RoomStore(data_root())
    classes = list(analyzer.classes)
    h = Handlers(analyzer, classes)
    report = model_panel.read_report(model_ref)
    panel = model_panel.describe(model_panel.display_ref(model_ref), config, card,
                                 model_panel.head_metrics(report) if report else None)
    counts0 = [EXAMPLE_VOTES.get(c, 0) for c in classes]
    kappa0 = views.model_kappa(analyzer.model.provenance)      # the checkpoint's own, as the Model tab says
    votes0, weights0, learn0, *_ = h.learn(None, kappa0, *counts0)

    with gr.Blocks(title="AmbER² emotion from speech and text") as demo:
        state = gr.State(None)  # the reading on screen (Whisper's words or the visitor's edit)
        heard = gr.State(None)  # the reading of Whisper's own words: the edit is drawn over it
        kept = vote_tab.browser_states(rooms)  # outside the tabs, so the browser's copy is read at page load
        gr.Markdown(page.INTRO)
        # "wrap", not gradio's default overflow menu: a tab that does not fit a narrow phone goes to a second row
        # rather than behind a "..." button (the menu measures widths at load, so what it hides depends on fonts).
        with gr.Tabs(overflow_behavior="wrap"):
            with gr.Tab("Analyze"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        # Recording here; uploads go through gr.File, whose accept list can name .webm (gr.Audio's
                        # own upload accepts audio/* only, and Chromium types a .webm file video/webm).
                        audio = gr.Audio(sources=["microphone"], type="filepath", label="Speech", elem_id="speech")
                        gr.Markdown(views.MIC_HINT)
                        gr.Markdown(views.MIC_BLOCKED, elem_id="mic-blocked")
                        upload = gr.File(label="Upload a recording", file_types=views.UPLOAD_TYPES, type="filepath",
                                         height=156, elem_id="upload")
                        run = gr.Button(ANALYZE, variant="primary")
                        transcript = gr.Textbox(label=views.TRANSCRIPT_HEARD, lines=1, max_lines=4, interactive=True,
                                                info=views.TRANSCRIPT_INFO)
                    with gr.Column(scale=2, min_width=300):
                        chart = gr.Plot(charts.placeholder_figure(classes, "Analyze a clip to see its emotions"),
                                        label="Emotion distributions", show_label=False, elem_id="reading")
                        summary = gr.Markdown("")
                        gr.Markdown(views.trust_note(config))
                # A long recording's timeline, below the reading of the whole recording (or of the segment clicked).
                with gr.Column(visible=False) as timeline_box:
                    timeline_plot = gr.Plot(show_label=False, elem_id="timeline")
                    segment_pick = gr.Textbox(elem_id="segment-pick", show_label=False, container=False)
                    segments_table = gr.Dataframe(headers=views.SEGMENT_COLUMNS, interactive=False, wrap=True,
                                                  label="Segments (click one to read it)", elem_id="segments",
                                                  max_height=360, column_widths=views.SEGMENT_WIDTHS)
                    csv_file = gr.File(label="Segments as CSV", interactive=False, elem_id="segments-csv")
                timeline_state = gr.State(None)
                # Below both columns, so that on a phone the chart comes right after the transcript.
                examples = gr.Examples([[str(path)] for path, _ in EXAMPLE_CLIPS], inputs=[audio],
                                       example_labels=[label for _, label in EXAMPLE_CLIPS],
                                       label="Examples (click one to analyze it)", cache_examples=False,
                                       api_name="load_example")
                with gr.Accordion("Numbers (JSON)", open=False):
                    numbers = gr.JSON(label="Analysis")
            with gr.Tab("Learn"):
                gr.Markdown(page.LEARN_EQ1, latex_delimiters=page.LATEX)
                with gr.Row():
                    with gr.Column(scale=1, min_width=260):
                        votes = [LenientSlider(0, views.LEARN.votes_max, value=v, step=1, label=f"votes: {c}")
                                 for c, v in zip(classes, counts0)]
                    votes_plot = gr.Plot(votes0, show_label=False, elem_id="votes-plot")
                gr.Markdown(page.LEARN_EQ5, latex_delimiters=page.LATEX)
                kappa = LenientSlider(0, views.LEARN.kappa_max, value=kappa0, step=0.25, label="κ (sharpness)")
                weights_plot = gr.Plot(weights0, show_label=False)
                learn_text = gr.Markdown(learn0)
            # "Vote", not "Vote together": four short names keep one row on a 390 px phone
            with gr.Tab("Vote", id="vote", elem_id="vote-together"):
                vote_tab.build(demo, rooms, analyzer, classes, EXAMPLE_CLIPS, kept)
            with gr.Tab("Model"):
                gr.Markdown(panel["summary"])
                gr.Markdown(panel["results"])
                gr.Markdown(model_panel.GLOSSARY)
                if panel["card"]:
                    with gr.Accordion("Model card", open=False):
                        gr.Markdown(panel["card"])

        learn_inputs = [state, kappa, *votes]
        learn_outputs = [votes_plot, weights_plot, learn_text, kappa, *votes]
        # timeline_state is a State, so the /analyze API returns what it always did; show_timeline draws it.
        analyze_outputs = [transcript, chart, summary, numbers, state, heard, timeline_state]
        timeline_parts = [timeline_box, timeline_plot, segments_table, csv_file]
        segment_outputs = [transcript, chart, summary, numbers, state, heard, timeline_plot]
        private = {"api_visibility": "private", "queue": False}
        # The button is disabled while its clip is analysed: a double click cannot queue the work twice.
        run.click(busy, None, run, **private).then(
            h.analyze, inputs=[audio], outputs=analyze_outputs, api_name="analyze").then(
            h.show_timeline, [timeline_state], timeline_parts, **private).then(
            h.transcript_label, [transcript, heard, timeline_state], transcript, **private).then(
            idle, None, run, **private).then(   # the button comes back with the results, not after Learn's redraw
            h.learn, learn_inputs, learn_outputs, api_name="learn_after_analyze")
        # A clicked example fills the audio input, then is analysed at once (not cached: facts.md §5).
        examples.load_input_event.then(busy, None, run, **private).then(
            h.analyze, inputs=[audio], outputs=analyze_outputs, api_name="analyze_example").then(
            h.show_timeline, [timeline_state], timeline_parts, **private).then(
            h.transcript_label, [transcript, heard, timeline_state], transcript, **private).then(
            idle, None, run, **private).then(   # the button comes back with the results, not after Learn's redraw
            h.learn, learn_inputs, learn_outputs, api_name="learn_after_example")
        # A new upload or recording starts clean: nothing of the last clip stays on screen.
        upload.upload(h.uploaded, [upload], [audio, upload, *analyze_outputs, *timeline_parts],
                      api_visibility="private").then(
            h.transcript_label, [transcript, heard, timeline_state], transcript, **private)
        audio.stop_recording(h.cleared, None, [*analyze_outputs, *timeline_parts], api_visibility="private").then(
            h.transcript_label, [transcript, heard, timeline_state], transcript, **private)
        transcript.submit(h.reanalyze, inputs=[transcript, heard], outputs=[chart, summary, numbers, state],
                          api_name="reanalyze").then(
            h.transcript_label, [transcript, heard, timeline_state], transcript, **private).then(
            h.learn, learn_inputs, learn_outputs, api_name="learn_after_reanalyze")
        segments_table.select(h.segment_from_table, [timeline_state], segment_outputs, api_name="segment").then(
            h.transcript_label, [transcript, heard, timeline_state], transcript, **private).then(
            None, js=page.SHOW_READING_JS)
        # .change, not .input: the value is written by page.TIMELINE_CLICK_JS, never by a handler (no loop)
        segment_pick.change(h.segment_from_plot, [timeline_state, segment_pick], segment_outputs,
                           api_visibility="private").then(
            h.transcript_label, [transcript, heard, timeline_state], transcript, **private).then(
            None, js=page.SHOW_READING_JS)
        demo.load(None, js=page.TIMELINE_CLICK_JS)
        demo.load(None, js=page.MIC_WATCH_JS)
        # .input: every change the visitor makes (drag, arrow keys, a typed number); always_last drops stale ones.
        gr.on([c.input for c in (kappa, *votes)], h.learn, learn_inputs, learn_outputs, api_name="learn",
              trigger_mode="always_last")
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
    p.add_argument("--data", type=Path, default=d.data,
                   help="folder of Vote together's rooms and votes (env AMBER2_DATA; default %(default)s)")
    return AppConfig(**vars(p.parse_args(argv)))


def load(cfg: AppConfig) -> tuple[Analyzer, dict, str | None]:
    """Load the models once, before serving."""
    try:
        analyzer = Analyzer(model=cfg.model, whisper=cfg.whisper)
    except ValueError as e:  # no bundled checkpoint, or one that does not fit its encoders: say so, no traceback
        raise SystemExit(str(e)) from None
    config, card = model_panel.read_checkpoint(cfg.model)
    if cfg.warmup:
        analyzer.analyze(str(EXAMPLE_CLIPS[0][0]))
    return analyzer, config, card


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO)
    cfg = parse_args(argv)
    analyzer, config, card = load(cfg)
    rooms = RoomStore(cfg.data)
    rooms.purge_expired()
    demo = build_demo(analyzer, cfg.model, config, card, rooms)
    demo.queue(default_concurrency_limit=cfg.concurrency)
    # Real corpus examples are read in place beside the checkout: Gradio must be allowed to serve them.
    corpus_dirs = sorted({str(path.parent) for path, _ in EXAMPLE_CLIPS if example_clips.SHARED in path.parents})
    demo.launch(server_name=cfg.host, server_port=cfg.port, share=cfg.share, max_file_size=cfg.max_file_size,
                theme=gr.themes.Soft(), css=page.CSS + "\n" + vote_tab.CSS,
                allowed_paths=corpus_dirs + [str(rooms.clips)])  # round clips only, never the database


if __name__ == "__main__":
    main()
