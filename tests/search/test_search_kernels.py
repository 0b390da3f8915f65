"""The two sets of list kernels (LLVM IR, plain numba) keep one contract; the search's tests pass on both."""
from __future__ import annotations

import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from vi_stream.search import LIST_WIDTH, half_precision, ir_kernels, kernels, plain

from ..helpers import ROOT


def _calls(k):
    """Jitted callers of one kernel set (intrinsics are only callable from compiled code)."""
    @numba.njit
    def minimum(values, m, d, xs, sq):
        return k.min_of_four(values, 0, m, d, xs, sq, 0)

    @numba.njit
    def nearest(values, m, d, xs, sq):
        return k.nearest_of_four(values, 0, m, d, xs, sq, 0)

    @numba.njit
    def distances(values, m, d, xs, sq, out):
        k.distances_of_four(values, 0, m, d, xs, sq, 0, out, 0, m, 2 * m, 3 * m)

    @numba.njit
    def project(values, m, d, xs, stride, out):
        k.project_four(values, 0, m, d, xs, stride, out, 0, m, 2 * m, m)   # a repeated offset too
    return minimum, nearest, distances, project


@pytest.mark.parametrize("d", [1, 7, 32, 64])
def test_ir_and_plain_kernels_agree_with_numpy(d):
    rng = np.random.default_rng(d)
    m = 3 * LIST_WIDTH
    rows = half_precision(rng.normal(0, 2, (m, d)).astype(np.float32))
    rows[5] = rows[9]                                   # a tie: the lower index wins
    values = rows.T.astype(np.float16).ravel().view(np.uint16)
    sq = np.einsum("ij,ij->i", rows, rows).astype(np.float32)
    q = rng.normal(0, 2, (4, d)).astype(np.float32)
    q[1] = rows[9]
    xs = (-2 * q).T.ravel().astype(np.float32)
    terms = sq[None, :] + (-2 * q) @ rows.T             # (4, m): what the kernels compute
    planes = rng.normal(0, 1, (d, m)).astype(np.float32)
    for k in (ir_kernels, plain):
        minimum, nearest, distances, project = _calls(k)
        got = np.array(minimum(values, m, d, xs, sq))
        np.testing.assert_allclose(got, terms.min(1), rtol=1e-5, atol=1e-3)
        res = nearest(values, m, d, xs, sq)
        np.testing.assert_allclose(res[:4], terms.min(1), rtol=1e-5, atol=1e-3)
        assert list(res[4:]) == list(terms.argmin(1)) and res[5] == 5
        out = np.zeros(4 * m, np.float32)
        distances(values, m, d, xs, sq, out)
        np.testing.assert_allclose(out.reshape(4, m), terms, rtol=1e-5, atol=1e-3)
        acc = np.ones(3 * m, np.float32)
        project(planes.ravel(), m, d, xs, m, acc)
        want = np.ones(3 * m, np.float32)
        prod = (xs.reshape(d, 4).T @ planes)            # (4, m)
        want[:m] += prod[0]
        want[m:2 * m] += prod[1]
        want[2 * m:] += prod[2]
        want[m:2 * m] = 1 + prod[3]                     # the 4th output shares the 2nd's offset: last store wins
        np.testing.assert_allclose(acc, want, rtol=1e-4, atol=1e-3)


def test_the_choice_is_reported_and_can_be_forced(monkeypatch):
    assert kernels.BACKEND in ("ir", "numba")
    monkeypatch.setenv("VI_STREAM_SEARCH_KERNELS", "fast")
    with pytest.raises(ValueError, match="'ir' or 'numba'"):
        kernels._choose()
    monkeypatch.setenv("VI_STREAM_SEARCH_KERNELS", "numba")
    assert kernels._choose() == "numba"
    monkeypatch.delenv("VI_STREAM_SEARCH_KERNELS")
    monkeypatch.setattr(kernels.numba, "__version__", "9.1.0")
    assert "outside the tested range" in kernels._ir_usable() and kernels._choose() == "numba"


def test_the_search_tests_pass_on_the_plain_kernels(tmp_path):
    """The index, list scans, medoid tree and CPU head tests again, in a process that uses the plain
    numba loops (its own numba cache: compiled code is cached per source file, not per choice)."""
    env = dict(os.environ, VI_STREAM_SEARCH_KERNELS="numba", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:warnings",
                        "tests/model/test_stats.py", "tests/model/test_model.py::test_tap_projection_kernel_equals_einsum",
                        "tests/model/test_model.py::test_cpu_head_equals_torch_head",
                        "tests/search/test_search_kernels.py::test_backend_in_a_subprocess_is_the_one_asked_for"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert " passed" in p.stdout and "failed" not in p.stdout


def test_backend_in_a_subprocess_is_the_one_asked_for():
    want = os.environ.get("VI_STREAM_SEARCH_KERNELS")
    if want:
        assert kernels.BACKEND == want
    else:
        assert kernels.BACKEND == "ir"    # the tested numba: the fast kernels
