"""Results end to end: frames in over bsread, every one in the store, read back and reviewed over REST."""
from __future__ import annotations

import contextlib

import cv2
import numpy as np
import pytest
import requests

from vi_stream import Client
from vi_stream.errors import InputError, NotFoundError
from vi_stream.store.local import LocalStore

from ..helpers.daemon import bound_push, running_daemon, wait_for
from ..helpers.rest import IMAGES, frame
from ..helpers.store import FlakyStore, mongomock_store

SENT = [("M-1", "left"), ("M-1", "right"), ("M-2", "left")]


@pytest.fixture(scope="module", params=["local", "mongomock"])
def daemon(request, model):
    backend = mongomock_store() if request.param == "mongomock" else contextlib.nullcontext(None)
    with backend as store, bound_push() as (push, port), \
            running_daemon(model, port, backend=store, store_tile=128) as (d, _ctx):
        d.processor.start()
        for i, (img, (module, side)) in enumerate(zip(IMAGES, SENT)):
            push.send_multipart(frame(i + 1, img, module, side))
        wait_for(lambda: d.processor.statistics()["store"]["stored"] == 3, timeout=120)
        yield d


@pytest.fixture
def client(daemon):
    return Client(f"http://127.0.0.1:{daemon.rest_port}", timeout=10)


def png(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_every_frame_is_stored_and_listed(client):
    stats = client.get_statistics()["store"]
    assert stats["stored"] == 3 and stats["spooled"] == 0 and stats["failed"] == 0 and stats["up"] is True
    mods = client.list_modules()
    assert sorted(m["name"] for m in mods) == ["M-1", "M-2"]
    m1 = next(m for m in mods if m["name"] == "M-1")
    assert m1["left"]["tile_count"] == 16 and m1["right"]["verified"] == 0 and m1["left"]["tag"] == "before bonding"
    assert m1["right"]["is_anomalous"] is True and m1["right"]["defects"] >= 1
    assert [m["name"] for m in client.list_modules(limit=1)] and len(client.list_modules(limit=1)) == 1


def test_module_document_and_images_read_back(client, daemon):
    doc = client.get_module("M-1")
    left = doc["left"]
    assert left["pulse_id"] == 1 and left["model_id"] == daemon.model.model_id and left["verified_masks"] == [False] * 16
    assert np.array_equal(png(client.get_image(left["original"]["full"]["src_id"])), IMAGES[0])
    r = requests.get(f"http://127.0.0.1:{daemon.rest_port}/api/images/{left['mask']['thumbnail']['src_id']}", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png" and png(r.content).shape == (256, 256)
    with pytest.raises(NotFoundError):
        client.get_image("ab" * 12)
    r = requests.get(f"http://127.0.0.1:{daemon.rest_port}/api/images/not-an-id", timeout=5)
    assert r.status_code == 400 and "24 hex" in r.json()["message"]
    with pytest.raises(NotFoundError):
        client.get_module("M-404")
    r = requests.get(f"http://127.0.0.1:{daemon.rest_port}/api/modules?limit=0", timeout=5)
    assert r.status_code == 400 and "limit" in r.json()["message"]


def test_review_over_rest(client, daemon):
    side = client.get_module("M-2")["left"]
    fix = np.zeros((128, 128), np.uint8)
    fix[10:40, 10:40] = 255
    new = client.correct_mask("M-2", "left", 5, fix, result_id=side["result_id"])
    assert new["verified_masks"][5] is True and new["corrected_tiles"] == [5]
    assert np.array_equal(png(client.get_image(new["corrected_mask"]["full"]["tiled_id"][5])), fix)
    assert client.verify_tile("M-2", "left", 6)["verified_masks"][6] is True
    before = client.get_module("M-2")
    base = f"http://127.0.0.1:{daemon.rest_port}/api/modules/M-2/left/tiles"
    wrong_size = cv2.imencode(".png", np.zeros((100, 128), np.uint8))[1].tobytes()
    r = requests.post(f"{base}/5/mask", data=wrong_size, headers={"Content-Type": "image/png"}, timeout=5)
    assert r.status_code == 400 and "128x128" in r.json()["message"]
    r = requests.post(f"{base}/5/mask", json={"mask": [0, 1]}, timeout=5)
    assert r.status_code == 400 and "image/png" in r.json()["message"]
    r = requests.post(f"{base}/16/verify", json={"verified": True}, timeout=5)
    assert r.status_code == 400 and "0-15" in r.json()["message"]
    r = requests.post(f"{base}/1/verify", data=b"{nope", headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 400
    with pytest.raises(InputError, match="left or right"):
        client.verify_tile("M-2", "up", 0)
    with pytest.raises(NotFoundError, match="no result"):     # an acquisition that does not exist (issue 27: was 409)
        client.verify_tile("M-2", "left", 0, result_id="0" * 24)
    assert client.get_module("M-2") == before  # the refused requests changed nothing


def test_mask_upload_needs_the_token_when_one_is_set(model):
    with bound_push() as (_push, port), running_daemon(model, port, token="s3cret-s3cret-s3cret") as (d, _ctx):
        r = requests.post(f"http://127.0.0.1:{d.rest_port}/api/modules/M/left/tiles/0/mask", data=b"x", timeout=5)
        assert r.status_code == 401
        assert requests.get(f"http://127.0.0.1:{d.rest_port}/api/modules", timeout=5).status_code == 200


def test_store_off_answers_409(model):
    with bound_push() as (_push, port), running_daemon(model, port, store="off") as (d, _ctx):
        r = requests.get(f"http://127.0.0.1:{d.rest_port}/api/modules", timeout=5)
        assert r.status_code == 409 and "--store off" in r.json()["message"]
        assert "store" not in Client(f"http://127.0.0.1:{d.rest_port}").get_statistics()


def test_store_outage_under_load_then_restart_counts_every_frame(model, tmp_path):
    """The store fails while frames flow; the daemon stops with results spooled; the next start replays them."""
    inner = LocalStore(str(tmp_path / "store")).start()
    spool = str(tmp_path / "spool")
    n = 12
    store = FlakyStore(inner)
    with bound_push() as (push, port), running_daemon(model, port, backend=store, spool=spool, store_tiles=False,
                                                      block=True) as (d, _ctx):
        d.processor.start()
        for i in range(n):
            if i == 3:
                wait_for(lambda: d.processor.statistics()["store"]["stored"] == 3, timeout=60)
                store.down.set()
            push.send_multipart(frame(100 + i, IMAGES[i % 3], f"M-{i}", "left"))
        wait_for(lambda: d.processor.statistics()["frames_processed"] == n, timeout=120)
        wait_for(lambda: d.processor.statistics()["store"]["spooled"] >= n - 3, timeout=30)
        st = d.processor.statistics()["store"]
        assert st["up"] is False and st["stored"] == 3 and st["errors"] >= 1
    assert inner.count_results() == 3 and len(list((tmp_path / "spool").glob("*.rec"))) == n - 3
    store.down.clear()  # the server is back; the daemon starts again on the same spool
    with bound_push() as (_push, port), running_daemon(model, port, backend=store, spool=spool) as (d, _ctx):
        # stored counts a replayed result just after it leaves the spool: wait for both
        wait_for(lambda: (s := d.processor.statistics()["store"])["spooled"] == 0 and s["stored"] == n - 3,
                 timeout=60)
    assert inner.count_results() == n and sorted(m["name"] for m in inner.list_modules()) == sorted(
        f"M-{i}" for i in range(n))
    inner.close()
