"""The REST server under hostile clients (issue 25 findings 2, 3, 5 and the tracebacks of 10).

* Slow senders (a header byte every few seconds, under the old idle timeout) plus live
  streams filled every connection: ``GET /status`` and an authenticated ``POST /stop`` got
  503 for as long as the attack lasted.
* One client could hold every live stream, so the operator's monitor was shut out.
* Bodies were read (and spooled to the temp folder) before any size check; chunked bodies
  had no limit at all.
* A client timing out printed a raw multi-line traceback on stderr.

Every server here binds 127.0.0.1 on an ephemeral port; the attackers bind other loopback
addresses (127.0.0.2...) so they count as other hosts. Every loop is bounded.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from ..helpers.daemon import bound_push, running_daemon, wait_for
from ..helpers.http import connect, get_from, open_stream, read_stream, stream_from

VI_STREAM = os.path.join(os.path.dirname(sys.executable), "vi_stream")
TOKEN = "a-token-long-enough-for-the-checks"
CAMERA_STREAMS = 16          # live streams the attack holds (the daemon's default cap)
SLOW_SENDERS = 48            # with the streams: every one of the daemon's 64 connections






class SlowSenders:
    """``n`` connections from ``source``, each sending one byte of a request head every ``every`` s
    (well under the old idle timeout, so none was ever silent for long); a dropped one reconnects
    at once, as an attacker would (one turned away within ``pause`` s of connecting waits until
    then: that bounds the churn when most are refused). Runs until :meth:`stop` or ``limit`` s."""

    HEAD = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000

    def __init__(self, port: int, n: int, source: str = "127.0.0.6", every: float = 2.0, limit: float = 90.0,
                 pause: float = 0.0):
        self.port, self.n, self.source, self.every, self.limit, self.pause = port, n, source, every, limit, pause
        self.dropped = 0
        self._stop = threading.Event()
        self._socks: list[list] = [[connect(port, source), 0, time.monotonic()] for _ in range(n)]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        end = time.monotonic() + self.limit
        while not self._stop.wait(self.every) and time.monotonic() < end:
            for entry in self._socks:
                s, sent, since = entry
                if s is None:
                    if time.monotonic() < since + self.pause:
                        continue
                else:
                    try:
                        s.sendall(self.HEAD[sent:sent + 1])
                        entry[1] = sent + 1
                        continue
                    except OSError:            # the server hung up: count it, come back
                        self.dropped += 1
                        s.close()
                        entry[0] = None
                        if time.monotonic() < since + self.pause:
                            continue
                try:
                    entry[:] = [connect(self.port, self.source), 0, time.monotonic()]
                except OSError:
                    entry[:] = [None, 0, time.monotonic()]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for s, _, _ in self._socks:
            if s is not None:
                s.close()


def _get(url: str) -> int:
    try:
        return requests.get(url, timeout=10).status_code
    except requests.RequestException:
        return 0


def test_slow_senders_and_streams_do_not_lock_out_the_control_routes(model):
    with bound_push() as (_push, port), running_daemon(model, port, token=TOKEN) as (d, _ctx):
        base = f"http://127.0.0.1:{d.rest_port}"
        streams = [open_stream(d.rest_port, f"127.0.0.{2 + i % 4}") for i in range(CAMERA_STREAMS)]
        slow = [SlowSenders(d.rest_port, SLOW_SENDERS // 6, f"127.0.0.{6 + i}") for i in range(6)]   # 8 each
        try:
            assert all(line.startswith(b"HTTP/1.0 200") for _, line in streams), [x for _, x in streams]
            # the attack holds every ordinary connection: another page request is turned away ...
            wait_for(lambda: _get(base + "/api/trends") == 503, timeout=20, interval=0.2)
            # ... but the control routes still answer, read and write, again and again
            for _ in range(10):
                assert _get(base + "/status") == 200
                r = requests.post(base + "/stop", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
                assert r.status_code == 200, r.text
                time.sleep(0.3)
            # a trickling head is cut off at its deadline, though no gap in it reached the idle timeout
            wait_for(lambda: sum(x.dropped for x in slow) >= SLOW_SENDERS, timeout=30, interval=0.2)
        finally:
            for x in slow:
                x.stop()
            for s, _ in streams:
                s.close()


@pytest.mark.parametrize("addresses,each", [(1, 80), (6, 12)], ids=["one-address", "six-addresses"])
def test_slow_senders_reconnecting_at_once_do_not_lock_out_the_control_routes(model, addresses, each):
    """More trickling connections than the server and its reserve hold (72), each reconnecting as
    soon as it is dropped: from one address, or a few, they hold that address's cap, never the reserve."""
    with bound_push() as (_push, port), running_daemon(model, port, token=TOKEN) as (d, _ctx):
        base = f"http://127.0.0.1:{d.rest_port}"
        slow = [SlowSenders(d.rest_port, each, f"127.0.0.{6 + i}", every=0.05, limit=60, pause=0.5)
                for i in range(addresses)]
        try:
            time.sleep(3)
            for _ in range(10):
                assert _get(base + "/status") == 200
                r = requests.post(base + "/stop", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
                assert r.status_code == 200, r.text
                time.sleep(0.3)
            assert _get(base + "/api/trends") == 200      # the cap leaves ordinary routes room too
        finally:
            for x in slow:
                x.stop()


EVENT = b"\n\nid: "          # a published event (the snapshot's carry no id): the stream follows the daemon


TABS = [f"{i:032x}" for i in range(1, 40)]     # the page's ids for its tabs (128 bits, hex)


def _following(streams: list[tuple[socket.socket, bytes]]) -> bool:
    """Every stream still open and following the daemon's events (none ended, none waiting)."""
    for s, _ in streams:
        got, ended = read_stream(s, EVENT)
        if ended or EVENT not in got:
            return False
    return True


def test_one_client_cannot_take_every_live_stream(model):
    """Tabs from one address beyond ``per_client`` are refused, saying why, and end nobody's stream: under
    1b979f7 the newest ended the oldest, so five tabs took turns, each reconnecting every few seconds."""
    with bound_push() as (_push, port), running_daemon(model, port) as (d, _ctx):
        base = f"http://127.0.0.1:{d.rest_port}"
        per_client = d.live.hub.per_client
        held = [open_stream(d.rest_port, "127.0.0.2", tab) for tab in TABS[:per_client]]
        try:
            assert all(line.startswith(b"HTTP/1.0 200") for _, line in held), [x for _, x in held]
            for tab in TABS[per_client:per_client + 3] + [None]:          # more tabs, and a client without one
                over = stream_from(base, "127.0.0.2", tab)
                assert over.status_code == 503 and over.headers["Retry-After"], (tab, over.status_code)
                assert over.json()["message"] == (f"{per_client} live streams are open from 127.0.0.2 already (the "
                                                  "limit per client address); close a monitor tab there")
            assert _following(held) and _following(held)                  # no turns taken: all stay
            assert d.live.hub.statistics()["superseded"] == 0 and d.live.hub.listeners == per_client
            mine = requests.get(base + "/api/events", stream=True, timeout=10)   # the operator's monitor
            assert mine.status_code == 200
            mine.close()
        finally:
            for s, _ in held:
                s.close()


def test_a_tabs_new_stream_ends_its_own_old_one_and_no_other(model):
    """A reloaded page's old stream stays open until the daemon's writes find it gone: the new page's
    stream (the same tab id, from the same address) ends it. Another tab's, or the same id from
    another address, ends nothing; a tab id that is not 8-64 hex digits is refused."""
    with bound_push() as (_push, port), running_daemon(model, port) as (d, _ctx):
        base = f"http://127.0.0.1:{d.rest_port}"
        held = [open_stream(d.rest_port, "127.0.0.2", TABS[0]), open_stream(d.rest_port, "127.0.0.2", TABS[1]),
                open_stream(d.rest_port, "127.0.0.3", TABS[0]), open_stream(d.rest_port, "127.0.0.2")]
        try:
            assert all(line.startswith(b"HTTP/1.0 200") for _, line in held), [x for _, x in held]
            reloaded = open_stream(d.rest_port, "127.0.0.2", TABS[0])
            held.append(reloaded)
            assert reloaded[1].startswith(b"HTTP/1.0 200"), reloaded[1]
            got, ended = read_stream(held[0][0])                           # the tab's old stream ends, told why
            assert ended and b"event: superseded" in got
            assert _following(held[1:])                                    # the rest follow the daemon
            assert b'"superseded":1' in read_stream(reloaded[0], b'"superseded":1')[0]   # counted in the status
            for bad in ("abc", "x" * 32, "0" * 65, "", "12345678-9abc"):
                r = requests.get(base + "/api/events", params={"tab": bad}, timeout=10)
                assert r.status_code == 400 and r.json()["error"] == "ConfigError", (bad, r.status_code)
                assert r.json()["message"].startswith("tab must be 8-64 hex digits") and "\n" not in r.json()["message"]
            assert d.live.hub.statistics()["superseded"] == 1 and d.live.hub.listeners == 4
        finally:
            for s, _ in held:
                s.close()


def test_at_the_cap_a_new_stream_is_refused_unless_it_replaces_its_own_tabs(model):
    with bound_push() as (_push, port), running_daemon(model, port) as (d, _ctx):
        base = f"http://127.0.0.1:{d.rest_port}"
        sources = ["127.0.0.2"] * 4 + ["127.0.0.3"] * 4 + ["127.0.0.4"] * 4 + ["127.0.0.5"] * 3 + ["127.0.0.6"]
        assert len(sources) == d.live.hub.max_listeners
        held = [open_stream(d.rest_port, source, tab) for source, tab in zip(sources, TABS)]
        try:
            assert all(line.startswith(b"HTTP/1.0 200") for _, line in held), [x for _, x in held]
            stranger = stream_from(base, "127.0.0.7", TABS[30])
            assert stranger.status_code == 503 and "close a monitor tab" in stranger.json()["message"]
            another_tab = stream_from(base, "127.0.0.6", TABS[31])        # its address holds one: refused too
            assert another_tab.status_code == 503 and "16 live streams are open" in another_tab.json()["message"]
            assert _following(held)                                        # and they ended nobody's stream
            s, line = open_stream(d.rest_port, "127.0.0.6", TABS[15])     # that tab reloaded: it replaces its own
            held.append((s, line))
            assert line.startswith(b"HTTP/1.0 200") and read_stream(held[15][0])[1]
            assert EVENT in read_stream(s, EVENT)[0] and d.live.hub.listeners == d.live.hub.max_listeners
            assert d.live.hub.statistics()["superseded"] == 1
        finally:
            for s, _ in held:
                s.close()


def test_live_streams_do_not_count_toward_an_addresss_connections(model):
    """A page reloaded a few times: its old streams, not yet found gone, held the address's connections,
    and the new page's scripts were answered 503 (the page stayed dead); 1b979f7 then ended the address's
    oldest stream for each connection over the cap. Streams are the hub's to cap: an address holding
    its 4 still has its 8 ordinary connections, and not one more."""
    with bound_push() as (_push, port), running_daemon(model, port) as (d, _ctx):
        per_address = d.server.per_address
        streams = [open_stream(d.rest_port, "127.0.0.2", tab) for tab in TABS[:d.live.hub.per_client]]
        idle = [connect(d.rest_port, "127.0.0.2") for _ in range(per_address - 1)]
        try:
            s, line = get_from(d.rest_port, "127.0.0.2", "/static/live.js")   # its 8th ordinary connection
            idle.append(s)
            assert line.startswith(b"HTTP/1.0 200"), line
            assert read_stream(s)[1]                                         # answered and closed: its slot is back
            idle.append(connect(d.rest_port, "127.0.0.2"))                  # 8 held again
            s, line = get_from(d.rest_port, "127.0.0.2", "/static/live.js")   # a 9th: the cap still holds
            idle.append(s)
            assert line.startswith(b"HTTP/1.0 503"), line
            assert _following(streams) and d.live.hub.statistics()["superseded"] == 0
        finally:
            for s in idle + [s for s, _ in streams]:
                s.close()


def test_a_stream_that_stops_reading_is_dropped(model):
    with bound_push() as (_push, port), running_daemon(model, port) as (d, _ctx):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)       # a tab frozen by its machine
        s.settimeout(10)
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", d.rest_port))
        try:
            s.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            wait_for(lambda: d.live.hub.listeners == 1, timeout=10)
            payload = {"message": "x" * 16384}
            end = time.monotonic() + 90
            while d.live.hub.listeners and time.monotonic() < end:   # events keep coming; it reads none
                d.live.hub.publish("log", payload)
                time.sleep(0.01)
            assert d.live.hub.listeners == 0
            assert requests.get(f"http://127.0.0.1:{d.rest_port}/status", timeout=10).status_code == 200
        finally:
            s.close()


def test_a_tab_that_never_reads_is_dropped_though_its_buffers_never_fill(model):
    """A frozen tab with an ordinary receive buffer and the daemon's ordinary small events: no write
    ever blocks (the kernel takes a few hundred KB), yet the stream ends after the hub's max_age."""
    with bound_push() as (_push, port), running_daemon(model, port) as (d, _ctx):
        d.live.hub.max_age = 3.0                                      # MAX_STREAM_S is minutes
        s = connect(d.rest_port, "127.0.0.2")
        try:
            s.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            wait_for(lambda: d.live.hub.listeners == 1, timeout=10)
            end = time.monotonic() + 15
            while d.live.hub.listeners and time.monotonic() < end:    # a log line ten times a second
                d.live.hub.publish("log", {"level": "INFO", "message": "frame scored"})
                time.sleep(0.1)
            assert d.live.hub.listeners == 0
            assert d.live.hub.statistics()["expired"] == 1
        finally:
            s.close()
        # a tab that reads gets its stream ended the same way, then reconnects and gets the snapshot again
        with requests.get(f"http://127.0.0.1:{d.rest_port}/api/events", stream=True, timeout=10) as r:
            text = b"".join(r.iter_content(None)).decode()
        assert text.startswith("retry:") and "event: status" in text


# ---------------------------------------------------------------------- bodies
def _raw(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    """Send a head (and part of a body), then read the answer that comes without the rest."""
    s = connect(port, "127.0.0.1", timeout=15)
    try:
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            part = s.recv(65536)
            if not part:
                break
            data += part
    finally:
        s.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1] or b"{}") if status else {}


def _length(data: bytes) -> int:
    m = re.search(rb"(?i)content-length: *(\d+)", data.split(b"\r\n\r\n", 1)[0])
    return int(m.group(1)) if m else 0


def test_a_declared_body_over_the_route_limit_is_refused_before_it_is_read(model):
    with bound_push() as (_push, port), running_daemon(model, port) as (d, _ctx):
        for path, size in (("/api/login", 600 * 2**20), ("/config", 1 << 20), ("/api/models?name=big", 2**31)):
            status, body = _raw(d.rest_port, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                                             f"application/json\r\nContent-Length: {size}\r\n\r\n".encode(),
                                b"{" + b" " * 65536)
            assert status == 413, (path, status, body)
            assert body["state"] == "error" and body["error"] == "PayloadTooLarge" and "limit" in body["message"]
            assert body["status"] in ("stopped", "processing")
        # within its limit, a route still takes its body
        r = requests.post(f"http://127.0.0.1:{d.rest_port}/config", json={"threshold": 3.0}, timeout=10)
        assert r.status_code == 200 and r.json()["config"]["threshold"] == 3.0


def _send_chunked(port: int, path: str, headers: bytes = b"", most: int = 16 << 20) -> tuple[bytes, bool, int]:
    """POST up to ``most`` bytes as a chunked body, stopping when the server answers or hangs up:
    (its answer, whether it stopped reading before the end, bytes sent)."""
    s = connect(port, "127.0.0.1", timeout=15)
    sent, cut = 0, False
    try:
        s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  + headers + b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (8192, b" " * 8192)
        while sent < most:
            try:
                s.sendall(chunk)
                sent += 8192
            except OSError:
                cut = True
                break
            if sent % (1 << 20) == 0:                   # every MiB: is an answer there already?
                s.settimeout(0.05)
                try:
                    if s.recv(1, socket.MSG_PEEK):
                        cut = True
                        break
                except (socket.timeout, BlockingIOError):
                    pass
                s.settimeout(15)
        if not cut:
            s.sendall(b"0\r\n\r\n")
        s.settimeout(15)
        answer = b""
        while True:
            try:
                part = s.recv(65536)
            except OSError:
                break
            if not part:
                break
            answer += part
    finally:
        s.close()
    return answer, cut, sent


def test_a_chunked_body_is_cut_off_at_the_route_limit(model):
    with bound_push() as (_push, port), running_daemon(model, port) as (d, _ctx):
        answer, cut, sent = _send_chunked(d.rest_port, "/api/login")
        assert answer.startswith(b"HTTP/1.0 413"), answer[:300]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "PayloadTooLarge"
        assert cut and sent < 16 << 20


def test_without_credentials_a_large_upload_is_not_read(model):
    with bound_push() as (_push, port), running_daemon(model, port, token=TOKEN) as (d, _ctx):
        answer, cut, sent = _send_chunked(d.rest_port, "/api/models?name=m")      # the route allows 1 GiB
        assert answer.startswith(b"HTTP/1.0 401"), answer[:300]
        assert cut and sent < 16 << 20                  # refused on its credentials, its body left unread
        ok, _, _ = _send_chunked(d.rest_port, "/config", b"Authorization: Bearer " + TOKEN.encode() + b"\r\n",
                                 most=8192)
        assert ok.startswith(b"HTTP/1.0 200") and b'"config"' in ok   # with them, it is read (blank: no change)


def test_a_huge_declared_body_trickled_is_dropped_soon_after_the_grace(model):
    """1 GiB declared (the model upload's limit), one byte a second: at the minimum rate it is cut
    off a few seconds after the grace, not after its declared size at that rate (an hour)."""
    from vi_stream.web.server import BODY_GRACE
    with bound_push() as (_push, port), running_daemon(model, port) as (d, _ctx):
        s = connect(d.rest_port, "127.0.0.1", timeout=5)
        start = time.monotonic()
        answer = b""
        try:
            s.sendall(b"POST /api/models?name=m HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-"
                      b"stream\r\nContent-Length: 1073741824\r\n\r\n")
            while time.monotonic() - start < BODY_GRACE + 20:
                s.settimeout(1.0)
                try:
                    part = s.recv(65536)
                    answer += part
                    if not part or answer:
                        break
                except socket.timeout:
                    pass
                try:
                    s.sendall(b"x")
                except OSError:
                    break
        finally:
            s.close()
        took = time.monotonic() - start
        assert took < BODY_GRACE + 5, (took, answer[:200])
        assert answer.startswith(b"HTTP/1.0 408"), answer[:300]


# ---------------------------------------------------------------------- what a timed-out client leaves in the log
def test_a_client_timing_out_leaves_no_traceback_on_stderr(model_path):
    p = subprocess.Popen([VI_STREAM, "run", "tcp://127.0.0.1:9", "HTTP", "--model", model_path, "--rest-port", "0",
                          "--output-port", "0", "--store", "off", "--log-level", "DEBUG"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(p.stderr.readline, "")), daemon=True).start()
    try:
        port = int(wait_for(lambda: p.poll() is None and next(
            (m.group(1) for m in (re.search(r"ready: REST http://127.0.0.1:(\d+)", x) for x in list(lines)) if m),
            None), timeout=120, interval=0.1))
        # three clients at once (within an address's cap): half a request each, then silence, until dropped
        clients = [connect(port, "127.0.0.1", timeout=60) for _ in range(3)]
        for s in clients:
            s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for s in clients:
            while s.recv(4096):
                pass
            s.close()
        assert requests.get(f"http://127.0.0.1:{port}/status", timeout=10).status_code == 200
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(60)
    err = "".join(lines)
    assert "Traceback" not in err and "Exception occurred" not in err, err[-3000:]
    timed_out = [x for x in lines if "timed out" in x or "deadline" in x]
    assert len(timed_out) >= 3 and all(x.startswith("<7>") or "DEBUG" in x for x in timed_out), timed_out
