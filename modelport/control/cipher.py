"""The key that encrypts secret values at rest, and encryption with it (Fernet).

The key comes from the ``secrets_key`` setting (``MODELPORT_SECRETS_KEY``): one Fernet key,
or several separated by commas, the first of which encrypts while all of them decrypt.
Without the setting the key lives in ``<data-dir>/secrets.key``, created with mode 0600 on
the first start.

The store records a token encrypted with the key (``meta`` row ``secrets_key_check``) on
the first start, so a start with a different key stops with :class:`SecretsKeyError`
instead of reading garbage or writing secrets no other server can read.

Rotating the key K1 to K2: start every server with ``K2,K1``; then one admin call
(``POST /api/2.0/modelport/secrets/rotate-key``, ``modelport secrets rotate-key``) rewrites
every secret with K2 and seals the check token with K2 (:func:`seal_check`); from then on
the servers start with ``K2`` alone. Until that call the token stays sealed with K1, so a
start with ``K2`` alone is refused, as it must be while secrets are still K1's.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from modelport.errors import ModelportError
from modelport.store import Database

__all__ = ["KEY_FILE", "SecretCipher", "SecretsKeyError", "load_cipher", "seal_check"]

KEY_FILE = "secrets.key"
_CHECK_KEY = "secrets_key_check"
_CHECK_VALUE = b"modelport secrets key check"
_HOW_TO_MAKE = (
    "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


class SecretsKeyError(Exception):
    """The secrets key is missing, malformed or not the one the store's secrets were written with.

    Raised at start-up only; the message says which key was used and what to do.
    """


class SecretCipher:
    """Encrypts and decrypts secret values; thread-safe."""

    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, value: bytes) -> bytes:
        return self._fernet.encrypt(value)

    def rotate(self, token: bytes) -> bytes | None:
        """``token`` encrypted again with the first key; None when no key fits it."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            return None

    def try_decrypt(self, token: bytes) -> bytes | None:
        """The value of ``token``; None when no key fits it."""
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            return None

    def decrypt(self, token: bytes, what: str) -> bytes:
        """The value of ``token``; ``what`` names the secret in the error when no key fits."""
        value = self.try_decrypt(token)
        if value is None:
            raise ModelportError(
                f"{what} cannot be decrypted with the configured secrets key; it was written with "
                "another key. Put that key back in MODELPORT_SECRETS_KEY (after the current one) "
                "or write the secret again."
            )
        return value


def _parse_keys(text: str, source: str) -> list[bytes]:
    keys = [part.strip().encode() for part in text.split(",") if part.strip()]
    if not keys:
        raise SecretsKeyError(f"The secrets key in {source} is empty; {_HOW_TO_MAKE}")
    for i, key in enumerate(keys):
        try:
            Fernet(key)
        except ValueError:
            which = f"key {i + 1} of {len(keys)}" if len(keys) > 1 else "the key"
            raise SecretsKeyError(
                f"The secrets key in {source} is not a valid Fernet key ({which}: it must be 32 "
                f"url-safe base64-encoded bytes); {_HOW_TO_MAKE}"
            ) from None
    return keys


def _key_file(path: Path, db: Database) -> list[bytes]:
    if path.exists():
        return _parse_keys(path.read_text(encoding="ascii", errors="replace"), str(path))
    if db.meta_get(_CHECK_KEY) is not None:
        raise SecretsKeyError(
            f"The store holds secrets encrypted with a key that is not here: {path} does not exist and "
            "MODELPORT_SECRETS_KEY is not set. Restore the key file, or set MODELPORT_SECRETS_KEY to "
            "the key the secrets were written with."
        )
    key = Fernet.generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another server process sharing the data directory won the race
        return _parse_keys(path.read_text(encoding="ascii", errors="replace"), str(path))
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return [key]


def load_cipher(configured: str, data_path: Path, db: Database) -> SecretCipher:
    """The cipher for ``configured`` keys (the setting) or the data directory's key file."""
    path = data_path / KEY_FILE
    if configured:
        source = "MODELPORT_SECRETS_KEY"
        keys = _parse_keys(configured, source)
    else:
        source = str(path)
        keys = _key_file(path, db)
    cipher = SecretCipher(keys)
    stored = db.meta_setdefault(_CHECK_KEY, cipher.encrypt(_CHECK_VALUE).decode("ascii"))
    if cipher.try_decrypt(stored.encode("ascii")) != _CHECK_VALUE:
        raise SecretsKeyError(
            f"The secrets key from {source} is not the key this store's secrets were encrypted with, "
            "so they cannot be read. Start with the original key (MODELPORT_SECRETS_KEY or "
            f"{path}). To change keys: start with the new key first and the old one after it "
            "(NEW,OLD), run `modelport secrets rotate-key` (it rewrites every secret with the new "
            "key), and only then start with the new key alone."
        )
    return cipher


def seal_check(db: Database, cipher: SecretCipher) -> None:
    """Seal the store's check token with ``cipher``'s first key (after every secret was rewritten
    with it), so that later starts with that key alone are accepted."""
    db.meta_set(_CHECK_KEY, cipher.encrypt(_CHECK_VALUE).decode("ascii"))
