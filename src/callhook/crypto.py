"""Credentials: random tokens and ids, fast token hashes, slow secret hashes."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# Client secrets are checked only at the token endpoint, so a memory-hard hash costs little there;
# access tokens are 256-bit random values, so a single SHA-256 is enough and keeps requests fast.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def new_client_id() -> str:
    return "ch_" + secrets.token_hex(12)


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(secret_hash: str, secret: str) -> bool:
    try:
        return _hasher.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False
