"""A daemon that follows a registry alias (``vi_stream run --model-alias production``).

At start-up it loads the model the alias points at; a thread then asks the store every
``poll`` s where the alias points and, when it moved, fetches and loads the new version
(self-check included) beside the running one and hands it to the processor, which swaps
it between two frames: no frame is lost, each is stamped with the version that judged it.

Every version it ran is kept in a cache folder by its hash, with a pointer per alias, so
a daemon started while the store is down runs the alias's last known version and says so,
and a store that goes away later only stops the following, never the processing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from typing import Callable

from vi_stream.errors import ConfigError, InputError, ModelError, NotFoundError, StoreUnavailable
from vi_stream.io.files import write_durably
from vi_stream.model import AnomalyModel, load
from vi_stream.registry.versions import Registry, ref

log = logging.getLogger("vi_stream.follower")

POLL_S = 5.0


class ModelFollower:
    def __init__(self, registry: Registry, alias: str, cache_dir: str, device: str = "cpu",
                 apply: Callable[[AnomalyModel, dict], None] | None = None, poll: float = POLL_S):
        self.registry, self.alias, self.cache_dir, self.device = registry, alias, cache_dir, device
        self.apply, self.poll = apply, poll
        self.current: dict | None = None        # the version doc running now
        self.switches = 0
        self.last_check_at: float | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._refused: set[str] = set()         # hashes that failed to load: not retried every poll

    # ------------------------------------------------------------------ cache
    def _pointer(self) -> str:
        return os.path.join(self.cache_dir, f"alias-{self.alias}.json")

    def _cached(self, doc: dict) -> str:
        path = os.path.join(self.cache_dir, doc["sha256"] + ".npz")
        if os.path.exists(path):
            with open(path, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() == doc["sha256"]:
                    return path
        os.makedirs(self.cache_dir, exist_ok=True)
        write_durably(path, self.registry.file(doc))
        return path

    def _remember(self, doc: dict) -> None:
        keep = {k: doc[k] for k in ("name", "version", "sha256")}
        keep["unchecked"] = bool(doc.get("unchecked"))
        write_durably(self._pointer(), json.dumps(keep).encode())

    # ------------------------------------------------------------------ loading
    def initial(self) -> tuple[AnomalyModel, dict]:
        """The alias's model now; its cached copy when the store cannot be reached."""
        try:
            doc = self.registry.resolve(self.alias)
            path = self._cached(doc)
        except StoreUnavailable as err:
            try:
                with open(self._pointer()) as f:
                    doc = json.load(f)
            except (OSError, ValueError):
                raise StoreUnavailable(f"cannot follow alias {self.alias!r}: {err}; and no copy of it is cached in "
                                       f"{self.cache_dir}") from err
            path = os.path.join(self.cache_dir, doc["sha256"] + ".npz")
            _check_hash(path, doc)
            log.warning("store unreachable (%s): running alias %s's last known version %s from the cache",
                        err, self.alias, ref(doc))
            self.last_error = str(err)
        model = load(path, self.device, allow_unchecked=bool(doc.get("unchecked")))
        self._remember(doc)
        self.current = doc
        return model, doc

    def check_now(self) -> bool:
        """Ask where the alias points; switch if it moved. True when it switched."""
        with self._lock:
            self.last_check_at = time.time()
            try:
                doc = self.registry.resolve(self.alias)
            except (StoreUnavailable, NotFoundError) as err:
                if str(err) != self.last_error:
                    log.warning("cannot follow alias %s (%s); still running %s", self.alias, err, ref(self.current))
                self.last_error = str(err)
                return False
            if self.current is not None and doc["sha256"] == self.current["sha256"]:
                if self.last_error is not None:
                    log.info("following alias %s again (%s)", self.alias, ref(doc))
                self.last_error = None
                return False
            if doc["sha256"] in self._refused:
                return False
            try:
                model = load(self._cached(doc), self.device, allow_unchecked=bool(doc.get("unchecked")))
                before = ref(self.current)
                if self.apply is not None:
                    self.apply(model, doc)
            except (ModelError, InputError, ConfigError) as err:
                self._refused.add(doc["sha256"])
                self.last_error = f"{ref(doc)} refused: {err}"
                log.error("alias %s moved to %s, which is refused (%s); still running %s", self.alias, ref(doc),
                          err, ref(self.current))
                return False
            except StoreUnavailable as err:
                self.last_error = str(err)
                return False
            self.current, self.last_error = doc, None
            self.switches += 1
            self._remember(doc)
        log.info("alias %s moved: %s -> %s; switched between frames", self.alias, before, ref(doc))
        return True

    # ------------------------------------------------------------------ thread
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="model-follower", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.check_now()
            except Exception as err:   # following is never worth the daemon
                log.exception("following alias %s failed: %r", self.alias, err)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def status(self) -> dict:
        return {"alias": self.alias, "version": ref(self.current), "sha256": (self.current or {}).get("sha256"),
                "switches": self.switches, "last_check_at": self.last_check_at, "last_error": self.last_error,
                "poll_s": self.poll}


def _check_hash(path: str, doc: dict) -> None:
    """ModelError unless the cached copy is the file the registry's hash names (a version registered
    without a digest is bound by that hash alone)."""
    try:
        with open(path, "rb") as f:
            same = hashlib.sha256(f.read()).hexdigest() == doc["sha256"]
    except OSError as err:
        raise ModelError(f"the cached copy of {ref(doc)} cannot be read: {err}") from err
    if not same:
        raise ModelError(f"the cached copy of {ref(doc)} ({path}) does not match its hash {doc['sha256'][:12]} (altered)")
