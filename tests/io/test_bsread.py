"""bsread codec and interoperability with psi-bsread (the reference implementation)."""
import json
import threading

import numpy as np
import pytest
import zmq
from bsread import PULL, source

from vi_stream.io import bsread_codec as codec

from ..helpers.bsread import open_psi_sender


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


def _with_main(parts, **fields):
    main = json.loads(parts[0])
    main.update(fields)
    return [json.dumps(main).encode()] + parts[1:]


def _with_header(channels):
    import hashlib
    dh = json.dumps({"htype": "bsr_d-1.1", "channels": channels}).encode()
    main = {"htype": "bsr_m-1.1", "pulse_id": 1, "global_timestamp": {"sec": 2, "ns": 3},
            "hash": hashlib.md5(dh).hexdigest()}
    return [json.dumps(main).encode(), dh] + [b"\0" * 16, b""] * len(channels)


@pytest.mark.parametrize("mutate, reason", [
    (lambda p: [b"[" * 100_000 + b"]" * 100_000] + p[1:], "bad_json"),           # nesting beyond the parser
    (lambda p: [p[0].replace(b'"pulse_id": 1', b'"pulse_id": Infinity')] + p[1:], "bad_header"),
    (lambda p: _with_main(p, pulse_id=2**64 - 1), "bad_header"),                 # beyond the stores' int64
    (lambda p: _with_main(p, pulse_id=-1), "bad_header"),
    (lambda p: _with_main(p, pulse_id=1.5), "bad_header"),
    (lambda p: _with_main(p, pulse_id=True), "bad_header"),
    (lambda p: _with_main(p, global_timestamp={"sec": 10**15, "ns": 0}), "bad_header"),   # year > 9999
    (lambda p: _with_main(p, global_timestamp={"sec": 1, "ns": 10**10}), "bad_header"),
    (lambda p: _with_main(p, global_timestamp=[1, 2]), "bad_header"),
    (lambda p: _with_header([{"name": "img", "type": "uint8", "shape": [True, 4]}]), "bad_header"),
    (lambda p: _with_header([{"name": "img", "type": "uint8", "shape": [4.0, 4]}]), "bad_header"),
    (lambda p: [p[0], b"{" + b" " * (codec.MAX_DATA_HEADER + 1) + b"}"] + p[2:], "too_large"),
])
def test_headers_out_of_range_are_refused_with_a_reason(mutate, reason):
    parts = _message(img=np.zeros((4, 4), np.uint8))
    with pytest.raises(codec.DecodeError) as err:
        codec.Decoder().decode(mutate(parts))
    assert err.value.reason == reason


@pytest.mark.parametrize("compression", ["bitshuffle_lz4", "lz4"])
def test_a_compressed_value_must_declare_exactly_its_shapes_size_before_decompression(compression, monkeypatch):
    """A 256x256 uint8 channel whose compression header claims 250 MB was inflated in full (951 MB
    peak RSS per message); now the declared size is compared with the shape's before any decompression."""
    img = np.zeros((256, 256), np.uint8)
    ch = codec.channel_from_value("img", img, compression)
    assert np.array_equal(codec.value(ch), img)
    n = 250 * 1024 * 1024
    if compression == "bitshuffle_lz4":
        import bitshuffle
        liar = (n.to_bytes(8, "big") + ch.data[8:12]
                + bitshuffle.compress_lz4(np.zeros(n // 64, np.uint8), 8192).tobytes())  # a real 250 MB stream
        monkeypatch.setattr(bitshuffle, "decompress_lz4", lambda *a: pytest.fail("decompressed"))
    else:
        import lz4.block
        liar = n.to_bytes(4, "little") + lz4.block.compress(b"\0" * (n // 64), store_size=False)
        monkeypatch.setattr(lz4.block, "decompress", lambda *a, **k: pytest.fail("decompressed"))
    for claimed, reason in ((liar, "too_large"),):
        bad = codec.Channel("img", dict(ch.meta), claimed)
        with pytest.raises(codec.DecodeError) as err:
            codec.value(bad, max_bytes=512 * 1024 * 1024)
        assert err.value.reason == reason and "65536" in str(err.value)
    short = codec.channel_from_value("img", np.zeros((128, 256), np.uint8), compression)
    bad = codec.Channel("img", dict(ch.meta), short.data)      # half the declared shape's bytes
    with pytest.raises(codec.DecodeError) as err:
        codec.value(bad)
    assert err.value.reason == "bad_size"


def test_a_bitshuffle_block_frame_that_lies_about_its_size_is_refused_not_a_crash():
    """Found by the fault suite's fuzzer: bitshuffle's C code trusts each block's size and read past
    the buffer (a segmentation fault of the whole daemon)."""
    img = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    ch = codec.channel_from_value("img", img, "bitshuffle_lz4")
    for pos, value in ((12, 0x7FFFFFF0), (12, 3), (len(ch.data) - 1, None)):
        data = bytearray(ch.data)
        if value is None:
            data = data[:pos]                                       # the last frame cut short
        else:
            data[pos:pos + 4] = value.to_bytes(4, "big")
        with pytest.raises(codec.DecodeError) as err:
            codec.value(codec.Channel("img", dict(ch.meta), bytes(data)))
        assert err.value.reason == "bad_compression"
    assert np.array_equal(codec.value(ch), img)
