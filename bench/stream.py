"""Stream throughput: bsread in -> daemon -> bsread out, all on loopback.

    python bench/stream.py [--frames 40] [--e2e-frames 12] [--size 2048]

1. end to end with the model: frames/s, megapixels/s, latency p50/p99 (the
   daemon's own statistics: receive -> handed to ZMQ) for 2048x2048 uint8.
   Saturated (sender as fast as the daemon takes frames, so latency
   includes the queue) and paced at 70% of that rate (latency of one frame).
2. transport only (model off): the daemon with the model replaced by empty
   result arrays, so it relays the input bytes (two hops: sender -> daemon
   -> consumer), against
   - two hops like the daemon: a raw pyzmq relay moving the same bytes,
     PUSH -> (PULL, PUSH) -> PULL, and psi-bsread as a relay
     (Sender -> Source -> Sender -> Source);
   - one hop: raw pyzmq PUSH -> PULL of the same bytes, and psi-bsread's own
     Sender -> Source for the same frames.

`--only e2e|transport` runs one half and keeps the other half's last numbers.
"""
from __future__ import annotations

import argparse
import threading
import time

import numpy as np
import zmq

import common
from vi_stream.service import config as config_mod
from vi_stream.evaluation import synthetic
from vi_stream.service.daemon import Daemon
from vi_stream.frame import Result
from vi_stream.io import bsread_codec as codec


class ModelOff:
    """Model off: empty result arrays, so the daemon relays the input bytes (transport only)."""

    def __init__(self, model):
        self.model = model

    def process(self, frame, settings):
        z = np.zeros((0, 0), np.float32)
        return Result(frame, frame.image, z, z.astype(np.uint8), 0.0, False, [], {"model": "off"}, {})


def _sender(ctx, image, n, stop, period=0.0):
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.setsockopt(zmq.SNDHWM, 4)
    port = push.bind_to_random_port("tcp://127.0.0.1")
    enc = codec.Encoder()
    chan = codec.channel_from_value("B:FPICTURE", image)

    def run():
        for i in range(n):
            m = codec.Message(i, 1, 0, {"B:FPICTURE": chan})
            while not stop.is_set():
                if push.poll(100, zmq.POLLOUT):
                    push.send_multipart(enc.encode(m), copy=False)
                    break
            if period:
                stop.wait(period)
        stop.wait()
        push.close(0)

    t = threading.Thread(target=run, daemon=True)
    return port, t


def through_daemon(model, image, n, model_off: bool, period: float = 0.0, store: str = "off", **over) -> dict:
    """Frames through the daemon, lossless (--block); throughput from the first output on.

    The store is off unless given (bench/store.py measures it); with a store, the time until
    every result is stored is reported too.
    """
    # Sender, daemon and consumer each have their own ZMQ context (so their own I/O threads), as
    # separate processes would; the daemon makes its own, as `vi_stream run` does.
    ctx = zmq.Context()
    ctx_out = zmq.Context()
    stop = threading.Event()
    port, t = _sender(ctx, image, n, stop, period)
    cfg = config_mod.build(None, env={}, input=f"tcp://127.0.0.1:{port}", prefix="B", output_port=0, rest_port=0,
                           block=True, store=store, **over)
    d = Daemon(cfg, model=model)
    if model_off:
        d.processor.pipeline = ModelOff(model)
    d.start()
    out = ctx_out.socket(zmq.PULL)
    out.setsockopt(zmq.LINGER, 0)
    out.setsockopt(zmq.RCVHWM, 4)
    out.connect(f"tcp://127.0.0.1:{d.config.output_port}")
    d.processor.start()
    t.start()
    got, nbytes, t0, t_last = 0, 0, None, None
    while got < n and out.poll(60_000):
        parts = out.recv_multipart(copy=False)
        got += 1
        t_last = time.perf_counter()
        if t0 is None:
            t0 = t_last  # from the first output: excludes connection set-up and warm-up
        nbytes = sum(len(p) for p in parts)
    stored_after = None
    if store != "off":
        while d.processor.statistics()["store"]["stored"] < got and time.perf_counter() - t_last < 300:
            time.sleep(0.05)
        stored_after = round(time.perf_counter() - t_last, 2)
    stats = d.processor.statistics()
    stop.set()
    d.close()
    ctx.destroy(linger=0)
    ctx_out.destroy(linger=0)
    mp = image.shape[0] * image.shape[1] / 1e6
    dt = (t_last - t0) if got > 1 else float("nan")
    return {"frames_sent": n, "frames_out": got, "frames_per_s": round((got - 1) / dt, 2),
            "megapixels_per_s": round((got - 1) * mp / dt, 2), "output_message_bytes": nbytes,
            "latency_ms": stats["latency_ms"], "dropped_output": stats["output_dropped"],
            "rejected": stats["frames_rejected_total"],
            **({} if stored_after is None else {"stored": stats["store"]["stored"],
                                                "store_done_s_after_last_output": stored_after})}


def _time_pulls(c, n: int, ctxs) -> dict:
    """Frames/s of n-1 receives on ``c`` after the first; ends the contexts."""
    fps = _time_receives(lambda: c.recv_multipart(copy=False), n)
    for ctx in ctxs:
        ctx.destroy(linger=0)
    return {"frames_per_s": fps}


def raw_relay(image, out_bytes: int, n: int) -> dict:
    """PUSH -> relay(PULL->PUSH, output padded to the daemon's message size) -> PULL, with contexts
    like the daemon's: one for the sender, one with an I/O thread per stream for the relay, one for
    the consumer."""
    ctxs = [zmq.Context(), zmq.Context(io_threads=2), zmq.Context()]
    a = ctxs[0].socket(zmq.PUSH)
    port_a = a.bind_to_random_port("tcp://127.0.0.1")
    rin = ctxs[1].socket(zmq.PULL)
    rin.connect(f"tcp://127.0.0.1:{port_a}")
    rout = ctxs[1].socket(zmq.PUSH)
    port_b = rout.bind_to_random_port("tcp://127.0.0.1")
    c = ctxs[2].socket(zmq.PULL)
    c.connect(f"tcp://127.0.0.1:{port_b}")
    for s in (a, rin, rout, c):
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 4)
        s.setsockopt(zmq.RCVHWM, 4)
    payload = image.tobytes()
    extra = b"\x00" * max(0, out_bytes - len(payload))

    def send():
        for _ in range(n):
            a.send_multipart([b"{}", payload])

    def relay():
        for _ in range(n):
            parts = rin.recv_multipart(copy=False)
            rout.send_multipart([*parts, extra], copy=False)

    threading.Thread(target=send, daemon=True).start()
    threading.Thread(target=relay, daemon=True).start()
    return _time_pulls(c, n, ctxs)


def raw_push_pull(image, out_bytes: int, n: int) -> dict:
    """One hop: PUSH -> PULL of the daemon's output message size, a context each."""
    ctxs = [zmq.Context(), zmq.Context()]
    a = ctxs[0].socket(zmq.PUSH)
    port = a.bind_to_random_port("tcp://127.0.0.1")
    c = ctxs[1].socket(zmq.PULL)
    c.connect(f"tcp://127.0.0.1:{port}")
    for s in (a, c):
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 4)
        s.setsockopt(zmq.RCVHWM, 4)
    payload = image.tobytes()
    extra = b"\x00" * max(0, out_bytes - len(payload))
    threading.Thread(target=lambda: [a.send_multipart([b"{}", payload, extra], copy=False) for _ in range(n)],
                     daemon=True).start()
    return _time_pulls(c, n, ctxs)


def _time_receives(receive, n: int) -> float:
    """Frames/s over n-1 calls of ``receive`` after the first (which includes connection set-up)."""
    receive()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        receive()
    return round((n - 1) / (time.perf_counter() - t0), 2)


def psi_bsread(image, n: int) -> dict:
    from bsread import PULL, Sender, source
    s = Sender(port="*", address="tcp://127.0.0.1", queue_size=4)
    s.open()
    port = int(s.stream.socket.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1])

    def send():
        for i in range(n):
            s.send(data={"B:FPICTURE": image}, pulse_id=i)

    threading.Thread(target=send, daemon=True).start()
    with source(host="127.0.0.1", port=port, mode=PULL, receive_timeout=60000, queue_size=4) as src:
        fps = _time_receives(src.receive, n)
    s.close()
    return {"frames_per_s": fps}


def psi_bsread_relay(image, n: int) -> dict:
    """Like for like with the daemon: psi-bsread Sender -> (Source -> Sender) -> Source, two hops."""
    from bsread import PULL, Sender, source

    def open_sender():
        snd = Sender(port="*", address="tcp://127.0.0.1", queue_size=4)
        snd.open()
        return snd, int(snd.stream.socket.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1])

    first, port_a = open_sender()
    second, port_b = open_sender()

    def send():
        for i in range(n):
            first.send(data={"B:FPICTURE": image}, pulse_id=i)

    def relay():
        with source(host="127.0.0.1", port=port_a, mode=PULL, receive_timeout=60000, queue_size=4) as src:
            for _ in range(n):
                m = src.receive()
                second.send(data={k: v.value for k, v in m.data.data.items()}, pulse_id=m.data.pulse_id)

    threading.Thread(target=send, daemon=True).start()
    threading.Thread(target=relay, daemon=True).start()
    with source(host="127.0.0.1", port=port_b, mode=PULL, receive_timeout=60000, queue_size=4) as src:
        fps = _time_receives(src.receive, n)
    first.close()
    second.close()
    return {"frames_per_s": fps}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--e2e-frames", type=int, default=12)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--only", choices=("e2e", "transport"), help="run one half (the other keeps its old numbers)")
    a = ap.parse_args()
    image = synthetic.module_image((a.size, a.size), seed=5, defects=("dust",)).image
    out = common.read("stream") if a.only else {}
    if a.only == "transport":
        out = {k: v for k, v in out.items() if not k.startswith(("transport_", "daemon_vs_"))}
    out["size"] = f"{a.size}x{a.size} uint8"
    if a.only != "transport":
        model = common.model_for(a.size)
        sat = through_daemon(model, image, a.e2e_frames, model_off=False)
        out["end_to_end_with_model_saturated"] = sat
        # Latency without a standing queue: frames paced at ~70% of the saturated rate.
        out["end_to_end_with_model_paced"] = through_daemon(model, image, 6, model_off=False,
                                                            period=1.0 / (0.7 * sat["frames_per_s"]))
    if a.only != "e2e":
        # any fitted model: the daemon needs one to start, then ModelOff replaces it
        t = through_daemon(common.model_for(320, 10), image, a.frames, model_off=True)
        out["transport_daemon_model_off"] = t
        size = t["output_message_bytes"]
        refs = {"raw_pyzmq_relay_same_bytes": raw_relay(image, size, a.frames),
                "psi_bsread_relay_two_hops": psi_bsread_relay(image, a.frames),
                "raw_pyzmq_push_pull_one_hop": raw_push_pull(image, size, a.frames),
                "psi_bsread_sender_to_source_one_hop": psi_bsread(image, a.frames)}
        for name, r in refs.items():
            out[f"transport_{name}"] = r
            out[f"daemon_vs_{name}"] = round(t["frames_per_s"] / r["frames_per_s"], 3)
    common.write("stream", out)


if __name__ == "__main__":
    main()
