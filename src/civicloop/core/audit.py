"""The tamper-evident audit log (issue #6, "Trust"): every state transition and every admin change
is appended to ``audit_log`` as one entry that carries the hash of the entry before it, so editing,
deleting, inserting or reordering a stored entry breaks the chain, and ``verify`` names the first
entry where it breaks. The hash of each day's last entry can be exported (``civicloop audit export``)
and published: once published, even rewriting the whole tail of the chain is detectable.

The rule (a hash chain as in Crosby & Wallach, "Efficient Data Structures for Tamper-Evident
Logging", USENIX Security 2009, and RFC 6962's log heads, without the Merkle tree):

- canonical encoding of an entry without its ``hash``: the JSON object ``{"action", "actor", "at",
  "data", "prev_hash", "role", "seq", "subject"}`` with keys sorted (also inside ``data``), no
  whitespace (separators ``,`` and ``:``), non-ASCII characters written as themselves, UTF-8;
  ``at`` as ISO 8601 UTC with microseconds, ``2026-05-01T08:30:00.000000Z``; no NaN or infinity.
  This is close to, but not exactly, RFC 8785 (JCS): keys are sorted by code point and numbers are
  written as Python writes them. ``data`` is normalised to JSON values before it is stored, so what
  is stored is what was hashed.
- ``hash = sha256(prev_hash as ASCII hex + canonical bytes)``, lower-case hex.
- the first entry has ``seq`` 1 and ``prev_hash`` 64 zeros (:data:`GENESIS`).

Ordering: entries are numbered under a lock, so two transactions appending at once cannot fork the
chain: on PostgreSQL ``pg_advisory_xact_lock(AUDIT_LOCK)`` (held until commit or rollback), on
SQLite the write lock that ``BEGIN IMMEDIATE`` takes at the start of every transaction
(``core.db``). Domain code calls :func:`enqueue`; the queued entries are appended by a
``before_commit`` hook, in the same transaction, after all of its row locks were taken. Taking the
chain's lock last keeps one lock order in every transaction (rows, then the log), so a clerk's
transition never deadlocks against another's on the log, and the lock is held only while the
transaction commits. Entries queued inside a savepoint that is rolled back are dropped with it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session, SessionTransaction

from civicloop.core.models import AuditEntry
from civicloop.core.timeutil import utcnow

GENESIS = "0" * 64
AUDIT_LOCK = 0x6369_7669_6361_7564  # "civicaud": the one advisory lock key of the chain
LOCAL_ZONE = ZoneInfo("Asia/Shanghai")
_QUEUE = "civicloop.audit.pending"
_LIMITS = {"actor": 100, "role": 20, "action": 50, "subject": 100}

EDITED, DELETED, INSERTED, REORDERED, BROKEN_LINK = "edited", "deleted", "inserted", "reordered", "broken_link"


# --- the rule ----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Return ``value`` as JSON values only (dict with str keys, list, str, int, float, bool, None).

    Dates and times become ISO 8601 (aware times in UTC), enums their value, tuples and sets lists
    (sets sorted), ``Decimal`` a string. Raises ``ValueError`` for NaN/infinity or another type."""
    if value is None or isinstance(value, bool | int | str):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN or infinity cannot be audited")
        return value
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    raise ValueError(f"cannot audit a value of type {type(value).__name__}")


def iso_utc(moment: datetime) -> str:
    """Return ``moment`` (timezone-aware) as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC.

    Raises ``ValueError`` for a naive datetime (the code base never guesses a zone)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to the audit log")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(value: Any) -> bytes:
    """Return the canonical encoding of a JSON value: sorted keys, no whitespace, UTF-8.

    Takes what :func:`_plain` accepts; raises ``ValueError`` otherwise. Used for the audit hash and
    for the fingerprint of an idempotent submission (``requests.idempotency``)."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def entry_hash(*, seq: int, at: datetime, actor: str, role: str, action: str, subject: str,
               data: Mapping[str, Any], prev_hash: str) -> str:
    """Return the hex SHA-256 of an entry: ``sha256(prev_hash + canonical(entry without hash))``.

    See the module docstring for the rule. Pure: no database."""
    body = canonical({"seq": seq, "at": iso_utc(at), "actor": actor, "role": role, "action": action,
                      "subject": subject, "data": data, "prev_hash": prev_hash})
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def hash_of(entry: AuditEntry) -> str:
    """Return the hash that ``entry``'s stored fields should have (compare with ``entry.hash``)."""
    return entry_hash(seq=entry.seq, at=entry.at, actor=entry.actor, role=entry.role, action=entry.action,
                      subject=entry.subject, data=entry.data or {}, prev_hash=entry.prev_hash)


# --- appending ---------------------------------------------------------------------------------


def _lock(session: Session) -> None:
    """Take the chain's lock for the rest of the transaction (PostgreSQL); SQLite transactions
    already hold the database's write lock from ``BEGIN IMMEDIATE``."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})


def append(session: Session, *, actor: str, role: str, action: str, subject: str,
           data: Mapping[str, Any] | None = None, now: datetime) -> AuditEntry:
    """Append one entry to the chain now, in the session's transaction, and return it (flushed).

    Takes the chain's lock, reads the last entry (``seq``, ``hash``), and stores the next one with
    ``at`` = ``now`` (aware). ``actor``, ``role``, ``action`` and ``subject`` are cut to their
    column widths before hashing, so what is stored is what was hashed. Raises ``ValueError`` for
    a naive ``now`` or ``data`` that is not JSON-like. Prefer :func:`enqueue` in domain code (see
    the module docstring on lock order)."""
    return _append_all(session, [(actor, role, action, subject, data)], now=now)[0]


def _append_all(session: Session, items: Iterable[tuple[str, str, str, str, Mapping[str, Any] | None]], *,
                now: datetime) -> list[AuditEntry]:
    """Append entries ``(actor, role, action, subject, data)`` in this order, as :func:`append` does
    one: under one lock, after one read of the chain's head, in one flush. The chain is the same as
    appending them one by one; the lock is held for three statements (lock, head, insert) however
    many entries a transaction has, because every round trip while it is held (and, under load, the
    wait for the GIL after each) delays every other transaction's commit (issue 9: measured in
    docs/benchmarks.md)."""
    rows = []
    for actor, role, action, subject, data in items:
        values = {name: str(value)[:_LIMITS[name]] for name, value in
                  (("actor", actor), ("role", role), ("action", action), ("subject", subject))}
        rows.append((values, _plain(dict(data or {}))))
    at = now.astimezone(UTC) if now.tzinfo is not None else now
    _lock(session)
    last = session.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    seq, prev = (last[0] + 1, last[1]) if last is not None else (1, GENESIS)
    entries = []
    for values, plain in rows:
        entry = AuditEntry(seq=seq, at=at, data=plain, prev_hash=prev, **values)
        entry.hash = entry_hash(seq=seq, at=at, data=plain, prev_hash=prev, **values)
        entries.append(entry)
        seq, prev = seq + 1, entry.hash
    session.add_all(entries)
    session.flush()
    return entries


@dataclass(frozen=True)
class _Pending:
    actor: str
    role: str
    action: str
    subject: str
    data: dict[str, Any]
    transaction: SessionTransaction


def enqueue(session: Session, *, actor: str, role: str, action: str, subject: str,
            data: Mapping[str, Any] | None = None) -> None:
    """Queue an entry to be appended when the session's transaction commits (same transaction).

    ``data`` is normalised to JSON values now (raises ``ValueError`` if it cannot be). The entry's
    ``at`` is the time of the commit; callers that replay history put the event's own time in
    ``data``. Dropped if the transaction, or the savepoint it was queued in, rolls back."""
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:
        session.connection()  # begin the transaction, so the entry belongs to one
        transaction = session.get_transaction()
    assert transaction is not None
    pending = _Pending(actor=str(actor), role=str(role), action=str(action), subject=str(subject),
                       data=_plain(dict(data or {})), transaction=transaction)
    session.info.setdefault(_QUEUE, []).append(pending)


def pending(session: Session) -> int:
    """Return how many entries wait for the session's commit (for tests and diagnostics)."""
    return len(session.info.get(_QUEUE, ()))


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint is released: its entries wait for the root commit
        return
    queued: list[_Pending] = session.info.pop(_QUEUE, [])
    if not queued:
        return
    _append_all(session, [(item.actor, item.role, item.action, item.subject, item.data) for item in queued],
                now=utcnow())


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    queued: list[_Pending] | None = session.info.get(_QUEUE)
    if not queued:
        return

    def inside(transaction: SessionTransaction | None) -> bool:
        while transaction is not None:
            if transaction is previous_transaction:
                return True
            transaction = transaction.parent
        return False

    session.info[_QUEUE] = [item for item in queued if not inside(item.transaction)]


def admin_role(actor: str) -> str:
    """Return the role recorded for an admin change made by ``actor``: ``system`` for the system
    itself (seeding, jobs), else ``admin`` (the routes let only admins make these changes; the CLI
    runs with the database's credentials)."""
    return "system" if actor == "system" else "admin"


# --- verifying ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found. ``ok`` when the whole chain recomputes; else ``first_bad_seq`` is
    the first entry at fault and ``problem`` one of ``edited`` (its hash does not match its
    content), ``deleted`` (its ``seq`` is missing), ``inserted`` (it was slipped in between two
    entries), ``reordered`` (it links to an entry stored after it) or ``broken_link`` (it does not
    follow its predecessor: the predecessor was rewritten and re-hashed, or this entry was forged).
    ``last_seq``/``last_hash`` give the head of the chain as read."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    detail: str = ""
    last_seq: int | None = None
    last_hash: str | None = None


def verify(session: Session, *, anchors: Mapping[int, str] | None = None, batch: int = 5000) -> VerifyResult:
    """Recompute the chain in ``seq`` order and return where it first breaks (see ``VerifyResult``).

    Checks, for each entry: its ``seq`` follows the previous one (a gap: ``deleted``), its
    ``prev_hash`` is the previous entry's ``hash`` (else ``reordered``/``inserted``/``broken_link``,
    told apart by which stored entry owns that hash), its ``hash`` recomputes (else ``edited``).
    ``anchors`` maps published ``seq`` → ``hash`` (from :func:`day_hash`); an anchor whose entry is
    missing or differs is reported too, which catches a truncated or rewritten tail that the chain
    alone cannot show. Reads ``batch`` rows at a time."""
    expected_seq, prev, prev2, checked = 1, None, None, 0
    rows = session.scalars(select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=batch))
    for entry in rows:
        checked += 1
        if entry.seq != expected_seq:
            if entry.seq > expected_seq:
                return _bad(checked, expected_seq, DELETED, f"seq {expected_seq}..{entry.seq - 1} missing", prev)
            return _bad(checked, entry.seq, INSERTED, "seq out of range", prev)
        own = hash_of(entry)
        if entry.prev_hash != (prev.hash if prev is not None else GENESIS):
            owner = session.scalar(select(func.min(AuditEntry.seq)).where(AuditEntry.hash == entry.prev_hash))
            if owner is not None and owner > entry.seq:
                return _bad(checked, entry.seq, REORDERED, f"links to seq {owner}, stored after it", prev)
            if prev is not None and prev2 is not None and owner == prev2.seq:
                return _bad(checked, prev.seq, INSERTED, f"seq {entry.seq} links to seq {prev2.seq}", prev2)
            if own != entry.hash:
                return _bad(checked, entry.seq, EDITED, "hash and link do not match", prev)
            return _bad(checked, entry.seq, BROKEN_LINK,
                        f"does not follow seq {entry.seq - 1} (that entry re-hashed, or this one forged)", prev)
        if own != entry.hash:
            return _bad(checked, entry.seq, EDITED, "stored hash does not match the content", prev)
        prev2, prev, expected_seq = prev, entry, entry.seq + 1
    for seq, published in sorted((anchors or {}).items()):
        if prev is None or seq > prev.seq:
            return _bad(checked, seq, DELETED, "a published entry is missing (the chain was cut)", prev)
        stored = session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == seq))
        if stored != published:
            return _bad(checked, seq, EDITED, "differs from the published hash (the chain was rewritten)", prev)
    return VerifyResult(ok=True, checked=checked, last_seq=prev.seq if prev else None,
                        last_hash=prev.hash if prev else None)


def _bad(checked: int, seq: int, problem: str, detail: str, prev: AuditEntry | None) -> VerifyResult:
    return VerifyResult(ok=False, checked=checked, first_bad_seq=seq, problem=problem, detail=detail,
                        last_seq=prev.seq if prev else None, last_hash=prev.hash if prev else None)


# --- publishing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayHash:
    """The head of the chain at the end of one local day: the entries stamped that day, the last
    of them (``last_seq``, ``last_hash``, ``None`` when there were none) and the first."""

    day: date
    entries: int
    first_seq: int | None
    last_seq: int | None
    last_hash: str | None

    def as_dict(self) -> dict[str, Any]:
        """Return the record as JSON values (``day`` as YYYY-MM-DD)."""
        return {"day": self.day.isoformat(), "entries": self.entries, "first_seq": self.first_seq,
                "last_seq": self.last_seq, "last_hash": self.last_hash}


def day_bounds(day: date, zone: ZoneInfo = LOCAL_ZONE) -> tuple[datetime, datetime]:
    """Return the UTC start (inclusive) and end (exclusive) of local ``day`` in ``zone``."""
    start = datetime.combine(day, time.min, tzinfo=zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def day_hash(session: Session, *, day: date, zone: ZoneInfo = LOCAL_ZONE) -> DayHash:
    """Return the day's entry count and its last entry's ``seq`` and ``hash`` (local day in
    ``zone``, Asia/Shanghai by default): the value to publish, and to give back to
    :func:`verify` as an anchor."""
    start, end = day_bounds(day, zone)
    window = (AuditEntry.at >= start, AuditEntry.at < end)
    count, first, last = session.execute(
        select(func.count(), func.min(AuditEntry.seq), func.max(AuditEntry.seq)).where(*window)
    ).one()
    last_hash = session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == last)) if last is not None else None
    return DayHash(day=day, entries=int(count), first_seq=first, last_seq=last, last_hash=last_hash)


def day_hashes(session: Session, *, days: Iterable[date], zone: ZoneInfo = LOCAL_ZONE) -> list[DayHash]:
    """Return :func:`day_hash` for each of ``days``, in the order given."""
    return [day_hash(session, day=d, zone=zone) for d in days]
