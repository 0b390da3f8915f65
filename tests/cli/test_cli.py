import csv
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from vi_stream.cli import main
from vi_stream.evaluation import synthetic
from vi_stream.io.files import write_image
from vi_stream.model import read_meta

from ..helpers import SMALL_SHAPE


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    test = root / "test"
    masks = root / "masks"
    test.mkdir()
    masks.mkdir()
    for name, seed, defects in [("good_a", 8001, ()), ("dust_a", 8002, ("dust",)), ("scratch_a", 8003, ("scratch",))]:
        s = synthetic.module_image(SMALL_SHAPE, seed=seed, defects=defects)
        write_image(str(test / f"{name}.png"), s.image)
        if s.mask.any():
            write_image(str(masks / f"{name}_mask.png"), s.mask * 255)
    return root


def _run(*args):
    """The installed console script in a subprocess: what a user sees."""
    p = subprocess.run([sys.executable, "-m", "vi_stream.cli", *args], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_train_writes_a_model(tmp_path, capsys):
    good = tmp_path / "good"
    for i in range(5):
        write_image(str(good / f"g{i}.png"), synthetic.module_image((192, 192), seed=i).image)
    out = tmp_path / "m.npz"
    rc = main(["train", "--images", str(good), "--out", str(out), "--tile", "128", "--overlap", "32",
               "--bank-size", "2000", "--cells", "16", "--calibration-folds", "0", "--calibration-every", "2",
               "--false-alarm-one-in", "50", "--no-progress"])
    assert rc == 0 and out.is_file()
    cap = capsys.readouterr()
    assert "at most one false alarm per 50 good images with 90% confidence, from 2 held-out good images" in cap.out
    assert "note: 2 held-out images give a rough threshold" in cap.err and "16 good images give 8" in cap.err
    assert read_meta(str(out))["threshold_rule"] == {"rule": "gumbel", "false_alarm_one_in": 50, "confidence": 0.9,
                                                     "calibration_images": 2, "folds": 0}


def test_score_writes_heatmaps_masks_overlays_and_csv(model_path, sets, tmp_path):
    out = tmp_path / "scored"
    assert main(["score", "--model", model_path, "--images", str(sets / "test"), "--out", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert [r["file"] for r in rows] == ["dust_a.png", "good_a.png", "scratch_a.png"]
    verdict = {r["file"]: r["is_anomalous"] for r in rows}
    assert verdict == {"dust_a.png": "1", "good_a.png": "0", "scratch_a.png": "1"}
    heat = cv2.imread(str(out / "dust_a_heatmap.tiff"), cv2.IMREAD_UNCHANGED)
    assert heat.dtype == np.float32 and heat.shape == SMALL_SHAPE
    mask = cv2.imread(str(out / "dust_a_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    overlay = cv2.imread(str(out / "dust_a_overlay.png"))
    assert overlay.shape == SMALL_SHAPE + (3,)
    assert float(rows[0]["score"]) == pytest.approx(float(heat.max()), rel=1e-5)


def test_evaluate_prints_and_writes_json(model_path, sets, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", model_path, "--images", str(sets / "test"), "--masks", str(sets / "masks"),
                 "--out", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert report["images"] == 3 and report["anomalous_images"] == 2
    assert report["image_auroc"] == 1.0 and report["pixel_auroc"] > 0.9
    assert 0.5 < report["aupro"] <= 1.0           # per-region overlap: the dust and the scratch each count once
    assert 0 < report["pixel_f1"] <= 1 and report["image_f1"] == 1.0
    assert json.loads(capsys.readouterr().out)["image_auroc"] == 1.0


def test_bad_inputs_give_one_line_errors_and_nonzero_exit(model_path, sets, tmp_path):
    bad_model = tmp_path / "bad.npz"
    bad_model.write_bytes(b"not a model")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"\x89PNG garbage")
    cases = [
        ("score", "--model", str(bad_model), "--images", str(sets / "test"), "--out", str(tmp_path / "o")),
        ("score", "--model", str(tmp_path / "missing.npz"), "--images", str(sets / "test"), "--out", str(tmp_path / "o")),
        ("score", "--model", model_path, "--images", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")),
        ("score", "--model", model_path, "--images", str(broken), "--out", str(tmp_path / "o")),
        ("train", "--images", str(sets / "test"), "--out", str(tmp_path / "m.npz"), "--tile", "100"),
        ("train", "--images", str(sets / "test"), "--out", str(tmp_path / "m.npz")),  # 3 images: too few
        ("evaluate", "--model", model_path, "--images", str(sets / "test"), "--masks", str(tmp_path / "nomasks")),
    ]
    for args in cases:
        rc, out, err = _run(*args)
        assert rc == 2, (args, rc, err)
        lines = [ln for ln in err.strip().splitlines() if "Warning" not in ln and "@numba" not in ln]
        assert len(lines) == 1 and lines[0].startswith("vi_stream: error: "), (args, err)
        assert "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (("run", "tcp://127.0.0.1:9", "CAM", "--model", "m.npz", "--store", "off", "--token", "short"), "token is 5 characters"),
    (("score", "--model", "m.npz", "--images", "nowhere", "--out", "o"), "not a folder: nowhere"),
    (("evaluate", "--model", "m.npz", "--images", "nowhere", "--masks", "nomasks"), "not a folder: nomasks"),
    (("train", "--images", "nowhere", "--out", "m.npz", "--tile", "100"), "tile must be a multiple of 16")])
def test_a_bad_setting_or_path_is_refused_before_the_scorer_is_imported(args, message, tmp_path):
    """A typo is told in a fraction of a second: the refusal comes before torch is imported (2-3 s here)."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "vi_stream.cli", *args], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 2 and f"vi_stream: error: {message}" in p.stderr, p.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}
    assert "vi_stream.cli" in imported and "torch" not in imported


def test_usage_errors_exit_2_without_traceback():
    rc, out, err = _run("score", "--model")
    assert rc == 2 and "usage:" in err and "Traceback" not in err
    rc, out, err = _run("--version")
    assert rc == 0 and out.startswith("vi_stream ")


def test_score_reports_unreadable_images_but_writes_the_rest(model_path, sets, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in os.listdir(sets / "test"):
        (mixed / f).write_bytes((sets / "test" / f).read_bytes())
    (mixed / "zzz_broken.png").write_bytes(b"nope")
    # a float image with a NaN region: its score would be NaN, and NaN > threshold is False
    first = cv2.imread(str(sorted((sets / "test").iterdir())[0]), cv2.IMREAD_UNCHANGED).astype(np.float32)
    first[10:20, 10:20] = np.nan
    assert cv2.imwrite(str(mixed / "zzz_nan.tiff"), first)
    rc, out, err = _run("score", "--model", model_path, "--images", str(mixed), "--out", str(tmp_path / "o"))
    assert rc == 2 and "zzz_broken.png" in err and "2 of 5" in err
    assert "zzz_nan.tiff: image has 100 pixel values that are not finite" in err
    assert len(list(csv.DictReader(open(tmp_path / "o" / "scores.csv")))) == 3


RUN = ["run", "tcp://127.0.0.1:1", "CAM", "--model", "nonexistent.npz", "--store", "off"]


@pytest.mark.parametrize("flags, words", [
    (["--threshold", "-1"], "threshold"), (["--threshold", "0"], "threshold"),
    (["--threshold", "nan"], "threshold"), (["--threshold", "inf"], "threshold"),
    (["--roi", "-1", "10", "0", "10"], "offsets"), (["--roi", "0", "0", "0", "10"], "sizes"),
    (["--log-level", "LOUD"], "log_level"), (["--queue-size", "0"], "queue_size"),
    (["--max-pixels", "10"], "max_pixels"), (["--store-tile", "8"], "store_tile"),
    (["--store-queue", "0"], "store_queue"), (["--camera-fps", "0"], "camera_fps"),
    (["--output-port", "70000"], "output_port"), (["--rest-port", "-1"], "rest_port"),
    (["--preview-side", "10"], "preview_side"), (["--shadow-every", "0"], "shadow_every"),
    (["--worker", "a b"], "worker"), (["--drift-chunk", "2"], "drift_chunk"), (["--model-poll", "0"], "model_poll"),
    (["--shadow-alias", "candidate"], "needs a store"), (["--model-alias", "production"], "not both"),
])
def test_every_run_flag_refuses_a_bad_value_before_anything_starts(flags, words, capsys):
    """`run --threshold -1` used to start, report ready, and then reject every frame."""
    assert main(RUN + flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("vi_stream: error:") and words in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flags", [["--threshold", "x"], ["--roi", "1", "2"], ["--mode", "pub"],
                                   ["--queue-size", "1.5"], ["--output-mode", "sub"]])
def test_malformed_run_flags_are_usage_errors(flags):
    with pytest.raises(SystemExit) as err:
        main(RUN + flags)
    assert err.value.code == 2


def _bad_yaml_values():
    """For every option, a YAML value of the wrong type (and a few of the right type but out of range)."""
    from dataclasses import fields

    from vi_stream.service.config import DaemonConfig
    wrong = {"str": 12, "int": "twelve", "float": "fast", "bool": "yes", "tuple[int, ...]": "all",
             "tuple[str, ...]": "all"}
    for f in fields(DaemonConfig):
        kind = str(f.type).split("|")[0].strip()
        yield f.name, wrong[kind]
    yield from [("threshold", 0), ("threshold", -3.5), ("roi", [0, 1, 2]), ("roi", [0, 1.5, 2, 3]),
                ("block", 1), ("queue_size", True), ("rest_port", 1e5), ("log_level", "chatty"),
                ("prefix", "two words"), ("input", "http://camera:9000"), ("token", "short"),
                ("rest_allowed_hosts", ["http://vi.example.org"]), ("rest_allowed_hosts", [3])]


@pytest.mark.parametrize("key, value", list(_bad_yaml_values()))
def test_every_yaml_option_refuses_a_bad_value(tmp_path, key, value):
    import yaml

    from vi_stream.errors import ConfigError
    from vi_stream.service import config as config_mod
    f = tmp_path / "vi.yaml"
    base = {"input": "tcp://127.0.0.1:1", "prefix": "CAM"}
    f.write_text(yaml.safe_dump({**base, key: value}))
    with pytest.raises(ConfigError, match=f"(?i){key.split('_')[0]}"):
        config_mod.build(str(f), env={})


def test_synth_draws_any_family_on_a_varied_line_and_refuses_bad_requests(tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["synth", "--out", str(out), "--good", "1", "--per-defect", "1", "--families", "pit,bubble",
                 "--line", "7", "--contrast", "0.5", "--size", "256", "256"]) == 0
    assert sorted(os.listdir(out / "images")) == ["bubble_000.png", "good_000.png", "pit_000.png"]
    assert sorted(os.listdir(out / "masks")) == ["bubble_000_mask.png", "pit_000_mask.png"]
    line = synthetic.Variation.draw(7)
    expected = synthetic.module_image((256, 256), 50_000 + synthetic.FAMILIES.index("pit") * 1000, ("pit",),
                                      contrast=0.5, variation=line).image
    assert np.array_equal(cv2.imread(str(out / "images" / "pit_000.png"), cv2.IMREAD_UNCHANGED), expected)
    for bad, msg in ((["--families", "pit,nope"], "unknown defect families"), (["--contrast", "2"], "contrast")):
        target = tmp_path / bad[1].replace(",", "_")
        assert main(["synth", "--out", str(target), "--good", "1", *bad]) == 2
        assert msg in capsys.readouterr().err
        assert not list((target / "images").glob("*"))  # refused before anything is written
