"""Shared fixtures: one small fitted model per run (fit once, ~15 s, shared by the test processes)."""
from __future__ import annotations

import contextlib
import fcntl
import os

import numpy as np
import pytest

from vi_stream.evaluation import synthetic  # noqa: E402
from vi_stream.model import AnomalyModel, load, save  # noqa: E402

from .helpers import SMALL_CONFIG, SMALL_SHAPE  # noqa: E402
from .helpers.cluster import cluster  # noqa: E402,F401 - one Slurm cluster per session, for every module


@pytest.fixture(scope="session", autouse=True)
def state_dir(tmp_path_factory):
    """Nothing a test starts (daemons, `vi_stream run` processes) writes into the real home's state."""
    path = str(tmp_path_factory.mktemp("state"))
    old = os.environ.get("VI_STREAM_STATE_DIR")
    os.environ["VI_STREAM_STATE_DIR"] = path
    yield path
    if old is None:
        os.environ.pop("VI_STREAM_STATE_DIR", None)
    else:
        os.environ["VI_STREAM_STATE_DIR"] = old


@pytest.fixture(scope="session")
def good_images() -> list[np.ndarray]:
    return [synthetic.module_image(SMALL_SHAPE, seed=1000 + i).image for i in range(15)]


@pytest.fixture(scope="session")
def model_path(good_images, tmp_path_factory, request) -> str:
    """The small model's file, fitted once per run: the processes of ``pytest -n`` share it (the first
    to need it fits it under a lock, the others load what it saved), instead of each fitting its own."""
    worker = getattr(request.config, "workerinput", None)       # a pytest started by a test is not one
    if worker:
        shared = tmp_path_factory.getbasetemp().parent / f"shared-model-{worker['testrunuid']}"
    else:
        shared = tmp_path_factory.mktemp("model")
    shared.mkdir(exist_ok=True)
    path = shared / "model.npz"
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():                                   # save writes a temp file and renames it
            save(AnomalyModel.fit(good_images, SMALL_CONFIG), str(path))
    return str(path)


@pytest.fixture(scope="session")
def model(model_path) -> AnomalyModel:
    return load(model_path)


BACKENDS = ["local", "mongomock"] + (["mongodb"] if os.environ.get("VI_STREAM_TEST_MONGO_URI") else [])


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    """Each store backend, started and empty: the contract tests run on all of them (a real MongoDB
    when VI_STREAM_TEST_MONGO_URI is set)."""
    from vi_stream.store.local import LocalStore

    from .helpers.store import mongomock_store, real_mongo_store
    if request.param == "local":
        cm = contextlib.closing(LocalStore(str(tmp_path / "store")).start())
    elif request.param == "mongomock":
        cm = mongomock_store()
    else:
        cm = real_mongo_store()
    with cm as s:
        yield s


@pytest.fixture
def notify_socket(tmp_path):
    """A NOTIFY_SOCKET as systemd binds it (a unix datagram socket): (path, socket); the tests of
    sd_notify read READY=1, WATCHDOG=1, STATUS= and STOPPING=1 from it."""
    import socket
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.2)
    yield path, s
    s.close()
