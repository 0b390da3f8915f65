"""Slurm through a shell: submit a job array, follow its tasks, cancel it.

The shell is SSH (paramiko, host keys verified as for SFTP) to a submit host, or the
local machine when the station is one. Job state comes from ``sacct``; where accounting
is disabled (a common site set-up), from ``squeue --states=all`` and then
``scontrol show job``, which know a job for ``MinJobAge`` after it ends. Array tasks
that are still pending are listed as ranges (``12_[3-5,7]``) and expanded here.
"""
from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
import subprocess
from typing import Protocol

from vi_stream.errors import ServiceError

TERMINAL_OK = ("COMPLETED",)
RETRYABLE = ("FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED")
CANCELLED = ("CANCELLED", "REVOKED")


class Shell(Protocol):
    def run(self, command: str, timeout: float = 60.0) -> tuple[int, str, str]: ...
    def put(self, local: str, remote: str) -> None: ...
    def get(self, remote: str, local: str) -> None: ...
    def makedirs(self, remote: str) -> None: ...
    def read(self, remote: str) -> bytes: ...
    def exists(self, remote: str) -> bool: ...
    def listdir(self, remote: str) -> list[str]: ...
    def close(self) -> None: ...


class LocalShell:
    """The station is a submit host itself."""

    def __init__(self, env: dict[str, str] | None = None):
        self.env = dict(os.environ, **(env or {}))

    def run(self, command: str, timeout: float = 60.0) -> tuple[int, str, str]:
        p = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=timeout, env=self.env)
        return p.returncode, p.stdout, p.stderr

    def put(self, local: str, remote: str) -> None:
        shutil.copyfile(local, remote)

    def get(self, remote: str, local: str) -> None:
        shutil.copyfile(remote, local)

    def makedirs(self, remote: str) -> None:
        os.makedirs(remote, exist_ok=True)

    def read(self, remote: str) -> bytes:
        with open(remote, "rb") as f:
            return f.read()

    def exists(self, remote: str) -> bool:
        return os.path.exists(remote)

    def listdir(self, remote: str) -> list[str]:
        return os.listdir(remote) if os.path.isdir(remote) else []

    def close(self) -> None:
        pass


class SshShell:
    """A submit host over SSH; files by SFTP. ``env`` is exported in every command (SLURM_CONF, PATH)."""

    def __init__(self, settings, env: dict[str, str] | None = None):
        from vi_stream.io.sftp import _connect
        self.settings, self.env = settings, dict(env or {})
        self.client = _connect(settings)
        self.sftp = self.client.open_sftp()

    def run(self, command: str, timeout: float = 60.0) -> tuple[int, str, str]:
        exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in self.env.items())
        try:
            _in, out, err = self.client.exec_command(exports + command, timeout=timeout)
            rc = out.channel.recv_exit_status()
            return rc, out.read().decode(errors="replace"), err.read().decode(errors="replace")
        except (OSError, EOFError) as err:
            raise ServiceError(f"SSH {self.settings.host}: {command.split()[0]}: {err}") from err

    def put(self, local: str, remote: str) -> None:
        self.sftp.put(local, remote)

    def get(self, remote: str, local: str) -> None:
        self.sftp.get(remote, local)

    def makedirs(self, remote: str) -> None:
        parts, path = remote.strip("/").split("/"), "/" if remote.startswith("/") else ""
        for p in parts:
            path = posixpath.join(path, p) if path else p
            try:
                self.sftp.stat(path)
            except FileNotFoundError:
                self.sftp.mkdir(path)

    def read(self, remote: str) -> bytes:
        with self.sftp.open(remote, "rb") as f:
            f.prefetch()          # pipelined requests: about 5x faster than one request at a time
            return f.read()

    def exists(self, remote: str) -> bool:
        try:
            self.sftp.stat(remote)
            return True
        except FileNotFoundError:
            return False

    def listdir(self, remote: str) -> list[str]:
        try:
            return self.sftp.listdir(remote)
        except FileNotFoundError:
            return []

    def close(self) -> None:
        self.sftp.close()
        self.client.close()


def expand_tasks(spec: str) -> list[int]:
    """``3``, ``[3-5,7]`` or ``3-5,7`` -> [3, 4, 5, 7] (``%2`` throttles are ignored)."""
    spec = spec.strip().strip("[]").split("%")[0]
    out: list[int] = []
    for part in filter(None, spec.split(",")):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


class Slurm:
    def __init__(self, shell: Shell):
        self.shell = shell
        self.accounting: bool | None = None     # learnt from the first sacct

    def _run(self, command: str, what: str) -> str:
        rc, out, err = self.shell.run(command)
        if rc != 0:
            said = " | ".join(line.strip() for line in (err or out).splitlines() if line.strip())
            raise ServiceError(f"{what} failed ({rc}): {said[:500]}")     # one line, as every error
        return out

    def submit(self, script: str, tasks: list[int], options: list[str], workdir: str) -> str:
        """``sbatch --parsable --array=...``: the job id."""
        array = ",".join(str(t) for t in tasks)
        out = self._run(f"cd {shlex.quote(workdir)} && sbatch --parsable --array={array} "
                        + " ".join(shlex.quote(o) for o in options) + f" {shlex.quote(script)}", "sbatch")
        job = out.strip().split(";")[0]
        if not re.fullmatch(r"\d+", job):
            raise ServiceError(f"sbatch answered {out.strip()[:200]!r}, not a job id")
        return job

    def cancel(self, job: str) -> None:
        self._run(f"scancel {shlex.quote(job)}", "scancel")

    def states(self, job: str) -> dict[int, str]:
        """Array task -> state (PENDING, RUNNING, COMPLETED, FAILED, ...) for what the scheduler knows."""
        if self.accounting is not False:
            rc, out, err = self.shell.run(f"sacct -j {shlex.quote(job)} -n -P -X -o JobID,State")
            if rc == 0 and out.strip():
                self.accounting = True
                return self._parse(job, (line.split("|") for line in out.splitlines()))
            if "accounting storage is disabled" in (err + out).lower() or rc != 0:
                self.accounting = False
        found = {}
        rc, out, _err = self.shell.run(f"squeue --states=all -h -o '%i|%T' -j {shlex.quote(job)}")
        if rc == 0:
            found = self._parse(job, (line.split("|") for line in out.splitlines()))
        rc, out, _err = self.shell.run(f"scontrol -o show job {shlex.quote(job)}")
        if rc == 0:
            for line in out.splitlines():
                f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
                if f.get("ArrayJobId") == job and "ArrayTaskId" in f:
                    for t in expand_tasks(f["ArrayTaskId"]):
                        found.setdefault(t, f.get("JobState", "UNKNOWN"))
        return found

    @staticmethod
    def _parse(job: str, rows) -> dict[int, str]:
        out: dict[int, str] = {}
        for row in rows:
            if len(row) < 2 or not row[0].startswith(job + "_"):
                continue
            state = row[1].split()[0].rstrip("+")      # "CANCELLED by 0" -> CANCELLED
            for t in expand_tasks(row[0][len(job) + 1:]):
                out[t] = state
        return out
