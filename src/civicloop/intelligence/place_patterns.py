"""Place names and answering units as the Teddy Cup 2020 C messages write them.

The publisher anonymised places as a letter and a number: ``A市`` (the city), ``A5区``/``K9县``/
``A9市`` (district-level areas), followed by real-looking street, township, estate and road
names (``A3区洋湖街道``, ``丽发新城小区``). Replies name the answering unit near their start
(``市住建局``, ``A5区教育局``, ``A3区洋湖街道``). These patterns find both; they are rules for
this data set's conventions, checked against the real files in tests/test_import_teddy.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CITY = re.compile(r"(?<![A-Za-z0-9])([A-Z])市")
DISTRICT = re.compile(r"(?<![A-Za-z0-9])([A-Z]\d{1,2}[区县市])")
STREET = re.compile(
    r"(?<![A-Za-z0-9])([A-Z]\d{1,2}[区县市])([\u4e00-\u9fa5]{2,5}?(?:街道|镇|乡))(?!府|政府|中心|学校|小学)"
)
ESTATE = re.compile(r"([\u4e00-\u9fa5]{2,8})(小区|花园|新村|花苑|家园|社区|新城)")
ESTATE_CUT = re.compile(r".*(?:[的是在了我诉映到于和与至对从把被市区县镇乡路号街道栋楼])")
"""An estate's name starts after the last function word or place word before it."""
ESTATE_GENERIC = {
    "居民", "老旧", "安置", "周边", "附近", "整个", "我们", "这个", "该", "本", "所在", "一个", "各个", "商品", "农村",
    "城市", "新建", "很多", "其他", "但是", "擅自更改", "住宅", "导致", "大型", "因为", "所以", "这些", "那个", "高档",
    "小型", "新",
}

UNIT = re.compile(
    r"((?:[A-Z]\d{0,2}[市区县]|市|县|区)[\u4e00-\u9fa5]{0,12}?"
    r"(?:局|委员会|办公室|人民政府|管委会|管理处|住建委|发改委|卫健委|教委))"
    r"|([A-Z]\d{1,2}[区县][\u4e00-\u9fa5]{2,5}?(?:街道办事处|街道|镇|乡)(?:人民政府)?)"
)
UNIT_SCAN_CHARS = 200
"""Replies name their unit near the start; later mentions are usually other bodies cited."""


ROAD = re.compile(r"([\u4e00-\u9fa5]{2,6}?)(大道|大街|路)(?![口段边上灯面况费线])")
"""A road name; not 路灯 (street lamp), 路面 (road surface), 路况, 路费, 路线, nor a junction or section."""
ROAD_CUT = re.compile(r".*(?:[的是在了我诉映到于和与至对从把被市区县镇乡号街栋楼条段旁近])")
ROAD_GENERIC = {
    "道", "马", "公", "铁", "出", "思", "线", "水", "门", "网", "走", "修", "小", "大", "高速公", "这条", "那条",
    "一条", "老", "新", "土", "进", "回", "让", "带", "堵", "封", "断", "挡", "占", "机动车", "人行", "门口",
    "小区门口",
}


@dataclass(frozen=True)
class Places:
    """Places named by one message, from the largest to the smallest; ``None`` where absent."""

    city: str | None
    district: str | None
    street: str | None
    estate: str | None
    road: str | None = None


def find_places(title: str, detail: str) -> Places:
    """Return the city, district-level area, street/township and estate a message names.

    The title is searched before the body (titles name the place of the matter; bodies also
    name where the writer lives). A street counts only right after its district, so
    ``A3区洋湖街道`` gives street 洋湖街道 in district A3区.
    """
    text = f"{title}\n{detail}"
    city = CITY.search(text)
    street = STREET.search(text)
    district = street.group(1) if street else None
    if district is None:
        found = DISTRICT.search(text)
        district = found.group(1) if found else None
    estate = None
    for found in ESTATE.finditer(text):
        stem = ESTATE_CUT.sub("", found.group(1))
        if 2 <= len(stem) <= 6 and stem not in ESTATE_GENERIC:
            estate = stem + found.group(2)
            if found.group(2) == "小区" and stem.endswith(("新城", "花园", "新村", "家园", "社区", "公寓", "花苑")):
                estate = stem  # 丽发新城小区 is 丽发新城
            break
    road = None
    for found in ROAD.finditer(text):
        stem = ROAD_CUT.sub("", found.group(1))
        if 2 <= len(stem) <= 5 and stem not in ROAD_GENERIC and not stem.endswith(("道", "马", "公", "铁", "线", "无")):
            road = stem + found.group(2)
            break
    return Places(
        city=f"{city.group(1)}市" if city else None, district=district,
        street=street.group(2) if street else None, estate=estate, road=road,
    )


def find_unit(reply: str, places: Places) -> str | None:
    """Return the unit a reply names near its start, with the place prefix made explicit.

    ``市住建局`` becomes ``A市住建局`` when the message is about A市; ``县教育局`` becomes
    ``A7县教育局`` for a message about A7县. Party committees (市委, 县委) and owners'
    committees are not handling units and are skipped. ``None`` when no unit is named.
    """
    head = reply[:UNIT_SCAN_CHARS]
    for found in UNIT.finditer(head):
        name = found.group(0)
        if head.rfind("《", 0, found.start()) > head.rfind("》", 0, found.start()):
            continue  # inside a cited document's title (《中共A市委A市人民政府关于…》), not the answering unit
        if name.endswith(("业委会", "居委会", "村委会")) or name in ("市委", "县委", "区委"):
            continue
        if name[0] == "市":
            name = f"{places.city or 'A市'}{name[1:]}"
        elif name[0] in "县区" and places.district and places.district[-1] == name[0]:
            name = f"{places.district}{name[1:]}"
        elif name[0] in "县区":
            continue  # a county or district office we cannot place
        return name
    return None


def unit_kind(name: str) -> str:
    """Return the ``UnitKind`` value for a unit name found in a reply."""
    if re.search(r"(街道办事处|街道|镇|乡)(人民政府)?$", name):
        return "street"
    if re.fullmatch(r"[A-Z]\d{1,2}[区县市]人民政府", name):
        return "district"
    return "department"
