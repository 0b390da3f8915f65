"""Wires configuration, model, adapters, processor and REST into the running service.

Longer than 300 lines: the wiring of every part and their lifetimes, so that start() and close()
mirror each other in one place; the business steps behind the control interface are apart
(vi_stream.service.desks).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

import zmq

from vi_stream.service import config as config_mod
from vi_stream.store import record
from vi_stream.processing import settings as settings_mod
from vi_stream.registry.drift import DriftWatch
from vi_stream.errors import ConfigError, ModelError, StateError
from vi_stream.registry.follower import ModelFollower
from vi_stream.web import operators
from vi_stream.web.guard import exposure_warning
from vi_stream.io.bsread_in import BsreadSource
from vi_stream.io.bsread_out import BsreadSink
from vi_stream.io.camera_in import CameraSource
from vi_stream.store.spool import Spool
from vi_stream.web.alarms import Alarms
from vi_stream.web.live import Live, yellow_from
from vi_stream.web.trends import TrendRecorder
from vi_stream.model import AnomalyModel, load
from vi_stream.processing.pipeline import Pipeline
from vi_stream.processing.processor import Processor
from vi_stream.registry.versions import Registry, ref
from vi_stream.registry.retrain import RetrainJob
from vi_stream.registry.shadow import ShadowWatch
from vi_stream.service.desks import ModelsDesk, ResultsDesk
from vi_stream.web.app import make_app
from vi_stream.web.server import serve
from vi_stream.store.protocols import Store
from vi_stream.store.opening import open_store
from vi_stream.store.writer import StoreWriter

log = logging.getLogger("vi_stream.daemon")

IO_THREADS = 2  # ZMQ I/O threads: one for the input stream, one for the output


class Daemon:
    def __init__(self, cfg: config_mod.DaemonConfig, model: AnomalyModel | None = None,
                 context: zmq.Context | None = None, store: Store | None = None):
        """``model``/``store`` replace what ``cfg`` names (tests pass a fitted model, a mongomock store).
        Nothing is connected or bound here: ``start()`` does that, ``close()`` undoes it."""
        self.config = cfg.validate()
        self._own_store = store is None   # a store handed in belongs to the caller, who starts and closes it
        self.store = store if store is not None else open_store(cfg.store)
        self.registry = Registry(self.store, cfg.device) if self.store is not None else None
        self.follower: ModelFollower | None = None
        self.model_version: str | None = None       # name@X.Y when the model came from the registry
        if model is None and cfg.model_alias:
            # The alias's model is read by start(), after it connects the store: nothing connects here.
            self.follower = ModelFollower(self.registry, cfg.model_alias, config_mod.model_cache_dir(), cfg.device,
                                          apply=self._switch_model, poll=cfg.model_poll)
        self.model: AnomalyModel | None = model if model is not None or self.follower else _load_model(cfg)
        self.model_path = cfg.model
        self.writer: StoreWriter | None = None
        if self.store is not None:
            prefix, tile, tiles = cfg.prefix, cfg.store_tile, cfg.store_tiles
            by = f"vi_stream:{prefix}" + (f"/{cfg.worker}" if cfg.worker else "")
            self.writer = StoreWriter(self.store, Spool(cfg.spool), lambda r: record.build(
                r, prefix, tile, tiles, tag=r.frame.tag, uploaded_by=by), cfg.store_queue)
        # Our own context with an I/O thread per stream: the kernel copies of a frame coming in and
        # of the previous one going out then run on both cores instead of queueing on one thread
        # (bench/stream.py: 2048x2048 frames relayed at 241-310 frames/s, 221 with one shared I/O thread).
        self._own_context = context is None
        self.context = context
        self.sink: BsreadSink | None = None
        settings = settings_mod.Settings(settings_mod.check_roi(cfg.roi), settings_mod.check_threshold(cfg.threshold))
        source = cfg.prefix + (f"/{cfg.worker}" if cfg.worker else "")   # whose trend points these are
        self.live = Live(self._live_status, preview_side=cfg.preview_side, recorder=TrendRecorder(
            self.store.trends if self.store is not None else None, source, lambda: self.drift.chunks()))
        self.live.calibration = list(self.model.meta.get("calibration_scores") or []) if self.model else []
        self.alarms = Alarms()
        self._results = ResultsDesk(self.results_store, self.live.images.get)
        self._models = ModelsDesk(self.model_registry, self.model_moved)
        self.drift = DriftWatch(self.model.meta.get("calibration_scores") or [] if self.model else [],
                                self.model.threshold if self.model else 0.0, chunk=cfg.drift_chunk,
                                version=self.model_version)   # a followed alias's reference is set by start()
        self.retrain_job = RetrainJob()
        self.shadow: ShadowWatch | None = None
        self.shadow_follower: ModelFollower | None = None
        if cfg.shadow_alias:
            self.shadow = ShadowWatch(cfg.shadow_every, cfg.prefix,
                                      self.store.shadows if self.store is not None else None)
            self.shadow_follower = ModelFollower(self.registry, cfg.shadow_alias, config_mod.model_cache_dir(),
                                                 cfg.device, apply=self.shadow.set_model, poll=cfg.model_poll)
        watchers = (self.live, self.drift) + ((self.shadow,) if self.shadow is not None else ())
        self.processor = Processor(self._make_source, Pipeline(self.model, self.model_version), [self._send],
                                   settings, cfg.queue_size, block_output=cfg.block, store=self.writer,
                                   watch=watchers)
        self.server = None
        self.rest_port: int | None = None
        self._reload_lock = threading.Lock()

    # ------------------------------------------------------------------ lifetime
    def _make_source(self):
        c = self.config
        if c.camera:
            return CameraSource(c.camera, module=c.prefix, fps=c.camera_fps, loop=True)
        return BsreadSource(c.input, c.prefix, c.mode, self.context, max_pixels=c.max_pixels)

    def warm_up(self) -> None:
        """Trace the backbone and compile numba kernels now, not on the first real frame."""
        import numpy as np
        shape = (self.model.config.tile, self.model.config.tile) + (() if self.model.channels == 1 else (3,))
        self.model.score(np.zeros(shape, np.uint8))

    def _send(self, result) -> bool:
        return self.sink.send(result) if self.sink is not None else False

    def start(self) -> "Daemon":
        """Connect the store (and load a followed alias's model from it), warm up, bind the output and REST.
        A failure half-way closes what was opened."""
        try:
            if self.store is not None and self._own_store:
                self.store.start()
            if self.model is None:
                model, doc = self.follower.initial()   # the cached copy when the store is down
                self._use_model(model, ref(doc))
            self.warm_up()
            if self.writer is not None:
                self.writer.start()  # replays what an earlier run left in the spool
            if self.context is None:
                self.context = zmq.Context(io_threads=IO_THREADS)
            c = self.config
            self.sink = BsreadSink(c.output_port, f"{c.prefix}:FPICTURE", c.output_host, c.output_mode,
                                   c.block, c.output_compression, self.context)
            port = self.sink.start()
            self.config = replace(self.config, output_port=port)
            self.live.start()
            if self.follower is not None:
                self.follower.start()
            if self.shadow is not None:
                self.shadow.start()
                self.shadow_follower.check_now()      # an alias pointing nowhere yet: found at a later poll
                self.shadow_follower.start()
            named = operators.load(c.operators) if c.operators else None
            exposed = exposure_warning(c.rest_host, c.token or bool(named))
            if exposed:
                log.warning("%s", exposed)
            self.server, _thread = serve(make_app(self, c.token, c.rest_host, c.rest_allowed_hosts or (), named),
                                         c.rest_host, c.rest_port)
        except BaseException:
            self.close()
            raise
        self.rest_port = self.server.server_port
        log.info("REST on http://%s:%d, output stream on tcp://%s:%d (%s), model %s, store %s",
                 self.config.rest_host, self.rest_port, self.config.output_host, port, self.config.output_mode,
                 self.model.model_id, self.store.description if self.store else "off")
        if self.config.auto_start:
            self.processor.start()
        return self

    def close(self, timeout: float = 20.0) -> None:
        """Drain and let go of everything, within ``timeout`` s in all (systemd's TimeoutStopSec is 30)."""
        deadline = time.monotonic() + timeout
        for follower in (self.follower, self.shadow_follower):
            if follower is not None:
                follower.close()
        if self.shadow is not None:
            self.shadow.close()
        self.processor.stop(timeout=timeout / 2)
        if self.writer is not None:
            # Results already processed reach the store or the spool.
            self.writer.close(timeout=max(1.0, deadline - time.monotonic() - 1.0))
        if self.rest_port is not None:   # it ran: the books, for the journal
            log.info("%s", accounting_line(self.processor.statistics()))
        self.live.close()   # the monitor's streams end (browsers reconnect when the daemon is back)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.sink is not None:
            self.sink.close()
            self.sink = None
        if self.store is not None and self._own_store:
            self.store.close()
        if self._own_context and self.context is not None:
            self.context.destroy(linger=0)  # every thread using it has stopped
            self.context = None

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ control (vi_stream.processing.control.Control)
    def status(self) -> str:
        return self.processor.state

    def start_processing(self) -> None:
        self.processor.start()

    def stop_processing(self) -> None:
        self.processor.stop()

    def get_roi(self) -> list[int]:
        return self.processor.settings.roi or []

    def set_roi(self, roi) -> list[int]:
        return self.set_config({"roi": roi})["roi"]

    def statistics(self) -> dict:
        return {**self.processor.statistics(), "worker": self.config.worker,
                "model_version": self.model_version, "drift": self.drift.status(),
                "shadow": self.shadow.status() if self.shadow is not None else None}

    def store_state(self) -> dict | None:
        if self.writer is None:
            return None
        st = self.writer.statistics()
        return {"up": st["up"], "reason": st["down_reason"]}

    def alarm_list(self) -> list[dict]:
        store = self.writer.statistics() if self.writer is not None else None
        return self.alarms.check(store, self.drift.state, self.live.anomalous_run)

    def live_feed(self) -> Live:
        return self.live

    def results(self) -> ResultsDesk:
        return self._results

    def models(self) -> ModelsDesk:
        return self._models

    def _live_status(self) -> dict:
        """What the monitor shows besides frames: the statistics, the threshold in force, the model."""
        return {"status": self.processor.state, "statistics": self.processor.statistics(),
                "threshold": self.processor.settings.threshold, "model_id": self.model.model_id,
                "model_version": self.model_version, "drift": self.drift.state, "drift_judged": self.drift.judged,
                "shadow": ({k: v for k, v in self.shadow.status().items() if k != "disagreements"}
                           if self.shadow is not None else None),
                "model_threshold": self.model.threshold, "alarms": self.alarm_list(),
                "yellow_from": yellow_from(self.processor.settings.threshold or self.model.threshold,
                                           self.live.calibration, self.live.qa_margin),
                "yellow_rule": "above every good calibration image" if self.live.calibration
                else "within 20% below the threshold", "rest_host": self.config.rest_host}

    def results_store(self) -> Store:
        if self.store is None:
            raise StateError("no store: the daemon runs with --store off")
        return self.store

    def model_info(self) -> dict:
        return {**self.model.info(), "path": self.model_path, "version": self.model_version,
                "following": self.follower.status() if self.follower is not None else None}

    def model_registry(self) -> Registry:
        if self.registry is None:
            raise StateError("no store: the model registry lives in the store, and the daemon runs with --store off")
        return self.registry

    def model_moved(self) -> None:
        for follower in (self.follower, self.shadow_follower):
            if follower is not None:
                follower.check_now()

    def retrain(self, images: str, **kw: Any) -> dict:
        return self.retrain_job.start(self.model_registry(), images, **kw)

    def retrain_status(self) -> dict:
        return self.retrain_job.status()

    def shadow_status(self) -> dict:
        if self.shadow is None:
            raise StateError("shadow mode is off: start the daemon with --shadow-alias ALIAS")
        stored = self.store.shadows.list_shadow(50) if self.store is not None else []
        return {**self.shadow.status(), "stored_disagreements": stored}

    def drift_status(self) -> dict:
        return {**self.drift.status(), "chunks": self.drift.chunks()}

    def _switch_model(self, model: AnomalyModel, doc: dict) -> None:
        """The follower's new version, between two frames (ConfigError leaves the running one)."""
        with self._reload_lock:
            if model.channels != self.model.channels:
                raise ConfigError(f"{ref(doc)} expects {model.channels}-channel images, the running model "
                                  f"{self.model.channels}")
            self._use_model(model, ref(doc))

    def _use_model(self, model: AnomalyModel, version: str | None) -> None:
        """Judge the next frames with ``model`` (under the reload lock): pipeline and drift reference."""
        self.model, self.model_version = model, version
        self.live.calibration = list(model.meta.get("calibration_scores") or [])
        self.drift.set_reference(model.meta.get("calibration_scores") or [], model.threshold, version)
        self.processor.set_pipeline(Pipeline(model, version))

    def reload_model(self, path: str | None, name: str | None = None) -> dict:
        # Refused before anything is fetched: a following daemon's model is the alias's to change.
        if self.follower is not None:
            raise StateError(f"this daemon follows alias {self.follower.alias!r}: promote a version to change "
                             "its model (vi_stream models promote)")
        if name is not None:
            # Fetch from the project's SFTP storage first; a failed fetch keeps everything as is.
            from vi_stream.io.sftp import fetch_configured
            path = fetch_configured(name, config_mod.model_cache_dir())
        path = path or self.model_path
        if not path:
            raise ConfigError("no model path to reload from")
        with self._reload_lock:
            try:
                model = load(path, self.config.device, self.config.allow_unchecked)
            except ModelError as err:
                # The running model stays; the caller gets a clear 400.
                raise ConfigError(f"model not reloaded, still running {self.model.model_id}: {err}") from err
            if model.channels != self.model.channels:
                raise ConfigError(f"model not reloaded: it expects {model.channels}-channel images, "
                                  f"the running one {self.model.channels}")
            self.model_path = path
            self._use_model(model, None)
        log.info("model reloaded: %s from %s", model.model_id, path)
        return self.model_info()

    def get_config(self) -> dict:
        d = config_mod.as_dict(self.config)
        d["roi"] = self.processor.settings.roi or []
        d["threshold"] = self.processor.settings.threshold
        return d

    def set_config(self, changes: dict) -> dict:
        """Change run-time settings: all are checked first (vi_stream.processing.settings), then all applied."""
        if not isinstance(changes, dict):
            raise ConfigError("config must be an object of option: value")
        unknown = [str(k) for k in changes if k not in config_mod.DaemonConfig.__dataclass_fields__]
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
        clean = settings_mod.validate(changes, self.processor.last_shape)
        self.processor.apply(clean)
        if "block" in clean and self.sink is not None:
            self.sink.set_block(clean["block"])
        if "log_level" in clean:
            logging.getLogger("vi_stream").setLevel(clean["log_level"])
        self.config = replace(self.config, **{k: v for k, v in clean.items() if k in ("block", "log_level")})
        return self.get_config()


def _load_model(cfg: config_mod.DaemonConfig) -> AnomalyModel:
    if not cfg.model:
        raise ConfigError("no model: give --model MODEL.npz (fit one with `vi_stream train`)")
    return load(cfg.model, cfg.device, cfg.allow_unchecked)


def accounting_line(s: dict) -> str:
    """The day's books in one line: where every frame taken from the input went."""
    line = (f"frames: received {s['frames_received']}, processed {s['frames_processed']}, "
            f"rejected {s['frames_rejected_total']}, discarded on stop {s['frames_discarded_on_stop']}")
    st = s.get("store")
    if st:
        line += (f"; results: stored {st['stored']}, spooled {st['spooled']}, set aside {st['set_aside']}, "
                 f"unrenderable {st['render_failed']}, lost {st['lost']}, not stored {s['not_stored']}")
    return line
