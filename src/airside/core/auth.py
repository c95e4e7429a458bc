"""Credentials: operator bearer tokens, shared worker tokens and worker key pairs.

A worker key pair is Ed25519. The worker signs every request: ``Authorization: AirsideWorker
<name>:<unix-ts>:<base64 signature>`` over ``METHOD\\nPATH\\nTS\\nsha256(body)``. web checks the signature
against its authorized-keys file and refuses timestamps more than ``MAX_SKEW`` seconds away.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:  # cryptography loads only where keys are used: every CLI start stays quick
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_TYPE = "airside-ed25519"
WORKER_SCHEME = "AirsideWorker"
MAX_SKEW = 300


def ensure_secret_file(path: Path) -> str:
    """Reads a generated secret, creating it (mode 0600) the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_token() + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_equal(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def generate_keypair() -> tuple[bytes, str]:
    """Returns (private key PEM, public key line for an authorized-keys file)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem, public_line(key.public_key())


def public_line(pub: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"{KEY_TYPE} {base64.b64encode(raw).decode()}"


def load_private_key(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key (make one with `airside keygen`)")
    return key


def load_authorized_keys(path: Path) -> list[Ed25519PublicKey]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2 or parts[0] != KEY_TYPE:
            raise ValueError(f"{path}:{lineno}: expected `{KEY_TYPE} <base64>`")
        keys.append(Ed25519PublicKey.from_public_bytes(base64.b64decode(parts[1])))
    return keys


def _message(method: str, path: str, ts: str, body: bytes) -> bytes:
    return f"{method.upper()}\n{path}\n{ts}\n{hashlib.sha256(body).hexdigest()}".encode()


def sign(key: Ed25519PrivateKey, name: str, method: str, path: str, body: bytes, now: float | None = None) -> str:
    ts = str(int(now if now is not None else time.time()))
    sig = base64.b64encode(key.sign(_message(method, path, ts, body))).decode()
    return f"{WORKER_SCHEME} {name}:{ts}:{sig}"


def verify(header: str, keys: list[Ed25519PublicKey], method: str, path: str, body: bytes) -> str | None:
    """Returns the worker name the signature proves, or None."""
    try:
        scheme, value = header.split(" ", 1)
        name, ts, sig = value.rsplit(":", 2)
        if scheme != WORKER_SCHEME or abs(time.time() - int(ts)) > MAX_SKEW:
            return None
        raw = base64.b64decode(sig)
    except ValueError:
        return None
    from cryptography.exceptions import InvalidSignature

    msg = _message(method, path, ts, body)
    for pub in keys:
        try:
            pub.verify(raw, msg)
            return name
        except InvalidSignature:
            continue
    return None


class WorkerKeyAuth(httpx.Auth):
    """httpx auth flow that signs each request with the worker's private key."""

    requires_request_body = True

    def __init__(self, key: Ed25519PrivateKey, name: str) -> None:
        self.key, self.name = key, name

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = sign(
            self.key, self.name, request.method, request.url.raw_path.decode(), request.content
        )
        yield request


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request
