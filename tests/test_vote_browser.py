"""Vote together in a real browser: a teacher page (desktop) and two students on phones run one round.

Screenshots go to a tmp dir, or to $AMBER2_SCREENSHOT_DIR (e.g. docs/screenshots) when it is set."""
from __future__ import annotations

import csv
import io
import re
import zipfile

import pytest
from test_app import model_dir  # noqa: F401  (session fixture)
from test_browser import VIEWPORTS, browser, shot_dir  # noqa: F401  (fixtures)
from test_vote_app import app  # noqa: F401  (module fixture: the launched app on its own data folder)

pytestmark = pytest.mark.slow


def _student(browser, url: str, code: str):  # noqa: F811
    ctx = browser.new_context(viewport=VIEWPORTS["phone"], is_mobile=True, has_touch=True)
    page = ctx.new_page()
    page.goto(f"{url}?room={code}", wait_until="load")
    page.get_by_text(re.compile(r"Room \w{4}-\w{4} · round 1")).wait_for(timeout=60_000)
    return ctx, page


def _vote(page, emotion: str) -> None:
    page.locator("#vote-choice").get_by_text(emotion, exact=True).click()
    page.get_by_text(f"Your vote: {emotion}").wait_for(timeout=30_000)


def test_teacher_and_two_phones_run_a_round(browser, app, shot_dir):  # noqa: F811
    from amber2_app.examples import EXAMPLES

    teacher = browser.new_page(viewport=VIEWPORTS["desktop"])
    errors: list[str] = []
    teacher.on("pageerror", lambda e: errors.append(str(e)))
    teacher.goto(app.url, wait_until="load")
    teacher.get_by_role("tab", name="Vote").click()
    tab = teacher.locator("#vote-together")
    tab.get_by_text(EXAMPLES[0].label, exact=True).click()  # an example clip into the teacher's player
    teacher.wait_for_selector("#vote-clip audio, #vote-clip .waveform-container", state="attached", timeout=60_000)
    teacher.locator("#vote-start").click()
    code = teacher.locator("#room-code h1").inner_text(timeout=120_000).strip()
    assert re.fullmatch(r"\w{4}-\w{4}", code), code
    assert f"?room={code.replace('-', '')}" in teacher.locator("#room-code").inner_text()
    teacher.get_by_text("Round 1 (open for votes): no votes yet").wait_for(timeout=30_000)

    (ctx1, phone1), (ctx2, phone2) = (_student(browser, app.url, code.replace("-", "")),
                                      _student(browser, app.url, code.lower()))
    # students see the clip and the choices, not the model
    assert phone1.locator("#vote-student-clip audio").count() >= 1 or phone1.locator("#vote-student-clip").is_visible()
    assert not phone1.locator("#vote-student-plot").is_visible()
    assert not phone1.get_by_role("button", name="Start round").is_visible()
    _vote(phone1, "angry")
    _vote(phone2, "sad")
    _vote(phone2, "angry")  # a change replaces the vote
    phone1.screenshot(path=str(shot_dir / "vote-student-phone.png"), full_page=True)
    teacher.get_by_text("N = 2", exact=True).wait_for(timeout=30_000)
    teacher.screenshot(path=str(shot_dir / "vote-teacher-votes.png"), full_page=True)

    teacher.locator("#vote-reveal").click()
    teacher.get_by_text("AmbER² would trust").first.wait_for(timeout=30_000)
    # the class's bar and the three heads on one chart (SVG legend: no innerText)
    teacher.wait_for_function("() => [...document.querySelectorAll('#vote-class-plot .legendtext')]"
                              ".map(t => t.textContent).join('|').includes('p_AT')", timeout=30_000)
    legend = teacher.locator("#vote-class-plot .legendtext").all_text_contents()
    assert len(legend) == 4 and "N = 2" in legend[0], legend
    teacher.get_by_text("JS dist.").first.wait_for(timeout=10_000)
    teacher.screenshot(path=str(shot_dir / "vote-teacher-revealed.png"), full_page=True)

    # after the reveal the phones show the class beside the model, and voting is over
    phone2.locator("#vote-student-plot .js-plotly-plot").wait_for(timeout=30_000)
    phone2.get_by_text("revealed the model's answer").wait_for(timeout=30_000)
    assert phone2.locator("#vote-choice input").first.is_disabled()
    phone2.screenshot(path=str(shot_dir / "vote-student-revealed.png"), full_page=True)

    # the next clip: same room, round 2 reaches the phones with a fresh choice; the teacher downloads the votes
    tab.get_by_text(EXAMPLES[1].label, exact=True).click()
    teacher.locator("#vote-start").click()
    teacher.get_by_text("Round 2 (open for votes): no votes yet").wait_for(timeout=120_000)
    phone1.get_by_text(re.compile(r"Room \w{4}-\w{4} · round 2")).wait_for(timeout=30_000)
    assert not phone1.locator("#vote-choice input:checked").count()
    assert phone1.locator("#vote-choice input").first.is_enabled()
    _vote(phone1, "happy")
    teacher.get_by_text("N = 1", exact=True).wait_for(timeout=30_000)
    teacher.locator("#vote-export").click()
    teacher.get_by_text("python -m train --dataset csv").wait_for(timeout=30_000)
    with teacher.expect_download() as download:
        teacher.locator("#vote-export-file a").first.click()
    with zipfile.ZipFile(download.value.path()) as z:
        rows = list(csv.DictReader(io.StringIO(z.read("votes.csv").decode())))
        assert [int(r["n_votes"]) for r in rows] == [2, 1] and all(r["audio"] in z.namelist() for r in rows)

    # a reload keeps the teacher's room (the key lives in the browser), and a phone keeps its vote
    teacher.reload(wait_until="load")
    teacher.get_by_role("tab", name="Vote").click()
    assert teacher.locator("#room-code h1").inner_text(timeout=60_000).strip() == code
    teacher.get_by_text("N = 1", exact=True).wait_for(timeout=30_000)
    phone1.reload(wait_until="load")
    phone1.get_by_text("Your vote: happy").wait_for(timeout=30_000)
    assert phone1.locator("#vote-choice input:checked").count() == 1

    # a wrong code on a phone gets a sentence
    ctx3 = browser.new_context(viewport=VIEWPORTS["phone"], is_mobile=True)
    lost = ctx3.new_page()
    lost.goto(f"{app.url}?room=ZZZZZZZZ", wait_until="load")
    lost.get_by_text("There is no open room ZZZZ-ZZZZ").wait_for(timeout=60_000)
    assert not errors, errors
    for ctx in (ctx1, ctx2, ctx3):
        ctx.close()
    teacher.close()
