"""``vi_stream batch`` against a real single-node Slurm over a loopback sshd (issue 19)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import cv2
import pytest

from vi_stream.errors import ConfigError
from vi_stream.evaluation import synthetic
from vi_stream.io.slurm import Slurm, SshShell, expand_tasks
from vi_stream.scale.batch import BatchOptions, BatchRun
from vi_stream.store.local import LocalStore

from ..helpers import ROOT, SMALL_SHAPE
from ..helpers.daemon import wait_for

PYTHON = f"{sys.executable} -m vi_stream.cli"


def test_array_task_lists_are_expanded():
    assert expand_tasks("3") == [3] and expand_tasks("[3-5,7]") == [3, 4, 5, 7] and expand_tasks("0-3%2") == [0, 1, 2, 3]
    rows = [["12_0", "COMPLETED"], ["12_[1-2]", "PENDING"], ["12_3", "CANCELLED by 0"], ["13_0", "RUNNING"]]
    assert Slurm._parse("12", rows) == {0: "COMPLETED", 1: "PENDING", 2: "PENDING", 3: "CANCELLED"}


class _Canned:
    """A shell answering Slurm's commands from a table (command word -> (rc, out, err))."""

    def __init__(self, answers):
        self.answers, self.asked = answers, []

    def run(self, command, timeout=60.0):
        self.asked.append(command.split()[0])
        return self.answers.get(command.split()[0], (1, "", "not here"))


def test_job_state_from_sacct_and_the_fallbacks_when_accounting_is_off():
    with_sacct = _Canned({"sacct": (0, "7_0|COMPLETED\n7_1|FAILED\n7_[2-3]|PENDING\n", "")})
    assert Slurm(with_sacct).states("7") == {0: "COMPLETED", 1: "FAILED", 2: "PENDING", 3: "PENDING"}
    assert with_sacct.asked == ["sacct"]
    off = _Canned({"sacct": (1, "", "Slurm accounting storage is disabled"),
                   "squeue": (0, "7_1|RUNNING\n", ""),
                   "scontrol": (0, "JobId=8 ArrayJobId=7 ArrayTaskId=0 JobState=COMPLETED\n"
                                   "JobId=7 ArrayJobId=7 ArrayTaskId=2-3 JobState=PENDING\n", "")})
    slurm = Slurm(off)
    assert slurm.states("7") == {0: "COMPLETED", 1: "RUNNING", 2: "PENDING", 3: "PENDING"}
    assert slurm.accounting is False
    slurm.states("7")
    assert off.asked.count("sacct") == 1            # learnt once: not asked again


def test_options_are_checked_before_anything_is_staged(tmp_path):
    for kw, words in (({"container": "docker"}, "container must be"), ({"container": "apptainer"}, "needs --image"),
                      ({"tasks": 0}, "tasks")):
        with pytest.raises(ConfigError, match=words):
            BatchOptions(str(tmp_path), **kw).check()
    script = BatchOptions("/w", container="apptainer", image="/img/vi.sif", gpus=1).script("/w/b1")
    assert "apptainer exec --nv /img/vi.sif vi_stream batch task" in script and "--device cuda" in script


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(4):
        img = synthetic.module_image(SMALL_SHAPE, seed=9800 + i, defects=("scratch",) if i == 1 else ()).image
        cv2.imwrite(str(d / f"MOD-{i}.png"), img)
    return sorted(str(p) for p in d.iterdir())


def _run(cluster, tmp_path, model_path, inputs, **opts):
    settings, env, _host = cluster
    store = LocalStore(str(tmp_path / "store")).start()
    shell = SshShell(settings, env)
    o = BatchOptions(str(tmp_path / "remote"), tasks=2, command=PYTHON, poll_s=0.5, **opts)
    return BatchRun(store, shell, model_path, "pads@1.0", inputs, o, str(tmp_path / "spool"), by="test"), store, shell


def test_an_array_of_images_is_scored_and_every_result_stored_once(cluster, tmp_path, model_path, images):
    run, store, shell = _run(cluster, tmp_path, model_path, images)
    try:
        doc = run.run(timeout=300)
        assert doc["state"] == "done" and doc["stored"] == 4, doc
        assert run.slurm.accounting is False                  # sacct is off here: squeue/scontrol answered
        assert store.count_results() == 4 and sorted(m["name"] for m in store.list_modules()) == [
            f"MOD-{i}" for i in range(4)]
        side = store.get_module("MOD-1")["left"]
        assert side["is_anomalous"] and side["model_version"] == "pads@1.0"
        assert side["processing_parameters"]["batch"] == doc["id"]
        run.fetched.clear()                                   # as if the station had restarted
        again = run._ingest(0, doc["jobs"][0]["job"], _Writer(store))   # ingesting a task again stores nothing new
        assert again and store.count_results() == 4
        stored = store.batches.get_batch(doc["id"])
        assert stored["state"] == "done" and set(stored["tasks"]) == {"0", "1"} and stored["jobs"]
    finally:
        shell.close()
        store.close()


class _Writer:
    """The store writer's submit, straight to the store (for one re-ingestion)."""

    def __init__(self, store):
        self.store = store

    def submit(self, record):
        self.store.write([record])
        return True


def test_a_task_that_fails_is_retried_and_reported(cluster, tmp_path, model_path, images):
    marker = tmp_path / "failed-once"
    flaky = (f"sh -c 'if [ \"$SLURM_ARRAY_TASK_ID\" = 1 ] && [ ! -e {marker} ]; then touch {marker}; "
             f"echo killed mid-way >&2; exit 3; fi; exec {PYTHON} \"$@\"' vi_stream")
    run, store, shell = _run(cluster, tmp_path, model_path, images)
    run.opts = BatchOptions(run.opts.workdir, tasks=2, command=flaky, poll_s=0.5, retries=1)
    try:
        doc = run.run(timeout=300)
        assert doc["state"] == "done" and store.count_results() == 4, doc
        assert len(doc["jobs"]) == 2 and doc["jobs"][1]["tasks"] == [1]          # task 1 again, alone
        assert doc["tasks"]["1"]["attempts"] == 2
        first = f"1/{doc['jobs'][0]['job']}"
        assert any("killed mid-way" in line for line in doc["log_tail"][first])  # the first attempt's log
    finally:
        shell.close()
        store.close()


def test_a_task_that_keeps_failing_fails_the_batch(cluster, tmp_path, model_path, images):
    run, store, shell = _run(cluster, tmp_path, model_path, images)
    run.opts = BatchOptions(run.opts.workdir, tasks=2, command="false", poll_s=0.5, retries=1)
    try:
        doc = run.run(timeout=300)
        assert doc["state"] == "failed" and "after 2 attempts" in doc["error"] and store.count_results() == 0
    finally:
        shell.close()
        store.close()


def test_scancel_stops_the_batch(cluster, tmp_path, model_path, images):
    run, store, shell = _run(cluster, tmp_path, model_path, images)
    run.opts = BatchOptions(run.opts.workdir, tasks=2, command="sleep 120; true", poll_s=0.5)
    result = {}
    t = threading.Thread(target=lambda: result.update(doc=run.run(timeout=300)))
    try:
        t.start()
        wait_for(lambda: run.doc["jobs"] and any(v.get("state") == "RUNNING" for v in run.doc["tasks"].values()),
                 timeout=60)
        subprocess.run(["scancel", run.doc["jobs"][0]["job"]], env=dict(os.environ, **cluster[1]), check=True)
        t.join(60)
        assert result["doc"]["state"] == "cancelled" and store.count_results() == 0
    finally:
        t.join(60)
        shell.close()
        store.close()


def test_a_node_failure_mid_task_is_survived_and_reported(cluster, tmp_path, model_path, images):
    _settings, env, host = cluster
    env = dict(os.environ, **env)
    run, store, shell = _run(cluster, tmp_path, model_path, images)
    run.opts = BatchOptions(run.opts.workdir, tasks=2, command=f"sh -c 'sleep 4; exec {PYTHON} \"$@\"' vi_stream",
                            poll_s=0.5, retries=2)
    result = {}
    t = threading.Thread(target=lambda: result.update(doc=run.run(timeout=300)))
    try:
        t.start()
        wait_for(lambda: any(v.get("state") == "RUNNING" for v in run.doc["tasks"].values()), timeout=60)
        subprocess.run(["scontrol", "update", f"NodeName={host}", "State=DOWN", "Reason=vi_stream-test"], env=env,
                       check=True)
        time.sleep(3)                                    # the running tasks die with their node
        # the node comes back (slurmd answers: ReturnToService=2); RESUME in case it did not yet
        subprocess.run(["scontrol", "update", f"NodeName={host}", "State=RESUME"], env=env, capture_output=True)
        t.join(240)
        doc = result["doc"]
        assert doc["state"] == "done" and store.count_results() == 4, doc
        failed = [t for t, v in doc["tasks"].items() if any(s.startswith("NODE_FAIL@") for s in v["seen"])]
        assert failed and all(doc["tasks"][t]["attempts"] == 2 for t in failed), doc["tasks"]   # reported, retried
    finally:
        subprocess.run(["scontrol", "update", f"NodeName={host}", "State=RESUME"], env=env, capture_output=True)
        t.join(60)
        shell.close()
        store.close()


_NEEDS_CLUSTER = '''
def test_needs_the_cluster(cluster):
    pass
'''


@pytest.mark.parametrize("require", ["", "1"])
def test_a_missing_sshd_skips_the_cluster_tests_with_its_reason_or_fails_when_required(tmp_path, require):
    """A machine with Slurm but no openssh-server (issue 25, 13): skip with the reason, not 5 errors;
    under VI_STREAM_REQUIRE_SLURM (CI) a failure. The fixture's prerequisites are checked before it starts
    anything, so this runs anywhere."""
    (tmp_path / "test_needs_cluster.py").write_text("from tests.helpers.cluster import cluster  # noqa\n"
                                                   + _NEEDS_CLUSTER)
    root = ROOT
    env = dict(os.environ, VI_STREAM_TEST_SSHD=str(tmp_path / "no-sshd"), PYTHONPATH=root,
               VI_STREAM_REQUIRE_SLURM=require)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--rootdir",
                        str(tmp_path), str(tmp_path / "test_needs_cluster.py")],
                       capture_output=True, text=True, timeout=120, env=env, cwd=str(tmp_path))
    out = p.stdout + p.stderr
    assert "FileNotFoundError" not in out, out
    if require:      # a failure at the fixture's set-up, with the reason
        assert p.returncode == 1 and "1 error" in out and "openssh-server not installed" in out, out
    else:
        assert p.returncode == 0 and "1 skipped" in out and "openssh-server" in out and "no-sshd" in out, out
