"""Results without a model, and store backends for the contract tests."""
from __future__ import annotations

import contextlib
import os
import threading
import uuid

import numpy as np

from vi_stream.errors import StoreUnavailable
from vi_stream.frame import Frame, Result
from vi_stream.store import record as rec

TILE = 128


def make_result(pulse: int, module: str = "M-1", side: str = "left", shape=(300, 260), defect: bool = True,
                dtype=np.uint8) -> Result:
    """A processed frame with a known mask: a square defect whose place depends on the pulse id."""
    rng = np.random.default_rng(pulse)
    hi = 255 if dtype == np.uint8 else 4095
    img = rng.integers(0, hi, shape, dtype=np.int64).astype(dtype)
    heat = rng.random(shape, dtype=np.float32) * 0.4
    mask = np.zeros(shape, np.uint8)
    defects = []
    if defect:
        y, x = 10 + pulse % 50, 20 + pulse % 60
        heat[y:y + 30, x:x + 40] = 2.0
        mask[y:y + 30, x:x + 40] = 1
        defects = [{"bbox": [x, y, 40, 30], "area": 1200, "peak": 2.0, "centroid": [x + 20, y + 15]}]
    frame = Frame(img, pulse, 1_700_000_000 + pulse, 5, module, side)
    params = {"roi": [], "threshold": 1.0, "model_threshold": 1.0, "tile": 320, "overlap": 64, "model_id": "m-1",
              "image_shape": list(shape)}
    return Result(frame, img, heat, mask, 2.0 if defect else 0.3, defect, defects, params, {})


def make_record(pulse: int, module: str = "M-1", side: str = "left", tiles: bool = True, **kw) -> rec.Record:
    return rec.build(make_result(pulse, module, side, **kw), "CAM", TILE, tiles)


def render(result: Result) -> rec.Record:
    return rec.build(result, "CAM", TILE, True)


@contextlib.contextmanager
def mongomock_store():
    import mongomock
    import mongomock.gridfs

    from vi_stream.store.mongo import MongoStore
    mongomock.gridfs.enable_gridfs_integration()
    client = mongomock.MongoClient()
    store = MongoStore(client=client, database=f"test-{uuid.uuid4().hex[:8]}").start()
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def real_mongo_store():
    """Against ``VI_STREAM_TEST_MONGO_URI`` in a throw-away ``test-<uuid>`` database."""
    from vi_stream.store.mongo import MongoStore
    uri = os.environ["VI_STREAM_TEST_MONGO_URI"]
    name = f"test-{uuid.uuid4().hex[:8]}"
    store = MongoStore(uri, database=name).start()
    try:
        yield store
    finally:
        store.client.drop_database(name)
        store.close()


class FlakyStore:
    """Wraps a store; while ``down`` is set every write raises StoreUnavailable (a server outage).
    Everything else (reads, review) is the wrapped store's."""

    def __init__(self, inner, refuse_module: str | None = None):
        self.inner = inner
        self.description = "flaky:" + inner.description
        self.down = threading.Event()
        self.refuse_module = refuse_module   # records of this module raise a non-transient error
        self.writes = 0

    def write(self, records):
        if self.down.is_set():
            raise StoreUnavailable("server down (test)")
        for r in records:
            if r.module == self.refuse_module:
                raise ValueError(f"document for {r.module} rejected (test)")
        self.writes += 1
        self.inner.write(records)

    def __getattr__(self, name):
        return getattr(self.inner, name)
