"""Tables of the ``analytics`` domain: the findings of 未诉先办 and what people decided about them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from civicloop.core.db import Base, UTCDateTime


class FindingStatus(StrEnum):
    """Where a finding stands: proposed by the finders, accepted as work, or dismissed."""

    PROPOSED = "proposed"  # 待研判
    ACCEPTED = "accepted"  # 已立案（转为主动治理诉求）
    DISMISSED = "dismissed"  # 已忽略


class StoredFinding(Base):
    """A finding (hotspot, surge, co-occurrence, asset alert, monthly topic) as the last run of the
    finders saw it. ``key`` identifies what was found across runs: an accepted or dismissed key is
    never proposed again. ``start_at``/``end_at`` are the first and last evidence request (UTC);
    ``request_ids`` the evidence; ``request_id`` the proactive request it became (channel
    ``proactive``)."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    summary: Mapped[str] = mapped_column(String(300))
    place: Mapped[str] = mapped_column(String(200), default="")
    category: Mapped[str] = mapped_column(String(400), default="")
    district: Mapped[str] = mapped_column(String(200), default="")
    street: Mapped[str] = mapped_column(String(200), default="")
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    people: Mapped[int] = mapped_column(Integer, default=0)
    request_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[FindingStatus] = mapped_column(String(12), index=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("service_requests.id"))
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str] = mapped_column(Text, default="")
    found_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
