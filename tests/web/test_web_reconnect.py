"""The monitor's live stream comes back by itself (issue 25 finding 3), in Chromium.

EventSource retries on its own only after a stream that was open ends: a 503 (every stream
taken) closed it for good, and the page stayed "reconnecting…" until a manual reload. The
page now retries with capped exponential back-off and says it is waiting.
"""
from __future__ import annotations

from ..helpers.daemon import running_daemon, wait_for
from ..helpers.http import open_stream


def test_the_monitor_reconnects_by_itself_once_a_stream_is_free(browser, model, camera):  # noqa: F811
    with running_daemon(model, camera) as (d, _ctx):
        base = f"http://127.0.0.1:{d.rest_port}"
        held = []
        for i in range(4 * d.live.hub.max_listeners):        # other hosts take every stream there is
            s, line = open_stream(d.rest_port, f"127.0.0.{2 + i % 8}")
            held.append(s)
            if not line.startswith(b"HTTP/1.0 200"):
                break
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
