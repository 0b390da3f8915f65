"""``vi_stream batch run | list | show | cancel``: backlogs on a Slurm cluster (:mod:`vi_stream.scale.batch`)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile


def add_parser(sub) -> None:
    b = sub.add_parser("batch", help="score a backlog on a Slurm cluster; results go to the store",
                       description="Score a backlog on a Slurm cluster: `batch run` stages the images and the model "
                                   "on the cluster's shared file system and submits a job array to Slurm (sbatch, "
                                   "here or over --ssh on a submit host), follows it, retries failed tasks and "
                                   "stores every result as the daemon would. `list`, `show` and `cancel` work on "
                                   "the batches recorded in the store.")
    verbs = b.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    def verb(name: str, text: str) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, help=text)
        v.set_defaults(func={"run": _run, "list": _list, "show": _show, "cancel": _cancel}[name])
        v.add_argument("--store", help="mongodb://..., or a local store folder (default: as `run`)")
        return v

    def ssh(v: argparse.ArgumentParser) -> None:
        g = v.add_argument_group("the submit host (omit --ssh when this machine is one)")
        g.add_argument("--ssh", metavar="USER@HOST[:PORT]", help="submit over SSH to this host")
        g.add_argument("--ssh-key", help="private key file (else --ssh-password / VI_STREAM_SSH_PASSWORD)")
        g.add_argument("--ssh-password", default=os.environ.get("VI_STREAM_SSH_PASSWORD"))
        g.add_argument("--known-hosts", help="default ~/.ssh/known_hosts; unknown host keys are refused")
        g.add_argument("--slurm-env", action="append", default=[], metavar="NAME=VALUE",
                       help="environment for Slurm's commands on the submit host (e.g. SLURM_CONF=...)")

    r = verb("run", "stage the inputs and the model, submit a job array, follow it, store the results")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="a folder of images")
    src.add_argument("--modules", nargs="+", help="stored modules to score again (the sides they show)")
    m = r.add_mutually_exclusive_group(required=True)
    m.add_argument("--model", help="a model file")
    m.add_argument("--model-alias", help="the registry version this alias points at")
    r.add_argument("--workdir", required=True, help="a folder on the cluster's shared file system")
    r.add_argument("--tasks", type=int, default=2, help="array tasks (2)")
    r.add_argument("--partition")
    r.add_argument("--time", help="walltime per task, e.g. 00:30:00")
    r.add_argument("--mem", help="memory per task, e.g. 8G")
    r.add_argument("--cpus", type=int, default=1)
    r.add_argument("--gpus", type=int, default=0)
    r.add_argument("--container", default="none", choices=("none", "apptainer", "singularity", "podman"))
    r.add_argument("--image", help="the container image (.sif, or podman's name)")
    # dest is not "command": that is the top-level parser's (the subcommand chosen)
    r.add_argument("--command", dest="remote_command", default="vi_stream", metavar="COMMAND",
                   help="how each array task runs vi_stream on the cluster's nodes (inside --container if given); "
                        "default vi_stream, found on the nodes' PATH as the job inherits it from sbatch. A site "
                        "points it at its install: --command /opt/vi_stream/bin/vi_stream, or e.g. --command "
                        "'conda run -n vi_stream vi_stream'")
    r.add_argument("--retries", type=int, default=2, help="submissions again of a failed task (2)")
    r.add_argument("--timeout", type=float, default=24 * 3600, help="give up after this many seconds")
    ssh(r)
    t = verbs.add_parser("task", help="(run by the job script on the cluster) score one task's images and "
                                      "write their store records")
    t.add_argument("--model", required=True)
    t.add_argument("--images", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--device", default="cpu")
    t.set_defaults(func=_task)
    verb("list", "batches, newest first")
    v = verb("show", "one batch's record")
    v.add_argument("id")
    v = verb("cancel", "scancel a batch's jobs")
    v.add_argument("id")
    ssh(v)


def _shell(args: argparse.Namespace):
    from vi_stream.errors import ConfigError
    from vi_stream.io.slurm import LocalShell, SshShell
    from vi_stream.io.sftp import SftpSettings
    env = {}
    for item in args.slurm_env:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise ConfigError(f"--slurm-env takes NAME=VALUE, got {item!r}")
        env[name] = value
    if not args.ssh:
        return LocalShell(env)
    user, _, hostport = args.ssh.rpartition("@")
    host, _, port = hostport.partition(":")
    try:
        settings = SftpSettings(host, "/", user or None, args.ssh_password, args.ssh_key, int(port or 22),
                                args.known_hosts)
    except ValueError as err:
        raise ConfigError(f"--ssh is USER@HOST[:PORT], got {args.ssh!r}") from err
    return SshShell(settings, env)


def _inputs(args: argparse.Namespace, store, folder: str) -> tuple[list[str], dict]:
    from vi_stream.frame import check_module
    from vi_stream.store import record as rec
    from vi_stream.io import files
    if args.images:
        return files.list_images(args.images), {}
    paths, sides = [], {}
    for i, name in enumerate(dict.fromkeys(args.modules)):      # each once, in the order given
        module = store.get_module(check_module(name))       # a name that is no path: staged in `folder`
        for side in rec.SIDES:
            if module.get(side):
                file = f"{name}__{side}.png" if len(name.encode()) <= 200 else f"module-{i}__{side}.png"
                with open(os.path.join(folder, file), "wb") as f:
                    f.write(store.get_image(module[side]["original"]["full"]["src_id"]))
                paths.append(os.path.join(folder, file))
                sides[file] = (name, side)
    return paths, sides


def _task(args: argparse.Namespace) -> int:
    from vi_stream.scale.batch import score_task
    n = score_task(args.images, args.out, args.model, args.device)
    print(f"{n} images scored -> {args.out}", file=sys.stderr)
    return 0


def _open(args: argparse.Namespace):
    """The store a batch records itself in (imports here: `batch --help` needs no store)."""
    from vi_stream.errors import ConfigError
    from vi_stream.service.config import default_store
    from vi_stream.store.opening import open_store
    store = open_store(args.store or default_store())
    if store is None:
        raise ConfigError("a batch records itself and its results in a store: not --store off")
    return store


def _list(args: argparse.Namespace) -> int:
    with _open(args) as store:
        for b in store.batches.list_batches():
            print(f"{b['id']}  {b['state']}  {len(b['inputs'])} inputs  {b.get('progress', '')}  "
                  f"{b['created_at']} by {b['created_by']}")
    return 0


def _show(args: argparse.Namespace) -> int:
    with _open(args) as store:
        print(json.dumps(store.batches.get_batch(args.id), indent=2))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from vi_stream.io.slurm import Slurm
    with _open(args) as store:
        shell = _shell(args)
        try:
            for j in store.batches.get_batch(args.id)["jobs"]:
                Slurm(shell).cancel(j["job"])
        finally:
            shell.close()
    print(f"cancelled the jobs of {args.id}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from vi_stream.cli.models import _who
    from vi_stream.frame import check_module
    from vi_stream.registry.versions import Registry, ref
    from vi_stream.scale.batch import BatchOptions, BatchRun
    from vi_stream.service.config import state_dir
    for name in args.modules or []:
        check_module(name)         # before the store opens: one line, nothing staged
    with _open(args) as store:
        shell = _shell(args)
        try:
            opts = BatchOptions(args.workdir, args.tasks, args.partition, args.time, args.mem, args.cpus, args.gpus,
                                args.container, args.image, args.remote_command, args.retries).check()
            with tempfile.TemporaryDirectory(prefix="vi-batch-") as tmp:
                model, version = args.model, None
                if args.model_alias:
                    reg = Registry(store)
                    doc = reg.resolve(args.model_alias)
                    model, version = os.path.join(tmp, "model.npz"), ref(doc)
                    with open(model, "wb") as f:
                        f.write(reg.file(doc))
                inputs, sides = _inputs(args, store, tmp)
                batch = BatchRun(store, shell, model, version, inputs, opts, os.path.join(state_dir(), "spool"),
                                 _who(None), sides)
                print(f"batch {batch.doc['id']}: {len(inputs)} inputs in {len(batch.split)} tasks", file=sys.stderr)
                doc = batch.run(args.timeout)
        finally:
            shell.close()
    print(f"batch {doc['id']}: {doc['state']}, {doc.get('stored', 0)} results stored"
          + (f" ({doc['error']})" if doc.get("error") else ""))
    return 0 if doc["state"] == "done" else 1
