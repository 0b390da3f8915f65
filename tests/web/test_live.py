"""The live feed behind the monitor (events, previews, trends, log tail) and the page's login, without a browser."""
from __future__ import annotations

import logging
import re
import socket
import threading

import cv2
import numpy as np
import pytest
import requests

from vi_stream import Client
from vi_stream.errors import AuthError, ConfigError, CsrfError, Overloaded, StateError
from vi_stream.web.auth import Sessions
from vi_stream.web.live import Hub, Live, Trends, qa_colour

from ..helpers.daemon import bound_push, running_daemon, wait_for
from ..helpers.store import make_result, render


def _events(chunks: list[bytes]) -> list[str]:
    return [line.split(b": ", 1)[1].decode() for c in chunks for line in c.split(b"\n") if line.startswith(b"event:")]


def test_a_stream_starts_with_retry_and_the_snapshot_then_follows_and_ends_on_close():
    hub = Hub(heartbeat=0.05)
    listener = hub.subscribe()
    stream = hub.stream(listener, [("status", {"a": 1})])
    first = next(stream)
    assert first.startswith(b"retry: 2000\n\n") and _events([first]) == ["status"]
    assert next(stream) == b": heartbeat\n\n"            # idle: a comment keeps the connection open
    hub.publish("verdict", {"score": 1.5})
    chunk = next(stream)
    assert b"event: verdict\ndata: {\"score\":1.5}\n\n" in chunk and chunk.startswith(b"id: 1\n")
    hub.close()
    assert list(stream) == [] and hub.listeners == 0
    with pytest.raises(Overloaded, match="shutting down"):
        hub.subscribe()


def test_a_stream_whose_snapshot_fails_gives_its_slot_back():
    """A status that raises while a new stream's first events are gathered: the request fails, and
    the stream's slot is free again (it stayed taken until the daemon restarted)."""
    def broken():
        raise RuntimeError("status unavailable")
    live = Live(broken, hub=Hub(max_listeners=1))
    with pytest.raises(RuntimeError, match="status unavailable"):
        live.events("10.0.0.1", "ab" * 8)
    assert live.hub.listeners == 0
    live.status = lambda: {"status": "idle"}
    assert next(live.events("10.0.0.1", "ab" * 8)).startswith(b"retry:")


def test_listeners_are_capped_and_a_slow_one_loses_its_oldest_events_only():
    hub = Hub(max_listeners=2, queue_size=3)
    slow, fast = hub.subscribe(), hub.subscribe()
    with pytest.raises(Overloaded, match="2 live streams are open already"):
        hub.subscribe()
    assert hub.refused == 1
    for i in range(5):
        hub.publish("verdict", {"i": i})
        fast.q.get_nowait()
    kept = [slow.q.get_nowait() for _ in range(3)]
    assert [b'"i":%d' % i in k for i, k in zip((2, 3, 4), kept)] == [True] * 3 and slow.dropped == 2
    assert fast.dropped == 0
    hub.unsubscribe(slow)
    assert hub.subscribe() is not None                   # a freed slot is free again


def test_a_tabs_new_stream_ends_its_own_old_one_and_beyond_the_caps_nothing_ends():
    hub = Hub(max_listeners=5, per_client=3)
    a, b = hub.subscribe("10.0.0.1", "aa" * 16), hub.subscribe("10.0.0.1", "bb" * 16)
    other = hub.subscribe("10.0.0.2", "aa" * 16)             # the same id from another address: another tab
    again = hub.subscribe("10.0.0.1", "aa" * 16)             # tab aa reloaded: its old stream ends, told why
    assert _events([a.q.get_nowait()]) == ["superseded"] and a.q.get_nowait() is None
    assert hub.superseded == 1 and hub.listeners == 3
    bare = hub.subscribe("10.0.0.1")                          # no tab id: it ends nothing
    with pytest.raises(Overloaded, match=r"3 live streams are open from 10.0.0.1 already \(the limit per client"):
        hub.subscribe("10.0.0.1", "cc" * 16)                  # a 4th tab from one address is refused ...
    third = hub.subscribe("10.0.0.3", "cc" * 16)
    with pytest.raises(Overloaded, match="5 live streams are open already"):
        hub.subscribe("10.0.0.4", "dd" * 16)                  # ... and a 6th from anywhere
    assert hub.refused == 2 and hub.superseded == 1 and hub.listeners == 5
    for listener in (b, other, again, bare, third):           # ... and every open stream stays
        assert listener.q.empty()
    hub.subscribe("10.0.0.2", "aa" * 16)                      # at the global cap its own tab still replaces its stream
    assert other.q.get_nowait() and other.q.get_nowait() is None and hub.listeners == 5


@pytest.mark.parametrize("score, anomalous, colour", [(0.5, False, "green"), (0.85, False, "yellow"),
                                                      (0.99, False, "yellow"), (1.2, True, "red")])
def test_qa_colours(score, anomalous, colour):
    assert qa_colour(score, 1.0, anomalous) == colour


def test_trends_bin_the_hour():
    now = [1000.0]
    t = Trends(bin_s=10, bins=3, clock=lambda: now[0])
    for s in range(1, 11):
        t.add(float(s), s > 8, 0.01 * s)
    t.reject()
    now[0] = 1012.0
    t.add(50.0, True, 0.2)
    b0, b1 = t.summary()
    assert b0["t"] == 1000 and b0["frames"] == 10 and b0["rejected"] == 1 and b0["fps"] == 1.0
    assert b0["anomalous_fraction"] == 0.2 and b0["score_max"] == 10.0 and b0["score_p50"] in (5.0, 6.0)
    assert b0["latency_p99_ms"] == 100.0 and b1["frames"] == 1
    now[0] = 1050.0
    t.add(1.0, False, 0.0)
    assert [b["t"] for b in t.summary()] == [1000, 1010, 1050][-3:]
    assert [b["t"] for b in t.summary(since=1010)] == [1010, 1050]


def test_the_watcher_publishes_verdicts_and_previews_of_the_newest_frame(tmp_path):
    live = Live(lambda: {"status": "processing"}, tick=0.05)
    listener = live.hub.subscribe()
    live.start()
    try:
        r = make_result(3, shape=(600, 300))
        live.result(r)
        live.rejected("bad_shape")
        wait_for(lambda: live.last_frame is not None)
        f = live.last_frame
        assert f["qa"] == "red" and f["module"] == "M-1" and f["boxes"][0]["bbox"] == r.defects[0]["bbox"]
        img = cv2.imdecode(np.frombuffer(live.images.get(f["image_id"]), np.uint8), cv2.IMREAD_UNCHANGED)
        heat = cv2.imdecode(np.frombuffer(live.images.get(f["heatmap_id"]), np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (600, 300) and np.array_equal(img, r.image)       # small enough: shown 1:1
        assert heat.shape[:2] == (600, 300)
        got = []
        wait_for(lambda: got.extend(_events([listener.q.get(timeout=5)])) or {"verdict", "reject", "frame",
                                                                              "status"} <= set(got))
        assert [v.get("qa") for v in live.recent] == ["red", "grey"]
        big = make_result(4, shape=(2048, 1024))
        assert live.render(big, {"threshold": 1.0})["preview_scale"] == live.preview_side / 2048   # longest side
    finally:
        live.close()
    assert live.hub.closed


def test_the_log_tail_keeps_the_last_lines_and_lets_go_on_close():
    live = Live(lambda: {}).start()
    logger = logging.getLogger("vi_stream.test")
    old = logging.getLogger("vi_stream").level
    logging.getLogger("vi_stream").setLevel(logging.INFO)
    try:
        logger.warning("pad %d looks odd", 7)
        assert live.log.lines[-1]["message"] == "pad 7 looks odd" and live.log.lines[-1]["level"] == "WARNING"
    finally:
        live.close()
        logging.getLogger("vi_stream").setLevel(old)
    logger.warning("after close")
    assert live.log.lines[-1]["message"] == "pad 7 looks odd"


def test_sessions():
    now = [0.0]
    s = Sessions("tok", ttl=100, max_sessions=2, clock=lambda: now[0])
    with pytest.raises(AuthError, match="wrong token"):
        s.login("nope")
    with pytest.raises(AuthError):
        s.login(None)
    sid, csrf, operator = s.login("tok")
    assert operator is None                       # the one unnamed token (--token)
    s.check("", sid, csrf)
    s.check("Bearer tok", None, None)
    with pytest.raises(CsrfError, match="X-CSRF-Token"):
        s.check("", sid, None)
    with pytest.raises(CsrfError):
        s.check("", sid, csrf + "x")
    with pytest.raises(AuthError, match="log in on the page"):
        s.check("Bearer nope", None, csrf)
    now[0] = 101.0                                        # a shift later: expired
    with pytest.raises(AuthError):
        s.check("", sid, csrf)
    a, b, c = (s.login("tok")[0] for _ in range(3))
    assert s.csrf(a) is None and s.csrf(b) and s.csrf(c)   # the oldest beyond the cap is logged out
    s.logout(c)
    assert s.csrf(c) is None
    open_daemon = Sessions(None)
    open_daemon.check("", None, None)
    with pytest.raises(StateError, match="nothing to log in to"):
        open_daemon.login("x")


@pytest.fixture(scope="module")
def daemon(model):
    with bound_push() as (_push, port), running_daemon(model, port, token="t0k-t0k-t0k-t0k-t0k") as (d, _ctx):
        yield d


def test_login_over_http_sets_a_strict_httponly_cookie(daemon):
    base = f"http://127.0.0.1:{daemon.rest_port}"
    assert requests.post(base + "/api/login", json={"token": "bad"}, timeout=5).status_code == 401
    assert requests.post(base + "/api/login", data=b"[1]", headers={"Content-Type": "application/json"}, timeout=5).status_code == 400
    with requests.Session() as web:
        r = web.post(base + "/api/login", json={"token": "t0k-t0k-t0k-t0k-t0k"}, timeout=5)
        cookie = r.headers["Set-Cookie"]
        assert r.ok and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        csrf = r.json()["csrf"]
        assert web.get(base + "/api/session", timeout=5).json()["csrf"] == csrf
        refused = web.post(base + "/config", json={"threshold": 5.0}, timeout=5)
        assert refused.status_code == 403 and refused.json()["error"] == "CsrfError"
        assert daemon.get_config()["threshold"] is None
        assert web.post(base + "/config", json={"threshold": 5.0}, headers={"X-CSRF-Token": csrf}, timeout=5).ok
        assert daemon.get_config()["threshold"] == 5.0
        web.post(base + "/api/logout", timeout=5)
        assert web.get(base + "/api/session", timeout=5).json()["logged_in"] is False
        assert web.post(base + "/config", json={"threshold": None}, headers={"X-CSRF-Token": csrf},
                        timeout=5).status_code == 401


def test_pages_and_images_are_served_and_unknown_assets_are_404(daemon):
    base = f"http://127.0.0.1:{daemon.rest_port}"
    page = requests.get(base + "/", timeout=5)
    assert page.ok and page.headers["Content-Type"].startswith("text/html") and "/static/main.js" in page.text
    js = requests.get(base + "/static/main.js", timeout=5)
    assert js.ok and js.headers["Content-Type"].startswith("text/javascript")
    again = requests.get(base + "/static/main.js", headers={"If-None-Match": js.headers["ETag"]}, timeout=5)
    assert again.status_code == 304 and not again.content
    seen, todo = set(), ["main.js"]                          # every module the page imports is served as one
    while todo:
        name = todo.pop()
        seen.add(name)
        r = requests.get(base + "/static/" + name, timeout=5)
        assert r.ok and r.headers["Content-Type"].startswith("text/javascript"), name
        todo += [m for m in re.findall(r'from "\./([a-z0-9_-]+\.js)"', r.text) if m not in seen]
    assert {"core.js", "live.js", "editor.js", "module.js"} <= seen
    for bad in ("../rest.py", "nope.js", "app.py"):
        r = requests.get(base + "/static/" + bad, timeout=5)
        assert r.status_code == 404, bad
    daemon.live.render(make_result(5), {"threshold": 1.0})   # a preview in the cache ...
    images = render(make_result(6)).images
    key = daemon.live.images.put(images[next(iter(images))])
    r = requests.get(base + f"/api/images/{key}", timeout=5)
    assert r.ok and r.headers["Cache-Control"].endswith("immutable")   # ... served by id like a stored one


def test_history_over_http(daemon):
    base = f"http://127.0.0.1:{daemon.rest_port}"
    daemon.store.write([render(make_result(i, module=f"H-{i}", defect=i % 2 == 0)) for i in range(4)])
    r = requests.get(base + "/api/history", params={"verdict": "good", "module": "H-"}, timeout=5).json()
    assert r["total"] == 2 and {s["module"] for s in r["sides"]} == {"H-1", "H-3"}
    bad = requests.get(base + "/api/history", params={"reviewed": "maybe"}, timeout=5)
    assert bad.status_code == 400 and "reviewed must be one of yes, no" in bad.json()["message"]
    client = Client(base, timeout=5)
    sides, total = client.history(verdict="anomalous", module="H-", from_="2000-01-01T00:00:00Z", limit=1)
    assert total == 2 and len(sides) == 1 and sides[0]["module"] in ("H-0", "H-2")
    with pytest.raises(ConfigError, match="sort must be one of"):
        client.history(sort="colour")


@pytest.mark.parametrize("path, what", [("/api/report", "report"), ("/api/report.csv", "report"),
                                        ("/api/trends", "trend")])
def test_the_report_and_the_trends_read_a_time_range_alike(daemon, path, what):
    """The same mistake gets the same answer from either: the report named a "to" nobody gave when
    "from" was in the future, and the two put "from must be before to" differently."""
    def get(**params) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{daemon.rest_port}{path}", params=params, timeout=5)

    def refused(**params) -> str:
        r = get(**params)
        assert r.status_code == 400, (params, r.text)
        return r.json()["message"]

    assert get(**{"from": "2000-01-01T00:00:00Z"}).ok and get(to="2000-01-01T00:00:00+01:00").ok
    assert refused(**{"from": "2999-01-01T00:00:00Z"}) == "from (2999-01-01T00:00:00.000+00:00) must not be in the future"
    assert refused(**{"from": "2026-01-02T01:00:00+01:00", "to": "2026-01-01T00:00:00Z"}) == (
        "from (2026-01-02T00:00:00.000+00:00) must be before to (2026-01-01T00:00:00.000+00:00)")
    assert refused(since="2026-01-01T00:00:00Z") == f"unknown {what} parameter(s): since; give from and to"
    assert "from must name its time zone" in refused(**{"from": "2026-01-01T00:00:00"})
    assert "to must be an ISO-8601 time" in refused(to="yesterday")


def test_the_event_stream_over_http_ends_when_the_daemon_closes(model):
    with bound_push() as (_push, port), running_daemon(model, port) as (d, _ctx):
        sock = socket.create_connection(("127.0.0.1", d.rest_port), timeout=10)
        sock.sendall(b"GET /api/events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        got: list[bytes] = []

        def read():
            while chunk := sock.recv(65536):
                got.append(chunk)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        wait_for(lambda: b"event: status" in b"".join(got))
        d.close()
        reader.join(10)
        assert not reader.is_alive()
        sock.close()
        head, body = b"".join(got).split(b"\r\n\r\n", 1)
        assert b"200 OK" in head and b"Content-Type: text/event-stream" in head
        assert {"status", "trends", "recent", "logs"} <= set(_events([body]))
