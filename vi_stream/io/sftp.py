"""Model distribution over SFTP (paramiko), in the ATLAS app's layout:
``SFTP_PROJECT_PATH/models/<name>`` plus ``SFTP_PROJECT_PATH/config.yaml``.

Host keys are verified against known_hosts; an unknown key is refused unless
``accept_unknown_host_key`` is set explicitly. A download goes to a temporary
file in the cache, is checked (size as announced by the server, and that it
is a loadable vi_stream model), then renamed into place: a failed or partial
fetch leaves the last good model untouched.
"""
from __future__ import annotations

import os
import posixpath
import socket
import stat
import tempfile
from dataclasses import dataclass
from typing import Mapping

import paramiko

from vi_stream.errors import ConfigError, ModelError, NotFoundError, ServiceError


@dataclass(frozen=True)
class SftpSettings:
    host: str
    project_path: str
    user: str | None = None
    password: str | None = None
    key_file: str | None = None
    port: int = 22
    known_hosts: str | None = None          # default ~/.ssh/known_hosts
    accept_unknown_host_key: bool = False
    timeout: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "SftpSettings | None":
        """The ATLAS app's variables; None when ``SFTP_HOST`` is not set."""
        env = os.environ if env is None else env
        if not env.get("SFTP_HOST"):
            return None
        if not env.get("SFTP_PROJECT_PATH"):
            raise ConfigError("SFTP_HOST is set but SFTP_PROJECT_PATH is not")
        try:
            port = int(env.get("SFTP_PORT", "22"))
        except ValueError as err:
            raise ConfigError(f"SFTP_PORT must be a number, got {env.get('SFTP_PORT')!r}") from err
        return cls(env["SFTP_HOST"], env["SFTP_PROJECT_PATH"], env.get("SFTP_USER"), env.get("SFTP_PASSWORD"),
                   env.get("SFTP_KEY") or None, port, env.get("SFTP_KNOWN_HOSTS") or None,
                   env.get("SFTP_ACCEPT_UNKNOWN_HOST_KEY", "").lower() in ("1", "yes", "true"))


def _connect(s: SftpSettings) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    known = s.known_hosts or os.path.expanduser("~/.ssh/known_hosts")
    if os.path.isfile(known):
        client.load_host_keys(known)
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy() if s.accept_unknown_host_key
                                       else paramiko.RejectPolicy())
    try:
        client.connect(s.host, s.port, username=s.user, password=s.password, key_filename=s.key_file,
                       timeout=s.timeout, banner_timeout=s.timeout, auth_timeout=s.timeout,
                       allow_agent=False, look_for_keys=False)
    except paramiko.AuthenticationException as err:
        client.close()
        raise ServiceError(f"SFTP {s.user}@{s.host}:{s.port}: authentication failed") from err
    except paramiko.SSHException as err:
        client.close()
        if "not found in known_hosts" in str(err):
            raise ServiceError(f"SFTP {s.host}:{s.port}: host key not in {known}; refusing "
                               "(add it with ssh-keyscan, or opt in with SFTP_ACCEPT_UNKNOWN_HOST_KEY=1)") from err
        raise ServiceError(f"SFTP {s.host}:{s.port}: {err}") from err
    except (OSError, EOFError) as err:
        client.close()
        raise ServiceError(f"SFTP {s.host}:{s.port}: cannot connect: {err}") from err
    return client


def _download(sftp: paramiko.SFTPClient, remote: str, local_dir: str, name: str) -> tuple[str, int]:
    try:
        st = sftp.stat(remote)
    except FileNotFoundError as err:
        raise NotFoundError(f"SFTP: no such file {remote}") from err
    if stat.S_ISDIR(st.st_mode or 0):
        raise NotFoundError(f"SFTP: {remote} is a folder, not a file")
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=local_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            sftp.getfo(remote, f)
            f.flush()
            os.fsync(f.fileno())
        size = os.path.getsize(tmp)
        if st.st_size is not None and size != st.st_size:
            raise ServiceError(f"SFTP: {remote}: got {size} of {st.st_size} bytes")
        return tmp, size
    except BaseException:
        os.unlink(tmp)
        raise


def fetch_configured(name: str, cache_dir: str, env: Mapping[str, str] | None = None,
                     accept_unknown_host_key: bool = False) -> str:
    """``fetch_model`` with the ``SFTP_*`` settings from the environment (ConfigError if unset)."""
    from dataclasses import replace

    settings = SftpSettings.from_env(env)
    if settings is None:
        raise ConfigError("fetching a model needs SFTP_HOST, SFTP_PROJECT_PATH, SFTP_USER and "
                          "SFTP_PASSWORD or SFTP_KEY")
    if accept_unknown_host_key:
        settings = replace(settings, accept_unknown_host_key=True)
    return fetch_model(settings, name, cache_dir)


def fetch_model(settings: SftpSettings, name: str, cache_dir: str) -> str:
    """Fetch ``models/<name>`` (and ``config.yaml``) into ``cache_dir``; returns the model's path."""
    from vi_stream.model import read_meta

    if not name or "/" in name or name in (".", ".."):
        raise ConfigError(f"model name must be a plain file name, got {name!r}")
    os.makedirs(cache_dir, exist_ok=True)
    final = os.path.join(cache_dir, name)
    client = _connect(settings)
    try:
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(settings.timeout)
        remote = posixpath.join(settings.project_path, "models", name)
        try:
            tmp, _size = _download(sftp, remote, cache_dir, name)
        except (OSError, EOFError, paramiko.SSHException, socket.timeout) as err:
            if isinstance(err, FileNotFoundError):
                raise NotFoundError(f"SFTP: no such file {remote}") from err
            raise ServiceError(f"SFTP: transfer of {remote} failed: {err or type(err).__name__}") from err
        try:
            read_meta(tmp)  # a model file at all, of a version we read
        except ModelError as err:
            os.unlink(tmp)
            raise ModelError(f"fetched {remote} is not a usable model: {err}") from err
        os.replace(tmp, final)
        # The project's config.yaml travels with the model when present.
        cfg_remote = posixpath.join(settings.project_path, "config.yaml")
        try:
            ctmp, _ = _download(sftp, cfg_remote, cache_dir, "config.yaml")
            os.replace(ctmp, os.path.join(cache_dir, "config.yaml"))
        except NotFoundError:
            pass
        except (OSError, EOFError, paramiko.SSHException, ServiceError):
            pass  # the model is in place; config.yaml is optional
        return final
    finally:
        client.close()
