"""Model files from an adversary (issue 25, findings 6 and 7), through every door a user opens:
``vi_stream run --model`` (the installed command), ``POST /api/models`` and ``POST /model/reload``
against a running daemon, ``vi_stream models register``.

* npz bombs: a member that inflates to a gibibyte from a megabyte, and one whose header
  declares 40 TB: refused with one line and a 400, and the daemon's peak memory does not move
  (its ``VmHWM`` is reset through ``/proc/PID/clear_refs`` before each request, then read).
* tampering: a threshold edited to 1e6, a zeroed bank with the self-check removed, a zeroed bank
  with the self-check's tolerance set to 1e9: refused (the file's digest no longer matches, and
  the self-check's tolerance is the code's, not the file's). A file without a digest (an older
  save) is refused unless ``--allow-unchecked``, which loads it with a warning.
"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VI_STREAM = os.path.join(os.path.dirname(sys.executable), "vi_stream")
MEMORY_BOUND = 100 * 2**20      # bytes the daemon's peak memory may grow by while refusing a bomb


# ---------------------------------------------------------------------- building bad files
def _members(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write(arrays: dict[str, np.ndarray], dst) -> str:
    with open(dst, "wb") as f:
        np.savez(f, **arrays)
    return str(dst)


def _edit(path: str, dst, change=None, meta=None, drop=()) -> str:
    """A naive edit: members changed with numpy, everything else (a digest included) left as it was."""
    arrays = _members(path)
    for k in drop:
        arrays.pop(k, None)
    if change:
        arrays = {k: change(k, a) for k, a in arrays.items()}
    if meta:
        m = json.loads(arrays["meta"].tobytes())
        meta(m)
        arrays["meta"] = np.frombuffer(json.dumps(m, sort_keys=True).encode(), np.uint8)
    return _write(arrays, dst)


def _bomb(path: str, dst, declared_bytes: int, inflate: bool) -> str:
    """The model's members with ``bank.npy`` replaced: a float32 header declaring ``declared_bytes``
    of bank, followed by the zeros themselves deflated (``inflate``: a 1 MB file holding a GiB), or by
    nothing at all (a header that lies)."""
    rows = declared_bytes // (4 * 16)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(dst, "w") as out:
        for info in src.infolist():
            if info.filename != "bank.npy":
                out.writestr(info.filename, src.read(info.filename))
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (rows, 16)})
        if not inflate:
            out.writestr("bank.npy", header.getvalue() + b"\0" * 4096)
            return str(dst)
        member = zipfile.ZipInfo("bank.npy")
        member.compress_type = zipfile.ZIP_DEFLATED
        chunk = bytes(8 << 20)
        with out.open(member, "w", force_zip64=True) as f:
            f.write(header.getvalue())
            for _ in range(rows * 64 // len(chunk)):
                f.write(chunk)
    return str(dst)


@pytest.fixture(scope="module")
def files(model_path, tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad-models")
    zero_bank = lambda k, a: np.zeros_like(a) if k == "bank" else a   # noqa: E731
    out = {
        "inflating": _bomb(model_path, d / "inflating.npz", 2**30, inflate=True),
        "40TB": _bomb(model_path, d / "40TB.npz", 40 * 10**12, inflate=False),
        "threshold": _edit(model_path, d / "threshold.npz", meta=lambda m: m.update(threshold=1e6)),
        "no-self-check": _edit(model_path, d / "no-self-check.npz", zero_bank,
                               meta=lambda m: m.pop("self_check"), drop=("check_tiles",)),
        "tolerance": _edit(model_path, d / "tolerance.npz", zero_bank,
                           meta=lambda m: m["self_check"].update(rtol=1e9, atol=1e9)),
        # what an older vi_stream saved: the self-check, no digest
        "undigested": _edit(model_path, d / "undigested.npz", drop=("digest",)),
        # a zeroed bank in an undigested file with its tolerance widened: the self-check still holds
        "undigested-tolerance": _edit(model_path, d / "undigested-tolerance.npz", zero_bank, drop=("digest",),
                                      meta=lambda m: m["self_check"].update(rtol=1e9, atol=1e9)),
    }
    assert os.path.getsize(out["inflating"]) < 4 << 20       # a GiB of bank in a few MB
    return out


# ---------------------------------------------------------------------- a running daemon
def _start(args: list[str], env=None) -> subprocess.Popen:
    return subprocess.Popen([VI_STREAM, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)


def _until_ready_or_exit(p: subprocess.Popen, timeout: float = 120) -> tuple[int | None, list[str]]:
    """Read ``p``'s stderr until it says ready (returns (REST port, lines)) or exits ((None, lines))."""
    lines: list[str] = []
    box: dict = {}

    def read():
        for line in p.stderr:
            lines.append(line.rstrip("\n"))
            m = re.search(r"ready: REST http://127\.0\.0\.1:(\d+)", line)
            if m and "port" not in box:
                box["port"] = int(m.group(1))
        box["eof"] = True

    threading.Thread(target=read, daemon=True).start()
    end = time.monotonic() + timeout
    while time.monotonic() < end and "port" not in box and "eof" not in box:
        time.sleep(0.05)
    if "eof" in box:
        p.wait(timeout=30)
        return None, lines
    assert "port" in box, f"neither ready nor exited within {timeout} s: {lines[-5:]}"
    return box["port"], lines


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def _run_args(model: str, store: str, *extra: str) -> list[str]:
    return ["run", "tcp://127.0.0.1:1", "CAM", "--model", model, "--store", store, "--rest-port", "0",
            "--output-port", "0", *extra]


@pytest.fixture(scope="module")
def daemon(model_path, tmp_path_factory):
    """``vi_stream run`` with the good model and a local store: (base URL, process)."""
    state = tmp_path_factory.mktemp("daemon-state")
    p = _start(_run_args(model_path, str(state / "store")), env=dict(os.environ, VI_STREAM_STATE_DIR=str(state)))
    try:
        port, lines = _until_ready_or_exit(p)
        assert port, "\n".join(lines[-10:])
        yield f"http://127.0.0.1:{port}", p
    finally:
        _stop(p)


def _status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def _peak_growth(pid: int, action) -> tuple[object, int]:
    """(action(), how far the process's peak resident memory rose above its resident memory before)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")          # resets VmHWM to the current VmRSS
    before = _status(pid, "VmRSS")
    result = action()
    return result, _status(pid, "VmHWM") - before


def _upload(url: str, path: str, name: str) -> requests.Response:
    with open(path, "rb") as f:
        data = f.read()
    return requests.post(f"{url}/api/models", params={"name": name}, data=data, timeout=120,
                         headers={"Content-Type": "application/octet-stream"})


def _reload(url: str, path: str) -> requests.Response:
    return requests.post(f"{url}/model/reload", json={"path": path}, timeout=120)


def _one_line_400(r: requests.Response, *words: str) -> str:
    assert r.status_code == 400, (r.status_code, r.text[:500])
    message = r.json()["message"]
    assert "\n" not in message, message
    for w in words:
        assert w in message, message
    return message


# ---------------------------------------------------------------------- finding 6: npz bombs
@pytest.mark.parametrize("bomb, words", [("inflating", "bank"), ("40TB", "bank")])
def test_an_npz_bomb_is_refused_over_rest_with_400_and_the_memory_stays_flat(daemon, files, bomb, words):
    url, p = daemon
    r, grew = _peak_growth(p.pid, lambda: _upload(url, files[bomb], "bomb"))
    _one_line_400(r, words)
    assert grew < MEMORY_BOUND, f"registering {bomb} raised the daemon's peak memory by {grew / 2**20:.0f} MB"
    r, grew = _peak_growth(p.pid, lambda: _reload(url, files[bomb]))
    _one_line_400(r, words)
    assert grew < MEMORY_BOUND, f"reloading {bomb} raised the daemon's peak memory by {grew / 2**20:.0f} MB"
    assert requests.get(f"{url}/status", timeout=10).status_code == 200
    assert requests.get(f"{url}/api/models", timeout=10).json()["models"] == []


def run_refuses_in_one_line(path: str, word: str) -> None:
    """``vi_stream run --model PATH`` exits 2 before it is ready, with one error line naming ``word``."""
    p = _start(_run_args(path, "off"))
    try:
        port, lines = _until_ready_or_exit(p)
    finally:
        _stop(p)
    assert port is None and p.returncode == 2, (p.returncode, lines[-8:])
    errors = [line for line in lines if "error" in line.lower() or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith("vi_stream: error:") and word in errors[0], lines[-8:]


@pytest.mark.parametrize("bomb", ["inflating", "40TB"])
def test_run_with_an_npz_bomb_exits_non_zero_with_one_line(files, bomb, tmp_path):
    run_refuses_in_one_line(files[bomb], "bank")


def test_the_file_check_reads_no_member_before_its_header_and_sizes_are_checked(files):
    """Unit: the check refuses each bomb naming the member, declared size and limit, without reading data."""
    from vi_stream.errors import ModelError
    from vi_stream.model import read_meta
    for bomb, words in (("inflating", r"bank.*(compress|inflate)"), ("40TB", r"bank.*40")):
        with pytest.raises(ModelError, match=words):
            read_meta(files[bomb])


# ---------------------------------------------------------------------- finding 7: tampering
TAMPERED = ["threshold", "no-self-check", "tolerance"]


@pytest.mark.parametrize("kind", TAMPERED)
def test_a_tampered_model_is_refused_by_run(files, kind):
    p = _start(_run_args(files[kind], "off"))
    try:
        port, lines = _until_ready_or_exit(p)
    finally:
        _stop(p)
    assert port is None, f"the {kind} file was accepted: the daemon started"
    assert p.returncode not in (0, None)
    errors = [line for line in lines if "error" in line.lower() or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith("vi_stream: error:"), lines[-8:]
    assert "digest" in errors[0], errors[0]


@pytest.mark.parametrize("kind", TAMPERED + ["undigested"])
def test_a_tampered_or_undigested_model_is_refused_over_rest(daemon, files, kind):
    url, _p = daemon
    _one_line_400(_upload(url, files[kind], "tampered"), "digest")
    _one_line_400(_reload(url, files[kind]), "digest")
    assert requests.get(f"{url}/api/models", timeout=10).json()["models"] == []
    assert requests.get(f"{url}/model", timeout=10).json()["model"]["threshold"] < 1e6


def test_allow_unchecked_loads_an_undigested_file_with_a_warning(files):
    p = _start(_run_args(files["undigested"], "off"))
    try:
        port, lines = _until_ready_or_exit(p)
    finally:
        _stop(p)
    assert port is None and any("--allow-unchecked" in line for line in lines), lines[-5:]
    p = _start(_run_args(files["undigested"], "off", "--allow-unchecked"))
    try:
        port, lines = _until_ready_or_exit(p)
        assert port, lines[-8:]
        warnings = [line for line in lines if line.startswith("<4>") or "WARNING" in line]   # journal priority 4
        assert any("no digest" in line and "--allow-unchecked" in line for line in warnings), lines
        assert requests.get(f"http://127.0.0.1:{port}/status", timeout=10).status_code == 200
    finally:
        _stop(p)


def test_allow_unchecked_does_not_lift_the_self_check(files):
    """The tolerance is the code's: widening it in an undigested file lets no zeroed bank through."""
    p = _start(_run_args(files["undigested-tolerance"], "off", "--allow-unchecked"))
    try:
        port, lines = _until_ready_or_exit(p)
    finally:
        _stop(p)
    assert port is None and any("self-check" in line for line in lines), lines[-5:]


def test_models_register_refuses_an_undigested_file_unless_allowed(files, tmp_path):
    store = str(tmp_path / "store")
    env = dict(os.environ, VI_STREAM_STATE_DIR=str(tmp_path))

    def register(*extra):
        return subprocess.run([VI_STREAM, "models", "register", files["undigested"], "--name", "old", "--store", store,
                               *extra], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    r = register()
    assert r.returncode != 0 and "digest" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = register("--allow-unchecked")
    assert r.returncode == 0, r.stderr
    assert "old@1.0" in r.stdout and "no digest" in r.stderr
    r = subprocess.run([VI_STREAM, "models", "register", files["threshold"], "--name", "bad", "--store", store,
                        "--allow-unchecked"], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode != 0 and "digest does not match" in r.stderr, r.stderr     # the flag lifts no mismatch


# ---------------------------------------------------------------------- the SFTP import
def test_models_register_from_sftp_refuses_a_bomb_and_keeps_nothing(files, tmp_path):
    import shutil
    from . import cluster_helpers
    if not os.path.exists(cluster_helpers.SSHD):
        pytest.skip("openssh-server not installed (.ci/run installs it)")
    (tmp_path / "sshd").mkdir()
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    for bomb in ("inflating", "40TB"):
        shutil.copy(files[bomb], project / "models" / f"{bomb}.npz")
    proc, settings = cluster_helpers.sshd(tmp_path / "sshd", "")
    try:
        state = tmp_path / "state"
        env = dict(os.environ, SFTP_HOST="127.0.0.1", SFTP_PORT=str(settings.port), SFTP_USER=settings.user,
                   SFTP_KEY=settings.key_file, SFTP_PROJECT_PATH=str(project),
                   SFTP_KNOWN_HOSTS=str(tmp_path / "sshd" / "known_hosts"), VI_STREAM_STATE_DIR=str(state))
        for bomb in ("inflating", "40TB"):
            r = subprocess.run([VI_STREAM, "models", "register", "--sftp", f"{bomb}.npz", "--name", "b", "--store",
                                str(tmp_path / "store")], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
            assert r.returncode == 2 and "bank" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert not os.path.exists(state / "models" / f"{bomb}.npz")      # refused before it was kept
    finally:
        cluster_helpers.stop(proc)
