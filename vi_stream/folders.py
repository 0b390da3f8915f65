"""Folders: the state folder, and where numba keeps the compiled kernels.

:func:`state_dir` is where a process keeps what must survive it (the local store, the spool,
fetched models): ``$VI_STREAM_STATE_DIR`` (systemd's ``StateDirectory``), else
``$XDG_STATE_HOME/vi_stream``, else ``~/.local/state/vi_stream``.

Every pixel, statistics and search kernel is compiled on its first call and cached on disk
(``cache=True``), next to its source by default. Numba looks for a writable place when a module
is imported: ``NUMBA_CACHE_DIR``, the package's own ``__pycache__``, then ``~/.cache/numba``;
with none it refuses to import the module at all ("cannot cache function ...: no locator
available"). That is the daemon under its systemd unit (``DynamicUser``, ``ProtectSystem=strict``,
``ProtectHome``: a read-only install and no home) and a container running as a user who does not
own the install. There the kernels are cached in the state folder (``$VI_STREAM_STATE_DIR/numba``,
the unit's writable ``StateDirectory``), else in a private temporary folder.

:func:`ensure_numba_cache` runs before any module with a kernel is imported (from
``vi_stream.threads``, ``vi_stream.model`` and ``vi_stream.search``); it does not import numba.
"""
from __future__ import annotations

import functools
import os
import stat
import sys
import tempfile

PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _writable(path: str) -> bool:
    """numba's own test of a cache folder: it can be made, and a file written in it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def state_dir(env: dict[str, str] | None = None) -> str:
    """$VI_STREAM_STATE_DIR (systemd's StateDirectory), else $XDG_STATE_HOME/vi_stream, else ~/.local/state/vi_stream."""
    env = os.environ if env is None else env
    if env.get("VI_STREAM_STATE_DIR"):
        return env["VI_STREAM_STATE_DIR"]
    base = env.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "vi_stream")


def _private_temp() -> str:
    """``/tmp/vi_stream-numba-<uid>``, made 0700 and used only while it is this user's own real folder
    that no one else may write to (numba loads its cache with pickle: a folder another user prepared
    would run their code); else a new private folder of this process's own."""
    path = os.path.join(tempfile.gettempdir(), f"vi_stream-numba-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return tempfile.mkdtemp(prefix="vi_stream-numba-")
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077:
        return path
    return tempfile.mkdtemp(prefix="vi_stream-numba-")


MARK = "VI_STREAM_NUMBA_CACHE"   # NUMBA_CACHE_DIR was set by this module (a child inherits it: checked again)


@functools.cache
def ensure_numba_cache() -> str | None:
    """The folder numba caches in when the install is not writable (``None``: numba's own choice,
    ``NUMBA_CACHE_DIR`` or the package's ``__pycache__``). Decided once per process; a folder chosen
    here and inherited by a child (a Slurm task on another node, say) is checked again there."""
    choice = None
    given = os.environ.get("NUMBA_CACHE_DIR")
    inherited = given and given == os.environ.get(MARK) and not _writable(given)
    if (not given or inherited) and not _writable(os.path.join(PACKAGE, "model", "__pycache__")):
        state = os.path.join(state_dir(), "numba")
        choice = state if _writable(state) else _private_temp()
        os.environ["NUMBA_CACHE_DIR"] = os.environ[MARK] = choice
        if "numba" in sys.modules:     # numba read its settings already: tell it too
            sys.modules["numba"].config.CACHE_DIR = choice
    elif inherited:                    # the install is writable here: numba's own place
        del os.environ["NUMBA_CACHE_DIR"], os.environ[MARK]
        if "numba" in sys.modules:
            sys.modules["numba"].config.CACHE_DIR = ""
    return choice
