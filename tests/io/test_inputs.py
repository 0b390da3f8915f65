"""Camera input, rate-limited logging, SFTP start-up fallback."""
import logging

import numpy as np
import pytest
import zmq

from vi_stream.errors import ConfigError, ServiceError
from vi_stream.evaluation import synthetic
from vi_stream.io import bsread_codec as codec
from vi_stream.io.camera_in import CameraSource
from vi_stream.io.files import write_image
from vi_stream.processing.processor import RateLimitedLog
from vi_stream.service import config as config_mod
from vi_stream.service.daemon import Daemon

from ..helpers.daemon import pull, recv


def test_camera_folder_feeds_the_daemon(model, tmp_path):
    for i in range(2):
        write_image(str(tmp_path / f"img{i}.png"), synthetic.module_image((384, 384), seed=9700 + i).image)
    ctx = zmq.Context()
    cfg = config_mod.build(None, env={"VI_STREAM_STATE_DIR": str(tmp_path / "state")}, camera=str(tmp_path),
                           prefix="CAMF", output_port=0, rest_port=0, camera_fps=20.0)
    d = Daemon(cfg, model=model, context=ctx)
    d.start()
    try:
        out = pull(ctx, d.config.output_port)
        d.processor.start()
        msgs = [codec.Decoder().decode(recv(out)) for _ in range(3)]  # loops over the folder
    finally:
        d.close()
        ctx.destroy(linger=0)
    assert [m.pulse_id for m in msgs] == [0, 1, 2]
    img = codec.value(msgs[0].channels["CAMF:FPICTURE"])
    assert img.shape == (384, 384) and img.dtype == np.uint8
    assert codec.value(msgs[0].channels["CAMF:FPICTURE.anomaly_map"]).shape == (384, 384)


def test_camera_specs_and_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a device index"):
        CameraSource(str(tmp_path / "missing")).start()
    with pytest.raises(ConfigError, match="no images"):
        CameraSource(str(tmp_path)).start()
    write_image(str(tmp_path / "a.png"), np.full((20, 30, 3), 7, np.uint8))
    cam = CameraSource(str(tmp_path / "*.png"))
    cam.start()
    f = cam.receive(100)
    assert f.image.shape == (20, 30, 3) and f.pulse_id == 0
    assert cam.receive(10) is None and cam.exhausted  # a sequence ends unless looping


def test_rejection_log_does_not_flood(caplog):
    now = [0.0]
    rl = RateLimitedLog(logging.getLogger("vi_stream.test"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="vi_stream.test"):
        for _ in range(100):
            rl.warning("bad_json", "rejected frame: bad json")
        rl.warning("hash_mismatch", "rejected frame: hash")
        now[0] = 11.0
        rl.warning("bad_json", "rejected frame: bad json")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["rejected frame: bad json", "rejected frame: hash",
                     "rejected frame: bad json (99 more 'bad_json' suppressed)"]


def test_startup_fetch_falls_back_to_the_cached_model(model_path, tmp_path, monkeypatch):
    from vi_stream.cli import _model_from_sftp
    cache = tmp_path / "models"
    cache.mkdir()
    monkeypatch.setenv("VI_STREAM_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SFTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SFTP_PORT", "1")  # nothing listens there
    monkeypatch.setenv("SFTP_PROJECT_PATH", "/project")
    cfg = config_mod.build(None, env={}, input="tcp://127.0.0.1:1", model="pads.npz")
    with pytest.raises(ServiceError, match="cannot connect"):
        _model_from_sftp(cfg)  # no cached copy: the error stands
    (cache / "pads.npz").write_bytes(open(model_path, "rb").read())
    assert _model_from_sftp(cfg).model == str(cache / "pads.npz")
    local = config_mod.build(None, env={}, input="tcp://127.0.0.1:1", model=model_path)
    assert _model_from_sftp(local).model == model_path  # an existing file is used as is
