"""Tables of the ``catalog`` domain: the three-level category tree."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from civicloop.core.db import Base


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
