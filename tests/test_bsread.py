"""bsread codec and interoperability with psi-bsread (the reference implementation)."""
import json
import threading

import numpy as np
import pytest
import zmq
from bsread import PULL, Sender, source

from vi_stream.io import bsread_codec as codec


def open_psi_sender(**kw) -> tuple[Sender, int]:
    """psi-bsread Sender bound to an ephemeral port (ZMQ's wildcard), and that port."""
    s = Sender(port="*", address="tcp://127.0.0.1", **kw)
    s.open()
    endpoint = s.stream.socket.getsockopt(zmq.LAST_ENDPOINT).decode()
    return s, int(endpoint.rsplit(":", 1)[1])


@pytest.mark.parametrize("compression", [None, "bitshuffle_lz4"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_psi_sender_bytes_decode_and_reencode_identically(compression, dtype):
    ctx = zmq.Context.instance()
    s, port = open_psi_sender(data_compression=compression)
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.connect(f"tcp://127.0.0.1:{port}")
    try:
        img = (np.arange(30 * 40) % 251).astype(dtype).reshape(30, 40)
        s.send(data={"CAM:FPICTURE": img, "CAM:MODULE": "M-7", "x": 1.5, "n": 3, "f": np.float32(2.0)}, pulse_id=42)
        assert pull.poll(5000)
        parts = pull.recv_multipart()
    finally:
        pull.close(0)
        s.close()
    m = codec.Decoder().decode(parts)
    assert m.pulse_id == 42
    assert np.array_equal(codec.value(m.channels["CAM:FPICTURE"]), img)
    assert codec.value(m.channels["CAM:MODULE"]) == "M-7"
    assert codec.value(m.channels["x"]) == 1.5 and codec.value(m.channels["n"]) == 3
    # byte compatibility: our encoder reproduces psi-bsread's data header and value parts
    again = codec.Encoder().encode(m)
    assert again[1] == parts[1] and again[2:] == parts[2:]
    fresh = codec.channel_from_value("CAM:FPICTURE", img, compression)
    assert fresh.data == parts[2] and fresh.meta == json.loads(parts[1])["channels"][0]


@pytest.mark.parametrize("compression", [None, "bitshuffle_lz4"])
def test_psi_source_reads_what_we_send(compression):
    ctx = zmq.Context.instance()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    port = push.bind_to_random_port("tcp://127.0.0.1")
    enc = codec.Encoder()
    values = {"A:FPICTURE": np.arange(20, dtype=np.uint16).reshape(4, 5), "s": "hello", "f": np.float32(2.5),
              "b": True, "m": np.ones((3, 2), np.float32)}

    def send():
        for pulse in (1, 2):
            msg = codec.Message(pulse, 100, 5)
            for k, v in values.items():
                msg.channels[k] = codec.channel_from_value(k, v, compression if not isinstance(v, str) else None)
            push.send_multipart(enc.encode(msg))

    t = threading.Thread(target=send)
    t.start()
    try:
        with source(host="127.0.0.1", port=port, mode=PULL, receive_timeout=5000) as src:
            got = [src.receive() for _ in range(2)]
    finally:
        t.join()
        push.close(0)
    assert [g.data.pulse_id for g in got] == [1, 2]
    d = got[0].data.data
    assert np.array_equal(d["A:FPICTURE"].value, values["A:FPICTURE"])
    assert d["s"].value == "hello" and d["f"].value == np.float32(2.5) and bool(d["b"].value) is True
    assert np.array_equal(d["m"].value, values["m"])


def _message(**channels):
    m = codec.Message(1, 2, 3)
    for k, v in channels.items():
        m.channels[k] = codec.channel_from_value(k, v)
    return codec.Encoder().encode(m)


@pytest.mark.parametrize("mutate,reason", [
    (lambda p: [b"{not json"] + p[1:], "bad_json"),
    (lambda p: [p[0], p[1].replace(b"uint8", b"uint16")] + p[2:], "hash_mismatch"),
    (lambda p: p[:-2], "bad_parts"),
    (lambda p: [b"only one part"], "bad_parts"),
    (lambda p: [json.dumps({"htype": "bsr_m-1.1"}).encode()] + p[1:], "bad_header"),
])
def test_malformed_messages_are_rejected_with_a_reason(mutate, reason):
    parts = _message(img=np.zeros((4, 4), np.uint8))
    with pytest.raises(codec.DecodeError) as err:
        codec.Decoder().decode(mutate(parts))
    assert err.value.reason == reason


def test_values_that_do_not_match_shape_type_or_limits_are_rejected():
    d = codec.Decoder()
    parts = _message(img=np.zeros((4, 4), np.uint8))
    m = d.decode(parts[:2] + [b"\x00" * 7] + parts[3:])
    with pytest.raises(codec.DecodeError) as err:
        codec.value(m.channels["img"])
    assert err.value.reason == "bad_size"
    big = codec.Channel("img", {"name": "img", "type": "uint8", "shape": [100000, 100000]}, b"\x00" * 16)
    with pytest.raises(codec.DecodeError) as err:
        codec.value(big, max_bytes=10**8)
    assert err.value.reason == "too_large"
    bomb = codec.Channel("img", {"name": "img", "type": "uint8", "shape": [10], "compression": "bitshuffle_lz4"},
                         (10**12).to_bytes(8, "big") + (8192).to_bytes(4, "big") + b"\x00" * 20)
    with pytest.raises(codec.DecodeError) as err:
        codec.value(bomb, max_bytes=10**8)
    assert err.value.reason == "too_large"  # refused before any decompression
    weird = codec.Channel("x", {"name": "x", "type": "complex128", "shape": [1]}, b"\x00" * 16)
    with pytest.raises(codec.DecodeError) as err:
        codec.value(weird)
    assert err.value.reason == "unsupported_type"
