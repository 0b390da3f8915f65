"""Model files altered on purpose (edited, re-sealed, bombs) and `vi_stream run` processes that load them."""
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
import requests

from . import ROOT


def file_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def meta_change(edit):
    def change(name, a):
        if name != "meta":
            return a
        meta = json.loads(a.tobytes())
        edit(meta)
        return np.frombuffer(json.dumps(meta).encode(), np.uint8)
    return change


def rewrite_model(src: str, dst: str, change, seal: bool = True) -> str:
    """Copy a model file, letting ``change(name, array)`` alter members. ``seal``: with a new digest,
    as a re-save (or a forger who recomputes it) leaves it; else the old one stays (a naive edit)."""
    from vi_stream.model.filecheck import digest_member
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for k in list(arrays):
        arrays[k] = change(k, arrays[k])
    if seal:
        arrays["digest"] = digest_member(arrays)
    with open(dst, "wb") as f:
        np.savez(f, **arrays)
    return dst


VI_STREAM = os.path.join(os.path.dirname(sys.executable), "vi_stream")


MEMORY_BOUND = 100 * 2**20      # bytes the daemon's peak memory may grow by while refusing a bomb


def members(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_npz(arrays: dict[str, np.ndarray], dst) -> str:
    with open(dst, "wb") as f:
        np.savez(f, **arrays)
    return str(dst)


def edit_model(path: str, dst, change=None, meta=None, drop=()) -> str:
    """A naive edit: members changed with numpy, everything else (a digest included) left as it was."""
    arrays = members(path)
    for k in drop:
        arrays.pop(k, None)
    if change:
        arrays = {k: change(k, a) for k, a in arrays.items()}
    if meta:
        m = json.loads(arrays["meta"].tobytes())
        meta(m)
        arrays["meta"] = np.frombuffer(json.dumps(m, sort_keys=True).encode(), np.uint8)
    return write_npz(arrays, dst)


def bomb(path: str, dst, declared_bytes: int, inflate: bool) -> str:
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


def start_run(args: list[str], env=None) -> subprocess.Popen:
    return subprocess.Popen([VI_STREAM, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)


def until_ready_or_exit(p: subprocess.Popen, timeout: float = 120) -> tuple[int | None, list[str]]:
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


def stop_process(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def run_args(model: str, store: str, *extra: str) -> list[str]:
    return ["run", "tcp://127.0.0.1:1", "CAM", "--model", model, "--store", store, "--rest-port", "0",
            "--output-port", "0", *extra]


def proc_status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def peak_growth(pid: int, action) -> tuple[object, int]:
    """(action(), how far the process's peak resident memory rose above its resident memory before)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")          # resets VmHWM to the current VmRSS
    before = proc_status(pid, "VmRSS")
    result = action()
    return result, proc_status(pid, "VmHWM") - before


def upload_model(url: str, path: str, name: str) -> requests.Response:
    with open(path, "rb") as f:
        data = f.read()
    return requests.post(f"{url}/api/models", params={"name": name}, data=data, timeout=120,
                         headers={"Content-Type": "application/octet-stream"})


def reload_model(url: str, path: str) -> requests.Response:
    return requests.post(f"{url}/model/reload", json={"path": path}, timeout=120)


def one_line_400(r: requests.Response, *words: str) -> str:
    assert r.status_code == 400, (r.status_code, r.text[:500])
    message = r.json()["message"]
    assert "\n" not in message, message
    for w in words:
        assert w in message, message
    return message


def run_refuses_in_one_line(path: str, word: str) -> None:
    """``vi_stream run --model PATH`` exits 2 before it is ready, with one error line naming ``word``."""
    p = start_run(run_args(path, "off"))
    try:
        port, lines = until_ready_or_exit(p)
    finally:
        stop_process(p)
    assert port is None and p.returncode == 2, (p.returncode, lines[-8:])
    errors = [line for line in lines if "error" in line.lower() or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith("vi_stream: error:") and word in errors[0], lines[-8:]


def register_two_versions(registry, model_path: str, folder, name: str) -> None:
    """``name@1.0`` (the test model) and ``name@1.1`` (the same fit, its threshold 1.0) in ``registry``."""
    second = rewrite_model(model_path, str(folder / "v2.npz"), meta_change(lambda m: m.update(threshold=1.0)))
    for version, path in (("1.0", model_path), ("1.1", second)):
        with open(path, "rb") as f:
            registry.register(f.read(), name, version)
