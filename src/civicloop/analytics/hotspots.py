"""Hotspots (热点): clusters of requests about one matter at one place in one time window, ranked by heat.

How a hotspot is found (SQL over ``reqs`` for the counting, numpy/scipy only on the candidate texts):

1. **Rows.** One scan of ``reqs`` (``since`` ≤ ``created_at`` < ``until``, local times) into a temporary
   table: id, title, the first 30 characters of the description, place, district, street, category,
   time, support, citizen. Requests rejected without a category (no content, out of scope: about no
   matter) are left out; rejected duplicates stay (each is one more person with the problem).
2. **Pools.** A request is pooled by its place when the place is *fine* (a grid, estate, road: not the
   request's district or street) and named by at least two requests of the period; otherwise (no place,
   only a district or street, or a place nobody else names — on the Teddy Cup data that is mostly text the
   place patterns mis-read as a name, such as ``车贷没跑路``) it goes to the *coarse pool* of its district
   (or of the whole city when the district is unknown). Requests about one matter without a place are so
   clustered by text alone within their district or city, and the hotspot is flagged
   ``details["place_known"] = False`` with ``place`` = the district (or ``None``).
3. **Candidate cells (SQL).** A cell is pool × category × window of ``window_days`` days (fixed buckets
   from the Unix epoch). A fine cell is a candidate when it has at least ``min_requests`` requests *and*
   more than its expected count plus three Poisson standard deviations. The expectation comes from the
   *other* windows (so a burst does not raise its own bar): the place's requests of that category in
   other windows × the category's city-wide requests in this window ÷ those in other windows (place and
   time independent given the category: seasonal heating complaints in every grid are not a hotspot);
   it is 0 when the category has no requests in other windows. A coarse cell is a candidate
   with ``min_requests`` alone (it mixes every matter, so only its texts can tell). Any cell holding a
   request with ``min_support`` or more upvotes is a candidate (a petition). The rows clustered are those
   of candidate cells and of the windows just before and after them, so a cluster is never cut at a
   bucket boundary. On 10⁶ generated requests this leaves a few per cent of the rows.
4. **Text clusters.** Titles (generic words such as ``投诉``, ``A市`` removed) become TF-IDF vectors of
   character 2- and 3-grams, fitted on the candidate titles; within each pool × category, average-linkage
   clustering cuts at cosine similarity ``similarity`` (0.15). A coarse-pool cluster whose centroid is as
   similar to a fine cluster of the same category that overlaps it in time joins it (the place comes from
   the requests that named it).
5. **Episodes.** A cluster is cut where ``window_days`` pass without a request; each piece with at least
   ``min_requests`` requests (or one petition with ``min_support`` upvotes) is a hotspot.

**Heat index.** For a hotspot with N requests, P distinct citizens (a request without a citizen key
counts as one), S upvotes/support in total, its last request ``age`` days before ``now``, and n₁, n₂
requests in the first and second half of its time range::

    mass    = P + 0.5·(N − P) + 5·ln(1 + S)
    growth  = clip(((n₂ + 1) / (n₁ + 1)) ** 0.25, 0.8, 1.25)
    recency = 0.5 + 0.5 · 2 ** (−age / half_life_days)        (half_life_days = 30)
    heat    = mass · growth · recency

Why: people count more than messages (the same person writing five times is one voice, so a repeat
counts half); an upvote is a one-click "me too" worth far less than a written complaint, and a petition's
thousands of upvotes must not bury everything else, so support enters as a logarithm (as in the 'hot'
ranking of news aggregators: 5·ln(1+S) makes 10 upvotes ≈ 12 people and 2,000 upvotes ≈ 38 people). Growth
and recency only modulate (by at most ×1.25 and ×0.5): a hotspot that is accelerating or still going on
comes first among equals, but a large hotspot of last spring stays on the year's list. All counts are
exact; times are local wall-clock times as in ``reqs``; ages in days.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from scipy.cluster.hierarchy import linkage
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfVectorizer

from civicloop.analytics.findings import Finding, finding_key
from civicloop.intelligence.place_patterns import find_places

WINDOW_DAYS = 30
MIN_REQUESTS = 3
MIN_SUPPORT = 50
SIMILARITY = 0.15
ABSORB_SIMILARITY = 0.3
HALF_LIFE_DAYS = 30.0
Z = 3.0
SUPPORT_WEIGHT = 5.0
REPEAT_WEIGHT = 0.5
_MAX_LINKAGE = 2500  # rows per average-linkage call (n² memory); larger pools are cut in time order
_CHUNK = 300  # small groups share one similarity product up to this many rows (fewer calls, little waste)
_SUMMARY_CHARS = 40

# A building in a title (``43号楼``, ``7栋``, ``3幢``): titles naming different buildings are different places.
_BUILDING = re.compile(r"\d+\s*(?:号楼|栋|幢|号院)")
_HAN = re.compile(r"[\u4e00-\u9fff]+")
# Words that say how someone complains, not what about; removed before the texts are compared.
_GENERIC = re.compile(
    r"(西地省|[A-Z]\d*市|[A-Z]\d*[区县]|关于|投诉|反映|举报|咨询|请问|建议|请求|恳请|希望|强烈|问题|情况|"
    r"严重|的|了|吗|呢|！|？|，|。|、|\s)+"
)


@dataclass(frozen=True)
class HeatParts:
    """The inputs of the heat index of one hotspot (counts of requests, people, upvotes; ``age_days`` in days)."""

    requests: int
    people: int
    support: int
    first_half: float
    second_half: float
    age_days: float


def heat_index(parts: HeatParts, *, half_life_days: float = HALF_LIFE_DAYS) -> float:
    """Return the heat of a hotspot (the formula of the module docstring; higher = hotter, > 0).

    ``parts.first_half``/``second_half``: requests in the first and second half of its time range (a
    request exactly in the middle counts half to each). ``age_days``: days from its last request to
    ``now`` (negative ages count as 0). Raises ``ValueError`` for ``half_life_days`` ≤ 0."""
    if half_life_days <= 0:
        raise ValueError("half_life_days must be positive")
    mass = (parts.people + REPEAT_WEIGHT * max(parts.requests - parts.people, 0)
            + SUPPORT_WEIGHT * math.log1p(max(parts.support, 0)))
    growth = min(max(((parts.second_half + 1) / (parts.first_half + 1)) ** 0.25, 0.8), 1.25)
    recency = 0.5 + 0.5 * 2 ** (-max(parts.age_days, 0.0) / half_life_days)
    return mass * growth * recency


def _as_local(value: date | datetime | None, name: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        if value is not None and value.tzinfo is not None:
            raise ValueError(f"{name} must be a local wall-clock time without a zone, as in reqs")
        return value
    return datetime.combine(value, time())


def _normalise(title: str) -> str:
    return _GENERIC.sub(" ", title or "").strip()


def _load_rows(conn: duckdb.DuckDBPyConnection, since: datetime | None, until: datetime | None) -> None:
    # A request rejected without a category (no content, out of scope) is about no matter; rejected
    # duplicates keep their category and count: each is one more person with the problem.
    where, params = ["created_at IS NOT NULL", "NOT (status = 'rejected' AND category IS NULL)"], []
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    if until is not None:
        where.append("created_at < ?")
        params.append(until)
    # One scan of reqs (a view over the attached operational tables can be slow to scan).
    conn.execute(f"""
        CREATE OR REPLACE TEMP TABLE _hs_rows AS
        SELECT id, coalesce(title, '') AS title, left(coalesce(description, ''), 30) AS lead, place, district,
               street, coalesce(category, '') AS category, created_at, coalesce(support_count, 0) AS support, citizen
        FROM reqs WHERE {" AND ".join(where)}
    """, params)
    conn.execute("""
        CREATE OR REPLACE TEMP TABLE _hs_pool AS
        WITH named AS (
            SELECT place, count(*) AS n FROM _hs_rows WHERE place IS NOT NULL GROUP BY place
        )
        SELECT r.*,
               (r.place IS NOT NULL AND r.place IS DISTINCT FROM r.district AND r.place IS DISTINCT FROM r.street
                AND named.n >= 2) AS fine
        FROM _hs_rows r LEFT JOIN named ON named.place = r.place
    """)


def _candidates(conn: duckdb.DuckDBPyConnection, window_days: int, min_requests: int,
                min_support: int) -> pa.Table:
    seconds = 86400 * window_days
    return conn.execute(f"""
        WITH r AS (
            SELECT *, CASE WHEN fine THEN place ELSE coalesce(district, '') END AS pool,
                   CAST(floor(epoch(created_at) / {seconds}) AS BIGINT) AS b
            FROM _hs_pool
        ),
        cell AS (
            SELECT pool, category, b, any_value(fine) AS fine, count(*) AS n, max(support) AS smax
            FROM r GROUP BY pool, category, b
        ),
        g AS (SELECT pool, category, sum(n) AS n FROM cell GROUP BY pool, category),
        cb AS (SELECT category, b, sum(n) AS n FROM cell GROUP BY category, b),
        c AS (SELECT category, sum(n) AS n FROM cell GROUP BY category),
        hot AS (
            SELECT cell.pool, cell.category, cell.b
            FROM cell JOIN g USING (pool, category) JOIN cb USING (category, b) JOIN c USING (category),
                 LATERAL (SELECT CASE WHEN c.n > cb.n THEN (g.n - cell.n) * cb.n / (c.n - cb.n) ELSE 0 END AS e) e
            WHERE cell.smax >= ?
               OR (cell.n >= ? AND (NOT cell.fine OR cell.n > e.e + {Z} * sqrt(e.e)))
        ),
        near AS (
            SELECT DISTINCT pool, category, b + d AS b FROM hot, (VALUES (-1), (0), (1)) AS t(d)
        )
        SELECT r.id, r.title, r.lead, r.place, r.district, r.category, r.pool, r.fine,
               epoch(r.created_at) AS t, r.support, r.citizen
        FROM r JOIN near USING (pool, category, b)
        ORDER BY r.fine DESC, r.pool, r.category, r.created_at, r.id
    """, [min_support, min_requests]).fetch_arrow_table()


def _cut(tree: np.ndarray, n: int, threshold: float) -> np.ndarray:
    """Flat clusters of a monotone linkage ``tree`` (scipy's format) over ``n`` leaves: every merge at a
    distance ≤ ``threshold``; labels 0…k−1 in order of first appearance."""
    parent = np.arange(2 * n - 1)
    for i in range(n - 1):
        if tree[i, 2] > threshold:
            break  # average linkage is monotone: the rows are in order of distance
        parent[int(tree[i, 0])] = parent[int(tree[i, 1])] = n + i
    roots = np.empty(n, dtype=np.int64)
    for leaf in range(n):
        node = leaf
        while parent[node] != node:
            node = parent[node]
        roots[leaf] = node
    _, labels = np.unique(roots, return_inverse=True)
    return labels.astype(np.int64)


def _cluster_groups(x: csr_matrix, unit: np.ndarray, bounds: list[tuple[int, int]],
                    similarity: float) -> np.ndarray:
    """Average-linkage clusters within each group ``[lo, hi)`` of rows of ``x`` (L2-normalised TF-IDF),
    cut at cosine ``similarity``; returns one label per row, unique across groups. Two rows whose titles
    name different buildings (``unit``: a code per row, 0 when none) are as far apart as texts can be.
    Similarities are computed for runs of consecutive small groups at once (up to ``_CHUNK`` rows); a
    group larger than ``_MAX_LINKAGE`` rows is cut in consecutive (time-ordered) parts."""
    labels = np.empty(x.shape[0], dtype=np.int64)
    offset = 0
    pieces: list[tuple[int, int]] = []
    for lo, hi in bounds:
        pieces.extend((a, min(a + _MAX_LINKAGE, hi)) for a in range(lo, hi, _MAX_LINKAGE))
    threshold = 1.0 - similarity
    i = 0
    while i < len(pieces):
        c_lo = pieces[i][0]
        j = i
        while j + 1 < len(pieces) and pieces[j + 1][1] - c_lo <= _CHUNK:
            j += 1
        c_hi = pieces[j][1]
        sim = (x[c_lo:c_hi] @ x[c_lo:c_hi].T).toarray() if c_hi - c_lo > 1 else np.ones((1, 1))
        codes = unit[c_lo:c_hi]
        if codes.any():
            sim[(codes[:, None] != codes[None, :]) & (codes[:, None] > 0) & (codes[None, :] > 0)] = 0.0
        for lo, hi in pieces[i:j + 1]:
            m = hi - lo
            if m == 1:
                found = np.zeros(1, dtype=np.int64)
            elif m == 2:
                together = sim[lo - c_lo, hi - 1 - c_lo] >= similarity
                found = np.array([0, 0 if together else 1], dtype=np.int64)
            else:
                block = sim[lo - c_lo:hi - c_lo, lo - c_lo:hi - c_lo]
                dist = np.clip(1.0 - block[np.triu_indices(m, 1)], 0.0, 2.0)
                found = _cut(linkage(dist, method="average"), m, threshold)
            labels[lo:hi] = found + offset
            offset += int(found.max()) + 1
        i = j + 1
    return labels


def _centroids(x: csr_matrix, labels: np.ndarray, k: int) -> csr_matrix:
    member = csr_matrix((np.ones(len(labels), dtype=np.float32), (labels, np.arange(len(labels)))),
                        shape=(k, len(labels)))
    sums = member @ x
    norms = np.sqrt(np.asarray(sums.multiply(sums).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return csr_matrix(sums.multiply(1.0 / norms[:, None]))


def _absorb(x: csr_matrix, labels: np.ndarray, fine: np.ndarray, category: np.ndarray, t: np.ndarray,
            similarity: float, gap: float) -> np.ndarray:
    """Relabel coarse-pool clusters into the most similar fine cluster of the same category whose time
    range is within ``gap`` seconds of theirs (centroid cosine ≥ ``similarity``)."""
    k = int(labels.max()) + 1
    is_fine = np.zeros(k, dtype=bool)
    is_fine[labels[fine]] = True
    size = np.bincount(labels, minlength=k)
    first = np.full(k, np.inf)
    last = np.full(k, -np.inf)
    np.minimum.at(first, labels, t)
    np.maximum.at(last, labels, t)
    cat = np.empty(k, dtype=object)
    cat[labels] = category
    coarse_ids = np.flatnonzero(~is_fine & (size > 0))
    fine_ids = np.flatnonzero(is_fine & (size >= 2))
    if len(coarse_ids) == 0 or len(fine_ids) == 0:
        return labels
    cent = _centroids(x, labels, k)
    sim = (cent[coarse_ids] @ cent[fine_ids].T).tocoo()
    best: dict[int, tuple[float, int]] = {}
    for i, j, s in zip(sim.row, sim.col, sim.data, strict=True):
        a, b = int(coarse_ids[i]), int(fine_ids[j])
        if s < similarity or cat[a] != cat[b]:
            continue
        if first[a] > last[b] + gap or first[b] > last[a] + gap:
            continue
        if s > best.get(a, (-1.0, -1))[0]:
            best[a] = (float(s), b)
    if not best:
        return labels
    target = np.arange(k)
    for a, (_, b) in best.items():
        target[a] = b
    return target[labels]


def _episodes(labels: np.ndarray, t: np.ndarray, gap: float) -> np.ndarray:
    """Split each cluster where more than ``gap`` seconds pass without a request; new labels 0…m−1."""
    order = np.lexsort((t, labels))
    lab, tt = labels[order], t[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (lab[1:] != lab[:-1]) | (np.diff(tt) > gap)
    out = np.empty(len(order), dtype=np.int64)
    out[order] = np.cumsum(new) - 1
    return out


def _keywords(centroid: np.ndarray, grams: np.ndarray, vocabulary: dict[str, int], titles: list[str],
              k: int = 3) -> list[str]:
    """The cluster's ``k`` most telling words: character 2- and 3-grams of Chinese characters found in
    at least a third of its cleaned titles, by coverage × weight in the TF-IDF centroid; a gram that
    shares two characters in a row with one already taken is skipped (``丽发新``, ``发新城``)."""
    cleaned = [_normalise(title) for title in titles]
    coverage: Counter[str] = Counter()
    for text in cleaned:
        coverage.update({text[a:a + size] for size in (3, 2) for a in range(len(text) - size + 1)})
    floor = max(1.0, len(cleaned) / 3)
    ranked = sorted(((coverage[g] * float(centroid[vocabulary[g]]), g) for g in coverage
                     if coverage[g] >= floor and g in vocabulary and _HAN.fullmatch(g)), key=lambda p: (-p[0], p[1]))
    words: list[str] = []
    for weight, gram in ranked:
        if weight <= 0 or len(words) == k:
            break
        pairs = {gram[a:a + 2] for a in range(len(gram) - 1)}
        if not any(p in w for w in words for p in pairs):
            words.append(gram)
    del grams
    return words


def _central(x: csr_matrix, rows: np.ndarray, support: np.ndarray) -> tuple[int, np.ndarray]:
    """Return (position in ``rows`` of the most central title, the cluster's centroid). Most central:
    highest cosine to the centroid (the mean TF-IDF vector), ties broken by more support, then the
    earlier row."""
    sub = x[rows]
    centroid = np.asarray(sub.mean(axis=0)).ravel()
    scores = np.round(np.asarray(sub @ centroid).ravel(), 6)
    best = max(range(len(rows)), key=lambda i: (scores[i], support[rows[i]], -i))
    return best, centroid


def _summary(title: str, place: str | None) -> str:
    """The title, trimmed; prefixed with the place when the title names no place at all (neither the
    place, nor its first three characters — a grid ``榆苑村第3网格`` is named by ``榆苑村`` — nor any
    district, street, estate or road the place patterns find)."""
    text = re.sub(r"\s+", " ", title).strip()
    if len(text) > _SUMMARY_CHARS:
        text = text[:_SUMMARY_CHARS - 1] + "…"
    if place and place[:3] not in text:
        named = find_places(title, "")
        if not (named.district or named.street or named.estate or named.road):
            text = f"{place}：{text}"
    return text


def find_hotspots(conn: duckdb.DuckDBPyConnection, *, since: date | datetime | None = None,
                  until: date | datetime | None = None, window_days: int = WINDOW_DAYS, top: int | None = 50,
                  now: datetime | None = None, min_requests: int = MIN_REQUESTS, min_support: int = MIN_SUPPORT,
                  similarity: float = SIMILARITY, half_life_days: float = HALF_LIFE_DAYS) -> list[Finding]:
    """Return the hottest hotspots (热点) of the requests in ``reqs``, hottest first (``rank`` 1, 2, …).

    ``conn``: a DuckDB connection holding the view or table ``reqs`` (``analytics.sources``).
    ``since``/``until``: local wall-clock times (a date means its midnight), ``since`` ≤ created_at <
    ``until``; ``None`` leaves that side open. ``window_days``: width of the candidate windows and the
    longest quiet gap inside one hotspot, in days. ``top``: how many to return (``None``: all).
    ``now``: the local time recency is measured to (default: the latest ``created_at`` of the period).
    ``min_requests``: fewest requests of a hotspot, unless one of them has ``min_support`` upvotes or
    more. ``similarity``: the cosine (0–1) at which titles are one matter.

    Each :class:`Finding` has ``kind="hotspot"``, ``score`` = the heat index (module docstring),
    ``summary`` = the cluster's most central title (trimmed to 40 characters, the place prefixed when the
    title does not name it), ``place`` (the district or ``None`` when the requests named none, with
    ``details["place_known"] = False``), ``start``/``end`` (first and last request, local),
    ``request_ids`` (sorted), ``people`` (distinct citizens), ``category`` (most common),
    ``district``, and ``details``: ``requests``, ``support``, ``keywords``, ``growth_halves``,
    ``age_days``, ``place_known``. ``key`` = ``finding_key("hotspot", place, category, keywords, month
    of start)``, the same on every run over the same rows. Raises ``ValueError`` for a non-positive
    ``window_days`` or ``half_life_days`` or zone-aware times, ``duckdb.Error`` when ``reqs`` is missing."""
    if window_days <= 0:
        raise ValueError("window_days must be positive")
    if half_life_days <= 0:
        raise ValueError("half_life_days must be positive")
    since, until = _as_local(since, "since"), _as_local(until, "until")
    now = _as_local(now, "now")
    _load_rows(conn, since, until)
    try:
        if now is None:
            latest = conn.execute("SELECT max(created_at) FROM _hs_rows").fetchone()
            if latest is None or latest[0] is None:
                return []
            now = latest[0]
        cand = _candidates(conn, window_days, min_requests, min_support)
    finally:
        conn.execute("DROP TABLE IF EXISTS _hs_pool")
        conn.execute("DROP TABLE IF EXISTS _hs_rows")
    if cand.num_rows == 0:
        return []
    return _rank(cand, now=now, window_days=window_days, top=top, min_requests=min_requests,
                 min_support=min_support, similarity=similarity, half_life_days=half_life_days)


def _rank(cand: pa.Table, *, now: datetime, window_days: int, top: int | None, min_requests: int,
          min_support: int, similarity: float, half_life_days: float) -> list[Finding]:
    ids = cand.column("id").to_numpy()
    titles = cand.column("title").to_pylist()
    places = cand.column("place").to_pylist()
    districts = cand.column("district").to_pylist()
    category = np.array(cand.column("category").to_pylist(), dtype=object)
    pool = cand.column("pool").to_pylist()
    fine = cand.column("fine").to_numpy(zero_copy_only=False).astype(bool)
    t = cand.column("t").to_numpy(zero_copy_only=False).astype(np.float64)
    support = cand.column("support").to_numpy(zero_copy_only=False).astype(np.int64)
    citizens = cand.column("citizen").to_pylist()

    leads = cand.column("lead").to_pylist()
    texts = [f"{_normalise(s)} {_normalise(d)}".strip() or s or "?" for s, d in zip(titles, leads, strict=True)]
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(2, 3), sublinear_tf=True, dtype=np.float32)
    x = csr_matrix(vectorizer.fit_transform(texts))
    grams = vectorizer.get_feature_names_out()
    vocabulary = vectorizer.vocabulary_

    buildings: dict[str, int] = {}
    unit = np.array([buildings.setdefault(m[0], len(buildings) + 1) if (m := _BUILDING.search(s or "")) else 0
                     for s in titles], dtype=np.int64)
    # Rows arrive ordered by (fine, pool, category, time): cluster each run of one pool × category.
    bounds, n, lo = [], len(ids), 0
    while lo < n:
        hi = lo + 1
        while hi < n and pool[hi] == pool[lo] and category[hi] == category[lo] and fine[hi] == fine[lo]:
            hi += 1
        bounds.append((lo, hi))
        lo = hi
    labels = _cluster_groups(x, unit, bounds, similarity)
    gap = 86400.0 * window_days
    labels = _absorb(x, labels, fine, category, t, max(similarity, ABSORB_SIMILARITY), gap)
    labels = _episodes(labels, t, gap)

    now_s = (now - datetime(1970, 1, 1)).total_seconds()
    members: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        members.setdefault(label, []).append(i)
    scored: list[tuple[float, int, list[int], HeatParts]] = []
    for label, rows in members.items():
        support_sum = int(support[rows].sum())
        if len(rows) < min_requests and int(support[rows].max()) < min_support:
            continue
        times = t[rows]
        mid = (times.min() + times.max()) / 2
        first = float((times < mid).sum() + 0.5 * (times == mid).sum())
        people = len({c for i in rows if (c := citizens[i]) is not None}) + sum(citizens[i] is None for i in rows)
        parts = HeatParts(requests=len(rows), people=people, support=support_sum, first_half=first,
                          second_half=len(rows) - first, age_days=(now_s - float(times.max())) / 86400)
        scored.append((heat_index(parts, half_life_days=half_life_days), label, rows, parts))
    scored.sort(key=lambda s: (-s[0], min(ids[s[2]])))
    if top is not None:
        scored = scored[:top]

    findings = []
    for rank, (heat, _label, rows, parts) in enumerate(scored, start=1):
        rows_arr = np.array(rows)
        is_fine = bool(fine[rows_arr].any())
        fine_rows = [i for i in rows if fine[i]]
        place: str | None
        if is_fine:
            place = Counter(places[i] for i in fine_rows).most_common(1)[0][0]
        else:
            place = pool[rows[0]] or None
        district = Counter(d for i in rows if (d := districts[i])).most_common(1)
        cats = Counter(c for i in rows if (c := category[i]))
        cat = cats.most_common(1)[0][0] if cats else None
        position, centroid = _central(x, rows_arr, support)
        central = rows[position]
        words = _keywords(centroid, grams, vocabulary, [titles[i] for i in rows])
        start = datetime(1970, 1, 1) + timedelta(seconds=float(t[rows_arr].min()))
        end = datetime(1970, 1, 1) + timedelta(seconds=float(t[rows_arr].max()))
        details: dict[str, Any] = {
            "requests": parts.requests, "support": parts.support, "keywords": words,
            "growth_halves": [parts.first_half, parts.second_half], "age_days": round(parts.age_days, 2),
            "place_known": is_fine, "central_request_id": int(ids[central]),
        }
        findings.append(Finding(
            kind="hotspot",
            key=finding_key("hotspot", place, cat, " ".join(sorted(words)), start.strftime("%Y-%m")),
            rank=rank, score=float(heat), summary=_summary(titles[central], place), place=place,
            start=start, end=end,
            request_ids=tuple(sorted(int(i) for i in ids[rows_arr])), people=parts.people, category=cat,
            district=district[0][0] if district else None, details=details,
        ))
    return findings
