"""Monthly topic (每月一题): the one recurring problem of a month proposed for a city-wide fix.

Beijing's 每月一题 takes the problems that come back month after month in the hotline's data and makes
one of them the month's subject for the whole city. Here it is chosen from the findings of all finders
(hotspots, surges, co-occurrences, asset alerts: every :class:`~civicloop.analytics.findings.Finding`),
read through the ``Finding`` record only, by this rule:

1. **The month's findings**: those (of any kind but ``topic``) whose time range [start, end] overlaps
   the calendar month (local times).
2. **Matter**: a finding's ``category`` when it has one (the three-level path, e.g.
   ``城乡建设/供暖燃气/暖气不热``); otherwise its place and matter words (``details["keywords"]``, as
   hotspots give them), else its place and summary. Findings with the same matter are one problem.
3. **Weight**: scores of different finders are not comparable (a heat index, a z-score…), so each
   finding counts its score divided by the highest score of its kind among the month's findings
   (0–1); a matter's weight is the sum over its findings of the month.
4. **Recurrence**: the number of the month's findings of the matter plus the number of earlier months in
   which the matter had a finding (among all findings given). A matter *recurs* when this is at least 2:
   several findings in the month (of one kind or several), or the month and an earlier one.
5. **Choice**: the recurring matter of highest weight (ties: more recurrence, more people, then the
   matter's name). When no matter recurs there is no monthly topic (``None``): a one-off is a hotspot,
   not a topic.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime

from civicloop.analytics.findings import Finding, finding_key

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """Return the calendar month ``YYYY-MM`` as local wall-clock times [start, end) without a zone.
    Raises ``ValueError`` for text not shaped ``YYYY-MM`` or a month that does not exist."""
    found = _MONTH.fullmatch(month.strip())
    if found is None or not 1 <= int(found[2]) <= 12:
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    year, number = int(found[1]), int(found[2])
    start = datetime(year, number, 1)
    end = datetime(year + number // 12, number % 12 + 1, 1)
    return start, end


def matter_of(finding: Finding) -> str:
    """Return the matter a finding is about (rule 2 of the module docstring), a plain string."""
    if finding.category:
        return finding.category
    words = finding.details.get("keywords") if isinstance(finding.details, dict) else None
    if words:
        return f"{finding.place or ''}|{' '.join(sorted(str(w) for w in words))}"
    return f"{finding.place or ''}|{finding.summary}"


def _months(finding: Finding) -> set[str]:
    months, year, month = set(), finding.start.year, finding.start.month
    while (year, month) <= (finding.end.year, finding.end.month):
        months.add(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def monthly_topic(findings: Sequence[Finding], month: str) -> Finding | None:
    """Propose the monthly topic (每月一题) of ``month`` (``YYYY-MM``) from ``findings`` of every kind.

    Returns a :class:`Finding` with ``kind="topic"``, ``rank`` 1, ``score`` = the matter's weight (sum of
    its findings' scores, each divided by the month's highest score of its kind), ``summary``
    ``"每月一题：<summary of its highest-weighted finding>（N 项发现，M 个月）"``, ``place`` and ``district``
    of that finding when all the matter's findings of the month share them (else ``None``), ``start``/``end``
    spanning them, ``request_ids`` their union, ``people`` the largest ``people`` of one of them (a lower
    bound: findings of different kinds may share requests), ``category`` and ``details`` (``month``,
    ``matter``, ``recurrence``, ``earlier_months``, ``kinds``, ``finding_keys``).
    ``key = finding_key("topic", matter, month)``. Returns ``None`` when no matter recurs (module
    docstring). Raises ``ValueError`` for a malformed month."""
    start, end = month_bounds(month)
    current = [f for f in findings if f.kind != "topic" and f.start < end and f.end >= start]
    if not current:
        return None
    best_of_kind: dict[str, float] = {}
    for f in current:
        best_of_kind[f.kind] = max(best_of_kind.get(f.kind, 0.0), f.score)
    groups: dict[str, list[Finding]] = defaultdict(list)
    for f in current:
        groups[matter_of(f)].append(f)
    earlier: dict[str, set[str]] = defaultdict(set)
    for f in findings:
        if f.kind != "topic" and f.start < start:
            earlier[matter_of(f)].update(m for m in _months(f) if m < month)

    def weight(f: Finding) -> float:
        top = best_of_kind[f.kind]
        return f.score / top if top > 0 else 0.0

    ranked = []
    for matter, members in groups.items():
        recurrence = len(members) + len(earlier.get(matter, ()))
        if recurrence < 2:
            continue
        total = sum(weight(f) for f in members)
        people = max(f.people for f in members)
        ranked.append((-total, -recurrence, -people, matter, members))
    if not ranked:
        return None
    ranked.sort(key=lambda r: r[:4])
    negative_total, negative_recurrence, _, matter, members = ranked[0]
    members = sorted(members, key=lambda f: (-weight(f), f.kind, f.rank, f.key))
    lead = members[0]
    places = {f.place for f in members}
    districts = {f.district for f in members}
    earlier_months = sorted(earlier.get(matter, ()))
    lead_summary = lead.summary.removeprefix("每月一题：")
    return Finding(
        kind="topic",
        key=finding_key("topic", matter, month),
        rank=1,
        score=-negative_total,
        summary=f"每月一题：{lead_summary}（{len(members)} 项发现，{len(earlier_months) + 1} 个月）",
        place=lead.place if len(places) == 1 else None,
        start=min(f.start for f in members),
        end=max(f.end for f in members),
        request_ids=tuple(sorted({i for f in members for i in f.request_ids})),
        people=max(f.people for f in members),
        category=lead.category,
        district=lead.district if len(districts) == 1 else None,
        street=lead.street if len({f.street for f in members}) == 1 else None,
        details={
            "month": month, "matter": matter, "recurrence": -negative_recurrence,
            "earlier_months": earlier_months, "kinds": dict(Counter(f.kind for f in members)),
            "finding_keys": [f.key for f in members],
        },
    )
