"""The daemon's one control interface: REST, the Python client and the web UI all go through it.

Nothing outside the daemon reaches into the processor, the sink or the store writer;
every change of settings goes through :meth:`Control.set_config`, which checks all of
them first (:mod:`vi_stream.processing.settings`) and then applies all or nothing.
It speaks in results (dicts, bytes): the results, the model registry and the live feed are
reached through :class:`Results`, :class:`Models` and :class:`LiveFeed`, whose business steps
(correcting a mask, a gated promotion, telling the daemon an alias moved) happen behind them,
not in a route handler.
"""
from __future__ import annotations

from typing import Any, Iterator, Protocol

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

    def alarm_list(self) -> list[dict]:
        """What the operator must be told now (:mod:`vi_stream.web.alarms`): ``[{"kind", "message"}]``."""

    def get_config(self) -> dict:
        """Every option (secrets as ``***``), with the run-time settings as they are now."""

    def set_config(self, changes: dict) -> dict:
        """Check every change, then apply all of them (or none): the new config."""

    def model_info(self) -> dict:
        """The running model's metadata."""

    def reload_model(self, path: str | None, name: str | None = None) -> dict:
        """Load another model (a file, or fetched by name over SFTP) and switch to it between frames."""

    def live_feed(self) -> "LiveFeed":
        """The live monitor's feed (:class:`vi_stream.web.live.Live`): events and trends."""

    def results(self) -> "Results":
        """Results read back and reviewed; each call answers StateError when the daemon runs without a store."""

    def models(self) -> "Models":
        """The model registry in the store; each call answers StateError when the daemon runs without one."""

    def drift_status(self) -> dict:
        """The drift watch: state, the last chunk's measures, the chunks kept."""

    def retrain(self, images: str, **kw: Any) -> dict:
        """Start retraining in the background (:func:`vi_stream.registry.retrain.retrain`); the job's state."""

    def retrain_status(self) -> dict:
        """The retraining job: idle, running (with progress), done (the version) or failed (why)."""

    def shadow_status(self) -> dict:
        """Shadow mode's agreement counts and disagreements; StateError when it is off."""


class LiveFeed(Protocol):
    def events(self, client: str | None, tab: str | None = None) -> Iterator[bytes]:
        """A new listener's server-sent events, starting with a snapshot; Overloaded beyond the cap. A
        stream from the same client and page ``tab`` as an open one ends that one (a reloaded page)."""

    def trend_bins(self, since: float | None = None, until: float | None = None) -> dict:
        """``{"bin_s": seconds per bin, "bins": [...], "drift": [...]}`` in [since, until) (epoch s; default
        the last hour): scores, rates, latencies and drift chunks, kept in the store across restarts."""


class Results(Protocol):
    def modules(self, limit: int, skip: int) -> list[dict]:
        """Summaries of the modules, newest first."""

    def module(self, name: str) -> dict:
        """One module's document; NotFoundError."""

    def image(self, image_id: str) -> bytes:
        """A PNG by its id: a live preview, else the store's; NotFoundError."""

    def history(self, query: Any) -> tuple[list[dict], int]:
        """Sides matching a :class:`vi_stream.store.protocols.HistoryQuery`, and how many match in all."""

    def correct_mask(self, name: str, side: str, tile: int, png: bytes, result_id: str | None) -> dict:
        """Store an operator's corrected mask of a tile of acquisition ``result_id`` (None: the one shown),
        also when the side was re-imaged since; that acquisition's side as it is now."""

    def verify(self, name: str, side: str, tile: int, verified: Any, result_id: str | None) -> dict:
        """Mark a tile of acquisition ``result_id`` right or wrong; that acquisition's side as it is now."""

    def decide(self, name: str, side: str, verdict: Any, categories: Any, comment: Any, by: str,
               result_id: str | None) -> dict:
        """An operator's decision (pass, fail, rework) on acquisition ``result_id``; its side as it is now."""

    def acquisition(self, name: str, side: str, result_id: str | None) -> dict:
        """``{"module", "side_name", "side", "shown", "newer"}``: one acquisition, with what is newer."""

    def newer(self, name: str, side: str, result_id: str | None) -> dict | None:
        """The row of the acquisition the side shows, when it is not ``result_id``."""

    def acquisitions(self, name: str, side: str, limit: int) -> list[dict]:
        """Every acquisition of a module side, newest first."""

    def report(self, since: str, until: str) -> tuple[list[dict], bool]:
        """Every result processed in [since, until), oldest first; whether it was cut short."""

    def batches(self) -> list[dict]:
        """The ``vi_stream batch`` records."""

    def batch(self, batch_id: str) -> dict:
        """One batch record; NotFoundError."""


class Models(Protocol):
    def versions(self, name: str | None) -> list[dict]:
        """The registered versions (of one model, or all)."""

    def version(self, name: str, version: str) -> dict:
        """One version's document; NotFoundError."""

    def register(self, data: bytes, name: str, version: str | None, by: str) -> dict:
        """Register a model file as a new version; its document."""

    def aliases(self) -> tuple[dict, list[dict]]:
        """The aliases, and their recent changes."""

    def promote(self, alias: str, name: str, version: str, reason: Any, by: str, expected: str | None,
                force: bool) -> dict:
        """Move an alias past the promotion gate (StateError: stale ``expected`` or refused by the gate); a
        daemon following it switches now. The change."""

    def rollback(self, alias: str, reason: Any, by: str, expected: str | None = None) -> dict:
        """Move an alias back to its previous version (StateError: stale ``expected``); a daemon following it
        switches now. The change."""

    def gate_set(self) -> dict:
        """The promotion gate's frozen set; NotFoundError before the first."""

    def freeze_gate(self, by: str) -> dict:
        """Freeze the verified tiles as the gate's new set; its summary."""
