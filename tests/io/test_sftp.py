"""SFTP model distribution against a real OpenSSH sshd on 127.0.0.1 (started here)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from vi_stream.errors import ModelError, NotFoundError, ServiceError
from vi_stream.io.sftp import fetch_model
from vi_stream.model import load

from ..helpers import cluster as cluster_helpers
from ..helpers.cluster import SSHD

pytestmark = pytest.mark.skipif(not os.path.exists(SSHD), reason="openssh-server not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory, model_path):
    d = tmp_path_factory.mktemp("sshd")
    project = d / "project"
    (project / "models").mkdir(parents=True)
    shutil.copy(model_path, project / "models" / "good.npz")
    (project / "models" / "garbage.npz").write_bytes(b"PK\x03\x04" + os.urandom(5000))
    (project / "config.yaml").write_text("threshold: 0.5\n")
    proc, settings = cluster_helpers.sshd(d, "")
    (d / "empty_known_hosts").write_text("")
    yield _replace(settings, project_path=str(project)), d
    cluster_helpers.stop(proc)


def _replace(s, **kw):
    from dataclasses import replace
    return replace(s, **kw)


def test_fetch_model_and_config(sshd, tmp_path, model_path):
    settings, _d = sshd
    path = fetch_model(settings, "good.npz", str(tmp_path))
    assert path == str(tmp_path / "good.npz")
    assert open(path, "rb").read() == open(model_path, "rb").read()
    assert load(path).model_id
    assert (tmp_path / "config.yaml").read_text() == "threshold: 0.5\n"
    assert sorted(os.listdir(tmp_path)) == ["config.yaml", "good.npz"]  # no temp files left


def test_wrong_password_is_refused(sshd, tmp_path):
    settings, _d = sshd
    with pytest.raises(ServiceError, match="authentication failed"):
        fetch_model(_replace(settings, key_file=None, password="wrong"), "good.npz", str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_unknown_host_key_is_refused_unless_opted_in(sshd, tmp_path):
    settings, d = sshd
    unknown = _replace(settings, known_hosts=str(d / "empty_known_hosts"))
    with pytest.raises(ServiceError, match="host key not in"):
        fetch_model(unknown, "good.npz", str(tmp_path))
    assert os.listdir(tmp_path) == []
    assert fetch_model(_replace(unknown, accept_unknown_host_key=True), "good.npz", str(tmp_path))


def test_missing_file(sshd, tmp_path):
    settings, _d = sshd
    with pytest.raises(NotFoundError, match="no such file"):
        fetch_model(settings, "nope.npz", str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_a_bad_model_on_the_server_keeps_the_last_good_one(sshd, tmp_path, model_path):
    settings, _d = sshd
    good = tmp_path / "garbage.npz"
    shutil.copy(model_path, good)  # the last good copy under the same name
    with pytest.raises(ModelError, match="not a usable model"):
        fetch_model(settings, "garbage.npz", str(tmp_path))
    assert good.read_bytes() == open(model_path, "rb").read()
    assert os.listdir(tmp_path) == ["garbage.npz"]


class _CuttingProxy:
    """TCP proxy that closes both sides after ``limit`` bytes from the server."""

    def __init__(self, port, limit):
        self.port, self.limit = port, limit
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.listen_port = self.srv.getsockname()[1]
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        conn, _ = self.srv.accept()
        up = socket.create_connection(("127.0.0.1", self.port))
        passed = [0]

        def pipe(a, b, count):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    if count:
                        passed[0] += len(data)
                        if passed[0] > self.limit:
                            break
                    b.sendall(data)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

        threading.Thread(target=pipe, args=(conn, up, False), daemon=True).start()
        pipe(up, conn, True)
        self.srv.close()


def test_connection_dropped_mid_transfer_keeps_the_last_good_model(sshd, tmp_path, model_path):
    settings, _d = sshd
    assert os.path.getsize(model_path) > 1_000_000
    good = tmp_path / "good.npz"
    good.write_bytes(b"previous good model")
    proxy = _CuttingProxy(settings.port, limit=400_000)
    cut = _replace(settings, port=proxy.listen_port,
                   known_hosts=None, accept_unknown_host_key=True, timeout=5)
    with pytest.raises(ServiceError):
        fetch_model(cut, "good.npz", str(tmp_path))
    assert good.read_bytes() == b"previous good model"
    assert os.listdir(tmp_path) == ["good.npz"]


def test_fetch_model_cli(sshd, tmp_path):
    settings, d = sshd
    env = dict(os.environ, SFTP_HOST="127.0.0.1", SFTP_PORT=str(settings.port), SFTP_USER=settings.user,
               SFTP_KEY=settings.key_file, SFTP_PROJECT_PATH=settings.project_path,
               SFTP_KNOWN_HOSTS=str(d / "known_hosts"))
    p = subprocess.run([sys.executable, "-m", "vi_stream.cli", "fetch-model", "good.npz", "--cache", str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == str(tmp_path / "good.npz")
    env.pop("SFTP_KEY")
    env["SFTP_PASSWORD"] = "wrong"
    p = subprocess.run([sys.executable, "-m", "vi_stream.cli", "fetch-model", "good.npz", "--cache", str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "authentication failed" in p.stderr and "Traceback" not in p.stderr


def _sftp_env(monkeypatch, sshd, state) -> None:
    """The SFTP_* settings of the loopback server, and a state folder, in the environment."""
    settings, d = sshd
    for k, v in dict(SFTP_HOST="127.0.0.1", SFTP_PORT=str(settings.port), SFTP_USER=settings.user,
                     SFTP_KEY=settings.key_file, SFTP_PROJECT_PATH=settings.project_path,
                     SFTP_KNOWN_HOSTS=str(d / "known_hosts"), VI_STREAM_STATE_DIR=str(state)).items():
        monkeypatch.setenv(k, v)


def test_rest_reload_by_name_fetches_and_a_failed_fetch_keeps_running(sshd, tmp_path, model, monkeypatch):

    from vi_stream import Client

    from ..helpers.daemon import bound_push, running_daemon
    _sftp_env(monkeypatch, sshd, tmp_path)
    with bound_push() as (push, port), running_daemon(model, port) as (dm, _ctx):
        c = Client(f"http://127.0.0.1:{dm.rest_port}", timeout=60)
        info = c.reload_model(name="good.npz")
        assert info["path"] == str(tmp_path / "models" / "good.npz")
        with pytest.raises(NotFoundError):
            c.reload_model(name="nope.npz")
        assert c.get_model()["path"] == info["path"]


def test_models_register_imports_a_model_from_sftp_into_the_registry(sshd, tmp_path, monkeypatch, capsys):
    from vi_stream.cli import main
    _sftp_env(monkeypatch, sshd, tmp_path)
    store = ["--store", str(tmp_path / "store")]
    assert main(["models", "register", "--sftp", "good.npz", "--name", "pads", "--json"] + store) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["version"], doc["source"]) == ("1.0", "sftp:good.npz")
    assert main(["models", "register", "--sftp", "garbage.npz", "--name", "pads"] + store) == 2
    assert main(["models", "register", "x.npz", "--sftp", "good.npz", "--name", "pads"] + store) == 2
    assert "one of them" in capsys.readouterr().err
