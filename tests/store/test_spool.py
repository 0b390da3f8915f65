"""The spool and the store writer: a store outage, a restart, a full disk, a record the store refuses."""
from __future__ import annotations

import os
import threading
import time

import pytest

from vi_stream.errors import ConfigError, ServiceError
from vi_stream.store import spool as spool_mod
from vi_stream.store.local import LocalStore
from vi_stream.store.spool import Spool
from vi_stream.store.writer import StoreWriter

from ..helpers.daemon import wait_for
from ..helpers.store import (
    FlakyStore,
    make_record,
    make_result,
    mongomock_store,
    real_mongo_store,
    render,
)


def test_spool_keeps_order_across_reopen_and_cleans_partial_appends(tmp_path):
    sp = Spool(str(tmp_path / "sp")).open()
    seqs = [sp.append(make_record(i, f"M-{i}")) for i in range(3)]
    assert seqs == [1, 2, 3] and sp.pending == 3 and sp.bytes > 0
    sp.remove(1)
    sp.close()
    (tmp_path / "sp" / "000000000009.rec.tmp").write_bytes(b"half a record")  # a crash mid-append
    sp = Spool(str(tmp_path / "sp")).open()
    assert sp.pending == 2 and not (tmp_path / "sp" / "000000000009.rec.tmp").exists()
    head = sp.head(10)
    assert [s for s, _ in head] == [2, 3] and [r.module for _, r in head] == ["M-1", "M-2"]
    assert head[0][1].images == make_record(1, "M-1").images
    assert sp.append(make_record(5)) == 4
    sp.close()


def test_spool_refuses_a_second_user_and_flags_corrupt_records(tmp_path):
    sp = Spool(str(tmp_path / "sp")).open()
    with pytest.raises(ConfigError, match="in use"):
        Spool(str(tmp_path / "sp")).open()
    seq = sp.append(make_record(1))
    path = tmp_path / "sp" / f"{seq:012d}.rec"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    (_s, err), = sp.head(1)
    assert "checksum" in str(err)
    sp.set_aside(seq, str(err))
    assert sp.pending == 0 and sp.failed() == 1
    assert "checksum" in (tmp_path / "sp" / "failed" / f"{seq:012d}.reason").read_text()
    sp.close()
    with pytest.raises(Exception, match="bad magic"):
        spool_mod.decode(b"not a spool record at all, but long enough to pass the size check ....")


def _writer(store, folder, **kw):
    # At the priority of the test's own threads: the writer's lower one (nice 10, so that scoring wins the CPU) is
    # not what these tests check, and on a loaded machine it starved the writer past every wait (an outage of 24
    # results took 5 s alone and over 60 s beside other work).
    return StoreWriter(store, Spool(folder), render, queue_size=4, batch=3, retry=(0.05, 0.2), nice=0, **kw)


def _writer_on_a_disk(store, folder, monkeypatch):
    """A started writer whose spool disk is full while the returned event is set."""
    w = _writer(store, folder).start()
    real_append = w.spool.append
    disk_full = threading.Event()

    def append(r):
        if disk_full.is_set():
            raise OSError(28, "No space left on device")
        return real_append(r)
    monkeypatch.setattr(w.spool, "append", append)
    return w, disk_full


@pytest.mark.parametrize("backend", ["local", "mongomock"]
                         + (["mongodb"] if os.environ.get("VI_STREAM_TEST_MONGO_URI") else []))
def test_outage_under_load_loses_nothing_and_duplicates_nothing(tmp_path, backend):
    import contextlib
    cm = {"local": lambda: contextlib.nullcontext(LocalStore(str(tmp_path / "store")).start()),
          "mongomock": mongomock_store, "mongodb": real_mongo_store}[backend]()
    with cm as inner:
        store = FlakyStore(inner)
        w = _writer(store, str(tmp_path / "spool")).start()
        n = 40 if backend == "local" else 24  # mongomock's unique-index checks are O(n) per insert
        for i in range(n):
            if i == n // 4:
                store.down.set()        # the server goes away for a while, under load
            if i == n * 5 // 8:
                store.down.clear()      # and comes back
            assert w.submit(make_result(i, f"M-{i % 7}", "left" if i % 2 else "right"))
            time.sleep(0.01)
        wait_for(lambda: w.statistics()["stored"] == n and w.statistics()["spooled"] == 0, timeout=60)
        st = w.statistics()
        w.close()
        assert st["spooled_total"] > 0 and st["errors"] > 0 and st["failed"] == 0 and st["lost"] == 0
        assert inner.count_results() == n                         # every frame, once
        for m in range(7):                                        # in order: each side shows its latest pulse
            doc = inner.get_module(f"M-{m}")
            for side in ("left", "right"):
                pulses = [i for i in range(n) if i % 7 == m and ("left" if i % 2 else "right") == side]
                if pulses:
                    assert doc[side]["pulse_id"] == max(pulses)


def test_restart_with_a_non_empty_spool_replays_it(tmp_path):
    inner = LocalStore(str(tmp_path / "store")).start()
    store = FlakyStore(inner)
    store.down.set()
    w = _writer(store, str(tmp_path / "spool")).start()
    for i in range(6):
        w.submit(make_result(i, "M-R", "left"))
    wait_for(lambda: w.statistics()["spooled"] == 6)
    w.close()                                                     # the daemon stops with 6 results spooled
    assert inner.count_results() == 0 and len(list((tmp_path / "spool").glob("*.rec"))) == 6
    store.down.clear()
    w2 = _writer(store, str(tmp_path / "spool")).start()          # next start, store reachable
    wait_for(lambda: w2.statistics()["spooled"] == 0)
    w2.submit(make_result(6, "M-R", "left"))
    wait_for(lambda: w2.statistics()["stored"] == 7)
    w2.close()
    assert inner.count_results() == 7 and inner.get_module("M-R")["left"]["pulse_id"] == 6
    assert list((tmp_path / "spool").glob("*.rec")) == []
    inner.close()


def test_a_full_spool_disk_holds_results_in_memory_until_it_has_room(tmp_path, monkeypatch):
    inner = LocalStore(str(tmp_path / "store")).start()
    store = FlakyStore(inner)
    store.down.set()
    w, disk_full = _writer_on_a_disk(store, str(tmp_path / "spool"), monkeypatch)
    disk_full.set()
    for i in range(3):
        w.submit(make_result(i, "M-S"))
    wait_for(lambda: w.statistics()["held_in_memory"] >= 1
             and w.statistics()["held_in_memory"] + w.statistics()["queue"] == 3)
    assert "No space left" in w.statistics()["last_error"]
    disk_full.clear()
    wait_for(lambda: w.statistics()["spooled"] == 3)
    store.down.clear()
    wait_for(lambda: w.statistics()["stored"] == 3)
    w.close()
    assert inner.count_results() == 3 and w.statistics()["lost"] == 0
    inner.close()


def test_a_record_the_store_keeps_refusing_is_set_aside_and_the_rest_flows(tmp_path):
    inner = LocalStore(str(tmp_path / "store")).start()
    store = FlakyStore(inner, refuse_module="M-BAD")
    w = _writer(store, str(tmp_path / "spool"), max_attempts=3).start()
    for i, m in enumerate(["M-1", "M-BAD", "M-2", "M-3"]):
        w.submit(make_result(i, m))
        time.sleep(0.05)
    wait_for(lambda: w.statistics()["stored"] == 3 and w.statistics()["spooled"] == 0, timeout=30)
    st = w.statistics()
    w.close()
    assert st["failed"] == 1 and inner.count_results() == 3
    failed = list((tmp_path / "spool" / "failed").glob("*.reason"))
    assert len(failed) == 1 and "rejected (test)" in failed[0].read_text()
    inner.close()


def test_submit_to_a_stopped_writer_is_an_error(tmp_path):
    w = _writer(LocalStore(str(tmp_path / "store")).start(), str(tmp_path / "spool"))
    with pytest.raises(ServiceError, match="not running"):
        w.submit(make_result(0))
    assert os.path.isdir(tmp_path / "store")


def test_the_store_coming_back_while_the_spool_disk_stays_full_drains_everything(tmp_path, monkeypatch):
    """The stall of issue 16: results spooled, then one held in memory with the spool disk full; the
    store comes back first. The writer must replay the spool and write what it holds, not wait for disk."""
    inner = LocalStore(str(tmp_path / "store")).start()
    store = FlakyStore(inner)
    store.down.set()
    w, disk_full = _writer_on_a_disk(store, str(tmp_path / "spool"), monkeypatch)
    for i in range(2):
        w.submit(make_result(i, "M-F"))
    wait_for(lambda: w.statistics()["spooled"] == 2)
    disk_full.set()                                   # the spool's disk fills up
    for i in range(2, 5):
        w.submit(make_result(i, "M-F"))
    wait_for(lambda: w.statistics()["held_in_memory"] >= 1)
    store.down.clear()                                # the store has room again; the disk has not
    wait_for(lambda: w.statistics()["stored"] == 5, timeout=20)
    st = w.statistics()
    w.close()
    assert st["spooled"] == 0 and st["held_in_memory"] == 0 and st["lost"] == 0
    assert inner.count_results() == 5 and inner.get_module("M-F")["left"]["pulse_id"] == 4   # order kept
    inner.close()


def test_writer_health_means_progress(tmp_path):
    """Idle is healthy; a writer stuck inside the store's write while results wait is not."""
    now = [0.0]
    inner = LocalStore(str(tmp_path / "store")).start()
    hang, entered, release = threading.Event(), threading.Event(), threading.Event()

    class HangingStore(FlakyStore):
        def write(self, records):
            if hang.is_set():
                entered.set()
                release.wait(30)    # a store call that never returns, until the test releases it
            super().write(records)
    w = _writer(HangingStore(inner), str(tmp_path / "spool"), clock=lambda: now[0]).start()
    now[0] = 100.0
    wait_for(lambda: w.healthy(max_age=5.0))          # nothing waiting: each idle turn counts as progress
    hang.set()
    w.submit(make_result(0, "M-H"))
    assert entered.wait(10)
    now[0] = 200.0
    time.sleep(0.3)                                   # the writer gets every chance to turn: it cannot
    assert not w.healthy(max_age=5.0)                 # the watchdog stops: a hung writer gets restarted
    hang.clear()
    release.set()
    now[0] = 201.0
    wait_for(lambda: w.statistics()["stored"] == 1 and w.healthy(max_age=5.0))
    w.close()
    inner.close()


def test_the_spool_folder_removed_while_results_wait_in_it(tmp_path):
    """An operator removes the spool folder while the store is down and results wait in it: the writer
    goes on (it once died on the first missing file), counts what vanished as lost (the books still
    balance), spools new results into the folder made again, and stores them when the store is back."""
    import shutil
    inner = LocalStore(str(tmp_path / "store")).start()
    store = FlakyStore(inner)
    store.down.set()
    w = _writer(store, str(tmp_path / "spool")).start()
    for i in range(5):
        w.submit(make_result(i, "M-S", "left"))
    wait_for(lambda: w.statistics()["spooled"] == 5)
    shutil.rmtree(tmp_path / "spool")
    for i in range(5, 8):
        w.submit(make_result(i, "M-S", "left"))
    store.down.clear()
    wait_for(lambda: w.statistics()["stored"] == 3 and w.statistics()["spooled"] == 0, timeout=30)
    st = w.statistics()
    assert w.healthy(60) and st["lost"] == 5 and st["stored"] == 3
    w.close()
    assert inner.count_results() == 3 and inner.get_module("M-S")["left"]["pulse_id"] == 7
    inner.close()
