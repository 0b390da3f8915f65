"""Issue 27 in Chromium, the monitor's half: honest state and alarms (finding 1), keyboard shortcuts kept
out of fields and dialogs (2), QA colours that mean something, in words and at AA contrast (3), the
caption naming the frame drawn (4), aliases from a list and a confirmed rollback with `expected` (7),
read-only mode shown and a 390 px phone (8), trends from the store after a restart (9), the ROI drawn
on the image, batch details as tables and the registry's operations on the page (11).

Each was run against the page before this change and failed there.
"""
from __future__ import annotations

import contextlib
import tempfile

import pytest
import requests
import zmq

from vi_stream.service import config as config_mod
from vi_stream.service.daemon import Daemon

from ..helpers.daemon import wait_for
from ..helpers.page import processing
from ..helpers.screens import shot
from ..helpers.store import make_record

TOKEN = "s3cret-s3cret-s3cret"


@contextlib.contextmanager
def daemon_at(model, camera_port: int, state: str, rest_port: int = 0, **over):
    """A daemon whose store lives in ``state`` (so a second one finds what the first kept), on ``rest_port``."""
    ctx = zmq.Context()
    cfg = config_mod.build(None, env={"VI_STREAM_STATE_DIR": state}, input=f"tcp://127.0.0.1:{camera_port}",
                           prefix="CAM", output_port=0, rest_port=rest_port, **over)
    d = Daemon(cfg, model=model, context=ctx)
    d.start()
    try:
        yield d
    finally:
        d.close()
        ctx.destroy(linger=0)


@pytest.fixture(scope="module")
def token_daemon(model, camera):
    with tempfile.TemporaryDirectory(prefix="vi-state-") as state, \
            daemon_at(model, camera, state, token=TOKEN, store_tile=128) as d:
        yield d


@pytest.fixture
def new_page(browser):
    contexts, errors = [], []

    def make(base: str, **kw):
        context = browser.new_context(**({"viewport": {"width": 1400, "height": 1000}} | kw))
        contexts.append(context)
        pg = context.new_page()
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.base = base
        return pg
    yield make
    for c in contexts:
        c.close()
    assert not errors, errors


def base(d) -> str:
    return f"http://127.0.0.1:{d.rest_port}"


# ------------------------------------------------------------------ finding 1: honest state, alarm on daemon loss
def test_a_dead_daemon_is_shown_unreachable_and_the_session_is_rechecked_when_it_is_back(new_page, model, camera):
    with tempfile.TemporaryDirectory(prefix="vi-state-") as state:
        with daemon_at(model, camera, state, token=TOKEN) as d:
            port = d.rest_port
            pg = new_page(base(d))
            pg.goto(pg.base + "/")
            pg.wait_for_selector("#state.stopped")
            pg.click("#login-open")
            pg.fill("#login-token", TOKEN)
            pg.click("#login-submit")
            pg.wait_for_selector("#logout:not([hidden])")
            assert pg.inner_text("#who") == "logged in"
            assert pg.is_hidden("#banner")
        # the daemon is gone: the page says so at once, in words, and greys what it shows
        pg.wait_for_selector("#banner li[data-kind='daemon_gone']", timeout=20_000)
        assert "unreachable" in pg.inner_text("#state")
        assert pg.evaluate("document.body.classList.contains('stale')")
        pg.click("#threshold-model")                     # Stop is disabled on a stopped line: another change
        pg.wait_for_selector("#toast:not([hidden])")
        assert "unreachable" in pg.inner_text("#toast") and "Failed to fetch" not in pg.inner_text("#toast")
        with daemon_at(model, camera, state, rest_port=port, token=TOKEN):
            pg.wait_for_function("document.querySelector('#link').textContent === 'live'", timeout=60_000)
            pg.wait_for_selector("#state.stopped")
            pg.wait_for_selector("#banner", state="hidden")
            # a restart forgets every session: the page no longer claims to be logged in
            pg.wait_for_function("document.querySelector('#who').textContent === 'read-only'", timeout=10_000)
            assert pg.is_visible("#login-open") and not pg.evaluate("document.body.classList.contains('stale')")


# ------------------------------------------------------------------ finding 2: keyboard
def test_shortcuts_stay_out_of_the_login_dialog_and_of_sliders(new_page, token_daemon):
    d = token_daemon
    d.store.write([make_record(1, "KEY-1", "left")])
    pg = new_page(base(d))
    pg.goto(pg.base + "/#/module/KEY-1")
    pg.wait_for_selector("#side-left[data-ready]")
    pg.locator("#side-left canvas").click(position={"x": 5, "y": 5})
    pg.wait_for_selector("#editor[data-ready='0']")
    pg.keyboard.press("s")                                 # logged out: saving opens the login
    pg.wait_for_selector("#login[open]")
    pg.keyboard.type("s3cret-e-tok")
    assert pg.input_value("#login-token") == "s3cret-e-tok"
    assert pg.evaluate("document.querySelector('input[name=tool]:checked').value") == "brush"
    pg.keyboard.press("Escape")
    pg.wait_for_selector("#login[open]", state="hidden")
    title = pg.inner_text("#ed-title")
    pg.focus("#ed-size")
    pg.keyboard.press("ArrowRight")                        # the slider's key, not the next tile
    assert pg.input_value("#ed-size") == "7" and pg.inner_text("#ed-title") == title
    pg.locator("#ed-canvas").click(position={"x": 3, "y": 3})   # back on the page, shortcuts work
    pg.keyboard.press("e")
    assert pg.evaluate("document.querySelector('input[name=tool]:checked').value") == "eraser"


# ------------------------------------------------------------------ finding 8: read-only shown, a phone
def test_read_only_controls_say_so_and_the_page_fits_a_phone(new_page, token_daemon):
    pg = new_page(base(token_daemon))
    pg.goto(pg.base + "/")
    pg.wait_for_selector("#state.stopped")
    # the marks are set with #who once GET /api/session is answered, which may come after the stream's status
    pg.wait_for_function("document.querySelector('#who').textContent !== ''")
    for sel in ("#start", "#roi-edit", "#threshold-form button:not([type])"):
        assert pg.get_attribute(sel, "data-locked"), sel
        assert pg.evaluate(f"getComputedStyle(document.querySelector('{sel}'), '::after').content").find("log in") > 0
        assert "log in" in pg.get_attribute(sel, "title").lower()
    phone = new_page(base(token_daemon), viewport={"width": 390, "height": 844})
    # each view with what it loads drawn (the history's table is there before its rows: data-total comes with them)
    for view, ready in (("monitor", "#state.stopped"), ("history", "#history[data-total]"),
                        ("models", "#models[data-ready='1']"), ("batches", "#batches[data-ready='1']")):
        phone.goto(phone.base + f"/#/{view}")
        phone.wait_for_selector(ready)
        phone.wait_for_timeout(300)
        assert phone.evaluate("document.scrollingElement.scrollWidth") <= 390, view


# ------------------------------------------------------------------ findings 3 and 4: QA colours, the caption
CONTRAST = """(sel) => [...document.querySelectorAll(sel)].map(el => {
  const rgb = (s) => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => { const [r, g, b] = c.map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + .055) / 1.055) ** 2.4; });
                       return .2126 * r + .7152 * g + .0722 * b; };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + .05) / (y + .05); };
  const page = rgb(getComputedStyle(document.body).backgroundColor), st = getComputedStyle(el);
  const own = st.backgroundColor === 'rgba(0, 0, 0, 0)' ? page : rgb(st.backgroundColor);
  return {sel, text: el.textContent, chip: ratio(own, page), text_ratio: ratio(rgb(st.color), own)};
})"""


def test_qa_colours_come_from_the_calibration_with_words_and_contrast(new_page, daemon, model):
    pg = new_page(base(daemon))
    processing(pg, daemon)
    status = pg.evaluate("window.vi.status")
    assert status["yellow_from"] == pytest.approx(max(model.meta["calibration_scores"]))
    assert "yellow from" in pg.inner_text("#model") and "calibration" in pg.inner_text("#model")
    assert pg.inner_text("#qa-text") in ("good", "near threshold", "anomalous")
    chips = pg.evaluate(CONTRAST, "#strip .chip, .legend .chip")
    assert {c["text"] for c in chips} >= {"✓", "!", "✕", "–"}
    for c in chips:
        assert c["chip"] >= 3 and c["text_ratio"] >= 4.5, c
    for c in pg.evaluate(CONTRAST, "#qa-text, #now-score, #now-module, .legend, #roi-now"):
        assert c["text_ratio"] >= 4.5, c
    for v in pg.evaluate("window.vi.recent"):
        if v["qa"] != "grey":
            want = "red" if v["is_anomalous"] else "yellow" if v["score"] >= v["yellow_from"] else "green"
            assert v["qa"] == want, v
    daemon.stop_processing()


def test_the_caption_names_the_frame_drawn_also_on_a_fresh_load_of_a_stopped_line(new_page, daemon):
    pg = new_page(base(daemon))
    processing(pg, daemon)
    mismatches = pg.evaluate("""() => new Promise(done => {
      let n = 0, bad = [];
      const t = setInterval(() => {
        const c = document.querySelector('#frame'), p = c.dataset.pulse;
        if (p && !document.querySelector('#now-module').textContent.endsWith('pulse ' + p)) bad.push(p);
        if (p && !document.querySelector('#qa').classList.contains(c.dataset.qa)) bad.push('qa ' + p);
        if (++n >= 60) { clearInterval(t); done(bad); }
      }, 50);
    })""")
    assert mismatches == []
    daemon.stop_processing()
    fresh = new_page(base(daemon))
    fresh.goto(fresh.base + "/")
    fresh.wait_for_selector("#state.stopped")
    fresh.wait_for_function("document.querySelector('#frame').dataset.pulse !== ''", timeout=20_000)
    pulse = fresh.get_attribute("#frame", "data-pulse")
    assert fresh.inner_text("#now-module").endswith(f"pulse {pulse}")
    assert fresh.get_attribute("#frame", "data-qa") in fresh.get_attribute("#qa", "class")
    assert f"pulse {pulse}" in fresh.get_attribute("#frame", "aria-label")
    assert "line stopped" in fresh.inner_text("#frame-age")


# ------------------------------------------------------------------ alarms: a run of anomalous modules, with sound
def test_a_run_of_anomalous_modules_raises_an_alarm_and_a_tone_when_asked(new_page, model, camera):
    # its own daemon: it makes every module anomalous (threshold 1e-9) and leaves the alarm raised, which the
    # module's other tests must not see (a reloaded page's old stream no longer matters: its tab's new one ends it)
    with tempfile.TemporaryDirectory(prefix="vi-state-") as state, daemon_at(model, camera, state) as daemon:
        pg = new_page(base(daemon))
        pg.goto(pg.base + "/")
        pg.wait_for_selector("#state.stopped, #state.processing")   # the page's script is running: the box is wired
        pg.check("#alarm-sound")
        pg.wait_for_function("localStorage.getItem('vi.alarmSound') === 'on'")
        pg.reload()
        pg.wait_for_function("document.querySelector('#alarm-sound').checked", timeout=10_000)   # kept in this browser
        processing(pg, daemon)
        daemon.set_config({"threshold": 1e-9})             # every module anomalous from now on
        pg.wait_for_selector("#banner li[data-kind='anomalous_run']", timeout=60_000)
        assert "anomalous modules in a row" in pg.inner_text("#banner")
        shot(pg, "alarms")
        assert pg.evaluate("window.viHealth.beeps") >= 1
        assert requests.get(base(daemon) + "/status", timeout=5).json()["alarms"][0]["kind"] == "anomalous_run"


# ------------------------------------------------------------------ finding 11: ROI drawn on the image
def test_the_roi_is_drawn_on_the_image_and_applied(new_page, daemon):
    pg = new_page(base(daemon))
    processing(pg, daemon)
    try:
        pg.click("#roi-edit")
        box = pg.locator("#frame").bounding_box()
        pg.mouse.move(box["x"] + box["width"] * .25, box["y"] + box["height"] * .25)
        pg.mouse.down()
        pg.mouse.move(box["x"] + box["width"] * .5, box["y"] + box["height"] * .4, steps=5)
        pg.mouse.move(box["x"] + box["width"] * .75, box["y"] + box["height"] * .75, steps=5)
        pg.mouse.up()
        rect = pg.evaluate("window.viRoi.rect")
        # the rectangle is on the canvas: its dashed outline's colour along the top edge
        cyan = pg.evaluate("""([x, y, w]) => { const d = document.querySelector('#frame').getContext('2d')
            .getImageData(Math.round(x), Math.round(y), Math.round(w), 1).data; let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i] < 60 && d[i + 1] > 180 && d[i + 2] > 200) n++; return n; }""", rect)
        assert cyan > 10
        scale = pg.evaluate("window.vi.frame.preview_scale")
        pg.click("#roi-apply")
        want = [round(rect[0] / scale), round(rect[2] / scale), round(rect[1] / scale), round(rect[3] / scale)]
        wait_for(lambda: daemon.get_roi() == want, timeout=10)
        pg.wait_for_function(f"document.querySelector('#roi-now').textContent.includes('x {want[0]}, y {want[2]}')",
                             timeout=30_000)
        pg.click("#roi-whole")
        wait_for(lambda: daemon.get_roi() == [], timeout=10)
    finally:
        daemon.set_roi([])
        daemon.stop_processing()


def test_a_batch_is_shown_as_tables_and_the_registry_operations_on_the_models_page(new_page, daemon, model_path):
    doc = {"id": "batch-table-1", "state": "failed", "created_at": "2026-11-29T10:00:00.000+00:00", "created_by": "bob",
           "inputs": ["a.png"], "jobs": [{"job": "77", "tasks": [0]}], "stored": 0, "progress": "0 of 1 tasks",
           "tasks": {"0": {"state": "FAILED", "attempts": 3, "job": "77", "seen": ["PENDING", "RUNNING", "FAILED"]}},
           "log_tail": {"0/77": ["out of memory"]}, "error": "task 0 FAILED after 3 attempts"}
    daemon.store.batches.put_batch(doc)
    pg = new_page(base(daemon))
    pg.goto(pg.base + "/#/batches")
    pg.wait_for_selector("#batches[data-ready='1']")
    pg.locator("#batches tbody tr", has_text="batch-table-1").locator("a").click()
    row = pg.locator("#batch-tasks tbody tr").first
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[:4] == ["0", "FAILED", "3", "77"] and "PENDING → RUNNING → FAILED" in cells[4]
    assert "out of memory" in cells[5]
    assert "task 0 FAILED after 3 attempts" in pg.inner_text("#batch-fields")
    assert "{" not in pg.inner_text("#batch-detail")           # no raw JSON
    pg.goto(pg.base + "/#/models")
    pg.wait_for_selector("#models[data-ready='1']")
    pg.wait_for_selector("#ops tbody tr:has-text('shadow')")
    ops = {r.split("\t")[0]: r for r in pg.locator("#ops tbody tr").all_inner_texts()}
    assert "none yet" in ops["gate"] and "idle" in ops["retrain"] and "off" in ops["shadow"]
    pg.set_input_files("#register-file", model_path)
    pg.fill("#register-name", "uploaded")
    pg.click("#register-form button")
    pg.wait_for_selector("#ops tbody tr:has-text('register'):has-text('uploaded@1.0')")
    pg.wait_for_selector("button[data-ref='uploaded@1.0']")


# ------------------------------------------------------------------ finding 9: trends kept in the store
def test_trends_survive_a_restart_with_a_range_picker_hover_values_and_drift_apart(new_page, model, camera):
    with tempfile.TemporaryDirectory(prefix="vi-state-") as state:
        with daemon_at(model, camera, state, store_tile=128) as d:
            d.live.trends.bin_s = 2.0                      # bins of 2 s, so a few close within the test
            d.start_processing()
            wait_for(lambda: len(d.store.trends.trend_points(None, 0, 1e12)) >= 3, timeout=60)
            d.stop_processing()
        with daemon_at(model, camera, state) as d:          # a new daemon on the same store: nothing in memory
            assert d.live.trends.summary() == []
            pg = new_page(base(d))
            pg.goto(pg.base + "/")
            pg.wait_for_function("window.vi && (window.vi.trends.length >= 3)", timeout=20_000)
            label = pg.get_attribute("#tr-score", "aria-label")
            assert "point(s)" in label and "p50" in label
            # vi.trends may come from the stream's snapshot first; the note only with GET /api/trends's answer
            pg.wait_for_function("document.querySelector('#trend-note').textContent !== ''", timeout=20_000)
            assert "kept in the store" in pg.inner_text("#trend-note")
            pg.select_option("#trend-range", "604800")
            # over 7 days the store's 2 s bins come back merged into wider ones (at most 720 points a read)
            pg.wait_for_function("window.vi && (window.vi.range === 604800 && window.vi.trends.length >= 1)")
            pg.wait_for_function("document.querySelector('#tr-fps').getAttribute('aria-label').includes('7 day(s)')",
                                 timeout=30_000)        # redrawn once the store's answer for the range is in
            pg.select_option("#trend-range", "3600")
            pg.wait_for_function("window.vi && (window.vi.range === 3600 && window.vi.trends.length >= 1)")
            # the hover below maps a time to x with the plot on screen: wait until it is the hour's
            pg.wait_for_function("document.querySelector('#tr-score').getAttribute('aria-label')"
                                 ".includes('over the last 1 h')", timeout=30_000)
            # the values under the pointer: on the newest point's x
            t = pg.evaluate("window.vi.trends[window.vi.trends.length - 1].t + window.vi.binS / 2")
            x = pg.evaluate(f"(() => {{ const c = document.querySelector('#tr-score'); const r = c.getBoundingClientRect();"
                            f" return r.left + c._plot.X({t}) * r.width / c.width; }})()")
            box = pg.locator("#tr-score").bounding_box()
            pg.mouse.move(x, box["y"] + box["height"] / 2)
            pg.wait_for_function("document.querySelector('output[for=tr-score]').textContent.includes('p50')")
            assert "threshold" in pg.inner_text("output[for=tr-score]")
            assert pg.locator("#tr-ks").count() == 1 and pg.locator("#tr-w").count() == 1   # KS and Wasserstein apart


# ------------------------------------------------------------------ finding 7: aliases from a list, rollback
def test_aliases_are_chosen_from_a_list_and_rollback_shows_its_target_asks_and_sends_expected(new_page, daemon,
                                                                                              model_path, tmp_path):
    from ..helpers.modelfiles import register_two_versions
    reg = daemon.registry
    register_two_versions(reg, model_path, tmp_path, "listpads")
    reg.promote("line", "listpads", "1.0", "first")
    reg.promote("line", "listpads", "1.1", "second")
    pg = new_page(base(daemon))
    pg.goto(pg.base + "/#/models")
    pg.wait_for_selector("#models[data-ready='1']")
    assert pg.evaluate("document.querySelector('#alias-name').tagName") == "SELECT"
    pg.select_option("#alias-name", "line")
    assert pg.inner_text("#rollback") == "Roll back to listpads@1.0"
    pg.fill("#alias-reason", "1.1 too strict")
    pg.click("#rollback")
    pg.wait_for_selector("#confirm[open]")
    assert "from listpads@1.1 to listpads@1.0" in pg.inner_text("#confirm-text")
    pg.click("#confirm-no")                                   # cancelled: nothing moves
    pg.wait_for_selector("#confirm[open]", state="hidden")
    assert reg.resolve("line")["version"] == "1.1"
    reg.promote("line", "listpads", "1.0", "from the shell")  # someone else moves it meanwhile
    held = []                                                 # the list's refresh after the refusal is held back
    pg.route("**/api/aliases", lambda route: held.append(route))
    pg.click("#rollback")
    pg.click("#confirm-yes")
    pg.wait_for_selector("#toast:has-text('not listpads@1.1')")
    assert reg.resolve("line")["version"] == "1.0"            # the page's stale rollback was refused
    for _ in range(100):
        if held:
            break
        pg.wait_for_timeout(50)
    # a typo is no new alias: only the explicit, checked step makes one, and nothing is sent until a promotion
    pg.select_option("#alias-name", "\u0000new")
    held[0].continue_()                                       # the refresh lands after "new alias…" was chosen
    pg.unroute("**/api/aliases")
    pg.wait_for_selector("#alias-name option[value='line']:has-text('listpads@1.0')", state="attached")
    assert pg.input_value("#alias-name") == "\u0000new" and pg.is_visible("#alias-new")
    pg.fill("#alias-new", "pro duction")
    pg.click("#alias-new-add")
    pg.wait_for_selector("#toast:has-text('An alias is a word')")
    pg.fill("#alias-new", "night")
    pg.click("#alias-new-add")
    assert pg.input_value("#alias-name") == "night" and "night" not in reg.aliases()
    # two versions with one model id show their versions
    ids = pg.locator("#models tbody tr", has_text="listpads@1").all_inner_texts()
    assert len(ids) == 2 and all("listpads@1." in r for r in ids)
    daemon._use_model(daemon.model, "listpads@1.1")
    try:
        pg.goto(pg.base + "/#/monitor")
        pg.wait_for_function("document.querySelector('#model span:nth-child(2)').textContent.startsWith('listpads@1.1')")
    finally:
        daemon._use_model(daemon.model, None)
