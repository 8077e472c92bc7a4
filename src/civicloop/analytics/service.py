"""Use cases of 未诉先办: keep the finders' findings, and turn the ones a person accepts into work.

A finding accepted by an analyst or supervisor becomes a request of channel ``proactive`` that goes
through the same loop as a citizen's (intelligent intake: routed and deadlined like any other), with
the evidence in its description and the link kept on the finding. Findings already accepted or
dismissed are not proposed again: the finders' ``key`` recognises them on the next run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloop.analytics.findings import Finding
from civicloop.analytics.models import FindingStatus, StoredFinding
from civicloop.catalog.service import find_category_by_path
from civicloop.core.errors import FieldError, NotFound
from civicloop.core.settings import Settings
from civicloop.requests import intake, triage_queue
from civicloop.requests.models import Channel, ServiceRequest
from civicloop.requests.service import Actor, now_or

KIND_WORDS = {"hotspot": "热点", "surge": "高频/季节性激增", "cooccurrence": "多类并发", "asset": "设施反复故障",
              "topic": "每月一题"}


def _aware(local: datetime, tz: ZoneInfo) -> datetime:
    """A finder's local wall-clock time (naive) as an aware datetime in ``tz``."""
    return local.replace(tzinfo=tz) if local.tzinfo is None else local


def store_findings(session: Session, findings: Iterable[Finding], *, settings: Settings,
                   now: datetime | None = None) -> dict[str, int]:
    """Keep the findings of one run: a new key is stored as ``proposed``; a key still proposed is
    refreshed (rank, score, evidence); a key accepted or dismissed before is left alone (not proposed
    again). Two findings of one run with the same key (the same place, words and month found twice,
    e.g. by two overlapping windows) are one matter: the first, best-ranked, is kept and the others are
    counted as skipped. Returns ``{"new", "refreshed", "skipped"}`` counts."""
    now = now_or(now)
    tz = settings.tz
    unique: dict[str, Finding] = {}
    duplicates = 0
    for finding in findings:
        if finding.key in unique:
            duplicates += 1
        else:
            unique[finding.key] = finding
    findings = list(unique.values())
    existing = {f.key: f for f in session.scalars(
        select(StoredFinding).where(StoredFinding.key.in_([f.key for f in findings])))} if findings else {}
    counts = {"new": 0, "refreshed": 0, "skipped": duplicates}
    for finding in findings:
        row = existing.get(finding.key)
        if row is not None and row.status != FindingStatus.PROPOSED:
            counts["skipped"] += 1
            continue
        if row is None:
            row = StoredFinding(key=finding.key, status=FindingStatus.PROPOSED)
            session.add(row)
            counts["new"] += 1
        else:
            counts["refreshed"] += 1
        row.kind, row.rank, row.score = finding.kind, finding.rank, float(finding.score)
        row.summary = finding.summary[:300]
        row.place, row.category = (finding.place or "")[:200], (finding.category or "")[:400]
        row.district, row.street = (finding.district or "")[:200], (finding.street or "")[:200]
        row.start_at, row.end_at = _aware(finding.start, tz), _aware(finding.end, tz)
        row.people, row.request_ids = int(finding.people), [int(i) for i in finding.request_ids]
        row.details, row.found_at = dict(finding.details), now
    session.flush()
    return counts


def list_findings(session: Session, *, kind: str | None = None, status: FindingStatus | None = None,
                  limit: int = 100, offset: int = 0) -> Sequence[StoredFinding]:
    """Return stored findings, by kind then rank (most urgent first), optionally of one kind/status."""
    query = select(StoredFinding).order_by(StoredFinding.kind, StoredFinding.rank, StoredFinding.id)
    if kind is not None:
        query = query.where(StoredFinding.kind == kind)
    if status is not None:
        query = query.where(StoredFinding.status == status)
    return session.scalars(query.limit(limit).offset(offset)).all()


def get_finding(session: Session, *, finding_id: int) -> StoredFinding:
    """Return finding ``finding_id``; raises ``NotFound`` (404)."""
    row = session.get(StoredFinding, finding_id)
    if row is None:
        raise NotFound("Finding", finding_id)
    return row


def evidence_text(row: StoredFinding, tz: ZoneInfo) -> str:
    """Return the description of the proactive request made from a finding: what was found, where,
    when, how many people, and the evidence request ids (at most 50 listed)."""
    start = row.start_at.astimezone(tz).strftime("%Y-%m-%d")
    end = row.end_at.astimezone(tz).strftime("%Y-%m-%d")
    ids = row.request_ids[:50]
    more = f" 等 {len(row.request_ids)} 件" if len(row.request_ids) > len(ids) else ""
    lines = [
        f"【未诉先办·{KIND_WORDS.get(row.kind, row.kind)}】{row.summary}",
        f"地点：{row.place or row.street or row.district or '未定位'}；时间：{start} 至 {end}；"
        f"涉及诉求 {len(row.request_ids)} 件、群众 {row.people} 人；评分 {row.score:.2f}。",
        f"证据诉求：{'、'.join(f'#{i}' for i in ids)}{more}",
    ]
    return "\n".join(lines)


def _common(values: Iterable[int | None]) -> int | None:
    counted = Counter(v for v in values if v is not None)
    return counted.most_common(1)[0][0] if counted else None


def accept_finding(session: Session, *, finding_id: int, actor: Actor, settings: Settings, note: str = "",
                   now: datetime | None = None) -> StoredFinding:
    """Accept a proposed finding as work: file a request of channel ``proactive`` (title: the summary;
    description: :func:`evidence_text`; category: the finding's, when the tree has that path; district,
    street and grid: those most of the evidence requests share) and run intelligent intake on it, so it is
    routed and deadlined like any other. Returns the finding, now ``accepted`` with ``request_id`` set.

    Raises ``NotFound`` (404); ``FieldError`` (422) on ``finding_id`` when it is not ``proposed``."""
    started = time.perf_counter()
    now = now_or(now)
    row = get_finding(session, finding_id=finding_id)
    if row.status != FindingStatus.PROPOSED:
        raise FieldError("finding_id", "v.finding_decided", id=finding_id, status=str(row.status))
    category = find_category_by_path(session, row.category)
    evidence = session.execute(select(ServiceRequest.district_id, ServiceRequest.street_id, ServiceRequest.grid_id)
                               .where(ServiceRequest.id.in_(row.request_ids[:1000]))).all()
    data = intake.NewRequest(
        channel=Channel.PROACTIVE, title=row.summary[:200], description=evidence_text(row, settings.tz),
        address=(row.place or row.street or row.district)[:500],
        grid_id=_common(r.grid_id for r in evidence) if evidence else None,
        category_id=category.id if category is not None else None,
    )
    request = intake.submit(session, data=data, actor=actor, now=now)
    if request.grid_id is None and evidence:
        request.district_id = _common(r.district_id for r in evidence)
        request.street_id = _common(r.street_id for r in evidence)
    triage_queue.on_filing(session, request=request, settings=settings, started=started, now=now)
    row.status, row.request_id = FindingStatus.ACCEPTED, request.id
    row.decided_by, row.decided_at, row.note = actor.name, now, note
    session.flush()
    return row


def dismiss_finding(session: Session, *, finding_id: int, actor: Actor, note: str = "",
                    now: datetime | None = None) -> StoredFinding:
    """Dismiss a proposed finding (not a problem, or already handled): it is not proposed again.
    Raises ``NotFound`` (404); ``FieldError`` (422) when it is not ``proposed``."""
    row = get_finding(session, finding_id=finding_id)
    if row.status != FindingStatus.PROPOSED:
        raise FieldError("finding_id", "v.finding_decided", id=finding_id, status=str(row.status))
    row.status, row.decided_by, row.decided_at, row.note = FindingStatus.DISMISSED, actor.name, now_or(now), note
    session.flush()
    return row
