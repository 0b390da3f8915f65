"""Command line: ``vi_stream {train,score,evaluate,synth,run,simulate,fetch-model,models,merge,batch,demo} ...``.

Thin: parse, build, hand in, report. Every expected failure is one line on
stderr and a non-zero exit (2 for usage/input/model errors); ``--debug``
shows the traceback.

The top of the package: it may import anything, and nothing imports it. :mod:`.models` and
:mod:`.batch` are the ``models`` and ``batch`` commands, :mod:`.demo` the demo.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from typing import Callable, Sequence

from vi_stream._version import __version__
from vi_stream.errors import InputError, ViStreamError


def _progress_factory(enabled: bool) -> Callable[[int, str], Callable[[int], None]] | None:
    if not enabled:
        return None

    def make(total: int, desc: str):
        from tqdm import tqdm
        bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)
        return bar.update

    return make


CALIBRATION_ADVISED = 8   # held-out good images for a threshold near its false-alarm target
_MODEL_OPTIONS = (  # ModelConfig field, help (its default is appended)
    ("tile", "tile size in px (multiple of 16)"),
    ("overlap", "tile overlap in px (multiple of 8)"),
    ("bank_size", "normal patches kept"),
    ("dim", "feature dimensions after PCA"),
    ("cells", "index cells"),
    ("batch_size", "tiles per backbone call at most (on CPU also about 0.3 MP per call)"),
    ("calibration_every", "every n-th good image is held out to set the threshold"),
    ("false_alarm_one_in", "threshold for one false alarm expected per this many good images"),
    ("seed", "random seed"),
)


def _model_config(args: argparse.Namespace):
    from vi_stream.model import ModelConfig
    over = {k: getattr(args, k) for k, _ in _MODEL_OPTIONS if getattr(args, k, None) is not None}
    return replace(ModelConfig(), **over).validate()


def _add_model_options(p: argparse.ArgumentParser) -> None:
    from vi_stream.model import ModelConfig
    g = p.add_argument_group("model")
    for name, text in _MODEL_OPTIONS:
        g.add_argument("--" + name.replace("_", "-"), dest=name, type=int,
                       help=f"{text} (default {getattr(ModelConfig(), name)})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vi_stream", description="Visual-inspection anomaly detection for ITk modules.")
    p.add_argument("--version", action="version", version=f"vi_stream {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("train", help="fit a model on a folder of good images")
    t.add_argument("--images", required=True, help="folder of good images")
    t.add_argument("--out", required=True, help="model file to write (.npz)")
    t.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1 ...")
    t.add_argument("--no-progress", action="store_true")
    _add_model_options(t)

    s = sub.add_parser("score", help="score a folder of images")
    s.add_argument("--model", required=True)
    s.add_argument("--images", required=True)
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--threshold", type=float, help="override the model's threshold (no refit)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--no-progress", action="store_true")

    e = sub.add_parser("evaluate", help="image/pixel AUROC and F1 against ground-truth masks")
    e.add_argument("--model", required=True)
    e.add_argument("--images", required=True)
    e.add_argument("--masks", required=True, help="folder with <stem>_mask.png (images without one are good)")
    e.add_argument("--out", help="JSON report (default: <images>/../evaluation.json)")
    e.add_argument("--device", default="cpu")
    e.add_argument("--no-progress", action="store_true")

    y = sub.add_parser("synth", help="write a synthetic set of module images (images/ + masks/)")
    y.add_argument("--out", required=True)
    y.add_argument("--good", type=int, default=10)
    y.add_argument("--per-defect", type=int, default=2)
    y.add_argument("--size", type=int, nargs=2, default=(768, 768), metavar=("H", "W"))
    y.add_argument("--kind", default="grey8", choices=("grey8", "grey16", "rgb"))
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--families", default="classic",
                   help="defect families: classic (the first five), all, or a comma list (see vi_stream.evaluation.synthetic)")
    y.add_argument("--line", type=int, help="draw a varied module line with this seed (default: the classic module)")
    y.add_argument("--contrast", type=float, help="defect contrast in (0, 1] (default 1)")

    r = sub.add_parser("run", help="run the daemon: bsread (or camera) in, scored stream out, REST control")
    from vi_stream.service.config import add_run_options
    add_run_options(r)

    m = sub.add_parser("simulate", help="a simulated camera publishing synthetic modules as a bsread stream")
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--prefix", default="VI")
    m.add_argument("--fps", type=float, default=2.0)
    m.add_argument("--size", type=int, nargs=2, default=(768, 768), metavar=("H", "W"))
    m.add_argument("--kind", default="grey8", choices=("grey8", "grey16", "rgb"))
    m.add_argument("--count", type=int, help="stop after this many frames")
    m.add_argument("--compression", choices=("none", "bitshuffle_lz4"))
    m.add_argument("--host", default="127.0.0.1")

    f = sub.add_parser("fetch-model", help="fetch SFTP_PROJECT_PATH/models/NAME into the model cache (SFTP_* env)")
    f.add_argument("name", help="model file name under <project>/models/")
    f.add_argument("--cache", help="cache folder (default $VI_STREAM_STATE_DIR/models or ~/.cache/vi_stream/models)")
    f.add_argument("--accept-unknown-host-key", action="store_true",
                   help="trust a host key that is not in known_hosts (and remember it for this connection only)")

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

    d = sub.add_parser("demo", help="simulated camera -> daemon -> consumer, with a summary and pictures")
    d.add_argument("--out", default="demo-output", help="folder for pictures and reports (default demo-output)")
    d.add_argument("--frames", type=int, default=12, help="frames to process (default 12)")
    d.add_argument("--good", type=int, default=30, help="good images to fit the cached model on (default 30)")
    d.add_argument("--device", default="cpu")
    d.add_argument("--offline", action="store_true", help="folder-based demo instead (train/score/evaluate)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
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
    from vi_stream.service.daemon import Daemon
    from vi_stream.service.systemd import Notifier, setup_logging, status_line, supervise, watchdog_interval

    flags = config_mod.flags_from(args)
    cfg = config_mod.build(args.config, **flags)
    setup_logging(cfg.log_level, prefix=cfg.prefix)
    cfg = _model_from_sftp(cfg)
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


def _run(args: argparse.Namespace) -> int:
    from vi_stream.evaluation import offline
    progress = _progress_factory(not getattr(args, "no_progress", True) and sys.stderr.isatty())
    if args.command == "train":
        model = offline.train(args.images, args.out, _model_config(args), args.device, progress)
        m = model.meta
        print(f"model {model.model_id}: {m['training_images']} training + {m['calibration_images']} calibration images, "
              f"{m['bank_patches']} of {m['training_patches']} patches kept, threshold {model.threshold:.4g}, "
              f"fit in {m['fit_seconds']:.1f} s -> {args.out}")
        rule = m["threshold_rule"]
        print(f"threshold set for one false alarm per {rule['false_alarm_one_in']} good images, "
              f"from {rule['calibration_images']} held-out good images")
        if rule["calibration_images"] < CALIBRATION_ADVISED:
            every = model.config.calibration_every
            print(f"note: {rule['calibration_images']} held-out images give a rough threshold (set high to keep the "
                  f"target); {CALIBRATION_ADVISED * every} good images give {CALIBRATION_ADVISED} and a lower one",
                  file=sys.stderr)
        return 0
    if args.command == "score":
        results = offline.score(args.model, args.images, args.out, args.threshold, args.device, progress)
        n_bad = sum(r.is_anomalous for r in results)
        print(f"{len(results)} images scored, {n_bad} anomalous -> {os.path.join(args.out, 'scores.csv')}")
        return 0
    if args.command == "evaluate":
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.images)), "evaluation.json")
        report = offline.evaluate(args.model, args.images, args.masks, out, args.device, progress)
        print(json.dumps(report, indent=2))
        print(f"-> {out}", file=sys.stderr)
        return 0
    if args.command == "synth":
        from vi_stream.evaluation import synthetic
        fams = {"classic": synthetic.DEFECT_TYPES, "all": synthetic.FAMILIES}.get(
            args.families, tuple(f.strip() for f in args.families.split(",") if f.strip()))
        try:
            img_dir, mask_dir = offline.write_synthetic(args.out, args.good, args.per_defect, tuple(args.size),
                                                        args.kind, args.seed, fams, args.line, args.contrast)
        except ValueError as err:
            raise InputError(str(err)) from err
        print(f"images -> {img_dir}, masks -> {mask_dir}")
        return 0
    if args.command == "run":
        return _run_daemon(args)
    if args.command == "simulate":
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
    if args.command == "fetch-model":
        from vi_stream.service.config import model_cache_dir
        from vi_stream.io.sftp import fetch_configured
        print(fetch_configured(args.name, args.cache or model_cache_dir(),
                               accept_unknown_host_key=args.accept_unknown_host_key))
        return 0
    if args.command == "merge":
        return _merge(args)
    if args.command == "batch":
        from vi_stream.cli import batch as cli_batch
        return cli_batch.run(args)
    if args.command == "models":
        from vi_stream.cli import models as cli_models
        return cli_models.run(args)
    if args.command == "demo":
        from vi_stream.cli import demo
        if args.offline:
            return demo.run_offline_demo(args.out, args.good, 2, args.device)
        return demo.run_stream_demo(args.out, args.frames, args.good, args.device)
    raise AssertionError(args.command)  # pragma: no cover - argparse guarantees a command

