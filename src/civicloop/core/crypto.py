"""Citizens' personal data encrypted at rest (the Personal Information Protection Law, 个人信息保护法
§51: "encryption, de-identification and other security technical measures").

* **Encryption**: Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) through ``MultiFernet``:
  the first key of ``settings.data_keys`` encrypts, every key listed decrypts. To rotate: put a new
  key first, keep the old ones after it, run ``civicloop privacy rotate`` (re-encrypts every stored
  value with the first key), then drop the old keys. ``civicloop privacy new-key`` prints a key.
* **Blind index**: ``citizen_key(phone)`` is HMAC-SHA256 under ``settings.data_index_key`` of the
  phone's digits, cut to 16 hex characters. It lets analytics count distinct callers and an operator
  find a caller's earlier requests without decrypting anything; it is not rotated with the data keys.
* **Keys**: from the settings (``CIVICLOOP_DATA_KEYS``, ``CIVICLOOP_DATA_INDEX_KEY``; a deployment
  sets both, e.g. from a secrets manager); when they are unset, from the key file
  ``settings.key_file`` (default ``civicloop.keys`` beside the SQLite database, or in the working
  directory), created with fresh keys, mode 600, on first use, so the embedded demo works and a
  database copied without its key file reveals nothing.

``EncryptedText`` is the column type: values go in as text and come out as text; empty strings stay
empty (no contact given), so "has a phone" needs no decryption.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

from civicloop.core.settings import Settings, get_settings

log = logging.getLogger("civicloop.crypto")
TOKEN_PREFIX = "gAAAAA"  # every Fernet token starts so (version byte 0x80, base64)
UNREADABLE = "⚠"  # what a value encrypted under a key no longer configured reads as


def new_key() -> str:
    """Return a fresh Fernet key (32 random bytes, URL-safe base64)."""
    return Fernet.generate_key().decode("ascii")


def key_file_path(settings: Settings) -> Path:
    """The key file: ``settings.key_file`` when set, else ``civicloop.keys`` beside the SQLite
    database file, else in the working directory."""
    if settings.key_file:
        return Path(settings.key_file)
    url = settings.database_url
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        return Path(url.removeprefix("sqlite:///")).resolve().parent / "civicloop.keys"
    return Path("civicloop.keys").resolve()


def _from_file(path: Path) -> tuple[list[str], str]:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = {"data_keys": [new_key()], "data_index_key": new_key()}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(keys, out)
        log.warning("no data keys configured: created %s (keep it with the database, back it up apart)", path)
    data = json.loads(path.read_text(encoding="utf-8"))
    return list(data["data_keys"]), str(data["data_index_key"])


@lru_cache(maxsize=8)
def _keys(data_keys: str, index_key: str, key_file: str) -> tuple[MultiFernet, bytes]:
    if data_keys.strip():
        keys = [k.strip() for k in data_keys.split(",") if k.strip()]
        index = index_key.strip() or keys[-1]
    else:
        keys, index = _from_file(Path(key_file))
    fernet = MultiFernet([Fernet(k.encode("ascii")) for k in keys])
    return fernet, hashlib.sha256(b"civicloop citizen index\x00" + base64.urlsafe_b64decode(index)).digest()


def keys(settings: Settings | None = None) -> tuple[MultiFernet, bytes]:
    """Return ``(cipher, index key)`` of ``settings`` (default: the process's). Raises ``ValueError``
    for a malformed key (not 32 bytes of URL-safe base64)."""
    settings = settings or get_settings()
    return _keys(settings.data_keys, settings.data_index_key, str(key_file_path(settings)))


def encrypt(value: str, settings: Settings | None = None) -> str:
    """Encrypt ``value`` with the first data key; ``""`` stays ``""``."""
    if not value:
        return value
    return keys(settings)[0].encrypt(value.encode("utf-8")).decode("ascii")


def decrypt(value: str | None, settings: Settings | None = None) -> str | None:
    """Decrypt a stored value. A value that is not a Fernet token (written before encryption, or
    empty) is returned as it is; one no configured key opens reads ``UNREADABLE`` (and is logged
    without its content), so one lost key never stops a list from loading."""
    if not value or not value.startswith(TOKEN_PREFIX):
        return value
    try:
        return keys(settings)[0].decrypt(value.encode("ascii")).decode("utf-8")
    except InvalidToken:
        log.error("a stored personal-data value cannot be decrypted with the configured keys")
        return UNREADABLE


def rotate(value: str | None, settings: Settings | None = None) -> str | None:
    """Re-encrypt a stored value under the first key (plaintext gets encrypted)."""
    if not value:
        return value
    if not value.startswith(TOKEN_PREFIX):
        return encrypt(value, settings)
    return keys(settings)[0].rotate(value.encode("ascii")).decode("ascii")


_NOT_DIGITS = re.compile(r"\D")


def citizen_key(phone: str, settings: Settings | None = None) -> str | None:
    """Return the blind index of a phone number (16 hex characters), ``None`` without digits.
    ``+86 138-1234-5678`` and ``13812345678`` give the same key (the country code 86 of a
    13-digit mobile is dropped)."""
    digits = _NOT_DIGITS.sub("", phone or "")
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if not digits:
        return None
    return hmac.new(keys(settings)[1], digits.encode("ascii"), hashlib.sha256).hexdigest()[:16]


class EncryptedText(TypeDecorator[str]):
    """A text column stored encrypted (``encrypt``/``decrypt`` with the process's keys)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return encrypt(value) if value else value

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return decrypt(value)
