"""The app in a real browser: headless Debian Chromium driven by Playwright (facts.md §5).

Screenshots go to a tmp dir, or to $AMBER2_SCREENSHOT_DIR (e.g. docs/screenshots) when it is set.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import expect

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


def _upload(page, path) -> None:
    """Choose a file through the upload box's file chooser, as a visitor would."""
    with page.expect_file_chooser() as chooser:
        page.locator("#upload").get_by_text("Click to Upload").first.click()
    chooser.value.set_files(str(path))
    # The file lands in the Speech player (and the upload box empties, ready for another file).
    page.wait_for_selector("#speech .waveform-container", state="attached", timeout=60_000)
    page.locator("#upload").get_by_text("Click to Upload").first.wait_for(timeout=60_000)


def _analyze(page) -> None:
    page.get_by_role("button", name="Analyze", exact=True).click()


def _wait_for_chart(page) -> None:
    # Three bar traces drawn by plotly, and the wording beside them; then the Analyze button handed back (it
    # lags the chart by a fraction of a second), so a screenshot shows the settled page, not a greyed button.
    page.wait_for_function(
        "() => document.querySelectorAll('.js-plotly-plot .barlayer .trace').length >= 3"
        " && document.body.innerText.includes('Voice vs words')", timeout=120_000)
    expect(page.get_by_role("button", name="Analyze", exact=True)).to_be_enabled(timeout=60_000)


@pytest.mark.parametrize("view", ["desktop", "phone"])
def test_upload_analyze_and_screenshot(browser, app_url, ravdess_clip, shot_dir, tmp_path, view):  # noqa: F811
    ctx = browser.new_context(viewport=VIEWPORTS[view], is_mobile=view == "phone")
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _open(page, app_url)
    clip = tmp_path / "clip.flac"
    shutil.copy(ravdess_clip, clip)
    # A blocked microphone leaves Record silent: the hint to upload instead is on screen from the start.
    assert page.get_by_text("Microphone blocked or missing?").is_visible()
    _upload(page, clip)
    _analyze(page)
    _wait_for_chart(page)
    transcript = page.get_by_label("What Whisper heard").input_value()
    assert "door" in transcript.lower(), transcript
    legend = page.locator(".js-plotly-plot .legendtext").all_text_contents()  # SVG: no innerText
    assert legend == ["Voice", "Words", "Fused"], legend
    # The chart fits the screen width (nothing to scroll sideways on a phone).
    box = page.locator(".js-plotly-plot").first.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORTS[view]["width"] + 1
    if view == "phone":  # no plotly toolbar over the legend, x labels tilted at most 45 degrees
        assert not page.locator(".js-plotly-plot .modebar").first.is_visible()
    angles = page.eval_on_selector_all(".js-plotly-plot .xtick text",
                                       "ts => ts.map(t => t.getAttribute('transform') || '')")
    assert angles and not any("rotate(90" in a or "rotate(-90" in a for a in angles), angles
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


def test_example_then_edit_transcript_with_enter(browser, app_url, shot_dir):  # noqa: F811
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    _open(page, app_url)
    from amber2_app.examples import EXAMPLES

    page.get_by_text(EXAMPLES[0].label, exact=True).click()  # one click: loads and analyses
    _wait_for_chart(page)
    box = page.get_by_label("What Whisper heard")
    page.wait_for_function("() => [...document.querySelectorAll('textarea')].some(t => t.value.length > 0)",
                           timeout=60_000)
    assert "house" in box.input_value().lower(), box.input_value()
    edited = "What a lovely surprise, thank you so much"
    box.fill(edited)
    box.press("Enter")
    # The words are labelled as the visitor's, and Whisper's reading stays as outlines for comparison.
    page.get_by_text("Your words (edited by you, not Whisper)").first.wait_for(timeout=60_000)
    page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot .legendtext')]"
                           ".some(t => t.textContent.includes(\"Whisper's words\"))", timeout=60_000)
    page.get_by_text("Numbers (JSON)").click()
    # The JSON view shows the re-read transcript once the .submit event has run.
    page.get_by_text(edited).first.wait_for(timeout=60_000)
    page.screenshot(path=str(shot_dir / "app-edited-transcript.png"), full_page=True)
    page.close()


def test_analyze_without_audio_shows_a_sentence_not_a_traceback(browser, app_url):  # noqa: F811
    page = browser.new_page(viewport=VIEWPORTS["phone"])
    _open(page, app_url)
    page.get_by_role("button", name="Analyze", exact=True).click()
    page.get_by_text("No audio yet").first.wait_for(timeout=30_000)
    assert "Traceback" not in page.content()
    page.close()


def test_blocked_microphone_says_to_upload_instead(browser, app_url, shot_dir):  # noqa: F811
    """Record with no microphone permission (headless Chromium refuses it): instead of nothing happening, a
    warning appears beside the Record button and points to the upload box."""
    ctx = browser.new_context(viewport=VIEWPORTS["phone"], is_mobile=True)
    page = ctx.new_page()
    _open(page, app_url)
    warning = page.locator("#mic-blocked")
    assert not warning.is_visible()   # nothing alarming before the visitor tries
    page.locator("#speech").get_by_role("button", name=re.compile("record", re.I)).first.click()
    warning.wait_for(state="visible", timeout=20_000)
    assert "Upload a recording" in warning.inner_text()
    page.screenshot(path=str(shot_dir / "app-mic-blocked.png"), full_page=False)
    ctx.close()


def test_real_voice_example_shows_the_voice_words_conflict(browser, app_url, shot_dir, shared_dir):  # noqa: F811
    """Where ../shared is present, EMOVO's angry actor (never trained on) is offered and its anger is heard."""
    from amber2_app.examples import corpus_examples

    label = next(label for _, label in corpus_examples(shared_dir) if "angry" in label)
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    _open(page, app_url)
    page.get_by_text(label, exact=True).click()
    _wait_for_chart(page)
    page.wait_for_function("() => /voice (sounds|leans) angry/.test(document.body.innerText)", timeout=60_000)
    page.screenshot(path=str(shot_dir / "app-real-angry-voice.png"), full_page=True)
    page.close()


def _webm(speak, tmp_path: Path) -> Path:
    """A WebM/Opus clip, as browsers record, made from a synthesised voice."""
    out = tmp_path / "recording.webm"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(speak("Please open the window")),
                    "-c:a", "libopus", str(out)], check=True)
    return out


def test_webm_chosen_in_the_file_chooser_is_analysed(browser, app_url, speak, tmp_path):  # noqa: F811
    """Chromium types a .webm file video/webm; the upload box must still take it."""
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    _open(page, app_url)
    _upload(page, _webm(speak, tmp_path))
    assert page.get_by_text("Invalid file type").count() == 0
    _analyze(page)
    _wait_for_chart(page)
    assert "window" in page.get_by_label("What Whisper heard").input_value().lower()
    page.close()


def _pills(page) -> int:
    # Gradio marks every output of a failed event with a red "Error" status.
    return page.locator(".error").filter(has_text="Error").count()


def test_error_replaces_every_result_and_the_next_clip_starts_clean(browser, app_url, ravdess_clip, shot_dir,  # noqa: F811
                                                                    tmp_path):
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    _open(page, app_url)
    good = tmp_path / "good.flac"
    shutil.copy(ravdess_clip, good)
    _upload(page, good)
    _analyze(page)
    _wait_for_chart(page)
    bad = tmp_path / "bad.wav"
    bad.write_text("This is a text file pretending to be a WAV.\n" * 20)
    _upload(page, bad)
    # A new upload already clears the last clip's results.
    page.wait_for_function("() => !document.body.innerText.includes('Voice vs words')", timeout=30_000)
    _analyze(page)
    page.get_by_text("No result").first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert "Voice vs words" not in body and "top emotion" not in body  # no table or sentence of the last clip
    assert page.get_by_label("What Whisper heard").input_value() == ""
    assert _pills(page) == 0
    # the refusal hands the button back: the visitor can try another clip at once
    page.get_by_role("button", name="Analyze", exact=True).wait_for(timeout=30_000)
    assert page.get_by_role("button", name="Analyze", exact=True).is_enabled()
    page.screenshot(path=str(shot_dir / "app-error.png"), full_page=True)
    _upload(page, good)
    _analyze(page)
    _wait_for_chart(page)
    assert "No result" not in page.inner_text("body") and _pills(page) == 0
    page.close()


def test_double_click_analyses_once_and_the_button_waits(browser, app_url, ravdess_clip, tmp_path):  # noqa: F811
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    _open(page, app_url)
    clip = tmp_path / "clip.flac"
    shutil.copy(ravdess_clip, clip)
    _upload(page, clip)
    page.get_by_role("button", name="Analyze", exact=True).dblclick()
    page.get_by_role("button", name="Analysing…").wait_for(timeout=10_000)
    assert page.get_by_role("button", name="Analysing…").is_disabled()
    # While it works, the visitor reads what is happening (views.waiting_message), not only a spinner.
    page.get_by_text("Whisper is writing down").first.wait_for(timeout=30_000)
    _wait_for_chart(page)
    page.get_by_role("button", name="Analyze", exact=True).wait_for(timeout=60_000)
    page.close()


def _votes_title(page) -> str:
    return page.locator("#votes-plot .legendtext").first.text_content() or ""


def test_learn_tab_follows_keys_and_typing_and_clamps(browser, app_url, shot_dir):  # noqa: F811
    page = browser.new_page(viewport=VIEWPORTS["phone"], is_mobile=True)
    _open(page, app_url)
    page.get_by_role("tab", name="Learn").click()
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=30_000)
    assert "made up" in page.inner_text("body")
    legend = page.locator("#votes-plot .legendtext").all_text_contents()
    assert [t.split(" ")[0] for t in legend] == ["y", "p_A", "p_T"], legend  # y beside both experts
    assert "N = 5" in _votes_title(page)
    # Arrow keys on a slider redraw the chart (the first class, neutral, starts at 1 vote).
    page.locator("input[type=range]").first.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('#votes-plot .legendtext').textContent.includes('N = 6')",
                           timeout=30_000)
    # A typed number acts without leaving the box; 25 in a 0-10 box is used as 10 and the box says so.
    number = page.locator("input[type=number]").first
    number.fill("25")
    page.wait_for_function("() => document.querySelector('#votes-plot .legendtext').textContent.includes('N = 14')",
                           timeout=30_000)
    page.wait_for_function("() => document.querySelector('input[type=number]').value === '10'", timeout=30_000)
    assert page.locator("#votes-plot .barlayer .trace").count() == 3  # the charts stay drawn
    assert not page.locator("#votes-plot .modebar").first.is_visible()
    page.screenshot(path=str(shot_dir / "app-learn-phone.png"), full_page=True)
    # All votes to zero: one message, no stack of toasts.
    numbers = page.locator("input[type=number]")
    for i in range(len(page.locator("input[type=range]").all()) - 1):  # the last slider is kappa
        numbers.nth(i).fill("0")
    page.get_by_text("No votes yet").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1500)
    assert page.locator(".toast-body").count() == 0
    page.close()


def test_model_tab_shows_results_and_the_weak_head(browser, app_url, model_dir, shot_dir):  # noqa: F811
    from test_app import BUNDLED

    page = browser.new_page(viewport=VIEWPORTS["phone"], is_mobile=True)
    _open(page, app_url)
    # Every tab is on screen on a phone, none behind an overflow menu (one run of CI once hid "Model" there).
    for name in ("Analyze", "Learn", "Vote", "Model"):
        assert page.get_by_role("tab", name=name).is_visible(), name
    page.get_by_role("tab", name="Model").click()
    page.get_by_text("How well it does").first.wait_for(timeout=30_000)
    body = page.inner_text("body")
    for raw in ("n fit", "val js", "| checkpoint |"):
        assert raw not in body, raw
    if model_dir == BUNDLED:
        assert page.get_by_text("is the weak one").first.is_visible()
        assert page.get_by_text("amber2: JS dist.").first.is_visible()  # the measured results, not folded away
    # Nothing wider than the phone: the results table scrolls inside its own box.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= VIEWPORTS["phone"]["width"]
    page.screenshot(path=str(shot_dir / "app-model-phone.png"), full_page=True)
    page.close()


def test_ten_minute_recording_gets_a_timeline_with_a_progress_bar(browser, app_url, shot_dir, tmp_path,  # noqa: F811
                                                                  shared_dir):
    """A long upload: a progress bar with the segment count while it works (seen mid-run), then the timeline
    (three lanes), a segment read by clicking it on the timeline and in the table, and the CSV download.
    An 11-minute file is refused, naming the limit."""

    import numpy as np
    import soundfile as sf

    from test_timeline import build_recording

    path, _ = build_recording(tmp_path, minutes=10)
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _open(page, app_url)
    _upload(page, path)
    _analyze(page)
    # The progress bar: gradio's tracker shows the message and a bar over the results while Whisper works.
    page.get_by_text(re.compile(r"Whisper heard \d+:\d\d of 10:00: \d+ segments so far")).first.wait_for(
        timeout=300_000)
    assert page.locator(".progress-bar").count() >= 1
    page.screenshot(path=str(shot_dir / "app-timeline-progress.png"))
    page.wait_for_selector("#timeline .js-plotly-plot", timeout=1_200_000)
    page.get_by_text(re.compile(r"Whole recording \(10:00, \d+ segments")).first.wait_for(timeout=60_000)
    lanes = page.locator("#timeline .ytitle, #timeline .y2title, #timeline .y3title").all_text_contents()
    assert lanes == ["Voice", "Words", "Fused"], lanes
    page.locator("#segments-csv").get_by_text("recording-segments").first.wait_for(timeout=30_000)  # name, .csv apart
    page.locator("#timeline").scroll_into_view_if_needed()
    page.screenshot(path=str(shot_dir / "app-timeline.png"), full_page=True)
    # A click on the table's third row, then on a bar of the timeline, reads that segment.
    page.get_by_role("gridcell").filter(has_text=re.compile(r"^\s*3\s*$")).first.click()
    page.get_by_text(re.compile(r"Segment 3 \(")).first.wait_for(timeout=60_000)
    assert page.get_by_label("What Whisper heard").input_value()
    assert page.locator(".js-plotly-plot .barlayer .trace").count() >= 3
    # Reading a segment brings the chart at the top into view; the visitor scrolls back to the timeline.
    page.locator("#timeline").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    bars = page.locator("#timeline .barlayer .point")
    boxes = [b for b in (bars.nth(i).bounding_box() for i in range(min(bars.count(), 400))) if b]
    box = max(boxes, key=lambda b: b["height"] * b["width"] * (b["x"] > 700))
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("() => /Segment (?!3 )\\d+ \\(/.test(document.body.innerText)", timeout=60_000)
    page.screenshot(path=str(shot_dir / "app-timeline-segment.png"), full_page=True)
    # Eleven minutes: a refusal naming the limit, the timeline gone.
    long = tmp_path / "eleven.wav"
    sf.write(long, np.full(11 * 60 * 16000, 0.01, np.float32), 16000)
    _upload(page, long)
    _analyze(page)
    page.get_by_text("the limit is 10 min 0 s").first.wait_for(timeout=120_000)
    assert not page.locator("#timeline").is_visible()
    assert not errors, errors
    page.close()


def test_a_timeline_fits_a_phone(browser, app_url, tmp_path, shot_dir):  # noqa: F811
    """A 45 s recording analysed on a 390 px phone: the timeline, the segments table and the summary stay
    inside the screen (the table once widened the page to about 1100 px), and the transcript box says it
    holds no words for a whole recording."""
    from test_timeline import build_recording

    path, _ = build_recording(tmp_path, minutes=0.75)
    page = browser.new_page(viewport=VIEWPORTS["phone"], is_mobile=True)
    _open(page, app_url)
    _upload(page, path)
    _analyze(page)
    page.wait_for_selector("#timeline .js-plotly-plot", timeout=600_000)
    page.get_by_text(re.compile(r"Whole recording \(0:4\d, \d+ segments")).first.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    widths = page.evaluate("() => [document.documentElement.scrollWidth, document.body.scrollWidth,"
                           " document.querySelector('#segments').getBoundingClientRect().right]")
    assert max(widths) <= 391, widths
    assert not page.get_by_label("Words of a segment").is_editable()   # a whole recording: no words to edit
    page.screenshot(path=str(shot_dir / "app-timeline-phone.png"), full_page=True)
    # A segment clicked in the table is read in the chart above, brought into view, its words editable.
    page.locator("#segments").scroll_into_view_if_needed()
    page.get_by_role("gridcell").filter(has_text=re.compile(r"^\s*2\s*$")).first.click()
    page.get_by_text(re.compile(r"Segment 2 \(")).first.wait_for(timeout=60_000)
    page.wait_for_function("() => { const r = document.getElementById('reading').getBoundingClientRect();"
                           " return r.top >= -1 && r.top < window.innerHeight; }", timeout=10_000)
    assert page.get_by_label("What Whisper heard").is_editable()
    page.close()
