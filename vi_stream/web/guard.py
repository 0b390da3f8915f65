"""Which requests may reach the REST routes at all: the checks against drive-by control, in one place.

A browser lets any page it shows send requests to 127.0.0.1: a ``fetch`` in ``no-cors`` mode
or a form cannot read the answer, but a POST still does what it asks. And a DNS-rebinding page
(a name of the attacker's that resolves to 127.0.0.1 after the page has loaded) is even
same-origin to the browser, so it can read as well. :class:`RequestGuard` is a bottle plugin
that runs before every route and refuses, whether a token is set or not:

* a ``Host`` that is not a name of this daemon (421): ``localhost``, an IP address (a page
  cannot rebind those), ``--rest-host`` and the names of ``--rest-allowed-hosts``; any port, so
  that an ssh tunnel's local port works. On every route, reads too: rebinding reads data.
* a change (POST) from another origin (403): an ``Origin`` header that is not the request's
  own ``Host``, or ``Sec-Fetch-Site`` other than ``same-origin``/``none``. Scripts and curl send
  neither and pass.
* a body on a JSON route that is not declared ``application/json`` (415), the only type a
  foreign page cannot send without asking first (CORS preflight, which this server refuses).
  A form's type is refused even with an empty body. Routes taking files (``raw_body=True``)
  check their own types.
* a wrong token from an address that got it wrong :data:`MAX_FAILURES` times within
  :data:`FAILURE_WINDOW_S` (429 with ``Retry-After`` instead of 401), at ``POST /api/login`` and
  for a bearer token. Only wrong answers are limited: the token is compared first, and the right
  token, a logged-in session and reading always pass, so nobody sharing an address (other local
  users, everyone behind one ssh tunnel, proxy or NAT) can lock the operator out by guessing.
  The limit tells a guesser nothing and does not slow it down; what stops guessing is the
  token's length (at least :data:`MIN_TOKEN_CHARS` characters). The book is bounded.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import re
import socket
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

import bottle

from vi_stream.web.bodylimit import HAS_BODY_KEY
from vi_stream.errors import ConfigError, CrossSiteError, MediaTypeError, TooManyAttempts, UnknownHostError, ViStreamError
from vi_stream.ratelog import RateLimitedLog

log = logging.getLogger("vi_stream.rest")

MAX_FAILURES = 10            # wrong tokens per client address ...
FAILURE_WINDOW_S = 60.0      # ... within this many seconds, then 429 until the oldest leaves the window
MAX_CLIENTS = 4096           # addresses the failure book remembers (the oldest is forgotten beyond)
MIN_TOKEN_CHARS = 16
JSON = "application/json"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]{0,252})")
_DEFAULT_PORT = {"http": 80, "https": 443}


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def split_host(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` of a Host header as (lower-case name or address, port), or None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[1:end], value[end + 1:]
        if end < 0 or _ip(host) is None:
            return None
    else:
        host, sep, port = value.partition(":")
        rest = sep + port
        if not _NAME.fullmatch(host):
            return None
    if not rest:
        return host, None
    if not rest.startswith(":") or not rest[1:].isdigit() or int(rest[1:]) > 65535:
        return None
    return host, int(rest[1:])


def is_loopback(host: str) -> bool:
    address = _ip(host.strip("[]"))
    return host.lower() == "localhost" or (address is not None and address.is_loopback)


def check_host_name(name: object) -> str:
    """A name for ``--rest-allowed-hosts``: a DNS name or an IP address, no scheme, port or path."""
    if not isinstance(name, str) or not (_NAME.fullmatch(name.lower()) or _ip(name.strip("[]"))):
        raise ConfigError(f"rest_allowed_hosts takes host names or addresses (no scheme, port, path or "
                          f"wildcard), got {str(name)[:100]!r}")
    return name.lower().strip("[]")


def exposure_warning(rest_host: str, token: str | bool | None) -> str | None:
    """What to warn about at start: a REST port others can reach, without a token."""
    if token or is_loopback(rest_host):
        return None
    return (f"REST bound to {rest_host}, without a token: anyone who can reach this port can stop the "
            f"daemon, change its settings and models; set --token (or VI_STREAM_TOKEN), or bind 127.0.0.1")


def check_token(token: str | None) -> None:
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"token is {len(token)} characters, too short to guard the daemon: use at least "
                          f"{MIN_TOKEN_CHARS}, e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(24))'")


class HostPolicy:
    """The names a request's Host may carry (any port): see the module's docstring."""

    def __init__(self, rest_host: str = "127.0.0.1", names: Iterable[str] = ()):
        self.names = {"localhost", rest_host.lower().strip("[]"), *(n.lower().strip("[]") for n in names)}
        if not is_loopback(rest_host):
            self.names.add(socket.gethostname().lower())   # what people type to reach this machine

    def allows(self, host_header: str | None) -> bool:
        if not host_header:
            return True             # HTTP/1.0 without Host: not a browser
        parsed = split_host(host_header)
        return parsed is not None and (parsed[0] in self.names or _ip(parsed[0]) is not None)


def same_origin(origin: str, host_header: str | None) -> bool:
    """The Origin header names the very host:port the request was sent to (its Host)."""
    try:
        parts = urlsplit(origin)
        port = parts.port or _DEFAULT_PORT.get(parts.scheme)
    except ValueError:
        return False
    host = split_host(host_header or "")
    if parts.scheme not in _DEFAULT_PORT or not parts.hostname or host is None:
        return False
    return parts.hostname.lower() == host[0] and port == (host[1] or _DEFAULT_PORT[parts.scheme])


class FailureLimiter:
    """Recent wrong tokens per client address, bounded: at most ``max_failures`` times per address
    and ``max_clients`` addresses (least recently failing forgotten first)."""

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S,
                 max_clients: int = MAX_CLIENTS, clock: Callable[[], float] = time.monotonic):
        self.max_failures, self.window_s, self.max_clients, self.clock = max_failures, window_s, max_clients, clock
        self._book: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._book)

    def failed(self, address: str) -> None:
        with self._lock:
            times = self._book.pop(address, None) or deque(maxlen=self.max_failures)
            times.append(self.clock())
            self._book[address] = times
            while len(self._book) > self.max_clients:
                self._book.popitem(last=False)

    def retry_after(self, address: str) -> int | None:
        """Seconds until this address may try a token again, or None if it may now."""
        now = self.clock()
        with self._lock:
            times = self._book.get(address)
            if times is None:
                return None
            while times and times[0] + self.window_s <= now:
                times.popleft()
            if not times:
                del self._book[address]
                return None
            if len(times) < self.max_failures:
                return None
            return max(1, math.ceil(times[0] + self.window_s - now))


class RequestGuard:
    """The bottle plugin: the checks above before each route; ``on_error`` renders a refusal as the
    REST's JSON error. ``refused`` counts refusals by kind (``GET /statistics`` shows them)."""

    name = "vi_stream_guard"
    api = 2

    def __init__(self, hosts: HostPolicy, failures: FailureLimiter, on_error: Callable[[ViStreamError], Any]):
        self.hosts, self.failures, self.on_error = hosts, failures, on_error
        self.refused = {"host": 0, "origin": 0, "content_type": 0, "login_rate": 0}
        self._lock = threading.Lock()
        self._notes = RateLimitedLog(log, interval=60.0)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.refused)

    def apply(self, callback: Callable, route: bottle.Route) -> Callable:
        mutating = route.method not in SAFE_METHODS
        json_body = mutating and not route.config.get("raw_body", False)
        login = bool(route.config.get("credentials", False))

        def guarded(*args: Any, **kwargs: Any) -> Any:
            environ = bottle.request.environ
            address = environ.get("REMOTE_ADDR", "")     # never X-Forwarded-For: anyone can write that
            tries_token = login or (mutating and bool(environ.get("HTTP_AUTHORIZATION")))
            try:
                self.check(environ, mutating, json_body, address)
            except ViStreamError as err:
                return self.on_error(err)
            result = callback(*args, **kwargs)
            if tries_token and bottle.response.status_code == 401:    # a wrong token, never the right one
                wait = self.failures.retry_after(address)
                self.failures.failed(address)
                if wait is not None:
                    try:
                        self._refuse("login_rate", f"{environ.get('REQUEST_METHOD')} "
                                     f"{environ.get('PATH_INFO', '')[:100]} from {address}", TooManyAttempts(
                                         f"too many wrong tokens from {address}: try again in {wait} s",
                                         retry_after=wait))
                    except ViStreamError as err:
                        return self.on_error(err)
            return result
        return guarded

    def check(self, environ: dict, mutating: bool, json_body: bool, address: str) -> None:
        host = environ.get("HTTP_HOST")
        what = f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO', '')[:100]} from {address}"
        if not self.hosts.allows(host):
            self._refuse("host", what, UnknownHostError(
                f"Host {str(host)[:100]!r} is not a name of this daemon (a DNS-rebinding page?); if it is "
                f"yours, add it with --rest-allowed-hosts (rest_allowed_hosts in the config file)"))
        if mutating:
            origin, site = environ.get("HTTP_ORIGIN"), environ.get("HTTP_SEC_FETCH_SITE")
            if origin is not None and not same_origin(origin, host):
                self._refuse("origin", what, CrossSiteError(
                    f"a change from another origin ({origin[:100]}) is refused: use this daemon's own page"))
            if site is not None and site.lower() not in ("same-origin", "none"):
                self._refuse("origin", what, CrossSiteError(
                    f"a change sent by a {site[:20]} page is refused: use this daemon's own page"))
        if json_body:
            try:
                _check_json(environ)
            except MediaTypeError as err:
                self._refuse("content_type", what, err)

    def _refuse(self, kind: str, what: str, err: ViStreamError) -> None:
        with self._lock:
            self.refused[kind] += 1
        self._notes.warning(f"refused-{kind}", f"refused {what}: {err}")
        raise err


def _check_json(environ: dict) -> None:
    media = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if media == JSON:
        return
    try:
        has_body = (bool(environ.get(HAS_BODY_KEY)) or int(environ.get("CONTENT_LENGTH") or 0) > 0
                    or "HTTP_TRANSFER_ENCODING" in environ)
    except ValueError:
        has_body = True
    # wsgiref calls a request without Content-Type text/plain: an empty body of that type is curl's POST
    if has_body or media in FORM_TYPES:
        raise MediaTypeError(f"send the body as JSON with 'Content-Type: {JSON}'"
                             + (f", not {media[:60]}" + (" (or none)" if media == "text/plain" else "")
                                if media and has_body else "")
                             + ("" if has_body else f", or send no body and no {media[:60]} type"))
