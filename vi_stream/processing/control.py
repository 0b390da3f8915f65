"""The daemon's one control interface: REST, the Python client and the web UI all go through it.

Nothing outside the daemon reaches into the processor, the sink or the store writer;
every change of settings goes through :meth:`Control.set_config`, which checks all of
them first (:mod:`vi_stream.processing.settings`) and then applies all or nothing.
"""
from __future__ import annotations

from typing import Any, Protocol

STOPPED = "stopped"
PROCESSING = "processing"
STATES = (STOPPED, PROCESSING)   # what Control.status() answers


class Control(Protocol):
    def status(self) -> str:
        """One of :data:`STATES`: ``"stopped"`` or ``"processing"``."""

    def start_processing(self) -> None:
        """Start processing (idempotent)."""

    def stop_processing(self) -> None:
        """Stop processing, finishing the frames already taken (idempotent)."""

    def get_roi(self) -> list[int]:
        """The ROI as ``[offset_x, size_x, offset_y, size_y]``, ``[]`` for the whole image."""

    def set_roi(self, roi: Any) -> list[int]:
        """Check and apply a ROI (``[]`` or None: the whole image); the clean ROI."""

    def statistics(self) -> dict:
        """Counters, rates, latency, queues, the store writer's state."""

    def store_state(self) -> dict | None:
        """``{"up": bool, "reason": why it is down or None}``; None without a store."""

    def get_config(self) -> dict:
        """Every option (secrets as ``***``), with the run-time settings as they are now."""

    def set_config(self, changes: dict) -> dict:
        """Check every change, then apply all of them (or none): the new config."""

    def model_info(self) -> dict:
        """The running model's metadata."""

    def reload_model(self, path: str | None, name: str | None = None) -> dict:
        """Load another model (a file, or fetched by name over SFTP) and switch to it between frames."""

    def live_feed(self) -> Any:
        """The live monitor's feed (:class:`vi_stream.web.live.Live`): events, previews, trends, log tail."""

    def results_store(self) -> Any:
        """The results store (read-back and review); StateError when the daemon runs without one."""

    def model_registry(self) -> Any:
        """The model registry (:class:`vi_stream.registry.versions.Registry`) in the store; StateError without one."""

    def model_moved(self) -> None:
        """An alias moved through this daemon: a daemon following it switches now, not at its next poll."""

    def drift_status(self) -> dict:
        """The drift watch: state, the last chunk's measures, the chunks kept."""

    def retrain(self, images: str, **kw: Any) -> dict:
        """Start retraining in the background (:func:`vi_stream.registry.retrain.retrain`); the job's state."""

    def retrain_status(self) -> dict:
        """The retraining job: idle, running (with progress), done (the version) or failed (why)."""

    def shadow_status(self) -> dict:
        """Shadow mode's agreement counts and disagreements; StateError when it is off."""
