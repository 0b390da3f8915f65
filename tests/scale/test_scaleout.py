"""Several workers on one camera's stream (issue 19): the merger's order, gaps and late frames; worker
identity; the store with concurrent writers; a worker killed mid-stream."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
import zmq

from vi_stream.evaluation.simulate import Simulator
from vi_stream.io import bsread_codec as codec
from vi_stream.scale.merge import Merger, make_app
from vi_stream.service import config as config_mod
from vi_stream.store.local import LocalStore
from vi_stream.store.protocols import HistoryQuery
from vi_stream.web.server import serve

from ..helpers.daemon import wait_for
from ..helpers.store import make_record


def _msg(pulse: int) -> list[bytes]:
    m = codec.Message(pulse, 1_700_000_000 + pulse, 0)
    m.channels["CAM:FPICTURE"] = codec.channel_from_value("CAM:FPICTURE", np.full((4, 4), pulse % 250, np.uint8))
    return codec.Encoder().encode(m)


class _Workers:
    """Two PUSH sockets standing in for two workers' outputs, and a PULL on the merger's output."""

    def __init__(self, ctx: zmq.Context, max_wait: float):
        self.push, urls = [], []
        for _ in range(2):
            s = ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 0)
            urls.append(f"tcp://127.0.0.1:{s.bind_to_random_port('tcp://127.0.0.1')}")
            self.push.append(s)
        self.merger = Merger(urls, max_wait=max_wait, buffer=8, context=ctx)
        port = self.merger.start()
        self.out = ctx.socket(zmq.PULL)
        self.out.setsockopt(zmq.LINGER, 0)
        self.out.setsockopt(zmq.RCVTIMEO, 5000)
        self.out.connect(f"tcp://127.0.0.1:{port}")

    def pulses(self, n: int) -> list[int]:
        return [codec.main_header(self.out.recv_multipart())[1] for _ in range(n)]


@pytest.fixture
def workers():
    ctx = zmq.Context()
    w = _Workers(ctx, max_wait=0.5)
    yield w
    w.merger.close()
    for s in w.push + [w.out]:
        s.close(0)
    ctx.destroy(linger=0)


def test_the_merger_puts_two_workers_outputs_back_in_pulse_order(workers):
    for p in (1, 3, 5):
        workers.push[0].send_multipart(_msg(p))
    for p in (4, 2, 6):
        workers.push[1].send_multipart(_msg(p))
    assert workers.pulses(6) == [1, 2, 3, 4, 5, 6]
    st = workers.merger.statistics()
    assert (st["received"], st["sent"], st["gaps"], st["late"]) == (6, 6, 0, 0)
    assert all(v["received"] == 3 for v in st["inputs"].values())


def test_a_missing_pulse_waits_at_most_max_wait_then_counts_a_gap_and_late_and_twice_are_counted(workers):
    workers.push[0].send_multipart(_msg(10))
    assert workers.pulses(1) == [10]                   # the first pulse waits max_wait: nothing came before
    started = time.monotonic()
    for p in (12, 13):
        workers.push[0].send_multipart(_msg(p))        # 11 is on a dead worker
    assert workers.pulses(2) == [12, 13]
    assert 0.4 <= time.monotonic() - started < 3.0     # waited for 11, then went on
    workers.push[1].send_multipart(_msg(11))           # 11 after all: forwarded at once, counted late
    workers.push[1].send_multipart(_msg(13))           # and 13 twice: dropped
    assert workers.pulses(1) == [11]
    wait_for(lambda: workers.merger.statistics()["duplicates"] == 1, timeout=5)
    st = workers.merger.statistics()
    assert (st["gaps"], st["late"], st["sent"]) == (1, 1, 4)
    assert st["added_latency_ms"]["p99"] is not None


def test_the_merger_serves_status_and_statistics(workers):
    server, _ = serve(make_app(workers.merger), "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert requests.get(base + "/status", timeout=5).json()["state"] == "ok"
        assert "gaps" in requests.get(base + "/statistics", timeout=5).json()["statistics"]
    finally:
        server.shutdown()
        server.server_close()


def test_the_merger_answers_a_documented_state_and_json_errors(workers):
    """It answered status "merging" (not one of Control's STATES) and an HTML page for an unknown route."""
    from vi_stream.processing.control import STATES
    server, _ = serve(make_app(workers.merger), "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert requests.get(base + "/status", timeout=5).json()["status"] == "processing" in STATES
        for method, path, code, name in (("GET", "/nope", 404, "NotFoundError"),
                                         ("POST", "/status", 405, "MethodNotAllowed")):
            r = requests.request(method, base + path, timeout=5)
            assert r.status_code == code and r.headers["Content-Type"] == "application/json"
            assert (r.json()["state"], r.json()["error"], r.json()["status"]) == ("error", name, "processing")
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------- worker identity
def test_two_workers_of_one_camera_have_their_own_spool_and_name():
    env = {"VI_STREAM_STATE_DIR": "/var/lib/vi_stream/CAM1"}
    a = config_mod.build(None, env=env, input="tcp://cam:9000", prefix="CAM1", worker="w1")
    b = config_mod.build(None, env=env, input="tcp://cam:9000", prefix="CAM1", worker="w2")
    assert a.spool != b.spool and a.spool.endswith("CAM1.w1")
    assert config_mod.build(None, env=env, input="tcp://cam:9000", prefix="CAM1").spool.endswith("spool/CAM1")
    with pytest.raises(Exception, match="worker"):
        config_mod.build(None, env=env, input="tcp://cam:9000", prefix="CAM1", worker="w 1")


# ---------------------------------------------------------------------- the store with concurrent writers
def _at(r, second: int):
    r.side["acquired_at"] = f"2026-11-29T10:00:{second:02d}.000+00:00"
    return r


def test_an_older_frame_finishing_later_never_replaces_a_newer_one(store):
    newer, older = _at(make_record(20, "M-1", "left"), 20), _at(make_record(10, "M-1", "left"), 10)
    store.write([newer])
    store.write([older])                                # another worker was slower
    assert store.get_module("M-1")["left"]["result_id"] == newer.id
    assert store.count_results("M-1") == 2              # both results are kept
    rows, _ = store.find_sides(HistoryQuery(module="M-1"))
    assert rows[0]["result_id"] == newer.id
    newest = _at(make_record(30, "M-1", "left"), 30)
    store.write([newest])
    assert store.get_module("M-1")["left"]["result_id"] == newest.id


def _second_handle(store, tmp_path):
    """Another connection to the same store, as a second worker process has."""
    if isinstance(store, LocalStore):
        return LocalStore(store.folder).start()
    from vi_stream.store.mongo import MongoStore
    return MongoStore(client=store.client, database=store.db.name).start()


def test_left_and_right_written_by_two_workers_at_once_both_survive(store, tmp_path):
    other = _second_handle(store, tmp_path)
    try:
        for round_ in range(8):
            name = f"M-{round_}"
            left, right = _at(make_record(2 * round_, name, "left"), 1), _at(make_record(2 * round_ + 1, name, "right"), 1)
            go = threading.Barrier(2)

            def write(s, r):
                go.wait()
                s.write([r])
            ts = [threading.Thread(target=write, args=(store, left)), threading.Thread(target=write, args=(other, right))]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
            module = store.get_module(name)
            assert module["left"]["result_id"] == left.id and module["right"]["result_id"] == right.id
    finally:
        if isinstance(other, LocalStore):
            other.close()


# ---------------------------------------------------------------------- two workers and a merger, one killed
def _run_worker(model_path: str, cam_port: int, store: str, worker: str, state: str) -> subprocess.Popen:
    env = dict(os.environ, VI_STREAM_STATE_DIR=state)
    return subprocess.Popen([sys.executable, "-m", "vi_stream.cli", "run", f"tcp://127.0.0.1:{cam_port}", "CAM",
                             "--model", model_path, "--store", store, "--worker", worker, "--output-port", "0",
                             "--rest-port", "0", "--auto-start", "--no-store-tiles", "--log-level", "INFO"],
                            env=env, stderr=subprocess.PIPE, text=True)


def _ports(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, int]:
    """(REST, output) ports from the worker's "ready" line."""
    import re
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stderr.readline()
        m = re.search(r"ready: REST http://127.0.0.1:(\d+), output tcp://127.0.0.1:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()   # keep draining
            return int(m.group(1)), int(m.group(2))
        assert proc.poll() is None, f"worker exited: {line}"
    raise AssertionError("no ready line")


def test_two_workers_and_a_merger_deliver_every_pulse_once_in_order_and_a_killed_worker_is_counted(
        model_path, tmp_path):
    # the camera sends faster than two workers score, so each holds frames (queue, socket buffers)
    sim = Simulator(0, "CAM", fps=30.0, shape=(512, 512), pool=4, defect_rate=0.3, seed=3)
    cam = sim.start()
    store = str(tmp_path / "store")
    procs = [_run_worker(model_path, cam, store, w, str(tmp_path / w)) for w in ("w1", "w2")]
    ctx = zmq.Context()
    merger = None
    try:
        ports = [_ports(p) for p in procs]
        # the two workers' lag behind each other grows with their queues; on a loaded machine it passed 1.5 s
        # (10 came after 11 and went out late): the wait is a setting, ordering within it is what is tested
        merger = Merger([f"tcp://127.0.0.1:{out}" for _rest, out in ports], max_wait=6.0, context=ctx)
        out = ctx.socket(zmq.PULL)
        out.setsockopt(zmq.LINGER, 0)
        out.setsockopt(zmq.RCVTIMEO, 200)
        out.connect(f"tcp://127.0.0.1:{merger.start()}")
        sim.run_in_thread(40)
        got: list[int] = []
        end, last = time.monotonic() + 120, None
        killed = False
        while time.monotonic() < end:
            try:
                got.append(codec.main_header(out.recv_multipart())[1])
                last = time.monotonic()
            except zmq.Again:                             # (the first frame may take long on a loaded machine)
                if last is not None and not sim._thread.is_alive() and time.monotonic() - last > 4 and \
                        not merger.statistics()["buffered"]:
                    break                                 # the camera is done and the merger has given all
            if not killed and len(got) >= 12:
                procs[1].send_signal(signal.SIGKILL)      # a worker dies with frames in hand
                killed = True
        st = merger.statistics()
        assert got, st
        assert got == sorted(got) and len(got) == len(set(got)), (got, st)      # in order, once each
        assert st["late"] == 0 and st["duplicates"] == 0
        missing = sorted(set(range(got[-1] + 1)) - set(got))
        assert len(missing) == st["gaps"] <= 20, (missing, st)                    # lost: only what w2 held
        stats = requests.get(f"http://127.0.0.1:{ports[0][0]}/statistics", timeout=10).json()["statistics"]
        assert stats["worker"] == "w1"
        assert killed and got[-1] >= 30
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(60) == 0
        with LocalStore(store) as s:                      # every result the surviving worker processed is stored
            by_w1 = s._db.execute("SELECT COUNT(*) FROM results WHERE json_extract(doc, '$.processed_by') = ?",
                                  ("vi_stream:CAM/w1",)).fetchone()[0]
            assert by_w1 == stats["frames_processed"]
            assert s.count_results() >= by_w1 > 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(30)
        if merger is not None:
            merger.close()
        sim.close()
        ctx.destroy(linger=0)
