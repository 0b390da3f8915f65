"""Helpers for tests that run the daemon on ephemeral ports."""
from __future__ import annotations

import contextlib
import tempfile
import time

import zmq

from vi_stream.io import bsread_codec as codec
from vi_stream.service import config as config_mod
from vi_stream.service.daemon import Daemon


@contextlib.contextmanager
def running_daemon(model, input_port: int, prefix: str = "CAM", backend=None, **over):
    """A started daemon on ephemeral ports; its store and spool live in a fresh temporary state folder
    unless ``store``/``spool`` are given (``backend``: a Store object to use instead)."""
    ctx = zmq.Context()
    with tempfile.TemporaryDirectory(prefix="vi-state-") as state:
        cfg = config_mod.build(None, env={"VI_STREAM_STATE_DIR": state}, input=f"tcp://127.0.0.1:{input_port}",
                               prefix=prefix, output_port=0, rest_port=0, **over)
        d = Daemon(cfg, model=model, context=ctx, store=backend)
        d.start()
        try:
            yield d, ctx
        finally:
            d.close()
            ctx.destroy(linger=0)


@contextlib.contextmanager
def bound_push():
    """A PUSH socket on an ephemeral 127.0.0.1 port, as a raw bsread sender: yields (socket, port)."""
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    port = push.bind_to_random_port("tcp://127.0.0.1")
    try:
        yield push, port
    finally:
        push.close(0)
        ctx.destroy(linger=0)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.02):
    """Poll until predicate() is truthy; return its value or fail after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = predicate()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def pull(ctx: zmq.Context, port: int) -> zmq.Socket:
    s = ctx.socket(zmq.PULL)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"tcp://127.0.0.1:{port}")
    return s


def recv(sock: zmq.Socket, timeout_ms: int = 30000) -> list[bytes]:
    assert sock.poll(timeout_ms), "no message within timeout"
    return sock.recv_multipart(zmq.NOBLOCK)


def good_frame(pulse, img):
    m = codec.Message(pulse, 1, 2)
    m.channels["CAM:FPICTURE"] = codec.channel_from_value("CAM:FPICTURE", img)
    return codec.Encoder().encode(m)


def stored_books_balance(s: dict) -> bool:
    """Whether every frame processed is accounted for by the store, with nothing still on its way to it
    (the statistics ``s`` of a processor at rest)."""
    st = s["store"]
    return (st["queue"] == 0 and st["held_in_memory"] == 0 and s["frames_processed"] == st["submitted"] + s["not_stored"]
            and st["submitted"] + st["carried_over"] == (st["stored"] + st["spooled"] + st["set_aside"]
                                                         + st["render_failed"] + st["lost"]))


def assert_books_balance(s: dict) -> None:
    """The accounting identities README promises, at rest (nothing in flight)."""
    assert s["frames_received"] == (s["frames_processed"] + s["frames_rejected_total"]
                                    + s["frames_discarded_on_stop"]), s
    assert stored_books_balance(s), s
