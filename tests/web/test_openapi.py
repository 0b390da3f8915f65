"""The OpenAPI document: in step with the routes, and the daemon fuzzed against it by schemathesis."""
from __future__ import annotations

import re

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import checks

from vi_stream.web import app as rest
from vi_stream.web import openapi

from ..helpers.daemon import bound_push, running_daemon


@pytest.fixture(scope="module")
def daemon(model):
    with bound_push() as (_push, port), running_daemon(model, port) as (d, _ctx):
        yield d


def _routes(app) -> set[tuple[str, str]]:
    return {(r.method, re.sub(r"<(\w+)(:\w+)?>", r"{\1}", r.rule)) for r in app.routes}


def test_the_document_names_every_route_and_nothing_else(daemon):
    doc = openapi.spec()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == _routes(rest.make_app(daemon))


def test_served_as_json_and_as_a_page(daemon):
    base = f"http://127.0.0.1:{daemon.rest_port}"
    doc = requests.get(base + "/openapi.json", timeout=5).json()
    assert doc["openapi"].startswith("3.") and "/roi" in doc["paths"]
    page = requests.get(base + "/docs", timeout=5)
    assert page.headers["Content-Type"].startswith("text/html") and "/api/images/{image_id}" in page.text


# every operation but the live event stream, which by design never ends (tests/web/test_live.py reads it)
OPERATIONS = [(m.upper(), p) for p, ops in openapi.spec()["paths"].items() for m, op in ops.items()
              if "text/event-stream" not in op["responses"]["200"].get("content", {})]
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


@pytest.fixture(scope="module")
def api_schema(daemon):
    return schemathesis.openapi.from_url(f"http://127.0.0.1:{daemon.rest_port}/openapi.json")


@pytest.mark.parametrize("method, path", OPERATIONS)
def test_fuzzed_requests_get_no_server_error_and_answers_that_fit_the_document(api_schema, method, path):
    """Valid and invalid requests per operation (bounded: 20 of each, derandomized so a failure
    reproduces): never a 5xx, and every answer's code, type and body are as the document says."""
    operation = api_schema[path][method]
    wanted = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
              checks.response_schema_conformance]
    for mode in MODES:
        doc = openapi.spec()["paths"][path][method.lower()]
        if mode is schemathesis.GenerationMode.NEGATIVE and not ("parameters" in doc or "requestBody" in doc):
            continue   # nothing to make invalid
        strategy = operation.as_strategy(generation_mode=mode)

        @given(case=strategy)
        @settings(max_examples=20, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(checks=wanted, timeout=10)
        try:
            run()
        except Unsatisfiable:
            # No invalid request can be sent through this operation (e.g. a path string that is
            # only invalid when empty, which a URL cannot carry); valid ones were fuzzed above.
            assert mode is schemathesis.GenerationMode.NEGATIVE
