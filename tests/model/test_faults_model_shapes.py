"""Model files from an adversary, continued (issue 25 review, findings 3 and 7), through the doors
a user opens: ``POST /api/models`` and ``POST /model/reload`` against a running daemon, and
``vi_stream run --model`` (the installed command). The helpers and the daemon are
:mod:`tests.test_faults_model`'s.

* a member flagged encrypted (zipfile raises RuntimeError opening it): 400 / one line, not a 500
  or a traceback;
* members each within their own limit whose shapes a fit never writes together (a bank of
  2.6 million rows drawn from 1808 raw dimensions is 19 GB of reservoir): refused from the
  headers, and the daemon's peak memory does not move by the 166 MB the bank holds (over
  ``/model/reload``; an upload holds its body in memory, so there it may grow by the body's size);
* a zip directory declaring more for all members than the largest model holds: refused from the
  directory alone.
"""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import requests

from ..helpers.modelfiles import (
    MEMORY_BOUND,
    members,
    one_line_400,
    peak_growth,
    reload_model,
    run_refuses_in_one_line,
    upload_model,
    write_npz,
)


def _patch_central(path: str, member: str, flag: int | None = None, size: int | None = None) -> None:
    """Rewrite ``member``'s entry in the zip's central directory: OR ``flag`` into its general-purpose
    flags, or make it declare ``size`` bytes (compressed and not) it does not hold."""
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        at = data.find(b"PK\x01\x02")
        while at >= 0:
            name_len, = struct.unpack_from("<H", data, at + 28)
            if data[at + 46:at + 46 + name_len].decode() == member:
                if flag is not None:
                    struct.pack_into("<H", data, at + 8, struct.unpack_from("<H", data, at + 8)[0] | flag)
                if size is not None:
                    struct.pack_into("<II", data, at + 20, size, size)
                f.seek(0)
                f.write(data)
                return
            at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"no {member} in {path}")


@pytest.fixture(scope="module")
def shapes_files(model_path, tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad-shapes")
    arrays = members(model_path)
    encrypted = write_npz(arrays, d / "encrypted.npz")
    _patch_central(encrypted, "bank.npy", flag=0x1)
    # each member within its own limit (mean 7 KB, components 115 KB, bank 166 MB of 1 GiB), stored
    # plainly, but a bank of 2.6 M rows from 1808 raw dimensions is a 19 GB reservoir
    forged = dict(arrays, mean=np.zeros(1808, np.float32), components=np.zeros((1808, 16), np.float32),
                  bank=np.zeros((2_600_000, 16), np.float32))
    cross = write_npz(forged, d / "cross.npz")
    # a directory declaring a bank of 1 GiB and centres and medoids of 256 MB each: each at its
    # limit, together more than any model (the bytes are not there: the directory is read, not them)
    total = write_npz(arrays, d / "total.npz")
    for member, size in (("bank.npy", 2**30), ("centres.npy", 2**28), ("medoids.npy", 2**28)):
        _patch_central(total, member, size=size)
    return {"encrypted": encrypted, "cross": cross, "total": total}


@pytest.mark.parametrize("kind, words", [("encrypted", ("bank", "encrypted")), ("cross", ("bank", "shapes disagree"))])
def test_an_encrypted_or_impossibly_shaped_file_is_refused_over_rest_with_400(daemon, shapes_files, kind,  # noqa: F811
                                                                              words):
    url, p = daemon
    r, grew = peak_growth(p.pid, lambda: upload_model(url, shapes_files[kind], "forged"))
    one_line_400(r, *words)
    body = os.path.getsize(shapes_files[kind])   # the upload holds its body in memory: no more than that
    assert grew < body + MEMORY_BOUND, f"registering {kind} raised the daemon's peak memory by {grew / 2**20:.0f} MB"
    r, grew = peak_growth(p.pid, lambda: reload_model(url, shapes_files[kind]))
    one_line_400(r, *words)
    assert grew < MEMORY_BOUND, f"reloading {kind} raised the daemon's peak memory by {grew / 2**20:.0f} MB"
    assert requests.get(f"{url}/status", timeout=10).status_code == 200
    assert requests.get(f"{url}/api/models", timeout=10).json()["models"] == []


@pytest.mark.parametrize("kind, word", [("encrypted", "encrypted"), ("cross", "shapes disagree"),
                                        ("total", "in all")])
def test_run_with_an_encrypted_or_impossible_file_exits_2_with_one_line(shapes_files, kind, word):
    run_refuses_in_one_line(shapes_files[kind], word)


def test_the_file_check_refuses_from_the_directory_and_headers_alone(shapes_files, monkeypatch):
    """Unit: the file is refused before numpy opens it (np.load reads the members' data)."""
    from vi_stream.errors import ModelError
    from vi_stream.model import filecheck, read_meta

    def no_data(*_a, **_k):
        raise AssertionError("an array member was read before the file was refused")
    monkeypatch.setattr(np, "load", no_data)
    for kind, words in (("encrypted", r"'bank' is encrypted"), ("cross", r"bank has 2,600,000 rows of 1808"),
                        ("total", r"in all, more than a model holds")):
        with pytest.raises(ModelError, match=words):
            read_meta(shapes_files[kind])
    assert filecheck.MAX_TOTAL_BYTES < 1.5 * 2**30


def test_the_limits_hold_what_the_largest_fit_writes():
    """MAX_RAW_DIM is every block of the backbone; a config past the cell or index limits is refused."""
    from vi_stream.errors import ConfigError
    from vi_stream.model import filecheck
    from vi_stream.model.anomaly import ModelConfig
    from vi_stream.model.backbone import block_table
    assert filecheck.MAX_RAW_DIM == sum(b.channels for b in block_table())
    ModelConfig(taps=tuple(range(16)), dim=1808, bank_size=140_000, cells=18_000).validate()
    for bad in (dict(cells=filecheck.MAX_CELLS + 1), dict(taps=tuple(range(16)), dim=1808, cells=20_000)):
        with pytest.raises(ConfigError, match="cells"):
            ModelConfig(**bad).validate()
