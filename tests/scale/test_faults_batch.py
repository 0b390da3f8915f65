"""Names at the edges (issue 25, 9): module names the store files and REST reaches, model names and
aliases without a trailing newline, batch staging that stays in its folder, and two inputs of one
task with the same stem both stored and counted."""
from __future__ import annotations

import json
import os

import cv2
import pytest
import requests

from vi_stream.evaluation import synthetic
from vi_stream.store.local import LocalStore

from ..helpers import SMALL_SHAPE
from ..helpers.cli import VI, one_line_error, vi
from ..helpers.daemon import bound_push, running_daemon, wait_for
from ..helpers.rest import frame
from ..helpers.store import make_record


def test_a_module_name_rest_cannot_reach_or_too_long_is_refused_like_a_bad_side(model):
    """'M/1' was stored and then 404'd over REST; a name over 4,096 bytes was filed under the camera
    prefix. Each is refused, counted as bad_module, and nothing is stored under another name."""
    img = synthetic.module_image(SMALL_SHAPE, seed=9900).image
    bad = ["M/1", "A" * 5000, "M\n2", "..", "M\\3", "B" * 300]
    with bound_push() as (push, port), running_daemon(model, port, store_tile=256) as (d, _ctx):
        d.processor.start()
        for i, name in enumerate(bad + ["M-OK"]):
            push.send_multipart(frame(i + 1, img, name, "left"))
        # a name that is not UTF-8: decoded with replacement characters, two such names would be filed
        # as one module ('A\xff' and 'A\xfe' both read 'A\ufffd')
        parts = frame(len(bad) + 2, img, "M-QQ", "left")
        push.send_multipart([b"M-\xff\xfe" if part == b"M-QQ" else part for part in parts])
        bad = bad + ["not utf-8"]
        base = f"http://127.0.0.1:{d.rest_port}"
        wait_for(lambda: d.processor.statistics()["store"]["stored"] >= 1
                 and d.processor.statistics()["frames_rejected_total"] + d.processor.statistics()["store"]["stored"]
                 >= len(bad) + 1, timeout=120)
        stats = requests.get(f"{base}/statistics", timeout=10).json()["statistics"]
        assert stats["frames_rejected"].get("bad_module") == len(bad), stats["frames_rejected"]
        names = [m["name"] for m in requests.get(f"{base}/api/modules", timeout=10).json()["modules"]]
        assert names == ["M-OK"], names                          # not "CAM" (the prefix), not "M/1"
        assert requests.get(f"{base}/api/modules/M-OK", timeout=10).status_code == 200


@pytest.mark.parametrize("argv", [
    ["models", "register", "{model}", "--name", "pads\n"],
    ["models", "promote", "pads", "1.0", "--alias", "production\n", "--reason", "x"],
    ["models", "show", "pads\n", "1.0"],
])
def test_names_with_a_trailing_newline_are_refused(tmp_path, model_path, argv):
    """`$` in a Python regex matches before a final newline: 'pads\\n' passed as a model name."""
    store = str(tmp_path / "store")
    assert vi("models", "register", model_path, "--name", "pads", "--store", store).returncode == 0
    p = vi(*[a.format(model=model_path) for a in argv], "--store", store)
    one_line_error(p, "must be 1-64 letters")
    with LocalStore(store).start() as s:
        assert [(d["name"], d["version"]) for d in s.models.list_model_docs()] == [("pads", "1.0")]


def test_batch_staging_of_a_stored_module_never_writes_outside_its_folder(tmp_path, model_path):
    """A module stored under '../../escaped' (by an older version) named to `batch run --modules`:
    its image was written two folders above the staging folder. Refused in one line, nothing written."""
    store, tmp = str(tmp_path / "store"), tmp_path / "tmp"
    tmp.mkdir()
    with LocalStore(store).start() as s:
        s.write([make_record(1, module="../../escaped")])
    env = dict(os.environ, TMPDIR=str(tmp))
    p = vi("batch", "run", "--modules", "../../escaped", "--model", model_path, "--workdir", tmp_path / "w",
           "--store", store, env=env)
    one_line_error(p, "../../escaped")
    written = [os.path.join(r, f) for r, _, fs in os.walk(tmp_path) for f in fs
               if f.endswith(".png") and not r.startswith(store)]
    assert written == [], written


def test_batch_inputs_whose_names_make_bad_module_names_are_refused_before_staging(tmp_path, model_path):
    images = tmp_path / "in"
    images.mkdir()
    img = synthetic.module_image(SMALL_SHAPE, seed=9901).image
    cv2.imwrite(str(images / "ok.png"), img)
    cv2.imwrite(str(images / "bad\nname.png"), img)
    p = vi("batch", "run", "--images", images, "--model", model_path, "--workdir", tmp_path / "w",
           "--store", tmp_path / "store")
    one_line_error(p, "bad\\nname")
    assert not (tmp_path / "w").exists()


def test_a_batch_input_whose_record_name_no_file_system_takes_is_refused_before_staging(tmp_path, model_path):
    """An input named with 255 bytes (the most a file name may have) is a valid module name, but its
    record, the name plus '.rec', could not be written on the node: the task failed there, retried,
    and the batch failed. Refused at once instead, in one line, with nothing staged."""
    images = tmp_path / "in"
    images.mkdir()
    cv2.imwrite(str(images / ("A" * 251 + ".png")), synthetic.module_image(SMALL_SHAPE, seed=9902).image)
    p = vi("batch", "run", "--images", images, "--model", model_path, "--workdir", tmp_path / "w",
           "--store", tmp_path / "store")
    one_line_error(p, "255 bytes", "rename it")
    assert not (tmp_path / "w").exists()


def test_two_inputs_of_one_stem_in_one_task_are_both_stored_and_counted(cluster, tmp_path, model_path):
    """dup.png and dup.tif once both wrote dup.rec: Slurm said COMPLETED, the batch ended failed and
    its record said stored 0 while two results had reached the store."""
    images = tmp_path / "in"
    images.mkdir()
    for i, name in enumerate(("dup.png", "dup.tif")):
        cv2.imwrite(str(images / name), synthetic.module_image(SMALL_SHAPE, seed=9910 + i).image)
    store = str(tmp_path / "store")
    p = vi("batch", "run", "--images", images, "--model", model_path, "--workdir", tmp_path / "w", "--store", store,
           "--tasks", 1, "--retries", 0, "--command", VI, "--timeout", 300, env=dict(os.environ, **cluster[1]))
    assert p.returncode == 0 and "done, 2 results stored" in p.stdout, (p.stdout, p.stderr)
    with LocalStore(store).start() as s:
        assert s.count_results() == 2
        doc = s.batches.list_batches()[0]
        assert doc["state"] == "done" and doc["stored"] == 2, json.dumps(doc)[:2000]


def test_a_failed_batch_records_what_it_stored(cluster, tmp_path, model_path):
    """A batch that fails after a task was stored says how many results the store took (it said 0)."""
    images = tmp_path / "in"
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"F-{i}.png"), synthetic.module_image(SMALL_SHAPE, seed=9920 + i).image)
    # task 1 fails once task 0 has written its outputs (bounded wait) and Slurm has seen it end: 0 is stored first
    command = ("sh -c 'if [ \"$SLURM_ARRAY_TASK_ID\" = 1 ]; then i=0; while [ ! -e outputs/task_0/DONE ] && "
               "[ $i -lt 240 ]; do sleep 0.5; i=$((i+1)); done; sleep 8; exit 3; fi; "
               f"exec {VI} \"$@\"' vi_stream")
    store = str(tmp_path / "store")
    p = vi("batch", "run", "--images", images, "--model", model_path, "--workdir", tmp_path / "w", "--store", store,
           "--tasks", 2, "--retries", 0, "--command", command, "--timeout", 300, env=dict(os.environ, **cluster[1]))
    assert p.returncode == 1 and "failed, 1 results stored" in p.stdout, (p.stdout, p.stderr)
    with LocalStore(store).start() as s:
        doc = s.batches.list_batches()[0]
        assert doc["state"] == "failed" and doc["stored"] == s.count_results() == 1, json.dumps(doc)[:2000]


@pytest.mark.parametrize("prefix", ["CAM/1", "CAM\\1", "..", "C" * 300, "CAM\x07"])
def test_a_camera_prefix_that_cannot_be_a_module_name_is_refused_at_start(model_path, prefix):
    """The prefix names a frame's module when the stream has no MODULE channel (and a --camera's
    always): one that cannot be filed is refused before anything starts, not on every frame."""
    p = vi("run", "tcp://127.0.0.1:9", prefix, "--model", model_path, "--store", "off", "--rest-port", 0,
           "--output-port", 0, timeout=120)
    one_line_error(p, "prefix", repr(prefix) if len(prefix) < 80 else "of 300 characters")
