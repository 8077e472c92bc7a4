"""Idempotent intake (issue #6, "Trust"): a client may retry ``POST /api/v1/requests`` with the same
``Idempotency-Key`` header and gets the same request, never two.

Semantics follow the IETF draft "The Idempotency-Key HTTP Header Field"
(draft-ietf-httpapi-idempotency-key-header-07, §2):

- the key is a string (§2.1 makes it an RFC 8941 ``sf-string``; we take it quoted or bare) of 1 to
  200 visible ASCII characters; anything else is a 422 naming the header;
- the fingerprint (§2.4) is the SHA-256 of the submission's canonical JSON after validation
  (``core.audit.canonical`` over the schema's dump, defaults filled in), so key order, whitespace
  and an omitted default do not make two submissions differ;
- a retry after the first completed (§2.6 "Duplicate request") gets the result of that operation:
  the same request, 201 as the first time, with the ``Idempotent-Replayed: true`` header and the
  request as it stands now;
- the same key with another payload is 422 (§2.7);
- a retry while the first is still running: the draft answers 409; here the retry waits on the
  key's unique index until the first transaction ends and then gets the first one's request (or,
  if the first rolled back, files its own). The client sees one request either way.
- keys do not expire yet (§2.3 lets the server choose; documented in docs/security.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from civicloop.core.audit import canonical
from civicloop.core.errors import ConcurrentUpdate, FieldError
from civicloop.requests.models import IdempotencyKey

HEADER = "Idempotency-Key"
MAX_KEY = 200


def parse_key(raw: str | None) -> str | None:
    """Return the key carried by an ``Idempotency-Key`` header value, or ``None`` when absent.

    Surrounding double quotes (the draft's ``sf-string`` form) are removed. Raises ``FieldError``
    (422, field ``Idempotency-Key``) unless 1–200 visible ASCII characters (0x21–0x7E) remain."""
    if raw is None:
        return None
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not 1 <= len(value) <= MAX_KEY or any(not 0x21 <= ord(c) <= 0x7E for c in value):
        raise FieldError(HEADER, "v.idempotency_key_format", max=MAX_KEY)
    return value


def fingerprint(body: Mapping[str, Any]) -> str:
    """Return the hex SHA-256 of ``body``'s canonical JSON (sorted keys, no whitespace, UTF-8)."""
    return hashlib.sha256(canonical(body)).hexdigest()


@dataclass(frozen=True)
class Claim:
    """The outcome of :func:`claim`: either a fresh key row to :func:`bind` to the new request, or
    the id of the request an earlier submission with the same key and payload filed."""

    row: IdempotencyKey | None = None
    replay_request_id: int | None = None


def claim(session: Session, *, key: str, body_hash: str, now: datetime) -> Claim:
    """Claim ``key`` for a submission whose fingerprint is ``body_hash``.

    Returns ``Claim(row=...)`` when the key is new (the row is flushed, its ``request_id`` empty
    until :func:`bind`), or ``Claim(replay_request_id=...)`` when it was used before with the same
    payload. Raises ``FieldError`` (422, field ``Idempotency-Key``) when it was used with another
    payload. Two transactions claiming one key at once: the table's unique key decides; on
    PostgreSQL the second waits until the first ends, then replays the first one's request."""
    existing = _find(session, key)
    if existing is None:
        row = IdempotencyKey(key=key, body_hash=body_hash, request_id=None, created_at=now)
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            existing = _find(session, key)  # the other transaction committed its claim
            if existing is None:  # pragma: no cover - it rolled back between our insert and read
                raise ConcurrentUpdate() from None
        else:
            return Claim(row=row)
    if existing.body_hash != body_hash:
        raise FieldError(HEADER, "v.idempotency_key_reused")
    if existing.request_id is None:  # pragma: no cover - a claim is bound in the transaction that made it
        raise ConcurrentUpdate()
    return Claim(replay_request_id=existing.request_id)


def bind(session: Session, *, claim: Claim, request_id: int) -> None:
    """Record that the claimed key filed request ``request_id`` (same transaction as the request)."""
    if claim.row is not None:
        claim.row.request_id = request_id
        session.flush()


def _find(session: Session, key: str) -> IdempotencyKey | None:
    return session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == key))
