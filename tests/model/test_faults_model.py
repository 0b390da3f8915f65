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

import os
import subprocess

import pytest
import requests

from ..helpers import ROOT
from ..helpers.modelfiles import (
    MEMORY_BOUND,
    VI_STREAM,
    one_line_400,
    peak_growth,
    reload_model,
    run_args,
    run_refuses_in_one_line,
    start_run,
    stop_process,
    until_ready_or_exit,
    upload_model,
)

# ---------------------------------------------------------------------- building bad files










# ---------------------------------------------------------------------- a running daemon




















# ---------------------------------------------------------------------- finding 6: npz bombs
@pytest.mark.parametrize("bomb, words", [("inflating", "bank"), ("40TB", "bank")])
def test_an_npz_bomb_is_refused_over_rest_with_400_and_the_memory_stays_flat(daemon, files, bomb, words):
    url, p = daemon
    r, grew = peak_growth(p.pid, lambda: upload_model(url, files[bomb], "bomb"))
    one_line_400(r, words)
    assert grew < MEMORY_BOUND, f"registering {bomb} raised the daemon's peak memory by {grew / 2**20:.0f} MB"
    r, grew = peak_growth(p.pid, lambda: reload_model(url, files[bomb]))
    one_line_400(r, words)
    assert grew < MEMORY_BOUND, f"reloading {bomb} raised the daemon's peak memory by {grew / 2**20:.0f} MB"
    assert requests.get(f"{url}/status", timeout=10).status_code == 200
    assert requests.get(f"{url}/api/models", timeout=10).json()["models"] == []




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
    p = start_run(run_args(files[kind], "off"))
    try:
        port, lines = until_ready_or_exit(p)
    finally:
        stop_process(p)
    assert port is None, f"the {kind} file was accepted: the daemon started"
    assert p.returncode not in (0, None)
    errors = [line for line in lines if "error" in line.lower() or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith("vi_stream: error:"), lines[-8:]
    assert "digest" in errors[0], errors[0]


@pytest.mark.parametrize("kind", TAMPERED + ["undigested"])
def test_a_tampered_or_undigested_model_is_refused_over_rest(daemon, files, kind):
    url, _p = daemon
    one_line_400(upload_model(url, files[kind], "tampered"), "digest")
    one_line_400(reload_model(url, files[kind]), "digest")
    assert requests.get(f"{url}/api/models", timeout=10).json()["models"] == []
    assert requests.get(f"{url}/model", timeout=10).json()["model"]["threshold"] < 1e6


def test_allow_unchecked_loads_an_undigested_file_with_a_warning(files):
    p = start_run(run_args(files["undigested"], "off"))
    try:
        port, lines = until_ready_or_exit(p)
    finally:
        stop_process(p)
    assert port is None and any("--allow-unchecked" in line for line in lines), lines[-5:]
    p = start_run(run_args(files["undigested"], "off", "--allow-unchecked"))
    try:
        port, lines = until_ready_or_exit(p)
        assert port, lines[-8:]
        warnings = [line for line in lines if line.startswith("<4>") or "WARNING" in line]   # journal priority 4
        assert any("no digest" in line and "--allow-unchecked" in line for line in warnings), lines
        assert requests.get(f"http://127.0.0.1:{port}/status", timeout=10).status_code == 200
    finally:
        stop_process(p)


def test_allow_unchecked_does_not_lift_the_self_check(files):
    """The tolerance is the code's: widening it in an undigested file lets no zeroed bank through."""
    p = start_run(run_args(files["undigested-tolerance"], "off", "--allow-unchecked"))
    try:
        port, lines = until_ready_or_exit(p)
    finally:
        stop_process(p)
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

    from ..helpers import cluster as cluster_helpers
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
