"""NATS operator mode for the tests: an operator, an account with JetStream, users and their
``.creds`` files, signed here with ``nkeys`` (the JWT v2 format NATS servers verify:
``ed25519-nkey`` signatures over base64url JSON)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path
from typing import Any

import nkeys  # type: ignore[import-untyped]

UNLIMITED = -1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Identity:
    """An nkey pair of one kind (operator, account or user)."""

    def __init__(self, prefix: int):
        self.seed: bytes = nkeys.encode_seed(secrets.token_bytes(32), prefix)
        self._pair = nkeys.from_seed(self.seed)
        self.public: str = self._pair.public_key.decode()

    def sign(self, subject: str, name: str, nats: dict[str, Any]) -> str:
        """A JWT issued by this identity about ``subject``."""
        header = {"typ": "JWT", "alg": "ed25519-nkey"}
        claims = {
            "jti": secrets.token_hex(16).upper(),
            "iat": int(time.time()),
            "iss": self.public,
            "name": name,
            "sub": subject,
            "nats": {**nats, "version": 2},
        }
        body = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        return f"{body}.{_b64(self._pair.sign(body.encode()))}"


class Operator:
    """An operator with one account (JetStream enabled) whose users the tests mint."""

    def __init__(self) -> None:
        self.operator = Identity(nkeys.PREFIX_BYTE_OPERATOR)
        self.account = Identity(nkeys.PREFIX_BYTE_ACCOUNT)
        self.system = Identity(nkeys.PREFIX_BYTE_ACCOUNT)
        """The server's own account (JetStream needs one in operator mode)."""
        self.operator_jwt = self.operator.sign(
            self.operator.public, "frys-op", {"type": "operator"}
        )
        limits = {
            "subs": UNLIMITED,
            "data": UNLIMITED,
            "payload": UNLIMITED,
            "imports": UNLIMITED,
            "exports": UNLIMITED,
            "wildcards": True,
            "conn": UNLIMITED,
            "leaf": UNLIMITED,
            "mem_storage": UNLIMITED,
            "disk_storage": UNLIMITED,
            "streams": UNLIMITED,
            "consumer": UNLIMITED,
        }
        self.account_jwt = self.operator.sign(
            self.account.public, "FRYS", {"type": "account", "limits": limits}
        )
        self.system_jwt = self.operator.sign(self.system.public, "SYS", {"type": "account"})

    def server_config(self) -> dict[str, Any]:
        """``operator``, ``system_account``, ``resolver`` and ``resolver_preload`` for the
        server's configuration."""
        return {
            "operator": self.operator_jwt,
            "system_account": self.system.public,
            "resolver": "MEMORY",
            "resolver_preload": {
                self.account.public: self.account_jwt,
                self.system.public: self.system_jwt,
            },
        }

    def creds(self, path: Path, name: str, permissions: dict[str, dict[str, list[str]]]) -> Path:
        """Write a ``.creds`` file for a new user with ``permissions`` (NATS server form)."""
        user = Identity(nkeys.PREFIX_BYTE_USER)
        jwt = self.account.sign(
            user.public,
            name,
            {
                "type": "user",
                "pub": permissions["publish"],
                "sub": permissions["subscribe"],
                "subs": UNLIMITED,
                "data": UNLIMITED,
                "payload": UNLIMITED,
            },
        )
        path.write_text(
            "-----BEGIN NATS USER JWT-----\n"
            f"{jwt}\n"
            "------END NATS USER JWT------\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{user.seed.decode()}\n"
            "------END USER NKEY SEED------\n"
        )
        path.chmod(0o600)
        return path
