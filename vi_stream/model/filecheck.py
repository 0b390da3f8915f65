"""What a model file may hold, checked before a byte of array data is read, and its digest.

A model file comes from outside (an upload, SFTP, a path given to ``run``), so its archive is
read as an adversary's: :func:`inspect` reads the zip's directory and each member's ``.npy``
header (dtype and shape, from the member's stream, without its data) and refuses, with a
one-line :class:`~vi_stream.errors.ModelError` naming the member, any file that

* has a member that is not one of a model's (``_EXPECTED``), twice the same name, or more members;
* stores a member other than plainly or deflated, or inflates more than ``MAX_RATIO`` times
  (a member under ``SMALL_MEMBER`` may compress as it likes);
* declares a dtype that is not a plain number, a shape of the wrong rank, or data that is not
  exactly what the zip entry's size says (a header declaring 40 TB in a 4 KB entry);
* has a member flagged encrypted (a model is never encrypted);
* declares more data for a member than its limit, or more for all its members together than
  ``MAX_TOTAL_BYTES``, both from what the largest fit ``ModelConfig.validate`` allows makes (below);
* declares shapes that disagree with each other (:func:`_cross_check`: ``mean`` is (raw,),
  ``components`` (raw, d), ``bank`` (M, d) with M x raw float32 within ``MAX_BANK_BYTES``, ``centres``
  and ``medoids`` (K, d) with K <= M, ``list_start``/``list_end`` (K,)), all from the headers.

Any other failure while reading the directory or a header is a :class:`ModelError` too.

:func:`digest` is the SHA-256 over every member but ``digest`` itself (name, dtype, shape,
bytes), written by ``save`` and compared by ``load``: it catches a file altered after it was
saved (a threshold edited, a bank zeroed, a member dropped or added, the self-check's tolerance
widened) and corruption. It is not a signature: whoever edits a file can recompute it, and
only the self-check (scores) and the registry's hash of a registered version stand then.
"""
from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np

from vi_stream.errors import ModelError

# The largest bank a fit makes: ModelConfig.validate refuses a bank_size whose reservoir
# (bank_size rows x every raw feature dimension, float32, held in memory while fitting) would
# exceed this, so every file a fit writes loads. 1 GiB is 15x the default bank (120,000 rows x
# 144 dims x 4 bytes = 69 MB). A file's bank rows x its mean's length (the raw dimensions) must
# fit in it too: that is the reservoir the bank was drawn from.
MAX_BANK_BYTES = 1 << 30
# Raw feature dimensions: every block of EfficientNet-Lite0 tapped at once (the sum of
# backbone.block_table()'s channels; test_model checks it); the default taps give 144.
MAX_RAW_DIM = 1808
# k-means cells: 64x the default 1024 (ModelConfig.validate holds cells to this).
MAX_CELLS = 1 << 16
# centres and medoids together (2 x cells x kept dims x float32): 256 MB; the default index's are
# 1.2 MB (2 x 1024 x 144 x 4). ModelConfig.validate refuses cells x dim beyond it.
MAX_INDEX_BYTES = 1 << 28
# The largest tile a model takes (ModelConfig.validate holds it to this); its check tiles are
# three tiles, colour, of up to 4-byte pixels.
MAX_TILE = 2048
MAX_CHECK_TILES_BYTES = 3 * MAX_TILE * MAX_TILE * 3 * 4
MAX_META_BYTES = 1 << 20     # JSON metadata; a fitted model's is a few KB
SMALL_MEMBER = 1 << 20       # members this small may compress any amount: they cannot hurt
MAX_RATIO = 10               # np.savez_compressed gets ~1.1x from a float bank; a bomb gets 1000x

# member: (ranks allowed, dtype kinds allowed, most bytes)
_EXPECTED = {
    "meta": ((1,), "u", MAX_META_BYTES),
    "digest": ((1,), "u", 1024),
    "mean": ((1,), "f", MAX_RAW_DIM * 4),                      # (raw,) float32: 7 KB at most
    "components": ((2,), "f", MAX_RAW_DIM * MAX_RAW_DIM * 4),  # (raw, d <= raw) float32: 13 MB
    "bank": ((2,), "f", MAX_BANK_BYTES),
    "centres": ((2,), "f", MAX_INDEX_BYTES),
    "medoids": ((2,), "f", MAX_INDEX_BYTES),
    "list_start": ((1,), "iu", MAX_CELLS * 8),                 # (K,) int64: 512 KB
    "list_end": ((1,), "iu", MAX_CELLS * 8),
    "check_tiles": ((3, 4), "uif", MAX_CHECK_TILES_BYTES),
}
# The largest file a fit writes (1.41 GiB): a bank at its limit, centres and medoids at theirs
# together, components, mean and lists at theirs, the largest check tiles, metadata, digest and
# each member's .npy header; the sum the zip directory declares for all members may not exceed it.
MAX_TOTAL_BYTES = (MAX_BANK_BYTES + MAX_INDEX_BYTES + MAX_RAW_DIM * MAX_RAW_DIM * 4 + MAX_RAW_DIM * 4
                   + 2 * MAX_CELLS * 8 + MAX_CHECK_TILES_BYTES + MAX_META_BYTES + 1024 + len(_EXPECTED) * 65536)
ALGORITHM = "sha256"


def check_sizes(tile: int, taps, bank_size: int, cells: int = 1, dim: int = 1) -> None:
    """ConfigError unless a fit with these settings writes a file :func:`inspect` accepts."""
    from vi_stream.errors import ConfigError
    from vi_stream.model.backbone import block_table
    if not 32 <= tile <= MAX_TILE:
        raise ConfigError(f"tile must be 32-{MAX_TILE} px, got {tile}")
    table = block_table()
    raw = sum(table[t].channels for t in set(taps) if isinstance(t, int) and 0 <= t < len(table))
    if isinstance(bank_size, int) and bank_size * max(raw, 1) * 4 > MAX_BANK_BYTES:
        raise ConfigError(f"bank_size {bank_size:,} x {raw} feature dimensions is more than a model file may hold "
                          f"({MAX_BANK_BYTES >> 20} MB of float32): at most {MAX_BANK_BYTES // (4 * max(raw, 1)):,} "
                          f"with these taps")
    if isinstance(cells, int) and cells > MAX_CELLS:
        raise ConfigError(f"cells must be at most {MAX_CELLS:,}, got {cells:,}")
    if isinstance(cells, int) and isinstance(dim, int) and isinstance(bank_size, int):
        kept = max(1, min(dim, raw))
        if 2 * min(cells, bank_size) * kept * 4 > MAX_INDEX_BYTES:
            raise ConfigError(f"cells {cells:,} x {kept} kept dimensions is more than a model file may hold "
                              f"({MAX_INDEX_BYTES >> 20} MB of centres and medoids): at most "
                              f"{MAX_INDEX_BYTES // (8 * kept):,} with these taps and dim")


def inspect(path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each member's (shape, dtype) as declared, once the whole file passed the checks above."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if len(infos) > len(_EXPECTED):
                raise ModelError(f"{path}: not a vi_stream model ({len(infos)} members; a model has at most "
                                 f"{len(_EXPECTED)})")
            total = sum(info.file_size for info in infos)
            if total > MAX_TOTAL_BYTES:
                raise ModelError(f"{path}: declares {total:,} bytes in all, more than a model holds "
                                 f"({MAX_TOTAL_BYTES:,})")
            out = {}
            for info in infos:
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if name not in _EXPECTED:
                    raise ModelError(f"{path}: not a vi_stream model (unexpected member {info.filename!r})")
                if name in out:
                    raise ModelError(f"{path}: not a vi_stream model (member {info.filename!r} twice)")
                out[name] = _member(z, info, name, path)
            _cross_check(out, path)
            return out
    except ModelError:
        raise
    except Exception as err:   # whatever zipfile or numpy raise on a hostile file is a refusal, one line
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise ModelError(f"{path}: corrupt or truncated model file ({reason})") from err


def _cross_check(out: dict, path: str) -> None:
    """The shapes a fit writes, member against member (anomaly.AnomalyModel.fit, index.PatchIndex.build)."""
    if not all(name in out for name in ("mean", "components", "bank", "centres", "medoids", "list_start",
                                        "list_end")):
        return   # modelfile.load names the missing member before reading any array
    shape = {name: s for name, (s, _dtype) in out.items()}
    raw, = shape["mean"]
    problem = None
    if not 1 <= raw <= MAX_RAW_DIM:
        problem = f"mean has {raw:,} raw dimensions (a model has 1-{MAX_RAW_DIM})"
    elif shape["components"][0] != raw or not 1 <= shape["components"][1] <= raw:
        problem = f"components {shape['components']} is not (raw, d <= raw) with raw = {raw} from mean"
    else:
        d = shape["components"][1]
        rows, k = shape["bank"][0], shape["centres"][0]
        if shape["bank"][1] != d:
            problem = f"bank {shape['bank']} is not (rows, {d})"
        elif rows * raw * 4 > MAX_BANK_BYTES:
            problem = (f"bank has {rows:,} rows of {raw} raw dimensions ({rows * raw * 4:,} bytes of float32), more "
                       f"than a fit draws from ({MAX_BANK_BYTES:,})")
        elif shape["centres"] != (k, d) or shape["medoids"] != (k, d):
            problem = f"centres {shape['centres']} and medoids {shape['medoids']} are not both (cells, {d})"
        elif k > rows or k > MAX_CELLS or 2 * k * d * 4 > MAX_INDEX_BYTES:
            problem = f"{k:,} cells of {d} dimensions for a bank of {rows:,} rows is more than a fit makes"
        elif shape["list_start"] != (k,) or shape["list_end"] != (k,):
            problem = f"list_start {shape['list_start']} and list_end {shape['list_end']} are not ({k},)"
    if problem:
        raise ModelError(f"{path}: member shapes disagree: {problem}: corrupt or forged")


def _member(z: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, path: str):
    ranks, kinds, limit = _EXPECTED[name]
    where = f"{path}: member {name!r}"
    if info.flag_bits & 0x1:
        raise ModelError(f"{where} is encrypted (a model never is)")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ModelError(f"{where} is compressed with method {info.compress_type} (a model is stored or deflated)")
    if info.file_size > limit + 65536:
        raise ModelError(f"{where} declares {info.file_size:,} bytes, more than a model holds ({limit:,})")
    if info.file_size > SMALL_MEMBER and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise ModelError(f"{where} would inflate {info.file_size / max(info.compress_size, 1):.0f} times "
                         f"({info.compress_size:,} compressed bytes to {info.file_size:,}): refused as a zip bomb")
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ModelError(f"{where} is .npy format {version} (a model's are 1.0 or 2.0)")
        header = f.tell()
    if dtype.hasobject or dtype.kind not in kinds or dtype.itemsize > 8 or dtype.fields is not None:
        raise ModelError(f"{where} has dtype {dtype} (expected {'/'.join(kinds)} numbers)")
    if len(shape) not in ranks:
        raise ModelError(f"{where} has {len(shape)} dimensions (expected {' or '.join(map(str, ranks))})")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared > limit:
        raise ModelError(f"{where} declares shape {shape} ({declared:,} bytes), more than a model holds "
                         f"({limit:,})")
    if declared != info.file_size - header:
        raise ModelError(f"{where} declares shape {shape} ({declared:,} bytes) but holds "
                         f"{info.file_size - header:,}: corrupt or forged")
    return tuple(shape), dtype


def digest(arrays: dict[str, np.ndarray]) -> str:
    """``sha256:HEX`` over every member but ``digest``: name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        if name == "digest":
            continue
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape), a.nbytes]).encode() + b"\n")
        h.update(memoryview(a).cast("B") if a.nbytes else b"")
    return f"{ALGORITHM}:{h.hexdigest()}"


def digest_member(arrays: dict[str, np.ndarray]) -> np.ndarray:
    return np.frombuffer(digest(arrays).encode(), np.uint8)


def check_digest(arrays: dict[str, np.ndarray], path: str) -> bool:
    """True when the file's digest matches its members; False when it has none; ModelError when it differs."""
    if "digest" not in arrays:
        return False
    try:
        recorded = arrays["digest"].tobytes().decode("ascii")
    except UnicodeDecodeError:
        recorded = "(unreadable)"
    if recorded != digest(arrays):
        raise ModelError(f"{path}: its digest does not match its contents: the file was altered or corrupted "
                         "after it was saved (refit, or save it again from the original)")
    return True
