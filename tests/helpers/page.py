"""What the browser tests do again and again: read the daemon's REST API, bring the monitor to a
line that is processing with a frame on screen, and, for the review pages, a daemon with a store and
an operator, results written to it and the operator logged in."""
from __future__ import annotations

import contextlib

import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from .daemon import bound_push, running_daemon
from .store import make_record

ALICE = "alice-token-0123456789"     # the review daemon's one operator


def api(d, path: str):
    return requests.get(f"http://127.0.0.1:{d.rest_port}{path}", timeout=10).json()


def processing(pg, daemon) -> None:
    """The monitor on a processing line, with a frame processed since this was called on screen: a page
    opened first draws the daemon's last frame from before (its stream's snapshot), which must not count."""
    last = daemon.live.last_frame
    before = -1 if last is None else int(last["pulse_id"])
    pg.goto(pg.base + "/#/monitor")
    if daemon.status() != "processing":
        # Start is disabled while the page shows the line processing: a start still on its way from
        # the test before (under load) can land between the check above and the click, and a click
        # would then wait on a disabled button. Click only while the page offers it.
        pg.wait_for_function("document.querySelector('#state').classList.contains('processing')"
                             " || !document.querySelector('#start').disabled")
        if pg.is_enabled("#start"):
            try:
                pg.click("#start", timeout=5_000)
            except PlaywrightTimeout:
                pass                   # disabled meanwhile: the line is processing (asserted below)
    pg.wait_for_selector("#state.processing")
    pg.wait_for_function(f"(p => p !== '' && +p > {before})(document.querySelector('#frame').dataset.pulse)",
                         timeout=30_000)


@contextlib.contextmanager
def review_daemon(model, tmp_path_factory):
    """A daemon with a store (tiles of 128 px) and one operator, alice (token ALICE)."""
    ops = tmp_path_factory.mktemp("ops") / "operators"
    ops.write_text(f"alice:{ALICE}\n")
    with bound_push() as (_push, port), running_daemon(model, port, store_tile=128, operators=str(ops)) as (d, _ctx):
        yield d


def write_result(daemon, module, side="left", pulse=1, defect=True, acquired=None):
    """One result of ``module``'s ``side`` written to the daemon's store (acquired now, or at ``acquired``)."""
    r = make_record(pulse, module, side, defect=defect)
    if acquired:
        r.side["acquired_at"] = acquired
    daemon.store.write([r])
    return r


def login(page) -> None:
    """alice logs in from the queue page."""
    page.goto(page.base + "/#/queue")
    page.click("#login-open")
    page.fill("#login-token", ALICE)
    page.click("#login-submit")
    page.wait_for_selector("#logout:not([hidden])")
