"""Tables of the ``requests`` domain: service requests, work orders, events and supervisions.

Statuses are ``StrEnum`` values stored as strings, so the same code runs on SQLite and PostgreSQL.
Every time is stored in UTC (``UTCDateTime``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from civicloop.core.crypto import EncryptedText
from civicloop.core.db import Base, UTCDateTime


class Channel(StrEnum):
    """Where a request came from (渠道)."""

    HOTLINE = "hotline"
    APP = "app"
    WEB = "web"
    GRID_WORKER = "grid_worker"
    SOCIAL_MEDIA = "social_media"
    OPEN311 = "open311"
    PROACTIVE = "proactive"


class RequestStatus(StrEnum):
    """Status of a service request in the closed loop."""

    SUBMITTED = "submitted"  # 待受理
    ACCEPTED = "accepted"  # 已受理，待派单
    REJECTED = "rejected"  # 不予受理
    DISPATCHED = "dispatched"  # 已派单，待签收
    IN_PROGRESS = "in_progress"  # 办理中
    REPLIED = "replied"  # 已办结，待回访
    CLOSED = "closed"  # 已结案


OPEN_STATUSES = (RequestStatus.SUBMITTED, RequestStatus.ACCEPTED, RequestStatus.DISPATCHED, RequestStatus.IN_PROGRESS,
                 RequestStatus.REPLIED)
"""Statuses of a request another can repeat (重复件): filed and not yet closed or rejected."""
OPEN_SQL = "status IN ({})".format(", ".join(f"'{s.value}'" for s in OPEN_STATUSES))
"""The open statuses as SQL with constants: the condition of the duplicate check's partial indexes, which
a query proves it stays within only when it states the same constants (never bound parameters)."""


class WorkOrderStatus(StrEnum):
    """Status of one work order (one request × one unit)."""

    PENDING = "pending"  # 待签收
    ACKNOWLEDGED = "acknowledged"  # 已签收
    RETURNED = "returned"  # 已退单
    EXTENSION_REQUESTED = "extension_requested"  # 延期申请中
    REPLIED = "replied"  # 已答复
    CLOSED = "closed"  # 已结案
    REOPENED = "reopened"  # 已重办（由新一轮工单接替）
    CANCELLED = "cancelled"  # 已撤销


class WorkOrderRole(StrEnum):
    LEAD = "lead"  # 主办
    ASSISTING = "assisting"  # 协办


class RejectReason(StrEnum):
    DUPLICATE = "duplicate"  # 重复件
    OUT_OF_SCOPE = "out_of_scope"  # 不属于受理范围
    NO_CONTENT = "no_content"  # 无实质内容


class Satisfaction(StrEnum):
    SATISFIED = "satisfied"  # 满意
    BASICALLY_SATISFIED = "basically_satisfied"  # 基本满意
    DISSATISFIED = "dissatisfied"  # 不满意


class ExtensionStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"


class SupervisionReason(StrEnum):
    OVERDUE = "overdue"  # 超期
    DISSATISFIED = "dissatisfied"  # 不满意
    MANUAL = "manual"  # 督办人员发起


def _text_key(context: Any) -> str | None:
    """Column default of ``ServiceRequest.text_key``: the digest of the inserted title and body."""
    from civicloop.intelligence.duplicates import text_key

    values = context.get_current_parameters()
    return text_key(values.get("title"), values.get("description"))


class ServiceRequest(Base):
    """A citizen's request (诉求). The citizen's contact is stored and only ever shown masked.

    ``text_key`` and ``place_key`` serve the duplicate check (``requests.triage_steps.find_duplicate``):
    the digest of the normalised title + body (``intelligence.duplicates.text_key``; filled at insert
    from the texts, which are never edited after filing) and of the place label intake found
    (``intelligence.duplicates.place_key``; set by triage), both indexed so that the database returns
    only the open requests that can be a copy, instead of every open request of the window.

    The duplicate check's "newest open requests at this grid / street / label / without a place" reads
    partial indexes of the open requests by place and filing time, walking back from the newest until the
    window or the limit, whatever the place's history and however many requests are open elsewhere (with
    an index on the place alone it read every request ever filed there, and with the status index all the
    open ones: a replay slowed from 77 to 49 requests/s over its first 30,000, issue 9); "open requests
    with this text" reads the text key with the status."""

    __tablename__ = "service_requests"
    __table_args__ = (
        Index("ix_service_requests_grid_created", "grid_id", "created_at"),
        Index("ix_service_requests_street_created", "street_id", "created_at"),
        Index("ix_service_requests_text_key_status", "text_key", "status"),
        # the duplicate check (requests.triage_steps.candidate_statement): open requests only, so that its
        # walk neither grows with a place's closed history nor meets the open requests of other places
        *(Index(f"ix_service_requests_open_{name}", *columns, postgresql_where=text(where), sqlite_where=text(where))
          for name, columns, where in (
              ("grid", ("grid_id", "created_at"), OPEN_SQL),
              ("street", ("street_id", "created_at"), OPEN_SQL),
              ("place_key", ("place_key", "created_at"), OPEN_SQL),
              ("unplaced", ("created_at",),
               f"{OPEN_SQL} AND grid_id IS NULL AND street_id IS NULL AND place_key IS NULL"))),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[Channel] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    # the citizen's contact, encrypted at rest (core.crypto), erased after the retention period
    citizen_name: Mapped[str] = mapped_column(EncryptedText(), default="")
    citizen_phone: Mapped[str] = mapped_column(EncryptedText(), default="")
    citizen_id_number: Mapped[str] = mapped_column(EncryptedText(), default="")
    citizen_key: Mapped[str | None] = mapped_column(String(16), index=True)  # blind index of the phone
    contact_erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    address: Mapped[str] = mapped_column(String(500), default="")
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"))
    street_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"))
    district_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"), index=True)
    deadline_tier: Mapped[str] = mapped_column(String(8))
    support_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[RequestStatus] = mapped_column(String(20), index=True)
    reject_reason: Mapped[str | None] = mapped_column(String(20))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("service_requests.id"))
    lead_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    return_count: Mapped[int] = mapped_column(Integer, default=0)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    external_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # the resident's account that filed it (a resident sees only their own requests), if logged in
    submitted_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)
    text_key: Mapped[str | None] = mapped_column(String(16), default=_text_key)
    place_key: Mapped[str | None] = mapped_column(String(16))

    work_orders: Mapped[list[WorkOrder]] = relationship(
        back_populates="request", order_by="WorkOrder.id", lazy="selectin"
    )


class WorkOrder(Base):
    """One assignment of a request to one unit (工单). ``round`` counts re-dispatches and reopens.

    ``response_due_at`` (签收时限) runs from dispatch; ``due_at`` (办理时限) from acknowledgement.
    """

    __tablename__ = "work_orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("service_requests.id"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    role: Mapped[WorkOrderRole] = mapped_column(String(12))
    round: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[WorkOrderStatus] = mapped_column(String(24), index=True)
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    deadline_tier: Mapped[str] = mapped_column(String(8))
    dispatched_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    response_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    due_provisional: Mapped[bool] = mapped_column(Boolean, default=False)
    returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    return_reason: Mapped[str | None] = mapped_column(String(500))
    extension_status: Mapped[str | None] = mapped_column(String(12))
    extension_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    extension_reason: Mapped[str | None] = mapped_column(String(500))
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reply_text: Mapped[str | None] = mapped_column(Text)
    callback_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    resolved: Mapped[bool | None] = mapped_column(Boolean)
    satisfaction: Mapped[str | None] = mapped_column(String(24))
    overdue: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)

    request: Mapped[ServiceRequest] = relationship(back_populates="work_orders")

    __table_args__ = (Index("ix_work_orders_unit_status", "unit_id", "status"),)


class RequestEvent(Base):
    """One line of a request's history: who fired which action, when, from what to what, and why."""

    __tablename__ = "request_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("service_requests.id"), index=True)
    work_order_id: Mapped[int | None] = mapped_column(ForeignKey("work_orders.id"))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str | None] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(100))
    actor_role: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Supervision(Base):
    """A supervision case (督办) on an overdue or dissatisfied request, or opened by hand."""

    __tablename__ = "supervisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("service_requests.id"), index=True)
    work_order_id: Mapped[int | None] = mapped_column(ForeignKey("work_orders.id"))
    reason: Mapped[SupervisionReason] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    redo: Mapped[bool] = mapped_column(Boolean, default=False)
    open: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    opened_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TriageOutcome(StrEnum):
    """What intelligent intake (智能分拨) did with a new request."""

    AUTO_DISPATCHED = "auto_dispatched"  # 自动派单：confident, a routing rule fired
    QUEUED = "queued"  # 待人工派单：in the dispatcher's queue with suggestions
    DUPLICATE = "duplicate"  # 重复件：linked to an open master request
    DECIDED = "decided"  # 已人工派单：a dispatcher chose from the queue
    WITHDRAWN = "withdrawn"  # 已出队：handled outside the queue (rejected, dispatched by hand)


class Triage(Base):
    """The intake pipeline's record of one request: what the model thought, where the request
    lies, whether it repeats an open one, which rule routed it, and what a dispatcher chose.

    ``suggestions`` holds up to three ``{"category_id", "path", "probability", "lead_unit_id",
    "lead_unit_name", "assisting_unit_ids", "rule_id", "why"}``; ``reasons`` the codes that sent the
    request to the queue. ``latency_seconds`` runs from the request's filing to its routed work
    order (automatic or by hand). A dispatcher's ``decided_*`` choice is training data.
    """

    __tablename__ = "triages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("service_requests.id"), unique=True)
    outcome: Mapped[TriageOutcome] = mapped_column(String(20), index=True)
    queued: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    model_version: Mapped[str] = mapped_column(String(80), default="")
    label: Mapped[str] = mapped_column(String(100), default="")
    confidence: Mapped[float | None] = mapped_column(Float)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    suggestions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    place: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("service_requests.id"))
    duplicate_score: Mapped[float | None] = mapped_column(Float)
    rule_id: Mapped[int | None] = mapped_column(Integer)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    triaged_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    latency_seconds: Mapped[float | None] = mapped_column(Float)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    decided_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"))
    decided_rank: Mapped[int | None] = mapped_column(Integer)


class TriageQueueEntry(Base):
    """A request filed with ``triage_mode = "deferred"``, waiting for intelligent intake.

    Written in the filing's transaction (so a 201 means the request is stored *and* will be
    triaged), deleted in the transaction that triages it (``requests.triage_queue``).
    ``enqueued_at`` is the filing time (UTC)."""

    __tablename__ = "triage_queue"

    request_id: Mapped[int] = mapped_column(ForeignKey("service_requests.id"), primary_key=True)
    enqueued_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IdempotencyKey(Base):
    """A client's ``Idempotency-Key`` for ``POST /api/v1/requests`` and the request it filed.

    ``body_hash`` is the SHA-256 of the submission's canonical JSON, so a retry with the same key
    and the same content gets the same request, and the same key with other content is refused.
    The unique ``key`` decides between two submissions racing with one key. ``request_id`` is
    empty only inside the transaction that claims the key (it is set before that commits)."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("service_requests.id"), index=True)
    body_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
