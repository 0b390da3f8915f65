"""A real single-node Slurm cluster and a loopback sshd for tests, started without systemd.

``slurm_cluster`` writes a small slurm.conf (this host at 127.0.0.1 with 2 CPUs,
proctrack/pgid, task/none, accounting off, jobcomp/filetxt) on free ports, starts munged
with its own key and socket, then slurmctld and slurmd, and waits until the node is
idle. It needs root (slurmd runs jobs as their user), Debian's slurmctld, slurmd,
slurm-client and munge, and openssh-server (the submit host is reached over SSH); each
missing prerequisite skips the tests with its reason, unless VI_STREAM_REQUIRE_SLURM is
set (CI), where that is a failure. One cluster serves the whole session (conftest.py
imports the fixture), as starting one takes seconds. VI_STREAM_TEST_SSHD names another sshd.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time

import pytest

from vi_stream.io.sftp import SftpSettings

SSHD = os.environ.get("VI_STREAM_TEST_SSHD") or shutil.which("sshd") or "/usr/sbin/sshd"
SLURM_BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not ready within {timeout} s")


def sshd(d, authorized_pub: str) -> tuple[subprocess.Popen, SftpSettings]:
    """A loopback sshd (key and password login, internal-sftp) on a free port; the client's settings."""
    for name in ("host_key", "client_key"):
        if not (d / name).exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    shutil.copy(authorized_pub or d / "client_key.pub", d / "authorized_keys")
    os.makedirs("/run/sshd", exist_ok=True)
    proc = None
    for _attempt in range(3):
        port = free_port()
        (d / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
            "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nPermitRootLogin yes\nUsePAM no\n"
            f"StrictModes no\nSubsystem sftp internal-sftp\nPidFile {d / 'sshd.pid'}\nLogLevel ERROR\n")
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
        end = time.monotonic() + 10
        while time.monotonic() < end and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                    if c.recv(4).startswith(b"SSH-"):
                        break
            except OSError:
                time.sleep(0.05)
        if proc.poll() is None:
            break
    assert proc is not None and proc.poll() is None, proc.stderr.read().decode() if proc else "no sshd"
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    return proc, SftpSettings("127.0.0.1", str(d), getpass.getuser(), key_file=str(d / "client_key"), port=port,
                              known_hosts=str(d / "known_hosts"), timeout=10)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def slurm_available() -> str | None:
    """Why a real cluster cannot run here, or None."""
    missing = [b for b in SLURM_BINARIES if shutil.which(b) is None and not os.path.exists(f"/usr/sbin/{b}")]
    if missing:
        return f"Slurm/munge not installed ({', '.join(missing)}): apt-get install slurmctld slurmd slurm-client munge"
    if os.geteuid() != 0:
        return "slurmd needs root (CI runs as root)"
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        return f"openssh-server not installed (no {SSHD} or no ssh-keygen): apt-get install openssh-server"
    return None


def start_slurm(d) -> tuple[dict[str, str], list[subprocess.Popen], str]:
    """munged + slurmctld + slurmd in ``d``; (environment for the clients, processes, node name)."""
    host = socket.gethostname()
    (d / "munge").mkdir(mode=0o700)
    for sub in ("state", "spool", "log"):
        (d / sub).mkdir()
    key, sock = d / "munge" / "munge.key", d / "munge" / "munge.sock"
    subprocess.run(["mungekey", "-c", "-k", str(key), "-b", "1024"], check=True, capture_output=True)
    procs = [subprocess.Popen(["munged", "-F", f"--key-file={key}", f"--socket={sock}", f"--pid-file={d / 'munged.pid'}",
                               f"--log-file={d / 'log' / 'munged.log'}", f"--seed-file={d / 'munge' / 'seed'}", "--force"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    _wait(sock.exists, 15, "munged")
    ctl, slurmd_port = free_port(), free_port()
    conf = d / "slurm.conf"
    conf.write_text(f"""ClusterName=vitest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctl}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
StateSaveLocation={d / 'state'}
SlurmdSpoolDir={d / 'spool'}
SlurmctldPidFile={d / 'slurmctld.pid'}
SlurmdPidFile={d / 'slurmd.pid'}
SlurmctldLogFile={d / 'log' / 'slurmctld.log'}
SlurmdLogFile={d / 'log' / 'slurmd.log'}
ProctrackType=proctrack/pgid
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={d / 'jobcomp.txt'}
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=2
Waittime=0
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    env = dict(os.environ, SLURM_CONF=str(conf))
    procs.append(subprocess.Popen(["slurmctld", "-D", "-c", "-f", str(conf)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    _wait(lambda: subprocess.run(["scontrol", "ping"], env=env, capture_output=True, text=True).stdout.count("UP") > 0,
          30, "slurmctld")
    procs.append(subprocess.Popen(["slurmd", "-D", "-f", str(conf)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    _wait(lambda: "idle" in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                           text=True).stdout, 60, "slurmd")
    return {"SLURM_CONF": str(conf)}, procs, host


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """(SSH settings of the submit host, environment for Slurm's clients, node name)."""
    why = slurm_available()
    if why:
        if os.environ.get("VI_STREAM_REQUIRE_SLURM"):
            pytest.fail(why)
        pytest.skip(why)
    d = tmp_path_factory.mktemp("cluster")
    procs: list[subprocess.Popen] = []
    try:
        ssh_proc, settings = sshd(d, "")
        procs.append(ssh_proc)
        env, slurm, host = start_slurm(d)
        procs += slurm
        yield settings, env, host
    finally:
        for p in reversed(procs):
            stop(p)
