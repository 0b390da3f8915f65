"""The review half of the operator's page in Chromium (issue 27): the review queue and decisions with the
operator's name, every acquisition reachable and a slow review kept on its own (finding 5), the module page
(finding 6), the history in the URL and refreshing (finding 10), and the shift report.

A daemon with named operators and no camera: the tests write results into its store as a camera would.
"""
from __future__ import annotations

import csv
import io
import re

import pytest
import requests

from vi_stream.store import record as record_mod

from ..helpers.page import ALICE, login, review_daemon, write_result

DATE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@pytest.fixture(scope="module")
def daemon(model, tmp_path_factory):
    with review_daemon(model, tmp_path_factory) as d:
        yield d


def _login(page) -> None:
    login(page)
    assert page.inner_text("#who") == "logged in as alice"


def _api(page, path):
    return requests.get(page.base + path, timeout=10).json()


def test_the_review_queue_lists_anomalous_sides_oldest_first_and_a_decision_names_the_operator(page, daemon):
    write_result(daemon, "Q-1", pulse=31)
    write_result(daemon, "Q-2", "right", pulse=32)
    write_result(daemon, "Q-3", pulse=33, defect=False)
    _login(page)
    page.wait_for_selector("#queue tbody tr")
    names = page.locator("#queue tbody td:nth-child(3)").all_inner_texts()
    assert names.index("Q-1 left") < names.index("Q-2 right") and "Q-3 left" not in names
    assert "anomalous" in page.locator("#queue tbody tr", has_text="Q-1 left").inner_text()   # words, not colour only
    page.click("#queue a:text('Q-1 left')")
    page.wait_for_selector("#side-left[data-ready]")
    assert page.inner_text("#module-back") == "‹ back to the review queue"
    assert page.inner_text("#decision-left") == "No decision yet."
    form = page.locator("#decide-left")
    form.locator("input[value=fail]").check()
    form.locator("input[value=scratch]").check()
    form.locator("textarea").fill("scratch across pads 3-4")
    form.locator("button").click()
    page.wait_for_function("(document.querySelector('#decision-left')?.textContent || '').startsWith('Decision: fail by alice')")
    stored = _api(page, "/api/modules/Q-1")["module"]["left"]["decision"]
    assert stored["by"] == "alice" and stored["categories"] == ["scratch"] and stored["comment"] == "scratch across pads 3-4"
    page.click("#module-back")
    page.wait_for_selector("#queue[data-total]")
    assert "Q-1 left" not in page.locator("#queue tbody td:nth-child(3)").all_inner_texts()
    page.goto(page.base + "/#/history?module=Q-1&decision=fail")
    page.wait_for_selector("#history tbody tr")
    assert "fail · alice (scratch)" in page.inner_text("#history tbody tr")


def test_a_review_slower_than_the_reimaging_is_kept_on_its_acquisition_and_both_stay_reachable(page, daemon):
    first = write_result(daemon, "F5-1", pulse=41)
    _login(page)
    page.goto(page.base + "/#/module/F5-1")
    page.wait_for_selector("#side-left[data-ready]")
    page.click("#tiles-left .tile[data-tile='0']")
    page.wait_for_selector("#editor[data-ready='0']")
    box = page.locator("#ed-canvas").bounding_box()
    page.mouse.click(box["x"] + 20, box["y"] + 20)
    second = write_result(daemon, "F5-1", pulse=42, acquired=record_mod.now_iso())       # re-imaged meanwhile
    page.click("#ed-save")
    page.wait_for_selector("#ed-message.notice")
    text = page.inner_text("#ed-message")
    assert "saved" in text and "A newer acquisition of this side exists" in text and "409" not in text
    old = _api(page, f"/api/modules/F5-1/left/results/{first.id}")
    assert old["side"]["corrected_tiles"] == [0] and old["newer"]["result_id"] == second.id
    assert _api(page, "/api/modules/F5-1")["module"]["left"]["corrected_tiles"] == []
    page.click("#ed-message a")                                                   # the link to the newer one
    page.wait_for_function(f"document.querySelector('#acq-left') && document.querySelector('#acq-left').value === '{second.id}'")
    page.wait_for_selector("#side-left[data-ready]")
    assert page.locator("#side-left .newer").count() == 0
    assert page.locator("#acq-left option").count() == 2
    page.select_option("#acq-left", first.id)                                     # the older one, still there
    page.wait_for_selector("#side-left .newer")
    page.wait_for_selector("#side-left[data-ready]")
    assert "older acquisition" in page.inner_text("#side-left .newer")
    assert "1 ✓ verified" in page.inner_text("#tiles-left .tile[data-tile='0']")


def test_the_module_page_zooms_to_full_resolution_lists_defects_and_opens_tiles_from_the_keyboard(page, daemon):
    rec = write_result(daemon, "F6-1", pulse=51)
    _login(page)
    page.goto(page.base + "/#/history?module=F6-")
    page.wait_for_selector("#history tbody tr a")
    page.click("#history tbody tr a")
    page.wait_for_selector("#side-left[data-ready]")
    page.wait_for_selector("#side-right[data-ready]")
    assert "No right side is stored" in page.inner_text("#side-right")
    view = page.locator("#view-left")
    assert view.get_attribute("data-src") == rec.side["original"]["full"]["src_id"]   # the full image, not a thumbnail
    page.click("#side-left button:text('1:1')")
    assert view.get_attribute("data-zoom") == "1.000"
    fit = float(page.evaluate("document.querySelector('#view-left').dataset.zoom"))
    view.focus()
    page.keyboard.press("+")
    assert float(view.get_attribute("data-zoom")) > fit
    defects = page.locator("#defects-left li")
    assert defects.count() == len(rec.side["defects"]) == 1
    x, y, w, h = rec.side["defects"][0]["bbox"]
    assert f"{w}×{h} px at ({x}, {y})" in defects.first.inner_text()
    defects.first.locator("button").click()
    assert float(view.get_attribute("data-zoom")) != 1.0
    # tiles by keyboard: focus the first tile's button, Enter opens it, v verifies it; the state is in words
    page.locator("#tiles-left .tile").first.focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.tile") == "1"
    page.keyboard.press("Enter")
    page.wait_for_selector("#editor[data-ready='1']")
    page.click("#ed-verify")
    page.wait_for_selector("#tiles-left .tile.verified[data-tile='1']")
    tile = page.locator("#tiles-left .tile[data-tile='1']")
    assert "✓ verified" in tile.inner_text() and "verified" in tile.get_attribute("aria-label")
    assert "1 of 9 tiles verified" in page.inner_text("#side-left h3")
    page.click("#module-back")
    page.wait_for_selector("#history tbody tr")
    assert "module=F6-" in page.evaluate("location.hash")
    assert page.input_value("input[name=module]") == "F6-"


def test_history_filters_are_in_the_url_the_list_refreshes_and_says_when_nothing_matches(page, daemon):
    write_result(daemon, "H-1", pulse=61, defect=False)
    write_result(daemon, "H-2", pulse=62)
    page.goto(page.base + "/#/history")
    page.wait_for_selector("#history tbody tr")
    page.select_option("select[name=verdict]", "good")
    page.click("#filters button:text('Apply')")
    page.wait_for_function("location.hash.includes('verdict=good')")
    # the filtered view starts with an empty table (every() of nothing is true): its rows first
    page.wait_for_function("(tds => tds.length > 0 && tds.every(td => td.textContent === 'good'))"
                           "([...document.querySelectorAll('#history tbody td:nth-child(4)')])")
    page.reload()                                                          # a bookmark: the same filtered list
    page.wait_for_selector("#history tbody tr")
    assert page.input_value("select[name=verdict]") == "good"
    assert set(page.locator("#history tbody td:nth-child(4)").all_inner_texts()) == {"good"}
    page.go_back()                                                         # back: the unfiltered list
    page.wait_for_function("!location.hash.includes('verdict')")
    page.wait_for_function("[...document.querySelectorAll('#history tbody td:nth-child(4)')].some(td => td.textContent === 'anomalous')")
    # thumbnails, one date format
    page.wait_for_function("[...document.querySelectorAll('#history img.thumb')].some(i => i.complete && i.naturalWidth > 0)")
    when = page.locator("#history tbody td:nth-child(1)").first.inner_text()
    assert DATE.fullmatch(when), when
    # the list refreshes: a side stored now appears without a reload
    page.goto(page.base + "/#/history?module=H-")
    # this view's total, not the unfiltered one's (also 2 when this test runs alone): its module field says which
    page.wait_for_function("document.querySelector('input[name=module]')?.value === 'H-' && "
                           "document.querySelector('#history').dataset.total === '2'")
    write_result(daemon, "H-3", pulse=63)
    page.wait_for_function("document.querySelector('#history').dataset.total === '3'", timeout=15_000)
    assert "H-3" in page.inner_text("#history tbody")
    # nothing matches, or nothing can: said in words
    page.goto(page.base + "/#/history?module=NO-SUCH-")
    page.wait_for_selector("#history-message:not([hidden])")
    assert "No side matches these filters" in page.inner_text("#history-message")
    page.goto(page.base + "/#/history?from=2026-02-01T00:00:00.000Z&to=2026-01-01T00:00:00.000Z")
    # the view before showed its own message in the same place until this one is drawn
    page.wait_for_function("(document.querySelector('#history-message')?.textContent || '').includes('No side can match')")
    page.wait_for_selector("#history-message:not([hidden])")
    assert "No side can match" in page.inner_text("#history-message")


def test_the_shift_report_shows_verdicts_and_decisions_and_downloads_as_csv(page, daemon):
    start = record_mod.now_iso()
    write_result(daemon, "R-1", pulse=71)
    write_result(daemon, "R-2", pulse=72, defect=False)
    r = requests.post(page.base + "/api/modules/R-1/left/decision", json={"verdict": "rework", "categories": ["stain"]},
                      headers={"Authorization": f"Bearer {ALICE}"}, timeout=10)
    assert r.ok, r.text
    page.goto(page.base + "/#/monitor")
    page.click("#nav-report")
    page.wait_for_selector("#report[data-rows]")
    page.goto(page.base + "/#/report?from=" + requests.utils.quote(start))
    page.wait_for_function("document.querySelector('#report').dataset.rows === '2'")
    row = page.locator("#report tbody tr", has_text="R-1")
    assert "rework" in row.inner_text() and "alice" in row.inner_text() and "anomalous" in row.inner_text()
    assert "1 to rework" in page.inner_text("#report-summary")
    with page.expect_download() as dl:
        page.click("#report-csv")
    with open(dl.value.path(), encoding="utf-8") as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    assert [(x["module"], x["verdict"], x["decision"], x["decided_by"]) for x in rows] == [
        ("R-1", "anomalous", "rework", "alice"), ("R-2", "good", "", "")]
