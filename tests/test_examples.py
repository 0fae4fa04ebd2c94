"""The app's examples: made by the project (no corpus audio committed), and read by the shipped model as named."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import soundfile as sf

from amber2.examples import EXAMPLES, EXAMPLES_DIR, corpus_examples

ROOT = Path(__file__).resolve().parents[1]
AUDIO = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".webm")


def test_no_corpus_audio_is_committed():
    """Every committed audio file is one of the synthesised examples."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    audio = {line for line in tracked.splitlines() if line.lower().endswith(AUDIO)}
    assert audio == {f"assets/examples/{e.file}" for e in EXAMPLES}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.file)
def test_example_is_16k_mono_speech(example):
    info = sf.info(str(EXAMPLES_DIR / example.file))
    assert (info.samplerate, info.channels) == (16000, 1) and 1.0 < info.duration < 8.0


@pytest.fixture(scope="module")
def bundled():
    from amber2.pipeline import DEFAULT_MODEL, Analyzer

    return Analyzer(model=DEFAULT_MODEL)


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.file)
def test_shipped_model_reads_each_example_as_named(bundled, example):
    a = bundled.analyze(EXAMPLES_DIR / example.file)
    for head, emotion in example.expect:
        assert a.top(head) == emotion, f"{example.file}: {head} reads {a.top(head)} ({a.to_dict()})"


def test_at_least_one_example_is_a_voice_vs_words_conflict():
    assert any(dict(e.expect).get("audio") not in (None, dict(e.expect).get("text")) for e in EXAMPLES)


@pytest.mark.slow
def test_real_corpus_examples_where_shared_is_present(bundled, shared_dir):
    """EMOVO's angry and sad voices (never trained on) read angry and sad in the voice head."""
    found = dict((label.split(" (")[0], path) for path, label in corpus_examples(shared_dir))
    assert set(found) == {"real angry voice", "real sad voice"}
    assert bundled.analyze(found["real angry voice"], transcript="").top("audio") == "angry"
    assert bundled.analyze(found["real sad voice"], transcript="").top("audio") == "sad"
