"""Model files: a plain ``.npz`` (numpy arrays only, loaded with
``allow_pickle=False``) plus a JSON metadata member, written atomically.

Readable without vi_stream: ``json.loads(np.load(path)["meta"].tobytes())``.
Anything that is not such a file — truncated, corrupt, encrypted, another
format version, a pickle, a zip bomb, a member or all members together larger
than a fit makes, members whose shapes a fit never writes together — raises
:class:`~vi_stream.errors.ModelError` with a one-line reason, before any array
data is read (:mod:`.filecheck`). ``save`` writes a digest over every member;
``load`` refuses a file whose digest does not match, and a file without one
(an older save, or an edit) unless ``allow_unchecked`` (``--allow-unchecked``).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile

import numpy as np

from vi_stream.errors import ModelError
from vi_stream.model.anomaly import AnomalyModel, Intensity
from vi_stream.model.config import config_from_meta
from vi_stream.model import filecheck, selfcheck
from vi_stream.model.index import PatchIndex

log = logging.getLogger("vi_stream.model")

_ARRAYS = {"mean": 1, "components": 2, "bank": 2, "centres": 2, "medoids": 2, "list_start": 1, "list_end": 1}


def save(model: AnomalyModel, path: str) -> str:
    """Write ``model`` to ``path`` (temp file + rename, so a crash leaves the old file), with its
    self-check's reference tiles (:mod:`.selfcheck`)."""
    check_tiles = selfcheck.attach(model)
    meta = dict(model.meta, threshold=model.threshold, gate=model.index.gate, nprobe=model.index.nprobe)
    arrays = {
        "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8),
        "mean": model.mean, "components": model.components, "bank": model.index.bank,
        "centres": model.index.centres, "medoids": model.index.medoids,
        "list_start": model.index.list_start, "list_end": model.index.list_end, "check_tiles": check_tiles,
    }
    arrays["digest"] = filecheck.digest_member(arrays)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".model-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_meta(path: str) -> dict:
    """Only the metadata (cheap: the bank is not read)."""
    with _open(path) as z:
        return _meta(z, path)


def load(path: str, device: str | None = None, allow_unchecked: bool = False) -> AnomalyModel:
    """The model in ``path``, its digest and self-check verified. ``allow_unchecked``: a file
    without a digest (an older vi_stream's) loads with a warning instead of being refused."""
    with _open(path) as z:
        meta = _meta(z, path)
        for name in _ARRAYS:
            if name not in z.files:
                raise ModelError(f"{path}: not a vi_stream model (missing '{name}')")
        members = {}
        for name in z.files:
            try:
                members[name] = z[name]
            except (ValueError, OSError, zipfile.BadZipFile, EOFError, MemoryError) as err:
                raise ModelError(f"{path}: corrupt model file ({name}: {err})") from err
    digested = filecheck.check_digest(members, path)
    if not digested:
        if not allow_unchecked:
            raise ModelError(f"{path}: has no digest (saved by an older vi_stream, or edited): refused; accept it "
                             "unverified with --allow-unchecked (run, models register), or save it again with "
                             "vi_stream.model.save(load(path, allow_unchecked=True), new_path)")
        log.warning("%s: has no digest (an older vi_stream's file, or an edited one): loaded unverified "
                    "because of --allow-unchecked", path)
    arrays = {name: members[name] for name in _ARRAYS}
    for name, ndim in _ARRAYS.items():
        if arrays[name].ndim != ndim:
            raise ModelError(f"{path}: corrupt model file ('{name}' has {arrays[name].ndim} dimensions, "
                             f"expected {ndim})")
    check_tiles = members.get("check_tiles")
    config = config_from_meta(meta)
    _check_lattice(meta, config, path)
    d = arrays["components"].shape[1]
    k = arrays["centres"].shape[0]
    if (arrays["bank"].shape[1] != d or arrays["centres"].shape[1] != d or arrays["medoids"].shape != (k, d)
            or arrays["list_start"].shape != (k,) or arrays["list_end"].shape != (k,)
            or arrays["mean"].shape[0] != arrays["components"].shape[0]
            or (k and int(arrays["list_end"][-1]) != arrays["bank"].shape[0])):
        raise ModelError(f"{path}: corrupt model file (array shapes disagree)")
    try:
        index = PatchIndex(arrays["bank"].astype(np.float32), arrays["centres"].astype(np.float32),
                           arrays["medoids"].astype(np.float32), arrays["list_start"].astype(np.int64),
                           arrays["list_end"].astype(np.int64), int(meta["nprobe"]), float(meta["gate"]))
        lo, hi = meta["intensity"]
        model = AnomalyModel(config, int(meta["channels"]), Intensity(float(lo), float(hi)),
                             arrays["mean"].astype(np.float32), arrays["components"].astype(np.float32),
                             index, float(meta["threshold"]), meta, device)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{path}: bad model metadata ({err})") from err
    selfcheck.verify(model, check_tiles, path, required=digested)
    model.file_digest = members["digest"].tobytes().decode() if digested else None
    return model


def _check_lattice(meta: dict, config, path: str) -> None:
    """The lattice score's calibration (model/lattice.py) is what a fit writes: with the setting on,
    ``lattice`` holds ``enabled`` and, when enabled, maps this vi_stream computes at a blur and a
    reach a fit writes (:func:`~vi_stream.model.lattice.spec`) and one finite positive gain per map (a
    calibration fitted when the score had two maps names none: two), and spread tables this
    vi_stream reads when, and only when, ``lattice_spread`` is on (:func:`~vi_stream.model.lattice_spread.read`)."""
    from vi_stream.model import lattice as lattice_score, lattice_spread
    lat = meta.get("lattice")
    problem = None
    if not config.lattice:
        # a fit with the setting off writes {"enabled": false, ...} (or, before the lattice score, nothing)
        if lat is not None and not (isinstance(lat, dict) and lat.get("enabled") is False):
            problem = "the lattice setting is off but the file has a lattice calibration that is on"
    elif not isinstance(lat, dict) or not isinstance(lat.get("enabled"), bool):
        problem = "the lattice setting is on but the file has no lattice calibration"
    elif lat["enabled"]:
        gains = lat.get("gains")
        try:
            maps, _blur, _reach = lattice_score.spec(lat)
        except ValueError as err:          # the maps, the blur or the reach (lattice.spec names which)
            problem = str(err)
        else:
            if not (isinstance(gains, list) and len(gains) == len(maps)
                    and all(isinstance(g, (int, float)) and not isinstance(g, bool) and 0 < g < float("inf")
                            for g in gains)):
                problem = f"lattice gains {gains!r} are not {len(maps)} finite positive numbers (one per map)"
            elif config.lattice_spread != (lat.get("spread") is not None):
                problem = (f"the lattice_spread setting is {'on' if config.lattice_spread else 'off'} but the "
                           f"calibration {'has no' if config.lattice_spread else 'has'} spread tables")
            else:
                try:
                    lattice_spread.read(lat.get("spread"), len(maps))
                except ValueError as err:  # the bins or the tables (lattice_spread.read names which)
                    problem = str(err)
    if problem:
        raise ModelError(f"{path}: bad lattice calibration: {problem}")


class _open:
    def __init__(self, path: str):
        self.path = path
        self.z = None

    def __enter__(self):
        path = self.path
        if not os.path.isfile(path):
            raise ModelError(f"model file not found: {path}")
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:1] == b"\x80":
            raise ModelError(f"{path}: is a Python pickle; vi_stream never unpickles model files")
        if head != b"PK\x03\x04":
            raise ModelError(f"{path}: not a vi_stream model file (expected an .npz archive)")
        filecheck.inspect(path)   # sizes, shapes and dtypes, before any array data is read
        try:
            self.z = np.load(path, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
            raise ModelError(f"{path}: corrupt or truncated model file ({err})") from err
        return self.z

    def __exit__(self, *exc):
        if self.z is not None:
            self.z.close()


def _meta(z, path: str) -> dict:
    if "meta" not in z.files:
        raise ModelError(f"{path}: not a vi_stream model (no metadata)")
    try:
        meta = json.loads(z["meta"].tobytes().decode())
    except (ValueError, UnicodeDecodeError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise ModelError(f"{path}: corrupt model metadata ({err})") from err
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: corrupt model metadata (not an object)")
    version = meta.get("format_version")
    if version != AnomalyModel.FORMAT_VERSION:
        raise ModelError(f"{path}: model format version {version!r} is not supported "
                         f"(this vi_stream reads version {AnomalyModel.FORMAT_VERSION}); refit or upgrade")
    return meta
