"""Browser sessions for the operator's page: the token exchanged once for a cookie, plus CSRF.

With a token set (``--token``), every mutating request needs either the bearer header
(scripts, the Python client) or the session cookie *and* that session's CSRF token in
the ``X-CSRF-Token`` header (the page). The cookie is HttpOnly and SameSite=Strict, so
page scripts cannot read it and other sites cannot send it; the CSRF token is handed to
the page by ``GET /api/session`` and a forged form has no way to learn it. Reading needs
no credentials. Sessions live in memory: a daemon restart logs everyone out.

Several operators each have their own token (:mod:`vi_stream.web.operators`, ``--operators FILE``);
the session, or the bearer token, carries the operator's name, which the plugin leaves in the
request's environ (:data:`OPERATOR`) for the routes that record who did something
(:func:`vi_stream.web.body.who`). The one ``--token`` has no name.

:class:`CredentialsCheck` is the bottle plugin that asks for them: every route that is not a read
(GET, HEAD, OPTIONS) is checked, unless its route config says it takes the credentials itself
(``credentials=True``: logging in) or needs none (``open=True``: logging out). A new route is
guarded by its method; nobody has to remember a wrapper.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping

import bottle

from vi_stream.errors import AuthError, CsrfError, StateError

COOKIE = "vi_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL_S = 12 * 3600    # a shift
MAX_SESSIONS = 256           # the oldest is logged out beyond this
OPERATOR = "vi_stream.operator"   # environ key: the name of the operator whose credentials a request carried


class Sessions:
    """``token``: the one token without a name (``--token``); ``operators``: name -> SHA-256 digest of that
    operator's token (``--operators``). Either, both or neither."""

    def __init__(self, token: str | None, ttl: float = SESSION_TTL_S, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic, operators: Mapping[str, bytes] | None = None):
        self.token = token or None
        self.operators = dict(operators or {})
        self.ttl, self.max_sessions, self.clock = ttl, max_sessions, clock
        # id -> (csrf, expires, operator's name or None)
        self._sessions: OrderedDict[str, tuple[str, float, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def required(self) -> bool:
        return self.token is not None or bool(self.operators)

    def identify(self, given: object) -> str | None:
        """Whose token ``given`` is: an operator's name, None for the unnamed ``--token``; AuthError for
        none. Every operator's digest is compared (no early exit), and the unnamed token too."""
        if not isinstance(given, str) or not given:
            raise AuthError("wrong token")
        d = hashlib.sha256(given.encode()).digest()
        found = None
        for name, want in self.operators.items():
            if hmac.compare_digest(d, want):
                found = name
        unnamed = self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())
        if found is None and not unnamed:
            raise AuthError("wrong token")
        return found

    def login(self, given: object) -> tuple[str, str, str | None]:
        """A new session (id, csrf, operator) for a right token; AuthError otherwise."""
        if not self.required:
            raise StateError("no token is set on this daemon: nothing to log in to, every request is allowed")
        operator = self.identify(given)
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[sid] = (csrf, self.clock() + self.ttl, operator)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return sid, csrf, operator

    def logout(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def session(self, sid: str | None) -> tuple[str, str | None] | None:
        """The session's (CSRF token, operator), or None for no, unknown or expired session."""
        if not sid:
            return None
        with self._lock:
            entry = self._sessions.get(sid)
            if entry is None:
                return None
            if entry[1] < self.clock():
                del self._sessions[sid]
                return None
            return entry[0], entry[2]

    def csrf(self, sid: str | None) -> str | None:
        """The session's CSRF token, or None for no, unknown or expired session."""
        s = self.session(sid)
        return s[0] if s else None

    def check(self, authorization: str, sid: str | None, csrf_header: str | None) -> str | None:
        """Allow a mutating request, or raise: AuthError (401) without credentials, CsrfError (403) for a
        session without its CSRF token. The operator's name, None for the unnamed token (or none set)."""
        if not self.required:
            return None
        if authorization.startswith("Bearer "):
            try:
                return self.identify(authorization[len("Bearer "):])
            except AuthError:
                pass
        entry = self.session(sid)
        if entry is None:
            raise AuthError("missing or wrong token (Authorization: Bearer <token>), or log in on the page")
        if not csrf_header or not hmac.compare_digest(csrf_header.encode(), entry[0].encode()):
            raise CsrfError(f"logged in, but the request lacks the session's CSRF token ({CSRF_HEADER})")
        return entry[1]


READS = ("GET", "HEAD", "OPTIONS")


class CredentialsCheck:
    """The bottle plugin: :meth:`Sessions.check` before every changing route (see the module's docstring);
    what it raises is answered by :class:`vi_stream.web.replies.Replies`, installed outside it."""

    name = "vi_stream_credentials"
    api = 2

    def __init__(self, sessions: Sessions):
        self.sessions = sessions

    def apply(self, callback: Callable, route: bottle.Route) -> Callable:
        if route.method in READS or route.config.get("credentials") or route.config.get("open"):
            return callback

        def checked(*args: Any, **kwargs: Any) -> Any:
            request = bottle.request
            request.environ[OPERATOR] = self.sessions.check(request.get_header("Authorization", ""),
                                                            request.get_cookie(COOKIE), request.get_header(CSRF_HEADER))
            return callback(*args, **kwargs)
        return checked
