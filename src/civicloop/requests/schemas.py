"""API shapes of the ``requests`` domain. Inputs are strict (unknown fields refused); outputs
never carry a citizen's contact unmasked."""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from civicloop.catalog.models import DeadlineTier
from civicloop.core.i18n import translate
from civicloop.core.validation import (
    Id,
    IdNumber,
    Phone,
    Text,
    mask_id_number,
    mask_name,
    mask_phone,
    mask_phones_in_text,
)
from civicloop.requests.models import (
    Channel,
    RejectReason,
    RequestEvent,
    Satisfaction,
    ServiceRequest,
    Supervision,
    Triage,
    WorkOrder,
)

Title = Text(200, required=True)
Body = Text(4000, required=True)
Short = Text(100)
Address = Text(500)
Note = Text(2000)
Reason = Text(500, required=True)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class RequestCreate(Strict):
    """A new request (诉求) as intake receives it. ``description`` holds at most 4,000 characters,
    the Open311 GeoReport v2 limit. Latitude and longitude are WGS 84 degrees and come together."""

    channel: Channel = Channel.HOTLINE
    title: Title  # type: ignore[valid-type]
    description: Body  # type: ignore[valid-type]
    citizen_name: Short = ""  # type: ignore[valid-type]
    citizen_phone: Phone = ""
    citizen_id_number: IdNumber = ""  # type: ignore[valid-type]
    address: Address = ""  # type: ignore[valid-type]
    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)] | None = None
    grid_id: Id | None = None
    category_id: Id | None = None
    deadline_tier: DeadlineTier | None = None
    support_count: Annotated[int, Field(ge=0, le=1_000_000)] = 0

    @model_validator(mode="after")
    def _pair(self) -> RequestCreate:
        if (self.lat is None) != (self.lon is None):
            # name the missing coordinate, so the client sees which field to fill in
            missing = "lon" if self.lon is None else "lat"
            raise ValidationError.from_exception_data(type(self).__name__, [InitErrorDetails(
                type=PydanticCustomError("latlon_pair", "lat and lon go together"), loc=(missing,), input=None)])
        return self


class AcceptIn(Strict):
    category_id: Id | None = None
    deadline_tier: DeadlineTier | None = None
    note: Note = ""  # type: ignore[valid-type]


class RejectIn(Strict):
    reason: RejectReason
    duplicate_of_id: Id | None = None
    note: Note = ""  # type: ignore[valid-type]


class DispatchIn(Strict):
    lead_unit_id: Id
    assisting_unit_ids: Annotated[list[Id], Field(max_length=20)] = []
    note: Note = ""  # type: ignore[valid-type]


class ReturnIn(Strict):
    reason: Reason  # type: ignore[valid-type]


class ExtensionIn(Strict):
    """Ask for a new deadline: either ``until`` (an aware time) or ``extra_working_days``."""

    reason: Reason  # type: ignore[valid-type]
    until: AwareDatetime | None = None
    extra_working_days: Annotated[int, Field(ge=1, le=60)] | None = None


class ExtensionDecisionIn(Strict):
    approve: StrictBool
    due_at: AwareDatetime | None = None
    reason: Note = ""  # type: ignore[valid-type]


class ReplyIn(Strict):
    text: Body  # type: ignore[valid-type]


class CallbackIn(Strict):
    resolved: StrictBool
    satisfaction: Satisfaction
    note: Note = ""  # type: ignore[valid-type]


class CloseUnratedIn(Strict):
    reason: Reason  # type: ignore[valid-type]


class ReopenIn(Strict):
    reason: Reason  # type: ignore[valid-type]


class SuperviseIn(Strict):
    note: Reason  # type: ignore[valid-type]
    redo: StrictBool = False


class CloseSupervisionIn(Strict):
    note: Note = ""  # type: ignore[valid-type]


class WorkOrderOut(BaseModel):
    """A work order as the API shows it. Times are ISO 8601 in UTC."""

    id: int
    request_id: int
    unit_id: int
    role: str
    round: int
    status: str
    fallback: bool
    deadline_tier: str
    dispatched_at: datetime
    response_due_at: datetime
    acknowledged_at: datetime | None
    due_at: datetime | None
    due_provisional: bool
    returned_at: datetime | None
    return_reason: str | None
    extension_status: str | None
    extension_until: datetime | None
    extension_reason: str | None
    replied_at: datetime | None
    reply_text: str | None
    callback_at: datetime | None
    resolved: bool | None
    satisfaction: str | None
    overdue: bool
    closed_at: datetime | None

    @classmethod
    def of(cls, order: WorkOrder) -> WorkOrderOut:
        out = cls.model_validate(order, from_attributes=True)
        out.reply_text = mask_phones_in_text(out.reply_text)
        return out


class RequestOut(BaseModel):
    """A request as the API shows it: the citizen's name and phone are masked."""

    id: int
    channel: str
    title: str
    description: str
    citizen_name: str
    citizen_phone: str
    citizen_id_number: str
    address: str
    lat: float | None
    lon: float | None
    grid_id: int | None
    street_id: int | None
    district_id: int | None
    category_id: int | None
    deadline_tier: str
    support_count: int
    status: str
    reject_reason: str | None
    duplicate_of_id: int | None
    lead_unit_id: int | None
    return_count: int
    reopen_count: int
    fallback: bool
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    work_orders: list[WorkOrderOut]

    @classmethod
    def of(cls, request: ServiceRequest) -> RequestOut:
        data: dict[str, Any] = {c: getattr(request, c) for c in cls.model_fields if c != "work_orders"}
        data["citizen_name"] = mask_name(request.citizen_name)
        data["citizen_phone"] = mask_phone(request.citizen_phone)
        data["citizen_id_number"] = mask_id_number(request.citizen_id_number or "")
        data["title"] = mask_phones_in_text(request.title)
        data["description"] = mask_phones_in_text(request.description)
        data["work_orders"] = [WorkOrderOut.of(o) for o in request.work_orders]
        return cls.model_validate(data)


class EventOut(BaseModel):
    id: int
    work_order_id: int | None
    action: str
    from_status: str | None
    to_status: str | None
    actor: str
    actor_role: str
    reason: str
    data: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, event: RequestEvent) -> EventOut:
        return cls.model_validate(event, from_attributes=True)


class SupervisionOut(BaseModel):
    id: int
    request_id: int
    work_order_id: int | None
    reason: str
    note: str
    redo: bool
    open: bool
    opened_by: str
    created_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, case: Supervision) -> SupervisionOut:
        return cls.model_validate(case, from_attributes=True)


class CalendarDayIn(Strict):
    date: dt.date
    working: StrictBool
    name: Short = ""  # type: ignore[valid-type]


class CalendarYearIn(Strict):
    """A year's official schedule: the exceptions to the weekend rule."""

    days: Annotated[list[CalendarDayIn], Field(max_length=400)]
    source: Text(200) = ""  # type: ignore[valid-type]


class DecideIn(Strict):
    """A dispatcher's decision on a queued request: a category and/or a lead unit (without a unit,
    the routing table picks it for the category at the request's place)."""

    category_id: Id | None = None
    lead_unit_id: Id | None = None
    assisting_unit_ids: Annotated[list[Id], Field(max_length=20)] = []
    note: Note = ""  # type: ignore[valid-type]


class TriageOut(BaseModel):
    """What intelligent intake found for one request. ``reasons`` are codes, ``reason_texts`` the
    same in the caller's language; ``latency_seconds`` runs from filing to the routed work order."""

    request_id: int
    outcome: str
    queued: bool
    model_version: str
    label: str
    confidence: float | None
    category_id: int | None
    suggestions: list[dict[str, Any]]
    place: dict[str, Any]
    duplicate_of_id: int | None
    duplicate_score: float | None
    rule_id: int | None
    reasons: list[str]
    reason_texts: list[str]
    triaged_at: datetime
    routed_at: datetime | None
    latency_seconds: float | None
    decided_by: str | None
    decided_at: datetime | None
    decided_category_id: int | None
    decided_unit_id: int | None
    decided_rank: int | None

    @classmethod
    def of(cls, triage: Triage, lang: str = "zh") -> TriageOut:
        data: dict[str, Any] = {c: getattr(triage, c) for c in cls.model_fields if c != "reason_texts"}
        data["reason_texts"] = [translate(f"triage.{code}", lang) for code in triage.reasons]
        return cls.model_validate(data)


class QueueItemOut(BaseModel):
    """One request in the dispatcher's queue (待人工派单), with what intake suggests."""

    request: RequestOut
    triage: TriageOut


class IntakeOut(RequestOut):
    """A request just filed, with what intelligent intake did with it (``triage`` null when intake
    did not run, or has not run yet: ``triage_pending`` true when the request waits in the deferred
    intake queue, ``triage_mode = "deferred"``; ``GET /api/v1/requests/{id}/triage`` then answers
    within about a second)."""

    triage: TriageOut | None = None
    triage_pending: bool = False


class ContactIn(Strict):
    """Why the contact is needed (recorded in the audit log with the reveal), e.g. "回访"."""

    purpose: Text(100, required=True)  # type: ignore[valid-type]


class ContactOut(BaseModel):
    """The citizen's contact in full (PIPL: revealed to a role that needs it, each reveal audited);
    empty strings after erasure (``erased`` true)."""

    request_id: int
    citizen_name: str
    citizen_phone: str
    citizen_id_number: str
    erased: bool
