"""API keys of Open311 client applications (GeoReport v2: "Requires API Key: Yes" for POST requests).

A key is ``o311_<prefix>_<secret>``: ``prefix`` (8 hex digits) finds the row, ``secret`` (32 random
bytes, URL-safe base64) is checked against ``sha256(salt || secret)`` in constant time. The key is
shown once, when it is made; the database keeps only the prefix, the salt and the hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloop.core.errors import FieldError, NotFound
from civicloop.core.timeutil import utcnow
from civicloop.open311.models import ApiKey

_KEY = re.compile(r"^o311_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("ascii")).hexdigest()


def create_key(session: Session, *, name: str, now: datetime | None = None) -> tuple[ApiKey, str]:
    """Create an active key for client ``name`` (1–100 characters, unique) and return the row and
    the key in clear, which is not stored anywhere. Raises ``FieldError`` (``v.code_taken``) when
    the name is taken, ``FieldError`` (``v.blank``) for a blank name."""
    name = name.strip()
    if not name or len(name) > 100:
        raise FieldError("name", "v.blank")
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise FieldError("name", "v.code_taken", code=name)
    prefix = secrets.token_hex(4)
    while session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is not None:
        prefix = secrets.token_hex(4)
    secret, salt = secrets.token_urlsafe(32), secrets.token_hex(16)
    key = ApiKey(name=name, prefix=prefix, salt=salt, key_hash=_digest(salt, secret), active=True,
                 created_at=now or utcnow())
    session.add(key)
    session.flush()
    return key, f"o311_{prefix}_{secret}"


def verify_key(session: Session, *, key: str) -> ApiKey | None:
    """Return the active key row that ``key`` (as the client sent it) opens, else ``None``: a
    malformed, unknown, wrong or revoked key all answer ``None`` (the caller answers 403)."""
    match = _KEY.match(key.strip())
    if match is None:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == match.group(1)))
    if row is None or not row.active:
        return None
    return row if hmac.compare_digest(row.key_hash, _digest(row.salt, match.group(2))) else None


def list_keys(session: Session) -> Sequence[ApiKey]:
    """Return every key row (never the keys themselves), by name."""
    return session.scalars(select(ApiKey).order_by(ApiKey.name)).all()


def revoke_key(session: Session, *, name: str, now: datetime | None = None) -> ApiKey:
    """Deactivate the key of client ``name``; its POSTs answer 403 from then on. Requests it filed
    stay. Raises ``NotFound`` for an unknown name."""
    row = session.scalar(select(ApiKey).where(ApiKey.name == name.strip()))
    if row is None:
        raise NotFound("ApiKey", name)
    if row.active:
        row.active, row.revoked_at = False, now or utcnow()
        session.flush()
    return row
