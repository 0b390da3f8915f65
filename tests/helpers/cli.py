"""The installed `vi_stream` command, run the way a user runs it: the console script in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys

VI = os.path.join(os.path.dirname(sys.executable), "vi_stream")     # the installed console script
# `vi_stream train` options for a model fitted in seconds on a few small images
SMALL_FIT = ("--tile", 128, "--overlap", 32, "--bank-size", 2000, "--cells", 16, "--calibration-every", 2)


def vi(*args, env=None, timeout=300, cwd=None) -> subprocess.CompletedProcess:
    """Run ``vi_stream ARGS`` and return what it did (nothing asserted)."""
    return subprocess.run([VI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def vi_ok(*args) -> subprocess.CompletedProcess:
    """Run ``vi_stream ARGS`` and assert that it succeeded (:func:`ok`)."""
    return ok(vi(*args))


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``p`` succeeded without a traceback (its output shown when not)."""
    assert p.returncode == 0 and "Traceback" not in p.stderr, f"rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def one_line_error(p: subprocess.CompletedProcess, *words: str) -> None:
    """``p`` was refused as a user error: exit 2, one line on stderr naming ``words``, no traceback."""
    assert p.returncode == 2 and "Traceback" not in p.stderr, (p.returncode, p.stderr)
    assert len(p.stderr.strip().splitlines()) == 1 and all(w in p.stderr for w in words), p.stderr


def good_images(folder, shape, first_seed: int, n: int = 6) -> None:
    """``n`` good synthetic module images of ``shape`` (seeds from ``first_seed``) written to ``folder``
    as PNG: what `vi_stream train --images` reads."""
    from vi_stream.evaluation import synthetic
    from vi_stream.io.files import write_image
    for i in range(n):
        write_image(os.path.join(str(folder), f"g{i}.png"), synthetic.module_image(shape, seed=first_seed + i).image)
