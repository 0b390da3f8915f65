"""Python client for the REST control plane (psen_processing's methods plus config/model).

    >>> c = Client("http://127.0.0.1:11000", timeout=5)   # doctest: +SKIP
    >>> c.start(); c.get_statistics()["frames_processed"]  # doctest: +SKIP

HTTP errors become the very exception class the daemon raised (the error body
names it: ``ConfigError``, ``InputError``, ``NotFoundError``, ``StateError``,
``AuthError``, ``Overloaded``, ``StoreUnavailable`` ...), falling back on the
status code for a body that names none; connection failures and timeouts are
``ServiceError``. The timeout is passed to every request.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from vi_stream.errors import AuthError, BodyTimeout, ConfigError, CrossSiteError, MediaTypeError, MethodNotAllowed, NotFoundError, Overloaded, PayloadTooLarge, ServiceError, StateError, TooManyAttempts, UnknownHostError, ViStreamError, InputError, by_name

# When a body names no class of ours (a proxy's answer), the status picks one.
_BY_STATUS = {400: ConfigError, 401: AuthError, 403: CrossSiteError, 404: NotFoundError, 405: MethodNotAllowed, 408: BodyTimeout,
              409: StateError, 413: PayloadTooLarge, 415: MediaTypeError, 421: UnknownHostError,
              429: TooManyAttempts, 503: Overloaded}


class Client:
    def __init__(self, address: str = "http://127.0.0.1:11000", timeout: float = 10.0,
                 session: requests.Session | None = None, token: str | None = None):
        self.address = address.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.token = token

    def _request(self, method: str, path: str, json_body: Any = None, data: bytes | None = None,
                 headers: dict | None = None, params: dict | None = None,
                 timeout: float | None = None) -> requests.Response:
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            r = self.session.request(method, self.address + path, json=json_body, data=data, params=params,
                                     timeout=timeout or self.timeout, headers=headers)
        except requests.exceptions.InvalidJSONError as err:
            raise ConfigError(f"{method} {path}: the request cannot be sent as JSON: {err}") from err
        except requests.Timeout as err:
            raise ServiceError(f"{method} {path}: no answer within {timeout or self.timeout} s") from err
        except requests.RequestException as err:
            raise ServiceError(f"{method} {path}: cannot reach {self.address}: {err}") from err
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = None
            msg = body.get("message", r.reason) if isinstance(body, dict) else r.reason
            cls = by_name(body.get("error") if isinstance(body, dict) else None,
                          _BY_STATUS.get(r.status_code, ServiceError))
            err: ViStreamError = cls.__new__(cls)
            ViStreamError.__init__(err, f"{method} {path}: {msg}")
            err.status = r.status_code
            if isinstance(err, InputError):
                err.reason = body.get("reason", "bad_input") if isinstance(body, dict) else "bad_input"
            if isinstance(err, TooManyAttempts):
                retry = r.headers.get("Retry-After", "")
                err.retry_after = int(retry) if retry.isdigit() else 60
            err.status = r.status_code
            raise err
        return r

    def _call(self, method: str, path: str, json_body: Any = None, **kw: Any) -> dict:
        r = self._request(method, path, json_body, **kw)
        try:
            return r.json()
        except ValueError as err:
            raise ServiceError(f"{method} {path}: HTTP {r.status_code}, not JSON") from err

    # psen_processing's methods
    def start(self) -> str:
        return self._call("POST", "/start")["status"]

    def stop(self) -> str:
        return self._call("POST", "/stop")["status"]

    def get_status(self) -> str:
        return self._call("GET", "/status")["status"]

    def get_roi(self) -> list[int]:
        return self._call("GET", "/roi")["roi"]

    def set_roi(self, roi: list[int] | None) -> list[int]:
        return self._call("POST", "/roi", {"roi": roi or []})["roi"]

    def get_statistics(self) -> dict:
        return self._call("GET", "/statistics")["statistics"]

    # config and model
    def get_config(self) -> dict:
        return self._call("GET", "/config")["config"]

    def set_config(self, **changes: Any) -> dict:
        return self._call("POST", "/config", changes)["config"]

    def get_model(self) -> dict:
        return self._call("GET", "/model")["model"]

    def reload_model(self, path: str | None = None, name: str | None = None) -> dict:
        """Reload from ``path``, or fetch ``name`` from SFTP first; the running model stays on failure."""
        body = {k: v for k, v in (("path", path), ("name", name)) if v}
        return self._call("POST", "/model/reload", body)["model"]

    # results: read-back and review
    def list_modules(self, limit: int = 100, skip: int = 0) -> list[dict]:
        """Newest first: name, times and per side score, verdict, tile_count, verified count, thumbnail id."""
        return self._call("GET", "/api/modules", params={"limit": limit, "skip": skip})["modules"]

    def history(self, **filters: Any) -> tuple[list[dict], int]:
        """One page of module sides and how many match: ``from_``/``to`` (ISO-8601 with a zone), ``verdict``
        ("anomalous"/"good"), ``reviewed`` ("yes"/"no"), ``tag``, ``module`` (prefix), ``sort``, ``order``,
        ``limit``, ``skip`` (README, "History")."""
        params = {("from" if k == "from_" else k): v for k, v in filters.items() if v is not None}
        r = self._call("GET", "/api/history", params=params)
        return r["sides"], r["total"]

    def get_module(self, name: str) -> dict:
        """The whole module document (ATLAS schema; image ids as 24-hex strings)."""
        return self._call("GET", f"/api/modules/{quote(name, safe='')}")["module"]

    def get_image(self, image_id: str) -> bytes:
        """PNG bytes of a stored image (``NotFoundError`` for an unknown id)."""
        return self._request("GET", f"/api/images/{quote(image_id, safe='')}").content

    def correct_mask(self, name: str, side: str, tile: int, mask: Any, result_id: str | None = None) -> dict:
        """Upload tile ``tile``'s corrected mask (PNG bytes, or a uint8 array of 0/255) and mark it verified.

        With ``result_id``, the daemon refuses (``StateError``) if the side shows a newer result by now.
        """
        png = mask if isinstance(mask, (bytes, bytearray)) else _png(mask)
        params = {"result_id": result_id} if result_id else None
        return self._call("POST", f"/api/modules/{quote(name, safe='')}/{side}/tiles/{int(tile)}/mask",
                          data=bytes(png), headers={"Content-Type": "image/png"}, params=params)["side"]

    def verify_tile(self, name: str, side: str, tile: int, verified: bool = True,
                    result_id: str | None = None) -> dict:
        """Mark a tile's corrected mask as checked by a person (or unmark it)."""
        body: dict[str, Any] = {"verified": verified}
        if result_id:
            body["result_id"] = result_id
        return self._call("POST", f"/api/modules/{quote(name, safe='')}/{side}/tiles/{int(tile)}/verify",
                          body)["side"]

    def decide(self, name: str, side: str, verdict: str, categories: list[str] | None = None, comment: str = "",
               result_id: str | None = None) -> dict:
        """Record a decision (pass, fail, rework) on acquisition ``result_id`` of a side (the one shown without
        it); the operator is the token's name (``--operators``)."""
        body: dict[str, Any] = {"verdict": verdict, "categories": categories or [], "comment": comment}
        if result_id:
            body["result_id"] = result_id
        return self._call("POST", f"/api/modules/{quote(name, safe='')}/{side}/decision", body)["side"]

    def acquisitions(self, name: str, side: str, limit: int = 50) -> list[dict]:
        """Every acquisition of a module side, newest first (history rows)."""
        return self._call("GET", f"/api/modules/{quote(name, safe='')}/{side}/results",
                          params={"limit": limit})["results"]

    def report(self, from_: str | None = None, to: str | None = None) -> list[dict]:
        """The shift report's rows: every result processed in [from_, to) (default the last 8 h)."""
        params = {k: v for k, v in (("from", from_), ("to", to)) if v}
        return self._call("GET", "/api/report", params=params)["rows"]

    # the model registry and the drift watch
    def list_models(self, name: str | None = None) -> list[dict]:
        """Registered versions (by name, newest first), each with the aliases pointing at it."""
        return self._call("GET", "/api/models", params={"name": name} if name else None)["models"]

    def get_model_version(self, name: str, version: str) -> dict:
        return self._call("GET", f"/api/models/{quote(name, safe='')}/{quote(version, safe='')}")["model"]

    def register_model(self, path: str, name: str, version: str | None = None) -> dict:
        """Upload a model file; the daemon loads and self-checks it, then stores it as ``name@version``."""
        with open(path, "rb") as f:
            data = f.read()
        params = {k: v for k, v in (("name", name), ("version", version)) if v}
        return self._call("POST", "/api/models", data=data, params=params,
                          headers={"Content-Type": "application/octet-stream"}, timeout=max(self.timeout, 120))["model"]

    def aliases(self) -> dict:
        """``{"aliases": {alias: target}, "changes": [...]}`` (the latest 50 changes, newest first)."""
        r = self._call("GET", "/api/aliases")
        return {"aliases": r["aliases"], "changes": r["changes"]}

    def promote(self, alias: str, name: str, version: str, reason: str, expected: str | None = None,
                force: bool = False) -> dict:
        """Point ``alias`` at ``name@version``; ``StateError`` if ``expected`` is given and stale, or if the
        promotion gate finds a regression (``force=True`` overrides it, recorded with the reason)."""
        body = {"name": name, "version": version, "reason": reason, "force": force}
        if expected is not None:
            body["expected"] = expected
        return self._call("POST", f"/api/aliases/{quote(alias, safe='')}", body)["change"]

    def rollback(self, alias: str, reason: str) -> dict:
        return self._call("POST", f"/api/aliases/{quote(alias, safe='')}/rollback", {"reason": reason})["change"]

    def freeze_gate(self) -> dict:
        """Freeze the tiles verified now into a new promotion-gate set (its id and counts)."""
        return self._call("POST", "/api/gate", {}, timeout=max(self.timeout, 120))["gate"]

    def gate(self) -> dict:
        return self._call("GET", "/api/gate")["gate"]

    def retrain(self, images: str, **kw: Any) -> dict:
        """Start retraining on the daemon (``images``: a folder on its machine; ``from``/``to`` aliases,
        ``name``, ``version``); poll :meth:`retrain_status`."""
        return self._call("POST", "/api/retrain", {"images": images, **kw})["job"]

    def retrain_status(self) -> dict:
        return self._call("GET", "/api/retrain")["job"]

    def shadow(self) -> dict:
        return self._call("GET", "/api/shadow")["shadow"]

    def batches(self) -> list[dict]:
        """``vi_stream batch`` runs recorded in the daemon's store, newest first."""
        return self._call("GET", "/api/batches")["batches"]

    def batch(self, batch_id: str) -> dict:
        return self._call("GET", f"/api/batches/{quote(batch_id, safe='')}")["batch"]

    def drift(self) -> dict:
        return self._call("GET", "/api/drift")["drift"]


def _png(mask: Any) -> bytes:
    import cv2
    import numpy as np
    arr = np.asarray(mask)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise ConfigError(f"cannot encode a {arr.dtype} {arr.shape} array as PNG")
    return buf.tobytes()
