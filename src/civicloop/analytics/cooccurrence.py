"""Co-occurrence (多类并发): several matters rising together in one place at the same time (group rentals +
cooking fumes + noise in one grid) call for one combined governance topic rather than separate cases.

The rule (docs/analytics-finders.md has what it found):

* per category × place × month, the baseline of the surge finder (``surges.expected_counts``: the
  category's space-time expectation with the cell left out, Kulldorff et al. 2005);
* a cell is **elevated** when it has at least ``min_count`` requests, at least ``min_ratio`` × its
  baseline and a negative-binomial upper tail ``p ≤ cell_p`` — each matter clearly above its own
  baseline, though less than a surge on its own;
* a place × month is a **co-occurrence** when elevated cells of at least ``min_families`` different
  matter families (the first two levels of the category path, so two kinds of noise count once)
  fall in it. Consecutive months of one place with a shared family are merged into one finding.
  Score: the sum of the elevated cells' ``−log10 p`` (Fisher's combination up to a factor 2 ln 10).
  By chance a place-month has two elevated families with probability at most about
  ``C(F, 2) · cell_p²`` (F families; the discrete counts make it smaller), 2·10⁻⁶ for 20 categories
  at the default ``cell_p = 10⁻⁴``, so a city of 700 grids over 24 months expects well under one. (At
  ``10⁻³`` the generated city of 200,000 requests, which has no planted co-occurrence, gave six.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np

from civicloop.analytics.findings import Finding, finding_key
from civicloop.analytics.surges import (
    FINE_PLACE,
    Cells,
    cell_counts,
    dispersion,
    expected_counts,
    gather_evidence,
    leaf,
    period_end,
    upper_tail,
)

SUMMARY_NAMES = 5


def family(category: str) -> str:
    """The matter family of a category: its first two levels (``环境保护/噪声污染/商业噪声`` →
    ``环境保护/噪声污染``); a one-level category is its own family."""
    return "/".join(category.split("/")[:2])


def elevated_cells(cells: Cells, *, min_count: int = 3, min_ratio: float = 2.0,
                   cell_p: float = 1e-4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(mask, log10_p, mu)`` over ``cells`` (all of shape series × periods): the cells whose count
    is ≥ ``min_count``, ≥ ``min_ratio`` × the baseline ``mu`` of :func:`surges.expected_counts` and whose
    negative-binomial upper tail is ≤ ``cell_p``."""
    y = cells.counts
    mu = expected_counts(cells)
    tested = (mu > 0) & cells.covered[None, :]
    alpha = dispersion(y[tested], mu[tested])
    cand = tested & (y >= min_count) & (y >= min_ratio * mu)
    logp = np.zeros_like(y)
    logp[cand] = upper_tail(y[cand], mu[cand], alpha)
    return cand & (logp <= np.log10(cell_p)), logp, mu


@dataclass
class _Group:
    place: str
    periods: list[int]
    cells: list[tuple[int, int]]


def find_cooccurrences(conn: duckdb.DuckDBPyConnection, *, place_sql: str = FINE_PLACE, min_count: int = 3,
                       min_ratio: float = 2.0, cell_p: float = 1e-4, min_families: int = 2) -> list[Finding]:
    """Find places where several matters rose together and return findings of kind ``cooccurrence``.

    Reads ``reqs`` per category × place (``place_sql``: grid, else the finest place named) × calendar
    month of local time; applies the rule of the module docstring. Each finding names the place, the
    months (``details["months"]``, ``YYYY-MM``), the categories with their counts, baselines and ratios
    (``details["categories"]``), and proposes one combined topic in ``summary``. Evidence: the
    requests of the elevated cells (at most 500 ids). Rank 1 = highest score. Raises ``duckdb.Error``
    when ``reqs`` is missing."""
    cells = cell_counts(conn, period="month", place_sql=place_sql)
    if cells.counts.size == 0:
        return []
    mask, logp, mu = elevated_cells(cells, min_count=min_count, min_ratio=min_ratio, cell_p=cell_p)
    by_place_period: dict[tuple[str, int], list[int]] = {}
    for s, t in zip(*np.nonzero(mask), strict=True):
        by_place_period.setdefault((cells.places[int(s)], int(t)), []).append(int(s))
    hits = {k: v for k, v in by_place_period.items()
            if len({family(cells.categories[s]) for s in v}) >= min_families}
    groups: list[_Group] = []
    for place, t in sorted(hits):
        series = hits[(place, t)]
        last = groups[-1] if groups else None
        fams = {family(cells.categories[s]) for s in series}
        if (last is not None and last.place == place and last.periods[-1] == t - 1
                and fams & {family(cells.categories[s]) for s, _ in last.cells}):
            last.periods.append(t)
            last.cells.extend((s, t) for s in series)
        else:
            groups.append(_Group(place, [t], [(s, t) for s in series]))
    drafts = []
    wanted: list[tuple[int, str | None, str, str, date, date]] = []
    for tag, g in enumerate(groups):
        drafts.append(_draft(cells, g, logp, mu, tag))
        wanted.extend((tag, g.place, cells.districts[s], cells.categories[s], cells.starts[t],
                       period_end(cells.starts[t], "month")) for s, t in g.cells)
    evidence = gather_evidence(conn, wanted, place_sql=place_sql)
    findings: list[Finding] = []
    for d in sorted(drafts, key=lambda d: (-d["score"], d["key"])):
        ev = evidence.get(d["tag"])
        if ev is None:
            continue
        findings.append(Finding(
            kind="cooccurrence", key=d["key"], rank=len(findings) + 1, score=d["score"], summary=d["summary"],
            place=d["place"], start=ev.start, end=ev.end, request_ids=ev.ids, people=ev.people,
            category=d["category"], district=d["district"], street=d["street"],
            details={**d["details"], "requests_total": ev.total}))
    return findings


def _draft(cells: Cells, g: _Group, logp: np.ndarray, mu: np.ndarray, tag: int) -> dict[str, object]:
    per_cat: dict[str, dict[str, float]] = {}
    for s, t in g.cells:
        row = per_cat.setdefault(cells.categories[s], {"count": 0.0, "expected": 0.0, "log10_p": 0.0})
        row["count"] += float(cells.counts[s, t])
        row["expected"] += float(mu[s, t])
        row["log10_p"] += float(logp[s, t])
    ordered = sorted(per_cat.items(), key=lambda kv: kv[1]["log10_p"])
    score = -sum(v["log10_p"] for _, v in ordered)
    s0 = g.cells[0][0]
    street, district = cells.streets[s0], cells.districts[s0]
    where = g.place if not street or street == g.place else f"{street}{g.place}"
    names = []
    for cat, _ in ordered:
        name = leaf(cat) or cat
        if name not in names:
            names.append(name)
    months = [f"{cells.starts[t]:%Y-%m}" for t in g.periods]
    when = months[0] if len(months) == 1 else f"{months[0]}至{months[-1]}"
    shown = "、".join(names[:SUMMARY_NAMES]) + ("等" if len(names) > SUMMARY_NAMES else "")
    return {
        "tag": tag, "score": score, "place": g.place, "district": district or None, "street": street,
        "category": " + ".join(sorted(per_cat)),
        "key": finding_key("cooccurrence", g.place, months[0]),
        "summary": f"{where}：{when}{shown}同时上升，建议综合治理",
        "details": {
            "months": months, "families": sorted({family(c) for c in per_cat}),
            "categories": [{"category": c, "count": int(v["count"]), "expected": round(v["expected"], 3),
                            "ratio": round(v["count"] / max(v["expected"], 1e-9), 2),
                            "log10_p": round(v["log10_p"], 2)} for c, v in ordered],
        },
    }
