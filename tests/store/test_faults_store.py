"""The local store's folder vanishing under a running daemon, and a corrupted catalogue at start.

Issue 25 finding 1: ``rm -rf STORE`` while the daemon ran went unnoticed (it kept writing to the
deleted SQLite file, the books said "stored 57, lost 0", the store held nothing). Finding 10: a
catalogue corrupted in its middle opened and served unreadable rows. Each test runs the installed
``vi_stream run`` in a subprocess, as a user does. Every wait is bounded."""
from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from vi_stream.evaluation.simulate import Simulator
from vi_stream.store.local import LocalStore

from ..helpers.daemon import wait_for
from ..helpers.store import make_record

VI_STREAM = os.path.join(os.path.dirname(sys.executable), "vi_stream")
BOOKS = re.compile(r"frames: received (\d+), processed (\d+), rejected (\d+), discarded on stop (\d+); "
                   r"results: stored (\d+), spooled (\d+), set aside (\d+), unrenderable (\d+), lost (\d+), "
                   r"not stored (\d+)")


class Run:
    """``vi_stream run`` in a subprocess: its REST port from the "ready" line, stderr kept as it comes."""

    def __init__(self, model_path: str, cam_port: int, store: str, spool: str):
        self.proc = subprocess.Popen([VI_STREAM, "run", f"tcp://127.0.0.1:{cam_port}", "FLT", "--model", model_path,
                                      "--rest-port", "0", "--output-port", "0", "--auto-start", "--store", store,
                                      "--spool", spool, "--no-store-tiles", "--log-level", "INFO"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        m = wait_for(lambda: self._ready(), timeout=120, interval=0.1)
        self.url = f"http://127.0.0.1:{m.group(1)}"

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"vi_stream run exited {self.proc.returncode}: {self.err[-3000:]}")
        return next((m for m in map(lambda l: re.search(r"ready: REST http://127.0.0.1:(\d+)", l), list(self.lines))
                     if m), None)

    @property
    def err(self) -> str:
        return "".join(self.lines)

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())

    def store_stats(self) -> dict:
        return self.get("/statistics")["statistics"]["store"]

    def post(self, path: str, data: bytes) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def stop(self, carried_over: int = 0) -> tuple[int, ...]:
        """SIGTERM; the books of the day's last line, as numbers (``carried_over``: results this run
        found in the spool from an earlier one)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        assert self.proc.returncode == 0, self.err[-3000:]
        assert "Traceback" not in self.err, self.err[-3000:]
        books = BOOKS.findall(self.err)
        assert books, self.err[-3000:]
        n = tuple(map(int, books[-1]))
        rec_, proc, rej, disc, stored, spooled, aside, unrend, lost, not_stored = n
        assert rec_ == proc + rej + disc, n
        assert proc + carried_over == stored + spooled + aside + unrend + lost + not_stored, n
        assert lost == 0 and not_stored == 0 and aside == 0, n
        return n


@pytest.fixture
def camera():
    sim = Simulator(0, "FLT", fps=6, shape=(256, 256), pool=4)
    port = sim.start()
    sim.run_in_thread()
    yield port
    sim.close()


def _rm_rf(folder: str) -> None:
    """``rm -rf`` as the reporter did, again if a write landed in a subfolder while it ran."""
    wait_for(lambda: subprocess.run(["rm", "-rf", folder]).returncode == 0 and not os.path.exists(folder),
             timeout=10, interval=0.1)


def _assert_all_readable(folder: str) -> int:
    """Every result's images come back as whole PNGs; the number of results."""
    import cv2
    with LocalStore(folder) as store:
        docs = [json.loads(d) for (d,) in store._db.execute("SELECT doc FROM results")]
        for doc in docs:
            for group in (doc.get("original") or {}), (doc.get("mask") or {}):
                for size in group.values():
                    data = store.get_image(size["src_id"])
                    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is not None
        return len(docs)


def test_store_folder_removed_while_running_spools_reports_down_and_refuses_registry_writes(model_path, camera,
                                                                                           tmp_path):
    """Before: the daemon kept "storing" into the deleted SQLite file (up, stored climbing, 0 errors),
    a model registered meanwhile got a version that did not exist, and the books claimed it all."""
    store, spool = str(tmp_path / "store"), str(tmp_path / "spool")
    run = Run(model_path, camera, store, spool)
    try:
        wait_for(lambda: run.store_stats()["stored"] >= 3, timeout=120, interval=0.2)
        _rm_rf(store)
        down = wait_for(lambda: (lambda s: s if not s["up"] else None)(run.store_stats()), timeout=60, interval=0.2)
        assert "removed" in down["down_reason"] and store in down["down_reason"], down
        status = run.get("/status")["store"]
        assert status["up"] is False and "removed" in status["reason"], status
        at_down = down["stored"]
        wait_for(lambda: run.store_stats()["spooled"] >= 3, timeout=60, interval=0.2)
        assert run.store_stats()["stored"] == at_down                 # nothing "stored" into the void
        with open(model_path, "rb") as f:
            code, body = run.post("/api/models?name=while-gone&version=1.0", f.read())
        assert code == 503 and body["error"] == "StoreUnavailable" and "removed" in body["message"], (code, body)
        assert not os.path.exists(store)                              # the daemon never recreates it itself
        os.mkdir(store)                                               # an operator gives it an empty folder
        wait_for(lambda: (lambda s: s["up"] and s["spooled"] == 0)(run.store_stats()), timeout=60, interval=0.2)
        assert run.get("/status")["store"] == {"up": True, "reason": None}
        assert "initialised afresh" in run.err and "previous store's results, images, models and aliases" in run.err
        books = run.stop()
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    stored = books[4]
    assert stored > at_down and books[5] == 0, books
    # Every result the books count as stored after the removal is in the new store, readable.
    assert _assert_all_readable(store) == stored - at_down


def test_a_folder_removed_in_the_middle_of_a_write_is_reported_as_removed(tmp_path, monkeypatch):
    """The daemon's test above caught the folder going while an image was half written: the reason
    was the bare "No such file or directory" of that write, not that the store was removed."""
    from vi_stream.errors import StoreUnavailable
    store = LocalStore(str(tmp_path / "store"))
    store.start()
    real = store._write_file

    def write_as_it_goes(*args):
        _rm_rf(store.folder)
        return real(*args)

    monkeypatch.setattr(store, "_write_file", write_as_it_goes)
    with pytest.raises(StoreUnavailable, match=r"cannot write images: local store: its folder .* was removed"):
        store.put_images({"a" * 64: b"png"})
    assert not os.path.exists(store.folder)


def test_sigterm_while_the_store_folder_is_gone_then_a_restart_replays_every_result(model_path, camera, tmp_path):
    """The books at SIGTERM never count as stored what went into the deleted file; the spool keeps
    the rest, and the next run (the folder made anew at start, as on a first run) stores them all."""
    store, spool = str(tmp_path / "store"), str(tmp_path / "spool")
    run = Run(model_path, camera, store, spool)
    try:
        wait_for(lambda: run.store_stats()["stored"] >= 2, timeout=120, interval=0.2)
        _rm_rf(store)
        at_down = wait_for(lambda: (lambda s: s if not s["up"] else None)(run.store_stats()),
                           timeout=60, interval=0.2)["stored"]
        wait_for(lambda: run.store_stats()["spooled"] >= 3, timeout=60, interval=0.2)
        first = run.stop()
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert first[4] == at_down and first[5] >= 3, (first, at_down)
    assert not os.path.exists(store)
    run = Run(model_path, camera, store, spool)
    try:
        wait_for(lambda: (lambda s: s["up"] and s["spooled"] == 0 and s["stored"] >= first[5])(run.store_stats()),
                 timeout=120, interval=0.2)
        second = run.stop(carried_over=first[5])
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert second[5] == 0
    assert _assert_all_readable(store) == second[4]                   # the carried-over ones and the new ones


def _corrupt_middle(folder: str) -> str:
    """A store of a few hundred results whose catalogue has garbage in a page in its middle."""
    with LocalStore(folder) as store:
        for i in range(0, 300, 20):
            store.write([make_record(p, module=f"M-{p}", tiles=False) for p in range(i, i + 20)])
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path = os.path.join(folder, "catalogue.sqlite")
    size = os.path.getsize(path)
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as f:
        f.seek((size // page // 2) * page + 100)
        f.write(bytes(range(256)) * 8)
    return path


def test_a_catalogue_corrupted_in_its_middle_is_refused_at_start_with_one_line(model_path, tmp_path):
    """Before: the daemon started on it and served rows it could not read."""
    store = str(tmp_path / "store")
    path = _corrupt_middle(store)
    p = subprocess.Popen([VI_STREAM, "run", "tcp://127.0.0.1:9", "FLT", "--model", model_path, "--rest-port", "0",
                          "--output-port", "0", "--store", store, "--spool", str(tmp_path / "spool")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(l) for l in p.stderr], daemon=True).start()
    try:
        wait_for(lambda: p.poll() is not None or any("ready: REST" in l for l in lines), timeout=120, interval=0.1)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
            pytest.fail("vi_stream run started on a corrupted catalogue: " + "".join(lines)[-2000:])
    p.wait(10)
    err = "".join(lines)
    assert p.returncode == 2, (p.returncode, err[-3000:])
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("vi_stream: error: ") and path in last and "quick_check" in last, err[-3000:]


def test_a_spool_inside_the_local_store_folder_is_refused(model_path, tmp_path):
    """Removing the store would take the results waiting for it too."""
    store = str(tmp_path / "store")
    p = subprocess.run([VI_STREAM, "run", "tcp://127.0.0.1:9", "FLT", "--model", model_path, "--store", store,
                        "--spool", os.path.join(store, "spool")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.stderr.strip().splitlines()[-1].startswith("vi_stream: error: --spool ") and "inside" in p.stderr
