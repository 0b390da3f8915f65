"""Named operators: each logs in with their own token, and what they change says who they are.

``--operators FILE`` (YAML ``operators: FILE``) names a file of one operator a line::

    # name:token               the token itself (keep the file readable by the daemon's user only)
    alice:Xq7-long-random-token-of-alice
    # name:sha256:HEX          the SHA-256 of the token, in hex: the file then holds no secret
    bob:sha256:3b4c...64 hex digits

A name is a word (letters, digits, ``_.-``, at most 64); a token at least
:data:`vi_stream.web.guard.MIN_TOKEN_CHARS` characters. Names and tokens are unique. Only the
tokens' digests are kept in memory. ``--token`` stays: one token without a name (an admin's, a
script's), whose changes are named by the request's ``by`` or the client's address as before.
"""
from __future__ import annotations

import hashlib
import re

from vi_stream.errors import ConfigError
from vi_stream.web.guard import MIN_TOKEN_CHARS

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HEX = re.compile(r"[0-9a-f]{64}")


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse(text: str, where: str = "operators file") -> dict[str, bytes]:
    """name -> SHA-256 digest of the token; ConfigError naming the line of the first problem."""
    out: dict[str, bytes] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, secret = line.partition(":")
        name = name.strip()
        if not sep or not _NAME.fullmatch(name):
            raise ConfigError(f"{where}, line {n}: write name:token or name:sha256:HEX, the name a word "
                              "(letters, digits, _ . -)")
        if secret.startswith("sha256:"):
            hexd = secret[len("sha256:"):].strip().lower()
            if not _HEX.fullmatch(hexd):
                raise ConfigError(f"{where}, line {n}: sha256: must be followed by 64 hex digits")
            d = bytes.fromhex(hexd)
        else:
            if len(secret) < MIN_TOKEN_CHARS:
                raise ConfigError(f"{where}, line {n}: {name}'s token is {len(secret)} characters, too short: "
                                  f"use at least {MIN_TOKEN_CHARS}")
            d = digest(secret)
        if name in out:
            raise ConfigError(f"{where}, line {n}: {name} is named twice")
        if d in out.values():
            raise ConfigError(f"{where}, line {n}: {name} has the same token as another operator")
        out[name] = d
    if not out:
        raise ConfigError(f"{where} names no operator")
    return out


def load(path: str) -> dict[str, bytes]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the operators file {path}: {err}") from err
    return parse(text, f"operators file {path}")
