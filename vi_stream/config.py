"""One configuration for the daemon: defaults <- YAML file <- environment <- command-line flags."""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any
from urllib.parse import quote, urlsplit

from . import settings
from .errors import ConfigError


@dataclass(frozen=True)
class DaemonConfig:
    input: str | None = None           # tcp://host:port of a bsread sender
    prefix: str = "VI"                 # camera prefix: image channel is <prefix>:FPICTURE
    mode: str = "pull"                 # pull | sub
    camera: str | None = None          # OpenCV camera spec instead of a stream
    camera_fps: float | None = None
    output_port: int = 9100            # 0 = pick a free port
    output_host: str = "127.0.0.1"
    output_mode: str = "push"          # push | pub
    output_compression: str | None = None
    block: bool = False                # block processing on a slow consumer instead of dropping
    model: str | None = None
    device: str = "cpu"
    threshold: float | None = None     # override of the model's threshold
    roi: tuple[int, ...] | None = None
    rest_host: str = "127.0.0.1"
    rest_port: int = 11000
    token: str | None = None           # required on mutating REST routes when set
    auto_start: bool = False
    log_level: str = "INFO"
    queue_size: int = 4
    max_pixels: int = 64 * 1024 * 1024  # larger images are rejected before decoding
    store: str | None = None           # mongodb:// URI, a local store folder, or "off" (default: MONGO_* env,
                                       # else <state dir>/store)
    store_tiles: bool = True           # also write one image per tile (slower; needed for per-tile review)
    store_tile: int = 512              # review tile size in px (tile_count, verified_masks)
    store_queue: int = 8               # results waiting for the store writer before processing waits
    spool: str | None = None           # spool folder (default <state dir>/spool/<prefix>)

    def validate(self) -> "DaemonConfig":
        """Every option's type, then its rule; ConfigError naming the option. The same for flags,
        the YAML file and the environment (build() hands all three in here)."""
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        if self.mode not in ("pull", "sub"):
            raise ConfigError(f"mode must be pull or sub, got {self.mode!r}")
        if self.output_mode not in ("push", "pub"):
            raise ConfigError(f"output_mode must be push or pub, got {self.output_mode!r}")
        if self.output_compression not in (None, "none", "bitshuffle_lz4"):
            raise ConfigError(f"output_compression must be none or bitshuffle_lz4, got {self.output_compression!r}")
        for name in ("output_port", "rest_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name} must be a port number 0-65535, got {getattr(self, name)!r}")
        _at_least("queue_size", self.queue_size, 1)
        _at_least("store_queue", self.store_queue, 1)
        _at_least("max_pixels", self.max_pixels, 16 * 16)
        if not 16 <= self.store_tile <= 8192:
            raise ConfigError(f"store_tile must be 16-8192 px, got {self.store_tile!r}")
        if self.camera_fps is not None and not (math.isfinite(self.camera_fps) and self.camera_fps > 0):
            raise ConfigError(f"camera_fps must be a positive number, got {self.camera_fps!r}")
        # The run-time settings: the same checks as POST /config (vi_stream.settings).
        settings.check_threshold(self.threshold)
        settings.check_roi(self.roi)
        settings.check_log_level(self.log_level)
        if not self.prefix or any(c.isspace() for c in self.prefix):
            raise ConfigError(f"prefix must be a non-empty word, got {self.prefix!r}")
        if self.input is None and self.camera is None:
            raise ConfigError("give an input stream (tcp://host:port) or --camera SPEC")
        if self.input is not None and self.camera is not None:
            raise ConfigError("give either an input stream or --camera, not both")
        if self.input is not None and not self.input.startswith(("tcp://", "ipc://")):
            raise ConfigError(f"input must look like tcp://host:port, got {self.input!r}")
        return self


_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "tuple[int, ...]": (tuple, list)}


def _check_type(name: str, value: Any, annotation: str) -> None:
    """``value`` fits the field's annotation (``int``, ``str | None``, ...): a YAML file can hold anything."""
    kinds = [k.strip() for k in str(annotation).split("|")]
    if value is None and "None" in kinds:
        return
    for k in kinds:
        ok = _TYPES.get(k, ())
        if isinstance(value, ok) and (k == "bool" or not isinstance(value, bool)):
            if k == "float" and not math.isfinite(value):
                continue
            return
    want = " or ".join({"str": "a string", "int": "a whole number", "float": "a finite number",
                        "bool": "true or false", "tuple[int, ...]": "a list of whole numbers",
                        "None": "null"}.get(k, k) for k in kinds)
    raise ConfigError(f"{name} must be {want}, got {value!r}")


def _at_least(name: str, value: int, lo: int) -> None:
    if value < lo:
        raise ConfigError(f"{name} must be >= {lo}, got {value!r}")


def model_cache_dir(env: dict[str, str] | None = None) -> str:
    """Where fetched models live: $VI_STREAM_STATE_DIR/models (systemd's StateDirectory), else ~/.cache."""
    env = os.environ if env is None else env
    state = env.get("VI_STREAM_STATE_DIR")
    return os.path.join(state, "models") if state else os.path.expanduser("~/.cache/vi_stream/models")


def state_dir(env: dict[str, str] | None = None) -> str:
    """$VI_STREAM_STATE_DIR (systemd's StateDirectory), else $XDG_STATE_HOME/vi_stream, else ~/.local/state/vi_stream."""
    env = os.environ if env is None else env
    if env.get("VI_STREAM_STATE_DIR"):
        return env["VI_STREAM_STATE_DIR"]
    base = env.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "vi_stream")


def mongo_uri_from_env(env: dict[str, str]) -> str | None:
    """The ATLAS app's variables: MONGO_HOST (host or host:port), MONGO_USER, MONGO_PASSWORD, MONGO_DATABASE."""
    host = env.get("MONGO_HOST")
    if not host:
        return None
    user, password = env.get("MONGO_USER"), env.get("MONGO_PASSWORD")
    if bool(user) != bool(password):
        raise ConfigError("set both MONGO_USER and MONGO_PASSWORD, or neither")
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user else ""
    db = env.get("MONGO_DATABASE") or "vi_stream"
    query = f"?authSource={env.get('MONGO_AUTH_SOURCE', 'admin')}" if user else ""
    return f"mongodb://{auth}{host}/{quote(db, safe='')}{query}"


def redact(uri: str) -> str:
    """A store spec fit for logs and /config: the password of a URI replaced by ***."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def load_yaml(path: str) -> dict[str, Any]:
    import yaml
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value")
    known = {f.name for f in fields(DaemonConfig)}
    clean = {}
    for k, v in data.items():
        key = str(k).replace("-", "_")
        if key not in known:
            raise ConfigError(f"config file {path}: unknown option {k!r}")
        clean[key] = v
    return clean


def build(file: str | None = None, env: dict[str, str] | None = None, **flags: Any) -> DaemonConfig:
    """Flags that are not None override the file, which overrides defaults."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if file:
        values.update(load_yaml(file))
    if env.get("VI_STREAM_TOKEN"):
        values["token"] = env["VI_STREAM_TOKEN"]
    values.update({k: v for k, v in flags.items() if v is not None})
    if isinstance(values.get("roi"), list):
        values["roi"] = tuple(values["roi"])
    if not values.get("store"):
        values["store"] = mongo_uri_from_env(env) or os.path.join(state_dir(env), "store")
    if not values.get("spool"):
        values["spool"] = os.path.join(state_dir(env), "spool", str(values.get("prefix", DaemonConfig.prefix)))
    try:
        cfg = replace(DaemonConfig(), **values)
    except TypeError as err:
        raise ConfigError(str(err)) from err
    return cfg.validate()


def as_dict(cfg: DaemonConfig) -> dict[str, Any]:
    d = asdict(cfg)
    if d.get("token"):
        d["token"] = "***"
    if d.get("store"):
        d["store"] = redact(d["store"])
    return d
