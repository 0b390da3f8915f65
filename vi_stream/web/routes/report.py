"""The per-shift report: every result processed in a time range with its verdict and the operator's
decision, as JSON (the printable page's) and as CSV (``GET /api/report.csv``, a spreadsheet's)."""
from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import bottle

from vi_stream.processing.control import Control
from vi_stream.web.params import time_range, utc
from vi_stream.web.replies import reply

SHIFT = timedelta(hours=8)   # without ``from``: the 8 hours before ``to`` (default now)
COLUMNS = ("processed_at", "acquired_at", "module", "side", "verdict", "score", "threshold", "model", "defects",
           "tiles_verified", "tile_count", "decision", "categories", "comment", "decided_by", "decided_at",
           "result_id")


def _range() -> tuple[str, str]:
    """``from`` and ``to`` as the stores compare them: to defaults to now, from to the SHIFT before to."""
    since, until = time_range(bottle.request.query, "report")
    until = until or datetime.now(UTC)
    return utc(since or until - SHIFT), utc(until)


def line(row: dict) -> dict:
    """One result as a report row (the CSV's columns)."""
    return {"processed_at": row["processed_at"], "acquired_at": row["acquired_at"], "module": row["module"],
            "side": row["side"], "verdict": "anomalous" if row["is_anomalous"] else "good", "score": row["score"],
            "threshold": row["threshold"], "model": row["model_version"] or row["model_id"],
            "defects": row["defects"], "tiles_verified": row["verified"], "tile_count": row["tile_count"],
            "decision": row["decision"] or "", "categories": "; ".join(row["categories"]),
            "comment": row["comment"], "decided_by": row["decided_by"] or "", "decided_at": row["decided_at"] or "",
            "result_id": row["result_id"]}


def _cell(v: object) -> object:
    """A text cell a spreadsheet would run as a formula (=, +, -, @ first) is quoted with a leading '."""
    return "'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v


def add(app: bottle.Bottle, api: Control) -> None:
    @app.get("/api/report")
    def report():
        since, until = _range()
        rows, truncated = api.results().report(since, until)
        return reply(**{"from": since, "to": until}, rows=[line(r) for r in rows], truncated=truncated)

    @app.get("/api/report.csv")
    def report_csv():
        since, until = _range()
        rows, truncated = api.results().report(since, until)
        out = io.StringIO()
        w = csv.DictWriter(out, COLUMNS, lineterminator="\r\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(v) for k, v in line(r).items()})
        if truncated:
            out.write(f"# cut short after {len(rows)} results: ask for a shorter range\r\n")
        bottle.response.content_type = "text/csv; charset=utf-8"
        stamp = since[:16].replace(":", "")
        bottle.response.set_header("Content-Disposition", f'attachment; filename="vi_stream-report-{stamp}.csv"')
        return out.getvalue()
