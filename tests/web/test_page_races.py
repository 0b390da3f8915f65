"""Answers that land late, in Chromium: each test holds one answer back (page.route) until after the operator's
next step, then lets it through. A late answer must not undo what the operator typed or chose since, and an
older answer must not be drawn over a newer one. Each test failed against the page before its fix.

A daemon with a named operator and no camera: the tests write results into its store as a camera would.
"""
from __future__ import annotations

import pytest
import requests

from vi_stream.store import record as record_mod

from ..helpers.page import ALICE, login, review_daemon, write_result


@pytest.fixture(scope="module")
def daemon(model, tmp_path_factory):
    with review_daemon(model, tmp_path_factory) as d:
        yield d


def _hold(page, pattern, want=lambda url: True):
    """Holds back the first request to ``pattern`` whose URL ``want``s; the others go through."""
    held = []

    def handler(route):
        if not held and want(route.request.url):
            held.append(route)
        else:
            route.continue_()
    page.route(pattern, handler)
    return held


def _wait_held(page, held) -> None:
    for _ in range(200):
        if held:
            return
        page.wait_for_timeout(50)
    raise AssertionError("the request to hold was never made")


def _release(page, held, pattern) -> None:
    """Lets the held request through and gives the page the time to handle its answer."""
    url = held[0].request.url
    with page.expect_response(lambda r: r.url == url):
        held[0].continue_()
    page.unroute(pattern)
    page.wait_for_timeout(800)


def test_a_threshold_typed_while_the_previous_one_is_being_set_stays_in_the_box(page, daemon):
    login(page)
    page.goto(page.base + "/#/monitor")
    page.wait_for_selector("#threshold")
    held = _hold(page, "**/config")
    page.fill("#threshold", "0.5")
    page.click("#threshold-form button:not([type])")
    _wait_held(page, held)
    page.fill("#threshold", "0.6")                         # the operator goes on to the next value
    _release(page, held, "**/config")
    page.wait_for_selector("#toast:has-text('Threshold set to 0.5')")
    assert page.input_value("#threshold") == "0.6"
    requests.post(page.base + "/config", json={"threshold": None}, headers={"Authorization": f"Bearer {ALICE}"}, timeout=10)


def test_an_earlier_history_answer_is_not_drawn_under_filters_applied_since(page, daemon):
    write_result(daemon, "RH-1", pulse=201, defect=False)
    write_result(daemon, "RH-2", pulse=202)
    held = _hold(page, "**/api/history?*", lambda url: "verdict" not in url)
    page.goto(page.base + "/#/history?module=RH-")
    _wait_held(page, held)                                 # the unfiltered list is slow to come
    page.select_option("select[name=verdict]", "good")
    page.click("#filters button:text('Apply')")
    page.wait_for_function("document.querySelector('#history')?.dataset.total === '1'")
    _release(page, held, "**/api/history?*")
    assert page.evaluate("document.querySelector('#history').dataset.total") == "1"
    assert page.locator("#history tbody td:nth-child(4)").all_inner_texts() == ["good"]


def test_an_earlier_shift_report_is_not_drawn_under_the_range_asked_since(page, daemon):
    write_result(daemon, "RR-1", pulse=211)
    start = record_mod.now_iso()
    write_result(daemon, "RR-2", pulse=212)
    held = _hold(page, "**/api/report?*")
    page.goto(page.base + "/#/report")                     # the last 8 h: slow to come
    _wait_held(page, held)
    page.goto(page.base + "/#/report?from=" + requests.utils.quote(start))
    page.wait_for_function("document.querySelector('#report')?.dataset.rows === '1'")
    _release(page, held, "**/api/report?*")
    assert page.evaluate("document.querySelector('#report').dataset.rows") == "1"
    assert page.locator("#report tbody td:nth-child(2)").all_inner_texts() == ["RR-2"]
    assert page.inner_text("#report-summary").startswith("1 results")


def test_the_batch_clicked_last_is_the_one_shown_when_an_earlier_ones_record_comes_later(page, daemon):
    for i in (1, 2):
        daemon.store.batches.put_batch({"id": f"batch-race-{i}", "state": "done", "created_at": f"2026-11-29T1{i}:00:00.000+00:00",
                                        "created_by": "bob", "inputs": ["a.png"], "jobs": [], "stored": i})
    page.goto(page.base + "/#/batches")
    page.wait_for_selector("#batches[data-ready='1']")
    held = _hold(page, "**/api/batches/*", lambda url: url.endswith("batch-race-1"))
    page.locator("#batches tbody tr", has_text="batch-race-1").locator("a").click()
    _wait_held(page, held)
    page.locator("#batches tbody tr", has_text="batch-race-2").locator("a").click()
    page.wait_for_selector("#batch-title:has-text('Batch batch-race-2')")
    _release(page, held, "**/api/batches/*")
    assert page.inner_text("#batch-title") == "Batch batch-race-2"


def test_a_layer_chosen_while_the_module_page_is_drawn_gives_one_drawing_not_two(page, daemon):
    write_result(daemon, "RL-1", pulse=221)                       # a left side only: the right one is "missing"
    held = _hold(page, "**/api/modules/RL-1/left/results?*")
    page.goto(page.base + "/#/module/RL-1")
    _wait_held(page, held)                                 # the first drawing waits for the acquisitions' list
    page.select_option("#layer", "mask")                   # the operator picks a layer meanwhile: drawn again
    page.wait_for_selector("#side-left[data-ready]")
    page.wait_for_selector("#side-right[data-ready]")
    _release(page, held, "**/api/modules/RL-1/left/results?*")
    assert page.locator("#sides > .side").count() == 2
    assert page.locator("#side-right").count() == 1 and page.locator("#view-left").count() == 1


def test_an_older_acquisitions_page_that_comes_late_is_not_drawn_over_the_newest(page, daemon):
    first = write_result(daemon, "RA-1", pulse=231)
    second = write_result(daemon, "RA-1", pulse=232, acquired=record_mod.now_iso())
    held = _hold(page, f"**/api/modules/RA-1/left/results/{first.id}")
    page.goto(page.base + f"/#/module/RA-1?left={first.id}")   # the older acquisition: slow to come
    _wait_held(page, held)
    page.goto(page.base + "/#/module/RA-1")                # the operator goes to the newest meanwhile
    page.wait_for_selector("#side-left[data-ready]")
    src = second.side["original"]["full"]["src_id"]
    assert page.get_attribute("#view-left", "data-src") == src
    _release(page, held, f"**/api/modules/RA-1/left/results/{first.id}")
    assert page.get_attribute("#view-left", "data-src") == src
    assert page.locator("#side-left .newer").count() == 0 and page.locator("#sides > .side").count() == 2


def test_a_decision_saved_on_an_older_acquisition_lands_without_drawing_it_over_the_newest(page, daemon):
    first = write_result(daemon, "RD-1", pulse=241)
    second = write_result(daemon, "RD-1", pulse=242, acquired=record_mod.now_iso())
    login(page)
    page.goto(page.base + f"/#/module/RD-1?left={first.id}")
    page.wait_for_selector("#side-left[data-ready]")
    held = _hold(page, "**/api/modules/RD-1/left/decision")
    form = page.locator("#decide-left")
    form.locator("input[value=pass]").check()
    form.locator("button").click()
    _wait_held(page, held)
    page.click("#side-left .newer a")                      # the operator opens the newer acquisition meanwhile
    page.wait_for_function(f"document.querySelector('#acq-left')?.value === '{second.id}'")
    page.wait_for_selector("#side-left[data-ready]")
    _release(page, held, "**/api/modules/RD-1/left/decision")
    page.wait_for_selector("#toast:has-text('Decision saved')")
    assert page.get_attribute("#view-left", "data-src") == second.side["original"]["full"]["src_id"]
    assert page.locator("#side-left .newer").count() == 0 and page.inner_text("#decision-left") == "No decision yet."
    assert requests.get(page.base + f"/api/modules/RD-1/left/results/{first.id}", timeout=10).json()["side"]["decision"]["verdict"] == "pass"


def test_a_tile_verified_on_one_side_stays_on_that_side_when_the_other_sides_tile_is_opened_meanwhile(page, daemon):
    left = write_result(daemon, "RT-1", "left", pulse=251)
    right = write_result(daemon, "RT-1", "right", pulse=252)
    srcs = {s: r.side["original"]["full"]["src_id"] for s, r in (("left", left), ("right", right))}
    assert srcs["left"] != srcs["right"]
    login(page)
    page.goto(page.base + "/#/module/RT-1")
    page.wait_for_selector("#side-left[data-ready]")
    page.wait_for_selector("#side-right[data-ready]")
    page.click("#tiles-left .tile[data-tile='0']")
    page.wait_for_selector("#editor[data-ready='0']")
    held = _hold(page, "**/tiles/0/verify")
    page.click("#ed-verify")
    _wait_held(page, held)
    page.click("#tiles-right .tile[data-tile='1']")        # the other side's tile, before the answer
    page.wait_for_selector("#editor[data-ready='1']")
    _release(page, held, "**/tiles/0/verify")
    page.wait_for_function("document.querySelector('#side-left h3').textContent.includes('1 of')")
    page.wait_for_selector("#side-left[data-ready]")
    page.wait_for_selector("#side-right[data-ready]")
    assert page.get_attribute("#view-left", "data-src") == srcs["left"]
    assert page.get_attribute("#view-right", "data-src") == srcs["right"]
    assert "1 of" in page.inner_text("#side-left h3") and page.inner_text("#side-right h3").startswith("right:")
    assert "✓ verified" in page.inner_text("#tiles-left .tile[data-tile='0']")
    assert "verified" not in page.inner_text("#tiles-right .tile[data-tile='0']")


def test_the_editor_keeps_the_layer_chosen_last_when_the_earlier_layers_tile_comes_later(page, daemon):
    rec = write_result(daemon, "RE-1", pulse=261)
    tiled = rec.side["original"]["full"]["tiled_id"]
    assert tiled, "the record's pictures are kept in tiles"
    page.goto(page.base + "/#/module/RE-1")
    page.wait_for_selector("#side-left[data-ready]")
    held = _hold(page, f"**/api/images/{tiled[0]}")
    page.click("#tiles-left .tile[data-tile='0']")         # the original's tile is slow to come
    _wait_held(page, held)
    page.select_option("#layer", "mask")                   # the operator switches to the mask meanwhile
    page.wait_for_selector("#editor[data-ready='0']")
    shown = page.evaluate("document.querySelector('#ed-canvas').toDataURL()")
    _release(page, held, f"**/api/images/{tiled[0]}")
    assert page.evaluate("document.querySelector('#ed-canvas').toDataURL()") == shown


def _tile_saved_and_held(page, daemon, module, pulse, pattern, button):
    """A result of ``module`` on its page, its left side's tile 0 in the editor, ``button`` (verify or save)
    pressed and its answer held back (released by the caller)."""
    write_result(daemon, module, pulse=pulse)
    login(page)
    page.goto(page.base + f"/#/module/{module}")
    page.wait_for_selector("#side-left[data-ready]")
    page.click("#tiles-left .tile[data-tile='0']")
    page.wait_for_selector("#editor[data-ready='0']")
    held = _hold(page, pattern)
    page.click(button)
    _wait_held(page, held)
    return held


def test_a_decision_being_written_survives_a_tiles_save_that_lands_meanwhile(page, daemon):
    held = _tile_saved_and_held(page, daemon, "RW-1", 271, "**/tiles/0/verify", "#ed-verify")
    form = page.locator("#decide-left")                    # the operator starts the decision meanwhile
    form.locator("input[value=rework]").check()
    form.locator("input[value=stain]").check()
    form.locator("textarea").fill("stain on pad 2, clean and re-image")
    _release(page, held, "**/tiles/0/verify")
    page.wait_for_selector("#tiles-left .tile.verified[data-tile='0']")
    page.wait_for_selector("#side-left[data-ready]")
    form = page.locator("#decide-left")
    assert form.locator("textarea").input_value() == "stain on pad 2, clean and re-image"
    assert form.locator("input[value=rework]").is_checked() and form.locator("input[value=stain]").is_checked()
    form.locator("button").click()
    page.wait_for_function("(document.querySelector('#decision-left')?.textContent || '').startsWith('Decision: rework by alice')")
    assert "stain on pad 2" in page.inner_text("#decision-left")


def test_keys_typed_into_the_decision_while_a_tiles_save_redraws_the_page_stay_in_the_comment(page, daemon):
    held = _tile_saved_and_held(page, daemon, "RK-1", 281, "**/tiles/0/mask?*", "#ed-save")
    page.click("#ed-next")                                 # tile 2 in the editor: what s and v would act on
    page.wait_for_selector("#editor[data-ready='1']")
    comment = page.locator("#decide-left textarea")
    comment.click()                                        # the operator writes the decision meanwhile
    page.keyboard.type("re-image")
    page.keyboard.press("Home")
    acquisitions = "**/api/modules/RK-1/left/results?*"
    listed = _hold(page, acquisitions)
    _release(page, held, "**/tiles/0/mask?*")
    _wait_held(page, listed)                               # the save's redraw waits for the acquisitions' list
    page.keyboard.type("stain on pads 3-4, save and verify, ")
    _release(page, listed, acquisitions)
    page.wait_for_selector("#tiles-left .tile.verified[data-tile='0']")
    page.wait_for_selector("#side-left[data-ready]")
    page.keyboard.type("then ")                            # on, where the caret was
    side = requests.get(page.base + "/api/modules/RK-1", timeout=10).json()["module"]["left"]
    assert side["verified_masks"][:2] == [True, False] and side["corrected_tiles"] == [0]   # s and v did nothing
    assert "verified" not in page.get_attribute("#tiles-left .tile[data-tile='1']", "class")
    assert page.get_attribute("#editor", "data-ready") == "1" and page.is_checked("input[name=tool][value=brush]")
    assert comment.input_value() == "stain on pads 3-4, save and verify, then re-image"
    assert page.evaluate("document.activeElement === document.querySelector('#decide-left textarea')")


def test_a_queue_answered_late_is_not_drawn_over_the_one_asked_since(page, daemon):
    """The queue asked for first is answered (as it was then) after the operator left and came back; the side
    stored between the two stays listed."""
    write_result(daemon, "RQ-1", pulse=301)
    held = []

    def handler(route):                                    # the first queue's answer, taken now, given later
        if not held and "decision=none" in route.request.url:
            held.append((route, route.fetch()))
        else:
            route.continue_()
    page.route("**/api/history?*", handler)
    page.goto(page.base + "/#/queue")
    _wait_held(page, held)
    write_result(daemon, "RQ-2", pulse=302)
    page.goto(page.base + "/#/history")
    page.goto(page.base + "/#/queue")
    page.wait_for_function("(document.querySelector('#queue tbody')?.textContent || '').includes('RQ-2')")
    route, answer = held[0]
    with page.expect_response(lambda r: r.url == route.request.url):
        route.fulfill(response=answer)
    page.unroute("**/api/history?*")
    page.wait_for_timeout(800)
    assert "RQ-2" in page.inner_text("#queue tbody") and "RQ-1" in page.inner_text("#queue tbody")


def test_a_queue_that_could_not_be_read_is_asked_again(page, daemon):
    """One failed read says so and does not stop the queue's refresh: the next one draws the sides."""
    write_result(daemon, "RQ-3", pulse=303)
    failed = []

    def handler(route):
        if not failed and "decision=none" in route.request.url:
            failed.append(route.request.url)
            route.abort()
        else:
            route.continue_()
    page.route("**/api/history?*", handler)
    page.goto(page.base + "/#/queue")
    page.wait_for_function("(document.querySelector('#queue-message')?.textContent || '').includes('Could not read')")
    page.wait_for_function("(document.querySelector('#queue tbody')?.textContent || '').includes('RQ-3')",
                           timeout=15_000)
    assert page.is_hidden("#queue-message") and failed
