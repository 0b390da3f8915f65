"""The monitor's live stream comes back by itself (issue 25 finding 3), in Chromium.

EventSource retries on its own only after a stream that was open ends: a 503 (every stream
taken) closed it for good, and the page stayed "reconnecting…" until a manual reload. The
page now retries with capped exponential back-off and says it is waiting.

A page reloaded a few times in a row left its old streams open (until the daemon's writes
found them gone): they held the address's streams and connections, and the newest page's
scripts were answered 503. 1b979f7 let an address's newest stream or request end its oldest
stream, and tabs from one workstation took turns, each "reconnecting…" every few seconds. Now a
page names its tab (an id in sessionStorage, the same after a reload): its new stream ends only
its own tab's old one, and streams do not count among the address's connections.
"""
from __future__ import annotations

import time

from ..helpers.daemon import running_daemon, wait_for
from ..helpers.http import open_stream

LIVE = "document.querySelector('#link').textContent === 'live'"
# every state #link shows from now on, each time it is set (a flicker between two polls is seen too)
WATCH_LINK = """() => { window.linkSeen = [];
  new MutationObserver(() => window.linkSeen.push(document.querySelector('#link').dataset.state))
    .observe(document.querySelector('#link'), {attributes: true, childList: true, characterData: true, subtree: true}); }"""


def test_the_monitor_reconnects_by_itself_once_a_stream_is_free(browser, model, camera):  # noqa: F811
    with running_daemon(model, camera) as (d, _ctx):
        base = f"http://127.0.0.1:{d.rest_port}"
        held = [open_stream(d.rest_port, f"127.0.0.{2 + i % 8}")[0]       # other hosts take every stream there is
                for i in range(d.live.hub.max_listeners)]
        assert d.live.hub.listeners == d.live.hub.max_listeners
        context = browser.new_context()
        try:
            pg = context.new_page()
            pg.goto(base + "/")
            pg.wait_for_function("document.querySelector('#link').dataset.state === 'waiting'", timeout=20_000)
            assert "retrying in" in pg.inner_text("#link")
            for s in held:                                    # they go away: a stream is free again
                s.close()
            wait_for(lambda: d.live.hub.listeners < d.live.hub.max_listeners, timeout=30)
            pg.wait_for_function("document.querySelector('#link').textContent === 'live'", timeout=60_000)
            pg.wait_for_selector("#state.stopped")            # and the stream's events arrive
            assert d.live.hub.listeners >= 1
        finally:
            for s in held:
                s.close()
            context.close()


def test_a_page_reloaded_again_and_again_is_live_at_once(browser, model, camera):
    """Each reload as soon as the page is live: before 1b979f7, the fifth page's scripts met its
    address's connections held by the old streams (503) and it never connected."""
    with running_daemon(model, camera) as (d, _ctx):
        context = browser.new_context()
        try:
            pg = context.new_page()
            pg.goto(f"http://127.0.0.1:{d.rest_port}/")
            for _ in range(6):
                pg.wait_for_function("document.querySelector('#link').textContent === 'live'", timeout=5_000)
                pg.reload()
            pg.wait_for_function("document.querySelector('#link').textContent === 'live'", timeout=5_000)
            pg.wait_for_selector("#state.stopped", timeout=5_000)        # and its stream's events arrive
            assert d.live.hub.listeners <= d.live.hub.per_client
        finally:
            context.close()


def test_tabs_up_to_the_cap_stay_live_and_one_more_waits(browser, model, camera):
    """Four tabs from one browser stay live for 10 s (the fifth retries at about 1, 3 and 7 s): none
    shows "reconnecting" once live, while the fifth is refused and backs off. Under 1b979f7 the fifth
    ended the oldest's stream at each try, and they took turns."""
    with running_daemon(model, camera) as (d, _ctx):
        base = f"http://127.0.0.1:{d.rest_port}"
        context = browser.new_context()
        try:
            tabs = [context.new_page() for _ in range(d.live.hub.per_client)]
            for t in tabs:
                t.goto(base + "/")
            for t in tabs:
                t.wait_for_function(LIVE, timeout=10_000)
                t.evaluate(WATCH_LINK)
            fifth = context.new_page()
            fifth.goto(base + "/")
            fifth.wait_for_function("document.querySelector('#link').dataset.state === 'waiting'", timeout=10_000)
            assert "offline: retrying in" in fifth.inner_text("#link")
            end = time.monotonic() + 10
            while time.monotonic() < end:                     # poll what each tab shows, twice a second ...
                assert [t.evaluate("document.querySelector('#link').dataset.state") for t in tabs] == ["live"] * 4
                time.sleep(0.5)
            for t in tabs:                                    # ... and every state it was set to
                assert set(t.evaluate("window.linkSeen")) <= {"live"}, t.evaluate("window.linkSeen")
            assert fifth.evaluate("document.querySelector('#link').dataset.state") != "live"
            stats = d.live.hub.statistics()
            assert stats["listeners"] == 4 and stats["superseded"] == 0 and stats["refused"] >= 2
        finally:
            context.close()


def test_a_duplicated_tab_takes_an_id_of_its_own(browser, model, camera):
    """A duplicated tab starts with a copy of its origin's sessionStorage, so its tab id: its stream ends
    the origin's, which is told ("superseded") and takes a fresh id, and both stay live (not taking
    turns every 2 s)."""
    with running_daemon(model, camera) as (d, _ctx):
        base = f"http://127.0.0.1:{d.rest_port}"
        context = browser.new_context()
        try:
            first = context.new_page()
            first.goto(base + "/")
            first.wait_for_function(LIVE, timeout=10_000)
            tab = first.evaluate("sessionStorage.getItem('vi.tab')")
            assert len(tab) == 32 and int(tab, 16) >= 0
            copy = context.new_page()                         # as Chromium's "Duplicate" leaves it
            copy.add_init_script(f"sessionStorage.setItem('vi.tab', '{tab}')")
            copy.goto(base + "/")
            copy.wait_for_function(LIVE, timeout=10_000)
            first.wait_for_function(f"sessionStorage.getItem('vi.tab') !== '{tab}'", timeout=10_000)
            first.wait_for_function(LIVE, timeout=10_000)
            assert copy.evaluate("sessionStorage.getItem('vi.tab')") == tab
            for t in (first, copy):
                t.evaluate(WATCH_LINK)
            time.sleep(6)                                     # three of the browser's 2 s retries
            for t in (first, copy):
                assert set(t.evaluate("window.linkSeen")) <= {"live"}, t.evaluate("window.linkSeen")
            assert d.live.hub.statistics()["superseded"] == 1 and d.live.hub.listeners == 2
        finally:
            context.close()


# As a browser that blocks this site's storage leaves the page (Chromium with its cookies blocked: both
# storages' getters throw "Access is denied for this document").
NO_STORAGE = """for (const name of ['localStorage', 'sessionStorage'])
  Object.defineProperty(window, name, {get() { throw new DOMException('Access is denied for this document.',
                                                                      'SecurityError'); }});"""


def test_a_page_without_web_storage_goes_live(browser, model, camera):
    """The page keeps its tab id in sessionStorage and the alarm sound's switch in localStorage. With the
    site's storage blocked, health.js's setup threw on localStorage before main.js reached connect(): the
    page never opened a stream, and live.js's care for a throwing sessionStorage never ran. Now it goes
    live (with a tab id for the page alone) and its stream's events arrive, with no error on the page."""
    with running_daemon(model, camera) as (d, _ctx):
        context = browser.new_context()
        try:
            pg = context.new_page()
            errors = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.add_init_script(NO_STORAGE)
            pg.goto(f"http://127.0.0.1:{d.rest_port}/")
            pg.wait_for_function(LIVE, timeout=10_000)
            pg.wait_for_selector("#state.stopped", timeout=10_000)       # its stream's events arrive
            assert pg.evaluate("document.querySelector('#alarm-sound').click(), 1")   # the switch still works
            assert d.live.hub.listeners == 1 and not errors, errors
        finally:
            context.close()
