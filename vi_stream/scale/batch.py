"""``vi_stream batch``: score a backlog on a Slurm cluster and store the results as the daemon does.

1. The inputs (a folder of images, or the sides of stored modules to re-score, e.g. with a
   new model version) are split into ``tasks`` folders and staged with the model and a job
   script under ``workdir/<batch id>/`` on the submit host (SFTP, or local files).
2. ``sbatch --parsable --array=0-N`` runs ``vi_stream batch task`` per task (inside an
   optional container: apptainer, singularity, podman, or none) with partition, time,
   memory, CPUs and GPUs from the options. A task scores its images and renders each
   result's store record (the side document and its PNGs, as the daemon would) on the
   cluster, so the station only stores what comes back.
3. Tasks are followed (:class:`~vi_stream.io.slurm.Slurm`: sacct, else squeue/scontrol).
   A task that failed, ran out of time or lost its node is submitted again, up to
   ``retries`` times; a cancelled batch stops. A task counts as done only when its
   outputs are complete (every input scored).
4. Each finished task's records are fetched (checksummed: a record cut short is refused and
   the task runs again) and go through a :class:`~vi_stream.store.writer.StoreWriter` with the
   batch's own spool: nothing is lost when
   the store is down, and the results' ids are deterministic, so a batch ingested twice
   (a retry, a restart) stores nothing twice.

The batch is a record in the store (inputs, state, progress per task, job ids, start and
end, the tail of each task's log), listed by ``GET /api/batches`` and the client.

Longer than 300 lines: a batch's life (stage, submit, follow, retry, ingest, record) is one state
machine over one record; its command line is apart (vi_stream.cli.batch), as are Slurm's
commands (vi_stream.io.slurm).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import shlex
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

from vi_stream.store import record as rec
from vi_stream.errors import ConfigError, InputError, StateError
from vi_stream.frame import Frame, check_module
from vi_stream.io import files
from vi_stream.store import spool
from vi_stream.io.files import write_durably
from vi_stream.io.slurm import CANCELLED, RETRYABLE, TERMINAL_OK, Shell, Slurm
from vi_stream.store.protocols import BatchRecords
from vi_stream.store.spool import Spool
from vi_stream.store.writer import StoreWriter

log = logging.getLogger("vi_stream.batch")

TASK_INDEX = "task.json"     # in each task's input folder: the batch, and each image's pulse id, module, side

CONTAINERS = {"none": "", "apptainer": "apptainer exec {gpu}{image} ", "singularity": "singularity exec {gpu}{image} ",
              "podman": "podman run --rm -v \"$PWD:$PWD\" -w \"$PWD\" {image} "}


@dataclass(frozen=True)
class BatchOptions:
    workdir: str                              # on the submit host; the batch gets workdir/<id>
    tasks: int = 2                            # array tasks (inputs are split among them)
    partition: str | None = None
    time: str | None = None                   # --time, e.g. 00:30:00
    mem: str | None = None                    # --mem, e.g. 4G
    cpus: int = 1
    gpus: int = 0
    container: str = "none"                   # apptainer, singularity, podman or none
    image: str | None = None                  # the container image
    command: str = "vi_stream"                # vi_stream on the cluster (inside the container)
    retries: int = 2
    poll_s: float = 2.0
    prefix: str = "BATCH"
    store_tile: int = 512                     # review tile size of the stored results, as the daemon's
    extra_env: dict = field(default_factory=dict)

    def check(self) -> "BatchOptions":
        if self.container not in CONTAINERS:
            raise ConfigError(f"container must be one of {', '.join(CONTAINERS)}, got {self.container!r}")
        if self.container != "none" and not self.image:
            raise ConfigError(f"--container {self.container} needs --image")
        if not 1 <= self.tasks <= 10000 or self.retries < 0 or self.cpus < 1 or self.gpus < 0 or self.poll_s <= 0:
            raise ConfigError("tasks must be 1-10000, retries >= 0, cpus >= 1, gpus >= 0, poll > 0")
        return self

    def sbatch_options(self) -> list[str]:
        # --no-requeue: a task whose node fails ends NODE_FAIL and is submitted again here, counted and
        # bounded by --retries, instead of waiting for Slurm's requeue delay
        o = [f"--cpus-per-task={self.cpus}", "--output=logs/task_%a.job_%A.out", "--job-name=vi_stream-batch",
             "--no-requeue"]
        o += [f"--partition={self.partition}"] if self.partition else []
        o += [f"--time={self.time}"] if self.time else []
        o += [f"--mem={self.mem}"] if self.mem else []
        o += [f"--gpus-per-task={self.gpus}"] if self.gpus else []
        return o

    def script(self, root: str) -> str:
        gpu = "--nv " if self.gpus and self.container in ("apptainer", "singularity") else ""
        wrap = CONTAINERS[self.container].format(gpu=gpu, image=shlex.quote(self.image or ""))
        device = "cuda" if self.gpus else "cpu"
        return ("#!/bin/bash\nset -euo pipefail\n"
                f"cd {shlex.quote(root)}\nT=$SLURM_ARRAY_TASK_ID\nrm -rf outputs/task_$T\n"
                "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1} NUMBA_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}\n"
                f"{wrap}{self.command} batch task --model model.npz --images inputs/task_$T "
                f"--out outputs/task_$T --device {device}\n")


def _split(paths: list[str], tasks: int) -> list[list[str]]:
    n = min(tasks, len(paths))
    return [paths[i::n] for i in range(n)]


def new_batch(records: BatchRecords, inputs: list[str], model_version: str | None, opts: BatchOptions,
              by: str) -> dict:
    digest = hashlib.sha256("\n".join(sorted(inputs)).encode() + (model_version or "").encode()).hexdigest()
    doc = {"id": f"batch-{rec.now_iso()[:19].replace(':', '')}-{digest[:8]}", "state": "staging",
           "created_at": rec.now_iso(), "created_by": by or "unknown", "inputs": [os.path.basename(p) for p in inputs],
           "model_version": model_version, "options": {k: v for k, v in asdict(opts).items() if k != "extra_env"},
           "jobs": [], "tasks": {}, "stored": 0, "log_tail": {}}
    records.put_batch(doc)
    return doc


class BatchRun:
    """One batch from staging to ingestion (``run()``), recording its progress in the store."""

    def __init__(self, store, shell: Shell, model_path: str, model_version: str | None, inputs: list[str],
                 opts: BatchOptions, spool_dir: str, by: str = "",
                 sides: dict[str, tuple[str, str]] | None = None):
        if not inputs:
            raise ConfigError("nothing to score: no input images")
        self.store, self.shell, self.opts = store, shell, opts.check()
        self.model_path, self.model_version, self.inputs = model_path, model_version, sorted(inputs)
        self.sides = sides or {}           # input file name -> (module, side) when re-scoring stored modules
        if len(set(map(os.path.basename, self.inputs))) != len(self.inputs):
            raise InputError("two inputs have the same file name: one task folder could not hold both")
        self.where = {p: self._module_side(p) for p in self.inputs}    # checked before anything is staged
        self.slurm = Slurm(shell)
        self.doc = new_batch(store.batches, self.inputs, model_version, opts, by)
        self.root = posixpath.join(opts.workdir, self.doc["id"])
        self.spool_dir = os.path.join(spool_dir, self.doc["id"])
        self.split = _split(self.inputs, opts.tasks)
        self.attempts = {t: 0 for t in range(len(self.split))}
        self.ingested: set[int] = set()
        self.fetched: dict[int, set[str]] = {}      # task -> records stored so far
        self.stored = 0         # results the store has taken (kept on every end: done, failed, cancelled)

    def _module_side(self, path: str) -> tuple[str, str]:
        """(module, side) of an input: as given when re-scoring, else its file name's stem, left."""
        name = os.path.basename(path)
        if len(record_name(name).encode()) > NAME_MAX:
            raise InputError(f"input {name[:80]!r}...: its record {name[:20]}...rec would be a file name over "
                             f"{NAME_MAX} bytes, more than a node's file system takes; rename it")
        module, side = self.sides.get(name, (os.path.splitext(name)[0], "left"))
        try:
            return check_module(module), side
        except InputError as err:
            raise InputError(f"input {name!r}: {err}") from err

    def _update(self, **fields) -> None:
        self.doc.update(fields)
        self.store.batches.update_batch(self.doc["id"], fields)

    # ------------------------------------------------------------------ staging and submitting
    def stage(self) -> None:
        sh = self.shell
        for d in ("", "logs", "outputs"):
            sh.makedirs(posixpath.join(self.root, d))
        sh.put(self.model_path, posixpath.join(self.root, "model.npz"))
        created = int(datetime.fromisoformat(self.doc["created_at"]).timestamp())
        position = {p: i for i, p in enumerate(self.inputs)}      # the pulse id of each input
        for t, paths in enumerate(self.split):
            folder = posixpath.join(self.root, "inputs", f"task_{t}")
            sh.makedirs(folder)
            index = {}
            for p in paths:
                name = os.path.basename(p)
                sh.put(p, posixpath.join(folder, name))
                module, side = self.where[p]
                index[name] = {"pulse_id": position[p], "module": module, "side": side}
            self._put_text(posixpath.join(folder, TASK_INDEX), json.dumps({
                "batch": self.doc["id"], "prefix": self.opts.prefix, "sec": created, "model_version": self.model_version,
                "store_tile": self.opts.store_tile, "images": index}))
        self._put_text(posixpath.join(self.root, "run.sh"), self.opts.script(self.root))

    def _put_text(self, remote: str, text: str) -> None:
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            f.write(text)
        try:
            self.shell.put(f.name, remote)
        finally:
            os.unlink(f.name)

    def submit(self, tasks: list[int]) -> str:
        job = self.slurm.submit("run.sh", tasks, self.opts.sbatch_options(), self.root)
        for t in tasks:
            self.attempts[t] += 1
        self._update(jobs=self.doc["jobs"] + [{"job": job, "tasks": tasks, "at": rec.now_iso()}])
        log.info("batch %s: job %s, tasks %s", self.doc["id"], job, tasks)
        return job

    # ------------------------------------------------------------------ following
    def run(self, timeout: float = 3600.0) -> dict:
        """Stage, submit, follow, retry, ingest; the batch record at the end (state done, failed or
        cancelled). An error on the way (the submit host unreachable, ...) is recorded, then raised."""
        try:
            return self._run(timeout)
        except Exception as err:
            self._update(state="failed", error=f"{type(err).__name__}: {err}", ended_at=rec.now_iso(),
                         stored=self.stored)
            raise

    def _run(self, timeout: float) -> dict:
        writer = StoreWriter(self.store, Spool(self.spool_dir), self._render).start()
        try:
            self._update(started_at=rec.now_iso())
            self.stage()
            first = self.submit(list(range(len(self.split))))
            current = {t: first for t in range(len(self.split))}
            self._update(state="running")
            end = time.monotonic() + timeout
            while len(self.ingested) < len(self.split):
                if time.monotonic() > end:
                    raise StateError(f"batch {self.doc['id']} not done within {timeout:.0f} s")
                time.sleep(self.opts.poll_s)
                states: dict[int, str] = {}
                for job in set(current.values()):
                    got = self.slurm.states(job)
                    states.update({t: s for t, s in got.items() if current.get(t) == job})
                retry = []
                for t, state in sorted(states.items()):
                    if t in self.ingested:
                        continue
                    job = current[t]
                    seen = (self.doc["tasks"].get(str(t)) or {}).get("seen", [])
                    seen = seen + [f"{state}@{job}"] if not seen or seen[-1] != f"{state}@{job}" else seen
                    self.doc["tasks"][str(t)] = {"state": state, "attempts": self.attempts[t], "job": job, "seen": seen}
                    if state == "RUNNING":
                        self._ingest(t, job, writer, running=True)
                    if state in TERMINAL_OK:
                        if self._ingest(t, job, writer):
                            self.doc["tasks"][str(t)]["state"] = "STORED"
                        else:
                            state = "FAILED"       # "completed" without complete outputs
                    if state in CANCELLED:
                        self._end(writer, state="cancelled", tasks=self.doc["tasks"])
                        return self.doc
                    if state in RETRYABLE:
                        self._tail(t, job)
                        if self.attempts[t] > self.opts.retries:
                            self._end(writer, state="failed", tasks=self.doc["tasks"],
                                      error=f"task {t} {state} after {self.attempts[t]} attempts")
                            return self.doc
                        retry.append(t)
                if retry:
                    job = self.submit(retry)
                    current.update({t: job for t in retry})
                self._update(tasks=self.doc["tasks"], progress=f"{len(self.ingested)} of {len(self.split)} tasks")
            self._end(writer, state="done")
            return self.doc
        finally:
            writer.close()
            self.stored = writer.statistics()["stored"]

    def _end(self, writer: StoreWriter, **fields) -> None:
        """The batch's last record, with what the store took whatever the end (a failed batch whose
        first tasks were stored says so)."""
        writer.close()
        self.stored = writer.statistics()["stored"]
        self._update(ended_at=rec.now_iso(), stored=self.stored, **fields)

    def cancel(self) -> None:
        for j in self.doc["jobs"]:
            self.slurm.cancel(j["job"])

    def _tail(self, t: int, job: str) -> None:
        """The last lines of task ``t``'s log in job ``job`` (kept per attempt: "task/job")."""
        path = posixpath.join(self.root, "logs", f"task_{t}.job_{job}.out")
        if self.shell.exists(path):
            lines = self.shell.read(path).decode(errors="replace").splitlines()[-20:]
            self.doc["log_tail"][f"{t}/{job}"] = lines

    # ------------------------------------------------------------------ ingestion
    def _ingest(self, t: int, job: str, writer: StoreWriter, running: bool = False) -> bool:
        """Store task ``t``'s records (rendered on the cluster) as they appear: while it runs, the ones
        written so far (a record appears whole: written to a temporary name, then renamed); when it
        has ended, the rest, and True once every input has its record."""
        out = posixpath.join(self.root, "outputs", f"task_{t}")
        listed = set(self.shell.listdir(out))
        done = "DONE" in listed
        if running is done:
            return False
        have = self.fetched.setdefault(t, set())
        wanted = [record_name(os.path.basename(p)) for p in self.split[t]]
        for name in wanted:
            if name in have or name not in listed:
                continue
            path = posixpath.join(out, name)
            try:
                writer.submit(spool.decode(self.shell.read(path)))
            except InputError as err:      # corrupted on the way: the task runs again
                log.warning("batch %s: %s: %s", self.doc["id"], path, err)
                return False
            have.add(name)
        if running or len(have) < len(wanted):
            return False
        self.ingested.add(t)
        self._tail(t, job)
        return True

    @staticmethod
    def _render(record: rec.Record) -> rec.Record:
        return record     # rendered on the cluster (score_task): the writer only stores and spools it


NAME_MAX = 255          # bytes of one file name on every file system a cluster uses (ext4, xfs, Lustre, GPFS)


def record_name(input_name: str) -> str:
    """The record of input ``dup.png`` is ``dup.png.rec``: the whole name, as ``dup.tif`` may be in the
    same task (by stem, both wrote ``dup.rec``: one result lost, the task never complete)."""
    return input_name + ".rec"


def score_task(images: str, out: str, model_path: str, device: str = "cpu") -> int:
    """One array task (``vi_stream batch task``, on the cluster): score every image of the task's
    folder and write its store record (side document and PNGs, as the daemon renders it) to
    ``out/<name>.rec``, then ``out/DONE``. The station only stores what comes back."""
    from vi_stream.model import load
    from vi_stream.processing.pipeline import Pipeline
    from vi_stream.processing.settings import Settings
    with open(os.path.join(images, TASK_INDEX)) as f:
        task = json.load(f)
    model = load(model_path, device)
    pipeline = Pipeline(model, task["model_version"])
    os.makedirs(out, exist_ok=True)
    for name, where in sorted(task["images"].items()):
        image = files.read_image(os.path.join(images, name))
        frame = Frame(image, int(where["pulse_id"]), sec=int(task["sec"]), module=where["module"],
                      side=where["side"], tag=f"batch {task['batch']}")
        result = pipeline.process(frame, Settings())
        result.parameters["batch"] = task["batch"]
        record = rec.build(result, task["prefix"], int(task["store_tile"]), True, tag=frame.tag,
                           uploaded_by=f"vi_stream batch {task['batch']}")
        write_durably(os.path.join(out, record_name(name)), spool.encode(record))
    write_durably(os.path.join(out, "DONE"), str(len(task["images"])).encode())
    return len(task["images"])
