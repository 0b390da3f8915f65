"""Command line: ``vi_stream {train,score,evaluate,synth,run,simulate,fetch-model,models,merge,batch,demo} ...``.

Thin: parse, build, hand in, report. Every expected failure is one line on
stderr and a non-zero exit (2 for usage/input/model errors); ``--debug``
shows the traceback.

The top of the package: it may import anything, and nothing imports it. :mod:`.offline` holds
``train``, ``score``, ``evaluate`` and ``synth``, :mod:`.models` and :mod:`.batch` the ``models`` and
``batch`` commands, :mod:`.demo` the demo. Each command's parser names its function
(``set_defaults(func=...)``) and ``main`` calls it; a command imports what it needs when it runs,
so one that scores nothing starts without torch or numba (tests/cli/test_startup.py, bench/startup.py).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from vi_stream._version import __version__
from vi_stream.errors import InputError, ViStreamError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vi_stream", description="Visual-inspection anomaly detection for ITk modules.")
    p.add_argument("--version", action="version", version=f"vi_stream {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    from vi_stream.cli import offline as cli_offline
    cli_offline.add_parsers(sub)   # train, score, evaluate, synth

    r = sub.add_parser("run", help="run the daemon: bsread (or camera) in, scored stream out, REST control")
    from vi_stream.service.config import add_run_options
    add_run_options(r)
    r.set_defaults(func=_run_daemon)

    m = sub.add_parser("simulate", help="a simulated camera publishing synthetic modules as a bsread stream")
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--prefix", default="VI")
    m.add_argument("--fps", type=float, default=2.0)
    m.add_argument("--size", type=int, nargs=2, default=(768, 768), metavar=("H", "W"))
    m.add_argument("--kind", default="grey8", choices=("grey8", "grey16", "rgb"))
    m.add_argument("--count", type=int, help="stop after this many frames")
    m.add_argument("--compression", choices=("none", "bitshuffle_lz4"))
    m.add_argument("--host", default="127.0.0.1")
    m.set_defaults(func=_simulate)

    f = sub.add_parser("fetch-model", help="fetch SFTP_PROJECT_PATH/models/NAME into the model cache (SFTP_* env)")
    f.add_argument("name", help="model file name under <project>/models/")
    f.add_argument("--cache", help="cache folder (default $VI_STREAM_STATE_DIR/models or ~/.cache/vi_stream/models)")
    f.add_argument("--accept-unknown-host-key", action="store_true",
                   help="trust a host key that is not in known_hosts (and remember it for this connection only)")
    f.set_defaults(func=_fetch_model)

    from vi_stream.cli import batch as cli_batch
    from vi_stream.cli import models as cli_models
    cli_models.add_parser(sub)
    cli_batch.add_parser(sub)

    g = sub.add_parser("merge", help="fan-in of several workers' outputs, back in pulse order, as one stream")
    g.add_argument("inputs", nargs="+", metavar="tcp://WORKER:PORT", help="the workers' output streams")
    g.add_argument("--output-port", type=int, required=True, help="port of the merged stream (0 = any free port)")
    g.add_argument("--output-host", default="127.0.0.1")
    g.add_argument("--max-wait", type=float, default=2.0, help="seconds a pulse waits for the ones before it (2)")
    g.add_argument("--rest-port", type=int, help="serve /status and /statistics on this port")
    g.add_argument("--rest-host", default="127.0.0.1")
    g.add_argument("--log-level", default="INFO")
    g.set_defaults(func=_merge)

    d = sub.add_parser("demo", help="simulated camera -> daemon -> consumer, with a summary and pictures")
    d.add_argument("--out", default="demo-output", help="folder for pictures and reports (default demo-output)")
    d.add_argument("--frames", type=int, default=12, help="frames to process (default 12)")
    d.add_argument("--good", type=int, default=30, help="good images to fit the cached model on (default 30)")
    d.add_argument("--device", default="cpu")
    d.add_argument("--offline", action="store_true", help="folder-based demo instead (train/score/evaluate)")
    d.set_defaults(func=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ViStreamError as err:
        if args.debug:
            raise
        print(f"vi_stream: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if args.debug:
            raise
        print(f"vi_stream: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vi_stream: interrupted", file=sys.stderr)
        return 130


def _model_from_sftp(cfg):
    """With SFTP_HOST set and --model naming no local file: fetch it; on failure use the cached copy."""
    import logging
    from dataclasses import replace as _replace

    from vi_stream.service.config import model_cache_dir
    from vi_stream.errors import ViStreamError
    from vi_stream.io.sftp import SftpSettings, fetch_model
    settings = SftpSettings.from_env()  # a misconfiguration fails here, before any fallback
    if settings is None or not cfg.model or os.path.isfile(cfg.model):
        return cfg
    cached = os.path.join(model_cache_dir(), os.path.basename(cfg.model))
    try:
        path = fetch_model(settings, os.path.basename(cfg.model), model_cache_dir())
    except ViStreamError as err:
        if not os.path.isfile(cached):
            raise
        logging.getLogger("vi_stream").warning("model fetch failed (%s); using the cached %s", err, cached)
        path = cached
    return _replace(cfg, model=path)


def _run_daemon(args: argparse.Namespace) -> int:
    import signal
    import threading

    import logging

    from vi_stream.service import config as config_mod
    from vi_stream.service.systemd import Notifier, setup_logging, status_line, supervise, watchdog_interval

    flags = config_mod.flags_from(args)
    cfg = config_mod.build(args.config, **flags)      # a bad setting is refused before torch is imported
    setup_logging(cfg.log_level, prefix=cfg.prefix)
    cfg = _model_from_sftp(cfg)
    from vi_stream.service.daemon import Daemon
    notifier = Notifier()
    stop = threading.Event()

    def on_signal(signum, _frame):
        notifier.notify(STOPPING="1", STATUS=f"stopping on signal {signum}: draining")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    daemon = Daemon(cfg)
    try:
        daemon.start()  # sockets bound, model loaded and warmed up
        logging.getLogger("vi_stream").info(
            "ready: REST http://%s:%d, output tcp://%s:%d, %s", cfg.rest_host, daemon.rest_port, cfg.output_host,
            daemon.config.output_port, daemon.processor.state)
        notifier.notify(READY="1", STATUS=status_line(daemon.processor.statistics()))
        supervise(daemon.processor, notifier, stop, watchdog=watchdog_interval())
    finally:
        daemon.close()  # drains frames already taken from the input
        notifier.close()
    return 0


def _merge(args: argparse.Namespace) -> int:
    import signal
    import threading

    from vi_stream.scale import merge
    from vi_stream.errors import ConfigError
    from vi_stream.service.systemd import setup_logging
    if not all(u.startswith(("tcp://", "ipc://")) for u in args.inputs):
        raise ConfigError(f"the workers' outputs look like tcp://host:port, got {' '.join(args.inputs)}")
    if not args.max_wait > 0:
        raise ConfigError(f"--max-wait must be a positive number of seconds, got {args.max_wait}")
    setup_logging(args.log_level, prefix="merge")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return merge.run(args.inputs, args.output_port, args.output_host, args.max_wait, args.rest_port,
                     args.rest_host, stop)


def _simulate(args: argparse.Namespace) -> int:
    from vi_stream.evaluation.simulate import Simulator
    try:
        sim = Simulator(args.port, args.prefix, args.fps, tuple(args.size), args.kind,
                        compression=None if args.compression in (None, "none") else args.compression,
                        host=args.host)
    except ValueError as err:       # e.g. a size below the synthetic module's least
        raise InputError(str(err)) from err
    port = sim.start()
    print(f"simulated camera {args.prefix}:FPICTURE on tcp://{args.host}:{port} at {args.fps} fps", file=sys.stderr)
    try:
        sim.run(args.count)
    finally:
        sim.close()
    return 0


def _fetch_model(args: argparse.Namespace) -> int:
    from vi_stream.service.config import model_cache_dir
    from vi_stream.io.sftp import fetch_configured
    print(fetch_configured(args.name, args.cache or model_cache_dir(),
                           accept_unknown_host_key=args.accept_unknown_host_key))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from vi_stream.cli import demo
    if args.offline:
        return demo.run_offline_demo(args.out, args.good, 2, args.device)
    return demo.run_stream_demo(args.out, args.frames, args.good, args.device)
