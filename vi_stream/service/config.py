"""One configuration for the daemon: defaults <- YAML file <- environment <- command-line flags."""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any
from urllib.parse import quote

from vi_stream.web import guard, operators
from vi_stream.processing import settings
from vi_stream.errors import ConfigError, InputError
from vi_stream.folders import state_dir
from vi_stream.frame import check_module
from vi_stream.store.uris import redact


def _opt(default: Any, help: str, **argparse_kw: Any) -> Any:
    """A daemon option: its default, its help and how the command line spells it, in one place.
    ``vi_stream run``'s flags, the YAML keys, ``GET /config`` and the checks all come from these."""
    return field(default=default, metadata={"help": help, **argparse_kw})


@dataclass(frozen=True)
class DaemonConfig:
    input: str | None = _opt(None, "bsread stream tcp://host:port (omit with --camera)", positional=True)
    prefix: str = _opt("VI", "camera prefix; the image channel is PREFIX:FPICTURE", positional=True)
    worker: str | None = _opt(None, "this worker's name, when several workers PULL from one camera's stream: "
                                    "its own spool and state, named in statistics and stored results")
    mode: str = _opt("pull", "input socket type", choices=("pull", "sub"))
    camera: str | None = _opt(None, "OpenCV capture instead of a stream: device index, video file, folder or glob")
    camera_fps: float | None = _opt(None, "frame rate for folders/globs")
    output_port: int = _opt(9100, "output stream port (0 = any free port)")
    output_host: str = _opt("127.0.0.1", "output bind address")
    output_mode: str = _opt("push", "output socket", choices=("push", "pub"))
    output_compression: str | None = _opt(None, "compression of the new output arrays",
                                          choices=("none", "bitshuffle_lz4"))
    block: bool = _opt(False, "wait for a slow consumer instead of dropping outputs", flag="--block", const=True)
    model: str | None = _opt(None, "model file (.npz) from `vi_stream train`")
    allow_unchecked: bool = _opt(False, "load a --model file (or POST /model/reload one) that has no digest (saved by "
                                        "an older vi_stream, or edited), with a warning; a digest that does not "
                                        "match is refused whatever this says", flag="--allow-unchecked", const=True)
    model_alias: str | None = _opt(None, "follow this registry alias (e.g. production) in --store instead of "
                                         "--model FILE: its model at start-up, the next one between frames")
    model_poll: float = _opt(5.0, "seconds between asks of where --model-alias points")
    shadow_alias: str | None = _opt(None, "shadow mode: the model this registry alias points at (e.g. candidate) "
                                          "scores every --shadow-every frame beside production, changing no verdict")
    shadow_every: int = _opt(10, "shadow mode scores every N-th frame")
    drift_chunk: int = _opt(50, "scored frames per drift-watch chunk (at least 10)")
    device: str = _opt("cpu", "torch device: cpu, cuda, cuda:1 ...")
    threshold: float | None = _opt(None, "override the model's threshold (a positive number)")
    roi: tuple[int, ...] | None = _opt(None, "region of interest", nargs=4, metavar=("OX", "SX", "OY", "SY"))
    rest_host: str = _opt("127.0.0.1", "REST bind address")
    rest_port: int = _opt(11000, "REST port (0 = any free port)")
    rest_allowed_hosts: tuple[str, ...] | None = _opt(
        None, "more names the REST port is reached by (a reverse proxy's, this machine's full name): a request "
              "whose Host is none of these, localhost, an IP address or --rest-host is refused (DNS rebinding)",
        nargs="+", metavar="NAME")
    token: str | None = _opt(None, "require 'Authorization: Bearer TOKEN' on mutating routes (or VI_STREAM_TOKEN; "
                                   "at least 16 characters)")
    operators: str | None = _opt(None, "file of named operators, one 'name:token' or 'name:sha256:HEX' a line: each "
                                       "logs in with their own token and is named in the alias log, reviews and "
                                       "decisions (docs/security.md)")
    auto_start: bool = _opt(False, "start processing immediately", flag="--auto-start", const=True)
    log_level: str = _opt("INFO", "DEBUG, INFO, WARNING or ERROR")
    queue_size: int = _opt(4, "input queue length")
    max_pixels: int = _opt(64 * 1024 * 1024, "larger images are rejected before anything is decompressed")
    store: str | None = _opt(None, "mongodb://user:pw@host/db, a local store folder, or 'off' "
                                   "(default: MONGO_HOST etc. if set, else $VI_STREAM_STATE_DIR/store)")
    store_tiles: bool = _opt(True, "store whole images only, not one image per tile (faster)",
                             flag="--no-store-tiles", const=False)
    store_tile: int = _opt(512, "review tile size in px (tile_count, verified_masks)")
    store_queue: int = _opt(8, "results waiting for the store writer before processing waits")
    preview_side: int = _opt(settings.PREVIEW_SIDE, "longest side in px of the operator page's live preview (64-4096; "
                                  "larger costs every open monitor tab more decoding)")
    spool: str | None = _opt(None, "spool folder for results the store cannot take yet "
                                   "(default $VI_STREAM_STATE_DIR/spool/PREFIX, or PREFIX.WORKER)")

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
        guard.check_token(self.token)
        if self.operators is not None:
            operators.load(self.operators)      # read at start again; here a bad file is refused in one line
        for name in self.rest_allowed_hosts or ():
            guard.check_host_name(name)
        _at_least("queue_size", self.queue_size, 1)
        _at_least("store_queue", self.store_queue, 1)
        _at_least("max_pixels", self.max_pixels, 16 * 16)
        if not 16 <= self.store_tile <= 8192:
            raise ConfigError(f"store_tile must be 16-8192 px, got {self.store_tile!r}")
        if self.model_alias is not None:
            if self.model is not None:
                raise ConfigError("give either --model FILE or --model-alias ALIAS, not both")
            if self.store == "off":
                raise ConfigError("--model-alias follows an alias in the store: it needs a store, not --store off")
            settings.check_word("model_alias", self.model_alias)
        if self.shadow_alias is not None:
            if self.store == "off":
                raise ConfigError("--shadow-alias reads an alias in the store: it needs a store, not --store off")
            settings.check_word("shadow_alias", self.shadow_alias)
        _at_least("shadow_every", self.shadow_every, 1)
        if self.store and self.spool and self.store != "off" and "://" not in self.store:
            store, spool = os.path.realpath(self.store), os.path.realpath(self.spool)
            if os.path.commonpath([store, spool]) == store:
                raise ConfigError(f"--spool {self.spool} is inside the local store's folder {self.store}: the "
                                  "results waiting for the store would go with it; give a folder beside it")
        if not (math.isfinite(self.model_poll) and 0.1 <= self.model_poll <= 3600):
            raise ConfigError(f"model_poll must be 0.1-3600 s, got {self.model_poll!r}")
        _at_least("drift_chunk", self.drift_chunk, 10)
        if not 64 <= self.preview_side <= 4096:
            raise ConfigError(f"preview_side must be 64-4096 px, got {self.preview_side!r}")
        if self.camera_fps is not None and not (math.isfinite(self.camera_fps) and self.camera_fps > 0):
            raise ConfigError(f"camera_fps must be a positive number, got {self.camera_fps!r}")
        # The run-time settings: the same checks as POST /config (vi_stream.processing.settings).
        settings.check_threshold(self.threshold)
        settings.check_roi(self.roi)
        settings.check_log_level(self.log_level)
        if self.worker is not None:
            settings.check_word("worker", self.worker)
        # The prefix names the module of every frame without a MODULE channel: it must be a module name
        # (vi_stream.frame.check_module), and a word, as the channel names built from it are.
        try:
            check_module(self.prefix)
        except InputError as err:
            raise ConfigError(f"prefix: {err}") from None
        if any(c.isspace() for c in self.prefix):
            raise ConfigError(f"prefix must be one word, without spaces, got {self.prefix!r}")
        if self.input is None and self.camera is None:
            raise ConfigError("give an input stream (tcp://host:port) or --camera SPEC")
        if self.input is not None and self.camera is not None:
            raise ConfigError("give either an input stream or --camera, not both")
        if self.input is not None and not self.input.startswith(("tcp://", "ipc://")):
            raise ConfigError(f"input must look like tcp://host:port, got {self.input!r}")
        return self


_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "tuple[int, ...]": (tuple, list),
          "tuple[str, ...]": (tuple, list)}


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
                        "tuple[str, ...]": "a list of strings",
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


def default_store(env: dict[str, str] | None = None) -> str:
    """The store when none is named: MONGO_HOST etc. if set, else the local store in the state directory."""
    env = os.environ if env is None else env
    return mongo_uri_from_env(env) or os.path.join(state_dir(env), "store")


def build(file: str | None = None, env: dict[str, str] | None = None, **flags: Any) -> DaemonConfig:
    """Flags that are not None override the file, which overrides defaults."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if file:
        values.update(load_yaml(file))
    if env.get("VI_STREAM_TOKEN"):
        values["token"] = env["VI_STREAM_TOKEN"]
    values.update({k: v for k, v in flags.items() if v is not None})
    if values.get("model") == "":
        values["model"] = None   # the unit's `--model ${VI_STREAM_MODEL}` with no model: --model-alias follows
    for key in ("roi", "rest_allowed_hosts"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    if not values.get("store"):
        values["store"] = default_store(env)
    if not values.get("spool"):
        prefix = str(values.get("prefix", DaemonConfig.prefix))
        values["spool"] = os.path.join(state_dir(env), "spool",
                                       f"{prefix}.{values['worker']}" if values.get("worker") else prefix)
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


def add_run_options(parser: Any) -> None:
    """``vi_stream run``'s flags, one per DaemonConfig field (``--long-name``; the default is the field's)."""
    parser.add_argument("--config", help="YAML file of options, keys as the long flag names (flags override it)")
    for f in fields(DaemonConfig):
        meta = dict(f.metadata)
        help_ = f"{meta.pop('help')}" + ("" if f.default in (None, False, True) else f" (default {f.default})")
        if meta.pop("positional", False):
            parser.add_argument(f.name, nargs="?", help=help_)
            continue
        flag = meta.pop("flag", "--" + f.name.replace("_", "-"))
        if "const" in meta:
            parser.add_argument(flag, dest=f.name, action="store_const", default=None, help=help_, **meta)
            continue
        kind = str(f.type).split("|")[0].strip()
        conv = {"int": int, "float": float, "tuple[int, ...]": int}.get(kind, str)
        parser.add_argument(flag, dest=f.name, type=conv, help=help_, **meta)


def flags_from(args: Any) -> dict[str, Any]:
    """The options given on the command line (None = not given), with the two positionals sorted out:
    ``run tcp://host:port PREFIX`` or ``run PREFIX --camera SPEC``."""
    flags = {f.name: getattr(args, f.name) for f in fields(DaemonConfig)}
    given = flags["input"]
    if given and not given.startswith(("tcp://", "ipc://")):
        flags["input"], flags["prefix"] = None, flags["prefix"] or given
    for key in ("roi", "rest_allowed_hosts"):
        if flags[key] is not None:
            flags[key] = tuple(flags[key])
    return flags
