"""The app's Vote tab (vote together): a teacher plays a clip, the class votes on phones, the model is revealed.

Gradio wiring only: storage and rules are `amber2_app.rooms`, a round's numbers and sentences `amber2_app.classroom`,
figures `amber2_app.charts`. The teacher's room and key live in the teacher's browser (`gr.BrowserState`, so a
reload or an app restart keeps them); a student's browser keeps a random voter token the same way (one vote
per browser per round, whatever the reloads). The API endpoints (`/room_create`, `/room_next`, `/room_vote`,
`/room_state`, `/room_reveal`, `/room_close`, `/room_export`) answer scripts; a refusal raises `gr.Error`,
whose message a `gradio_client` caller receives.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import gradio as gr
import numpy as np

from amber2_app import charts
from amber2.errors import UserError
from amber2.heads import FIELDS, TABLE
from amber2.paper import KAPPA_DEFAULT
from amber2_app.classroom import round_summary, start_round
from amber2_app.views import LEARN, model_kappa
from amber2.metrics import METRIC_LABELS
from amber2_app.rooms import RoomError, RoomStore, Teacher, format_code, normalize_code
from amber2_app.trust_curves import expert_weight_curve

log = logging.getLogger("amber2.app")

TEACHER_TICK = 1.5   # seconds between refreshes of the projector view
STUDENT_TICK = 2.0   # phones poll a little less often

CSS = """#room-code h1 {font-size: 3rem; letter-spacing: .15em; margin: .2em 0;}
#vote-choice label {font-size: 1.1rem; padding: .6em .9em;}"""

TEACHER_INTRO = """### Vote together: your class are the raters
Pick a clip (record, upload or an example) and start a round. Put the room code and link on the projector;
students open it on their phones, listen and vote one emotion each. Their votes become a distribution
(Eq. 1). Press **Reveal** to put the model's voice, words and fused readings beside the class, and see which
expert AmbER² would trust (Eq. 5). Rooms last 24 hours: download the votes before then."""

STUDENT_HELP = ("Listen to the clip, then choose the emotion you hear. You can change your vote until the "
                "teacher closes the round or reveals the model's answer. Nobody sees who voted what.")


REVEAL_EMPTY = "⚠️ No votes yet: reveal the model's answer once the class has voted (the round stays open)."
ALREADY_CLOSED = "Voting on this round had already ended: revealing the model's answer closes it."


def _message(e: Exception) -> str:
    return str(e) if isinstance(e, UserError) else \
        f"Something went wrong ({type(e).__name__}); try again."


def _page_link(request: gr.Request | None, code: str) -> str:
    """The link students open: this server's address (as the teacher's browser reached it) with ?room=CODE."""
    headers = request.headers if request is not None else {}
    host = headers.get("x-forwarded-host") or headers.get("host") or "127.0.0.1:7860"
    proto = headers.get("x-forwarded-proto") or ("http" if host.startswith(("127.", "localhost")) else "https")
    return f"{proto.split(',')[0].strip()}://{host.split(',')[0].strip()}/?room={code}"


def _teacher(value) -> Teacher | None:
    if isinstance(value, dict) and value.get("room") and value.get("key"):
        return Teacher(str(value["room"]), str(value["key"]))
    return None


def metrics_markdown(summary: dict) -> str:
    """Each head against the class: JS distance, BC, R² (the labels and arrows of amber2.metrics)."""
    head_names = {h.field: f"{h.short} (p_{h.key})" for h in TABLE}
    keys = ("js", "bc", "r2")
    lines = ["| head vs class | " + " | ".join(METRIC_LABELS[k] for k in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for head, name in head_names.items():
        m = summary["metrics"][head]
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in keys) + " |")
    return "\n".join(lines)


def class_markdown(summary: dict) -> str:
    """N, the ambiguity of the class's votes, and the round's status, in one line."""
    status = ("revealed" if summary["revealed"] else "closed" if summary["closed"] else "open for votes")
    if not summary["n"]:
        return f"**Round {summary['round']}** ({status}): no votes yet."
    return (f"**Round {summary['round']}** ({status}): **N = {summary['n']}** votes. Ambiguity of the class: "
            f"entropy {summary['entropy']:.2f} nats, *{summary['ambiguity']}*.")


class VoteHandlers:
    """The functions Gradio calls for Vote together."""

    def __init__(self, store: RoomStore, analyzer, classes: Sequence[str]):
        self.store = store
        self.analyzer = analyzer
        self.classes = list(classes)

    # ---- API (scripts and tests; a refusal raises gr.Error with the message) ----

    def _api(self, run):
        try:
            return run()
        except UserError as e:
            raise gr.Error(str(e), print_exception=False) from None

    def room_create(self, audio: str | None, transcript: str | None) -> dict:
        """Open a room whose first round is this clip (an empty transcript: Whisper's) -> {room, teacher_key}."""
        teacher, _ = self._api(lambda: start_round(self.store, self.analyzer, audio, transcript))
        return {"room": teacher.room, "teacher_key": teacher.key}

    def room_next(self, room: str, teacher_key: str, audio: str | None, transcript: str | None) -> dict:
        """Start the room's next round with this clip (the current one closes) -> {room, round}."""
        teacher, number = self._api(lambda: start_round(self.store, self.analyzer, audio, transcript,
                                                        Teacher(normalize_code(room), teacher_key)))
        return {"room": teacher.room, "round": number}

    def room_vote(self, room: str, emotion: str, request: gr.Request) -> dict:
        """Vote one emotion on the room's current round; the voter is the calling session -> {ok: true}."""
        number, choice = self._api(lambda: self.store.vote(room, request.session_hash, emotion))
        return {"ok": True, "round": number, "emotion": choice}

    def room_state(self, room: str, kappa: float = KAPPA_DEFAULT) -> dict:
        """The current round: classes, counts, n, y, closed, revealed; after the reveal model, metrics, weights."""
        return self._api(lambda: round_summary(self.store.state(room), self._kappa(kappa)))

    def room_reveal(self, room: str, teacher_key: str) -> dict:
        """Show the model's answer for the current round (voting ends) -> the round's state."""
        self._api(lambda: self.store.reveal(room, teacher_key))
        return self.room_state(room)

    def room_close(self, room: str, teacher_key: str) -> dict:
        """End voting on the current round -> the round's state."""
        self._api(lambda: self.store.close(room, teacher_key))
        return self.room_state(room)

    def room_export(self, teacher_key: str) -> str:
        """All rounds of the teacher's room as the trainer's votes CSV (audio paths: clips/<id>.flac)."""
        return self._api(lambda: self.store.export_csv(teacher_key))

    @staticmethod
    def _kappa(kappa) -> float:
        try:
            return min(max(float(kappa), 0.0), LEARN.kappa_max)
        except (TypeError, ValueError):
            return KAPPA_DEFAULT

    # ---- page load ----

    def load(self, teacher_value, voter, request: gr.Request):
        """?room=CODE: the student view of that room; else the teacher view, restored from the browser's key."""
        voter = voter or secrets.token_urlsafe(16)
        code = normalize_code((request.query_params or {}).get("room")) if request is not None else ""
        if code:
            return (voter, gr.update(visible=False), gr.update(visible=True), code, 0,
                    gr.Timer(active=True), gr.update(), gr.update(), gr.update())
        teacher = _teacher(teacher_value)
        room = self.store.teacher_room(teacher.key) if teacher else None
        if room is None:
            return (voter, gr.update(visible=True), gr.update(visible=False), "", 0, gr.Timer(active=False),
                    None if teacher else gr.update(), gr.Timer(active=False), gr.update())
        return (voter, gr.update(visible=True), gr.update(visible=False), "", 0, gr.Timer(active=False),
                gr.update(), gr.Timer(active=True), self._room_markdown(teacher.room, request))

    def join(self, typed: str, request: gr.Request):
        """A student typed a code on the app's page: the same view as opening the link."""
        code = normalize_code(typed)
        if not code:
            return gr.update(), gr.update(), "", 0, gr.Timer(active=False), "Type the code the teacher shows."
        try:
            self.store.state(code)
        except RoomError as e:
            return gr.update(), gr.update(), "", 0, gr.Timer(active=False), str(e)
        return gr.update(visible=False), gr.update(visible=True), code, 0, gr.Timer(active=True), ""

    # ---- teacher ----

    def _room_markdown(self, room: str, request: gr.Request | None) -> str:
        link = _page_link(request, room)
        return f"Room code\n# {format_code(room)}\nStudents open **[{link}]({link})** or type the code."

    def start(self, audio, transcript, teacher_value, request: gr.Request):
        """Start a round: the next one in the teacher's room, or a new room (first round, or an expired room)."""
        teacher = _teacher(teacher_value)
        if teacher is not None and self.store.teacher_room(teacher.key) is None:
            teacher = None
        try:
            teacher, number = start_round(self.store, self.analyzer, audio, transcript, teacher)
        except Exception as e:  # a refusal, bad audio or a failure: a sentence in the panel
            if not isinstance(e, UserError):
                log.exception("starting a round failed")  # a bug: the maintainer gets the traceback
            else:
                log.info("refused: %s", " ".join(str(e).split()))
            return gr.update(), gr.update(), f"⚠️ {_message(e)}", gr.Timer(active=teacher is not None), ""
        return ({"room": teacher.room, "key": teacher.key}, self._room_markdown(teacher.room, request),
                f"Round {number} started: students can vote now.", gr.Timer(active=True), "")

    def teacher_view(self, teacher_value, kappa, shown: str):
        """The projector view: the class's distribution (and after the reveal the model's heads, the metrics and
        Eq. 5); unchanged outputs are left alone so the charts do not flicker every tick."""
        teacher = _teacher(teacher_value)
        if teacher is None:
            return (shown, *[gr.update()] * 7)
        try:
            summary = round_summary(self.store.state(teacher.room), self._kappa(kappa))
        except RoomError as e:
            return (shown, gr.update(), gr.update(), f"⚠️ {e}", *[gr.update()] * 4)
        sig = json.dumps([summary[k] for k in ("round", "counts", "closed", "revealed")] + [self._kappa(kappa)])
        if sig == shown:
            return (shown, *[gr.update()] * 7)
        classes = summary["classes"]
        model = summary.get("model")
        if summary["y"] is None:
            votes = charts.placeholder_figure(classes, "No votes yet")
        else:
            votes = charts.votes_figure(classes, summary["counts"], summary["y"],
                                        **({f"p_{h}": model[h] for h in FIELDS} if model else {}))
        revealed = "metrics" in summary
        weights = metrics = sentence = gr.update()
        if revealed:
            curve = expert_weight_curve(np.asarray(model["audio"]), np.asarray(model["text"]),
                                        np.asarray(summary["y"]))
            weights = charts.expert_weight_figure(curve, self._kappa(kappa))
            metrics, sentence = metrics_markdown(summary), summary["sentence"]
        elif summary["revealed"]:
            sentence = summary["sentence"]
        return (sig, votes, class_markdown(summary), gr.update(), gr.update(visible=summary["revealed"]),
                weights, metrics, sentence)

    def reveal(self, teacher_value):
        def act(teacher: Teacher, state) -> str:
            if not sum(state.counts):     # no class to put the model beside: refused, the round stays open
                return REVEAL_EMPTY
            self.store.reveal(teacher.room, teacher.key)
            return "The model's answer is on the chart."

        return self._control(teacher_value, act)

    def close(self, teacher_value):
        def act(teacher: Teacher, state) -> str:
            self.store.close(teacher.room, teacher.key)
            return ALREADY_CLOSED if state.closed else "Round closed: no more votes."

        return self._control(teacher_value, act)

    def _control(self, teacher_value, act: Callable[[Teacher, object], str]) -> str:
        """`act(teacher, the round's state before it)` for the teacher's room; a refusal as a sentence."""
        teacher = _teacher(teacher_value)
        if teacher is None:
            return "⚠️ Start a round first."
        try:
            return act(teacher, self.store.state(teacher.room))
        except RoomError as e:
            return f"⚠️ {e}"

    def export(self, teacher_value):
        """A zip of votes.csv and its clips, ready for `python -m train --dataset csv`."""
        teacher = _teacher(teacher_value)
        try:
            if teacher is None:
                raise RoomError("Start a round first: there is nothing to download yet.")
            dest = Path(tempfile.mkdtemp(prefix="amber2-votes-")) / f"votes-{teacher.room}.zip"
            self.store.export_zip(teacher.key, dest)
        except RoomError as e:
            return gr.update(visible=False), f"⚠️ {e}"
        return gr.update(value=str(dest), visible=True), (
            "Unzip it, then train: `python -m train --dataset csv --csv votes.csv "
            f"--space {self.store.state(teacher.room).label_space} --out runs/our-class`.")

    # ---- student ----

    def student_view(self, room: str, voter: str | None, shown_round: int):
        """The phone view: the current clip (sent again only when the round changes, so playback is not cut),
        the vote buttons (open while the round is), and after the reveal the class beside the model."""
        if not room:
            return (shown_round, *[gr.update()] * 5)
        try:
            state = self.store.state(room)
        except RoomError as e:
            return (shown_round, f"⚠️ {e}", gr.update(), gr.update(interactive=False), gr.update(), gr.update())
        summary = round_summary(state)
        new_round = state.number != shown_round
        mine = self.store.my_vote(room, voter) if voter else None
        if summary["revealed"]:
            status = (f"The teacher revealed the model's answer. Your vote: **{mine or 'none'}**. "
                      f"{summary['plain_sentence']}")
        elif summary["closed"]:
            status = f"Round {state.number} is closed. Your vote: **{mine or 'none'}**. Wait for the next clip."
        else:
            status = (f"Your vote: **{mine}**. You can still change it." if mine else STUDENT_HELP)
        header = f"### Room {format_code(state.room)} · round {state.number}"
        chart = gr.update(visible=False)
        if summary["revealed"] and summary["y"] is not None:
            m = summary["model"]
            chart = gr.update(value=charts.votes_figure(summary["classes"], summary["counts"], summary["y"],
                                                        p_audio=m["audio"], p_text=m["text"], p_fused=m["fused"]),
                              visible=True)
        # a new round starts blank; a reloaded page shows the vote this browser already gave
        choice = gr.update(interactive=not summary["closed"], **({"value": mine} if new_round else {}))
        audio = gr.update(value=str(state.clip)) if new_round else gr.update()
        return state.number, header, audio, choice, status, chart

    def student_vote(self, room: str, emotion: str | None, voter: str | None, shown_round: int) -> str:
        if not emotion:
            return STUDENT_HELP
        try:
            _, choice = self.store.vote(room, voter, emotion, round_number=shown_round or None)
        except RoomError as e:
            return f"⚠️ {e}"
        return f"Your vote: **{choice}**. You can still change it."


def browser_states(store: RoomStore) -> tuple[gr.BrowserState, gr.BrowserState]:
    """(teacher, voter): what a browser keeps between visits. Create them outside any tab: a tab's content
    mounts only when first shown, and a state that has not mounted reaches the page-load event empty."""
    # Stable across restarts (derived from the data folder's secret): a teacher's room survives a restart.
    secret = hmac.new(store.secret, b"browser-state", hashlib.sha256).hexdigest()[:32]
    return (gr.BrowserState(None, storage_key="amber2-vote-teacher", secret=secret),
            gr.BrowserState(None, storage_key="amber2-vote-voter", secret=secret))


def build(demo: gr.Blocks, store: RoomStore, analyzer, classes: Sequence[str],
          examples: Sequence[tuple[Path, str]], kept: tuple[gr.BrowserState, gr.BrowserState]) -> None:
    """The tab's components and events; call inside `gr.Tab("Vote")` of `demo`, with `kept` from
    `browser_states` (made outside the tabs)."""
    h = VoteHandlers(store, analyzer, classes)
    private = {"api_visibility": "private", "show_progress": "hidden"}
    teacher, voter = kept
    room = gr.State("")          # the student's room
    shown_round = gr.State(0)    # the round the student's page shows
    shown = gr.State("")         # what the teacher's charts show (skip identical redraws)

    with gr.Column(visible=True) as teacher_col:
        with gr.Row():
            join_code = gr.Textbox(label="Student? Type the room code", placeholder="ABCD-EFGH", scale=3)
            join_btn = gr.Button("Join", scale=1)
        join_msg = gr.Markdown("")
        gr.Markdown(TEACHER_INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                clip = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Clip for the class",
                                elem_id="vote-clip")
                gr.Examples([[str(p)] for p, _ in examples], inputs=[clip], example_labels=[lb for _, lb in examples],
                            label="Or an example", cache_examples=False)
                words = gr.Textbox(label="Transcript (optional: empty lets Whisper write it)", lines=1)
                start = gr.Button("Start round", variant="primary", elem_id="vote-start")
                status = gr.Markdown("")
                with gr.Row():
                    reveal = gr.Button("Reveal", elem_id="vote-reveal")
                    close = gr.Button("Close round", elem_id="vote-close")
                    export = gr.Button("Download votes", elem_id="vote-export")
                download = gr.File(label="votes.csv + clips (zip)", visible=False, elem_id="vote-export-file")
            with gr.Column(scale=2, min_width=300):
                room_md = gr.Markdown("", elem_id="room-code")
                class_md = gr.Markdown("")
                votes_plot = gr.Plot(charts.placeholder_figure(list(classes), "Start a round"), show_label=False,
                                     elem_id="vote-class-plot")
                with gr.Column(visible=False) as reveal_col:
                    sentence = gr.Markdown("")
                    metrics = gr.Markdown("")
                    kappa = gr.Slider(0, LEARN.kappa_max, step=0.25, label="κ (sharpness of Eq. 5)",
                                      value=model_kappa(getattr(getattr(analyzer, "model", None), "provenance", {})))
                    weights_plot = gr.Plot(show_label=False)
    with gr.Column(visible=False) as student_col:
        student_md = gr.Markdown("### Joining the room…")
        student_clip = gr.Audio(type="filepath", interactive=False, label="The clip", elem_id="vote-student-clip")
        choice = gr.Radio(list(classes), label="Which emotion do you hear?", elem_id="vote-choice")
        student_status = gr.Markdown(STUDENT_HELP)
        student_plot = gr.Plot(visible=False, show_label=False, elem_id="vote-student-plot")

    teacher_timer = gr.Timer(TEACHER_TICK, active=False)
    student_timer = gr.Timer(STUDENT_TICK, active=False)

    # API slots: the file endpoints need components (Gradio checks uploaded paths); the rest take plain strings.
    with gr.Column(visible=False):
        api_room = gr.Textbox()
        api_key = gr.Textbox()
        api_out = gr.JSON()
        api_trigger = gr.Button()
    api_trigger.click(h.room_create, [clip, words], api_out, api_name="room_create")
    api_trigger.click(h.room_next, [api_room, api_key, clip, words], api_out, api_name="room_next")
    many = {"concurrency_limit": 16}  # votes and reads are short database calls
    gr.api(h.room_vote, api_name="room_vote", **many)
    gr.api(h.room_state, api_name="room_state", **many)
    gr.api(h.room_reveal, api_name="room_reveal")
    gr.api(h.room_close, api_name="room_close")
    gr.api(h.room_export, api_name="room_export")

    teacher_outputs = [shown, votes_plot, class_md, status, reveal_col, weights_plot, metrics, sentence]
    student_outputs = [shown_round, student_md, student_clip, choice, student_status, student_plot]
    demo.load(h.load, [teacher, voter], [voter, teacher_col, student_col, room, shown_round, student_timer,
                                          teacher, teacher_timer, room_md], **private).then(
        h.student_view, [room, voter, shown_round], student_outputs, **private).then(
        h.teacher_view, [teacher, kappa, shown], teacher_outputs, **private)
    # ?room=CODE opens this tab (its button's id is the tab's elem_id + "-button").
    demo.load(None, js="() => { if (new URLSearchParams(window.location.search).get('room')) {"
                       " const b = document.getElementById('vote-together-button'); if (b) b.click(); } }")
    join_btn.click(h.join, [join_code], [teacher_col, student_col, room, shown_round, student_timer, join_msg],
                   **private).then(h.student_view, [room, voter, shown_round], student_outputs, **private)
    start.click(lambda: gr.update(interactive=False, value="Analysing the clip…"), None, start, **private).then(
        h.start, [clip, words, teacher], [teacher, room_md, status, teacher_timer, shown], api_visibility="private"
    ).then(lambda: gr.update(interactive=True, value="Start round"), None, start, **private).then(
        h.teacher_view, [teacher, kappa, shown], teacher_outputs, **private)
    reveal.click(h.reveal, [teacher], status, **private).then(
        h.teacher_view, [teacher, kappa, shown], teacher_outputs, **private)
    close.click(h.close, [teacher], status, **private).then(
        h.teacher_view, [teacher, kappa, shown], teacher_outputs, **private)
    export.click(h.export, [teacher], [download, status], **private)
    kappa.input(h.teacher_view, [teacher, kappa, shown], teacher_outputs, trigger_mode="always_last", **private)
    teacher_timer.tick(h.teacher_view, [teacher, kappa, shown], teacher_outputs, **private, **many)
    student_timer.tick(h.student_view, [room, voter, shown_round], student_outputs, **private, **many)
    choice.input(h.student_vote, [room, choice, voter, shown_round], student_status, **private, **many)
