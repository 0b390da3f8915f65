"""A JSON request body, read bounded and checked, for the routes that take one.

The HTTP server's body limits (:mod:`vi_stream.web.bodylimit`) bound what arrives; this bounds what is
parsed, and turns what is not JSON (NaN and Infinity included, and nesting deeper than the parser's
stack, which would otherwise be a 500) into a ConfigError, the caller's to mend.
"""
from __future__ import annotations

import json
from typing import Any

import bottle

from vi_stream.errors import ConfigError

MAX_JSON_BYTES = 1024 * 1024


def read_json(raw: bytes) -> Any:
    """A request body as JSON, or ConfigError: not JSON, not UTF-8, NaN/Infinity (not JSON either),
    or nested deeper than the parser's stack (a RecursionError would otherwise be a 500)."""
    def refuse(constant: str) -> Any:
        raise ConfigError(f"request body is not valid JSON: {constant} is not a JSON value")
    try:
        return json.loads(raw, parse_constant=refuse)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"request body is not valid JSON: {str(err)[:200] or type(err).__name__}") from None


def json_body() -> Any:
    """The current request's body as JSON; ``{}`` for none."""
    raw = bottle.request.body.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise ConfigError(f"request body larger than {MAX_JSON_BYTES} bytes")
    if not raw.strip():
        return {}
    return read_json(raw)


def json_object(hint: str) -> dict:
    """The current request's body, which must be a JSON object; ConfigError with ``hint`` otherwise."""
    data = json_body()
    if not isinstance(data, dict):
        raise ConfigError(hint)
    return data


def who(data: dict) -> str:
    """Who made a change: the operator whose token or session the request carried (set by
    :class:`vi_stream.web.auth.CredentialsCheck`; a body cannot claim another name then), else the
    body's ``by``, else the client's address."""
    operator = bottle.request.environ.get("vi_stream.operator")
    if operator:
        return operator
    by = data.get("by")
    if by is not None and (not isinstance(by, str) or len(by) > 200):
        raise ConfigError("by must be a short string (who made the change)")
    return by or f"rest@{bottle.request.remote_addr}"


def text(data: dict, key: str, required: bool = True) -> Any:
    """A non-empty string field of a body (None for a missing optional one)."""
    v = data.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{key} must be a non-empty string")
    return v
