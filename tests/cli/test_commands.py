"""Every ``vi_stream`` command as a user runs it: the installed console script in a subprocess, doing
something real and cheap (issue 25, 11), and every option of every command reachable.

``COVERED`` maps each command path of the parser to its test here; a command added without a test
fails ``test_every_command_has_a_test_that_runs_it``. Batches run on the session's single-node Slurm
(tests/helpers/cluster.py), submitted from this machine as a site's submit host would.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess

import numpy as np
import pytest
import requests
import zmq

from vi_stream.cli import build_parser
from vi_stream.evaluation import synthetic
from vi_stream.io import bsread_codec as codec
from vi_stream.io.files import write_image
from vi_stream.model import ModelConfig, read_meta
from vi_stream.store import spool
from vi_stream.store.local import LocalStore

from ..helpers import SMALL_SHAPE
from ..helpers import cluster as cluster_helpers
from ..helpers.cli import VI, ok, vi
from ..helpers.cluster import free_port
from ..helpers.daemon import wait_for


# ---------------------------------------------------------------------------------------------- the parser
def _parsers(parser: argparse.ArgumentParser, path=(), chain=()):
    """(command path, the parsers from the top down to it) for every parser of the tree."""
    chain = chain + (parser,)
    yield path, chain
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, path + (name,), chain)


def _stores(action: argparse.Action) -> bool:
    """Does the action put an attribute in the namespace (not --help / --version)?"""
    return action.dest is not argparse.SUPPRESS and action.default is not argparse.SUPPRESS


def _leaves():
    return [(path, chain) for path, chain in _parsers(build_parser())
            if not any(isinstance(a, argparse._SubParsersAction) for a in chain[-1]._actions)]


def test_no_option_shadows_what_a_parent_parser_stores():
    """``batch run --command`` once overwrote the top-level ``command`` (the chosen subcommand): every
    ``vi_stream batch run`` crashed. No option may share a dest with what a parser above it stores."""
    for path, chain in _parsers(build_parser()):
        inherited = {a.dest: "/".join(path[:i]) or "vi_stream" for i, p in enumerate(chain[:-1])
                     for a in p._actions if _stores(a)}
        own = [a.dest for a in chain[-1]._actions if _stores(a)]
        assert not set(own) & set(inherited), (path, {d: inherited[d] for d in set(own) & set(inherited)})
        assert len(own) == len(set(own)), (path, own)        # two options of one command, one attribute


def _sample(a: argparse.Action) -> tuple[list[str], object]:
    """Arguments giving action ``a`` a value other than its default, and the value expected."""
    if isinstance(a, (argparse._StoreTrueAction, argparse._StoreConstAction)):
        return [], a.const
    if a.choices:
        v = [c for c in a.choices if c != a.default][0]
        return [str(v)], v
    conv = a.type or str
    n = a.nargs if isinstance(a.nargs, int) else 1
    for raw in ("3", "4", "2.5", "sample-value", "sample-2"):
        try:
            value = conv(raw)
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            continue
        if value != a.default:
            break
    many = a.nargs in ("+", "*") or isinstance(a.nargs, int) or isinstance(a, argparse._AppendAction)
    return [raw] * n, ([value] * n if many else value)


def _fill(parser: argparse.ArgumentParser, tested: argparse.Action) -> list[str]:
    """The least a parser needs to parse (its required options and positionals, one option per required
    mutually exclusive group) with ``tested`` given its sample value, in its place."""
    argv, satisfied = [], set()
    mine = tested in parser._actions
    positionals = [a for a in parser._actions if not a.option_strings and _stores(a)
                   and not isinstance(a, argparse._SubParsersAction)]
    before = positionals[:positionals.index(tested) + 1] if tested in positionals else []
    for g in parser._mutually_exclusive_groups:
        if tested in g._group_actions:
            satisfied.add(g)
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction) or not _stores(a):
            continue
        if a is tested:
            argv += ([a.option_strings[-1]] if a.option_strings else []) + _sample(a)[0]
            continue
        group = next((g for g in parser._mutually_exclusive_groups if a in g._group_actions), None)
        needed = a.required or (group is not None and group.required and group not in satisfied)
        if a.option_strings and needed:
            argv += [a.option_strings[-1]] + _sample(a)[0]
            satisfied.add(group)
        elif not a.option_strings and (a.nargs not in ("?", "*") or (mine and a in before)):
            argv += _sample(a)[0]
    return argv


@pytest.mark.parametrize("path,chain", _leaves(), ids=lambda v: "-".join(v) if isinstance(v[0], str) else "")
def test_every_option_of_every_command_parses_to_its_own_attribute(path, chain):
    """Each option and positional of each command, given a value, lands in its own attribute, and the
    command and verb chosen stay what was typed."""
    parser = build_parser()
    for p in chain:
        for a in p._actions:
            if not _stores(a) or isinstance(a, argparse._SubParsersAction):
                continue
            argv = []
            for i, q in enumerate(chain):
                argv += _fill(q, a) + ([path[i]] if i < len(path) else [])
            ns = parser.parse_args(argv)
            assert getattr(ns, a.dest) == _sample(a)[1], (path, a.dest, argv)
            assert ns.command == path[0] and getattr(ns, "verb", path[-1]) == path[-1], (path, a.dest, vars(ns))


def test_batch_help_says_it_submits_to_slurm_and_how_a_site_names_its_install():
    p = ok(vi("batch", "--help"))
    assert "Slurm" in p.stdout and "submit" in p.stdout, p.stdout
    p = ok(vi("batch", "run", "--help"))
    text = " ".join(p.stdout.split())
    assert "--command" in text and "default vi_stream" in text and "/opt/" in text, text


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """A few small images (a good one, a scratched one) and their masks."""
    root = tmp_path_factory.mktemp("commands")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for name, seed, defects in (("good_a", 8101, ()), ("scratch_a", 8102, ("scratch",)), ("good_b", 8103, ())):
        s = synthetic.module_image(SMALL_SHAPE, seed=seed, defects=defects)
        write_image(str(root / "images" / f"{name}.png"), s.image)
        if s.mask.any():
            write_image(str(root / "masks" / f"{name}_mask.png"), s.mask * 255)
    return root


@pytest.fixture(scope="module")
def registry(tmp_path_factory, model_path):
    """A local store with pads@1.0 and pads@1.1 registered through the command line, 1.0 in production."""
    store = str(tmp_path_factory.mktemp("registry") / "store")
    ok(vi("models", "register", model_path, "--name", "pads", "--by", "alice", "--store", store))
    ok(vi("models", "register", model_path, "--name", "pads", "--version", "1.1", "--store", store))
    ok(vi("models", "promote", "pads", "1.0", "--reason", "first", "--store", store))
    return store


# ---------------------------------------------------------------------------------------------- offline
def test_synth(tmp_path):
    ok(vi("synth", "--out", tmp_path, "--good", 2, "--per-defect", 1, "--size", 128, 128))
    assert len(os.listdir(tmp_path / "images")) >= 2 + 5 and os.listdir(tmp_path / "masks")


def test_train(tmp_path):
    """Every good image sets the threshold, scored against the bank less its fold: 5 images, 5 scores (and
    the note that 8 would give a lower threshold); fewer images than folds are refused in one line."""
    for i in range(5):
        write_image(str(tmp_path / "good" / f"g{i}.png"), synthetic.module_image((192, 192), seed=i).image)
    out = tmp_path / "m.npz"
    small = ["--tile", 128, "--overlap", 32, "--bank-size", 2000, "--cells", 16]
    p = ok(vi("train", "--images", tmp_path / "good", "--out", out, *small))
    assert out.exists() and "model " in p.stdout and ": 5 good images, " in p.stdout, p.stdout
    assert "from the scores of 5 good images against the bank less their fold (5 folds)" in p.stdout, p.stdout
    assert "note: 5 scores give a rough threshold" in p.stderr and "8 good images give 8 scores" in p.stderr
    meta = read_meta(str(out))
    assert meta["training_images"] == meta["calibration_images"] == 5 and len(meta["calibration_scores"]) == 5
    assert "calibration_folds" not in meta["config"] and meta["threshold_rule"]["folds"] == 5
    assert "at most one false alarm per 20 good images with 90% confidence" in p.stdout, p.stdout
    assert "false_alarm_confidence" not in meta["config"] and meta["threshold_rule"]["confidence"] == 0.9
    p = ok(vi("train", "--images", tmp_path / "good", "--out", tmp_path / "m0.npz", *small,
              "--false-alarm-confidence", 0))
    assert "one false alarm per 20 good images on average" in p.stdout, p.stdout
    assert read_meta(str(tmp_path / "m0.npz"))["threshold"] < meta["threshold"]
    p = vi("train", "--images", tmp_path / "good", "--out", tmp_path / "mc.npz", *small, "--false-alarm-confidence", 1)
    assert p.returncode != 0 and p.stderr.strip().splitlines()[-1] == (
        "vi_stream: error: false_alarm_confidence must be 0 (the target on average) or a number from 0.5 to 0.99, "
        "got 1.0"), p.stderr
    p = vi("train", "--images", tmp_path / "good", "--out", tmp_path / "m6.npz", *small, "--calibration-folds", 6)
    assert p.returncode != 0 and p.stderr.strip().splitlines()[-1] == (
        "vi_stream: error: need at least 6 good images to fit (one per fold at least: each is scored against the "
        "other folds' patches to set the threshold), got 5"), p.stderr
    p = vi("train", "--images", tmp_path / "good", "--out", tmp_path / "m1.npz", *small, "--calibration-folds", 1)
    assert p.returncode != 0 and "calibration_folds must be 0 (held-out images) or an integer from 2 to 20, got 1" \
        in p.stderr, p.stderr


def test_score(tmp_path, sets, model_path):
    p = ok(vi("score", "--model", model_path, "--images", sets / "images", "--out", tmp_path))
    assert "3 images scored" in p.stdout and (tmp_path / "scores.csv").exists()


def test_evaluate(tmp_path, sets, model_path):
    p = ok(vi("evaluate", "--model", model_path, "--images", sets / "images", "--masks", sets / "masks",
              "--out", tmp_path / "e.json"))
    report = json.loads((tmp_path / "e.json").read_text())
    assert json.loads(p.stdout) == report and "image_auroc" in json.dumps(report)


def test_demo(tmp_path, model_path):
    """The stream demo end to end: a simulated camera, a daemon and a consumer. A cached model fitted
    with other settings (a default changed since) is refitted with today's defaults; a second run
    finds that model in its --out and uses it as it is (the first run's fit is its only one)."""
    first = tmp_path / "first"
    first.mkdir()
    (first / "model.npz").write_bytes(open(model_path, "rb").read())      # the tests' smaller bank
    assert read_meta(model_path)["config"]["bank_size"] != ModelConfig().bank_size
    p = ok(vi("demo", "--out", first, "--frames", 2, "--good", 5, timeout=600))
    assert "fitted with other settings than today's defaults" in p.stderr and "fitting" in p.stderr, p.stderr
    assert read_meta(str(first / "model.npz"))["config"]["bank_size"] == ModelConfig().bank_size
    second = tmp_path / "second"
    second.mkdir()
    (second / "model.npz").write_bytes((first / "model.npz").read_bytes())
    p = ok(vi("demo", "--out", second, "--frames", 2, "--good", 5, timeout=600))
    assert "fitting" not in p.stderr and len(os.listdir(second)) > 1 and p.stdout.strip(), (p.stdout, p.stderr)
    assert "frames 2/2 processed" in p.stdout, p.stdout


# ---------------------------------------------------------------------------------------------- streams
def _pull(ctx, port: int) -> zmq.Socket:
    s = ctx.socket(zmq.PULL)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 60000)
    s.connect(f"tcp://127.0.0.1:{port}")
    return s


def test_simulate():
    p = vi("simulate", "--port", free_port(), "--count", 1, "--size", 64, 64)      # a traceback once
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "vi_stream: error: synthetic modules are at least 128x128, got 64x64"], p.stderr
    port, ctx = free_port(), zmq.Context()
    proc = subprocess.Popen([VI, "simulate", "--port", str(port), "--count", "3", "--fps", "20", "--size", "128",
                             "128", "--prefix", "CAM"], stderr=subprocess.PIPE, text=True)
    try:
        s = _pull(ctx, port)
        msgs = [codec.Decoder().decode(s.recv_multipart()) for _ in range(3)]
        assert [m.pulse_id for m in msgs] == sorted(m.pulse_id for m in msgs)
        assert all(codec.value(m.channels["CAM:FPICTURE"]).shape == (128, 128) for m in msgs)
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        cluster_helpers.stop(proc)
        ctx.destroy(linger=0)


def test_run(tmp_path, model_path):
    """The daemon scores a simulated camera: /statistics counts the frames, SIGTERM ends it cleanly."""
    cam, rest = free_port(), free_port()
    sim = subprocess.Popen([VI, "simulate", "--port", str(cam), "--fps", "5", "--size", *map(str, SMALL_SHAPE),
                            "--prefix", "CAM"], stderr=subprocess.DEVNULL)
    run = subprocess.Popen([VI, "run", f"tcp://127.0.0.1:{cam}", "CAM", "--model", model_path, "--rest-port",
                            str(rest), "--output-port", "0", "--store", str(tmp_path / "store"), "--auto-start"],
                           stderr=subprocess.PIPE, text=True)
    try:
        def processed():
            try:
                r = requests.get(f"http://127.0.0.1:{rest}/statistics", timeout=5).json()
            except (requests.RequestException, ValueError):
                return 0
            return int(json.dumps(r).split('"frames_processed": ')[1].split(",")[0].split("}")[0])
        wait_for(lambda: run.poll() is not None or processed() >= 2, timeout=180, interval=0.5)
        assert run.poll() is None and processed() >= 2
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == 0, run.stderr.read()
    finally:
        cluster_helpers.stop(run)
        cluster_helpers.stop(sim)


def _msg(pulse: int) -> list[bytes]:
    m = codec.Message(pulse, 1_700_000_000 + pulse, 0)
    m.channels["CAM:FPICTURE"] = codec.channel_from_value("CAM:FPICTURE", np.full((4, 4), pulse, np.uint8))
    return codec.Encoder().encode(m)


def test_run_with_named_operators(tmp_path, model_path):
    """``vi_stream run --operators FILE``: a bad file is refused before start in one line naming its line; a
    good one lets alice log in with her own token, and the page's session names her."""
    import requests

    from ..helpers.modelfiles import (
        run_args,
        start_run,
        stop_process,
        until_ready_or_exit,
    )
    bad = tmp_path / "bad-operators"
    bad.write_text("alice:short\n")
    p = vi(*run_args(model_path, "off", "--operators", str(bad)))
    assert p.returncode == 2 and "line 1" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    good = tmp_path / "operators"
    good.write_text("alice:alice-token-0123456789\n")
    env = dict(os.environ, VI_STREAM_STATE_DIR=str(tmp_path / "state"))
    proc = start_run(run_args(model_path, str(tmp_path / "store"), "--operators", str(good)), env=env)
    try:
        port, lines = until_ready_or_exit(proc)
        assert port, "\n".join(lines[-10:])
        base = f"http://127.0.0.1:{port}"
        assert requests.post(base + "/start", timeout=10).status_code == 401          # a login is needed now
        s = requests.Session()
        r = s.post(base + "/api/login", json={"token": "alice-token-0123456789"}, timeout=10)
        assert r.ok and r.json()["operator"] == "alice"
        assert s.get(base + "/api/session", timeout=10).json()["operator"] == "alice"
    finally:
        stop_process(proc)


def test_merge():
    """Two workers' outputs in, one stream back in pulse order; /statistics over REST."""
    ctx = zmq.Context()
    workers, urls = [], []
    for _ in range(2):
        s = ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.LINGER, 0)
        urls.append(f"tcp://127.0.0.1:{s.bind_to_random_port('tcp://127.0.0.1')}")
        workers.append(s)
    out, rest = free_port(), free_port()
    proc = subprocess.Popen([VI, "merge", *urls, "--output-port", str(out), "--rest-port", str(rest),
                             "--max-wait", "5"], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: proc.poll() is not None or _up(f"http://127.0.0.1:{rest}/status"), timeout=60)
        pull = _pull(ctx, out)
        for pulse, w in ((2, 1), (1, 0), (4, 1), (3, 0)):
            workers[w].send_multipart(_msg(pulse))
        assert [codec.main_header(pull.recv_multipart())[1] for _ in range(4)] == [1, 2, 3, 4]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read()
    finally:
        cluster_helpers.stop(proc)
        ctx.destroy(linger=0)


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def sftp_host(tmp_path_factory, model_path):
    if not os.access(cluster_helpers.SSHD, os.X_OK):
        pytest.skip("openssh-server not installed")
    d = tmp_path_factory.mktemp("sftp")
    (d / "project" / "models").mkdir(parents=True)
    (d / "project" / "models" / "good.npz").write_bytes(open(model_path, "rb").read())
    proc, settings = cluster_helpers.sshd(d, "")
    yield settings, d
    cluster_helpers.stop(proc)


def test_fetch_model(tmp_path, sftp_host):
    settings, d = sftp_host
    env = dict(os.environ, SFTP_HOST="127.0.0.1", SFTP_PORT=str(settings.port), SFTP_USER=settings.user,
               SFTP_KEY=settings.key_file, SFTP_PROJECT_PATH=str(d / "project"), SFTP_KNOWN_HOSTS=settings.known_hosts)
    p = ok(vi("fetch-model", "good.npz", "--cache", tmp_path, env=env))
    assert p.stdout.strip() == str(tmp_path / "good.npz") and (tmp_path / "good.npz").exists()


# ---------------------------------------------------------------------------------------------- models
def test_models_register(tmp_path, model_path):
    p = ok(vi("models", "register", model_path, "--name", "pads", "--store", tmp_path / "s"))
    assert "pads@1.0" in p.stdout


def test_models_list(registry):
    listed = json.loads(ok(vi("models", "list", "--json", "--store", registry)).stdout)
    assert {(d["name"], d["version"]) for d in listed} >= {("pads", "1.0"), ("pads", "1.1")}


def test_models_show(registry):
    p = ok(vi("models", "show", "pads", "1.0", "--json", "--store", registry))
    assert json.loads(p.stdout)["version"] == "1.0"


def test_models_promote_and_rollback(registry):
    ok(vi("models", "promote", "pads", "1.0", "--alias", "staging", "--reason", "first", "--store", registry))
    ok(vi("models", "promote", "pads", "1.1", "--alias", "staging", "--reason", "try", "--store", registry))
    p = ok(vi("models", "rollback", "--alias", "staging", "--store", registry))
    assert "staging: pads@1.1 -> pads@1.0" in p.stdout, p.stdout


def test_models_aliases(registry):
    p = ok(vi("models", "aliases", "--store", registry))
    assert "production" in p.stdout and "pads@1.0" in p.stdout


def test_models_gate(registry):
    """A store without reviewed tiles has no gate to freeze or show: each says so in one line (the
    freeze with reviews is tests/registry/test_retrain.py's loop, through REST)."""
    p = vi("models", "gate", "freeze", "--store", registry)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "vi_stream: error: a gate needs verified defect tiles and verified good tiles; the store has 0 and 0: "
        "review more tiles first"], p.stderr
    p = vi("models", "gate", "show", "--store", registry)
    assert p.returncode == 2 and "no gate set yet" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_models_retrain(registry, good_images, tmp_path):
    """A candidate fitted on the production model's own training set, registered and aliased."""
    for i, img in enumerate(good_images):
        write_image(str(tmp_path / f"good_{i:03d}.png"), img)
    p = ok(vi("models", "retrain", "--images", tmp_path, "--store", registry, timeout=600))
    assert "retrained: pads@1.2" in p.stdout and "-> alias candidate" in p.stdout, p.stdout
    assert "candidate -> pads@1.2" in ok(vi("models", "aliases", "--store", registry)).stdout


# ---------------------------------------------------------------------------------------------- batch
def _slurm_env(cluster) -> dict:
    return dict(os.environ, **cluster[1])


def test_batch_run_list_and_show(cluster, tmp_path, model_path, sets):
    """``vi_stream batch run`` submits a real array to Slurm from this machine (a submit host), follows it
    and stores every image; ``batch list`` and ``batch show`` read the batch's record back."""
    env, store = _slurm_env(cluster), str(tmp_path / "store")
    p = ok(vi("batch", "run", "--images", sets / "images", "--model", model_path, "--workdir", tmp_path / "w",
              "--store", store, "--tasks", 2, "--command", VI, "--timeout", 300, env=env))
    assert "done, 3 results stored" in p.stdout, p.stdout
    listed = ok(vi("batch", "list", "--store", store)).stdout.splitlines()
    assert len(listed) == 1 and " done " in listed[0] and "3 inputs" in listed[0], listed
    doc = json.loads(ok(vi("batch", "show", listed[0].split()[0], "--store", store)).stdout)
    assert doc["state"] == "done" and doc["stored"] == 3 and len(doc["jobs"]) == 1
    with LocalStore(store).start() as s:
        assert s.count_results() == 3
        assert sorted(m["name"] for m in s.list_modules()) == ["good_a", "good_b", "scratch_a"]


def test_batch_task(tmp_path, model_path, sets):
    """What each array task runs on the cluster: score the task's folder, write a record per image."""
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "good_a.png").write_bytes((sets / "images" / "good_a.png").read_bytes())
    (folder / "task.json").write_text(json.dumps({
        "batch": "b1", "prefix": "BATCH", "sec": 1_700_000_000, "model_version": None, "store_tile": 512,
        "images": {"good_a.png": {"pulse_id": 0, "module": "good_a", "side": "left"}}}))
    ok(vi("batch", "task", "--model", model_path, "--images", folder, "--out", tmp_path / "out"))
    recs = [n for n in os.listdir(tmp_path / "out") if n != "DONE"]
    assert len(recs) == 1 and (tmp_path / "out" / "DONE").read_text() == "1"
    record = spool.decode((tmp_path / "out" / recs[0]).read_bytes())
    assert record.module == "good_a" and record.side_name == "left"


def test_batch_cancel(cluster, tmp_path, model_path, sets):
    env, store = _slurm_env(cluster), str(tmp_path / "store")
    run = subprocess.Popen([VI, "batch", "run", "--images", str(sets / "images"), "--model", model_path, "--workdir",
                            str(tmp_path / "w"), "--store", store, "--tasks", "1", "--command", "sleep 120; true"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def running():
            lines = vi("batch", "list", "--store", store).stdout.splitlines()
            return lines and " running " in lines[0] and lines[0].split()[0]
        batch = None
        wait_for(lambda: run.poll() is not None or running(), timeout=120, interval=0.5)
        batch = running()
        assert batch, run.communicate()
        ok(vi("batch", "cancel", batch, "--store", store, env=env))
        out, err = run.communicate(timeout=120)
        assert run.returncode == 1 and "cancelled" in out, (out, err)
    finally:
        cluster_helpers.stop(run)


COVERED = {
    ("train",): test_train, ("score",): test_score, ("evaluate",): test_evaluate, ("synth",): test_synth,
    ("run",): test_run, ("simulate",): test_simulate, ("fetch-model",): test_fetch_model, ("merge",): test_merge,
    ("demo",): test_demo, ("models", "list"): test_models_list, ("models", "show"): test_models_show,
    ("models", "register"): test_models_register, ("models", "promote"): test_models_promote_and_rollback,
    ("models", "rollback"): test_models_promote_and_rollback, ("models", "aliases"): test_models_aliases,
    ("models", "retrain"): test_models_retrain, ("models", "gate"): test_models_gate,
    ("batch", "run"): test_batch_run_list_and_show, ("batch", "list"): test_batch_run_list_and_show,
    ("batch", "show"): test_batch_run_list_and_show, ("batch", "task"): test_batch_task,
    ("batch", "cancel"): test_batch_cancel,
}


def test_every_command_has_a_test_that_runs_it():
    assert sorted(path for path, _ in _leaves()) == sorted(COVERED)
