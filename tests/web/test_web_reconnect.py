"""The monitor's live stream comes back by itself (issue 25 finding 3), in Chromium.

EventSource retries on its own only after a stream that was open ends: a 503 (every stream
taken) closed it for good, and the page stayed "reconnecting…" until a manual reload. The
page now retries with capped exponential back-off and says it is waiting.

A page reloaded a few times in a row left its old streams open (until the daemon's writes
found them gone): they held the address's streams and connections, and the newest page's
scripts were answered 503. Now an address's newest request ends its oldest stream.
"""
from __future__ import annotations

from ..helpers.daemon import running_daemon, wait_for
from ..helpers.http import open_stream


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
    """Each reload as soon as the page is live: before, the fifth page's scripts met its address's
    connections held by the old streams (503) and it never connected."""
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
