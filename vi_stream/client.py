"""Python client for the REST control plane (psen_processing's methods plus config/model).

    >>> c = Client("http://127.0.0.1:11000", timeout=5)   # doctest: +SKIP
    >>> c.start(); c.get_statistics()["frames_processed"]  # doctest: +SKIP

HTTP errors become the project's exceptions (400 ConfigError, 404 NotFoundError,
409 StateError, others ServiceError); connection failures and timeouts are
ServiceError too. The timeout is passed to every request.
"""
from __future__ import annotations

from typing import Any

import requests

from .errors import ConfigError, NotFoundError, ServiceError, StateError, ViStreamError

_BY_STATUS = {400: ConfigError, 404: NotFoundError, 409: StateError}


class AuthError(ServiceError):
    status = 401


class Client:
    def __init__(self, address: str = "http://127.0.0.1:11000", timeout: float = 10.0,
                 session: requests.Session | None = None, token: str | None = None):
        self.address = address.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.token = token

    def _call(self, method: str, path: str, json_body: Any = None) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            r = self.session.request(method, self.address + path, json=json_body, timeout=self.timeout, headers=headers)
        except requests.Timeout as err:
            raise ServiceError(f"{method} {path}: no answer within {self.timeout} s") from err
        except requests.RequestException as err:
            raise ServiceError(f"{method} {path}: cannot reach {self.address}: {err}") from err
        try:
            data = r.json()
        except ValueError as err:
            raise ServiceError(f"{method} {path}: HTTP {r.status_code}, not JSON") from err
        if r.status_code >= 400:
            msg = data.get("message", r.reason) if isinstance(data, dict) else r.reason
            cls = _BY_STATUS.get(r.status_code, AuthError if r.status_code == 401 else ServiceError)
            err: ViStreamError = cls(f"{method} {path}: {msg}")
            err.status = r.status_code
            raise err
        return data

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
