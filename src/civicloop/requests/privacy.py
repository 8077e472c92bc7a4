"""The citizen's personal data in the loop (the Personal Information Protection Law, 个人信息保护法):
revealed only to a role that needs it and always audited (§§ 5–6, minimum necessary), erased once
the retention period after closing has passed (§ 19), re-encrypted when the keys rotate (§ 51).

Contact data live encrypted in ``service_requests`` (``core.crypto.EncryptedText``) and are shown
masked everywhere (``RequestOut``, the ledger, exports, pages, logs). The caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from civicloop.core import audit
from civicloop.core.errors import Forbidden
from civicloop.core.roles import Role
from civicloop.core.settings import Settings
from civicloop.requests.models import RequestStatus, ServiceRequest
from civicloop.requests.service import Actor, get_request

# who may see a citizen's contact in full: the hotline (to call back), the unit handling it (to reach
# the citizen on site), the supervisor (to verify a callback) and the admin; never analysts
REVEAL_ROLES = frozenset({Role.OPERATOR, Role.DISPATCHER, Role.HANDLER, Role.SUPERVISOR, Role.ADMIN})


@dataclass(frozen=True)
class Contact:
    """The citizen's contact in full (only ever returned by :func:`reveal`)."""

    citizen_name: str
    citizen_phone: str
    citizen_id_number: str
    erased: bool


def reveal(session: Session, *, request_id: int, actor: Actor, now: datetime, purpose: str) -> Contact:
    """Return the full contact of a request the caller may already see (the route checks the scope)
    and record the reveal in the audit log (``contact_revealed``: who, which request, why; never
    the contact itself). Raises ``Forbidden`` (403) for a role outside ``REVEAL_ROLES``, ``NotFound``."""
    if actor.role not in REVEAL_ROLES:
        raise Forbidden(role=actor.role.value, action="reveal_contact")
    request = get_request(session, request_id=request_id)
    audit.enqueue(session, actor=actor.name, role=actor.role.value, action="contact_revealed",
                  subject=f"request:{request.id}", data={"purpose": purpose[:100], "at": now.isoformat()})
    return Contact(citizen_name=request.citizen_name or "", citizen_phone=request.citizen_phone or "",
                   citizen_id_number=request.citizen_id_number or "", erased=request.contact_erased_at is not None)


def erase_expired(session: Session, *, settings: Settings, now: datetime) -> list[int]:
    """Erase the contact (name, phone, identity number, blind index) of every request closed or
    rejected more than ``settings.contact_retention_days`` days before ``now``; the request, its
    texts (stored masked), its ratings and every statistic stay. Returns the ids erased, audited as
    one ``contacts_erased`` entry. Safe to run again: erased requests are skipped."""
    cutoff = now - timedelta(days=settings.contact_retention_days)
    ids = list(session.scalars(
        select(ServiceRequest.id).where(
            ServiceRequest.status.in_([RequestStatus.CLOSED, RequestStatus.REJECTED]),
            ServiceRequest.closed_at.is_not(None), ServiceRequest.closed_at < cutoff,
            ServiceRequest.contact_erased_at.is_(None),
        ).order_by(ServiceRequest.id)))
    for start in range(0, len(ids), 1000):
        session.execute(update(ServiceRequest).where(ServiceRequest.id.in_(ids[start:start + 1000])).values(
            citizen_name="", citizen_phone="", citizen_id_number="", citizen_key=None, contact_erased_at=now))
    if ids:
        audit.enqueue(session, actor="system", role=Role.SYSTEM.value, action="contacts_erased",
                      subject="requests", data={"count": len(ids), "first": ids[0], "last": ids[-1],
                                                "retention_days": settings.contact_retention_days})
    return ids


def rotate_keys(session: Session, *, batch: int = 2000) -> int:
    """Re-encrypt every stored contact under the first data key (``core.crypto.rotate``); returns the
    number of requests rewritten. Run after putting a new key first in ``CIVICLOOP_DATA_KEYS``."""
    table = ServiceRequest.__table__
    done, last = 0, 0
    while True:
        rows = session.execute(select(table.c.id, table.c.citizen_name, table.c.citizen_phone,
                                      table.c.citizen_id_number).where(table.c.id > last)
                               .order_by(table.c.id).limit(batch)).all()
        if not rows:
            return done
        for rid, name, phone, number in rows:  # read decrypted by the column type, written back under the first key
            if name or phone or number:
                session.execute(update(table).where(table.c.id == rid).values(
                    citizen_name=name, citizen_phone=phone, citizen_id_number=number))
                done += 1
        last = rows[-1][0]
