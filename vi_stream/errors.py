"""One exception tree for vi_stream.

    ViStreamError
    ├── ConfigError          bad option, argument or config value (HTTP 400)
    ├── InputError           an image or message that cannot be used (HTTP 400)
    ├── ModelError           model file corrupt, wrong version, pickle; backbone problems
    ├── NotFoundError        unknown id or route object (HTTP 404)
    ├── StateError           operation not allowed in the current state (HTTP 409)
    └── ServiceError         a remote/daemon side failure (HTTP 5xx, transport)
        └── StoreUnavailable the store cannot be written now (server down, network, disk full): spool and retry

Errors carry data (``status`` = the HTTP code REST maps them to) so the REST
layer and the client can translate both ways without guessing.
"""
from __future__ import annotations


class ViStreamError(Exception):
    status = 500


class ConfigError(ViStreamError, ValueError):
    status = 400


class InputError(ViStreamError, ValueError):
    status = 400


class ModelError(ViStreamError):
    status = 500


class NotFoundError(ViStreamError, LookupError):
    status = 404


class StateError(ViStreamError):
    status = 409


class ServiceError(ViStreamError):
    status = 500


class StoreUnavailable(ServiceError):
    """Transient: the result is spooled and replayed later. Other store errors are not retried forever."""

    status = 503
