"""High-frequency and seasonal surges (高频与季节性激增): category × place × month (or week) cells far
above their own baseline, told apart into *anomalous* surges (once) and *seasonal* ones (every year in
the same months: work to do before the season).

The method (docs/analytics-finders.md has the thresholds and what it found):

1. **Counts** per category × place × period in DuckDB over ``reqs`` (:func:`cell_counts`); the place
   is the grid, else the finest place named (``coalesce(grid, place)``), and again per street. Periods
   whose city-wide volume is under a tenth of the median period are *not covered* (stray early rows
   of a data set) and left out of every baseline.
2. **Baseline** of a cell (:func:`expected_counts`): the space-time permutation expectation of
   Kulldorff et al. (2005, "A space-time permutation scan statistic for disease outbreak detection",
   PLoS Medicine 2(3): e59), *place total × period total ÷ grand total* within the category, taken
   leave-one-out (the cell's own requests are not in its baseline) and shrunk towards the other
   categories' and then the calendar's share of each period when the category has few requests
   elsewhere. It follows the category's city-wide seasonality and trend and the place's own level.
3. **Test**: the upper tail of a negative binomial (NB2, dispersion estimated from all cells by the
   method of moments, Poisson when there is none) at the baseline, Benjamini–Hochberg false discovery
   rate over every cell tested (``statsmodels.stats.multitest.multipletests``). A surge: ``q ≤ fdr``,
   at least ``min_count`` requests and ``min_ratio`` × baseline. Score: ``−log10 p`` (capped at 99).
4. **Seasonal, city-wide** (:func:`seasonal_months`): the category's monthly series decomposed by STL
   (Cleveland et al. 1990, "STL: a seasonal-trend decomposition procedure based on loess", J. Official
   Statistics 6(1)) on ``log1p`` counts, period 12, when it has ≥ 24 full months: a calendar month is
   in season when its count is on average ≥ ``season_factor`` × the STL trend, ≥ 1.1 × in every year,
   and the pooled excess is significant (Poisson, p ≤ 0.001).
5. **Seasonal, at one place** (:func:`place_seasons`): a place × category × calendar month whose count
   is ≥ 1.5 × its off-season baseline (step 2 with the place's level taken without that month and its
   neighbours) and significant (p ≤ 0.001) in every one of ≥ 2 years, the pooled excess passing the
   same FDR. Its cells are then
   reported as that seasonal surge, not as anomalies, unless a cell is also ≥ ``min_ratio`` × the mean
   of the same month in the other years.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.tsa.seasonal import STL

from civicloop.analytics.findings import Finding, finding_key

PERIODS = ("month", "week")
FINE_PLACE = "coalesce(grid, place)"
STREET_PLACE = "coalesce(street, district)"
UNCATEGORISED = "未分类"
MAX_SCORE = 99.0
MAX_EVIDENCE = 500


@dataclass
class Cells:
    """A dense count matrix of one place level: ``counts[s, t]`` requests of series ``s`` (category ×
    place) in period ``t``; a place is known by its name (grid names are unique in a city, estate and
    road names nearly so), its district and street are those most of its requests give. ``starts`` are
    the periods' first days (local), ``covered`` marks the periods inside the data's real span, ``cat``
    is each series' category code."""

    period: str
    place_sql: str
    categories: list[str]
    places: list[str]
    streets: list[str | None]
    districts: list[str]
    starts: list[date]
    counts: np.ndarray
    cat: np.ndarray
    covered: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.counts.shape  # type: ignore[return-value]


def period_starts(first: date, last: date, period: str) -> list[date]:
    """Return the first day of every month (or ISO week, Monday) from the one holding ``first`` to the
    one holding ``last``, inclusive. Raises ``ValueError`` for an unknown period."""
    if period == "month":
        out, day = [], first.replace(day=1)
        while day <= last:
            out.append(day)
            day = (day + timedelta(days=32)).replace(day=1)
        return out
    if period == "week":
        day = first - timedelta(days=first.weekday())
        return [day + timedelta(weeks=k) for k in range((last - day).days // 7 + 1)]
    raise ValueError(f"period must be one of {PERIODS}, not {period!r}")


def cell_counts(conn: duckdb.DuckDBPyConnection, *, period: str = "month", place_sql: str = FINE_PLACE,
                min_cover: float = 0.1) -> Cells:
    """Count ``reqs`` per category × place × period in DuckDB and return them as a dense :class:`Cells`.

    ``place_sql`` is a SQL expression over ``reqs`` naming the place (:data:`FINE_PLACE` or
    :data:`STREET_PLACE`); rows without a place or a time are left out, a missing category counts as
    ``未分类``. Periods are calendar months or ISO weeks of the local ``created_at``. A period is
    covered when the whole city's count in it is at least ``min_cover`` × the median of the non-empty
    periods. Raises ``ValueError`` for an unknown period, ``duckdb.Error`` when ``reqs`` is missing."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, not {period!r}")
    table = conn.execute(f"""
        WITH c AS (
            SELECT coalesce(category, '{UNCATEGORISED}') AS category, {place_sql} AS place,
                   mode(district) AS district, mode(street) AS street,
                   CAST(date_trunc('{period}', created_at) AS DATE) AS p, count(*) AS n
            FROM reqs WHERE created_at IS NOT NULL AND {place_sql} IS NOT NULL
            GROUP BY 1, 2, 5
        )
        SELECT dense_rank() OVER (ORDER BY category, place) - 1 AS s,
               dense_rank() OVER (ORDER BY category) - 1 AS c, category, place,
               coalesce(arg_max(district, n) OVER w, '') AS district, arg_max(street, n) OVER w AS street, p, n
        FROM c WINDOW w AS (PARTITION BY category, place) ORDER BY s
    """).fetch_arrow_table()
    if table.num_rows == 0:
        return Cells(period, place_sql, [], [], [], [], [], np.zeros((0, 0)), np.zeros(0, np.int64),
                     np.zeros(0, bool))
    s = table.column("s").to_numpy()
    days = table.column("p").to_numpy().astype("datetime64[D]")
    starts = period_starts(days.min().item(), days.max().item(), period)
    if period == "month":
        months = days.astype("datetime64[M]").astype(np.int64)
        t = months - months.min()
    else:
        t = (days - np.datetime64(starts[0], "D")).astype(np.int64) // 7
    counts = np.zeros((int(s.max()) + 1, len(starts)))
    np.add.at(counts, (s, t), table.column("n").to_numpy().astype(float))
    first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    labels = table.select(["category", "place", "district", "street", "c"]).take(pa.array(first)).to_pydict()
    totals = counts.sum(axis=0)
    nonzero = totals[totals > 0]
    covered = totals >= min_cover * (np.median(nonzero) if nonzero.size else 0.0)
    counts[:, ~covered] = 0.0
    return Cells(period, place_sql, labels["category"], labels["place"], labels["street"], labels["district"],
                 starts, counts, np.array(labels["c"], dtype=np.int64), covered)


def expected_counts(cells: Cells, *, prior: float = 50.0, level_prior: float = 0.5) -> np.ndarray:
    """Return the leave-one-out baseline ``mu[s, t]`` (expected requests) of every cell, shape of
    ``cells.counts``; 0 in periods not covered.

    ``mu = (R_s − y + level_prior) · w / (1 − w)`` where ``R_s`` is the series' total over covered
    periods, ``y`` the cell's count (``level_prior``, half a request over the whole span, keeps a place
    that never had this matter before from having a baseline of exactly 0) and ``w`` the share of
    period ``t`` in the same category at the *other* places, ``(K_ct − y + prior · g) / (N_c − R_s +
    prior)``, with ``g`` the other categories' share of the
    period shrunk in turn towards an even share of the covered periods (``prior`` pseudo-requests
    each). Without shrinkage this is Kulldorff's space-time permutation expectation with the cell
    left out: ``(R − y)(K − y) / (N − R − K + y)`` (Kulldorff et al. 2005)."""
    y = cells.counts
    if y.size == 0:
        return np.zeros_like(y)
    n_cat = int(cells.cat.max()) + 1
    by_cat = np.zeros((n_cat, y.shape[1]))
    np.add.at(by_cat, cells.cat, y)
    cat_total = by_cat.sum(axis=1)
    all_t = by_cat.sum(axis=0)
    even = cells.covered / max(int(cells.covered.sum()), 1)
    other_cat = (all_t[None, :] - by_cat + prior * even[None, :]) / (all_t.sum() - cat_total + prior)[:, None]
    row = y.sum(axis=1)
    share = ((by_cat[cells.cat] - y + prior * other_cat[cells.cat])
             / (cat_total[cells.cat] - row + prior)[:, None])
    share = np.clip(share, 0.0, 0.999)
    mu = (row[:, None] - y + level_prior) * share / (1.0 - share)
    mu[:, ~cells.covered] = 0.0
    return mu


def dispersion(y: np.ndarray, mu: np.ndarray) -> float:
    """Return the NB2 dispersion ``alpha`` (variance = mu + alpha·mu²) of counts ``y`` around baselines
    ``mu`` by the method of moments over cells with ``mu ≥ 0.5``, leaving out gross outliers (more than
    10 standard deviations above), clipped to [0, 2]; 0 means Poisson."""
    sel = (mu >= 0.5) & (y <= mu + 10.0 * np.sqrt(mu) + 5.0)
    if sel.sum() < 10:
        return 0.0
    num = float((((y[sel] - mu[sel]) ** 2) - y[sel]).sum())
    return float(np.clip(num / float((mu[sel] ** 2).sum()), 0.0, 2.0))


def upper_tail(y: np.ndarray, mu: np.ndarray, alpha: float) -> np.ndarray:
    """Return ``log10 P(Y ≥ y)`` for Y negative binomial with mean ``mu`` and dispersion ``alpha``
    (Poisson when ``alpha`` is 0), elementwise; 0 (p = 1) where ``y ≤ 0``."""
    y = np.asarray(y, dtype=float)
    mu = np.maximum(np.asarray(mu, dtype=float), 1e-9)
    if alpha <= 1e-6:
        logp = stats.poisson.logsf(y - 1, mu)
    else:
        n = 1.0 / alpha
        logp = stats.nbinom.logsf(y - 1, n, n / (n + mu))
    return np.where(y <= 0, 0.0, logp / math.log(10))


def bh_reject(log10_p: np.ndarray, fdr: float, n_tests: int | None = None) -> np.ndarray:
    """Benjamini–Hochberg (1995) at false discovery rate ``fdr`` over ``n_tests`` tests (default: the
    array's size; the others count as p = 1), by ``statsmodels.stats.multitest.multipletests``. Takes
    and returns arrays of the same shape (log10 p in, booleans out)."""
    flat = np.power(10.0, log10_p.ravel())
    extra = max((n_tests or flat.size) - flat.size, 0)
    if flat.size == 0:
        return np.zeros(log10_p.shape, bool)
    reject = multipletests(np.concatenate([flat, np.ones(extra)]), alpha=fdr, method="fdr_bh")[0]
    return reject[:flat.size].reshape(log10_p.shape)


def seasonal_months(monthly: np.ndarray, first_month: int, *, season_factor: float = 1.3,
                    min_each: float = 1.1, alpha: float = 1e-3) -> dict[int, dict[str, float]]:
    """Find the calendar months in which a monthly series is high every year.

    Takes ``monthly``: counts of consecutive full months, the first being calendar month
    ``first_month`` (1–12); needs ≥ 24 of them (else returns ``{}``). Decomposes ``log1p`` of the
    counts by STL (period 12, robust; Cleveland et al. 1990) and returns, for each calendar month in
    season, ``{"factor": mean count ÷ trend, "least": the lowest yearly ratio, "years": n, "count": pooled
    count, "expected": pooled trend, "log10_p": Poisson upper tail of the pooled count}``. In season:
    factor ≥ ``season_factor``, every year ≥ ``min_each`` × trend, p ≤ ``alpha``."""
    y = np.asarray(monthly, dtype=float)
    if y.size < 24 or y.sum() < 24:
        return {}
    fit = STL(np.log1p(y), period=12, robust=True).fit()
    level = np.maximum(np.expm1(fit.trend), 0.5)
    ratio = y / level
    moy = (first_month - 1 + np.arange(y.size)) % 12
    out: dict[int, dict[str, float]] = {}
    for m in range(12):
        sel = moy == m
        if sel.sum() < 2:
            continue
        count, expected = float(y[sel].sum()), float(level[sel].sum())
        factor, least = count / expected, float(ratio[sel].min())
        logp = float(upper_tail(np.array([count]), np.array([expected]), 0.0)[0])
        if factor >= season_factor and least >= min_each and logp <= math.log10(alpha):
            out[m + 1] = {"factor": factor, "least": least, "years": int(sel.sum()), "count": count,
                          "expected": expected, "log10_p": logp}
    return out


def month_runs(months: list[int]) -> list[list[int]]:
    """Group calendar months (1–12) into runs of consecutive months, wrapping from December to
    January: ``[1, 2, 6, 7, 12]`` → ``[[12, 1, 2], [6, 7]]``."""
    chosen = sorted(set(months))
    if not chosen:
        return []
    if len(chosen) == 12:
        return [chosen]
    runs: list[list[int]] = []
    for m in chosen:
        if runs and m == runs[-1][-1] + 1:
            runs[-1].append(m)
        else:
            runs.append([m])
    if len(runs) > 1 and runs[0][0] == 1 and runs[-1][-1] == 12:
        runs[0] = runs.pop() + runs[0]
    return runs


def season_label(run: list[int]) -> str:
    """``[6, 7, 8]`` → ``"6–8月"``; ``[12, 1, 2]`` → ``"12–2月"``; ``[7]`` → ``"7月"``."""
    return f"{run[0]}月" if len(run) == 1 else f"{run[0]}–{run[-1]}月"


def period_label(start: date, period: str) -> str:
    """``2025-10`` for a month, ``2025-W40`` for an ISO week (keys and details)."""
    if period == "month":
        return f"{start:%Y-%m}"
    iso = start.isocalendar()
    return f"{iso[0]}-W{iso[1]:02d}"


def period_words(start: date, period: str) -> str:
    """``2025年10月`` or ``2025年9月29日起一周`` (summaries)."""
    if period == "month":
        return f"{start.year}年{start.month}月"
    return f"{start.year}年{start.month}月{start.day}日起一周"


def leaf(category: str | None) -> str:
    """The last level of a category path (``环境保护/噪声污染/商业噪声`` → ``商业噪声``); empty for an
    unknown category, so that a summary reads ``丽发新城诉求…``."""
    if not category or category == UNCATEGORISED:
        return ""
    return category.rsplit("/", 1)[-1]


def period_end(start: date, period: str) -> date:
    """The first day after the month or week that starts on ``start``."""
    return start + timedelta(days=7) if period == "week" else (start + timedelta(days=32)).replace(day=1)


@dataclass
class Evidence:
    """The requests behind one finding: ids (newest ``MAX_EVIDENCE`` at most), the local times of the
    first and last, distinct citizens (requests when unknown) and the full count."""

    ids: tuple[int, ...]
    start: datetime
    end: datetime
    people: int
    total: int


def gather_evidence(conn: duckdb.DuckDBPyConnection, wanted: list[tuple[int, str | None, str, str, date, date]],
                    *, place_sql: str) -> dict[int, Evidence]:
    """Fetch the requests behind findings in one query over ``reqs``.

    ``wanted`` holds ``(tag, place or None for the whole city, district, category, from, to)`` rows,
    ``from`` inclusive and ``to`` exclusive (local dates); a tag may have several rows (the months of
    a season). Returns ``{tag: Evidence}`` for the tags with at least one request."""
    if not wanted:
        return {}
    table = pa.table({
        "tag": pa.array([w[0] for w in wanted], pa.int64()), "place": pa.array([w[1] for w in wanted], pa.string()),
        "district": pa.array([w[2] for w in wanted], pa.string()),
        "category": pa.array([w[3] for w in wanted], pa.string()),
        "lo": pa.array([datetime.combine(w[4], datetime.min.time()) for w in wanted], pa.timestamp("us")),
        "hi": pa.array([datetime.combine(w[5], datetime.min.time()) for w in wanted], pa.timestamp("us")),
    })
    conn.register("surge_wanted_arrow", table)
    try:
        rows = conn.execute(f"""
            SELECT w.tag, r.id, r.created_at, r.citizen
            FROM (SELECT id, created_at, citizen, coalesce(category, '{UNCATEGORISED}') AS cat_,
                         {place_sql} AS place_ FROM reqs) r
            JOIN surge_wanted_arrow w
              ON r.cat_ = w.category AND r.created_at >= w.lo AND r.created_at < w.hi
             AND (w.place IS NULL OR r.place_ = w.place)
            ORDER BY w.tag, r.created_at DESC, r.id DESC
        """).fetchall()
    finally:
        conn.unregister("surge_wanted_arrow")
    grouped: dict[int, list[tuple[int, datetime, str | None]]] = {}
    for tag, rid, created, citizen in rows:
        grouped.setdefault(int(tag), []).append((int(rid), created, citizen))
    out: dict[int, Evidence] = {}
    for tag, items in grouped.items():
        seen = {c if c is not None else f"#{i}" for i, _, c in items}
        kept = items[:MAX_EVIDENCE]
        out[tag] = Evidence(tuple(sorted(i for i, _, _ in kept)), min(x[1] for x in items),
                            max(x[1] for x in items), len(seen), len(items))
    return out


@dataclass
class _Draft:
    tag: int
    score: float
    key: str
    summary: str
    place: str | None
    category: str
    district: str | None
    street: str | None
    details: dict[str, object]


def _place_words(cells: Cells, s: int) -> str:
    place, street = cells.places[s], cells.streets[s]
    return place if not street or street == place else f"{street}{place}"


def _tested_cells(cells: Cells, mu: np.ndarray, *, min_count: int, min_ratio: float, fdr: float) -> np.ndarray:
    """Return the mask of one level's cells that surge (count, ratio and FDR rules of :func:`find_surges`)."""
    y = cells.counts
    tested = (mu > 0) & cells.covered[None, :]
    alpha = dispersion(y[tested], mu[tested])
    cand = tested & (y >= min_count) & (y >= min_ratio * mu)
    flagged = np.zeros_like(cand)
    flagged[cand] = bh_reject(upper_tail(y[cand], mu[cand], alpha), fdr, int(tested.sum()))
    return flagged


def _runs(ts: list[int]) -> list[list[int]]:
    """Consecutive period indices grouped: ``[3, 4, 9]`` → ``[[3, 4], [9]]``."""
    out: list[list[int]] = []
    for t in sorted(ts):
        if out and t == out[-1][-1] + 1:
            out[-1].append(t)
        else:
            out.append([t])
    return out


def place_seasons(cells: Cells, mu: np.ndarray, *, fdr: float, min_count: int, each_ratio: float = 1.5,
                  each_p: float = 1e-3) -> dict[tuple[int, int], dict[str, float]]:
    """Return ``{(series, calendar month 1–12): facts}`` for the months in which a place is high every year.

    ``cells`` must be monthly and ``mu`` their :func:`expected_counts`. The baseline of a month is
    taken *off-season*: the series' own level is measured without that calendar month and its two
    neighbours in every year (so a three-month season does not raise its own bar). A month is in
    season when in every one of ≥ 2 covered years the count is ≥ ``each_ratio`` × that baseline and
    ≥ 2 with a negative-binomial upper tail ≤ ``each_p`` (an intersection–union test, Berger 1982:
    "high in every year" holds at the level of its weakest year), the pooled count is ≥ ``min_count``
    and the pooled excess passes Benjamini–Hochberg at ``fdr`` over all series × months tested.
    Facts: years, count, expected (pooled), log10_p (pooled)."""
    if cells.period != "month" or cells.counts.size == 0:
        return {}
    y = cells.counts
    moy = np.array([d.month for d in cells.starts])
    alpha = dispersion(y[mu > 0], mu[mu > 0])
    row = y.sum(axis=1, keepdims=True)
    odds = np.divide(mu, row - y, out=np.zeros_like(mu), where=(row - y) > 0)
    share = odds / (1.0 + odds)  # the period's share of the category elsewhere (see expected_counts)
    found: list[tuple[int, int, float, float, float, int]] = []
    n_tests = 0
    for m in range(1, 13):
        cols = np.flatnonzero((moy == m) & cells.covered)
        if cols.size < 2:
            continue
        near = np.isin(moy, [(m - 2) % 12 + 1, m, m % 12 + 1]) & cells.covered
        off_level = y[:, ~near].sum(axis=1) / np.maximum(1.0 - share[:, near].sum(axis=1), 1e-3)
        ys, ms = y[:, cols], off_level[:, None] * share[:, cols]
        n_tests += int((ms.sum(axis=1) > 0).sum())
        every = ((ys >= each_ratio * ms) & (ys >= 2) & (ms > 0)).all(axis=1)
        pooled, base = ys.sum(axis=1), ms.sum(axis=1)
        rows = np.flatnonzero(every & (pooled >= min_count))
        if rows.size == 0:
            continue
        weakest = upper_tail(ys[rows], ms[rows], alpha).max(axis=1)
        pooled_p = upper_tail(pooled[rows], base[rows], alpha)
        found.extend((int(s), m, float(pooled[s]), float(base[s]), float(lp), int(cols.size))
                     for s, lp, w in zip(rows.tolist(), pooled_p.tolist(), weakest.tolist(), strict=True)
                     if w <= np.log10(each_p))
    if not found:
        return {}
    keep = bh_reject(np.array([f[4] for f in found]), fdr, n_tests)
    return {(s, m): {"years": yrs, "count": c, "expected": e, "log10_p": lp}
            for (s, m, c, e, lp, yrs), k in zip(found, keep, strict=True) if k}


def find_surges(conn: duckdb.DuckDBPyConnection, *, period: str = "month", min_count: int = 5,
                min_ratio: float = 3.0, fdr: float = 0.01, season_factor: float = 1.3,
                levels: tuple[str, ...] = ("fine", "street")) -> list[Finding]:
    """Find surges in ``reqs`` and return them as findings of kind ``surge``, rank 1 = highest score.

    Three sorts, told by ``details["sort"]``:

    * ``anomalous`` — one category × place × ``period`` (``"month"`` or ``"week"``) cell with at least
      ``min_count`` requests, ≥ ``min_ratio`` × its baseline and significant at false discovery rate
      ``fdr`` (see the module's method); places at ``levels`` ``"fine"`` (grid, else the finest place)
      and ``"street"`` (a street surge is dropped when a fine place in it surged in the same category
      and period);
    * ``seasonal_place`` — a place whose category is high in the same calendar months every year, more
      than the city's own season; its cells are not reported again as anomalies;
    * ``seasonal_city`` — a category high in the same months every year across the city (STL factor ≥
      ``season_factor``), with the places that carry most of it.

    Score: ``−log10 p`` of the cell or of the pooled season, capped at 99. Evidence: the cell's
    requests, or the most recent season's (at most 500 ids; ``details["requests_total"]`` counts all).
    Times are local. Raises ``ValueError`` for an unknown period or level, ``duckdb.Error`` when
    ``reqs`` is missing."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, not {period!r}")
    sqls = {"fine": FINE_PLACE, "street": STREET_PLACE}
    if any(level not in sqls for level in levels):
        raise ValueError(f"levels must be among {tuple(sqls)}, not {levels!r}")
    drafts: list[_Draft] = []
    wanted: dict[str, list[tuple[int, str | None, str, str, date, date]]] = {}
    fine_hits: set[tuple[str, str | None, date]] = set()
    city_monthly: Cells | None = None
    for level in levels:
        place_sql = sqls[level]
        monthly = cell_counts(conn, period="month", place_sql=place_sql)
        if monthly.counts.size == 0:
            continue
        city_monthly = city_monthly or monthly
        mu_m = expected_counts(monthly)
        seasons = place_seasons(monthly, mu_m, fdr=fdr, min_count=max(min_count, 8))
        cells = monthly if period == "month" else cell_counts(conn, period=period, place_sql=place_sql)
        mu = mu_m if period == "month" else expected_counts(cells)
        flagged = _tested_cells(cells, mu, min_count=min_count, min_ratio=min_ratio, fdr=fdr)
        series_index = {(c, p): i for i, (c, p) in enumerate(zip(monthly.categories, monthly.places, strict=True))}
        alpha = dispersion(cells.counts[mu > 0], mu[mu > 0])
        kept: dict[int, list[int]] = {}
        for s, t in zip(*np.nonzero(flagged), strict=True):
            s, t = int(s), int(t)
            start = cells.starts[t]
            ms = series_index[(cells.categories[s], cells.places[s])]
            if (ms, start.month) in seasons and not _unusual_for_season(monthly, ms, start, cells.counts[s, t],
                                                                        min_ratio):
                continue  # part of that place's season, reported as such
            if level == "street" and (cells.categories[s], cells.places[s], start) in fine_hits:
                continue
            if level == "fine":
                fine_hits.add((cells.categories[s], cells.streets[s], start))
                fine_hits.add((cells.categories[s], cells.places[s], start))
            kept.setdefault(s, []).append(t)
        for s, ts in kept.items():
            for run in _runs(ts):
                y, m_ = float(cells.counts[s, run].sum()), float(mu[s, run].sum())
                score = -float(upper_tail(np.array([y]), np.array([m_]), alpha)[0])
                tag = len(drafts)
                drafts.append(_anomaly(cells, s, [cells.starts[t] for t in run], y, m_, score, level, tag))
                wanted.setdefault(place_sql, []).extend(
                    (tag, cells.places[s], cells.districts[s], cells.categories[s], cells.starts[t],
                     period_end(cells.starts[t], period)) for t in run)
        _add_place_seasons(monthly, mu_m, seasons, level, drafts, wanted.setdefault(place_sql, []), fine_hits)
    if city_monthly is not None:
        _add_city_seasons(city_monthly, season_factor, drafts, wanted.setdefault("NULL", []))
    evidence: dict[int, Evidence] = {}
    for place_sql, rows in wanted.items():
        evidence.update(gather_evidence(conn, rows, place_sql=place_sql))
    findings = []
    order = {"anomalous": 0, "seasonal_place": 1, "seasonal_city": 2}
    for d in sorted(drafts, key=lambda d: (order[str(d.details["sort"])], -d.score, d.key)):
        ev = evidence.get(d.tag)
        if ev is None:
            continue
        if d.details["sort"] == "anomalous" and ev.people < max(MIN_PEOPLE, min_ratio * float(d.details["expected"])):
            continue  # counted in people the rise is no surge: one person writing often is a repeat (重复件)
        findings.append(Finding(
            kind="surge", key=d.key, rank=len(findings) + 1, score=d.score, summary=d.summary, place=d.place,
            start=ev.start, end=ev.end, request_ids=ev.ids, people=ev.people, category=d.category,
            district=d.district, street=d.street, details={**d.details, "requests_total": ev.total}))
    return findings


def _unusual_for_season(monthly: Cells, s: int, start: date, count: float, min_ratio: float) -> bool:
    """A cell of a seasonal series is still an anomaly when it is ≥ ``min_ratio`` × the mean of the
    same calendar month in the other covered years (and that excess is not within Poisson noise)."""
    cols = [i for i, d in enumerate(monthly.starts)
            if d.month == start.month and d.year != start.year and monthly.covered[i]]
    if not cols:
        return False
    same = float(monthly.counts[s, cols].mean())
    logp = float(upper_tail(np.array([count]), np.array([max(same, 0.5)]), 0.0)[0])
    return count >= min_ratio * max(same, 1.0) and logp <= -4.0


MIN_PEOPLE = 2
"""An anomalous surge needs at least this many people (distinct citizens; requests when citizens are
unknown), and at least ``min_ratio`` × its baseline counted in people, not only in requests: found by a
user trial, one person's five copies of a message made a "surge"."""


def _anomaly(cells: Cells, s: int, starts: list[date], y: float, mu: float, score: float, level: str,
             tag: int) -> _Draft:
    category, place, district = cells.categories[s], cells.places[s], cells.districts[s]
    label = period_label(starts[0], cells.period)
    words = period_words(starts[0], cells.period)
    if len(starts) > 1:
        label += "/" + period_label(starts[-1], cells.period)
        words += "至" + period_words(starts[-1], cells.period).replace("起一周", "当周")
    ratio = y / max(mu, 1e-9)
    shown = round(mu, 1) if mu >= 1 else round(mu, 2)  # the ratio is of the baseline as printed
    ratio = y / max(shown, 1e-9)
    against = f"约为基线{shown:g}件的{ratio:.0f}倍" if mu >= 0.1 else "此前几乎没有（基线不足0.1件）"
    summary = f"{_place_words(cells, s)}{leaf(category)}诉求{words}激增：{int(y)}件，{against}，建议排查原因、主动处置"
    return _Draft(tag, min(score, MAX_SCORE), finding_key("surge", "anomalous", place, category, label),
                  summary, place, category, district or None, cells.streets[s],
                  {"sort": "anomalous", "level": level, "period": cells.period, "period_label": label,
                   "periods": len(starts), "count": int(y), "expected": round(mu, 3), "ratio": round(ratio, 2)})


def _add_place_seasons(monthly: Cells, mu: np.ndarray, seasons: dict[tuple[int, int], dict[str, float]],
                       level: str, drafts: list[_Draft], wanted: list[tuple[int, str | None, str, str, date, date]],
                       fine_hits: set[tuple[str, str | None, date]]) -> None:
    by_series: dict[int, list[int]] = {}
    for s, m in seasons:
        by_series.setdefault(s, []).append(m)
    for s, months in sorted(by_series.items()):
        for run in month_runs(months):
            facts = [seasons[(s, m)] for m in run]
            count, expected = sum(f["count"] for f in facts), sum(f["expected"] for f in facts)
            logp = float(upper_tail(np.array([count]), np.array([expected]), 0.0)[0])
            category, place, district = monthly.categories[s], monthly.places[s], monthly.districts[s]
            if level == "street" and any((category, place, d) in fine_hits
                                         for d in monthly.starts if d.month in run):
                continue
            if level == "fine":
                fine_hits.update((category, monthly.streets[s], d) for d in monthly.starts if d.month in run)
            years = sorted({d.year for i, d in enumerate(monthly.starts) if d.month in run and monthly.covered[i]})
            before = (run[0] - 2) % 12 + 1
            tag = len(drafts)
            drafts.append(_Draft(
                tag, min(-logp, MAX_SCORE), finding_key("surge", "seasonal_place", place, category,
                                                        season_label(run)),
                f"{_place_words(monthly, s)}{leaf(category)}诉求每年{season_label(run)}高发"
                f"（{years[0]}–{years[-1]}年在季共{int(count)}件，约为基线的{count / max(expected, 1e-9):.1f}倍），"
                f"属季节性高频，建议{before}月前主动治理",
                place, category, district or None, monthly.streets[s],
                {"sort": "seasonal_place", "level": level, "months": run, "years": years, "count": int(count),
                 "expected": round(expected, 3), "ratio": round(count / max(expected, 1e-9), 2)}))
            wanted.extend(_latest_season(tag, monthly, run, place, district, category))


def _latest_season(tag: int, monthly: Cells, run: list[int], place: str | None, district: str,
                   category: str) -> list[tuple[int, str | None, str, str, date, date]]:
    """Rows of the most recent covered occurrence of a season (a run of consecutive calendar months)."""
    idx = [i for i, d in enumerate(monthly.starts) if d.month in run and monthly.covered[i]]
    if not idx:
        return []
    last = idx[-1]
    chosen = [last]
    while chosen[-1] - 1 in idx and len(chosen) < len(run):
        chosen.append(chosen[-1] - 1)
    return [(tag, place, district, category, monthly.starts[i], period_end(monthly.starts[i], "month"))
            for i in sorted(chosen)]


def _add_city_seasons(monthly: Cells, season_factor: float, drafts: list[_Draft],
                      wanted: list[tuple[int, str | None, str, str, date, date]]) -> None:
    """City-wide seasonal surges per category, from the fine level's monthly cells."""
    totals = monthly.counts.sum(axis=0)
    full = totals >= 0.5 * np.median(totals[monthly.covered]) if monthly.covered.any() else monthly.covered
    best: tuple[int, int] = (0, 0)
    start = None
    for i, ok in enumerate([*full.tolist(), False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            best = max(best, (i - start, start), key=lambda b: b[0])
            start = None
    length, first = best
    if length < 24:
        return
    cols = slice(first, first + length)
    names = sorted(set(monthly.categories))
    for c, category in enumerate(names):
        rows = monthly.cat == c
        series = monthly.counts[rows, cols].sum(axis=0)
        months = seasonal_months(series, monthly.starts[first].month, season_factor=season_factor)
        for run in month_runs(list(months)):
            count = sum(months[m]["count"] for m in run)
            expected = sum(months[m]["expected"] for m in run)
            logp = float(upper_tail(np.array([count]), np.array([expected]), 0.0)[0])
            factor = count / expected
            in_run = np.array([d.month in run for d in monthly.starts[cols]])
            block = monthly.counts[rows, cols]
            per_place = block[:, in_run].sum(axis=1)
            off = block[:, ~in_run].sum(axis=1) / max(int((~in_run).sum()), 1)
            excess = per_place - off * int(in_run.sum())  # the extra load the season brings to each place
            order = np.argsort(-excess)[:5]
            idx = np.flatnonzero(rows)
            top = [{"place": _place_words(monthly, int(idx[o])), "count": int(per_place[o]),
                    "excess": round(float(excess[o]), 1)} for o in order if excess[o] > 0]
            years = sorted({d.year for d in np.array(monthly.starts[cols])[in_run]})
            before = (run[0] - 2) % 12 + 1
            where = "、".join(t["place"] for t in top[:3])
            tag = len(drafts)
            drafts.append(_Draft(
                tag, min(-logp, MAX_SCORE), finding_key("surge", "seasonal_city", category, season_label(run)),
                f"全市{leaf(category)}诉求每年{season_label(run)}高发（为趋势的{factor:.1f}倍，"
                f"{years[0]}–{years[-1]}年每年如此），建议{before}月前提前部署"
                + (f"，增量最大的是{where}" if where else ""),
                None, category, None, None,
                {"sort": "seasonal_city", "level": "city", "months": run, "years": years, "count": int(count),
                 "expected": round(expected, 3), "ratio": round(factor, 2),
                 "monthly_factor": {str(m): round(months[m]["factor"], 2) for m in run}, "top_places": top}))
            wanted.extend(_latest_season(tag, monthly, run, None, "", category))
