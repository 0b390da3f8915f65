"""The daemon end to end: psi-bsread in and out, garbage, state machine, outputs."""
import json
import pathlib

import numpy as np
import pytest
from bsread import PULL, source

from vi_stream.evaluation import synthetic
from vi_stream.io import bsread_codec as codec

from ..helpers import SMALL_SHAPE
from ..helpers.bsread import open_psi_sender
from ..helpers.daemon import (
    assert_books_balance,
    bound_push,
    good_frame,
    pull,
    recv,
    running_daemon,
    wait_for,
)


@pytest.mark.parametrize("compression", [None, "bitshuffle_lz4"])
def test_psi_sender_to_daemon_to_psi_source(model, compression):
    sender, port = open_psi_sender(data_compression=compression)
    imgs = [synthetic.module_image(SMALL_SHAPE, seed=9100).image,
            synthetic.module_image(SMALL_SHAPE, seed=9101, defects=("dust",)).image,
            synthetic.module_image((384, 448), seed=9102).image,                        # size change
            (synthetic.module_image((384, 448), seed=9103).image.astype(np.uint16)),     # type change
            ]
    try:
        with running_daemon(model, port, output_compression=compression) as (d, ctx):
            d.processor.start()
            with source(host="127.0.0.1", port=d.config.output_port, mode=PULL, receive_timeout=60000) as src:
                for i, img in enumerate(imgs):
                    sender.send(data={"CAM:FPICTURE": img, "CAM:MODULE": "M-1", "CAM:SIDE": "right", "extra": 7.5},
                                pulse_id=100 + i)
                got = [src.receive() for _ in imgs]
            # A frame is counted just after it is handed to ZMQ: the consumer can be a moment ahead.
            stats = wait_for(lambda: (s := d.processor.statistics())["frames_processed"] == len(imgs) and s)
    finally:
        sender.close()
    assert [g.data.pulse_id for g in got] == [100, 101, 102, 103]
    for img, g in zip(imgs, got):
        v = {k: c.value for k, c in g.data.data.items()}
        # input channels unchanged
        assert np.array_equal(v["CAM:FPICTURE"], img) and v["CAM:FPICTURE"].dtype == img.dtype
        assert v["CAM:MODULE"] == "M-1" and v["extra"] == 7.5
        # result channels
        assert v["CAM:FPICTURE.anomaly_map"].shape == img.shape and v["CAM:FPICTURE.anomaly_map"].dtype == np.float32
        assert v["CAM:FPICTURE.mask"].shape == img.shape and v["CAM:FPICTURE.mask"].dtype == np.uint8
        params = json.loads(v["CAM:FPICTURE.processing_parameters"])
        assert params["model_id"] == model.model_id and params["roi"] == []
        assert isinstance(json.loads(v["CAM:FPICTURE.defects"]), list)
        assert float(v["CAM:FPICTURE.score"]) == pytest.approx(float(v["CAM:FPICTURE.anomaly_map"].max()), rel=1e-5)
    good, bad = got[0].data.data, got[1].data.data
    assert not bool(good["CAM:FPICTURE.is_anomalous"].value) and bool(bad["CAM:FPICTURE.is_anomalous"].value)
    assert stats["frames_processed"] == 4 and stats["frames_rejected_total"] == 0 and stats["last_pulse_id"] == 103




def test_garbage_interleaved_with_good_frames_is_rejected_by_reason(model):
    img = synthetic.module_image(SMALL_SHAPE, seed=9200).image
    good = good_frame(1, img)
    no_image = codec.Message(5, 1, 2)
    no_image.channels["OTHER"] = codec.channel_from_value("OTHER", img)
    wrong_type = codec.Message(7, 1, 2)
    wrong_type.channels["CAM:FPICTURE"] = codec.channel_from_value("CAM:FPICTURE", img.astype(np.int32))
    absurd = codec.Message(8, 1, 2)
    absurd.channels["CAM:FPICTURE"] = codec.Channel("CAM:FPICTURE", {"name": "CAM:FPICTURE", "type": "uint8",
                                                                      "shape": [200000, 200000]}, b"\x00" * 64)
    holes = img.astype(np.float32)
    holes[5:9, 5:9] = np.nan                                      # would score NaN, which no threshold flags
    not_finite = codec.Message(9, 1, 2, {"CAM:FPICTURE": codec.channel_from_value("CAM:FPICTURE", holes)})
    short = codec.Encoder().encode(codec.Message(6, 1, 2, {"CAM:FPICTURE": codec.channel_from_value("CAM:FPICTURE", img)}))
    short[2] = short[2][:-5]
    garbage = [
        [b"\xff\xfe not json"] + good[1:],                        # bad_json
        [good[0], good[1].replace(b"uint8", b"uint16")] + good[2:],  # hash_mismatch
        codec.Encoder().encode(no_image),                        # missing_image
        short,                                                   # bad_size
        codec.Encoder().encode(wrong_type),                      # unsupported_type
        codec.Encoder().encode(absurd),                          # too_large
        [b"x"],                                                  # bad_parts
        codec.Encoder().encode(not_finite),                      # not_finite
    ]
    with bound_push() as (push, port), running_daemon(model, port) as (d, ctx):
        out = pull(ctx, d.config.output_port)
        d.processor.start()
        push.send_multipart(good_frame(1, img))
        for i, g in enumerate(garbage):
            push.send_multipart(g)
            push.send_multipart(good_frame(10 + i, img))
        pulses = [codec.Decoder().decode(recv(out)).pulse_id for _ in range(1 + len(garbage))]
        # The statistics count a frame just after handing it to ZMQ, so the consumer may see it first.
        stats = wait_for(lambda: (s := d.processor.statistics())["frames_rejected_total"] == len(garbage)
                         and s["frames_processed"] == 1 + len(garbage) and s)
    assert pulses == [1] + [10 + i for i in range(len(garbage))]
    assert stats["frames_rejected"] == {"bad_json": 1, "hash_mismatch": 1, "missing_image": 1, "bad_size": 1,
                                        "unsupported_type": 1, "too_large": 1, "bad_parts": 1, "not_finite": 1}
    assert stats["frames_processed"] == 1 + len(garbage)
    assert stats["frames_received"] == stats["frames_processed"] + stats["frames_rejected_total"]


def test_no_consumer_never_stalls_processing_and_drops_are_counted(model):
    img = synthetic.module_image((256, 256), seed=9300).image
    with bound_push() as (push, port), running_daemon(model, port) as (d, ctx):
        d.processor.start()
        for i in range(6):
            push.send_multipart(good_frame(i, img))
        # processed is counted when a frame is scored, its output a moment later
        stats = wait_for(lambda: (s := d.processor.statistics())["frames_processed"] == 6
                         and s["output_dropped"] + s["output_sent"] == 6 and s)
    assert stats["output_dropped"] == 6 and stats["output_sent"] == 0


def test_start_stop_idempotent_and_roi_applies_between_frames(model):
    img = synthetic.module_image(SMALL_SHAPE, seed=9400).image
    with bound_push() as (push, port), running_daemon(model, port) as (d, ctx):
        out = pull(ctx, d.config.output_port)
        p = d.processor
        p.start()
        p.start()
        assert p.state == "processing"
        push.send_multipart(good_frame(1, img))
        first = codec.Decoder().decode(recv(out))
        d.set_roi([10, 200, 20, 160])          # through the control interface, as REST does
        push.send_multipart(good_frame(2, img))
        second = codec.Decoder().decode(recv(out))
        p.stop()
        p.stop()
        assert p.state == "stopped"
        p.start()
        # A PUSH may still route a message into the old, just-closed connection (ZMQ
        # tears pipes down asynchronously), so keep sending until the new one carries it.
        third = None
        for pulse in range(3, 13):
            push.send_multipart(good_frame(pulse, img))
            if out.poll(3000):
                third = codec.Decoder().decode(out.recv_multipart())
                break
        stats = wait_for(lambda: (s := p.statistics())["frames_processed"] >= 3 and s)
    assert codec.value(first.channels["CAM:FPICTURE.anomaly_map"]).shape == SMALL_SHAPE
    assert codec.value(second.channels["CAM:FPICTURE.anomaly_map"]).shape == (160, 200)
    assert json.loads(codec.value(second.channels["CAM:FPICTURE.processing_parameters"]))["roi"] == [10, 200, 20, 160]
    assert third is not None and third.pulse_id >= 3 and stats["frames_processed"] >= 3
    assert stats["latency_ms"]["p50"] is not None and stats["queues"]["input_size"] == 4


def test_daemon_without_a_context_makes_one_with_an_io_thread_per_stream_and_ends_it(model, tmp_path):
    import zmq

    from vi_stream.service import config as config_mod
    from vi_stream.service.daemon import IO_THREADS, Daemon
    img = synthetic.module_image(SMALL_SHAPE, seed=9500).image
    with bound_push() as (push, port):
        cfg = config_mod.build(None, env={"VI_STREAM_STATE_DIR": str(tmp_path)}, input=f"tcp://127.0.0.1:{port}",
                               prefix="CAM", output_port=0, rest_port=0, store="off")
        d = Daemon(cfg, model=model)
        ctx = zmq.Context()
        try:
            assert d.context is None                          # made in start(), not in the constructor
            d.start()
            assert d.context.get(zmq.IO_THREADS) == IO_THREADS == 2
            own = d.context
            out = pull(ctx, d.config.output_port)
            d.processor.start()
            push.send_multipart(good_frame(1, img))
            msg = codec.Decoder().decode(recv(out))
            assert msg.pulse_id == 1 and "CAM:FPICTURE.mask" in msg.channels
        finally:
            d.close()
            ctx.destroy(linger=0)
        assert own.closed and d.context is None




def test_every_frame_is_accounted_for_once(model, monkeypatch):
    """Receive errors used to be rejected but not received (151 received, 157 processed + rejected), and
    a result that failed to render was neither stored nor spooled nor counted anywhere but render_failed."""
    from vi_stream.store import record
    img = synthetic.module_image((256, 256), seed=9250).image
    real_build = record.build
    monkeypatch.setattr(record, "build", lambda r, *a, **k: (_ for _ in ()).throw(OverflowError("test"))
                        if r.frame.pulse_id == 13 else real_build(r, *a, **k))
    inf_pulse = good_frame(20, img)
    inf_pulse[0] = inf_pulse[0].replace(b'"pulse_id": 20', b'"pulse_id": Infinity')
    huge_pulse = good_frame(21, img)
    huge_pulse[0] = huge_pulse[0].replace(b'"pulse_id": 21', b'"pulse_id": 18446744073709551615')
    bool_shape = codec.Message(22, 1, 2)
    bool_shape.channels["CAM:FPICTURE"] = codec.Channel("CAM:FPICTURE", {"name": "CAM:FPICTURE", "type": "uint8",
                                                                         "shape": [True, True]}, b"\0")
    with bound_push() as (push, port), running_daemon(model, port) as (d, ctx):
        d.processor.start()
        for i in range(10, 16):
            push.send_multipart(good_frame(i, img))
        for bad in (inf_pulse, huge_pulse, codec.Encoder().encode(bool_shape), [b"x"]):
            push.send_multipart(bad)
        s = wait_for(lambda: (s := d.statistics())["frames_processed"] == 6 and s["frames_rejected_total"] == 4
                     and s["store"]["stored"] + s["store"]["render_failed"] == 6 and s)
        failed = [p.read_text() for p in (pathlib.Path(d.config.spool) / "failed").glob("*.reason")]
    assert s["frames_received"] == 10 and s["frames_rejected"] == {"bad_header": 3, "bad_parts": 1}
    assert s["store"]["render_failed"] == 1 and s["store"]["failed"] == 1
    assert len(failed) == 1 and "pulse 13" in failed[0] and "OverflowError" in failed[0]
    assert_books_balance(s)


def test_a_start_that_fails_half_way_lets_go_of_everything_it_opened(model, tmp_path):
    """REST's port taken: the store, its spool lock, the output port and the ZMQ context are released,
    so the same configuration starts cleanly once the port is free."""
    import socket

    from vi_stream.errors import ConfigError
    from vi_stream.service import config as config_mod
    from vi_stream.service.daemon import Daemon
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    env = {"VI_STREAM_STATE_DIR": str(tmp_path)}
    cfg = config_mod.build(None, env=env, input="tcp://127.0.0.1:1", prefix="CAM", output_port=0,
                           rest_port=taken.getsockname()[1])
    d = Daemon(cfg, model=model)
    assert not (tmp_path / "store").exists()                       # nothing connected before start()
    with pytest.raises(OSError):
        d.start()
    assert d.sink is None and d.server is None and d.context is None
    taken.close()
    with Daemon(cfg, model=model) as again:                         # spool lock and store were let go
        assert again.status() == "stopped" and (tmp_path / "store" / "catalogue.sqlite").is_file()
    with pytest.raises(ConfigError, match="threshold"):
        Daemon(config_mod.DaemonConfig(input="tcp://127.0.0.1:1", threshold=-1.0), model=model)
