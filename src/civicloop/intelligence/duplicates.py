"""Duplicate requests (重复件): the same matter at the same place within a time window.

A request is a duplicate of an open one when (1) its title and body, normalised, equal the open
request's, or (2) it was written within ``window_days`` after the open one, at the same place
(:func:`same_place`), and its text is similar (:func:`similarity` ≥ ``threshold``). It is then linked to
the open request's master and answered with it.

Two entry points, both pure (no database):

* :func:`find_master` for the intake of one request against the open requests the caller loaded;
* :func:`find_duplicate_groups` for a whole data set (an import, the nightly analytics): MinHash LSH
  (datasketch) on character shingles proposes candidate pairs, :func:`find_master` verifies them.

Similarity is rapidfuzz's normalised Indel similarity (``fuzz.ratio``) of titles and of bodies, with
``fuzz.partial_ratio`` for a body that is mostly contained in the other (a truncated copy, or one with
a sentence added). :func:`evaluate_votes_file` measures the detector on the Teddy Cup 2020 C
``messages_with_votes.csv`` (see docs/intelligence.md, "Duplicates").
"""

from __future__ import annotations

import csv
import hashlib
import math
import random
import re
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from rapidfuzz import fuzz

from civicloop.intelligence.data import normalise as normalise_text

RequestId = Hashable

DEFAULT_THRESHOLD = 0.5
"""Similarity at or above which two texts at the same place are the same matter (measured: see docs)."""
DEFAULT_WINDOW_DAYS = 30.0
EXACT_ANYWHERE_CHARS = 30
"""A verbatim copy links whatever the place only when its normalised text has at least this many
characters; a shorter one ("道路破损", an Open311 request with only its service name) must also be at the
same place (found by a user trial: short identical texts from two districts were linked)."""
NEAR_EXACT = 0.95
"""Similarity from which two requests count as the same text even when the place of either is unknown
(a resubmission with a word changed or ``_x000D_`` residue): seen in the held-out Teddy Cup messages,
where copies differ by a sentence cut or characters swapped by the anonymisation."""
"""Days after an open request during which a similar request at its place is its duplicate."""
TITLE_WEIGHT = 0.35
"""Share of the title in :func:`similarity`; the body carries the rest (it names the matter in detail)."""
PARTIAL_MIN_SHARE = 0.5
"""``partial_ratio`` is used only when the shorter body is at least this share of the longer one, so a
short body found inside a long petition does not count as the same text."""
PARTIAL_MAX_SHARE = 0.8
"""Above this length share ``partial_ratio`` is skipped: a copy cut to 80 % of the other still has a
``ratio`` of 2 × 0.8 / 1.8 ≈ 0.89."""
PARTIAL_MIN_CHARS = 20
PARTIAL_MIN_RATIO = 40
"""``partial_ratio`` is tried only when ``fuzz.ratio`` of the bodies is at least this (0–100): unrelated
bodies score about 30, and every pair it added on the Teddy data had a ratio of 44 or more."""
BODY_CHARS = 500
"""Bodies are compared on their first 500 normalised characters: the matter is said at the start, and
``partial_ratio`` on two 3,000-character petitions costs tens of milliseconds."""
SHINGLE = 3
"""Character shingle size of the MinHash signatures (normalised Chinese text: 3 characters ≈ one word and a half)."""
NUM_PERM = 128
LSH_THRESHOLD = 0.2
"""Estimated Jaccard similarity of shingle sets above which LSH proposes a pair. Low on purpose: LSH only
proposes, :func:`similarity` decides. Measured on the Teddy data: it misses 23 of the 360 same-place pairs
with similarity ≥ 0.5 (0.3 missed 54), 1 of 280 at ≥ 0.6 (docs/intelligence.md)."""

# Masked phone numbers (138****1234) and e-mail addresses (***@***) leave digit stubs that differ between
# copies of one message; they say nothing about the matter.
_MASKED = re.compile(r"\d*\*{2,}\d*|\*+@\*+(?:\.\*+)?")


def normalise(title: str | None, detail: str | None = None) -> str:
    """Return the key two copies of one message share: title then body, lower case, Han characters, latin
    letters and digits only, without Excel's ``_x000D_`` residue and masked phone or e-mail residue.

    Takes a title and a body (either may be empty or ``None``); returns one string (``""`` when nothing
    is left). Same rule as :func:`civicloop.intelligence.data.normalise`, applied to both fields."""
    return normalise_field(title) + normalise_field(detail)


NORMALISED_CACHE = 16384
"""Texts whose normalised form :func:`normalise_field` keeps (per process, least recently used out).
Intake compares each new request with up to 500 open ones (``requests.triage_steps``), the same few
thousand texts again and again: normalising them was a fifth of intake's time (issue 9,
docs/benchmarks.md). About 1.5 KB per text of average length, so some 25 MB when full."""


@lru_cache(maxsize=NORMALISED_CACHE)
def normalise_field(text: str | None) -> str:
    """Return one field normalised as in :func:`normalise` (masked residue removed, then
    :func:`civicloop.intelligence.data.normalise`). Takes any string or ``None``; never raises.
    Pure, so cached (:data:`NORMALISED_CACHE`)."""
    text = text or ""
    if "*" in text:
        text = _MASKED.sub("", text)
    return normalise_text(text)


KEY_DIGEST_BYTES = 8
"""Bytes of the BLAKE2b digests :func:`text_key` and :func:`place_key` return (as 16 hex digits): two
different texts share one with probability 2⁻⁶⁴, and the caller verifies every text it fetches anyway."""
PLACE_KEY_EMPTY = "-"
""":func:`place_key` of a label that normalises to nothing: a place is known (``Candidate.has_place``) but
matches no other (:func:`same_place` compares non-empty normalised labels only)."""


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_DIGEST_BYTES).hexdigest()


def text_key(title: str | None, detail: str | None) -> str | None:
    """Return the key under which a request is stored for the exact-copy search: 16 hex digits
    (BLAKE2b, :data:`KEY_DIGEST_BYTES`) of :func:`normalise` of its title and body, ``None`` when that is
    empty (an empty text is never an exact copy, :func:`find_master`).

    Two requests with equal normalised title + body have equal keys, so the database can pick the open
    requests a new one may copy verbatim without reading their texts (issue 9, docs/benchmarks.md)."""
    key = normalise(title, detail)
    return _digest(key) if key else None


def place_key(label: str | None) -> str | None:
    """Return the key of a place label for :func:`same_place`: 16 hex digits (BLAKE2b) of
    :func:`normalise_field` of ``label``; :data:`PLACE_KEY_EMPTY` for a label that normalises to
    nothing; ``None`` for no label. Two labels are the same place exactly when their keys are equal
    and not ``PLACE_KEY_EMPTY``, so a key can stand in for its label in :class:`Candidate`
    (``place_label``) and in an indexed column."""
    if not label:
        return None
    normalised = normalise_field(label)
    return _digest(normalised) if normalised else PLACE_KEY_EMPTY


@dataclass(frozen=True)
class Candidate:
    """A request as duplicate detection sees it.

    ``created_at`` must be timezone-aware. Place keys, from the finest: ``grid_id``, ``street_id``,
    ``place_label`` (a name such as an estate or road, when no ids are known); ``district_id`` only
    vetoes (two requests in different districts are never at the same place). ``master_id`` is set on a
    request already linked as a duplicate: a match on it links to its master."""

    id: RequestId
    title: str
    detail: str
    created_at: datetime
    district_id: RequestId | None = None
    street_id: RequestId | None = None
    grid_id: RequestId | None = None
    place_label: str | None = None
    category: str | None = None
    master_id: RequestId | None = None
    title_key: str | None = field(default=None, repr=False, compare=False)
    """The title normalised (:func:`normalise_field`): given by a caller that keeps the normalised texts
    of the requests it compares again and again (``requests.triage_steps``), else computed here."""
    body_key: str | None = field(default=None, repr=False, compare=False)
    """The body normalised (:func:`normalise_field`), given or computed as ``title_key``."""
    _key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # computed once, here, rather than by functools.cached_property: before Python 3.12 that takes
        # one lock per class, which the threads of a server process contended for (issue 9)
        title_key = normalise_field(self.title) if self.title_key is None else self.title_key
        body_key = normalise_field(self.detail) if self.body_key is None else self.body_key
        object.__setattr__(self, "title_key", title_key)
        object.__setattr__(self, "body_key", body_key)
        object.__setattr__(self, "_key", title_key + body_key)

    def key(self) -> str:
        """Return :func:`normalise` of the title and body."""
        return self._key

    @property
    def has_place(self) -> bool:
        """Whether any place key that :func:`same_place` compares is known."""
        return self.grid_id is not None or self.street_id is not None or bool(self.place_label)


@dataclass(frozen=True)
class DuplicateMatch:
    """The open request a new request duplicates.

    ``master_id``: the request to link to (the matched request's master when it is itself a duplicate);
    ``matched_id``: the request whose text matched; ``score``: :func:`similarity` in 0–1 (1.0 for an
    exact match); ``exact``: normalised title + body equal; ``place``: the place level that matched
    (``"grid"``, ``"street"``, ``"label"``, or ``None`` for an exact match without place); ``days``: days
    between the two requests; ``why``: the reason in words for the dispatcher."""

    master_id: RequestId
    matched_id: RequestId
    score: float
    exact: bool
    place: str | None
    days: float
    why: str


@dataclass(frozen=True)
class DuplicateLink:
    """One request of a batch linked to its master (:func:`find_duplicate_groups`)."""

    id: RequestId
    match: DuplicateMatch


@dataclass(frozen=True)
class DuplicateGroup:
    """A master (the earliest request of the group) and the requests linked to it, in time order."""

    master_id: RequestId
    links: tuple[DuplicateLink, ...]

    @property
    def member_ids(self) -> tuple[RequestId, ...]:
        """The master's id followed by the linked requests' ids."""
        return (self.master_id, *(link.id for link in self.links))


PLACE_WORDS = {"grid": "同一网格", "street": "同一街道", "label": "同一地点"}


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    return moment


def same_place(a: Candidate, b: Candidate) -> str | None:
    """Return the level at which two requests are at the same place, or ``None`` when they are not (or
    when a place is unknown).

    The finest level both requests carry decides: both have a grid → same grid (``"grid"``) or not at
    all; else both have a street → ``"street"`` or not; else both have a place label → ``"label"`` when
    the labels are equal after :func:`normalise_field`. Different known districts are never the same
    place. Rule: the issue's "same grid, else same street, else same place label"."""
    if a.district_id is not None and b.district_id is not None and a.district_id != b.district_id:
        return None
    if a.grid_id is not None and b.grid_id is not None:
        return "grid" if a.grid_id == b.grid_id else None
    if a.street_id is not None and b.street_id is not None:
        return "street" if a.street_id == b.street_id else None
    if a.place_label and b.place_label:
        label_a, label_b = normalise_field(a.place_label), normalise_field(b.place_label)
        return "label" if label_a and label_a == label_b else None
    return None


def _body_similarity(a: str, b: str, cutoff: float) -> float:
    """Similarity of two normalised bodies in 0–1 (first ``BODY_CHARS`` characters): the Indel ratio, or
    the partial ratio when the shorter is a large part of the longer (a truncated or extended copy).
    ``cutoff`` (0–1) only lets rapidfuzz stop early: a score below it may come back as the ratio alone."""
    if not a or not b:
        return 0.0
    return _body_score(a, b, fuzz.ratio(a[:BODY_CHARS], b[:BODY_CHARS]), cutoff)


def similarity(a: Candidate, b: Candidate, *, score_cutoff: float = 0.0) -> float:
    """Return how alike two requests' texts are, in 0–1 (1.0 for equal normalised title and body).

    ``TITLE_WEIGHT`` × title similarity (rapidfuzz ``fuzz.ratio``: normalised Indel similarity over
    characters) + the rest × body similarity (``fuzz.ratio`` of the first ``BODY_CHARS`` normalised
    characters, or ``fuzz.partial_ratio`` when higher and the shorter body is at least
    ``PARTIAL_MIN_SHARE`` of the longer: a truncated copy or one with a sentence added). When either
    side lacks a title (or a body) the other field alone counts. ``score_cutoff`` (0–1) is a speed hint:
    a result below it may be lower than the full score; a result at or above it is the full score. Never raises. The
    weights were chosen by reading candidate pairs of the Teddy Cup 2020 C data (docs/intelligence.md)."""
    # always set by Candidate.__post_init__; ``or`` only narrows the type
    title_a, title_b, body_a, body_b = a.title_key or "", b.title_key or "", a.body_key or "", b.body_key or ""
    if title_a + body_a == title_b + body_b:
        return 1.0 if title_a + body_a else 0.0
    has_title = bool(title_a and title_b)
    has_body = bool(body_a and body_b)
    if has_title and has_body:
        title = fuzz.ratio(title_a, title_b) / 100.0
        needed = (score_cutoff - TITLE_WEIGHT * title) / (1 - TITLE_WEIGHT)
        if needed > 1.0:
            return (1 - TITLE_WEIGHT) * fuzz.ratio(body_a[:BODY_CHARS], body_b[:BODY_CHARS]) / 100.0 + (
                TITLE_WEIGHT * title
            )
        return TITLE_WEIGHT * title + (1 - TITLE_WEIGHT) * _body_similarity(body_a, body_b, needed)
    if has_title:
        return fuzz.ratio(title_a, title_b) / 100.0
    if has_body:
        return _body_similarity(body_a, body_b, score_cutoff)
    return 0.0


def similarities(new: Candidate, others: Sequence[Candidate], cutoffs: Sequence[float]) -> list[float]:
    """Return :func:`similarity` of ``new`` with each of ``others`` at its cutoff in ``cutoffs`` (0–1, one
    per other): every result at or above its cutoff is the full score :func:`similarity` returns, every
    result below it is below it there too, so a decision ``score >= cutoff`` is the same.

    The ``fuzz.ratio`` of the titles and of the bodies' first ``BODY_CHARS`` characters are computed for
    all pairs at once (rapidfuzz ``process.cdist``, which prepares ``new``'s texts once: about 2 µs a pair
    of bodies instead of 6, issue 9); the rest is :func:`similarity`'s rule, pair by pair. Raises
    ``ValueError`` when the lengths of ``others`` and ``cutoffs`` differ."""
    if len(others) != len(cutoffs):
        raise ValueError(f"{len(others)} candidates but {len(cutoffs)} cutoffs")
    if not others:
        return []
    import numpy as np
    from rapidfuzz import process

    title_a, body_a = new.title_key or "", new.body_key or ""
    titles = process.cdist([title_a], [o.title_key or "" for o in others], scorer=fuzz.ratio, dtype=np.float64,
                           workers=1)[0]
    bodies = process.cdist([body_a[:BODY_CHARS]], [(o.body_key or "")[:BODY_CHARS] for o in others],
                           scorer=fuzz.ratio, dtype=np.float64, workers=1)[0]
    key = new.key()
    out: list[float] = []
    for index, other in enumerate(others):
        title_b, body_b, cutoff = other.title_key or "", other.body_key or "", cutoffs[index]
        if other.key() == key:
            out.append(1.0 if key else 0.0)
            continue
        has_title, has_body = bool(title_a and title_b), bool(body_a and body_b)
        if has_title and has_body:
            title = float(titles[index]) / 100.0
            needed = (cutoff - TITLE_WEIGHT * title) / (1 - TITLE_WEIGHT)
            # past reach (needed > 1): the plain ratio, as similarity() returns it
            body = _body_score(body_a, body_b, float(bodies[index]), needed) if needed <= 1.0 else \
                float(bodies[index]) / 100.0
            out.append(TITLE_WEIGHT * title + (1 - TITLE_WEIGHT) * body)
        elif has_title:
            out.append(float(titles[index]) / 100.0)
        elif has_body:
            out.append(_body_score(body_a, body_b, float(bodies[index]), cutoff))
        else:
            out.append(0.0)
    return out


def _body_score(a: str, b: str, ratio: float, cutoff: float) -> float:
    """:func:`_body_similarity` of two non-empty normalised bodies whose ``fuzz.ratio`` (of their first
    ``BODY_CHARS`` characters, 0–100) is already known."""
    a, b = a[:BODY_CHARS], b[:BODY_CHARS]
    score = ratio
    short, long_ = sorted((len(a), len(b)))
    # partial_ratio costs ~25 times ratio: only where lengths differ enough for it to differ from ratio
    # and where ratio says the bodies share a good part (unrelated bodies score about 30).
    if (
        score >= PARTIAL_MIN_RATIO
        and short >= PARTIAL_MIN_CHARS
        and PARTIAL_MIN_SHARE * long_ <= short < PARTIAL_MAX_SHARE * long_
    ):
        score = max(score, fuzz.partial_ratio(a, b, score_cutoff=max(score, 100 * cutoff)))
    return score / 100.0


def _days_words(days: float) -> str:
    return f"{max(1, math.ceil(days - 1e-9))} 天内"


def _districts_differ(a: Candidate, b: Candidate) -> bool:
    return a.district_id is not None and b.district_id is not None and a.district_id != b.district_id


def find_master(
    new: Candidate,
    open_requests: Sequence[Candidate],
    *,
    window_days: float = DEFAULT_WINDOW_DAYS,
    threshold: float = DEFAULT_THRESHOLD,
    now: datetime | None = None,
) -> DuplicateMatch | None:
    """Return the open request ``new`` duplicates, or ``None``.

    Takes the new request and the open requests to compare it with (the caller's query: open, and
    usually the same district; ``new`` itself is skipped by id), ``window_days`` (days, ≥ 0), a
    similarity ``threshold`` in 0–1 and ``now`` (aware; the end of the window, default
    ``new.created_at``). A candidate counts when it was created no later than ``new`` and either

    * its normalised title + body equal ``new``'s (score 1.0, whatever the threshold and the window: a
      verbatim resubmission of a still open request is its duplicate) — unless their known districts
      differ, or the text is shorter than :data:`EXACT_ANYWHERE_CHARS` and they are not at the same place; or
    * it was created at most ``window_days`` before ``now``, :func:`same_place` holds and
      :func:`similarity` ≥ ``threshold``; or, when either request has no place (and their districts, if
      both known, agree), :func:`similarity` ≥ :data:`NEAR_EXACT` (0.95).

    Exact matches win, the earliest first; else the highest score, ties to the earliest. The match
    names the candidate's ``master_id`` when it is itself a linked duplicate. Raises ``ValueError`` for
    a naive datetime, a negative window or a threshold outside 0–1."""
    if window_days < 0:
        raise ValueError(f"window_days must be >= 0, got {window_days}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be within 0..1, got {threshold}")
    created = _aware(new.created_at, "new.created_at")
    end = _aware(now, "now") if now is not None else created
    start = end - timedelta(days=window_days)
    key = new.key()
    best: tuple[tuple[int, float, datetime, str], Candidate, float, str | None] | None = None
    scored: list[tuple[Candidate, datetime, str | None]] = []  # near candidates, scored together below
    cutoffs: list[float] = []
    for other in open_requests:
        if other.id == new.id:
            continue
        other_created = _aware(other.created_at, "created_at of an open request")
        if other_created > created:
            continue
        if key and other.key() == key:
            if _districts_differ(new, other):
                continue
            if len(key) < EXACT_ANYWHERE_CHARS and same_place(new, other) is None:
                continue  # "道路破损" twice is two potholes unless it is the same place
            rank = (0, -1.0, other_created, str(other.id))
            if best is None or rank < best[0]:
                best = (rank, other, 1.0, same_place(new, other))
            continue
        if best is not None and best[0][0] == 0:
            continue  # an exact match is already found; near ones cannot win
        if other_created < start:
            continue
        if new.has_place and other.has_place:
            place = same_place(new, other)
            if place is None:
                continue
            needed = threshold
        elif _districts_differ(new, other):
            continue
        else:  # a place missing on either side: only a near-verbatim copy counts
            place, needed = None, max(threshold, NEAR_EXACT)
        scored.append((other, other_created, place))
        cutoffs.append(needed)
    if scored and (best is None or best[0][0] != 0):  # an exact match wins over any near one
        scores = similarities(new, [other for other, _, _ in scored], cutoffs)
        for (other, other_created, place), score, needed in zip(scored, scores, cutoffs, strict=True):
            if score < needed:
                continue
            rank = (1, -score, other_created, str(other.id))
            if best is None or rank < best[0]:
                best = (rank, other, score, place)
    if best is None:
        return None
    rank, other, score, place = best
    days = (created - other.created_at).total_seconds() / 86400.0
    exact = rank[0] == 0
    head = "标题正文完全相同" if exact else f"文本相似 {score:.2f}"
    words = [head]
    if place is not None:
        words.append(PLACE_WORDS[place])
    words.append(_days_words(days))
    return DuplicateMatch(
        master_id=other.master_id if other.master_id is not None else other.id,
        matched_id=other.id,
        score=round(score, 4),
        exact=exact,
        place=place,
        days=round(days, 4),
        why="，".join(words),
    )


def _shingles(key: str, size: int = SHINGLE) -> list[bytes]:
    if len(key) <= size:
        return [key.encode()] if key else []
    return list({key[i : i + size].encode() for i in range(len(key) - size + 1)})


def find_duplicate_groups(
    records: Iterable[Candidate],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    window_days: float = DEFAULT_WINDOW_DAYS,
    lsh_threshold: float = LSH_THRESHOLD,
    num_perm: int = NUM_PERM,
) -> list[DuplicateGroup]:
    """Group a whole data set into masters and their duplicates.

    Takes candidates (aware ``created_at``, distinct ids), a similarity ``threshold`` (0–1) and
    ``window_days`` (days) as in :func:`find_master`, and the LSH parameters. Replays the records in
    time order (ties by id) as intake would: each record is compared with the earlier records that are
    not linked themselves (the open masters) among its LSH neighbours (datasketch ``MinHashLSH`` over
    MinHash signatures of character ``SHINGLE``-grams of the normalised text; Broder 1997, Indyk and
    Motwani 1998), plus every earlier record with the same normalised text (found by hashing, so exact
    copies never depend on LSH); :func:`find_master` decides. Returns the groups with at least one
    duplicate, each with its master (the earliest) and links in time order; groups ordered by master
    time. Raises ``ValueError`` as :func:`find_master` does, and for repeated ids."""
    from datasketch import MinHash, MinHashLSH

    items = sorted(records, key=lambda c: (_aware(c.created_at, "created_at"), str(c.id)))
    if len({c.id for c in items}) != len(items):
        raise ValueError("find_duplicate_groups needs distinct ids")
    keys = [c.key() for c in items]
    signatures = MinHash.bulk([_shingles(k) for k in keys], num_perm=num_perm)
    lsh = MinHashLSH(threshold=lsh_threshold, num_perm=num_perm)
    for index, signature in enumerate(signatures):
        if keys[index]:
            lsh.insert(index, signature)
    by_key: dict[str, list[int]] = {}
    master_of: list[RequestId | None] = [None] * len(items)
    links: dict[RequestId, list[DuplicateLink]] = {}
    for index, record in enumerate(items):
        key = keys[index]
        if not key:
            continue
        pool: dict[int, Candidate] = {}
        for other in by_key.get(key, ()):
            pool[other] = _with_master(items[other], master_of[other])
        for other in lsh.query(signatures[index]):
            if other < index and master_of[other] is None:
                pool.setdefault(other, items[other])
        by_key.setdefault(key, []).append(index)
        if not pool:
            continue
        match = find_master(record, list(pool.values()), window_days=window_days, threshold=threshold)
        if match is None:
            continue
        master_of[index] = match.master_id
        links.setdefault(match.master_id, []).append(DuplicateLink(record.id, match))
    order = {c.id: i for i, c in enumerate(items)}
    return [
        DuplicateGroup(master_id=master, links=tuple(found))
        for master, found in sorted(links.items(), key=lambda item: order[item[0]])
    ]


def _with_master(candidate: Candidate, master: RequestId | None) -> Candidate:
    if master is None:
        return candidate
    return Candidate(
        id=candidate.id, title=candidate.title, detail=candidate.detail, created_at=candidate.created_at,
        district_id=candidate.district_id, street_id=candidate.street_id, grid_id=candidate.grid_id,
        place_label=candidate.place_label, category=candidate.category, master_id=master,
    )


# --- evaluation on the Teddy Cup 2020 C messages_with_votes.csv ------------------------------------------

TZ = ZoneInfo("Asia/Shanghai")
EVAL_THRESHOLDS = (0.4, 0.5, 0.6, 0.7)
SAMPLE_SEED = 2020
SAMPLE_SIZE = 60


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Return the Wilson score interval (low, high) in 0–1 of a proportion ``successes / n`` at normal
    quantile ``z`` (1.96: 95 %). Wilson 1927, "Probable inference, the law of succession, and statistical
    inference". Returns ``(0.0, 1.0)`` for ``n == 0``; raises ``ValueError`` when ``successes > n``."""
    if successes > n or successes < 0:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def place_label_of(title: str, detail: str) -> str | None:
    """Return the place key the evaluation uses for a Teddy Cup message, which has no place ids: the
    finest place its text names (:func:`civicloop.intelligence.place_patterns.find_places`), estate, else road,
    else street, else district, else city, as ``"level:name"``; ``None`` when it names none."""
    from civicloop.intelligence.place_patterns import find_places

    places = find_places(title, detail)
    for level in ("estate", "road", "street", "district", "city"):
        name = getattr(places, level)
        if name:
            return f"{level}:{name}"
    return None


def load_votes_file(path: Path | str) -> list[Candidate]:
    """Read ``messages_with_votes.csv`` (message_id, user_id, title, created_at, detail, …) into
    candidates: times in Asia/Shanghai (:func:`civicloop.core.timeutil.parse_time`), place label from
    :func:`place_label_of`. Raises ``FileNotFoundError`` and ``ValueError`` (unreadable time)."""
    from civicloop.core.timeutil import parse_time

    with Path(path).open(encoding="utf-8-sig", newline="") as handle:
        return [
            Candidate(
                id=row["message_id"], title=row.get("title") or "", detail=row.get("detail") or "",
                created_at=parse_time(row["created_at"], TZ),
                place_label=place_label_of(row.get("title") or "", row.get("detail") or ""),
            )
            for row in csv.DictReader(handle)
        ]


def exact_groups(records: Sequence[Candidate]) -> list[tuple[RequestId, ...]]:
    """Return the groups (2+ ids, in input order) of records whose normalised title + body are equal.
    Takes candidates; returns tuples of ids. Used to check that every exact copy is linked."""
    groups: dict[str, list[RequestId]] = {}
    for record in records:
        if record.key():
            groups.setdefault(record.key(), []).append(record.id)
    return [tuple(ids) for ids in groups.values() if len(ids) > 1]


def near_pairs(groups: Sequence[DuplicateGroup]) -> list[tuple[RequestId, RequestId, float]]:
    """Return the (master id, linked id, score) of every link that is not an exact text match."""
    return [(g.master_id, link.id, link.match.score) for g in groups for link in g.links if not link.match.exact]


def sample_pairs(
    pairs: Sequence[tuple[RequestId, RequestId, float]], *, size: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED
) -> list[tuple[RequestId, RequestId, float]]:
    """Return a pseudo-random sample of ``size`` pairs: those whose sha256 of ``"seed:master:duplicate"``
    is smallest (a bottom-k sample), in that order. Unlike ``random.sample`` a pair's selection does not
    depend on the other pairs, so a small change of the linked set keeps the judged sample."""
    def rank(pair: tuple[RequestId, RequestId, float]) -> str:
        return hashlib.sha256(f"{seed}:{pair[0]}:{pair[1]}".encode()).hexdigest()

    return sorted(pairs, key=rank)[:size]


SAMPLE, BAND = "sample", "band"


def read_judgements(path: Path | str) -> dict[tuple[str, str], tuple[bool, str]]:
    """Read a judged sample CSV (``master_id, duplicate_id, verdict, stratum``; verdict ``true`` or
    ``false``; stratum ``sample`` for the seeded random sample at the chosen threshold, ``band`` for the
    pairs only a lower threshold links) into ``{(master_id, duplicate_id): (verdict, stratum)}``.
    Raises ``ValueError`` on another verdict or stratum."""
    verdicts: dict[tuple[str, str], tuple[bool, str]] = {}
    with Path(path).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            verdict = row["verdict"].strip().lower()
            stratum = (row.get("stratum") or SAMPLE).strip()
            if verdict not in ("true", "false") or stratum not in (SAMPLE, BAND):
                raise ValueError(f"bad judgement row {row}")
            verdicts[(row["master_id"].strip(), row["duplicate_id"].strip())] = (verdict == "true", stratum)
    return verdicts


def precision(verdicts: Sequence[bool]) -> dict:
    """Return ``{"judged", "true", "precision", "wilson95"}`` for a list of verdicts (empty: precision
    ``None``); the interval is :func:`wilson_interval` at 95 %."""
    n, hits = len(verdicts), sum(verdicts)
    low, high = wilson_interval(hits, n)
    return {"judged": n, "true": hits, "precision": round(hits / n, 4) if n else None,
            "wilson95": (round(low, 4), round(high, 4))}


def evaluate_votes_file(
    path: Path | str,
    *,
    judgements: Path | str | None = None,
    thresholds: Sequence[float] = EVAL_THRESHOLDS,
    threshold: float = DEFAULT_THRESHOLD,
    window_days: float = DEFAULT_WINDOW_DAYS,
    sample_size: int = SAMPLE_SIZE,
    seed: int = SAMPLE_SEED,
) -> dict:
    """Measure the detector on ``messages_with_votes.csv``; the figures of docs/intelligence.md.

    Takes the file, optionally the judged sample (:func:`read_judgements`), the thresholds to compare,
    the chosen ``threshold`` and ``window_days``. Returns a dict: ``rows``; ``exact`` (raw and normalised
    exact groups, ids, pairs, and how many normalised groups the detector put under one master);
    ``per_threshold`` (links, exact and near links, batch seconds and, with judgements, the
    :func:`precision` of the judged ``sample`` and ``band`` pairs it links); ``sample`` (the
    ``sample_size`` near pairs at ``threshold`` from :func:`sample_pairs`, as (master, duplicate,
    score)); ``timing_s`` (batch wall time
    at ``threshold``; ``find_master`` over 500 candidates: mean and p99 seconds). Raises as
    :func:`load_votes_file`."""
    records = load_votes_file(path)
    raw: dict[tuple[str, str], int] = {}
    for record in records:
        raw[(record.title, record.detail)] = raw.get((record.title, record.detail), 0) + 1
    normalised = exact_groups(records)
    verdicts = read_judgements(judgements) if judgements is not None else {}
    result: dict = {
        "rows": len(records),
        "window_days": window_days,
        "threshold": threshold,
        "exact": {
            "raw_groups": sum(1 for n in raw.values() if n > 1),
            "raw_extra_rows": sum(n - 1 for n in raw.values() if n > 1),
            "raw_pairs": sum(n * (n - 1) // 2 for n in raw.values() if n > 1),
            "normalised_groups": len(normalised),
            "normalised_group_sizes": sorted(len(g) for g in normalised),
            "normalised_extra_rows": sum(len(g) - 1 for g in normalised),
            "normalised_pairs": sum(len(g) * (len(g) - 1) // 2 for g in normalised),
        },
        "per_threshold": {},
    }
    chosen: list[DuplicateGroup] = []
    for value in sorted({*thresholds, threshold}):
        started = time.perf_counter()
        groups = find_duplicate_groups(records, threshold=value, window_days=window_days)
        elapsed = time.perf_counter() - started
        master = {link.id: g.master_id for g in groups for link in g.links} | {g.master_id: g.master_id for g in groups}
        found = sum(1 for g in normalised if len({master.get(i) for i in g}) == 1 and master.get(g[0]) is not None)
        near = near_pairs(groups)
        row: dict = {
            "links": sum(len(g.links) for g in groups),
            "groups": len(groups),
            "exact_links": sum(1 for g in groups for link in g.links if link.match.exact),
            "near_links": len(near),
            "exact_groups_found": found,
            "batch_seconds": round(elapsed, 2),
        }
        if verdicts:
            found_pairs = {(str(m), str(d)) for m, d, _ in near}
            # The seeded sample was drawn from the links at the chosen threshold; those of its pairs a
            # higher threshold keeps are a random sample of that threshold's links (bottom-k sampling).
            # A lower threshold adds the "band" pairs, judged all.
            row[SAMPLE] = precision([v for key, (v, st) in verdicts.items() if st == SAMPLE and key in found_pairs])
            row[BAND] = precision([v for key, (v, st) in verdicts.items() if st == BAND and key in found_pairs])
        result["per_threshold"][value] = row
        if value == threshold:
            chosen = groups
    result["sample"] = sample_pairs(near_pairs(chosen), size=sample_size, seed=seed)
    result["timing_s"] = {"batch": result["per_threshold"][threshold]["batch_seconds"], **_time_find_master(
        records, window_days=window_days, threshold=threshold)}
    return result


def _time_find_master(
    records: Sequence[Candidate], *, window_days: float, threshold: float, trials: int = 200
) -> dict[str, float]:
    """Time :func:`find_master` of a random message against 500 random others, all moved to its place
    and one day before it so that every one is scored (the worst case), ``trials`` times, with the
    normalisation of their texts inside the timing; returns mean and p99 seconds."""
    rng = random.Random(SAMPLE_SEED)
    durations = []
    for _ in range(trials):
        new = rng.choice(records)
        pool = rng.sample(records, 500)
        # Same place and in the window for all, so every candidate is scored (the worst case).
        pool = [
            Candidate(id=c.id, title=c.title, detail=c.detail, created_at=new.created_at - timedelta(days=1),
                      place_label=new.place_label or "city:A市")
            for c in pool if c.id != new.id
        ]
        probe = Candidate(id=new.id, title=new.title, detail=new.detail, created_at=new.created_at,
                          place_label=new.place_label or "city:A市")
        started = time.perf_counter()
        find_master(probe, pool, window_days=window_days, threshold=threshold)
        durations.append(time.perf_counter() - started)
    durations.sort()
    return {
        "find_master_500_mean": round(sum(durations) / len(durations), 4),
        "find_master_500_p99": round(durations[min(len(durations) - 1, int(0.99 * len(durations)))], 4),
    }
