"""Running as a systemd service: sd_notify on a real AF_UNIX socket, watchdog, journal lines, SIGTERM."""
import io
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from vi_stream.evaluation.simulate import Simulator
from vi_stream.service.systemd import (
    JournalFormatter,
    Notifier,
    setup_logging,
    status_line,
    supervise,
    watchdog_interval,
)

from ..helpers import ROOT
from ..helpers.daemon import wait_for


def _drain(s, seconds=0.0):
    """Datagrams arriving within ``seconds`` (at least until the socket is quiet for 0.2 s)."""
    msgs = []
    end = time.monotonic() + seconds
    while True:
        try:
            msgs.append(s.recv(4096).decode())
            if seconds and time.monotonic() >= end:
                return msgs
        except socket.timeout:
            if time.monotonic() >= end:
                return msgs


def test_notifier_sends_datagrams_and_is_a_noop_without_systemd(notify_socket):
    path, s = notify_socket
    n = Notifier(path)
    assert n.notify(READY="1", STATUS="hello")
    assert _drain(s) == ["READY=1\nSTATUS=hello"]
    assert not Notifier("").notify(READY="1")  # not under systemd: nothing, no error


def test_abstract_notify_socket():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"vi_stream-test-{os.getpid()}"
    s.bind("\0" + name)
    s.settimeout(2)
    try:
        assert Notifier("@" + name).notify(WATCHDOG="1")
        assert s.recv(100) == b"WATCHDOG=1"
    finally:
        s.close()


def test_watchdog_interval_is_half_of_watchdog_sec_and_respects_pid():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None


class _Proc:
    def __init__(self):
        self.ok = True

    def healthy(self):
        return self.ok

    def statistics(self):
        return {"state": "processing", "frames_processed": 3, "frames_per_s": 1.5, "megapixels_per_s": 0.9,
                "latency_ms": {"p50": 12.0}, "frames_rejected_total": 1, "output_dropped": 0}


def test_watchdog_pings_only_while_healthy(notify_socket):
    path, s = notify_socket
    proc, stop = _Proc(), threading.Event()
    t = threading.Thread(target=supervise, args=(proc, Notifier(path), stop),
                         kwargs={"status_every": 0.1, "watchdog": 0.05})
    t.start()
    try:
        healthy = _drain(s, 0.5)
        proc.ok = False
        _drain(s, 0.2)  # in flight
        stuck = _drain(s, 0.5)
    finally:
        stop.set()
        t.join()
    assert any("WATCHDOG=1" in m for m in healthy)
    assert any(m.startswith("STATUS=processing: 3 frames") for m in healthy)
    assert not any("WATCHDOG=1" in m for m in stuck)
    assert any(m.startswith("STATUS=") for m in stuck)


def test_log_lines_carry_journal_priorities_and_no_timestamps():
    buf = io.StringIO()
    setup_logging("DEBUG", buf)
    log = logging.getLogger("vi_stream.test")
    log.error("bad thing\nsecond line")
    log.warning("careful")
    log.info("fine")
    log.debug("detail")
    setup_logging("INFO")
    assert buf.getvalue().splitlines() == ["<3>vi_stream.test: bad thing | second line", "<4>vi_stream.test: careful",
                                           "<6>vi_stream.test: fine", "<7>vi_stream.test: detail"]
    assert isinstance(logging.getLogger("vi_stream").handlers[0].formatter, JournalFormatter)
    assert "1.50 fps" in status_line(_Proc().statistics())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (.ci/run installs it)")
@pytest.mark.parametrize("template", ["vi_stream@", "vi_stream-worker@", "vi_stream-merge@"])
def test_units_pass_systemd_analyze_verify(tmp_path, template):
    unit = os.path.join(ROOT, "systemd", f"{template}.service")
    inst = tmp_path / f"{template}EXAMPLE.service"
    shutil.copy(unit, inst)
    for path in (unit, str(inst)):
        p = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stderr.strip() == "", p.stderr
    text = open(unit).read()
    if template == "vi_stream-merge@":   # watched like the daemon (tests/scale/test_faults_merge.py drives it)
        for key in ("ExecStart=/usr/bin/env vi_stream merge", "DynamicUser=yes", "Type=notify", "NotifyAccess=main",
                    "WatchdogSec="):
            assert key in text
        return
    for key in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "StateDirectory=", "NoNewPrivileges=yes",
                "ProtectSystem=strict", "PrivateTmp=yes", "DynamicUser=yes", "EnvironmentFile=/etc/vi_stream/%i.env"):
        assert key in text


def test_sigterm_under_load_drains_and_exits_0(notify_socket, model_path, tmp_path):
    path, s = notify_socket
    sim = Simulator(0, "SVC", fps=20, shape=(512, 512), pool=3)
    port = sim.start()
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="2000000")
    p = subprocess.Popen([sys.executable, "-m", "vi_stream.cli", "run", f"tcp://127.0.0.1:{port}", "SVC",
                          "--model", model_path, "--rest-port", "0", "--output-port", "0", "--auto-start"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sim.run_in_thread()
    try:
        msgs = []
        wait_for(lambda: msgs.extend(_drain(s)) or any("READY=1" in m for m in msgs), timeout=120)
        # load: wait until frames are flowing (STATUS lines report them), then SIGTERM
        wait_for(lambda: msgs.extend(_drain(s)) or any("WATCHDOG=1" in m for m in msgs), timeout=30)
        wait_for(lambda: msgs.extend(_drain(s)) or any(m.startswith("STATUS=processing:") and
                                                        not m.startswith("STATUS=processing: 0 frames") for m in msgs),
                 timeout=60)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        msgs.extend(_drain(s))
    finally:
        if p.poll() is None:
            p.kill()
        sim.close()
    assert p.returncode == 0, err
    assert any(m.startswith("STOPPING=1") for m in msgs)
    assert "processing stopped" in err and "Traceback" not in err
    assert "<6>vi_stream: ready: REST http://127.0.0.1:" in err


def test_structured_journal_entries_over_the_native_protocol(tmp_path):
    path = str(tmp_path / "journal.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    try:
        setup_logging("INFO", prefix="CAM1", journal_socket=path)
        log = logging.getLogger("vi_stream.processor")
        log.warning("rejected frame", extra={"pulse_id": 812, "module_name": "M-7"})
        log.error("two\nlines")
        first, second = s.recv(65536), s.recv(65536)
    finally:
        setup_logging("INFO")
        s.close()
    fields = dict(line.split(b"=", 1) for line in first.rstrip(b"\n").split(b"\n"))
    assert fields == {b"SYSLOG_IDENTIFIER": b"vi_stream", b"VI_PREFIX": b"CAM1", b"MESSAGE": b"rejected frame",
                      b"PRIORITY": b"4", b"LOGGER": b"vi_stream.processor", b"VI_MODULE": b"M-7",
                      b"VI_PULSE_ID": b"812"}
    # multi-line messages use the binary-safe form: KEY\n<u64 length><bytes>\n
    import struct
    i = second.index(b"MESSAGE\n") + len(b"MESSAGE\n")
    n = struct.unpack("<Q", second[i:i + 8])[0]
    assert second[i + 8:i + 8 + n] == b"two\nlines" and b"PRIORITY=3\n" in second


def test_journal_is_used_only_when_stderr_is_the_journal():
    from vi_stream.service.systemd import journal_connected
    st = os.fstat(2)
    assert journal_connected({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert not journal_connected({"JOURNAL_STREAM": "1:2"})
    assert not journal_connected({})


def test_simulator_send_never_blocks_when_the_receiver_vanishes_after_the_poll():
    """The camera simulator polls for room, then sends; a receiver gone in between used to leave
    the send blocked for ever, and close(), joining in vain, then closed the socket under it
    (libzmq aborts the process: seen once in CI). Here the poll says "room" with no receiver."""
    sim = Simulator(0, "SIM", fps=0, shape=(128, 128), pool=1)
    sim.start()
    real = sim._sock

    class SaysReady:
        def poll(self, timeout, flags):
            return True

        def __getattr__(self, name):
            return getattr(real, name)

    sim._sock = SaysReady()
    done = []
    t = threading.Thread(target=lambda: done.append(sim.send(0)), daemon=True)
    t.start()
    t.join(5)
    sim._sock = real
    try:
        assert not t.is_alive(), "send still blocked after 5 s"
        assert done == [False] and sim.sent == 0
    finally:
        if not t.is_alive():  # closing the socket under a blocked send would abort the test run
            sim.close()


def _read_only_install(cmd: list[str], package: str, env: dict) -> subprocess.CompletedProcess:
    """``cmd`` as the daemon runs under its unit (ProtectSystem=strict, ProtectHome, DynamicUser): the
    installed package read-only (a bind mount in a mount namespace of its own; as root, else in a user
    namespace too) and no writable home."""
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    for unshare in (["unshare", "-m"], ["unshare", "-rm"]):
        p = subprocess.run([*unshare, "--propagation", "private", "sh", "-c", script, package, *cmd],
                           capture_output=True, text=True, timeout=300, env=env)
        if "unshare failed" not in p.stderr and "mount:" not in p.stderr[:200]:
            return p
    return p


@pytest.fixture
def read_only(tmp_path):
    """(package folder, env, run): the environment of a service with its state in tmp_path/state."""
    import vi_stream
    package = os.path.dirname(vi_stream.__file__)
    probe = _read_only_install(["sh", "-c", f"touch {package}/x 2>/dev/null && exit 1 || exit 0"], package,
                               dict(os.environ))
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here to make the install read-only: {probe.stderr.strip()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_", "VI_STREAM_NUMBA"))}
    env.update(HOME=package, VI_STREAM_STATE_DIR=str(tmp_path / "state"), TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    def run(code: str) -> subprocess.CompletedProcess:
        return _read_only_install([sys.executable, "-c", code], package, env)
    return package, env, run


@pytest.mark.parametrize("first", ["vi_stream.threads", "vi_stream.search.scan", "vi_stream.model.tiling"])
def test_a_read_only_install_without_a_home_caches_its_kernels_in_the_state_folder(read_only, tmp_path, first):
    """numba refuses to import a kernel it has nowhere to cache ("no locator available"): with the
    package read-only and no writable home, the daemon could not even import its model under its unit.
    Imported first by each way in, then every module with a kernel: a kernel compiled there is cached
    in $VI_STREAM_STATE_DIR/numba (the unit's StateDirectory). (One kernel: all of them take a minute.)"""
    package, _env, run = read_only
    kernel_modules = sorted({f"vi_stream.{os.path.relpath(os.path.join(d, f), package)[:-3].replace(os.sep, '.')}"
                             for d, _s, files in os.walk(package) for f in files
                             if f.endswith(".py") and "cache=True" in open(os.path.join(d, f)).read()})
    assert {"vi_stream.threads", "vi_stream.model.tiling", "vi_stream.search.scan"} <= set(kernel_modules)
    p = run(f"import importlib; importlib.import_module({first!r}); "
            f"[importlib.import_module(m) for m in {kernel_modules!r}]; "
            "import numpy as np; from vi_stream.search.scan import row_sq; "
            "print(float(row_sq(np.ones((8, 8), np.float32)).sum()))")
    assert p.returncode == 0 and p.stdout.strip() == "64.0", p.stderr[-2000:]
    cached = [f for _d, _s, files in os.walk(tmp_path / "state" / "numba") for f in files]
    assert any(f.startswith("scan.row_sq") and f.endswith(".nbi") for f in cached), cached


def test_without_a_writable_state_folder_the_kernels_go_to_a_private_temporary_one(read_only, tmp_path):
    """The state folder read-only too: a temporary folder of this user's own, never one another user
    made or may write to (numba loads its cache with pickle)."""
    package, env, run = read_only
    env["VI_STREAM_STATE_DIR"] = os.path.join(package, "state")            # inside the read-only mount
    code = "import vi_stream.threads, os; print(os.environ['NUMBA_CACHE_DIR'])"
    p = run(code)
    mine = tmp_path / "tmp" / f"vi_stream-numba-{os.getuid()}"
    assert p.returncode == 0 and p.stdout.strip() == str(mine), p.stderr[-2000:]
    assert oct(mine.stat().st_mode & 0o777) == "0o700"
    mine.chmod(0o777)                                                       # made open to everyone: not used
    p = run(code)
    chosen = p.stdout.strip()
    assert p.returncode == 0 and chosen != str(mine) and os.path.basename(chosen).startswith("vi_stream-numba-")
    assert oct(os.stat(chosen).st_mode & 0o777) == "0o700"
    # a folder chosen so by a parent (a Slurm task inherits its submitter's environment) is checked again
    env["NUMBA_CACHE_DIR"] = env["VI_STREAM_NUMBA_CACHE"] = os.path.join(package, "elsewhere")
    mine.chmod(0o700)
    p = run(code)
    assert p.returncode == 0 and p.stdout.strip() == str(mine), p.stderr[-2000:]
    env["NUMBA_CACHE_DIR"], env["VI_STREAM_NUMBA_CACHE"] = str(tmp_path / "users"), ""   # a user's own: kept
    p = run(code)
    assert p.returncode == 0 and p.stdout.strip() == str(tmp_path / "users"), p.stderr[-2000:]
