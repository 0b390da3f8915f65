"""Commands that score nothing start without the scoring stack (issue 26): ``models list``, ``batch
list`` and every ``--help`` must not import torch or numba (together about 1 s of a 2 s start-up;
bench/startup.py measures it). Each runs in a fresh interpreter, which then names the heavy modules
it holds."""
from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "numba")
PROBE = """
import sys
from vi_stream.cli import main
sys.argv = ["vi_stream", *sys.argv[1:]]
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("HEAVY:" + ",".join(m for m in {heavy!r} if m in sys.modules))
""".format(heavy=HEAVY)


def heavy_imports(*argv: str) -> list[str]:
    p = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    line = [x for x in p.stdout.splitlines() if x.startswith("HEAVY:")]
    assert line, f"rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    return [m for m in line[-1][len("HEAVY:"):].split(",") if m]


@pytest.mark.parametrize("argv", [("--help",), ("merge", "--help"), ("run", "--help"), ("batch", "--help"),
                                  ("models", "list"), ("batch", "list"), ("models", "aliases")])
def test_commands_that_score_nothing_import_no_torch_or_numba(argv, tmp_path):
    if argv[-1] != "--help":
        argv = (*argv, "--store", str(tmp_path / "store"))
    assert heavy_imports(*argv) == []


def test_the_probe_sees_a_heavy_import(tmp_path):
    """The probe is not blind: a command that scores does import them (here up to loading the model,
    which is missing: an image folder without images is refused before)."""
    import numpy as np

    from vi_stream.io.files import write_image
    write_image(str(tmp_path / "images" / "a.png"), np.zeros((32, 32), np.uint8))
    assert heavy_imports("score", "--model", str(tmp_path / "none.npz"), "--images", str(tmp_path / "images"),
                         "--out", str(tmp_path / "out")) == ["torch", "numba"]
