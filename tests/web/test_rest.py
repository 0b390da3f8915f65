"""REST control plane and the Python client, over real sockets."""
import socket
import threading
import time

import pytest
import requests

from vi_stream import Client
from vi_stream.errors import (
    AuthError,
    ConfigError,
    InputError,
    NotFoundError,
    Overloaded,
    ServiceError,
)
from vi_stream.evaluation import synthetic
from vi_stream.service import config as config_mod

from ..helpers import SMALL_SHAPE
from ..helpers.daemon import bound_push, good_frame, running_daemon, wait_for


@pytest.fixture(scope="module")
def daemon(model):
    with bound_push() as (push, port), running_daemon(model, port) as (d, ctx):
        d.push = push
        yield d


@pytest.fixture
def client(daemon):
    daemon.stop_processing()
    daemon.set_config({"roi": None, "threshold": None})
    return Client(f"http://127.0.0.1:{daemon.rest_port}", timeout=10)


def url(daemon, path):
    return f"http://127.0.0.1:{daemon.rest_port}{path}"


def test_start_stop_status_envelope(client, daemon):
    assert client.get_status() == "stopped"
    assert client.start() == "processing"
    assert client.start() == "processing"  # idempotent
    r = requests.get(url(daemon, "/status"), timeout=5).json()
    # the envelope, plus the store's state when the daemon has one (this one runs without: None)
    assert r == {"state": "ok", "status": "processing", "store": daemon.store_state(), "alarms": []}
    assert client.stop() == "stopped"
    assert client.stop() == "stopped"


def test_roi_roundtrip_and_validation(client, daemon):
    assert client.get_roi() == []
    assert client.set_roi([1, 100, 2, 50]) == [1, 100, 2, 50]
    assert client.get_roi() == [1, 100, 2, 50]
    for bad, words in [([-1, 10, 0, 10], "offsets"), ([0, 0, 0, 10], "sizes"), ([1, 2, 3], "offset_x"),
                       (["a", 1, 2, 3], "integers")]:
        r = requests.post(url(daemon, "/roi"), json={"roi": bad}, timeout=5)
        assert r.status_code == 400 and words in r.json()["message"] and r.json()["state"] == "error"
    r = requests.post(url(daemon, "/roi"), data=b"{oops", headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 400 and "JSON" in r.json()["message"]
    assert client.get_roi() == [1, 100, 2, 50]  # nothing changed by the bad requests
    assert client.set_roi(None) == []


def test_roi_outside_a_seen_image_is_refused(client, daemon):
    client.start()
    daemon.push.send_multipart(good_frame(1, synthetic.module_image(SMALL_SHAPE, seed=9500).image))
    wait_for(lambda: daemon.processor.last_shape is not None)
    with pytest.raises(ConfigError, match="outside the 512x512 image"):
        client.set_roi([500, 100, 0, 10])


def test_statistics_fields(client):
    s = client.get_statistics()
    for key in ("start_time", "frames_received", "frames_processed", "frames_rejected", "output_dropped",
                "last_pulse_id", "last_frame_time", "frames_per_s", "megapixels_per_s", "latency_ms", "queues",
                "model_id"):
        assert key in s
    assert set(s["latency_ms"]) >= {"p50", "p99"}


def test_config_get_set_and_errors(client, daemon):
    cfg = client.get_config()
    assert cfg["prefix"] == "CAM" and cfg["threshold"] is None
    assert client.set_config(threshold=12.5)["threshold"] == 12.5
    assert daemon.processor.settings.threshold == 12.5
    with pytest.raises(ConfigError, match="positive"):
        client.set_config(threshold=-3)
    with pytest.raises(ConfigError, match="unknown option"):
        client.set_config(bogus=1)
    with pytest.raises(ConfigError, match="cannot change at run time"):
        client.set_config(rest_port=1234)
    r = requests.post(url(daemon, "/config"), json=[1, 2], timeout=5)
    assert r.status_code == 400
    assert client.get_config()["threshold"] == 12.5
    assert client.set_config(threshold=None)["threshold"] is None


def test_model_info_and_reload_failure_keeps_the_running_model(client, daemon, tmp_path, model_path):
    info = client.get_model()
    assert info["model_id"] == daemon.model.model_id and info["backbone"] == "efficientnet-lite0"
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    with pytest.raises(ConfigError, match="still running"):
        client.reload_model(str(bad))
    assert client.get_model()["model_id"] == info["model_id"]
    assert client.reload_model(model_path)["path"] == model_path


def test_unknown_route_and_method_are_json_errors(daemon):
    r = requests.get(url(daemon, "/nope"), timeout=5)
    assert r.status_code == 404 and r.json()["state"] == "error"
    r = requests.get(url(daemon, "/start"), timeout=5)
    assert r.status_code == 405 and r.json()["state"] == "error"


def test_every_error_names_its_class_so_the_client_raises_it(daemon):
    """A 405 came without ``error`` (the client raised a bare ServiceError for the caller's mistake)."""
    from vi_stream.errors import MethodNotAllowed
    for method, path, code, name in (("GET", "/start", 405, "MethodNotAllowed"), ("DELETE", "/status", 405,
                                     "MethodNotAllowed"), ("GET", "/nope", 404, "NotFoundError")):
        r = requests.request(method, url(daemon, path), timeout=5)
        body = r.json()
        assert (r.status_code, body["error"], body["state"], body["status"]) == (code, name, "error", "stopped")
        assert r.headers["Content-Type"] == "application/json" and body["message"]
    with pytest.raises(MethodNotAllowed) as err:
        Client(f"http://127.0.0.1:{daemon.rest_port}", timeout=5)._call("GET", "/start")
    assert err.value.status == 405 and not isinstance(err.value, ServiceError)


def test_token_protects_mutating_routes(model):
    with bound_push() as (push, port), running_daemon(model, port, token="s3cret-s3cret-s3cret") as (d, _ctx):
        anon = Client(f"http://127.0.0.1:{d.rest_port}", timeout=5)
        assert anon.get_status() == "stopped"  # reads are open
        with pytest.raises(AuthError) as err:      # the caller's to mend: not a ServiceError (5xx)
            anon.start()
        assert err.value.status == 401 and not isinstance(err.value, ServiceError) and d.processor.state == "stopped"
        assert Client(f"http://127.0.0.1:{d.rest_port}", timeout=5, token="s3cret-s3cret-s3cret").start() == "processing"


def test_a_slow_client_does_not_block_the_control_plane(daemon):
    # A client that opens a connection and sends half a request, then stalls.
    s = socket.create_connection(("127.0.0.1", daemon.rest_port))
    s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
    try:
        t = time.monotonic()
        assert Client(f"http://127.0.0.1:{daemon.rest_port}", timeout=5).get_status() in ("stopped", "processing")
        assert time.monotonic() - t < 5
    finally:
        s.close()


def test_client_honours_its_timeout():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    stop = threading.Event()

    def accept_and_hang():
        conn, _ = srv.accept()
        stop.wait(10)
        conn.close()

    threading.Thread(target=accept_and_hang, daemon=True).start()
    try:
        t = time.monotonic()
        with pytest.raises(ServiceError, match="no answer within 0.5 s"):
            Client(f"http://127.0.0.1:{srv.getsockname()[1]}", timeout=0.5).get_status()
        assert time.monotonic() - t < 3
    finally:
        stop.set()
        srv.close()


def test_client_maps_unreachable_server_to_service_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ServiceError, match="cannot reach"):
        Client(f"http://127.0.0.1:{port}", timeout=2).get_status()


def test_config_file_flags_and_env(tmp_path):
    f = tmp_path / "vi.yaml"
    f.write_text("prefix: FILECAM\nrest-port: 12000\nthreshold: 3.5\ninput: tcp://127.0.0.1:9999\n")
    cfg = config_mod.build(str(f), env={"VI_STREAM_TOKEN": "tok-tok-tok-tok-tok"}, rest_port=13000)
    assert (cfg.prefix, cfg.rest_port, cfg.threshold, cfg.token) == ("FILECAM", 13000, 3.5, "tok-tok-tok-tok-tok")
    f.write_text("bogus: 1\n")
    with pytest.raises(ConfigError, match="unknown option"):
        config_mod.build(str(f), env={})
    f.write_text("prefix: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config_mod.build(str(f), env={})
    with pytest.raises(ConfigError, match="input stream"):
        config_mod.build(None, env={})
    with pytest.raises(ConfigError, match="port"):
        config_mod.build(None, env={}, input="tcp://127.0.0.1:1", rest_port=70000)


JSON_ROUTES = ["/roi", "/config", "/model/reload", "/api/modules/M/left/tiles/0/verify"]


@pytest.mark.parametrize("route", JSON_ROUTES)
def test_deeply_nested_or_non_standard_json_is_a_400_on_every_json_route(daemon, route):
    for raw in (b"[" * 30_000 + b"]" * 30_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000,   # within the 64 KiB limit
                b'{"threshold": Infinity}', b'{"threshold": NaN}', b"\xff\xfe"):
        r = requests.post(url(daemon, route), data=raw, headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 400, (route, raw[:20], r.status_code)
        assert r.json()["error"] == "ConfigError" and "JSON" in r.json()["message"]


def test_config_changes_apply_all_or_nothing(client, daemon):
    before = client.get_config()
    r = requests.post(url(daemon, "/config"), data=b'{"roi": [0, 10, 0, 10], "threshold": 1e999}',
                      headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 400 and "threshold" in r.json()["message"]     # 1e999 parses as infinity
    assert client.get_config() == before
    for bad in ({"roi": [0, 10, 0, 10], "threshold": float("inf")}, {"roi": [0, 10, 0, 10], "threshold": -1},
                {"threshold": 5.0, "log_level": "LOUD"}, {"block": True, "roi": [-1, 2, 0, 2]},
                {"threshold": 5.0, "queue_size": 3}, {"threshold": 5.0, "bogus": 1}, {"threshold": True},
                {"block": "yes"}, {"roi": "all"}):
        with pytest.raises(ConfigError):
            client.set_config(**bad)
        assert client.get_config() == before, bad          # nothing of a refused change was applied
    assert client.set_config(threshold=5.0, roi=[0, 10, 0, 10], block=True)["threshold"] == 5.0
    assert client.get_roi() == [0, 10, 0, 10] and client.get_config()["block"] is True
    client.set_config(block=False, roi=None)


def test_errors_travel_by_class(daemon):
    c = Client(f"http://127.0.0.1:{daemon.rest_port}", timeout=5)
    with pytest.raises(NotFoundError):
        c.get_module("no-such-module")
    with pytest.raises(ConfigError):
        c.set_roi([-1, 1, 1, 1])
    with pytest.raises(InputError) as err:       # a bad mask upload is bad input, not a config error
        c.correct_mask("no-such-module", "middle", 0, b"not a png")
    assert not isinstance(err.value, ConfigError) and err.value.status == 400
    r = requests.get(url(daemon, "/api/modules/nothing"), timeout=5).json()
    assert r["error"] == "NotFoundError"


def test_every_changing_route_asks_for_credentials_without_saying_so(daemon):
    """The check is a plugin on every route that is not a read (login and logout aside), not a wrapper each
    route must remember: every POST of the app, asked without credentials, is 401 and changes nothing."""
    import re

    from vi_stream.web import app as rest
    from vi_stream.web import server
    app = rest.make_app(daemon, token="s3cret-s3cret-s3cret")
    srv, _ = server.serve(app, "127.0.0.1", 0)
    try:
        changing = [r for r in app.routes if r.method not in ("GET", "HEAD", "OPTIONS")]
        assert len(changing) >= 14
        for route in changing:
            path = re.sub(r"<\w+:int>", "0", re.sub(r"<(\w+)>", "x", route.rule))
            r = requests.post(f"http://127.0.0.1:{srv.server_port}{path}", json={}, timeout=5)
            if route.rule in ("/api/login", "/api/logout"):
                assert r.status_code != 401 or r.json()["message"] == "wrong token", route.rule
            else:
                assert (r.status_code, r.json()["error"]) == (401, "AuthError"), route.rule
        assert daemon.status() == "stopped"
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_flood_of_idle_connections_is_capped_and_the_control_plane_answers(model):
    from vi_stream.web import app as rest
    from vi_stream.web import server
    with bound_push() as (_push, port), running_daemon(model, port) as (d, _ctx):
        d.server.server_close()   # rebind a server with a small cap on the same app, for a bounded test
        d.server.shutdown()
        d.server, _ = server.serve(rest.make_app(d), "127.0.0.1", 0, max_connections=8)
        socks = []
        try:
            for _ in range(40):                                 # 5x the cap, all idle
                s = socket.create_connection(("127.0.0.1", d.server.server_port), timeout=5)
                socks.append(s)
            over = socks[-1].recv(4096)                         # refused at once, with a reason
            assert over.startswith(b"HTTP/1.0 503") and b"Overloaded" in over
            threads = threading.active_count()
            assert threads < 8 + 30                              # no thread per flooding connection
            for s in socks:
                s.close()
            socks = []
            c = Client(f"http://127.0.0.1:{d.server.server_port}", timeout=5)
            assert wait_for(lambda: _answers(c), timeout=15)
        finally:
            for s in socks:
                s.close()


def _answers(c: Client) -> bool:
    try:
        return c.get_status() in ("stopped", "processing")
    except Overloaded:
        return False


def test_an_idle_connection_is_dropped_after_the_timeout(daemon, monkeypatch):
    from vi_stream.web import server
    assert 0 < server._QuietHandler.head_timeout <= 30   # the production default: idle sockets do not live forever
    monkeypatch.setattr(server._QuietHandler, "head_timeout", 0.5)   # shortened to keep the test quick
    s = socket.create_connection(("127.0.0.1", daemon.rest_port), timeout=5)
    try:
        s.sendall(b"GET /status HTTP/1.1\r\n")     # half a request, then silence
        t = time.monotonic()
        assert s.recv(4096).startswith(b"HTTP/1.0 408")   # the server says why ...
        assert s.recv(4096) == b""                  # ... and hangs up
        assert time.monotonic() - t < 4
    finally:
        s.close()


def test_metrics_are_the_statistics_in_prometheus_format(client, daemon):
    from prometheus_client.parser import text_string_to_metric_families
    img = synthetic.module_image(SMALL_SHAPE, seed=9500).image
    client.start()
    for i in range(3):
        daemon.push.send_multipart(good_frame(100 + i, img))
    daemon.push.send_multipart([b"not a bsread header"])
    wait_for(lambda: (s := client.get_statistics())["output_sent"] + s["output_dropped"] >= 3
             and s["frames_rejected_total"] >= 1)
    client.stop()
    stats = client.get_statistics()
    r = requests.get(url(daemon, "/metrics"), timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(r.text) for s in fam.samples}
    for key in ("frames_received", "frames_processed", "frames_anomalous", "output_sent", "output_dropped",
                "input_errors"):
        assert samples[(f"vi_stream_{key}_total", ())] == stats[key], key
    for reason, n in stats["frames_rejected"].items():
        assert samples[("vi_stream_frames_rejected_total", (("reason", reason),))] == n
    assert samples[("vi_stream_state", (("state", "stopped"),))] == 1.0
    assert samples[("vi_stream_state", (("state", "processing"),))] == 0.0
    h = stats["latency_histogram"]
    assert h["count"] >= 3  # every result that reached the output stage (here dropped: nobody listens)
    assert samples[("vi_stream_latency_seconds_count", ())] == h["count"]
    assert samples[("vi_stream_latency_seconds_bucket", (("le", "+Inf"),))] == h["count"]
    counts = [samples[("vi_stream_latency_seconds_bucket", (("le", repr(float(le))),))] for le in h["le"]]
    assert counts == h["count_le"] and counts == sorted(counts)
