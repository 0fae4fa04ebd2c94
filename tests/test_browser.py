"""The app in a real browser: headless Debian Chromium driven by Playwright (facts.md §5).

Screenshots go to a tmp dir, or to $AMBER2_SCREENSHOT_DIR (e.g. docs/screenshots) when it is set.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from test_app import app_url, model_dir  # noqa: F401  (session fixtures: the launched app)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (scripts/system-deps.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def shot_dir(tmp_path) -> Path:
    d = os.environ.get("AMBER2_SCREENSHOT_DIR")
    return Path(d) if d else tmp_path


def _open(page, url: str) -> None:
    # Not "networkidle": gradio keeps a heartbeat connection open, so the network never goes idle.
    page.goto(url, wait_until="load")
    page.get_by_role("button", name="Analyze", exact=True).wait_for(timeout=60_000)


def _wait_for_chart(page) -> None:
    # Three bar traces drawn by plotly, and the wording beside them.
    page.wait_for_function(
        "() => document.querySelectorAll('.js-plotly-plot .barlayer .trace').length >= 3"
        " && document.body.innerText.includes('Voice vs words')", timeout=120_000)


@pytest.mark.parametrize("view", ["desktop", "phone"])
def test_upload_analyze_and_screenshot(browser, app_url, ravdess_clip, shot_dir, tmp_path, view):  # noqa: F811
    ctx = browser.new_context(viewport=VIEWPORTS[view], is_mobile=view == "phone")
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _open(page, app_url)
    clip = tmp_path / "clip.flac"
    shutil.copy(ravdess_clip, clip)
    page.get_by_label("Upload file").click()  # the microphone is the first source; switch to upload
    page.locator("input[type=file]").first.set_input_files(str(clip))
    page.wait_for_selector("audio, .waveform-container, #waveform", state="attached", timeout=60_000)
    page.get_by_role("button", name="Analyze", exact=True).click()
    _wait_for_chart(page)
    transcript = page.get_by_label("What Whisper heard").input_value()
    assert "door" in transcript.lower(), transcript
    legend = page.locator(".js-plotly-plot .legendtext").all_text_contents()  # SVG: no innerText
    assert legend == ["Voice", "Words", "Fused"], legend
    # The chart fits the screen width (nothing to scroll sideways on a phone).
    box = page.locator(".js-plotly-plot").first.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORTS[view]["width"] + 1
    page.screenshot(path=str(shot_dir / f"app-{view}.png"), full_page=True)
    assert not errors, errors
    ctx.close()


def test_learn_tab_renders(browser, app_url, shot_dir):  # noqa: F811
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    _open(page, app_url)
    page.get_by_role("tab", name="Learn").click()
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=30_000)
    assert page.get_by_text("u_A =").count() >= 1
    # Moving a vote slider re-draws Eq. 1: the 5 raters of the start become more. The fifth slider (demo7:
    # "fear") starts at 0 votes; a click at 60 % of its track gives it about 6.
    box = page.locator("input[type=range]").nth(4).bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
    page.wait_for_function("() => /N = (9|10|11|12|13)\\)/.test(document.body.textContent)", timeout=30_000)
    page.screenshot(path=str(shot_dir / "app-learn.png"), full_page=True)
    page.close()


def test_example_then_edit_transcript_with_enter(browser, app_url):  # noqa: F811
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    _open(page, app_url)
    from amber2.examples import EXAMPLES

    page.get_by_text(EXAMPLES[0].label, exact=True).click()  # one click: loads and analyses
    _wait_for_chart(page)
    box = page.get_by_label("What Whisper heard")
    page.wait_for_function("() => [...document.querySelectorAll('textarea')].some(t => t.value.length > 0)",
                           timeout=60_000)
    assert "house" in box.input_value().lower(), box.input_value()
    edited = "What a lovely surprise, thank you so much"
    box.fill(edited)
    box.press("Enter")
    page.get_by_text("Numbers (JSON)").click()
    # The JSON view shows the re-read transcript once the .submit event has run.
    page.get_by_text(edited).first.wait_for(timeout=60_000)
    page.close()


def test_analyze_without_audio_shows_a_sentence_not_a_traceback(browser, app_url):  # noqa: F811
    page = browser.new_page(viewport=VIEWPORTS["phone"])
    _open(page, app_url)
    page.get_by_role("button", name="Analyze", exact=True).click()
    page.get_by_text("No audio yet").first.wait_for(timeout=30_000)
    assert "Traceback" not in page.content()
    page.close()


def test_real_voice_example_shows_the_voice_words_conflict(browser, app_url, shot_dir, shared_dir):  # noqa: F811
    """Where ../shared is present, EMOVO's angry actor (never trained on) is offered and its anger is heard."""
    from amber2.examples import corpus_examples

    label = next(label for _, label in corpus_examples(shared_dir) if "angry" in label)
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    _open(page, app_url)
    page.get_by_text(label, exact=True).click()
    _wait_for_chart(page)
    page.wait_for_function("() => /voice (sounds|leans) angry/.test(document.body.innerText)", timeout=60_000)
    page.screenshot(path=str(shot_dir / "app-real-angry-voice.png"), full_page=True)
    page.close()
