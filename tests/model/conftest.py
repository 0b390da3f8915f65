"""Fixtures of the model-file fault tests: the bad files, and one `vi_stream run` daemon for them."""
from __future__ import annotations

import os

import numpy as np
import pytest

from ..helpers.modelfiles import (
    bomb,
    edit_model,
    run_args,
    start_run,
    stop_process,
    until_ready_or_exit,
)


@pytest.fixture(scope="module")
def files(model_path, tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad-models")
    zero_bank = lambda k, a: np.zeros_like(a) if k == "bank" else a   # noqa: E731
    out = {
        "inflating": bomb(model_path, d / "inflating.npz", 2**30, inflate=True),
        "40TB": bomb(model_path, d / "40TB.npz", 40 * 10**12, inflate=False),
        "threshold": edit_model(model_path, d / "threshold.npz", meta=lambda m: m.update(threshold=1e6)),
        "no-self-check": edit_model(model_path, d / "no-self-check.npz", zero_bank,
                               meta=lambda m: m.pop("self_check"), drop=("check_tiles",)),
        "tolerance": edit_model(model_path, d / "tolerance.npz", zero_bank,
                           meta=lambda m: m["self_check"].update(rtol=1e9, atol=1e9)),
        # what an older vi_stream saved: the self-check, no digest
        "undigested": edit_model(model_path, d / "undigested.npz", drop=("digest",)),
        # a zeroed bank in an undigested file with its tolerance widened: the self-check still holds
        "undigested-tolerance": edit_model(model_path, d / "undigested-tolerance.npz", zero_bank, drop=("digest",),
                                      meta=lambda m: m["self_check"].update(rtol=1e9, atol=1e9)),
    }
    assert os.path.getsize(out["inflating"]) < 4 << 20       # a GiB of bank in a few MB
    return out


@pytest.fixture(scope="module")
def daemon(model_path, tmp_path_factory):
    """``vi_stream run`` with the good model and a local store: (base URL, process)."""
    state = tmp_path_factory.mktemp("daemon-state")
    p = start_run(run_args(model_path, str(state / "store")), env=dict(os.environ, VI_STREAM_STATE_DIR=str(state)))
    try:
        port, lines = until_ready_or_exit(p)
        assert port, "\n".join(lines[-10:])
        yield f"http://127.0.0.1:{port}", p
    finally:
        stop_process(p)
