"""Secrets the local stack generates once and keeps in its data dir: the JWT signing key pair
and the bootstrap admin's password. Kept across runs so tokens and logins survive a restart."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class JwtKeys:
    private_key_file: Path
    public_key_file: Path


def _write_private(path: Path, data: bytes) -> None:
    """Create a file readable by its owner only, from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure_jwt_keys(keys_dir: Path) -> JwtKeys:
    """The Ed25519 pair svc_user signs access tokens with (EdDSA); created on first use."""
    private = keys_dir / "jwt_ed25519.pem"
    public = keys_dir / "jwt_ed25519.pub.pem"
    if not private.exists():
        key = Ed25519PrivateKey.generate()
        _write_private(
            private,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    if not public.exists():
        loaded = serialization.load_pem_private_key(private.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{private} does not hold an Ed25519 private key")
        public.write_bytes(
            loaded.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return JwtKeys(private_key_file=private, public_key_file=public)


def ensure_admin_password(path: Path) -> str:
    """The bootstrap admin's password, generated once so `up` can print it every time."""
    if not path.exists():
        _write_private(path, (secrets.token_urlsafe(18) + "\n").encode())
    return path.read_text().strip()
