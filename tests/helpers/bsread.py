"""The reference bsread implementation (psi-bsread) on ephemeral ports."""
import zmq
from bsread import Sender


def open_psi_sender(**kw) -> tuple[Sender, int]:
    """psi-bsread Sender bound to an ephemeral port (ZMQ's wildcard), and that port."""
    s = Sender(port="*", address="tcp://127.0.0.1", **kw)
    s.open()
    endpoint = s.stream.socket.getsockopt(zmq.LAST_ENDPOINT).decode()
    return s, int(endpoint.rsplit(":", 1)[1])
