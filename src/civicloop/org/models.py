"""Tables of the ``org`` domain: handling units in a hierarchy, and grids with their polygons."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from civicloop.core.db import Base


class UnitKind(StrEnum):
    """Kinds of handling unit. The first three form the administrative hierarchy."""

    DISTRICT = "district"  # 区
    STREET = "street"  # 街道 / 乡镇
    COMMUNITY = "community"  # 社区 / 村
    DEPARTMENT = "department"  # 委办局
    PROPERTY = "property"  # 物业
    UTILITY = "utility"  # 水电气热等公共服务企业


class OrgUnit(Base):
    """A handling unit. ``parent`` is the unit it reports to (a community's street, a street's
    district; a department's or a utility's district, or none for a city-level one).

    ``parent`` and ``grids`` load when first read (one query each), not with every unit: intake
    reads units to check and name them, and joining three ancestors and selecting the grids with
    their polygons made each read three queries (issue 9). Walks up the hierarchy for many grids use
    the cached ``org.service.grid_place`` instead."""

    __tablename__ = "org_units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[UnitKind] = mapped_column(String(20), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    contact_name: Mapped[str] = mapped_column(String(100), default="")
    contact_phone: Mapped[str] = mapped_column(String(40), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    parent: Mapped[OrgUnit | None] = relationship(remote_side="OrgUnit.id", lazy="select")
    grids: Mapped[list[Grid]] = relationship(back_populates="community", lazy="select")


class Grid(Base):
    """A grid (网格): the smallest management area, with a GeoJSON polygon, inside a community."""

    __tablename__ = "grids"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    community_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    geometry: Mapped[dict] = mapped_column(JSON)

    community: Mapped[OrgUnit] = relationship(back_populates="grids")


class PlaceKind(StrEnum):
    """Kinds of named place in the gazetteer (地名库)."""

    DISTRICT = "district"
    STREET = "street"
    ESTATE = "estate"  # 小区 / 花园 / 新村
    ROAD = "road"  # 路 / 大道 / 大街


class Place(Base):
    """A place name the deployment knows (地名库): where it lies (district, grid) and its aliases.

    Filled by the importers from the names their data uses, and by admins; intake matches request
    texts against it.
    """

    __tablename__ = "places"
    __table_args__ = (UniqueConstraint("name", "kind", "district_id", name="uq_places_name_kind_district"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[PlaceKind] = mapped_column(String(16))
    district_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"))
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"))
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(40), default="")
