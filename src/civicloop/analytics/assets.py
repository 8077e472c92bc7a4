"""Repeated asset failures (设施反复故障): the same asset (one entrance's elevator, one estate's street
lights, the manhole covers of one road) reported again and again → a maintenance alert before its next
failure, with the evidence.

The method (docs/analytics-finders.md has the thresholds and what it found):

1. **Facility** — the one of :data:`FACILITIES` whose word comes first in the title, else in the
   opening of the description (elevator, water pipe, heating pipe, gas pipe, sewer, secondary water supply, power
   line, fire equipment, roof leak, stairwell light, entrance door, street light, manhole cover,
   traffic light, charging point). Plain complaints about service (暖气不热, 停水) are *not* asset
   failures: only the patterns of a broken thing count.
2. **Where** — building (``3号楼``, ``5栋``, ``7幢``, ``2座``) and entrance (``2单元``) by pattern; the estate
   or community is the run of Chinese characters just before the building number, cut into words by
   jieba and stripped of the words before it (``我家住在``, ``A市``, ``A7县``…) and of a trailing ``小区``; a
   road facility is placed on the road named (``…路``, ``…街``, ``…大道``), else on the request's place.
   An asset is ``(district, estate or place, building, entrance, facility)``, or ``(street, road,
   facility)`` for a road's facility: different buildings or
   entrances are never merged.
3. **Failures** — reports of one asset less than ``episode_gap_days`` apart are one failure (many
   neighbours calling about one breakdown is a hotspot, not a recurrence); a citizen sending the same
   title again (rapidfuzz ratio ≥ 85) is no new report.
4. **Alert** — at least ``min_failures`` failures within the ``window_days`` ending at the asset's last
   one, and that many being unusual for an asset of its kind *at that time*: negative-binomial upper
   tail ≤ ``max_p`` at the mean number of failures the same facility's other assets had in the same
   window (at least one per asset over the data's span), with the dispersion of failures per asset
   over the whole span (method of moments). So a season or a trend that raises every asset's
   failures raises the bar too, and a busy road among busy roads is no alert. Next failure expected
   by *last failure + median interval* of the failures in the window; score ``−log10 p`` (capped at 99).
   Every asset seen is a test: the alerts pass Benjamini–Hochberg at ``fdr`` over all of them.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from statistics import median
from typing import Any

import duckdb
import numpy as np

from civicloop.analytics.findings import Finding, finding_key
from civicloop.analytics.surges import bh_reject, upper_tail

#: (facility name, the words of a failure of it joined by ``|``, kind: ``building`` or ``road``)
FACILITIES: tuple[tuple[str, str, str], ...] = (
    ("电梯", r"电梯|扶梯", "building"),
    ("二次供水", r"二次供水|水箱|加压泵|水泵房", "building"),
    ("供水管道", r"水管|供水管|自来水管|管道漏水|管网漏水|爆管|水表", "building"),
    ("暖气管道", r"暖气管|暖气片|供暖管|暖气漏水|暖气阀", "building"),
    ("燃气管道", r"燃气管|煤气管|燃气表|燃气泄漏|燃气异味|漏气", "building"),
    ("下水道", r"下水道|排水管|污水管|化粪池|管道堵塞|污水井|污水外溢|反水", "building"),
    ("供电线路", r"变压器|跳闸|线路老化|电线老化|电缆故障|配电箱", "building"),
    ("消防设施", r"消防栓|消火栓|灭火器|消防设施|消防管", "building"),
    ("屋面防水", r"屋顶漏|楼顶漏|漏雨|屋面漏|外墙渗水|墙面渗水", "building"),
    ("楼道灯", r"楼道灯|楼道里的灯|声控灯|楼道照明", "building"),
    ("门禁", r"门禁|单元门|防盗门", "building"),
    ("路灯", r"路灯", "road"),
    ("井盖", r"井盖", "road"),
    ("红绿灯", r"红绿灯|信号灯", "road"),
    ("充电桩", r"充电桩", "road"),
)
OPENING = 120  # characters of the description searched: a facility named only deep in a long letter is no report
_NUM = "0-9０-９一二三四五六七八九十"
BUILDING_RE = rf"([{_NUM}]{{1,3}})\s*(?:号楼|栋|幢|座|号公寓)"
UNIT_RE = rf"([{_NUM}]{{1,2}})\s*单元"
ESTATE_RE = rf"([\p{{Han}}A-Za-z0-9]{{2,24}}?)[{_NUM}]{{1,3}}\s*(?:号楼|栋|幢|座|号公寓)"
ROAD_RE = r"([\p{Han}A-Za-z0-9]{1,12}?(?:大道|路|街|巷|胡同))(?:[^灯口]|$)"
#: words after which a place name starts (the last of them in the cut is dropped with all before it)
LEAD_WORDS = frozenset({"我家", "我", "我们", "家", "住", "住在", "在", "位于", "于", "是", "的", "家住", "地址",
                        "反映", "投诉", "举报", "本人", "业主", "市民", "居民", "小区内", "关于", "请问", "咨询",
                        "和", "与", "特别", "特别是", "就是", "还有", "以及"})
ADMIN_PREFIX = re.compile(r"^(?:[A-Z]\d*[市区县])+(?:[\u4e00-\u9fa5]{2,4}街道)?|^[\u4e00-\u9fa5]{2,4}街道")
_CN = {c: i for i, c in enumerate("零一二三四五六七八九", start=0)}


def number(text: str | None) -> int | None:
    """Read a building or entrance number written in digits (also full-width) or Chinese numerals up to
    99 (``十二`` → 12). Returns ``None`` for an empty or unreadable text."""
    if not text:
        return None
    text = text.translate(str.maketrans("０１２３４５６７８９", "0123456789"))
    if text.isdigit():
        return int(text)
    if "十" in text:
        tens, _, ones = text.partition("十")
        value = (_CN.get(tens, 0) if tens else 1) * 10 + (_CN.get(ones, 0) if ones else 0)
        return value if all(c in _CN for c in tens + ones) else None
    return _CN.get(text) if len(text) == 1 else None


@lru_cache(maxsize=1)
def _jieba() -> Any:
    import jieba
    import jieba.posseg

    jieba.setLogLevel(60)
    for word in ("小区", "号楼", "单元", "家园", "新城", "花园"):
        jieba.add_word(word)
    return jieba


@lru_cache(maxsize=65536)
def clean_place(candidate: str | None) -> str | None:
    """Turn the characters found before a building number into an estate name: drop an administrative
    prefix (``A市A7县``, ``…街道``), cut the rest with jieba (``posseg``) and keep what follows the last of
    :data:`LEAD_WORDS` and any leading verbs, adverbs, prepositions or pronouns (``我家住在丽发新城小区`` →
    ``丽发新城``; ``要求拆除`` → nothing), then drop a trailing ``第`` and ``小区``/``社区``. Returns ``None``
    when fewer than two characters remain."""
    if not candidate:
        return None
    words = [(w.word, w.flag) for w in _jieba().posseg.cut(ADMIN_PREFIX.sub("", candidate))]
    cut = max((i for i, (w, _) in enumerate(words) if w in LEAD_WORDS), default=-1)
    words = words[cut + 1:]
    while words and words[0][1] != "eng" and words[0][1][:1] in {"v", "d", "p", "r", "c", "u", "y", "e", "o"}:
        words = words[1:]
    name = ADMIN_PREFIX.sub("", "".join(w for w, _ in words)).removesuffix("第")
    name = re.sub(r"(?:小区|社区)$", "", name) if len(name) > 4 else name
    return name if len(name) >= 2 else None


GENERIC_ROADS = frozenset({"大道", "道路", "马路", "公路", "小路", "大路", "大街", "街道", "主干道路", "主路", "辅路",
                           "路", "街", "巷", "小巷", "胡同", "村路", "水泥路", "人行道路", "一条路", "这条路", "该路",
                           "此路"})


def clean_road(candidate: str | None) -> str | None:
    """Turn the characters found before ``路/街/大道/巷/胡同`` into a road name as :func:`clean_place` does;
    ``None`` for a generic word (``道路``, ``马路``, ``这条路``…) or fewer than two characters."""
    name = clean_place(candidate)
    if not name or name in GENERIC_ROADS or name.endswith(("这条路", "条路", "的路")):
        return None
    return name


class Report:
    """One request that names a failed facility, read like a dict (``report["facility"]``) but stored in
    slots: at 10⁷ requests about 2.4 million of them are held at once, and as dicts they took ~1 KB each
    (docs/benchmarks.md, the memory of ``civicloop analyze``)."""

    FIELDS = ("id", "created_at", "citizen", "title", "facility", "district", "street", "where", "building", "unit")
    __slots__ = FIELDS

    def __init__(self, *values: Any) -> None:
        for name, value in zip(self.FIELDS, values, strict=True):
            setattr(self, name, value)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        """The report as a plain dict."""
        return {name: getattr(self, name) for name in self.FIELDS}


def extract_assets(conn: duckdb.DuckDBPyConnection) -> list[Report]:
    """Return one :class:`Report` per request of ``reqs`` that names a failed facility: ``id``, ``created_at``
    (local), ``citizen``, ``title``, ``facility``, ``district``, ``street``, ``where`` (estate, road or place),
    ``building`` and ``unit`` (``None`` when not named). The facility words and places are found in DuckDB
    (RE2) in the title followed by the description's first ``OPENING`` characters; only the matching rows
    come to Python, in batches of :data:`BATCH` (names repeated from row to row are stored once). Raises
    ``duckdb.Error`` when ``reqs`` is missing."""
    words = {w: name for name, pat, _ in FACILITIES for w in pat.split("|")}
    kind_of = {name: kind for name, _, kind in FACILITIES}
    alternation = "|".join(sorted(words, key=len, reverse=True))
    rows = conn.execute(f"""
        WITH r AS (
            SELECT id, created_at, citizen, district, street, coalesce(grid, place) AS place, title, t
            FROM (SELECT *, coalesce(title, '') || '｜' || substr(coalesce(description, ''), 1, {OPENING}) AS t
                  FROM reqs WHERE created_at IS NOT NULL)
            WHERE regexp_matches(t, '{alternation}')
        ), f AS (
            SELECT *, regexp_extract(t, '({alternation})', 1) AS word,
                   nullif(regexp_extract(t, '{BUILDING_RE}', 1), '') AS building FROM r
        )
        SELECT id, created_at, citizen, coalesce(title, ''), word, district, street, place, building,
               CASE WHEN building IS NOT NULL THEN nullif(regexp_extract(t, '{UNIT_RE}', 1), '') END AS unit,
               CASE WHEN building IS NOT NULL THEN nullif(regexp_extract(t, '{ESTATE_RE}', 1), '') END AS estate,
               CASE WHEN building IS NULL THEN nullif(regexp_extract(t, '{ROAD_RE}', 1), '') END AS road
        FROM f
    """)
    out: list[Report] = []
    names: dict[str, str] = {}

    def shared(text: str | None) -> str | None:
        return None if text is None else names.setdefault(text, text)

    for rid, created, citizen, title, word, district, street, place, building, unit, estate, road in _batches(rows):
        facility = words[word]
        kind = kind_of[facility]
        if kind == "building":
            b, u = number(building), number(unit)
            if b is None:
                continue  # a building's facility without its building is no identifiable asset
            where = clean_place(estate) or place
        else:
            where = clean_road(road) or place
            b = u = None
        if not where:
            continue
        out.append(Report(int(rid), created, citizen, title, facility, shared(district), shared(street), shared(where),
                          b, u))
    return out


BATCH = 100_000
"""Rows fetched from DuckDB at a time by :func:`extract_assets`."""


def _batches(result: duckdb.DuckDBPyConnection) -> Any:
    while rows := result.fetchmany(BATCH):
        yield from rows


def _without_resends(items: list[Report]) -> list[Report]:
    """Drop a report whose citizen already sent a near-identical title about the same asset (rapidfuzz
    ratio ≥ 85): the same letter sent again is no new failure."""
    from rapidfuzz import fuzz

    if len(items) < 2:
        return items
    kept: list[Report] = []
    titles: dict[str, list[str]] = {}
    for r in items:
        seen = titles.setdefault(r["citizen"], []) if r["citizen"] is not None else None
        if seen and any(fuzz.ratio(t, r["title"]) >= 85 for t in seen):
            continue
        if seen is not None:
            seen.append(r["title"])
        kept.append(r)
    return kept


def episodes(times: list[datetime], gap_days: float) -> list[list[int]]:
    """Group the indices of sorted report times into failures: a report less than ``gap_days`` after the
    previous one belongs to the same failure. ``[d, d+1h, d+10days]`` with 3 days → ``[[0, 1], [2]]``."""
    out: list[list[int]] = []
    for i, t in enumerate(times):
        if out and (t - times[i - 1]).total_seconds() < gap_days * 86400:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def asset_label(where: str, building: int | None, unit: int | None, facility: str) -> str:
    """``丽发新城3号楼2单元电梯``, ``松峰路路灯``."""
    return f"{where}{f'{building}号楼' if building is not None else ''}{f'{unit}单元' if unit is not None else ''}" \
           f"{facility}"


def find_asset_failures(conn: duckdb.DuckDBPyConnection, *, min_failures: int = 3, window_days: int = 180,
                        episode_gap_days: float = 3.0, max_p: float = 1e-3, fdr: float = 0.05) -> list[Finding]:
    """Find assets that fail again and again and return maintenance alerts of kind ``asset``.

    Reads ``reqs`` (title, description, place, local ``created_at``); applies the method of the module
    docstring with ``min_failures`` failures within ``window_days`` days (failures are reports grouped
    when less than ``episode_gap_days`` apart), a negative-binomial tail ≤ ``max_p`` that also passes
    Benjamini–Hochberg at ``fdr`` over every asset seen (each is a test). Each finding gives the
    asset, the failures' first-report dates (``details["failures"]``), their median interval in days,
    the predicted next failure (``details["next_failure"]``, ISO date, local) and all the asset's
    requests in the window as evidence. Rank 1 = highest score. Raises ``duckdb.Error`` when ``reqs``
    is missing."""
    rows = extract_assets(conn)
    if not rows:
        return []
    span = conn.execute("SELECT min(created_at), max(created_at) FROM reqs").fetchone()
    assert span is not None
    data_start, data_end = span
    span_days = max((data_end - data_start).total_seconds() / 86400, 1.0)
    groups: dict[tuple[Any, ...], list[Report]] = {}
    for r in rows:
        # a road's name recurs in other streets: a road facility is located by street and road
        area = r["district"] if r["building"] is not None else (r["street"] or r["district"])
        groups.setdefault((area or "", r["where"], r["building"], r["unit"], r["facility"]), []).append(r)
    failures: dict[tuple[Any, ...], list[list[Report]]] = {}
    times: dict[str, list[float]] = {}
    totals: dict[str, list[int]] = {}
    for key, items in groups.items():
        items.sort(key=lambda r: (r["created_at"], r["id"]))
        items = _without_resends(items)
        eps = [[items[i] for i in ep] for ep in episodes([r["created_at"] for r in items], episode_gap_days)]
        failures[key] = eps
        times.setdefault(key[4], []).extend(ep[0]["created_at"].timestamp() for ep in eps)
        totals.setdefault(key[4], []).append(len(eps))
    sorted_times = {f: np.sort(np.array(v)) for f, v in times.items()}
    alphas = {f: _dispersion(np.array(v, dtype=float)) for f, v in totals.items()}
    floor = window_days / span_days  # at least one failure per asset over the data's span
    drafts = []
    for key, eps in failures.items():
        if len(eps) < min_failures:
            continue
        last = eps[-1][0]["created_at"]
        recent = [ep for ep in eps if (last - ep[0]["created_at"]).days < window_days]
        k = len(recent)
        if k < min_failures:
            continue
        facility = key[4]
        lo, hi = (last - timedelta(days=window_days)).timestamp(), last.timestamp()
        in_window = int(np.searchsorted(sorted_times[facility], hi, side="right")
                        - np.searchsorted(sorted_times[facility], lo, side="right"))
        n_others = len(totals[facility]) - 1
        expected = max((in_window - k) / max(n_others, 1), floor)
        log10_p = float(upper_tail(np.array([k]), np.array([expected]), alphas[facility])[0])
        if log10_p > math.log10(max_p):
            continue
        drafts.append(_draft(key, recent, k, expected, log10_p, window_days, data_end))
    if drafts:  # every asset seen was tested: Benjamini–Hochberg over all of them
        keep = bh_reject(np.array([-d.score for d in drafts]), fdr, len(failures))
        drafts = [d for d, k in zip(drafts, keep, strict=True) if k]
    drafts.sort(key=lambda d: (-d.score, d.key))
    return [Finding(kind="asset", key=d.key, rank=i, score=d.score, summary=d.summary, place=d.place,
                    start=d.start, end=d.end, request_ids=d.request_ids, people=d.people, category=d.category,
                    district=d.district, street=d.street, details=d.details)
            for i, d in enumerate(drafts, start=1)]


@dataclass
class _Draft:
    key: str
    score: float
    summary: str
    place: str
    start: datetime
    end: datetime
    request_ids: tuple[int, ...]
    people: int
    category: str | None
    district: str | None
    street: str | None
    details: dict[str, Any]


def _dispersion(counts: np.ndarray) -> float:
    """NB2 dispersion of failures per asset (variance = m + alpha·m²) by the method of moments, in [0, 2]."""
    if counts.size < 5:
        return 0.0
    m = float(counts.mean())
    return float(np.clip((float(counts.var(ddof=1)) - m) / (m * m), 0.0, 2.0))


def _draft(key: tuple[Any, ...], recent: list[list[Report]], k: int, expected: float, log10_p: float,
           window_days: int, data_end: datetime) -> _Draft:
    district, where, building, unit, facility = key
    starts = [ep[0]["created_at"] for ep in recent]
    gaps = [(b - a).total_seconds() / 86400 for a, b in itertools.pairwise(starts)]
    interval = median(gaps)
    next_failure = (starts[-1] + timedelta(days=interval)).date()
    reports = [r for ep in recent for r in ep]
    label = asset_label(where, building, unit, facility)
    days = max(math.ceil((starts[-1] - starts[0]).total_seconds() / 86400), 1)
    summary = (f"{label}{days}天内报修{k}次（{len(reports)}件诉求），中位间隔{interval:.0f}天，"
               f"预计下次故障约在{next_failure.year}年{next_failure.month}月{next_failure.day}日前，建议维保")
    people = len({r["citizen"] if r["citizen"] is not None else f"#{r['id']}" for r in reports})
    street = max((r["street"] for r in reports if r["street"]), default=None,
                 key=lambda s: sum(1 for r in reports if r["street"] == s))
    return _Draft(
        key=finding_key("asset", district, where, building, unit, facility), score=min(-log10_p, 99.0),
        summary=summary, place=where, start=reports[0]["created_at"], end=reports[-1]["created_at"],
        request_ids=tuple(sorted(r["id"] for r in reports)), people=people, category=facility,
        district=district or None, street=street,
        details={"asset": label, "facility": facility, "building": building, "unit": unit, "failures": len(recent),
                 "reports": len(reports), "failure_dates": [s.date().isoformat() for s in starts],
                 "median_interval_days": round(interval, 1), "next_failure": next_failure.isoformat(),
                 "window_days": window_days, "expected_failures": round(expected, 3),
                 "days_since_last": (data_end - starts[-1]).days,
                 "next_failure_passed": next_failure < data_end.date()})
