"""The fault suite: a hostile stream, a store that goes away with the spool on a small disk,
SIGKILL in the middle of writes, SIGTERM with frames in every stage. Every loop is bounded."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vi_stream.evaluation import synthetic
from vi_stream.io import bsread_codec as codec
from vi_stream.store.local import LocalStore

from ..helpers import ROOT
from ..helpers.daemon import (
    assert_books_balance,
    bound_push,
    good_frame,
    pull,
    running_daemon,
    wait_for,
)
from ..helpers.store import FlakyStore

IMG = synthetic.module_image((256, 256), seed=7100).image


# ---------------------------------------------------------------- a hostile stream
def _mutate(parts: list[bytes], how: str, at: int, data: bytes) -> list[bytes]:
    parts = list(parts)
    i = at % len(parts)
    if how == "flip":
        b = bytearray(parts[i] or b"\0")
        for k, v in enumerate(data[:8]):
            b[(at + 31 * k) % len(b)] ^= v or 1
        parts[i] = bytes(b)
    elif how == "truncate":
        parts[i] = parts[i][: at % (len(parts[i]) + 1)]
    elif how == "drop":
        del parts[i]
    elif how == "append":
        parts.insert(i, data)
    elif how == "header":   # a main-header field replaced by some other JSON value
        main = json.loads(parts[0])
        key = ["pulse_id", "global_timestamp", "hash", "htype", "dh_compression"][at % 5]
        main[key] = [None, True, -1, 2**70, 1.5, "x", [1], {"sec": -5}, data.hex()][at % 9]
        parts[0] = json.dumps(main).encode()
    elif how == "channel":  # the data header's channel entry altered (hash recomputed: it passes the check)
        import hashlib
        dh = json.loads(parts[1])
        ch = dh["channels"][0]
        field = ["shape", "type", "compression", "encoding", "name"][at % 5]
        ch[field] = [[2**40, 2], "complex64", "zstd", "big", 7, [True], [0, 0], "lz4"][(at // 5) % 8]
        parts[1] = json.dumps(dh).encode()
        main = json.loads(parts[0])
        main["hash"] = hashlib.md5(parts[1]).hexdigest()
        parts[0] = json.dumps(main).encode()
    return parts


@pytest.fixture(scope="module")
def stream_daemon(model):
    with bound_push() as (push, port), running_daemon(model, port) as (d, ctx):
        out = pull(ctx, d.config.output_port)
        d.processor.start()
        yield d, push, out
        out.close(0)


_pulse = iter(range(1_000_000, 2_000_000))


@given(how=st.sampled_from(["flip", "truncate", "drop", "append", "header", "channel"]),
       at=st.integers(0, 10_000), data=st.binary(min_size=1, max_size=64),
       compression=st.sampled_from([None, "bitshuffle_lz4"]))
@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_mutated_messages_never_stop_the_good_frames_behind_them(stream_daemon, how, at, data, compression):
    d, push, out = stream_daemon
    m = codec.Message(next(_pulse), 1, 2)
    m.channels["CAM:FPICTURE"] = codec.channel_from_value("CAM:FPICTURE", IMG, compression)
    m.channels["CAM:MODULE"] = codec.channel_from_value("CAM:MODULE", "M-FUZZ")
    push.send_multipart(_mutate(codec.Encoder().encode(m), how, at, data))
    good = next(_pulse)
    push.send_multipart(good_frame(good, IMG))
    seen = []
    while good not in seen:                      # the good frame behind the bad one comes out
        assert out.poll(20_000), f"pulse {good} not out after a {how} mutation"
        try:
            seen.append(codec.Decoder().decode(out.recv_multipart(zmq.NOBLOCK)).pulse_id)
        except codec.DecodeError:
            pass
    assert d.processor.healthy()


def test_after_the_fuzzing_the_books_balance(stream_daemon):
    d, _push, _out = stream_daemon
    s = wait_for(lambda: (s := d.statistics())["frames_received"] == s["frames_processed"]
                 + s["frames_rejected_total"] and s["store"]["queue"] == 0 and s, timeout=60)
    wait_for(lambda: (t := d.statistics()["store"])["stored"] + t["spooled"] == t["submitted"], timeout=60)
    s = d.statistics()
    assert s["frames_received"] >= 160 and s["frames_rejected_total"] > 0 and s["input_errors"] == 0
    assert_books_balance(s)


# ---------------------------------------------------------------- the store away, the spool on a small disk
@contextlib.contextmanager
def small_filesystem(path, size: str = "2m"):
    """A tmpfs of ``size`` mounted at ``path`` (CI runs as root); skipped where mounting is not allowed."""
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_store_outage_with_the_spool_disk_filling_up_loses_nothing(model, tmp_path):
    """The store goes away; results fill a 2 MB spool; more are held in memory and the input backs
    up; the store comes back while the disk is still full: everything is stored, in order, once."""
    import time
    with small_filesystem(tmp_path / "spool-fs", "1m") as spool_fs:
        inner = LocalStore(str(tmp_path / "store")).start()
        store = FlakyStore(inner)
        store.down.set()
        with bound_push() as (push, port), running_daemon(model, port, backend=store,
                                                            spool=os.path.join(spool_fs, "spool")) as (d, _ctx):
            push.setsockopt(zmq.SNDTIMEO, 100)
            d.processor.start()
            sent, end = 0, time.monotonic() + 180
            # until the spool disk is full (held_in_memory alone can be a moment between render and spool)
            while not (d.statistics()["store"]["held_in_memory"] > 0 and shutil.disk_usage(spool_fs).free < 200_000):
                st = d.statistics()
                assert sent < 400 and time.monotonic() < end, "the spool disk never filled"
                if st["frames_received"] < sent - 2:       # paced: a few frames ahead of the daemon
                    time.sleep(0.02)
                    continue
                with contextlib.suppress(zmq.Again):
                    push.send_multipart(good_frame(sent, IMG))
                    sent += 1
            store.down.clear()                          # the store is back; the spool disk is still full
            for _ in range(10):
                wait_for(lambda: _sent(push, sent), timeout=30)
                sent += 1
            s = wait_for(lambda: (s := d.statistics())["store"]["stored"] == sent and s, timeout=120)
        assert_books_balance(s)
        assert s["store"]["spooled_total"] > 0 and s["store"]["lost"] == 0 and s["store"]["spooled"] == 0
        assert inner.count_results() == sent and inner.get_module("CAM")["left"]["pulse_id"] == sent - 1
        assert os.listdir(os.path.join(spool_fs, "spool", "failed")) == []
        inner.close()


def _sent(push, pulse: int) -> bool:
    try:
        push.send_multipart(good_frame(pulse, IMG))
        return True
    except zmq.Again:
        return False


# ---------------------------------------------------------------- SIGKILL in the middle of a write
_WRITER = textwrap.dedent('''
    import os, signal, sys, threading, time
    sys.path.insert(0, {tests!r})
    from vi_stream.store import local as local_store, spool as spool_mod
    from vi_stream.store.local import LocalStore
    from vi_stream.store.spool import Spool
    from vi_stream.store.writer import StoreWriter
    from helpers.store import FlakyStore, make_result, render

    point, nth = sys.argv[1], int(sys.argv[2])
    calls = [0]

    def killer(fn, before):
        def wrapped(*a, **k):
            calls[0] += 1
            if calls[0] == nth and before:
                os.kill(os.getpid(), signal.SIGKILL)
            out = fn(*a, **k)
            if calls[0] == nth and not before:
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        return wrapped

    if point == "image-file":        # an image on disk, its catalogue row not yet committed
        local_store.write_durably = killer(local_store.write_durably, before=False)
    elif point == "catalogue":       # inside the results transaction
        LocalStore._write_one = killer(LocalStore._write_one, before=False)
    elif point == "spool-append":    # a spool record written, not yet counted
        spool_mod.write_durably = killer(spool_mod.write_durably, before=False)
    elif point == "replay":          # stored by a replay, not yet removed from the spool
        Spool.remove = killer(Spool.remove, before=True)
    inner = LocalStore({store!r}).start()
    store = FlakyStore(inner)
    w = StoreWriter(store, Spool({spool!r}), render, queue_size=2, batch=2, retry=(0.05, 0.1)).start()
    last = -1
    for i in range(24):
        if i == 6:
            store.down.set()         # an outage: results go to the spool
        if i == 14:
            store.down.clear()       # back: the spool is replayed
        w.submit(make_result(i, "M-K"))
        time.sleep(0.02)
        stored = w.statistics()["stored"]
        if stored != last:
            print("stored", stored, flush=True)
            last = stored
    for _ in range(500):
        stored = w.statistics()["stored"]
        if stored != last:
            print("stored", stored, flush=True)
            last = stored
        if stored == 24:
            break
        time.sleep(0.02)
    w.close()
    print("done", flush=True)
''')


@pytest.mark.parametrize("point, nth", [("image-file", 3), ("catalogue", 2), ("spool-append", 3),
                                        ("replay", 2), ("catalogue", 9)])
def test_sigkill_in_the_middle_of_a_write_then_a_restart_keeps_all_that_was_reported_stored(tmp_path, point,
                                                                                           nth):
    from vi_stream.store.spool import Spool
    from vi_stream.store.writer import StoreWriter

    from ..helpers.store import render
    script = _WRITER.format(tests=os.path.join(ROOT, "tests"), store=str(tmp_path / "store"),
                            spool=str(tmp_path / "spool"))
    p = subprocess.run([sys.executable, "-c", script, point, str(nth)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr[-2000:])
    reported = max([int(m) for m in re.findall(r"stored (\d+)", p.stdout)] + [0])
    # Restart: a new writer on the same spool and store replays what was left.
    store = LocalStore(str(tmp_path / "store")).start()
    w = StoreWriter(store, Spool(str(tmp_path / "spool")), render, retry=(0.05, 0.1)).start()
    wait_for(lambda: w.statistics()["spooled"] == 0, timeout=30)
    w.close()
    results = store.count_results()
    assert results >= reported                                    # nothing reported stored went missing
    pulses = [r[0] for r in store._db.execute("SELECT pulse_id FROM results")]
    assert sorted(pulses) == list(range(results))                # in order, each once: a prefix of what was sent
    if results:
        assert store.get_module("M-K")["left"]["pulse_id"] == results - 1
    _assert_catalogue_complete(store)
    store.close()


def _assert_catalogue_complete(store: LocalStore) -> None:
    """Every catalogued image is a whole PNG file; every id a module side names is catalogued."""
    import cv2
    rows = store._db.execute("SELECT id, length FROM images").fetchall()
    for image_id, length in rows:
        data = store.get_image(image_id)
        assert len(data) == length and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is not None
    known = {r[0] for r in rows}
    for doc in store.list_modules(limit=1000):
        for side in ("left", "right"):
            for group in (doc.get(side) or {}).get("original", {}), (doc.get(side) or {}).get("mask", {}):
                for size in group.values():
                    assert size["src_id"] in known and set(size["tiled_id"]) <= known


# ---------------------------------------------------------------- SIGTERM with frames in every stage
def test_sigterm_with_frames_in_every_stage_exits_0_and_the_books_balance(model_path, tmp_path):
    """The store's disk fills up (every write refused: results go to the spool), a sender
    keeps the input queue full: SIGTERM exits 0 within 20 s; after the store has room, a restart's
    replay stores every result the daemon reported processed."""
    from vi_stream.evaluation.simulate import Simulator
    with small_filesystem(tmp_path / "store-fs", "32m") as store_fs:
        filler = os.path.join(store_fs, "filler")
        sim = Simulator(0, "FLT", fps=30, shape=(384, 384), pool=3)
        port = sim.start()
        spool = str(tmp_path / "spool")
        p = subprocess.Popen([sys.executable, "-m", "vi_stream.cli", "run", f"tcp://127.0.0.1:{port}", "FLT",
                              "--model", model_path, "--rest-port", "0", "--output-port", "0", "--auto-start",
                              "--store", os.path.join(store_fs, "store"), "--spool", spool, "--block",
                              "--store-queue", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        sim.run_in_thread()
        try:
            wait_for(lambda: os.path.exists(os.path.join(store_fs, "store", "catalogue.sqlite-shm")), timeout=120)
            with open(filler, "wb") as f:                           # the store opened: now fill its disk
                with contextlib.suppress(OSError):
                    f.write(b"\0" * (64 << 20))
            wait_for(lambda: os.path.isdir(spool) and sum(n.endswith(".rec") for n in os.listdir(spool)) >= 4,
                     timeout=120)
            p.send_signal(signal.SIGTERM)
            _out, err = p.communicate(timeout=25)
        finally:
            if p.poll() is None:
                p.kill()
            sim.close()
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err
        books = re.search(r"frames: received (\d+), processed (\d+), rejected (\d+), discarded on stop (\d+); "
                          r"results: stored (\d+), spooled (\d+), set aside (\d+), unrenderable (\d+), lost (\d+), "
                          r"not stored (\d+)", err)
        assert books, err[-3000:]
        rec_, proc, rej, disc, stored, spooled, aside, unrend, lost, not_stored = map(int, books.groups())
        assert rec_ == proc + rej + disc and proc == stored + spooled + aside + unrend + lost + not_stored
        assert lost == 0 and not_stored == 0 and spooled >= 4
        os.unlink(filler)                                           # the store's disk has room again
        from vi_stream.store.spool import Spool
        from vi_stream.store.writer import StoreWriter
        store = LocalStore(os.path.join(store_fs, "store")).start()
        w = StoreWriter(store, Spool(spool), lambda r: pytest.fail("nothing new to render"),
                        retry=(0.05, 0.1)).start()
        try:
            wait_for(lambda: w.statistics()["spooled"] == 0, timeout=60)
        finally:
            w.close()
        assert w.statistics()["errors"] == 0, w.statistics()
        assert store.count_results() == stored + spooled
        store.close()
