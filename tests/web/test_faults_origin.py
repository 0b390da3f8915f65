"""Drive-by control (issue 25, finding 4): what a page from another origin, a DNS-rebinding page
or a token guesser can do to a daemon, over real HTTP and in Debian's chromium.

Before the fix a page on another 127.0.0.1 port stopped the daemon and set its threshold to
4242 with ``fetch(..., {mode: "no-cors"})``: bodies were parsed as JSON whatever their
Content-Type, and neither Origin nor Host was checked.
"""
from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import re
import subprocess
import sys
import threading

import pytest
import requests

from vi_stream.errors import ConfigError
from vi_stream.service import config as config_mod

from ..helpers.daemon import bound_push, running_daemon, wait_for

VI_STREAM = os.path.join(os.path.dirname(sys.executable), "vi_stream")
TOKEN = "operator-token-0123456789"          # long enough: at least 16 characters
NOT_HERE = "203.0.113.7"                     # TEST-NET-3: never an address of this machine


@pytest.fixture(scope="module")
def daemon(model):
    with bound_push() as (_push, port), running_daemon(model, port) as (d, _ctx):
        yield d


def raw(port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"",
        source: str = "127.0.0.1") -> tuple[int, dict[str, str], dict]:
    """One request with exactly these headers (Host too: as a DNS-rebinding page's browser sends it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        headers = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        for k, v in headers.items():
            if v is not None:
                conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        try:
            doc = json.loads(data)
        except ValueError:
            doc = {"raw": data.decode("latin-1")[:500]}
        return r.status, {k.lower(): v for k, v in r.getheaders()}, doc
    finally:
        conn.close()


def chunked(port: int, path: str, ctype: str | None, body: bytes) -> tuple[int, dict]:
    """POST ``body`` with Transfer-Encoding: chunked (no Content-Length); (status, JSON answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        if ctype is not None:
            conn.putheader("Content-Type", ctype)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def threshold(d) -> float | None:
    return raw(d.rest_port, "GET", "/config")[2]["config"]["threshold"]


def refused(d) -> dict:
    return raw(d.rest_port, "GET", "/statistics")[2]["statistics"]["rest_refused"]


# ---------------------------------------------------------------------- the attack in a real browser
ATTACK = """<!doctype html><html><body>
<iframe name="sink" id="sink"></iframe>
<form id="form" method="POST" action="{target}/config" enctype="text/plain" target="sink">
  <input name='{{"threshold": 4242, "x": "' value='"}}'></form>
<script>
(async () => {{
  const target = "{target}";
  const out = [];
  for (const [path, body] of [["/config", '{{"threshold": 4242}}'], ["/stop", undefined], ["/roi", "[0, 16, 0, 16]"]]) {{
    try {{ await fetch(target + path, {{method: "POST", mode: "no-cors", body}}); out.push("sent"); }}
    catch (e) {{ out.push("error " + e); }}
  }}
  try {{   // a CORS request with a JSON body: the preflight must not let it through either
    await fetch(target + "/config", {{method: "POST", headers: {{"Content-Type": "application/json"}},
                                     body: '{{"threshold": 4243}}'}});
    out.push("cors sent");
  }} catch (e) {{ out.push("cors refused"); }}
  await new Promise((done) => {{ document.getElementById("sink").onload = done; document.getElementById("form").submit(); }});
  out.push("form sent");
  document.title = "done " + out.join(", ");
}})();
</script></body></html>"""


@contextlib.contextmanager
def attacker_site(target: str):
    """Another origin: a second HTTP server on another 127.0.0.1 port serving the attacking page."""
    page = ATTACK.format(target=target).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_from_another_origin_cannot_stop_the_daemon_or_change_its_threshold(daemon, browser):
    """Before: the no-cors fetches stopped the daemon and set the threshold to 4242."""
    target = f"http://127.0.0.1:{daemon.rest_port}"
    assert requests.post(target + "/start", timeout=5).ok          # a script on this machine: no Origin
    assert daemon.status() == "processing"
    before, roi, seen = threshold(daemon), daemon.get_roi(), refused(daemon)
    with attacker_site(target) as url:
        context = browser.new_context()
        try:
            pg = context.new_page()
            pg.goto(url)
            pg.wait_for_function("document.title.startsWith('done')", timeout=30_000)
            title = pg.title()
        finally:
            context.close()
    assert "cors refused" in title and "form sent" in title, title
    assert daemon.status() == "processing", title
    assert threshold(daemon) == before and daemon.get_roi() == roi
    after = refused(daemon)
    # every request reached the daemon and was refused for its origin (none for a Host: it is ours)
    assert after["origin"] - seen["origin"] >= 4, (seen, after)
    assert after["host"] == seen["host"]
    assert requests.post(target + "/stop", timeout=5).ok


# ---------------------------------------------------------------------- raw HTTP: Host, Origin, Content-Type
def test_a_foreign_host_header_is_refused_on_every_route_as_dns_rebinding_sends_it(daemon):
    """A rebinding page's requests are same-origin to the browser and carry the attacker's name as Host."""
    port = daemon.rest_port
    evil = f"rebind.attacker.example:{port}"
    status, _, doc = raw(port, "GET", "/config", {"Host": evil})
    assert status == 421 and "config" not in doc, doc
    assert doc["state"] == "error" and doc["error"] == "UnknownHostError"
    assert "rebind.attacker.example" in doc["message"] and "--rest-allowed-hosts" in doc["message"]
    for path in ("/statistics", "/api/modules", "/api/events", "/", "/openapi.json"):
        assert raw(port, "GET", path, {"Host": evil})[0] == 421, path
    assert daemon.status() == "stopped"
    status, _, doc = raw(port, "POST", "/start", {"Host": evil, "Origin": f"http://{evil}"})
    assert status == 421 and daemon.status() == "stopped"
    status, _, doc = raw(port, "POST", "/config", {"Host": evil, "Origin": f"http://{evil}",
                                                   "Content-Type": "application/json"}, b'{"threshold": 4242}')
    assert status == 421 and threshold(daemon) is None
    # the daemon's own names, on any port (an ssh tunnel's local port), are fine
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost:8080", "127.0.0.1"):
        assert raw(port, "GET", "/status", {"Host": host})[0] == 200, host


def test_a_foreign_origin_or_a_cross_site_fetch_cannot_change_anything(daemon):
    port = daemon.rest_port
    for headers in ({"Origin": "http://127.0.0.1:1"}, {"Origin": "null"}, {"Origin": "http://evil.example"},
                    {"Origin": f"http://localhost:{port}"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}):
        status, _, doc = raw(port, "POST", "/start", headers)
        assert status == 403 and doc["error"] == "CrossSiteError" and doc["state"] == "error", (headers, doc)
        assert daemon.status() == "stopped"
    # reads stay open: the browser keeps a foreign page from reading the answer
    assert raw(port, "GET", "/status", {"Origin": "http://evil.example"})[0] == 200
    # the daemon's own page (same origin), and scripts (no Origin) may
    assert raw(port, "POST", "/start", {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"})[0] == 200
    assert raw(port, "POST", "/stop", {})[0] == 200
    assert daemon.status() == "stopped"


def test_a_json_route_refuses_a_body_that_is_not_declared_json(daemon):
    port = daemon.rest_port
    for ctype in (None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, _, doc = raw(port, "POST", "/config", {"Content-Type": ctype}, b'{"threshold": 4242}')
        assert status == 415, (ctype, doc)
        assert doc["state"] == "error" and doc["error"] == "MediaTypeError" and "application/json" in doc["message"]
    # the same body sent chunked (no Content-Length) is refused as well
    for ctype in ("text/plain", None):
        status, doc = chunked(port, "/config", ctype, b'{"threshold": 4242}')
        assert status == 415 and doc["error"] == "MediaTypeError", (ctype, doc)
    assert threshold(daemon) is None
    # a form's empty body to a route that takes none is refused too
    assert raw(port, "POST", "/start", {"Content-Type": "application/x-www-form-urlencoded"})[0] == 415
    assert daemon.status() == "stopped"
    status, _, doc = raw(port, "POST", "/config", {"Content-Type": "application/json; charset=utf-8"},
                         b'{"threshold": 4242}')
    assert status == 200 and doc["config"]["threshold"] == 4242
    assert raw(port, "POST", "/config", {"Content-Type": "Application/JSON"}, b'{"threshold": null}')[0] == 200
    # routes that take other bodies keep their own types
    status, _, doc = raw(port, "POST", "/api/modules/NOPE/left/tiles/0/mask", {"Content-Type": "image/png"}, b"x")
    assert status not in (415, 403, 421), doc
    status, _, doc = raw(port, "POST", "/api/models?name=m", {"Content-Type": "application/octet-stream"}, b"x")
    assert status == 400 and doc["error"] != "MediaTypeError", doc


# ---------------------------------------------------------------------- guessing the token
def test_wrong_tokens_are_rate_limited_per_client_address_and_the_right_one_never(model):
    from vi_stream.web.guard import MAX_FAILURES
    with bound_push() as (_push, port), running_daemon(model, port, token=TOKEN) as (d, _ctx):
        p = d.rest_port
        login = {"Content-Type": "application/json"}
        for _ in range(MAX_FAILURES):
            assert raw(p, "POST", "/api/login", login, b'{"token": "guess-guess-guess-1"}')[0] == 401
        status, headers, doc = raw(p, "POST", "/api/login", login, b'{"token": "guess-guess-guess-2"}')
        assert status == 429 and doc["error"] == "TooManyAttempts", doc
        assert 1 <= int(headers["retry-after"]) <= 600
        # a wrong guess beyond the limit is refused, whatever X-Forwarded-For says ...
        status, _, doc = raw(p, "POST", "/api/login", {**login, "X-Forwarded-For": "10.9.8.7"},
                             b'{"token": "guess-guess-guess-3"}')
        assert status == 429 and doc["error"] == "TooManyAttempts", doc
        assert raw(p, "POST", "/start", {"Authorization": "Bearer wrong-wrong-wrong-wrong"})[0] == 429
        # ... but the right token is never locked out, though the guessing from its address goes on
        right = json.dumps({"token": TOKEN}).encode()
        for i in range(3):
            status, _, doc = raw(p, "POST", "/api/login", login, right)
            assert status == 200 and doc["logged_in"], doc
            assert raw(p, "POST", "/start" if i % 2 == 0 else "/stop", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
            assert raw(p, "POST", "/api/login", login, b'{"token": "guess-guess-guess-4"}')[0] == 429
        assert raw(p, "GET", "/status")[0] == 200                    # reading needs no token: still open
        # another client address is not limited by this one's guesses
        assert raw(p, "POST", "/api/login", login, b'{"token": "guess-guess-guess-5"}', source="127.0.0.2")[0] == 401
        # wrong bearer tokens count as failures as well
        for _ in range(MAX_FAILURES):
            assert raw(p, "POST", "/start", {"Authorization": "Bearer wrong-wrong-wrong-wrong"},
                       source="127.0.0.3")[0] == 401
        assert raw(p, "POST", "/start", {"Authorization": "Bearer wrong-wrong-wrong-wrong"},
                   source="127.0.0.3")[0] == 429
        assert raw(p, "POST", "/start", {"Authorization": f"Bearer {TOKEN}"}, source="127.0.0.3")[0] == 200
        assert d.status() == "processing"
        assert refused(d)["login_rate"] >= 4


def test_the_failure_book_is_bounded_and_forgets_after_its_window():
    from vi_stream.web.guard import FailureLimiter
    now = [0.0]
    book = FailureLimiter(max_failures=3, window_s=60.0, max_clients=100, clock=lambda: now[0])
    for i in range(10_000):
        book.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(book) <= 100
    for _ in range(3):
        book.failed("192.168.1.1")
    assert book.retry_after("192.168.1.1") == 60
    now[0] = 30.0
    assert book.retry_after("192.168.1.1") == 30
    now[0] = 60.5
    assert book.retry_after("192.168.1.1") is None
    assert book.retry_after("10.9.9.9") is None


# ---------------------------------------------------------------------- start-up: tokens and exposure
def test_a_short_token_is_refused_at_start_with_one_line():
    """Before: `--token short` started a daemon guarded by five characters."""
    run = [VI_STREAM, "run", "tcp://127.0.0.1:9", "CAM", "--model", "nonexistent.npz", "--store", "off"]
    for args, env in ((["--token", "short"], {}), (["--token", ""], {}), ([], {"VI_STREAM_TOKEN": "0123456789"})):
        p = subprocess.run(run + args, capture_output=True, text=True, timeout=120, env={**os.environ, **env})
        assert p.returncode == 2, (args, p.returncode, p.stderr[-2000:])
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vi_stream: error: token"), p.stderr[-2000:]
        assert "16" in lines[0] and "short" not in lines[0].split("token", 1)[1].replace("too short", "")


def _run(model_path: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([VI_STREAM, "run", "tcp://127.0.0.1:9", "ORG", "--model", model_path, "--rest-port", "0",
                             "--output-port", "0", "--store", "off", "--log-level", "INFO", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _drain(proc: subprocess.Popen, lines: list[str]) -> None:
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()


def test_a_non_loopback_rest_host_without_a_token_warns_at_start(model_path):
    """Bound to an address of no interface here (so nothing is exposed): the warning comes first."""
    proc, lines = _run(model_path, "--rest-host", NOT_HERE), []
    _drain(proc, lines)
    try:
        wait_for(lambda: any("without a token" in ln for ln in lines) or proc.poll() is not None, timeout=120)
        wait_for(lambda: any("without a token" in ln for ln in lines), timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    warning = next(ln for ln in lines if "without a token" in ln)
    assert warning.startswith("<4>") and NOT_HERE in warning   # the journal's priority 4: warning
    assert "--token" in warning, "".join(lines)[-3000:]


def test_the_allowed_host_names_come_from_the_run_option_and_loopback_starts_quietly(model_path, tmp_path):
    proc, lines = _run(model_path, "--rest-allowed-hosts", "vi.example.org", "pc-ops-1"), []
    _drain(proc, lines)
    try:
        m = wait_for(lambda: next((re.search(r"ready: REST http://127.0.0.1:(\d+)", ln) for ln in list(lines)
                                   if "ready: REST" in ln), None) or (proc.poll() is not None and "exited"),
                     timeout=120)
        assert m != "exited", "".join(lines)[-3000:]
        port = int(m.group(1))
        for host in (f"vi.example.org:{port}", "pc-ops-1", f"PC-OPS-1:{port}"):
            assert raw(port, "GET", "/status", {"Host": host})[0] == 200, host
        status, _, doc = raw(port, "GET", "/status", {"Host": "evil.example.org"})
        assert status == 421 and "--rest-allowed-hosts" in doc["message"]
        assert raw(port, "GET", "/config")[2]["config"]["rest_allowed_hosts"] == ["vi.example.org", "pc-ops-1"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert not any("without a token" in ln for ln in lines), "".join(lines)[-3000:]
    # the YAML file's key, and names that cannot be a host refused with one line
    f = tmp_path / "vi.yaml"
    f.write_text("input: tcp://127.0.0.1:9\nrest_allowed_hosts: [vi.example.org, 10.1.2.3]\n")
    assert config_mod.build(str(f), env={}).rest_allowed_hosts == ("vi.example.org", "10.1.2.3")
    for bad in ("http://vi.example.org", "a b", "*", "vi.example.org:80/x"):
        f.write_text(f"input: tcp://127.0.0.1:9\nrest_allowed_hosts: [{json.dumps(bad)}]\n")
        with pytest.raises(ConfigError, match="rest_allowed_hosts"):
            config_mod.build(str(f), env={})
