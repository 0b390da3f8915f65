"""The processor's state machine with a fake source and pipeline: stops that reach their deadline,
restarts, health as progress."""
from __future__ import annotations

import queue
import threading

import numpy as np
import pytest

from vi_stream.frame import Frame, Result
from vi_stream.processing.processor import Processor

from ..helpers.daemon import wait_for


class FakeSource:
    def __init__(self, frames: queue.Queue):
        self.frames = frames
        self.closed = False

    def start(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def receive(self, timeout_ms: int = 100):
        try:
            return self.frames.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            return None


class SlowPipeline:
    """Blocks on frames whose pulse id is in ``hold`` until ``release`` is set."""

    class model:
        model_id = "fake"

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Event()
        self.hold: set[int] = set()

    def process(self, frame: Frame, settings) -> Result:
        if frame.pulse_id in self.hold:
            self.entered.set()
            self.release.wait(30)
        z = np.zeros((4, 4), np.float32)
        return Result(frame, frame.image, z, z.astype(np.uint8), 0.0, False, [], {}, {})


def _frame(pulse: int) -> Frame:
    return Frame(np.zeros((4, 4), np.uint8), pulse)


def test_a_stop_that_reaches_its_deadline_then_a_restart_leaves_old_threads_harmless(monkeypatch):
    """A stop past its deadline used to clear the thread list under the still running threads (an
    IndexError in the output thread) and a restart could hand them the new run's list."""
    errors = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    frames: queue.Queue = queue.Queue()
    sent = []
    pipe = SlowPipeline()
    pipe.hold = {1}
    p = Processor(lambda: FakeSource(frames), pipe, [lambda r: sent.append(r.frame.pulse_id) or True])
    p.start()
    frames.put(_frame(1))
    assert pipe.entered.wait(10)
    frames.put(_frame(2))
    wait_for(lambda: frames.empty())
    p.stop(timeout=0.3)                               # the worker is stuck on pulse 1
    assert p.state == "stopped"
    p.start()                                         # a new run while the old worker still runs
    frames.put(_frame(3))
    wait_for(lambda: 3 in sent)
    pipe.release.set()                                # the old worker finishes pulse 1 late
    wait_for(lambda: p.statistics()["frames_discarded_on_stop"] == 2)
    p.stop()
    s = p.statistics()
    assert errors == []
    assert sent == [3]                                # the abandoned run's frames never reach the output
    assert s["frames_received"] == 3 == s["frames_processed"] + s["frames_rejected_total"] + \
        s["frames_discarded_on_stop"]


def test_health_is_progress_of_every_stage():
    now = [0.0]
    frames: queue.Queue = queue.Queue()
    pipe = SlowPipeline()
    pipe.hold = {7}
    p = Processor(lambda: FakeSource(frames), pipe, [lambda r: True], clock=lambda: now[0])
    assert p.healthy(max_age=5)                       # stopped: nothing to answer for
    p.start()
    now[0] = 100.0
    wait_for(lambda: p.healthy(max_age=5))           # idle stages turn: healthy
    frames.put(_frame(7))
    assert pipe.entered.wait(10)
    now[0] = 200.0
    threading.Event().wait(0.3)
    assert not p.healthy(max_age=5)                   # the worker has been on one frame too long
    pipe.release.set()
    wait_for(lambda: p.statistics()["frames_processed"] == 1 and p.healthy(max_age=5))
    p.stop()


def test_latency_is_measured_on_the_processors_own_clock():
    """Every time the processor measures (stage progress, rates, latency) is on the clock it was given:
    latency was once real time (the frame's own stamp, time.monotonic) beside an injected clock."""
    now = [1000.0]
    frames: queue.Queue = queue.Queue()
    pipe = SlowPipeline()
    pipe.hold = {7}
    p = Processor(lambda: FakeSource(frames), pipe, [lambda r: True], clock=lambda: now[0])
    p.start()
    try:
        frames.put(_frame(7))
        assert pipe.entered.wait(10)
        now[0] = 1002.5                                 # 2.5 s pass on the processor's clock
        pipe.release.set()
        wait_for(lambda: p.statistics()["frames_processed"] == 1)
        wait_for(lambda: p.statistics()["latency_ms"]["p50"] is not None)
        # 2.5 s on its clock, plus the real instants between the frame's making and its taking
        assert p.statistics()["latency_ms"]["p50"] == pytest.approx(2500.0, abs=100)
    finally:
        p.stop()
