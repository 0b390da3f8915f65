"""Query-string parameters as the store's queries: the web layer's parsing, not the store's.

A store answers a :class:`~vi_stream.store.protocols.HistoryQuery`; what a URL may say, and the
400 naming a bad parameter (ConfigError), belong to the REST layer that reads URLs.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Mapping

from vi_stream.errors import ConfigError
from vi_stream.store.protocols import DECISIONS, MAX_PAGE, SORTS, HistoryQuery


def int_param(name: str, raw: str | None, default: int, lo: int, hi: int) -> int:
    """A query-string integer in [lo, hi] (``default`` when absent or empty); ConfigError naming it."""
    if raw is None or raw == "":
        return default
    try:
        n = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= n <= hi:
        raise ConfigError(f"{name} must be {lo}-{hi}, got {n}")
    return n


_TAB = re.compile(r"[0-9a-fA-F]{8,64}")


def tab_id(raw: str | None) -> str | None:
    """``GET /api/events``' ``tab``, the page's id for its browser tab (None when absent); ConfigError
    unless it is 8-64 hex digits."""
    if raw is None:
        return None
    if not _TAB.fullmatch(raw):
        raise ConfigError(f"tab must be 8-64 hex digits (the page's id for its tab), got {raw[:80]!r}")
    return raw.lower()


def _instant(name: str, raw: str | None) -> datetime | None:
    """A query-string ISO-8601 time that names its zone (None when absent); ConfigError naming the parameter."""
    if raw is None or raw == "":
        return None
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{name} must be an ISO-8601 time (2026-11-29T15:00:00+00:00), got {raw!r}") from None
    if t.tzinfo is None:
        raise ConfigError(f"{name} must name its time zone (e.g. +00:00 or Z), got {raw!r}")
    return t


def utc(t: datetime) -> str:
    """A time as the stores compare them: ISO-8601 in UTC, with milliseconds."""
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def when(name: str, v: str | None) -> str | None:
    """An ISO-8601 time with its zone, as the stores compare them (:func:`utc`); ConfigError naming it."""
    t = _instant(name, v)
    return None if t is None else utc(t)


def time_range(params: Mapping[str, Any], what: str) -> tuple[datetime | None, datetime | None]:
    """A query string's ``from`` and ``to`` (None when absent; each route has its own defaults, ``to``
    now), the only parameters of ``what`` ("report", "trend"); ConfigError for any other, a time
    without its zone, ``from`` not before ``to``, or ``from`` alone in the future."""
    unknown = sorted(set(params) - {"from", "to"})
    if unknown:
        raise ConfigError(f"unknown {what} parameter(s): {', '.join(unknown)}; give from and to")
    since, until = _instant("from", params.get("from")), _instant("to", params.get("to"))
    if since is not None and until is not None and since >= until:
        raise ConfigError(f"from ({utc(since)}) must be before to ({utc(until)})")
    if since is not None and until is None and since > datetime.now(timezone.utc):
        raise ConfigError(f"from ({utc(since)}) must not be in the future")
    return since, until


def history_query(params: Mapping[str, Any]) -> HistoryQuery:
    """``GET /api/history``'s query-string parameters (all strings); ConfigError naming the first bad one."""
    unknown = sorted(set(params) - {"from", "to", "verdict", "reviewed", "tag", "module", "model_version",
                                    "decision", "sort", "order", "limit", "skip"})
    if unknown:
        raise ConfigError(f"unknown history filter(s): {', '.join(unknown)}")

    def get(name: str) -> str | None:
        v = params.get(name)
        return None if v is None or v == "" else str(v)

    def choice(name: str, options: dict) -> Any:
        v = get(name)
        if v is None:
            return None
        if v not in options:
            raise ConfigError(f"{name} must be one of {', '.join(options)}, got {v!r}")
        return options[v]

    sort = choice("sort", {s: s for s in SORTS}) or "processed_at"
    return HistoryQuery(since=when("from", get("from")), until=when("to", get("to")),
                        anomalous=choice("verdict", {"anomalous": True, "good": False}),
                        reviewed=choice("reviewed", {"yes": True, "no": False}),
                        tag=get("tag"), module=get("module"), model_version=get("model_version"),
                        decision=choice("decision", {d: d for d in DECISIONS}), sort=sort,
                        descending=choice("order", {"desc": True, "asc": False}) is not False,
                        limit=int_param("limit", get("limit"), 50, 1, MAX_PAGE),
                        skip=int_param("skip", get("skip"), 0, 0, 10**7))
