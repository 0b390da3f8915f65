"""The operator's page in a real browser: Debian's chromium driven by Playwright (never `playwright install`).

A simulated camera feeds a daemon with the test model; the tests click what an operator
clicks and check the page and the API agree. With VI_STREAM_SCREENSHOTS=<folder> they also
save the screenshots README shows. Without chromium the tests skip, unless
VI_STREAM_REQUIRE_BROWSER is set (CI), where a missing browser fails.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import requests

from vi_stream.store import record as record_mod
from vi_stream.web.live import MAX_LISTENERS

from ..helpers.daemon import running_daemon, stored_books_balance, wait_for
from ..helpers.http import stream_from
from ..helpers.page import api, processing
from ..helpers.screens import shot
from ..helpers.store import make_record


def _stop_and_store(daemon) -> None:
    """Stops the line and waits until every result judged is stored. The store's writer lags behind: a result
    still on its way re-images its module's side later, so the newest side (or a total) read before it lands is
    not the one the page shows next (a tile saved on it then rightly stays with the older acquisition)."""
    daemon.stop_processing()
    wait_for(lambda: daemon.status() == "stopped" and stored_books_balance(daemon.processor.statistics()), timeout=30)


def test_the_monitor_follows_frames_and_starts_and_stops_from_the_page(page, daemon):
    daemon.set_config({"log_level": "INFO"})      # what `vi_stream run` logs at by default
    page.goto(page.base + "/")
    page.wait_for_selector("#state.stopped")
    assert page.inner_text("#link") == "live"
    page.click("#start")
    page.wait_for_selector("#state.processing")
    assert daemon.status() == "processing"
    page.wait_for_function("document.querySelector('#frame').dataset.pulse !== ''", timeout=30_000)
    first = int(page.get_attribute("#frame", "data-pulse"))
    page.wait_for_function(f"+document.querySelector('#frame').dataset.pulse > {first}", timeout=30_000)
    # the latest frame's verdict, the strip of QA colours and the statistics on the page match the daemon's
    assert page.get_attribute("#qa", "class").split()[1] in ("green", "yellow", "red")
    assert page.locator("#strip .chip").count() >= 2
    page.wait_for_function("+[...document.querySelectorAll('#stats span')][7].textContent > 0")
    assert "SIM-" in page.inner_text("#now-module")
    latencies = page.evaluate("window.vi.latencies")
    assert latencies and all(0 <= x < 30 for x in latencies)
    page.wait_for_timeout(1500)       # let the trend plots and the log fill for the screenshot
    shot(page, "monitor")
    page.click("#stop")
    page.wait_for_selector("#state.stopped")
    assert daemon.status() == "stopped"
    page.wait_for_function("document.querySelector('#log').textContent.includes('processing stopped')")


def test_the_threshold_control_changes_the_verdicts(page, daemon):
    processing(page, daemon)
    page.fill("#threshold", "1e-9")
    page.click("#threshold-form button:not([type])")
    wait_for(lambda: daemon.get_config()["threshold"] == 1e-9)
    n = len(page.evaluate("window.vi.recent"))
    page.wait_for_function(f"window.vi.recent.length > {n + 2} || window.vi.recent.slice(-3).every(v => v.threshold === 1e-9)",
                           timeout=30_000)
    page.wait_for_function("window.vi && (window.vi.recent.slice(-3).every(v => v.threshold === 1e-9))", timeout=30_000)
    assert all(v["qa"] == "red" and v["is_anomalous"] for v in page.evaluate("window.vi.recent.slice(-3)"))
    page.click("#threshold-model")
    wait_for(lambda: daemon.get_config()["threshold"] is None)
    page.wait_for_function("window.vi && (window.vi.recent.slice(-1)[0].threshold > 1)", timeout=30_000)
    daemon.stop_processing()


def test_the_history_filters_by_verdict_and_links_to_the_module(page, daemon):
    processing(page, daemon)
    wait_for(lambda: api(daemon, "/api/history?verdict=good")["total"] >= 1 and
             api(daemon, "/api/history?verdict=anomalous")["total"] >= 1, timeout=60)
    _stop_and_store(daemon)                             # the total asked below is the one the page reads
    page.goto(page.base + "/#/history")
    page.wait_for_selector("#history tbody tr")
    shot(page, "history")
    page.select_option("select[name=verdict]", "good")
    page.click("#filters button")
    want = api(daemon, "/api/history?verdict=good")["total"]
    page.wait_for_function(f"document.querySelector('#history').dataset.total === '{want}'")
    verdicts = page.locator("#history tbody td:nth-child(4)").all_inner_texts()
    assert verdicts and set(verdicts) == {"good"}
    name = page.locator("#history tbody td:nth-child(2) a").first.inner_text()
    page.locator("#history tbody td:nth-child(2) a").first.click()
    page.wait_for_selector(".side h3")
    assert page.inner_text("#module-name") == name


def test_the_queue_leads_to_a_camera_module_and_a_decision_takes_it_off(page, daemon):
    """The review round on the simulated camera's own modules: queue, module page with its defects, decision."""
    processing(page, daemon)
    wait_for(lambda: api(daemon, "/api/history?verdict=anomalous&decision=none")["total"] >= 2, timeout=60)
    # every result judged is stored before the round starts (else a side may be re-imaged under the decision,
    # which then rightly stays with the acquisition it was made on)
    _stop_and_store(daemon)
    page.goto(page.base + "/#/queue")
    page.wait_for_selector("#queue tbody tr")
    page.wait_for_selector("#state.stopped")            # the header follows the line within its status tick
    shot(page, "queue")
    link = page.locator("#queue tbody tr a").first
    module, side = link.inner_text().split()
    link.click()
    page.wait_for_selector(f"#side-{side}[data-ready]")
    assert page.locator(f"#defects-{side} li").count() == len(api(daemon, f"/api/modules/{module}")["module"][side]["defects"])
    shot(page, "module")
    form = page.locator(f"#decide-{side}")
    form.locator("input[value=rework]").check()
    form.locator("button").click()
    page.wait_for_function(f"(document.querySelector('#decision-{side}')?.textContent || '').startsWith('Decision: rework')")
    page.click("#module-back")
    page.wait_for_selector("#queue[data-total]")
    assert f"{module} {side}" not in page.locator("#queue tbody td:nth-child(3)").all_inner_texts()


def _open_tile(page, daemon, tile: int):
    """The module review page of the newest stored side, with tile ``tile`` open in the editor (by clicking it)."""
    row = api(daemon, "/api/history?limit=1")["sides"][0]
    side = api(daemon, f"/api/modules/{row['module']}")["module"][row["side"]]
    page.goto(page.base + f"/#/module/{row['module']}")
    page.wait_for_selector(f"#side-{row['side']}[data-ready]")
    canvas = page.locator(f"#side-{row['side']} canvas")
    k = canvas.evaluate("c => c.width") / side["image_shape"][1]
    x, y, w, h = side["tiles"][tile]
    canvas.click(position={"x": (x + w / 2) * k, "y": (y + h / 2) * k})
    page.wait_for_selector(f"#editor[data-ready='{tile}']")
    return row["module"], row["side"], side


def _set_size(page, px: int) -> None:
    page.eval_on_selector("#ed-size", f"e => {{ e.value = {px}; e.dispatchEvent(new Event('input')); }}")


def _click_canvas(page, x: int, y: int) -> None:
    """Click tile pixel (x, y): the canvas may sit at a fractional offset and a mouse event's clientX/Y are
    whole pixels, so the click goes to the first whole pixel inside that tile pixel."""
    box = page.locator("#ed-canvas").bounding_box()
    page.mouse.click(math.ceil(box["x"] + x), math.ceil(box["y"] + y))


def _disc(mask: np.ndarray, cx: int, cy: int, r: float, value: int) -> None:
    yy, xx = np.mgrid[:mask.shape[0], :mask.shape[1]]
    mask[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = value


def test_a_correction_drawn_on_a_tile_is_stored_pixel_for_pixel(page, daemon):
    processing(page, daemon)
    _stop_and_store(daemon)
    name, side_name, side = _open_tile(page, daemon, 1)
    start = cv2.imdecode(np.frombuffer(requests.get(
        page.base + "/api/images/" + side["corrected_mask"]["full"]["tiled_id"][1], timeout=10).content, np.uint8),
        cv2.IMREAD_UNCHANGED)
    _set_size(page, 9)
    _click_canvas(page, 40, 50)                          # brush: a disc of diameter 9 at (40, 50)
    _click_canvas(page, 90, 20)
    page.keyboard.press("Control+z")                     # the second disc undone ...
    page.keyboard.press("Control+y")                     # ... redone ...
    page.keyboard.press("e")                             # ... and erased again with the eraser
    _set_size(page, 13)
    _click_canvas(page, 90, 20)
    shot(page, "review")
    page.click("#ed-save")
    page.wait_for_function("document.querySelector('#ed-message').textContent.includes('saved')")
    want = start.copy()
    _disc(want, 40, 50, 4.5, 255)
    _disc(want, 90, 20, 6.5, 0)
    stored = api(daemon, f"/api/modules/{name}")["module"][side_name]
    got = cv2.imdecode(np.frombuffer(requests.get(
        page.base + "/api/images/" + stored["corrected_mask"]["full"]["tiled_id"][1], timeout=10).content, np.uint8),
        cv2.IMREAD_UNCHANGED)
    assert got.dtype == np.uint8 and got.shape == want.shape
    assert np.array_equal(got, want), f"{int((got != want).sum())} pixels differ"
    assert stored["verified_masks"][1] is True and stored["corrected_tiles"] == [1]
    full = cv2.imdecode(np.frombuffer(requests.get(
        page.base + "/api/images/" + stored["corrected_mask"]["full"]["src_id"], timeout=10).content, np.uint8),
        cv2.IMREAD_UNCHANGED)
    x, y, w, h = side["tiles"][1]
    assert np.array_equal(full[y:y + h, x:x + w], want)
    # the sides are redrawn after the save: the old drawing stays until the new one is swapped in
    page.wait_for_function(f"document.querySelector('#side-{side_name} h3').textContent.includes('1 of')")


def test_verify_marks_the_tile_and_counts_it(page, daemon):
    processing(page, daemon)
    _stop_and_store(daemon)
    name, side_name, side = _open_tile(page, daemon, 0)
    page.click("#ed-verify")
    page.wait_for_function("document.querySelector('#ed-message').textContent.includes('verified')")
    assert api(daemon, f"/api/modules/{name}")["module"][side_name]["verified_masks"][0] is True
    page.wait_for_function(f"document.querySelector('#side-{side_name} h3').textContent.includes('1 of {side['tile_count']} tiles verified')")
    page.keyboard.press("ArrowRight")                    # the next tile, from the keyboard
    page.wait_for_selector("#editor[data-ready='1']")


def test_a_tile_still_loading_takes_no_strokes_and_saves_nothing(page, daemon):
    """Clicking or pressing s before the tile's mask has arrived is refused in words, not a script error."""
    processing(page, daemon)
    _stop_and_store(daemon)
    row = api(daemon, "/api/history?limit=1")["sides"][0]
    side = api(daemon, f"/api/modules/{row['module']}")["module"][row["side"]]
    page.goto(page.base + f"/#/module/{row['module']}")
    page.wait_for_selector(f"#side-{row['side']}[data-ready]")
    held = []
    page.route("**/api/images/**", lambda route: held.append(route))   # the tile's pictures do not arrive yet
    canvas = page.locator(f"#side-{row['side']} canvas")
    k = canvas.evaluate("c => c.width") / side["image_shape"][1]
    x, y, w, h = side["tiles"][0]
    canvas.click(position={"x": (x + w / 2) * k, "y": (y + h / 2) * k})
    page.wait_for_function("document.querySelector('#ed-title').textContent.includes('tile 1 of')")
    page.wait_for_function("document.querySelector('#editor').dataset.ready === undefined")
    _click_canvas(page, 10, 10)
    page.keyboard.press("s")
    page.wait_for_selector("#ed-message.error")
    assert "still loading" in page.inner_text("#ed-message")
    assert held, "the test must hold the tile's pictures back"
    for r in held:
        r.continue_()
    page.unroute("**/api/images/**")
    page.wait_for_selector("#editor[data-ready='0']")
    assert api(daemon, f"/api/modules/{row['module']}")["module"][row["side"]]["corrected_tiles"] == []


def test_saving_a_side_that_was_reimaged_meanwhile_keeps_it_on_its_acquisition_and_says_so(page, daemon):
    processing(page, daemon)
    _stop_and_store(daemon)
    name, side_name, side = _open_tile(page, daemon, 0)
    _click_canvas(page, 10, 10)
    again = make_record(987_654, name, side_name)                    # the side imaged again meanwhile
    again.side["acquired_at"] = record_mod.now_iso()                  # (later than what the page shows)
    daemon.store.write([again])
    page.click("#ed-save")
    page.wait_for_selector("#ed-message.notice")
    text = page.inner_text("#ed-message")
    assert "saved" in text and "A newer acquisition of this side exists" in text
    now = api(daemon, f"/api/modules/{name}")["module"][side_name]
    assert now["result_id"] != side["result_id"] and now["corrected_tiles"] == []
    kept = api(daemon, f"/api/modules/{name}/{side_name}/results/{side['result_id']}")["side"]
    assert kept["corrected_tiles"] == [0]


def test_with_a_token_the_page_is_read_only_until_login_and_needs_the_csrf_token(browser, model, camera):
    with running_daemon(model, camera, token="s3cret-s3cret-s3cret") as (d, _ctx):
        context = browser.new_context()
        pg = context.new_page()
        base = f"http://127.0.0.1:{d.rest_port}"
        pg.goto(base + "/")
        pg.wait_for_selector("#state.stopped")
        # #state comes from the event stream, #who from GET /api/session: either may land first
        pg.wait_for_function("document.querySelector('#who').textContent !== ''")
        assert pg.inner_text("#who") == "read-only"
        pg.click("#start")                                   # refused: the login form opens
        pg.wait_for_selector("#login[open]")
        assert d.status() == "stopped"
        pg.fill("#login-token", "wrong")
        pg.click("#login-submit")
        pg.wait_for_selector("#login-error:not([hidden])")
        assert "wrong token" in pg.inner_text("#login-error")
        pg.fill("#login-token", "s3cret-s3cret-s3cret")
        pg.click("#login-submit")
        pg.wait_for_selector("#logout:not([hidden])")
        assert "vi_session" not in pg.evaluate("document.cookie")          # HttpOnly
        cookie = [c for c in context.cookies() if c["name"] == "vi_session"][0]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        pg.click("#start")
        pg.wait_for_selector("#state.processing")
        # the cookie alone is not enough: a request without the CSRF token is refused, with it allowed
        no_csrf = pg.evaluate("fetch('/stop', {method: 'POST'}).then(r => r.status)")
        assert no_csrf == 403 and d.status() == "processing"
        with_csrf = pg.evaluate("fetch('/api/session').then(r => r.json()).then(s => "
                                "fetch('/stop', {method: 'POST', headers: {'X-CSRF-Token': s.csrf}})).then(r => r.status)")
        assert with_csrf == 200 and d.status() == "stopped"
        assert requests.post(base + "/start", timeout=5).status_code == 401            # no credentials
        assert requests.post(base + "/start", headers={"Authorization": "Bearer s3cret-s3cret-s3cret"}, timeout=5).ok
        pg.click("#logout")
        pg.wait_for_selector("#login-open:not([hidden])")
        assert pg.evaluate("fetch('/stop', {method: 'POST'}).then(r => r.status)") == 401
        context.close()


def test_open_tabs_up_to_the_cap_leave_the_control_plane_answering(browser, model, camera):
    with running_daemon(model, camera) as (d, _ctx):
        base = f"http://127.0.0.1:{d.rest_port}"
        context = browser.new_context()
        tabs = [context.new_page() for _ in range(d.live.hub.per_client)]   # as many as one client may open
        for t in tabs:
            t.goto(base + "/")
        for t in tabs:
            t.wait_for_function("document.querySelector('#link').textContent === 'live'")
        mine = requests.get(base + "/api/events", timeout=5)              # one more from this client: refused
        assert mine.status_code == 503 and "limit per client" in mine.json()["message"]
        streams = [stream_from(base, f"127.0.0.{2 + i % 4}") for i in range(MAX_LISTENERS - len(tabs))]
        assert all(s.status_code == 200 for s in streams)                 # other clients fill the rest
        wait_for(lambda: d.live.hub.listeners == MAX_LISTENERS)
        over = stream_from(base, "127.0.0.6")                             # every stream taken: refused
        assert over.status_code == 503 and over.headers["Retry-After"] and "close a monitor tab" in over.json()["message"]
        for _ in range(20):
            assert requests.get(base + "/status", timeout=5).json()["status"] == "stopped"
        assert requests.post(base + "/start", timeout=5).ok
        tabs[0].wait_for_selector("#state.processing")
        assert requests.post(base + "/stop", timeout=5).ok
        context.close()
        d.close()                                       # the daemon stops: every stream ends
        for s in streams:
            assert b"event: status" in b"".join(s.iter_content(None))


def test_promote_and_roll_back_from_the_models_page(page, daemon, model_path, tmp_path):
    from ..helpers.modelfiles import register_two_versions
    reg = daemon.registry
    register_two_versions(reg, model_path, tmp_path, "webpads")
    page.goto(page.base + "/#/models")
    page.wait_for_selector("#models[data-ready='1']")
    page.select_option("#alias-name", "\u0000new")                 # a new alias: named, then added
    page.fill("#alias-new", "web")
    page.click("#alias-new-add")
    page.click("button[data-ref='webpads@1.0']")
    page.wait_for_selector("#toast:has-text('Give a reason')")      # a reason is required, nothing sent
    assert "web" not in reg.aliases()
    page.fill("#alias-reason", "first on this station")
    page.click("button[data-ref='webpads@1.0']")
    page.wait_for_selector("#aliases:has-text('webpads@1.0')")
    assert reg.resolve("web")["version"] == "1.0"
    # someone else moves the alias meanwhile: the page's promotion is refused and says so
    reg.promote("web", "webpads", "1.1", "from the shell")
    page.fill("#alias-reason", "stale page")
    page.click("button[data-ref='webpads@1.1']")
    page.wait_for_selector("#toast:has-text('points at webpads@1.1, not webpads@1.0')")
    page.wait_for_selector("#aliases:has-text('webpads@1.1')")      # the page reloaded what is true now
    page.fill("#alias-reason", "1.1 too strict")
    page.click("#rollback")
    page.click("#confirm-yes")
    page.wait_for_selector("#alias-log tbody tr:first-child:has-text('rollback')")
    assert reg.resolve("web")["version"] == "1.0"
    assert [c["reason"] for c in reg.changes("web")] == ["1.1 too strict", "from the shell",
                                                           "first on this station"]
    shot(page, "models")


def test_the_batches_page_lists_slurm_batches_and_shows_one(page, daemon):
    doc = {"id": "batch-web-1", "state": "done", "created_at": "2026-11-29T10:00:00.000+00:00", "created_by": "alice",
           "inputs": ["a.png", "b.png"], "jobs": [{"job": "12", "tasks": [0, 1]}], "tasks": {"0": {"state": "STORED"}},
           "stored": 2, "progress": "2 of 2 tasks", "log_tail": {"0/12": ["2 images scored"]}}
    daemon.store.batches.put_batch(doc)
    page.goto(page.base + "/#/batches")
    page.wait_for_selector("#batches[data-ready='1']")
    row = page.locator("#batches tbody tr", has_text="batch-web-1")
    assert "done" in row.inner_text() and "alice" in row.inner_text()
    row.locator("a").click()
    page.wait_for_selector("#batch-detail:not([hidden])")
    assert "2 images scored" in page.inner_text("#batch-detail")


@pytest.fixture
def drift_every_10_frames(daemon):
    """A drift chunk every 10 frames for one test; the module's daemon gets its own back after."""
    before = daemon.drift.chunk, daemon.drift.min_frames
    daemon.drift.chunk = daemon.drift.min_frames = 10
    yield
    daemon.drift.chunk, daemon.drift.min_frames = before


def test_the_monitor_plots_the_drift_watch_per_chunk(page, daemon, drift_every_10_frames):
    processing(page, daemon)
    page.wait_for_function("window.vi && (window.vi.drift.length > 0)", timeout=60_000)
    chunk = page.evaluate("window.vi.drift[0]")
    assert chunk["state"] in ("green", "yellow", "red") and chunk["frames"] >= 10 and "ks" in chunk
    assert page.inner_text("#model").count("drift") == 1
