"""HTTP routes of 未诉先办 under ``/api/v1/analytics``: the findings, accepting one as work or
dismissing it, running the finders, and the reply-quality table."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict

from civicloop.analytics import service
from civicloop.analytics.models import FindingStatus, StoredFinding
from civicloop.core.http import Caller, DbSession, SettingsDep, allow
from civicloop.core.roles import Role
from civicloop.core.validation import MAX_ID, Text
from civicloop.requests.service import Actor

router = APIRouter(prefix="/api/v1/analytics", tags=["未诉先办 findings"])

READERS = {Role.ANALYST, Role.SUPERVISOR, Role.DISPATCHER, Role.ADMIN}
DECIDERS = {Role.ANALYST, Role.SUPERVISOR, Role.ADMIN}


class FindingOut(BaseModel):
    id: int
    kind: str
    key: str
    rank: int
    score: float
    summary: str
    place: str
    category: str
    district: str
    street: str
    start_at: datetime
    end_at: datetime
    people: int
    request_ids: list[int]
    details: dict[str, Any]
    status: str
    request_id: int | None
    decided_by: str | None
    decided_at: datetime | None
    note: str
    found_at: datetime

    @classmethod
    def of(cls, row: StoredFinding) -> FindingOut:
        return cls.model_validate(row, from_attributes=True)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Text(2000) = ""  # type: ignore[valid-type]


@router.get("/findings", response_model=list[FindingOut], summary="未诉先办发现 Findings")
def list_findings(
    session: DbSession, caller: Annotated[Caller, allow(READERS, "read_findings")],
    kind: Annotated[str | None, Query(pattern="^(hotspot|surge|cooccurrence|asset|topic)$")] = None,
    status: FindingStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[FindingOut]:
    """Return the stored findings (hotspots, surges, co-occurrences, asset alerts, monthly topics) by
    kind and rank, optionally of one ``kind`` and ``status`` (proposed, accepted, dismissed). Staff
    roles only (403 otherwise)."""
    rows = service.list_findings(session, kind=kind, status=status, limit=limit, offset=offset)
    return [FindingOut.of(r) for r in rows]


@router.get("/findings/{finding_id}", response_model=FindingOut, summary="发现详情 One finding")
def read_finding(finding_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: DbSession,
                 caller: Annotated[Caller, allow(READERS, "read_findings")]) -> FindingOut:
    """Return one finding with its evidence request ids; 404 when there is none."""
    return FindingOut.of(service.get_finding(session, finding_id=finding_id))


@router.post("/findings/{finding_id}/accept", response_model=FindingOut, summary="转为主动治理 Accept as work")
def accept(
    finding_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: DbSession,
    caller: Annotated[Caller, allow(DECIDERS, "accept_finding")], settings: SettingsDep,
    body: DecisionIn | None = None,
) -> FindingOut:
    """Turn a proposed finding into a request of channel ``proactive`` that intake routes and deadlines
    like any other; the finding keeps the request's id (``request_id``). Analysts, supervisors and
    admins only (403). The body (``{"note": …}``) is optional. 422 when the finding was already accepted or
    dismissed; 404 when unknown."""
    row = service.accept_finding(session, finding_id=finding_id, settings=settings, note=body.note if body else "",
                                 actor=Actor(caller.name, caller.role, caller.unit_id))
    return FindingOut.of(row)


@router.post("/findings/{finding_id}/dismiss", response_model=FindingOut, summary="忽略 Dismiss")
def dismiss(
    finding_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: DbSession,
    caller: Annotated[Caller, allow(DECIDERS, "dismiss_finding")], body: DecisionIn | None = None,
) -> FindingOut:
    """Dismiss a proposed finding; it will not be proposed again. Same roles and errors as accepting."""
    row = service.dismiss_finding(session, finding_id=finding_id, note=body.note if body else "",
                                  actor=Actor(caller.name, caller.role, caller.unit_id))
    return FindingOut.of(row)
