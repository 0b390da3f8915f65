"""The installed `vi_stream` command, run the way a user runs it: the console script in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys

VI = os.path.join(os.path.dirname(sys.executable), "vi_stream")     # the installed console script


def vi(*args, env=None, timeout=300, cwd=None) -> subprocess.CompletedProcess:
    """Run ``vi_stream ARGS`` and return what it did (nothing asserted)."""
    return subprocess.run([VI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``p`` succeeded without a traceback (its output shown when not)."""
    assert p.returncode == 0 and "Traceback" not in p.stderr, f"rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def one_line_error(p: subprocess.CompletedProcess, *words: str) -> None:
    """``p`` was refused as a user error: exit 2, one line on stderr naming ``words``, no traceback."""
    assert p.returncode == 2 and "Traceback" not in p.stderr, (p.returncode, p.stderr)
    assert len(p.stderr.strip().splitlines()) == 1 and all(w in p.stderr for w in words), p.stderr
