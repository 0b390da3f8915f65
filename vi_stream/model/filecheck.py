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
* declares more data for a member than its limit, which comes from what a fit makes (below).

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
# 144 dims x 4 bytes = 69 MB); centres and medoids are at most as many rows as the bank.
MAX_BANK_BYTES = 1 << 30
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
    "mean": ((1,), "f", MAX_BANK_BYTES),
    "components": ((2,), "f", MAX_BANK_BYTES),
    "bank": ((2,), "f", MAX_BANK_BYTES),
    "centres": ((2,), "f", MAX_BANK_BYTES),
    "medoids": ((2,), "f", MAX_BANK_BYTES),
    "list_start": ((1,), "iu", MAX_BANK_BYTES),
    "list_end": ((1,), "iu", MAX_BANK_BYTES),
    "check_tiles": ((3, 4), "uif", MAX_CHECK_TILES_BYTES),
}
ALGORITHM = "sha256"


def check_sizes(tile: int, taps, bank_size: int) -> None:
    """ConfigError unless a fit with these settings writes a file :func:`inspect` accepts."""
    from vi_stream.errors import ConfigError
    from vi_stream.model.backbone import block_table
    if not 32 <= tile <= MAX_TILE:
        raise ConfigError(f"tile must be 32-{MAX_TILE} px, got {tile}")
    table = block_table()
    raw = sum(table[t].channels for t in taps if isinstance(t, int) and 0 <= t < len(table))
    if isinstance(bank_size, int) and bank_size * max(raw, 1) * 4 > MAX_BANK_BYTES:
        raise ConfigError(f"bank_size {bank_size:,} x {raw} feature dimensions is more than a model file may hold "
                          f"({MAX_BANK_BYTES >> 20} MB of float32): at most {MAX_BANK_BYTES // (4 * max(raw, 1)):,} "
                          f"with these taps")


def inspect(path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each member's (shape, dtype) as declared, once the whole file passed the checks above."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if len(infos) > len(_EXPECTED):
                raise ModelError(f"{path}: not a vi_stream model ({len(infos)} members; a model has at most "
                                 f"{len(_EXPECTED)})")
            out = {}
            for info in infos:
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if name not in _EXPECTED:
                    raise ModelError(f"{path}: not a vi_stream model (unexpected member {info.filename!r})")
                if name in out:
                    raise ModelError(f"{path}: not a vi_stream model (member {info.filename!r} twice)")
                out[name] = _member(z, info, name, path)
            return out
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as err:
        raise ModelError(f"{path}: corrupt or truncated model file ({err})") from err


def _member(z: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, path: str):
    ranks, kinds, limit = _EXPECTED[name]
    where = f"{path}: member {name!r}"
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
