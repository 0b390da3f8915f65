"""The record (ATLAS side document + PNGs) and the store contract, on every backend.

The contract runs on the local store and on MongoDB via mongomock (with GridFS);
with VI_STREAM_TEST_MONGO_URI set it also runs against that real server.
"""
from __future__ import annotations

import socket

import cv2
import numpy as np
import pytest

from vi_stream.errors import (
    ConfigError,
    InputError,
    NotFoundError,
    StoreUnavailable,
)
from vi_stream.model import postprocess
from vi_stream.store import record as rec
from vi_stream.store import review
from vi_stream.store.local import LocalStore
from vi_stream.store.opening import open_store
from vi_stream.store.protocols import summary

from ..helpers.store import TILE, make_record, make_result, mongomock_store


def decode(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


# ---------------------------------------------------------------- the record
def test_record_has_the_atlas_side_shape_and_deterministic_ids():
    r = make_record(3)
    side = r.side
    assert side["tile_count"] == 3 * 3 and side["verified_masks"] == [False] * 9  # 300x260 in 128 px tiles
    assert side["tiles"][-1] == [256, 256, 4, 44]                                  # cut at the edges
    for g in rec.GROUPS:
        for size in ("thumbnail", "full"):
            ids = side[g][size]
            assert len(ids["src_id"]) == 24 and len(ids["tiled_id"]) == 9
            assert all(i in r.images for i in [ids["src_id"], *ids["tiled_id"]])
    assert side["corrected_mask"] == side["mask"]            # starts as the model's mask, same files
    assert side["preprocessed"] == side["original"]          # uint8, no ROI: the model saw the original
    again = make_record(3)
    assert again.id == r.id and again.side["anomaly_map"] == side["anomaly_map"]
    assert make_record(4).id != r.id
    assert side["pulse_id"] == 3 and side["score"] == 2.0 and side["defects"][0]["area"] == 1200
    assert side["model_id"] == "m-1" and side["processing_parameters"]["tile"] == 320
    assert side["acquired_at"].startswith("2023-11-14")


def test_record_images_decode_to_what_was_processed():
    res = make_result(5)
    r = rec.build(res, "CAM", TILE)
    side = r.side
    assert np.array_equal(decode(r.images[side["original"]["full"]["src_id"]]), res.image)
    mask = decode(r.images[side["mask"]["full"]["src_id"]])
    assert set(np.unique(mask)) == {0, 255} and np.array_equal(mask > 0, res.mask > 0)
    x, y, w, h = side["tiles"][4]
    tile = decode(r.images[side["original"]["full"]["tiled_id"][4]])
    assert np.array_equal(tile, res.image[y:y + h, x:x + w])
    thumb = decode(r.images[side["mask"]["thumbnail"]["src_id"]])
    assert max(thumb.shape) == 256 and thumb.max() == 255  # a shrunk mask keeps its defect visible
    colour = decode(r.images[side["anomaly_map"]["full"]["src_id"]])   # a palette PNG, decoded as colour
    assert np.array_equal(cv2.cvtColor(colour, cv2.COLOR_BGR2RGB), postprocess.colourise(res.heatmap, 1.0))
    import io

    from PIL import Image  # a second, independent PNG decoder
    pil = Image.open(io.BytesIO(r.images[side["anomaly_map"]["thumbnail"]["tiled_id"][0]]))
    assert pil.mode == "P" and pil.size == (109, 109)  # 128 px tile x 256/300
    grey = Image.open(io.BytesIO(r.images[side["original"]["full"]["tiled_id"][4]]))  # our own 8-bit grey PNG
    assert grey.mode == "L" and np.array_equal(np.asarray(grey), tile)


def test_record_of_uint16_frame_keeps_the_original_bits_and_without_tiles_has_no_tile_images():
    res = make_result(6, dtype=np.uint16)
    r = rec.build(res, "CAM", TILE, with_tiles=False)
    orig = decode(r.images[r.side["original"]["full"]["src_id"]])
    assert orig.dtype == np.uint16 and np.array_equal(orig, res.image)
    assert decode(r.images[r.side["preprocessed"]["full"]["src_id"]]).dtype == np.uint8
    assert r.side["original"]["full"]["tiled_id"] == [] and r.side["tile_count"] == 9
    assert len(r.images) < len(make_record(6, dtype=np.uint16).images)


# ---------------------------------------------------------------- the contract
def test_write_then_read_back(store):
    r = make_record(1, "M-A", "left")
    store.write([r])
    doc = store.get_module("M-A")
    assert set(doc) >= {"name", "description", "uploaded_by", "uploaded_at", "last_updated_at", "left"}
    assert doc["name"] == "M-A" and doc["uploaded_by"] == "vi_stream" and doc.get("right") is None
    left = doc["left"]
    assert left["result_id"] == r.id and left["tile_count"] == 9 and left["verified_masks"] == [False] * 9
    for g in rec.GROUPS:
        assert store.get_image(left[g]["full"]["src_id"]) == r.images[r.side[g]["full"]["src_id"]]
        assert store.get_image(left[g]["thumbnail"]["tiled_id"][8]) == r.images[r.side[g]["thumbnail"]["tiled_id"][8]]
    assert store.count_results() == 1 and store.count_results("M-A") == 1
    with pytest.raises(NotFoundError):
        store.get_module("nope")
    with pytest.raises(NotFoundError):
        store.get_image("0" * 24)


def test_replay_duplicates_nothing_and_keeps_the_review(store):
    r = make_record(1, "M-B")
    store.write([r])
    review.verify(store, "M-B", "left", 2)
    store.write([r])        # a replay of the same result after, say, a crash before the spool was cleared
    store.write([make_record(1, "M-B")])
    assert store.count_results() == 1
    assert store.get_module("M-B")["left"]["verified_masks"][2] is True
    if hasattr(store, "db"):
        ids = {r.side[g][k]["src_id"] for g in rec.GROUPS for k in ("full", "thumbnail")}
        assert store.db.fs.files.count_documents({"_id": {"$in": [__import__("bson").ObjectId(i) for i in ids]}}) \
            == len(ids)


def test_sides_and_newer_results(store):
    store.write([make_record(1, "M-C", "left"), make_record(2, "M-C", "right")])
    doc = store.get_module("M-C")
    assert doc["left"]["pulse_id"] == 1 and doc["right"]["pulse_id"] == 2
    store.write([make_record(3, "M-C", "left")])  # the left side imaged again
    doc = store.get_module("M-C")
    assert doc["left"]["pulse_id"] == 3 and doc["right"]["pulse_id"] == 2
    assert store.count_results("M-C") == 3
    store.write([make_record(4, "M-D")])
    names = [m["name"] for m in store.list_modules()]
    assert names[0] == "M-D" and set(names) == {"M-C", "M-D"}
    assert [m["name"] for m in store.list_modules(limit=1, skip=1)] == ["M-C"]
    s = summary(store.get_module("M-C"))
    assert s["left"]["score"] == 2.0 and s["left"]["verified"] == 0 and s["right"]["defects"] == 1


def test_corrected_mask_review(store):
    r = make_record(7, "M-E")
    store.write([r])
    side = r.side
    x, y, w, h = side["tiles"][0]
    fix = np.zeros((h, w), np.uint8)
    fix[5:20, 5:25] = 255
    new = review.correct_mask(store, "M-E", "left", 0, rec.encode_png(fix), result_id=r.id)
    assert new["verified_masks"][0] is True and sum(new["verified_masks"]) == 1 and new["corrected_tiles"] == [0]
    doc = store.get_module("M-E")["left"]
    assert doc["mask"] == side["mask"]                                   # the model's mask is kept
    assert np.array_equal(decode(store.get_image(doc["corrected_mask"]["full"]["tiled_id"][0])), fix)
    full = decode(store.get_image(doc["corrected_mask"]["full"]["src_id"]))
    assert np.array_equal(full[y:y + h, x:x + w], fix)
    model_mask = decode(store.get_image(side["mask"]["full"]["src_id"]))
    assert np.array_equal(full[h:, :], model_mask[h:, :])              # other tiles untouched
    assert doc["corrected_mask"]["full"]["tiled_id"][1:] == side["mask"]["full"]["tiled_id"][1:]
    # verify without a correction, then take it back
    assert review.verify(store, "M-E", "left", 4)["verified_masks"][4] is True
    assert review.verify(store, "M-E", "left", 4, False)["verified_masks"][4] is False


@pytest.mark.parametrize("make_bad, words", [
    (lambda w, h: rec.encode_png(np.zeros((h, w + 1), np.uint8)), r"px \(tile size\), got 129x128"),
    (lambda w, h: rec.encode_png(np.zeros((h, w, 3), np.uint8)), "single-channel"),
    (lambda w, h: rec.encode_png(np.zeros((h, w), np.uint16)), "8-bit"),
    (lambda w, h: rec.encode_png(np.full((h, w), 7, np.uint8)), "only hold 0 and 255"),
    (lambda w, h: b"GIF89a" + b"\0" * 100, "must be a PNG"),
    (lambda w, h: b"\x89PNG\r\n\x1a\n" + b"\0" * 50, "no valid IHDR"),
    (lambda w, h: _png_declaring(w, h, 8, 0)[:-20] + b"\0" * 20, "not a readable PNG"),
    (lambda w, h: b"", "empty body"),
])
def test_a_wrong_corrected_mask_is_refused_and_changes_nothing(store, make_bad, words):
    r = make_record(8, "M-F")
    store.write([r])
    before = store.get_module("M-F")
    _x, _y, w, h = r.side["tiles"][0]
    with pytest.raises(InputError, match=words):
        review.correct_mask(store, "M-F", "left", 0, make_bad(w, h))
    assert store.get_module("M-F") == before


def _png_declaring(width: int, height: int, depth: int, colour: int, idat: bytes | None = None) -> bytes:
    """A PNG whose header declares ``width`` x ``height``; its data is a few hundred bytes of zlib
    that would inflate to the whole image (a decompression bomb when the size is large)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    if idat is None:
        row = b"\0" * (1 + width * max(1, depth // 8) * {0: 1, 2: 3, 4: 2, 6: 4}.get(colour, 1))
        z = zlib.compressobj(9)
        idat = b"".join(z.compress(row) for _ in range(min(height, 64))) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.mark.parametrize("depth, colour", [(8, 0), (16, 0), (8, 2)])
def test_a_png_bomb_is_refused_from_its_header_without_decoding(store, monkeypatch, depth, colour):
    """An upload declaring 30000x30000 px is refused before cv2 sees it (it used to be decoded first:
    2.2 GB for 8 bits, 4 GB for 16)."""
    r = make_record(10, "M-BOMB")
    store.write([r])
    decoded = []
    real = rec.cv2.imdecode
    monkeypatch.setattr(rec.cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    with pytest.raises(InputError, match="30000x30000|8-bit single-channel"):
        review.correct_mask(store, "M-BOMB", "left", 0, _png_declaring(30000, 30000, depth, colour))
    assert decoded == []
    with pytest.raises(InputError, match="CRC"):
        bomb = bytearray(_png_declaring(30000, 30000, 8, 0))
        bomb[20] ^= 1                                           # a header that lies about itself
        review.correct_mask(store, "M-BOMB", "left", 0, bytes(bomb))
    assert decoded == []


def test_review_errors(store):
    r = make_record(9, "M-G")
    store.write([r])
    ok = rec.encode_png(np.zeros((128, 128), np.uint8))
    with pytest.raises(InputError, match="index 0-8"):
        review.correct_mask(store, "M-G", "left", 9, ok)
    with pytest.raises(InputError, match="index 0-8"):
        review.verify(store, "M-G", "left", -1)
    with pytest.raises(InputError, match="left or right"):
        review.verify(store, "M-G", "top", 0)
    with pytest.raises(NotFoundError, match="no right side"):
        review.verify(store, "M-G", "right", 0)
    with pytest.raises(NotFoundError):
        review.verify(store, "M-X", "left", 0)
    with pytest.raises(InputError, match="true or false"):
        review.verify(store, "M-G", "left", 0, "yes")
    store.write([make_record(10, "M-G")])  # a newer image of the same side arrives while a person reviews
    kept = review.correct_mask(store, "M-G", "left", 0, ok, result_id=r.id)   # issue 27: kept on its own
    assert kept["result_id"] == r.id and kept["verified_masks"][0]                # acquisition, not refused
    assert store.get_module("M-G")["left"]["verified_masks"] == [False] * 9      # the newer one untouched
    assert store.get_result(r.id)[2]["verified_masks"][0]


def test_indexes_twice_are_harmless(store):
    store.ensure_indexes()
    store.ensure_indexes()
    store.write([make_record(1, "M-H")])
    assert store.count_results() == 1


# ---------------------------------------------------------------- MongoDB specifics
def test_mongo_documents_use_objectids_and_dates_as_the_atlas_app():
    from bson import ObjectId
    with mongomock_store() as store:
        r = make_record(11, "M-I")
        store.write([r])
        raw = store.db.modules.find_one({"name": "M-I"})
        assert isinstance(raw["left"]["original"]["full"]["src_id"], ObjectId)
        assert all(isinstance(i, ObjectId) for i in raw["left"]["mask"]["thumbnail"]["tiled_id"])
        assert hasattr(raw["uploaded_at"], "year") and hasattr(raw["left"]["processed_at"], "year")
        f = store.db.fs.files.find_one({"_id": ObjectId(r.side["original"]["full"]["src_id"])})
        assert f["contentType"] == "image/png" and f["metadata"]["module"] == "M-I"
        names = {ix["name"] for ix in store.db.modules.list_indexes()}
        assert "name_unique" in names
        # A write cut short leaves chunks without a file document: the replay clears and rewrites them.
        oid = ObjectId(r.side["anomaly_map"]["full"]["src_id"])
        data = store.get_image(str(oid))
        store.db.fs.files.delete_one({"_id": oid})
        store.db.fs.chunks.delete_many({"files_id": oid, "n": {"$gt": 0}})
        store.db.fs.chunks.update_one({"files_id": oid, "n": 0}, {"$set": {"data": b"partial"}})
        store.db.fs.chunks.insert_one({"files_id": oid, "n": 1, "data": b"partial"})
        store.write([r])
        assert store.get_image(str(oid)) == data


@pytest.mark.parametrize("finishes", ["soon", "as-its-chunks-are-cleared"])
def test_an_image_another_writer_is_half_way_through_is_written_once(monkeypatch, finishes):
    """Two workers store the same image at the same moment (a good image's empty mask: one content,
    one id), and the other has put its chunks, not yet its files document. Finishing soon, it is
    waited for, not taken for a write cut short and cleared. Finishing just as this write, after
    PUT_WAIT, clears its chunks, this write puts them back (the same bytes) and takes the other's
    document as its own: it used to raise FileExists there, and a record of two workers at once
    went missing (tests/scale/test_scaleout.py)."""
    import threading
    from datetime import datetime, timezone

    import mongomock
    from bson import ObjectId

    from vi_stream.store import mongo
    monkeypatch.setattr(mongo, "PUT_WAIT", 0.3)
    with mongomock_store() as store:
        store.write([make_record(13, "M-K")])        # GridFS's indexes, as on any store written before
        r = make_record(12, "M-J")
        key, data = next((k, v) for k, v in r.images.items()
                         if store.db.fs.files.count_documents({"_id": ObjectId(k)}) == 0)
        oid = ObjectId(key)
        assert len(data) < 255 * 1024                # one chunk
        store.db.fs.chunks.insert_one({"files_id": oid, "n": 0, "data": data})    # the other writer, half way
        failures, cleared = [], []

        def finish():                                # ... and its files document
            try:
                store.db.fs.files.insert_one({"_id": oid, "length": len(data), "chunkSize": 255 * 1024,
                                              "uploadDate": datetime.now(timezone.utc), "filename": "other.png",
                                              "contentType": "image/png", "metadata": {}})
            except Exception as err:                 # the other writer's own write failing
                failures.append(err)
        delete_many = mongomock.collection.Collection.delete_many

        def clearing(coll, query, *a, **k):
            out = delete_many(coll, query, *a, **k)
            if coll.name == "fs.chunks" and query.get("files_id") == oid:
                cleared.append(query)
                if finishes == "as-its-chunks-are-cleared":
                    finish()
            return out
        monkeypatch.setattr(mongomock.collection.Collection, "delete_many", clearing)
        other = threading.Timer(0.1, finish) if finishes == "soon" else None
        if other:
            other.start()
        store.write([r])
        if other:
            other.join()
        assert not failures and store.get_image(key) == data
        assert store.db.fs.chunks.count_documents({"files_id": oid}) == 1
        assert store.get_module("M-J")["left"]["result_id"] == r.id
        assert len(cleared) == (0 if finishes == "soon" else 1)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_mongo_server_down_is_unavailable_not_a_crash():
    from vi_stream.store.mongo import MongoStore
    store = MongoStore(f"mongodb://127.0.0.1:{_closed_port()}/x", timeout_ms=200).start()  # no server: starts
    try:
        with pytest.raises(StoreUnavailable, match="cannot"):
            store.write([make_record(1)])
        with pytest.raises(StoreUnavailable):
            store.get_module("M-1")
    finally:
        store.close()


def test_which_mongo_errors_mean_spool_and_retry():
    import pymongo.errors as pe

    from vi_stream.store.mongo import _transient
    assert _transient(pe.AutoReconnect("primary gone"))
    assert _transient(pe.ServerSelectionTimeoutError("no servers"))
    assert _transient(pe.OperationFailure("disk", code=14031))            # out of disk space on the server
    assert _transient(pe.NotPrimaryError("stepped down"))
    assert not _transient(pe.DuplicateKeyError("E11000", code=11000))    # a real conflict: not retried forever
    assert not _transient(pe.OperationFailure("bad", code=2))
    assert not _transient(ValueError("a bug"))


def test_local_store_disk_failure_is_unavailable(tmp_path, monkeypatch):
    store = LocalStore(str(tmp_path / "s")).start()

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(store, "_write_file", full)
    with pytest.raises(StoreUnavailable, match="No space left"):
        store.write([make_record(1)])
    assert store.count_results() == 0
    store.close()


def test_local_store_files_vanishing_mid_write_say_removed_and_the_store_reopens(tmp_path, monkeypatch):
    """``rm -rf`` of the store folder empties it before removing it: a write that lands in between
    finds a file gone while the folder and catalogue are still there. That says "removed" (what the
    operator has to know), not "No such file or directory"; the next write reopens the store."""
    store = LocalStore(str(tmp_path / "s")).start()
    real = store._write_file

    def gone(image_id, data):
        raise FileNotFoundError(2, "No such file or directory", store._path(image_id))
    monkeypatch.setattr(store, "_write_file", gone)
    with pytest.raises(StoreUnavailable, match=r"files under .*/s were removed while in use \(.*/images/"):
        store.write([make_record(1)])
    monkeypatch.setattr(store, "_write_file", real)
    store.write([make_record(1)])                 # the folder and catalogue are there: reopened, written
    assert store.count_results() == 1
    store.close()


# ---------------------------------------------------------------- selection
def test_open_store_selection(tmp_path):
    from vi_stream.service import config as config_mod
    assert open_store("off") is None
    s = open_store(str(tmp_path / "here"))
    assert isinstance(s, LocalStore) and s.folder == str(tmp_path / "here")
    assert not (tmp_path / "here").exists()                 # chosen, not connected: start() opens it
    with s:
        assert (tmp_path / "here" / "catalogue.sqlite").is_file()
    s.close()                                                # closing twice is harmless
    cfg = config_mod.build(None, env={"VI_STREAM_STATE_DIR": str(tmp_path / "st")}, input="tcp://127.0.0.1:1")
    s = open_store(cfg.store)                                  # the default: the state directory's local store
    assert s.folder == str(tmp_path / "st" / "store") and cfg.spool == str(tmp_path / "st" / "spool" / "VI")
    s.close()
    with pytest.raises(ConfigError, match="mongodb:// URI"):
        open_store("http://db/x")
    with pytest.raises(ConfigError, match="no store named"):
        open_store(None)
    with pytest.raises(ConfigError, match="bad MongoDB URI"):
        open_store("mongodb://")
    env = {"MONGO_HOST": "db.example:27017", "MONGO_USER": "itk", "MONGO_PASSWORD": "p@ss/word",
           "MONGO_DATABASE": "itk_vi"}
    uri = config_mod.mongo_uri_from_env(env)
    assert uri == "mongodb://itk:p%40ss%2Fword@db.example:27017/itk_vi?authSource=admin"
    assert config_mod.redact(uri) == "mongodb://itk:***@db.example:27017/itk_vi?authSource=admin"
    cfg = config_mod.build(None, env=env, input="tcp://127.0.0.1:1")
    assert cfg.store == uri and config_mod.as_dict(cfg)["store"].startswith("mongodb://itk:***@")
    with pytest.raises(ConfigError, match="both MONGO_USER and MONGO_PASSWORD"):
        config_mod.build(None, env={"MONGO_HOST": "h", "MONGO_USER": "u"}, input="tcp://127.0.0.1:1")
    assert config_mod.build(None, env=env, input="tcp://127.0.0.1:1", store="off").store == "off"
    with pytest.raises(ConfigError, match="store_tile"):
        config_mod.build(None, env={}, input="tcp://127.0.0.1:1", store_tile=8)
