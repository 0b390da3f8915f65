"""One exception tree for vi_stream.

    ViStreamError
    ├── ConfigError          bad option, argument or config value (HTTP 400)
    │   └── MediaTypeError   a body of a type the route does not take (HTTP 415)
    ├── InputError           an image, body or message that cannot be used (HTTP 400); ``reason`` names it
    │   ├── DecodeError      a malformed bsread message (vi_stream.io.bsread_codec)
    │   ├── PayloadTooLarge  a request body over its route's limit (HTTP 413)
    │   └── BodyTimeout      a request body that did not arrive before its deadline (HTTP 408)
    ├── ModelError           model file corrupt, wrong version, pickle; backbone problems
    ├── NotFoundError        unknown id or route object (HTTP 404)
    ├── MethodNotAllowed     a route asked with a method it does not answer (HTTP 405)
    ├── StateError           operation not allowed in the current state (HTTP 409)
    ├── UnknownHostError     a Host header that names no address of this daemon: DNS rebinding (HTTP 421)
    ├── AuthError            missing or wrong credentials (HTTP 401)
    │   ├── CsrfError        a session cookie without its CSRF token (HTTP 403)
    │   │   └── CrossSiteError  a change asked by a page of another origin (HTTP 403)
    │   └── TooManyAttempts  too many wrong tokens from one address: wait (HTTP 429)
    └── ServiceError         a remote/daemon side failure (HTTP 5xx, transport)
        ├── Overloaded       too many connections or listeners: try again later (HTTP 503)
        └── StoreUnavailable the store cannot be written now (server down, network, disk full): spool and retry

The 4xx classes are the caller's to mend (credentials included); ``ServiceError`` and
its children are the daemon's side or the way to it, worth a retry.

Errors carry data (``status`` = the HTTP code REST maps them to). The REST layer
names the class in the error body (``"error": "StateError"``) and the client
raises that same class (:func:`by_name`), so both sides agree without guessing
from the status code.
"""
from __future__ import annotations


class ViStreamError(Exception):
    status = 500


class ConfigError(ViStreamError, ValueError):
    status = 400


class InputError(ViStreamError, ValueError):
    status = 400

    def __init__(self, message: str = "", reason: str = "bad_input"):
        super().__init__(message)
        self.reason = reason


class DecodeError(InputError):
    """A bsread message that cannot be used; ``reason`` is a short counter key."""

    def __init__(self, reason: str, message: str):
        super().__init__(message, reason)


class ModelError(ViStreamError):
    status = 500


class NotFoundError(ViStreamError, LookupError):
    status = 404


class MethodNotAllowed(ViStreamError):
    """A known route asked with a method it does not answer: the caller's to mend (HTTP 405)."""

    status = 405


class StateError(ViStreamError):
    status = 409


class MediaTypeError(ConfigError):
    """A JSON route given a body not declared ``application/json`` (a form, a no-cors fetch's text/plain)."""

    status = 415


class UnknownHostError(ViStreamError):
    """The request's Host is none of the daemon's names: a DNS-rebinding page, or a name to allow."""

    status = 421


class PayloadTooLarge(InputError):
    """A request body over its route's limit (HTTP 413)."""

    status = 413


class BodyTimeout(InputError):
    """A request body that did not arrive before its deadline (HTTP 408)."""

    status = 408


class AuthError(ViStreamError):
    """Missing or wrong credentials: the caller's to mend, not a failure of the daemon (HTTP 401)."""

    status = 401


class CsrfError(AuthError):
    """Logged in by cookie, but the request lacks the session's CSRF token (X-CSRF-Token)."""

    status = 403


class CrossSiteError(CsrfError):
    """A mutating request sent by a page of another origin (its Origin or Sec-Fetch-Site header says so)."""

    status = 403


class TooManyAttempts(AuthError):
    """Too many wrong tokens from one client address within the window; ``retry_after`` s to wait."""

    status = 429

    def __init__(self, message: str = "", retry_after: int = 60):
        super().__init__(message)
        self.retry_after = retry_after


class ServiceError(ViStreamError):
    status = 500


class Overloaded(ServiceError):
    status = 503


class StoreUnavailable(ServiceError):
    """Transient: the result is spooled and replayed later. Other store errors are not retried forever."""

    status = 503


def by_name(name: object, default: type[ViStreamError] = ServiceError) -> type[ViStreamError]:
    """The class of this tree called ``name`` (as REST names it in an error body), else ``default``."""
    found: list[type] = [ViStreamError]
    i = 0
    while i < len(found):
        found.extend(found[i].__subclasses__())
        i += 1
    for cls in found:
        if cls.__name__ == name:
            return cls
    return default
