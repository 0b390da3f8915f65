"""``vi_stream merge`` at the edges (issue 25, findings 8, 10 and 12), driven as an operator runs it: the
installed command in a subprocess, workers' outputs and the merged stream over real ZMQ, /statistics over
HTTP, sd_notify over a unix datagram socket the test binds; the ordering rules in-process at the end.

Longer than 300 lines: the merger's edges (restarts, outliers, stale backlogs, bad input, systemd) share one
subprocess harness and one feeding helper; split, each half would copy them."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
import zmq

from vi_stream.io import bsread_codec as codec

from ..helpers import ROOT
from ..helpers.daemon import wait_for

VI_STREAM = os.path.join(os.path.dirname(sys.executable), "vi_stream")
BASE = 1_700_000_000
BOGUS = 10 ** 15


def _msg(pulse: int, sec: int | None = None) -> list[bytes]:
    """A worker's output message; its timestamp follows the pulse id (1 s per pulse) unless given."""
    m = codec.Message(pulse, BASE + pulse if sec is None else sec, 0)
    m.channels["CAM:FPICTURE"] = codec.channel_from_value("CAM:FPICTURE", np.full((4, 4), pulse % 250, np.uint8))
    return codec.Encoder().encode(m)


class MergeProc:
    """Two workers' PUSH outputs, ``vi_stream merge`` on them in a subprocess, and a reader of its stream."""

    def __init__(self, max_wait: float = 0.3, env: dict | None = None, argv0: list[str] | None = None):
        self.ctx = zmq.Context()
        self.push, urls = [], []
        for _ in range(2):
            s = self.ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 0)
            urls.append(f"tcp://127.0.0.1:{s.bind_to_random_port('tcp://127.0.0.1')}")
            self.push.append(s)
        cmd = (argv0 or [VI_STREAM]) + ["merge", *urls, "--output-port", "0", "--rest-port", "0",
                                        "--max-wait", str(max_wait)]
        self.proc = subprocess.Popen(cmd, env=dict(os.environ, **(env or {})), stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read_stderr, daemon=True).start()
        rest = wait_for(lambda: self._port(r"merge REST on http://127.0.0.1:(\d+)"), timeout=60)
        out = wait_for(lambda: self._port(r"merged output on tcp://127.0.0.1:(\d+)"), timeout=60)
        self.base = f"http://127.0.0.1:{rest}"
        self.got: list[int] = []
        self._stop = threading.Event()
        self._sub = self.ctx.socket(zmq.PULL)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.RCVTIMEO, 100)
        self._sub.connect(f"tcp://127.0.0.1:{out}")
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def _port(self, pattern: str) -> int | None:
        assert self.proc.poll() is None, "\n".join(self.lines)
        for line in list(self.lines):
            m = re.search(pattern, line)
            if m:
                return int(m.group(1))
        return None

    def _read_output(self) -> None:
        while not self._stop.is_set():
            try:
                self.got.append(codec.main_header(self._sub.recv_multipart())[1])
            except zmq.Again:
                pass

    def send(self, pulses, worker: int = 0, sec_offset: int = 0, sec: int | None = None) -> None:
        for p in pulses:
            self.push[worker].send_multipart(_msg(p, sec if sec is not None else BASE + p + sec_offset))

    def wait_got(self, n: int, timeout: float = 30) -> list[int]:
        wait_for(lambda: len(self.got) >= n, timeout=timeout)
        return list(self.got)

    def stats(self) -> dict:
        return requests.get(self.base + "/statistics", timeout=10).json()["statistics"]

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self._stop.set()
        self._reader.join(5)
        for s in self.push + [self._sub]:
            s.close(0)
        self.ctx.destroy(linger=0)


@pytest.fixture
def merge():
    procs = []

    def start(**kw) -> MergeProc:
        procs.append(MergeProc(**kw))
        return procs[-1]
    yield start
    for p in procs:
        p.close()


# ---------------------------------------------------------------------- finding 8: restarts, outliers, duplicates
@pytest.mark.parametrize("old_start, restart_sec", [
    (0, BASE + 10_000),          # a camera restart: ids from 0 again, its clock moved on
    (1_000_000, BASE),           # ids from far back again, timestamps useless (all the same)
], ids=["timestamps-move-on", "far-back-same-timestamps"])
def test_after_pulse_ids_restart_the_output_is_in_order_again(merge, old_start, restart_sec):
    m = merge()
    old = list(range(old_start, old_start + 20))
    for p in old:
        m.push[p % 2].send_multipart(_msg(p, restart_sec if old_start else None))
    assert m.wait_got(20) == old
    for p in (1, 0, 3, 2, 5, 4, 7, 6, 9, 8):                   # the two workers of a restarted camera
        m.push[p % 2].send_multipart(_msg(p, restart_sec + (p if not old_start else 0)))
    got = m.wait_got(30, timeout=15)[20:]
    assert got == list(range(10)), got
    st = m.stats()
    assert st["restarts"] == 1 and st["late"] == 0 and st["duplicates"] == 0, st
    assert st["next_pulse"] == 10
    assert any("pulse ids jumped" in line for line in m.lines), m.lines


def test_one_bogus_far_future_pulse_neither_disables_ordering_nor_counts_huge_gaps(merge):
    m = merge()
    m.send(range(10))
    assert m.wait_got(10) == list(range(10))
    m.send([BOGUS], sec_offset=-BOGUS + 10)                    # a garbage pulse id, a sane timestamp
    wait_for(lambda: BOGUS in m.got, timeout=15)               # not lost: forwarded, counted as an outlier
    for a, b in zip(range(11, 30, 2), range(10, 30, 2)):
        m.send([a], worker=0)
        m.send([b], worker=1)
    got = [p for p in m.wait_got(31, timeout=15)[11:]]
    assert got == list(range(10, 30)), got
    st = m.stats()
    assert st["gaps"] == 0 and st["late"] == 0 and st["outliers"] == 1 and st["next_pulse"] == 30, st


def test_a_bogus_pulse_before_the_sequence_is_established_is_an_outlier(merge):
    m = merge(max_wait=1.0)                                    # the first pulses wait 1 s: the bogus one comes meanwhile
    m.send(range(5))
    m.send([BOGUS], sec_offset=-BOGUS + 5)
    wait_for(lambda: BOGUS in m.got and len(m.got) >= 6, timeout=15)
    m.send(range(5, 10))
    got = m.wait_got(11, timeout=15)
    assert [p for p in got if p != BOGUS] == list(range(10)), got
    st = m.stats()
    assert st["gaps"] == 0 and st["outliers"] == 1 and st["restarts"] == 0 and st["next_pulse"] == 10, st
    assert not any("pulse ids jumped" in line for line in m.lines), m.lines


def test_a_re_sent_pulse_is_forwarded_once_however_many_late_pulses_came_between(merge):
    m = merge()
    evens, odds = list(range(0, 2600, 2)), list(range(1, 2201, 2))
    m.send(evens, worker=0)                                    # the odd worker is behind: a full buffer goes on
    assert m.wait_got(len(evens), timeout=60) == evens
    m.send(odds, worker=1)                                     # 1,100 late pulses, forwarded at once
    assert sorted(m.wait_got(len(evens) + len(odds), timeout=60)[len(evens):]) == odds
    m.send([1, 1000, 2200], worker=0)                          # re-sent: the oldest late one, an even, the last
    m.send([2601], worker=0)                                   # a marker behind them on the same socket
    wait_for(lambda: 2601 in m.got, timeout=15)
    assert (m.got.count(1), m.got.count(1000), m.got.count(2200)) == (1, 1, 1)
    st = m.stats()
    assert st["duplicates"] == 3 and st["late"] == len(odds) and st["dropped"] == 0, st


# ---------------------------------------------------------------------- finding 10: a flood of bad messages
def test_a_flood_of_bad_messages_logs_a_bounded_number_of_lines_with_counts(merge):
    m = merge()
    n = 3000
    for i in range(n):
        m.push[i % 2].send_multipart([b"not a bsread header", b"{}"] if i % 3 else [b"one part only"])
    wait_for(lambda: m.stats()["bad"] == n, timeout=60)
    m.send(range(3))                                           # good messages still go through
    assert m.wait_got(3) == [0, 1, 2]
    assert m.terminate() == 0
    wait_for(lambda: any("merge: {" in line for line in m.lines), timeout=10)
    bad_lines = [line for line in m.lines if "not bsread" in line]
    assert 1 <= len(bad_lines) <= 6, bad_lines[:10]
    counted = [line for line in m.lines if re.search(r"\d+ more '", line)]        # "(N more 'bad_json' ...)"
    assert len(counted) <= 6, counted
    suppressed = sum(int(x) for line in counted for x in re.findall(r"(\d+) more '", line))
    assert suppressed + len(bad_lines) == n, (bad_lines, counted)                # every bad message is counted
    assert f'"bad": {n}' in next(line for line in m.lines if "merge: {" in line)


# ---------------------------------------------------------------------- finding 12: systemd notify and watchdog
def _drain(s: socket.socket, seconds: float) -> list[str]:
    """Every datagram arriving within ``seconds``."""
    msgs, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            msgs.append(s.recv(4096).decode())
        except socket.timeout:
            pass
    return msgs


def test_merge_tells_systemd_ready_pings_the_watchdog_reports_status_and_stopping(merge, notify_socket):
    path, s = notify_socket
    m = merge(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    msgs: list[str] = []
    wait_for(lambda: msgs.extend(_drain(s, 0.2)) or any("READY=1" in x for x in msgs), timeout=30)
    m.send(range(5))
    assert m.wait_got(5) == list(range(5))
    wait_for(lambda: msgs.extend(_drain(s, 0.2)) or sum("WATCHDOG=1" in x for x in msgs) >= 2, timeout=30)
    wait_for(lambda: msgs.extend(_drain(s, 0.2)) or any(x.startswith("STATUS=merging: received 5, sent 5")
                                                         for x in msgs), timeout=30)
    assert m.terminate() == 0
    msgs.extend(_drain(s, 0.3))
    assert any("STOPPING=1" in x for x in msgs), msgs


_STUCK = """
import sys, threading
from vi_stream.scale import merge
from vi_stream.io import bsread_codec as codec
take = merge.Merger._take
def stuck_at_999(self, url, parts):   # a hung merge loop: the message of pulse 999 never returns
    if codec.main_header(parts)[1] == 999:
        threading.Event().wait()
    return take(self, url, parts)
merge.Merger._take = stuck_at_999
from vi_stream.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_watchdog_stops_when_the_merge_loop_is_stuck(merge, notify_socket):
    path, s = notify_socket
    m = merge(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}, argv0=[sys.executable, "-c", _STUCK])
    msgs: list[str] = []
    wait_for(lambda: msgs.extend(_drain(s, 0.2)) or sum("WATCHDOG=1" in x for x in msgs) >= 2, timeout=30)
    m.send([999])
    _drain(s, 3.0)                                             # health goes stale within 2 s (max(2, WatchdogSec/2))
    stuck = _drain(s, 2.0)
    assert m.proc.poll() is None
    assert not any("WATCHDOG=1" in x for x in stuck), stuck   # alive, but no longer vouching for its loop


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (.ci/run installs it)")
def test_the_merge_unit_is_type_notify_with_a_watchdog_and_verifies(tmp_path):
    unit = os.path.join(ROOT, "systemd", "vi_stream-merge@.service")
    inst = tmp_path / "vi_stream-merge@EXAMPLE.service"
    shutil.copy(unit, inst)
    p = subprocess.run(["systemd-analyze", "verify", str(inst)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr.strip() == "", p.stderr
    text = open(unit).read()
    for key in ("Type=notify", "NotifyAccess=main", "WatchdogSec=", "Restart=on-failure"):
        assert key in text, key


# ---------------------------------------------------------------------- the rules themselves, in-process (fast)
def _feed(seq, pulses, t0: float = 0.0, dt: float = 0.0, sec_offset: int = 0):
    out, t = [], t0
    for p in pulses:
        out += [o[0] for o in seq.offer(p, (BASE + p + sec_offset, 0), t, p)]
        out += [o[0] for o in seq.release(t)]
        t += dt
    return out, t


def test_a_slow_camera_restart_is_confirmed_though_its_first_pulses_went_out_unconfirmed():
    from vi_stream.scale.merge_order import Sequencer
    seq = Sequencer(max_wait=0.5, buffer=8, window=64)
    out, t = _feed(seq, range(20))
    assert out == list(range(20))
    # one pulse per second after the restart: 0 waits max_wait and goes out unconfirmed, then 2 confirms
    out, t = _feed(seq, [0, 1, 2, 3, 4], t0=t + 1, dt=1.0, sec_offset=10_000)
    out += [o[0] for o in seq.release(t + 1)]
    assert out == [0, 1, 2, 3, 4] and seq.counts["restarts"] == 1 and seq.counts["outliers"] == 1
    again, _ = _feed(seq, [0, 1, 4], t0=t + 2, sec_offset=10_000)         # re-sent: none goes out twice
    assert again == [] and seq.counts["duplicates"] == 3


def test_a_confirmed_jump_forward_counts_no_gaps_and_memory_stays_bounded():
    import random

    from vi_stream.scale.merge_order import MAX_HELD, Sequencer
    seq = Sequencer(max_wait=0.5, buffer=8, window=64)
    _feed(seq, range(10))
    out, t = _feed(seq, [BOGUS + 2, BOGUS, BOGUS + 1, BOGUS + 3])        # e.g. a camera paused for days
    out += [o[0] for o in seq.release(t + 1)]
    assert out == [BOGUS, BOGUS + 1, BOGUS + 2, BOGUS + 3]
    assert seq.counts["gaps"] == 0 and seq.counts["restarts"] == 1 and seq.next == BOGUS + 4
    rng = random.Random(7)
    for i in range(20_000):                                               # garbage of every kind
        p = rng.choice([rng.randrange(2 ** 62), (seq.next or 0) + rng.randrange(-200, 200), seq.next or 0])
        gaps = seq.counts["gaps"]
        sent = seq.offer(max(0, p), (BASE + rng.randrange(10 ** 6), 0), i * 0.01, p) + seq.release(i * 0.01)
        assert seq.counts["gaps"] - gaps <= 8 * len(sent)                 # no one pulse counts more than buffer
    assert len(seq._ring) == 64 and len(seq._held) <= MAX_HELD and len(seq._heap) <= 8 + 1
    assert len(seq._buffered) == len(seq._heap)


@pytest.mark.parametrize("after_restart", [False, True], ids=["at-start", "after-restart"])
def test_a_bogus_pulse_while_no_sequence_is_established_counts_no_gaps(after_restart):
    from vi_stream.scale.merge_order import Sequencer
    seq, t, off = Sequencer(max_wait=0.5, buffer=8, window=64), 0.0, 0
    if after_restart:
        _, t = _feed(seq, range(20))
        off, t = 10_000, t + 1
        _feed(seq, [0, 1, 2], t0=t, sec_offset=off)                       # a camera restart, confirmed
        assert seq.counts["restarts"] == 1 and seq.next is None
    else:
        _feed(seq, [0, 1, 2])
    for bogus in (BOGUS, 40):                                             # 10^15, and one within the window
        seq.offer(bogus, (BASE + 3 + off, 0), t, bogus)
    out = [o[0] for o in seq.release(t + 1)]
    assert sorted(out) == [0, 1, 2, 40, BOGUS] and [p for p in out if p < 40] == [0, 1, 2], out
    more, _ = _feed(seq, [4, 3, 6, 5], t0=t + 1.1, sec_offset=off)
    assert more == [3, 4, 5, 6], more
    assert seq.counts["gaps"] == 0 and seq.counts["outliers"] == 2 and seq.counts["late"] == 0, seq.counts
    assert seq.counts["restarts"] == (1 if after_restart else 0), seq.counts


@pytest.mark.parametrize("bogus_sec", [11, 10_000], ids=["sane-timestamp", "future-timestamp"])
def test_a_bogus_pulse_within_the_window_moves_nothing(bogus_sec):
    from vi_stream.scale.merge_order import Sequencer
    seq = Sequencer(max_wait=0.5, buffer=8, window=64)
    out, t = _feed(seq, range(11))
    seq.offer(11 + 40, (BASE + bogus_sec, 0), t, 11 + 40)                # 40 ids ahead: inside the window of 64
    out = [o[0] for o in seq.release(t + 1)]                             # unconfirmed: forwarded as an outlier
    assert out == [51] and seq.next == 11, out
    pulses = [p for a, b in zip(range(12, 31, 2), range(11, 31, 2)) for p in (a, b)]
    out, _ = _feed(seq, pulses, t0=t + 2, dt=0.01)                       # the two workers, alternately first
    assert out == list(range(11, 31)), out
    assert seq.counts["gaps"] == 0 and seq.counts["late"] == 0 and seq.counts["restarts"] == 0, seq.counts
    assert seq.counts["outliers"] == 1


def test_a_re_sent_backlog_far_behind_is_dropped_as_stale_not_taken_for_a_restart():
    from vi_stream.scale.merge_order import Sequencer
    seq = Sequencer(max_wait=0.5, buffer=8, window=64)
    out, t = _feed(seq, range(200))
    assert out == list(range(200))
    again, t = _feed(seq, [10, 11, 12, 13, 14, 150], t0=t + 1)            # a reconnecting worker's backlog
    again += [o[0] for o in seq.release(t + 1)]
    assert again == [] and seq.counts["stale"] == 5 and seq.counts["duplicates"] == 1, seq.counts
    assert seq.counts["restarts"] == 0 and seq.counts["outliers"] == 0 and seq.next == 200
    out, _ = _feed(seq, [150, 200, 201], t0=t + 2)                        # the ring is intact: 150 still known
    assert out == [200, 201] and seq.counts["duplicates"] == 2


@pytest.mark.parametrize("bogus_sec", [BASE, BASE + 10 ** 6], ids=["sane-timestamp", "future-timestamp"])
@pytest.mark.parametrize("waits", [False, True], ids=["real-ones-soon", "max-wait-passes-first"])
def test_a_bogus_first_pulse_does_not_stop_the_real_sequence(bogus_sec, waits):
    from vi_stream.scale.merge_order import Sequencer
    seq = Sequencer(max_wait=0.5, buffer=8, window=64)
    out = [o[0] for o in seq.offer(BOGUS, (bogus_sec, 0), 0.0, BOGUS)]
    t = 1.0 if waits else 0.1
    out += [o[0] for o in seq.release(t)]
    more, t = _feed(seq, [1, 0, 2, 3, 5, 4], t0=t)
    out += more + [o[0] for o in seq.release(t + 1)]
    more, _ = _feed(seq, [7, 6, 8], t0=t + 1.1)
    out += more
    assert out == [BOGUS] + list(range(9)), out
    assert seq.counts["gaps"] == 0 and seq.counts["stale"] == 0 and seq.counts["late"] == 0, seq.counts
    assert seq.counts["restarts"] == (1 if waits else 0) and seq.counts["outliers"] == (0 if waits else 1)
