"""The Gradio app, launched as a subprocess on a free port and driven with gradio_client like a visitor's browser.

Uses the bundled checkpoint assets/amber2-demo when it is there, else a randomly initialised AmbER2Model of the
same shape (the app must work with any trainer-made checkpoint; the numbers are checked for consistency, not for
emotional accuracy).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import soundfile as sf
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "assets" / "amber2-demo"
KEY_WORDS = ("kids", "talking", "door")  # RAVDESS statement 01: "Kids are talking by the door"

pytestmark = pytest.mark.slow  # loads Whisper and MiniLM in the app process


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """The bundled demo checkpoint, or a randomly initialised one of the same shape when it is absent."""
    if (BUNDLED / "config.json").is_file():
        return BUNDLED
    from amber2.labels import get_space
    from amber2.model import AmbER2Model

    space = get_space("demo7")
    model = AmbER2Model(audio_dim=512, text_dim=384, classes=list(space.classes), label_space="demo7",
                        audio_encoder="whisper-base", text_encoder="minilm-l6",
                        provenance={"note": "randomly initialised for tests"})
    out = tmp_path_factory.mktemp("random-demo")
    model.save_pretrained(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_app(model: Path, log_path: Path, timeout: float = 300.0, args: Sequence[str] = (),
               env: dict[str, str] | None = None):
    """Start `python app.py --model MODEL [args]` on a free port; return (process, url) once it answers HTTP.
    The log is appended to (a restarted app keeps the first run's lines); `env`: extra variables."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", **(env or {})}
    log = open(log_path, "a")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", str(model), "--port", str(port),
                             *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"app.py exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    pytest.fail(f"app.py did not answer within {timeout:.0f} s:\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def app_url(model_dir, tmp_path_factory):
    proc, url = launch_app(model_dir, tmp_path_factory.mktemp("app") / "app.log")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False)


def analyze(c, path: Path | None):
    from gradio_client import handle_file

    return c.predict(handle_file(str(path)) if path else None, api_name="/analyze")


def check_numbers(numbers: dict) -> None:
    """The JSON output is self-consistent, checked against scipy."""
    n = len(numbers["classes"])
    for head in ("audio", "text", "fused"):
        p = np.asarray(numbers[head])
        assert p.shape == (n,) and np.all(p >= 0)
        assert p.sum() == pytest.approx(1.0, abs=1e-5)
        assert numbers["entropy"][head] == pytest.approx(scipy_entropy(p), abs=1e-4)
    assert numbers["conflict"] == pytest.approx(jensenshannon(numbers["audio"], numbers["text"]), abs=1e-4)


def test_ravdess_clip_is_transcribed_and_scored(app_url, model_dir, ravdess_clip):
    transcript, figure, summary, numbers = analyze(client(app_url), ravdess_clip)
    assert all(w in transcript.lower() for w in KEY_WORDS), transcript
    assert numbers["transcript"] == transcript
    check_numbers(numbers)
    # The panel beside the chart names each head's top emotion and says what the conflict means.
    info = numbers["explanation"]
    for head in ("audio", "text", "fused"):
        top = numbers["classes"][int(np.argmax(numbers[head]))]
        assert info["heads"][head]["top"] == top and top in summary
    assert info["conflict"]["sentence"] in summary
    # The chart: one grouped bar figure, three traces over the classes.
    fig = json.loads(figure["plot"])  # gr.Plot sends the figure's plotly JSON
    assert fig["layout"]["barmode"] == "group" and [t["type"] for t in fig["data"]] == ["bar"] * 3
    for trace, head in zip(fig["data"], ("audio", "text", "fused")):
        np.testing.assert_allclose(trace["y"], numbers[head], atol=1e-6)


def test_bundled_model_hears_an_angry_voice_it_never_trained_on(app_url, model_dir, shared_dir):
    """EMOVO (Italian, never in the demo corpus): the app's voice head hears the actor's anger, and the panel
    says so."""
    from amber2_app.examples import corpus_examples

    if model_dir != BUNDLED:
        pytest.skip("the random stand-in heads have no opinion on anger")
    angry = next(path for path, label in corpus_examples(shared_dir) if "angry" in label)
    _, _, summary, numbers = analyze(client(app_url), angry)
    check_numbers(numbers)
    assert numbers["classes"][int(np.argmax(numbers["audio"]))] == "angry"
    assert "angry" in numbers["explanation"]["conflict"]["sentence"] and "angry" in summary


def test_editing_the_transcript_rereads_only_the_words(app_url, ravdess_clip):
    c = client(app_url)
    _, _, _, before = analyze(c, ravdess_clip)
    edited = "I hate you, get out of my house right now!"
    figure, summary, after = c.predict(edited, api_name="/reanalyze")
    assert after["transcript"] == edited
    check_numbers(after)
    np.testing.assert_allclose(after["audio"], before["audio"], atol=1e-6)
    assert not np.allclose(after["text"], before["text"], atol=1e-6)
    assert not np.allclose(after["fused"], before["fused"], atol=1e-6)
    # Whisper's reading stays on the chart as outlines behind the edited one (words and fused heads).
    fig = json.loads(figure["plot"])
    outlines = [t for t in fig["data"] if t.get("legendgroup") == "before"]
    np.testing.assert_allclose(outlines[0]["y"], before["text"], atol=1e-6)


def test_reanalyze_before_any_clip_says_what_to_do(app_url):
    _, summary, numbers = client(app_url).predict("some words", api_name="/reanalyze")
    assert "Analyze a clip first" in summary and "Analyze a clip first" in numbers["error"]


def _silence(path: Path) -> Path:
    sf.write(path, np.zeros(16000 * 2, dtype=np.float32), 16000)
    return path


def _not_audio(path: Path) -> Path:
    path.write_text("This is a text file pretending to be a WAV.\n" * 20)
    return path


def _eleven_minutes(path: Path) -> Path:
    """Past the timeline's 10-minute limit (a 3-minute upload now gets a timeline: test_browser, test_timeline)."""
    t = np.arange(16000 * 660) / 16000
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, subtype="PCM_16")
    return path


@pytest.mark.parametrize("make", [None, _silence, _not_audio, _eleven_minutes],
                         ids=["no-audio", "silence", "text-renamed-wav", "eleven-minutes"])
def test_bad_input_gets_a_clear_message_and_the_app_keeps_working(app_url, ravdess_clip, tmp_path, make):
    """A refusal replaces every result (no transcript, an empty chart, one message), not an error left beside
    the last clip's results."""
    c = client(app_url)
    transcript, _, _, _ = analyze(c, ravdess_clip)
    bad = make(tmp_path / "bad.wav") if make else None
    transcript, figure, summary, numbers = analyze(c, bad)
    message = numbers["error"]
    assert len(message) > 15 and "Traceback" not in message and "Error(" not in message, message
    assert transcript == "" and message in summary and "No result" in summary
    assert all(max(t["y"]) == 0 for t in json.loads(figure["plot"])["data"])
    transcript, _, _, numbers = analyze(c, ravdess_clip)
    assert "door" in transcript.lower()
    check_numbers(numbers)


def test_8khz_stereo_works(app_url, ravdess_clip, tmp_path):
    audio, sr = sf.read(ravdess_clip, dtype="float32")
    import scipy.signal

    low = scipy.signal.resample_poly(audio, 8000, sr).astype(np.float32)
    stereo = np.stack([low, 0.8 * low], axis=1)
    path = tmp_path / "stereo8k.wav"
    sf.write(path, stereo, 8000)
    transcript, _, _, numbers = analyze(client(app_url), path)
    assert "door" in transcript.lower(), transcript
    check_numbers(numbers)


def test_eight_concurrent_visitors_get_their_own_answers(app_url, ravdess_clip, speak):
    clips = [ravdess_clip, speak("I am so furious, I could scream at everyone.")]
    reference = [analyze(client(app_url), p)[3] for p in clips]

    def visit(i: int):
        return i % 2, analyze(client(app_url), clips[i % 2])[3]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(visit, range(8)))
    for which, numbers in results:
        ref = reference[which]
        assert numbers["transcript"] == ref["transcript"]
        for head in ("audio", "text", "fused"):
            np.testing.assert_allclose(numbers[head], ref[head], atol=1e-4)


def test_learn_tab_computes_eq5_from_votes(app_url):
    c = client(app_url)
    info = c.view_api(return_format="dict", print_info=False)["named_endpoints"]["/learn"]
    n_votes = len(info["parameters"]) - 1  # kappa, then one vote count per class
    votes, weights, text, *sliders = c.predict(4.0, *([1] + [0] * (n_votes - 1)), api_name="/learn")
    assert "u_A" in text and "u_T" in text and "made up" in text
    # Values typed outside a slider's range are used clamped, and the slider is set to the value used.
    votes, weights, text, kappa, *counts = c.predict(40.0, *([25] + [0] * (n_votes - 1)), api_name="/learn")
    assert kappa["value"] == 16 and counts[0]["value"] == 10 and "u_A" in text  # gr.update: set only if clamped
    assert "value" not in counts[1]
    # No vote at all: one sentence, no error.
    _, _, text, *_ = c.predict(4.0, *([0] * n_votes), api_name="/learn")
    assert "No votes yet" in text


def test_model_panel_reads_the_checkpoint(model_dir):
    from amber2_app import model_panel

    config, card = model_panel.read_checkpoint(str(model_dir))
    report = model_panel.read_report(str(model_dir))
    panel = model_panel.describe(str(model_dir), config, card, model_panel.head_metrics(report) if report else None)
    assert config["label_space"] in panel["summary"] and config["audio_encoder"] in panel["summary"]
    assert all(c in panel["summary"] for c in config["classes"])
    if model_dir == BUNDLED:  # the card's measured results are shown, and the weak head is named
        assert "- **amber2**: JS dist." in panel["results"] and "is the weak one" in panel["results"]
    assert model_panel.display_ref(str(ROOT / "assets" / "examples")) == "assets/examples"
    assert model_panel.display_ref("someone/amber2-iemocap") == "someone/amber2-iemocap"


def test_command_line_defaults_and_env(monkeypatch):
    import app

    for var in ("AMBER2_MODEL", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(var, raising=False)
    cfg = app.parse_args([])
    assert (cfg.host, cfg.port, cfg.share) == ("127.0.0.1", 7860, False)
    assert Path(cfg.model) == BUNDLED
    monkeypatch.setenv("AMBER2_MODEL", "someone/amber2-iemocap")
    assert app.parse_args([]).model == "someone/amber2-iemocap"
    assert app.parse_args(["--model", "/ckpt", "--port", "9000"]).model == "/ckpt"
    # On Hugging Face Spaces the server must listen on all interfaces.
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    assert app.parse_args([]).host == "0.0.0.0"


def test_expected_refusals_log_one_line_without_a_traceback(caplog, tmp_path):
    """A too-long or non-audio upload is the visitor's mistake, not the server's: one log line, no traceback;
    an unexpected failure still logs its traceback."""
    import app
    from amber2.audio import AudioError, load_audio

    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio at all")
    with caplog.at_level(logging.INFO, logger="amber2.app"):
        result, message = app.Handlers._guard(lambda: load_audio(not_audio))
    assert result is None and "audio" in message
    records = [r for r in caplog.records if r.name == "amber2.app"]
    assert len(records) == 1 and records[0].exc_info is None and "\n" not in records[0].getMessage()
    caplog.clear()

    def broken():
        raise RuntimeError("a bug")

    with caplog.at_level(logging.INFO, logger="amber2.app"):
        result, message = app.Handlers._guard(broken)
    assert result is None and "RuntimeError" in message
    assert any(r.exc_info for r in caplog.records), "a real failure keeps its traceback for the maintainer"
    with pytest.raises(AudioError):
        load_audio(not_audio)


def test_a_file_that_is_not_audio_never_reaches_the_player(tmp_path, ravdess_clip):
    """A text file renamed .wav is refused on upload, and the Speech player stays empty (it used to show a
    broken 0:00 player and log a waveform error); a real clip, even a too-long one, goes to the player."""
    import app
    from amber2.audio import unreadable

    fake = tmp_path / "notes.wav"
    fake.write_text("not audio at all")
    handlers = app.Handlers(analyzer=None, classes=["neutral", "angry"])
    player, upload_box, transcript, chart, summary, numbers, *rest = handlers.uploaded(str(fake))
    assert player is None and upload_box is None and "notes.wav" in numbers["error"]
    assert "notes.wav" in summary
    assert unreadable(ravdess_clip) is None
    assert handlers.uploaded(str(ravdess_clip))[0] == str(ravdess_clip)
