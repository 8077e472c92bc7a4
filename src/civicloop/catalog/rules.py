"""Pure rules of the catalogue: which deadline tier and which kind of unit a category gets.

The defaults follow Beijing's 12345 practice of four deadline tiers: matters of water, power, gas
and heating within 24 hours, threats to safety within 2 hours, general matters within 7 working
days and complex ones (land, planning, labour disputes, …) within 15. A city overrides any
category's tier in the database.
"""

from __future__ import annotations

from civicloop.catalog.models import DeadlineTier
from civicloop.org.models import UnitKind

URGENT_WORDS = ("事故", "火灾", "安全隐患", "燃气泄漏", "塌陷", "危险", "救助", "突发")
UTILITY_WORDS = ("供水", "停水", "供电", "停电", "燃气", "供暖", "供热", "暖气", "水电气")
COMPLEX_LEVEL1 = frozenset({"国土资源", "纪检监察", "政法", "经济管理", "劳动和社会保障", "党务政务"})
STREET_LEVEL1 = frozenset({"城乡建设", "环境保护", "民政", "农村农业"})


def default_tier(path: list[str]) -> DeadlineTier:
    """Return the default deadline tier for a category given its names from the root down."""
    text = "/".join(path)
    if any(word in text for word in URGENT_WORDS):
        return DeadlineTier.URGENT_2H
    if any(word in text for word in UTILITY_WORDS):
        return DeadlineTier.HOURS_24
    if path[0] in COMPLEX_LEVEL1:
        return DeadlineTier.DAYS_15
    return DeadlineTier.DAYS_7


def default_unit_kind(path: list[str]) -> UnitKind:
    """Return the kind of unit that usually handles a category (routing refines it per place)."""
    text = "/".join(path)
    if any(word in text for word in UTILITY_WORDS):
        return UnitKind.UTILITY
    if "物业" in text:
        return UnitKind.PROPERTY
    if path[0] in STREET_LEVEL1:
        return UnitKind.STREET
    return UnitKind.DEPARTMENT
