"""Reviews over HTTP on both stores: every acquisition of a side reachable, a review kept with the
acquisition it was made on (no 409 for a side re-imaged meanwhile), decisions with the operator's name,
the review queue, the shift report, and named operators."""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io

import numpy as np
import pytest
import requests

from vi_stream import Client
from vi_stream.errors import AuthError, ConfigError, InputError, NotFoundError
from vi_stream.store import record as record_mod
from vi_stream.web import operators

from ..helpers.daemon import bound_push, running_daemon
from ..helpers.store import make_record, mongomock_store

ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789xyz"


@pytest.fixture(scope="module")
def operators_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ops") / "operators"
    path.write_text(f"# who may change things\nalice:{ALICE}\n"
                    f"bob:sha256:{hashlib.sha256(BOB.encode()).hexdigest()}\n")
    return str(path)


@pytest.fixture(scope="module", params=["local", "mongomock"])
def daemon(request, model, operators_file):
    backend = mongomock_store() if request.param == "mongomock" else contextlib.nullcontext(None)
    with backend as store, bound_push() as (_push, port), \
            running_daemon(model, port, backend=store, store_tile=128, operators=operators_file,
                           token="admin-token-0123456789") as (d, _ctx):
        yield d


def _client(d, token=ALICE) -> Client:
    return Client(f"http://127.0.0.1:{d.rest_port}", timeout=10, token=token)


def _acquired(module: str, side: str, pulse: int, defect: bool = True, when: str | None = None):
    r = make_record(pulse, module, side, defect=defect)
    if when:
        r.side["acquired_at"] = when
    return r


def test_a_review_of_a_side_reimaged_meanwhile_is_kept_with_the_acquisition_it_was_made_on(daemon):
    alice = _client(daemon)
    daemon.store.write([_acquired("RV-1", "left", 1)])
    first = alice.get_module("RV-1")["left"]
    daemon.store.write([_acquired("RV-1", "left", 2, when=record_mod.now_iso())])     # re-imaged meanwhile
    base = f"http://127.0.0.1:{daemon.rest_port}/api/modules/RV-1/left"
    fix = np.zeros((128, 128), np.uint8)
    fix[5:20, 5:20] = 255
    side = alice.correct_mask("RV-1", "left", 0, fix, result_id=first["result_id"])      # was a 409
    assert side["result_id"] == first["result_id"] and side["verified_masks"][0] is True
    verified = requests.post(base + "/tiles/1/verify", json={"verified": True, "result_id": first["result_id"]},
                             headers={"Authorization": f"Bearer {ALICE}"}, timeout=10).json()
    shown = alice.get_module("RV-1")["left"]
    assert verified["newer"]["result_id"] == shown["result_id"] != first["result_id"]
    assert shown["verified_masks"] == [False] * shown["tile_count"]                   # the new image: untouched
    # every acquisition stays reachable, newest first, each with its own review
    rows = alice.acquisitions("RV-1", "left")
    assert [r["result_id"] for r in rows] == [shown["result_id"], first["result_id"]]
    assert rows[1]["verified"] == 2 and rows[0]["verified"] == 0
    old = requests.get(f"{base}/results/{first['result_id']}", timeout=10).json()
    assert old["shown"] is False and old["newer"]["result_id"] == shown["result_id"]
    assert old["side"]["verified_masks"][:2] == [True, True] and old["side"]["corrected_tiles"] == [0]
    now = requests.get(f"{base}/results/{shown['result_id']}", timeout=10).json()
    assert now["shown"] is True and now["newer"] is None
    # a replay of the old result keeps its review
    daemon.store.write([_acquired("RV-1", "left", 1)])
    assert requests.get(f"{base}/results/{first['result_id']}", timeout=10).json()["side"]["corrected_tiles"] == [0]
    assert requests.get(f"{base}/results/{'0' * 24}", timeout=10).status_code == 404
    assert requests.get(f"http://127.0.0.1:{daemon.rest_port}/api/modules/RV-1/up/results", timeout=10).status_code == 400


def test_a_decision_names_the_operator_and_shows_in_the_history_and_the_queue(daemon):
    alice, bob = _client(daemon), _client(daemon, BOB)
    daemon.store.write([_acquired("DQ-1", "left", 11, when="2026-01-01T08:00:00.000+00:00"),
                        _acquired("DQ-2", "right", 12, when="2026-01-01T08:01:00.000+00:00"),
                        _acquired("DQ-3", "left", 13, defect=False)])
    queue, total = alice.history(module="DQ-", verdict="anomalous", decision="none", order="asc")
    assert [r["module"] for r in queue] == ["DQ-1", "DQ-2"] and total == 2
    side = alice.decide("DQ-1", "left", "rework", ["scratch", "particle"], "pad 3 scratched")
    assert side["decision"]["by"] == "alice" and side["decision"]["categories"] == ["scratch", "particle"]
    # the body cannot claim someone else's name when the token has one
    r = requests.post(f"http://127.0.0.1:{daemon.rest_port}/api/modules/DQ-2/right/decision",
                      json={"verdict": "fail", "by": "mallory"}, headers={"Authorization": f"Bearer {BOB}"}, timeout=10)
    assert r.ok and r.json()["side"]["decision"]["by"] == "bob" and r.json()["newer"] is None
    rows, _ = alice.history(module="DQ-", decision="any")
    assert {(x["module"], x["decision"], x["decided_by"]) for x in rows} == {("DQ-1", "rework", "alice"),
                                                                            ("DQ-2", "fail", "bob")}
    assert alice.history(module="DQ-", verdict="anomalous", decision="none")[1] == 0
    again = bob.decide("DQ-1", "left", "pass", comment="reworked, fine now")
    assert again["decision"]["by"] == "bob" and again["decision_history"][0]["verdict"] == "rework"
    with pytest.raises(InputError, match="verdict"):
        alice.decide("DQ-1", "left", "maybe")
    with pytest.raises(InputError, match="categories"):
        alice.decide("DQ-1", "left", "fail", ["dust bunny"])
    with pytest.raises(NotFoundError):
        alice.decide("DQ-404", "left", "pass")
    with pytest.raises(AuthError):
        _client(daemon, "nobody-token-0123456789").decide("DQ-1", "left", "pass")


def test_the_shift_report_lists_results_verdicts_and_decisions_as_csv(daemon):
    alice = _client(daemon)
    start = record_mod.now_iso()
    daemon.store.write([_acquired("SR-1", "left", 21), _acquired("SR-2", "right", 22, defect=False)])
    alice.decide("SR-1", "left", "fail", ["stain"], "=HYPERLINK(\"x\")")
    base = f"http://127.0.0.1:{daemon.rest_port}/api/report"
    r = requests.get(base + ".csv", params={"from": start}, timeout=10)
    assert r.ok and r.headers["Content-Type"].startswith("text/csv") and "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    got = {(x["module"], x["side"]): x for x in rows}
    assert set(got) == {("SR-1", "left"), ("SR-2", "right")}
    assert got[("SR-1", "left")]["verdict"] == "anomalous" and got[("SR-1", "left")]["decision"] == "fail"
    assert got[("SR-1", "left")]["decided_by"] == "alice" and got[("SR-1", "left")]["categories"] == "stain"
    assert got[("SR-1", "left")]["comment"].startswith("'=")            # never a formula in a spreadsheet
    assert got[("SR-2", "right")]["verdict"] == "good" and got[("SR-2", "right")]["decision"] == ""
    assert [x["module"] for x in alice.report(from_=start)] == [x["module"] for x in rows]
    assert requests.get(base, params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
                        timeout=10).status_code == 400
    assert requests.get(base, params={"from": "yesterday"}, timeout=10).status_code == 400


def test_named_operators_log_in_and_the_alias_log_names_them(daemon, model_path):
    base = f"http://127.0.0.1:{daemon.rest_port}"
    s = requests.Session()
    r = s.post(base + "/api/login", json={"token": BOB}, timeout=10)
    assert r.ok and r.json()["operator"] == "bob"
    session = s.get(base + "/api/session", timeout=10).json()
    assert session["operator"] == "bob" and session["logged_in"]
    with open(model_path, "rb") as f:
        daemon.registry.register(f.read(), "oppads", "1.0")
    r = s.post(base + "/api/aliases/opalias", json={"name": "oppads", "version": "1.0", "reason": "first",
                                                   "by": "someone else"},
               headers={"X-CSRF-Token": session["csrf"]}, timeout=30)
    assert r.ok, r.text
    assert daemon.registry.changes("opalias")[0]["by"] == "bob"
    # the unnamed --token still works, named by the body or the address as before
    admin = requests.post(base + "/api/aliases/opalias2", json={"name": "oppads", "version": "1.0",
                                                               "reason": "spare", "by": "night shift"},
                          headers={"Authorization": "Bearer admin-token-0123456789"}, timeout=30)
    assert admin.ok, admin.text
    assert daemon.registry.changes("opalias2")[0]["by"] == "night shift"


def test_the_operators_file_is_checked_line_by_line(tmp_path):
    ops = operators.parse(f"a:{'x' * 16}\n\n# c\nb:sha256:{'ab' * 32}\n")
    assert ops["a"] == hashlib.sha256(b"x" * 16).digest() and ops["b"] == bytes.fromhex("ab" * 32)
    for text, words in [("a:short", "too short"), (f"a b:{'x' * 16}", "line 1"), (f"a:{'x' * 16}\na:{'y' * 16}", "twice"),
                        (f"a:{'x' * 16}\nb:{'x' * 16}", "same token"), ("b:sha256:12", "64 hex"), ("# none\n", "no operator")]:
        with pytest.raises(ConfigError, match=words):
            operators.parse(text)
    with pytest.raises(ConfigError, match="cannot read"):
        operators.load(str(tmp_path / "missing"))
