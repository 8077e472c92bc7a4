"""Tables of the ``catalog`` domain: the three-level category tree and the routing table."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from civicloop.core.db import Base, UTCDateTime


class DeadlineTier(StrEnum):
    """The four deadline tiers of Beijing practice (时限). Hour tiers count clock time; day tiers
    count working days of the Chinese calendar."""

    URGENT_2H = "2h"  # 紧急：2 小时
    HOURS_24 = "24h"  # 水电气热等：24 小时
    DAYS_7 = "7wd"  # 一般：7 个工作日
    DAYS_15 = "15wd"  # 复杂：15 个工作日


class Category(Base):
    """A node of the category tree. ``path`` is the names from the root joined by '/'."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    level: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"), index=True)
    path: Mapped[str] = mapped_column(String(400), unique=True)
    deadline_tier: Mapped[DeadlineTier] = mapped_column(String(8))
    default_unit_kind: Mapped[str] = mapped_column(String(20))

    parent: Mapped[Category | None] = relationship(remote_side="Category.id")


class LeadTarget(StrEnum):
    """Who leads (主办) when a routing rule fires: a fixed unit, or the unit of the place (属地)."""

    UNIT = "unit"  # the rule's own unit (a department, a utility)
    STREET = "street"  # the street office / township of the request's place (街乡镇)
    DISTRICT = "district"  # the district of the request's place
    COMMUNITY = "community"  # the community of the request's grid (社区 / 村)


class RoutingRule(Base):
    """One line of the routing table (分拨规则): category × place → lead and assisting units.

    A rule applies to its category and every category below it (``category_id`` null: any), in its
    district or street (null: anywhere). ``lead_target`` says whether the lead is ``lead_unit_id``
    or the street, district or community where the request lies. Among applicable rules the
    highest ``priority`` wins, then the most specific (deeper category, then street over district
    over anywhere), then the lowest id (see :func:`civicloop.catalog.routing.choose_rule`).
    """

    __tablename__ = "routing_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"), index=True)
    district_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"))
    street_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"))
    lead_target: Mapped[LeadTarget] = mapped_column(String(12))
    lead_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"))
    assisting_unit_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    note: Mapped[str] = mapped_column(String(500), default="")
    updated_by: Mapped[str] = mapped_column(String(100), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
