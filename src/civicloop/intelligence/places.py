"""Place extraction for intelligent intake (找地点): which district, street and grid a request is about.

A :class:`PlaceMatcher` holds every name the deployment knows — the gazetteer (``places``: districts,
streets, estates, roads with their aliases), the administrative units (districts, streets,
communities) and the grids — in one Aho-Corasick automaton (``pyahocorasick``), so a text is scanned
once whatever the number of names. :meth:`PlaceMatcher.find` returns every name found and the most
specific place they agree on.

Rules, in order:

1. **Longest name wins.** Of overlapping names, the longer is kept: ``A3区洋湖街道`` is one street,
   not the district ``A3区`` plus a street; ``丽发新城小区`` is the estate ``丽发新城``.
2. **Written variants are the same name.** Estates with or without ``小区`` (and ``花园`` when what is
   left is still a name of three or more characters), streets as ``街道``/``街道办事处``/``街道办``
   and towns with ``人民政府``, communities with ``居委会``, streets and communities prefixed with
   their district, districts prefixed with their city (``A市A5区``: the Teddy Cup 2020 C data
   anonymise district ``X<n>区`` of city ``X市``). Full-width letters and digits and lower case
   are folded (``ａ５区`` = ``A5区``).
3. **The address before the text; areas before estates and roads.** The district is that of the
   first district, street or community named in the address, else of the first name there that
   locates; when the address locates nothing, the same in the title and body (titles name the place
   of the matter; bodies also name where the writer lives). Administrative names come first because
   a citizen writes them on purpose, while estate and road names learned from texts are noisier.
   Names that agree with that district (and with its first named street) make the place more
   specific; names elsewhere are reported, not used.
4. **Namesakes are not guessed.** A name found in several districts is decided by a district (or a
   street) named in the same request — the one written right before it first — else it stays
   ambiguous, and ``why`` says so. Several namesakes inside one district (the Teddy import keeps a
   street under two units, an estate under two grids) resolve to the one the gazetteer points to.
5. **Unknown names are still shown.** Names that look like places by their pattern (the Teddy Cup
   patterns of ``intelligence.place_patterns``: ``C4市``, ``…街道``/``镇``/``乡`` after a district,
   ``…小区``/``花园``/``新村``, ``…路``/``大道``/``大街``) but are not in the gazetteer come back as
   ``unmatched``, so the caller can show "mentions 某某路 (not in gazetteer)".

The matcher reads the database only through ``org.service`` and keeps no session; build it once and
share it (:func:`matcher_for` caches one per database, keyed on ``org.service.gazetteer_version``).
Matching a 500-character request takes about 0.4 ms, measured in docs/intelligence.md.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ahocorasick
from sqlalchemy.orm import Session

from civicloop.core.i18n import translate
from civicloop.intelligence.place_patterns import (
    DISTRICT,
    ESTATE,
    ESTATE_CUT,
    ESTATE_GENERIC,
    ROAD,
    ROAD_CUT,
    ROAD_GENERIC,
    STREET,
)
from civicloop.org import service as org

ADDRESS, TEXT = "address", "text"

RANK = {"district": 1, "street": 2, "road": 3, "community": 4, "estate": 5, "grid": 5}
"""How specific a kind of place is: a road lies in a district, an estate or grid in a community."""
AREA_KINDS = frozenset({"district", "street", "community"})
"""Kinds that are administrative areas: naming one fixes the district for namesakes elsewhere."""

_FOLD = {**{0xFF01 + i: ord(chr(0x21 + i).upper()) for i in range(94)}, 0x3000: 0x20,
         **{ord(c): ord(c.upper()) for c in "abcdefghijklmnopqrstuvwxyz"}}
"""Full-width ASCII to half-width, ideographic space to space, a-z to A-Z: one character for one,
so spans in the folded text are spans in the original."""
_ANONYMISED_DISTRICT = re.compile(r"^([A-Z])\d{1,2}[区县市]$")
_ESTATE_SUFFIXES = ("小区", "花园")
_ESTATE_ENDINGS = ("新城", "花园", "家园", "公寓", "花苑", "新村", "山庄", "广场", "大厦",
                   "苑", "园", "城", "庭", "府", "湾", "居", "阁", "轩", "邸", "庄", "坊", "里")
"""What the rest of an estate's name must end with to be matched without its 小区/花园: a name
learned from texts (``为什么小区``, the Teddy importer's pattern at work) must not make 为什么 a place."""
_STREET_VARIANTS = {"街道": ("街道办事处", "街道办"), "镇": ("镇人民政府", "镇政府"), "乡": ("乡人民政府", "乡政府")}
_COMMUNITY_VARIANTS = {"社区": ("社区居委会", "社区居民委员会"), "村": ("村委会", "村民委员会")}


def fold(text: str) -> str:
    """Return ``text`` with full-width ASCII made half-width and latin letters upper-cased; the
    result has the same length, so spans carry over."""
    return text.translate(_FOLD)


def _is_ascii_alnum(char: str) -> bool:
    char = fold(char)
    return char.isascii() and char.isalnum()


class _Alphabet(dict[int, int]):
    """A ``str.translate`` table: :func:`fold`, then every character that no known name contains
    becomes ``\x01``. pyahocorasick looks a character up among a trie node's children one by one,
    and the root has a child for every first character of ~10,000 names: most characters of a text
    are looked up there. Folding the unknown ones to one sentinel, inserted first, and inserting the
    other characters by how often names use them, cut a 500-character scan from 0.18 to 0.11 ms on
    the Teddy gazetteer (docs/intelligence.md)."""

    def __init__(self, chars: set[str]) -> None:
        super().__init__()
        self.chars = chars

    def __missing__(self, code: int) -> int:
        folded = chr(code).translate(_FOLD)
        value = ord(folded) if folded in self.chars else 1
        self[code] = value
        return value


# --- rows the matcher is built from (what org.service returns, or plain test data) --------------------

@dataclass(frozen=True)
class UnitRow:
    """An administrative unit: ``kind`` is ``district``, ``street`` or ``community``."""

    id: int
    name: str
    kind: str
    parent_id: int | None = None


@dataclass(frozen=True)
class GridRow:
    """A grid (网格) in a community."""

    id: int
    name: str
    community_id: int


@dataclass(frozen=True)
class PlaceRow:
    """A gazetteer row (``org.models.Place``)."""

    id: int
    name: str
    kind: str
    district_id: int | None = None
    unit_id: int | None = None
    grid_id: int | None = None
    aliases: Sequence[str] = ()


# --- results ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlaceMatch:
    """One known name found in the address or the text.

    ``text`` is the name as written, ``name`` the gazetteer's (or unit's, grid's) name, ``start``/
    ``end`` its span in the searched string (``source``: ``address`` or ``text``). Where it lies:
    ``district_id``, ``street_id``, ``grid_id``; which row: ``place_id`` (gazetteer), ``unit_id``
    (district, street or community), ``grid_id``. When ``ambiguous``, none of these is set and
    ``districts`` lists the districts it could be in; ``namesakes`` counts the places of that name.
    """

    text: str
    name: str
    kind: str
    start: int
    end: int
    source: str
    place_id: int | None = None
    unit_id: int | None = None
    grid_id: int | None = None
    district_id: int | None = None
    street_id: int | None = None
    namesakes: int = 1
    ambiguous: bool = False
    districts: tuple[int, ...] = ()

    @property
    def rank(self) -> int:
        """How specific the place is (``RANK``)."""
        return RANK.get(self.kind, 0)


@dataclass(frozen=True)
class Candidate:
    """A name that looks like a place by its pattern but is not in the gazetteer."""

    name: str
    kind: str
    start: int
    end: int
    source: str


@dataclass(frozen=True)
class PlaceResult:
    """What :meth:`PlaceMatcher.find` found.

    ``matches``: every known name, address first, in order of position. ``place``: the most specific
    match of the resolved place (``None`` when nothing located), ``chain``: the matches that agree
    with it. ``district_id``/``street_id``/``grid_id``: the resolved place (``street_id`` is a
    street-level unit). ``ambiguous``: namesakes left undecided. ``unmatched``: unknown names.
    ``label``: ``A3区 › 洋湖街道 › 丽发新城``. ``reasons``: (message code, parameters) pairs that
    :meth:`explain` renders; ``why`` is the Chinese rendering.
    """

    matches: tuple[PlaceMatch, ...] = ()
    place: PlaceMatch | None = None
    chain: tuple[PlaceMatch, ...] = ()
    district_id: int | None = None
    street_id: int | None = None
    grid_id: int | None = None
    ambiguous: tuple[PlaceMatch, ...] = ()
    unmatched: tuple[Candidate, ...] = ()
    label: str = ""
    reasons: tuple[tuple[str, dict[str, Any]], ...] = field(default_factory=tuple)

    def explain(self, lang: str = "zh") -> str:
        """Return why this place was chosen, in ``lang`` (``zh`` or ``en``), one sentence per reason."""
        sep = "; " if lang == "en" else "；"
        return sep.join(translate(code, lang, **params) for code, params in self.reasons)

    @property
    def why(self) -> str:
        """:meth:`explain` in Chinese."""
        return self.explain("zh")

    def named(self, kind: str) -> PlaceMatch | None:
        """Return the first match of ``kind`` that agrees with the resolved place, or ``None``."""
        return next((m for m in self.chain if m.kind == kind), None)


# --- the matcher -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Target:
    """One place a name can denote, with where it lies."""

    key: tuple[str, int]
    name: str
    kind: str
    place_id: int | None
    unit_id: int | None
    grid_id: int | None
    district_id: int | None
    street_id: int | None
    in_gazetteer: bool


class PlaceMatcher:
    """Every known place name in one Aho-Corasick automaton; see the module's rules.

    Build it from rows (``units``, ``grids``, ``places``; any objects with the attributes of
    :class:`UnitRow`, :class:`GridRow`, :class:`PlaceRow`) or with :meth:`from_session`. Immutable
    once built, so one instance can serve every request of a process.
    """

    def __init__(self, *, units: Iterable[Any] = (), grids: Iterable[Any] = (), places: Iterable[Any] = ()) -> None:
        self.version: tuple[int, ...] = ()
        self._units = {u.id: UnitRow(u.id, u.name, str(u.kind), u.parent_id) for u in units}
        self._grids = {g.id: GridRow(g.id, g.name, g.community_id) for g in grids}
        place_rows = [PlaceRow(p.id, p.name, str(p.kind), p.district_id, p.unit_id, p.grid_id,
                               tuple(p.aliases or ())) for p in places]
        self._names: list[str] = sorted({n for p in place_rows for n in (p.name, *p.aliases) if n.strip()})
        self._targets: dict[tuple[str, int], _Target] = {}
        patterns: dict[str, set[tuple[str, int]]] = {}

        def add(name: str, key: tuple[str, int]) -> None:
            name = fold(name.strip())
            if len(name) >= 2:
                patterns.setdefault(name, set()).add(key)

        for place in place_rows:  # gazetteer rows first: they name the unit or grid they point to
            key, target = self._place_target(place)
            self._targets[key] = target
            for name in (place.name, *place.aliases):
                for variant in self._variants(name, target.kind, target.district_id):
                    add(variant, key)
        for unit in self._units.values():
            key = ("unit", unit.id)
            if key not in self._targets:
                district, street = self._area_of(unit.id)
                self._targets[key] = _Target(key, unit.name, unit.kind, None, unit.id, None, district, street, False)
            for variant in self._variants(unit.name, unit.kind, self._targets[key].district_id):
                add(variant, key)
        for grid in self._grids.values():
            key = ("grid", grid.id)
            if key not in self._targets:
                district, street = self._area_of(grid.community_id)
                self._targets[key] = _Target(key, grid.name, "grid", None, None, grid.id, district, street, False)
            for variant in self._variants(grid.name, "estate", self._targets[key].district_id):
                add(variant, key)

        self._automaton = ahocorasick.Automaton()
        uses = Counter(char for pattern in patterns for char in pattern)
        self._alphabet = _Alphabet(set(uses))
        self._automaton.add_word("\x01\x02", None)  # never matches: \x02 is folded to \x01
        for char, _ in uses.most_common():
            self._automaton.add_word(char + "\x02", None)  # a root child for every known character
        for pattern in sorted(patterns, key=lambda p: (-uses[p[0]], p)):
            self._automaton.add_word(pattern, (len(pattern), tuple(sorted(patterns[pattern]))))
        self._automaton.make_automaton()
        self.size = len(patterns)
        """How many written forms (names, aliases, variants) the automaton holds."""

    @classmethod
    def from_session(cls, session: Session) -> PlaceMatcher:
        """Build a matcher from the database through ``org.service``: the gazetteer rows, the active
        districts, streets and communities, and the grids (names only, no polygons)."""
        matcher = cls(units=org.list_area_units(session), grids=org.list_grid_names(session),
                      places=org.list_places(session))
        return matcher

    # -- building ---------------------------------------------------------------------------------

    def _area_of(self, unit_id: int | None) -> tuple[int | None, int | None]:
        """Return (district id, street id) of ``unit_id`` and its ancestors."""
        district = street = None
        for _ in range(16):  # bounded: a cycle in bad data must not hang the build
            unit = self._units.get(unit_id) if unit_id is not None else None
            if unit is None:
                break
            if unit.kind == "district" and district is None:
                district = unit.id
            elif unit.kind == "street" and street is None:
                street = unit.id
            unit_id = unit.parent_id
        return district, street

    def _place_target(self, place: PlaceRow) -> tuple[tuple[str, int], _Target]:
        district = street = None
        if place.grid_id is not None and place.grid_id in self._grids:
            key: tuple[str, int] = ("grid", place.grid_id)
            district, street = self._area_of(self._grids[place.grid_id].community_id)
        elif place.unit_id is not None and place.unit_id in self._units:
            key = ("unit", place.unit_id)
            district, street = self._area_of(place.unit_id)
        else:
            key = ("place", place.id)
        return key, _Target(key, place.name, place.kind, place.id, place.unit_id,
                            place.grid_id if key[0] == "grid" else None, district or place.district_id, street, True)

    def _variants(self, name: str, kind: str, district_id: int | None) -> set[str]:
        """Return the written forms of ``name`` (itself included); rule 2 of the module."""
        name = name.strip()
        forms = {name}
        district = self._units.get(district_id) if district_id is not None else None
        if kind in ("estate", "grid"):
            for suffix in _ESTATE_SUFFIXES:
                stem = name.removesuffix(suffix)
                if stem != name and len(stem) >= 3 and stem.endswith(_ESTATE_ENDINGS):
                    forms.add(stem)  # 丽发新城小区 is also written 丽发新城, but 为什么小区 not 为什么
            if not name.endswith("小区"):
                forms.add(name + "小区")
        elif kind == "street":
            if name.endswith("街道办事处"):
                forms.add(name.removesuffix("办事处"))
            for ending, longer in _STREET_VARIANTS.items():
                if name.endswith(ending):
                    forms.update(name.removesuffix(ending) + extra for extra in longer)
        elif kind == "community":
            for ending, longer in _COMMUNITY_VARIANTS.items():
                if name.endswith(ending):
                    forms.update(name.removesuffix(ending) + extra for extra in longer)
        elif kind == "district":
            anonymised = _ANONYMISED_DISTRICT.match(fold(name))
            if anonymised:
                forms.add(f"{anonymised.group(1)}市{name}")
        if district is not None and kind in ("street", "community"):
            if name.startswith(district.name) and len(name) - len(district.name) >= 2:
                forms.add(name[len(district.name):])  # A3区洋湖街道 is also written 洋湖街道
            else:
                forms.update({district.name + f for f in list(forms)})  # 洋湖街道 is also written A3区洋湖街道
        return forms

    # -- matching ---------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Return the gazetteer's names and aliases, sorted (no units, grids or generated variants)."""
        return list(self._names)

    def knows(self, name: str) -> bool:
        """Return whether ``name`` (as written, variants included) is a known place name."""
        return self._automaton.get(fold(name.strip()), None) is not None

    def _scan(self, string: str) -> list[tuple[int, int, tuple[tuple[str, int], ...]]]:
        """Return (start, end, target keys) of the known names in ``string``, longest first wins."""
        if not string or not self.size:
            return []
        hits = []
        for last, (length, keys) in self._automaton.iter(string.translate(self._alphabet)):
            start, end = last - length + 1, last + 1
            if start > 0 and _is_ascii_alnum(string[start]) and _is_ascii_alnum(string[start - 1]):
                continue  # A5区 inside BA5区
            if end < len(string) and _is_ascii_alnum(string[last]) and _is_ascii_alnum(string[end]):
                continue
            hits.append((start, end, keys))
        hits.sort(key=lambda h: (h[0] - h[1], h[0]))
        taken = bytearray(len(string))
        chosen = []
        for start, end, keys in hits:
            if any(taken[start:end]):
                continue
            taken[start:end] = b"\x01" * (end - start)
            chosen.append((start, end, keys))
        chosen.sort()
        return chosen

    def find(self, text: str, address: str = "") -> PlaceResult:
        """Return the places named in ``address`` and ``text`` and the place they resolve to.

        ``text`` is the request's title and body (joined by a line break); ``address`` what the
        citizen or operator typed as the address, searched first. Never raises; an empty text gives
        an empty result whose ``why`` says nothing was found.
        """
        raw = [(ADDRESS, address, hit) for hit in self._scan(address)] + [(TEXT, text, hit) for hit in self._scan(text)]
        resolved: list[PlaceMatch | None] = [None] * len(raw)
        pending: list[int] = []
        for index, (source, string, (start, end, keys)) in enumerate(raw):
            targets = [self._targets[k] for k in keys]
            districts = {t.district_id for t in targets}
            if len(districts) == 1:
                resolved[index] = self._match(string, source, start, end, self._preferred(targets), len(targets))
            else:
                pending.append(index)
        context = [m for m in resolved if m is not None and m.kind in AREA_KINDS and m.district_id is not None]
        reasons: list[tuple[str, dict[str, Any]]] = []
        ambiguous: list[PlaceMatch] = []
        for index in pending:
            source, string, (start, end, keys) = raw[index]
            targets = [self._targets[k] for k in keys]
            decided = self._decide(targets, context, source, start)
            if decided is not None:
                match = self._match(string, source, start, end, self._preferred(decided), len(targets))
                resolved[index] = match
                reasons.append(("place.why.namesakes", {
                    "text": match.text, "count": len(targets), "district": self.area_name(match.district_id)}))
            else:
                districts = tuple(sorted({t.district_id for t in targets if t.district_id is not None}))
                ambiguous.append(PlaceMatch(
                    text=string[start:end], name=targets[0].name, kind=targets[0].kind, start=start, end=end,
                    source=source, namesakes=len(targets), ambiguous=True, districts=districts))
        matches = sorted([m for m in resolved if m is not None] + ambiguous,
                         key=lambda m: (m.source != ADDRESS, m.start))
        unmatched = self._unmatched(address, ADDRESS, raw) + self._unmatched(text, TEXT, raw)
        return self._resolve(tuple(matches), tuple(ambiguous), tuple(unmatched), reasons)

    def _preferred(self, targets: Sequence[_Target]) -> _Target:
        """Among namesakes in one district: the gazetteer's, then the most specific, then the oldest."""
        return min(targets, key=lambda t: (not t.in_gazetteer, -RANK.get(t.kind, 0), t.key))

    def _decide(self, targets: Sequence[_Target], context: Sequence[PlaceMatch], source: str,
                start: int) -> list[_Target] | None:
        """Return the namesakes in the district the request names (rule 4), or ``None``.

        A district written right before the name (``A3区丽发新城``, at most one character between)
        decides first; else the districts of the named districts, streets and communities must
        single out one of the namesakes' districts (and a named street, when there is one inside it).
        """
        for named in context:
            if named.source == source and named.kind == "district" and start - 1 <= named.end <= start:
                inside = [t for t in targets if t.district_id == named.district_id]
                if inside:
                    return inside
        districts = {m.district_id for m in context} & {t.district_id for t in targets}
        if len(districts) != 1:
            return None
        (district,) = districts
        inside = [t for t in targets if t.district_id == district]
        streets = {m.street_id for m in context if m.district_id == district and m.street_id is not None}
        return [t for t in inside if t.street_id in streets] or inside

    def _match(self, string: str, source: str, start: int, end: int, target: _Target, namesakes: int) -> PlaceMatch:
        return PlaceMatch(
            text=string[start:end], name=target.name, kind=target.kind, start=start, end=end, source=source,
            place_id=target.place_id, unit_id=target.unit_id, grid_id=target.grid_id,
            district_id=target.district_id, street_id=target.street_id, namesakes=namesakes)

    def _unmatched(self, string: str, source: str, raw: Sequence[tuple[str, str, Any]]) -> list[Candidate]:
        if not string:
            return []
        known = bytearray(len(string))
        for where, _, (start, end, _) in raw:
            if where == source:
                known[start:end] = b"\x01" * (end - start)
        found: dict[str, Candidate] = {}
        for candidate in candidate_names(string, source=source):
            if not any(known[candidate.start:candidate.end]) and not self.knows(candidate.name):
                found.setdefault(candidate.name, candidate)
        return list(found.values())

    def area_name(self, unit_id: int | None) -> str:
        """Return the name of district, street or community ``unit_id``, or ``""``."""
        unit = self._units.get(unit_id) if unit_id is not None else None
        return unit.name if unit else ""

    def label_of(self, match: PlaceMatch, *, street_id: int | None = None) -> str:
        """Return ``district › street › name`` for ``match`` (parts it lacks are left out)."""
        parts = [self.area_name(match.district_id), self.area_name(street_id or match.street_id)]
        parts = [p for p in parts if p]
        if match.name not in parts and not (parts and fold(match.name) == fold(parts[-1])):
            parts.append(match.name)
        return " › ".join(dict.fromkeys(parts))

    def _resolve(self, matches: tuple[PlaceMatch, ...], ambiguous: tuple[PlaceMatch, ...],
                 unmatched: tuple[Candidate, ...], reasons: list[tuple[str, dict[str, Any]]]) -> PlaceResult:
        """Rule 3: the first located match fixes the district, agreeing ones refine it."""
        located = [m for m in matches if not m.ambiguous and m.district_id is not None]
        if not located:
            named = [m for m in matches if not m.ambiguous]
            if not named and not ambiguous:
                reasons.insert(0, ("place.why.none", {}))
            for m in ambiguous:
                reasons.append(("place.why.ambiguous", self._ambiguity(m)))
            if unmatched:
                reasons.append(("place.why.unmatched", {"names": "、".join(c.name for c in unmatched)}))
            place = named[0] if named else None
            return PlaceResult(matches=matches, place=place, chain=(place,) if place else (), ambiguous=ambiguous,
                               unmatched=unmatched, label=place.name if place else "", reasons=tuple(reasons))
        first = [m for m in located if m.source == located[0].source]  # the address, when it locates
        district = next((m for m in first if m.kind in AREA_KINDS), first[0]).district_id
        in_district = [m for m in located if m.district_id == district]
        street = next((m.street_id for m in in_district if m.street_id is not None), None)
        chain = [m for m in in_district if m.street_id in (None, street)]
        grid = next((m.grid_id for m in chain if m.grid_id is not None), None)
        if grid is not None:
            chain = [m for m in chain if m.grid_id in (None, grid)]
        place = max(chain, key=lambda m: (m.rank, -chain.index(m)))
        label = self.label_of(place, street_id=street)
        said = {(m.source, m.text): m for m in chain}  # one reason per name, however often written
        reasons[:0] = [("place.why.address" if m.source == ADDRESS else "place.why.text",
                        {"text": m.text, "label": self.label_of(m)}) for m in said.values()]
        elsewhere = [m for m in located if m not in chain]
        if elsewhere:
            names = "、".join(dict.fromkeys(f"“{m.text}”" for m in elsewhere))
            reasons.append(("place.why.other_district", {"names": names}))
        for m in ambiguous:
            reasons.append(("place.why.ambiguous", self._ambiguity(m)))
        if unmatched:
            reasons.append(("place.why.unmatched", {"names": "、".join(f"“{c.name}”" for c in unmatched)}))
        return PlaceResult(matches=matches, place=place, chain=tuple(chain), district_id=district, street_id=street,
                           grid_id=grid, ambiguous=ambiguous, unmatched=unmatched, label=label, reasons=tuple(reasons))

    def _ambiguity(self, match: PlaceMatch) -> dict[str, Any]:
        return {"text": match.text, "count": match.namesakes,
                "districts": "、".join(self.area_name(d) for d in match.districts)}


# --- unknown names, jieba, coordinates, cache ---------------------------------------------------------

def candidate_names(text: str, *, source: str = TEXT) -> list[Candidate]:
    """Return every name in ``text`` that looks like a district, street, estate or road by the Teddy
    Cup 2020 C patterns (``intelligence.place_patterns``), with its span, in order of position.

    The patterns are the importer's, applied to every occurrence instead of the first: an estate's
    or road's name starts after the last function word or place word before it (``ESTATE_CUT``,
    ``ROAD_CUT``), generic words (``居民小区``, ``这条路``) are dropped, and ``丽发新城小区`` gives
    ``丽发新城``. A street counts only right after its district.
    """
    found: list[Candidate] = []
    for match in STREET.finditer(text):
        found.append(Candidate(match.group(2), "street", match.start(2), match.end(2), source))
    for match in DISTRICT.finditer(text):
        found.append(Candidate(match.group(1), "district", match.start(1), match.end(1), source))
    for match in ESTATE.finditer(text):
        stem = ESTATE_CUT.sub("", match.group(1))
        if 2 <= len(stem) <= 6 and stem not in ESTATE_GENERIC:
            start = match.end(1) - len(stem)
            suffix = match.group(2)
            kind = "community" if suffix == "社区" else "estate"
            name = stem + suffix
            if suffix == "小区" and stem.endswith(("新城", "花园", "新村", "家园", "社区", "公寓", "花苑")):
                name = stem
            found.append(Candidate(name, kind, start, match.end(), source))
    for match in ROAD.finditer(text):
        stem = ROAD_CUT.sub("", match.group(1))
        if 2 <= len(stem) <= 5 and stem not in ROAD_GENERIC and not stem.endswith(("道", "马", "公", "铁", "线", "无")):
            found.append(Candidate(stem + match.group(2), "road", match.end(1) - len(stem), match.end(), source))
    return sorted(found, key=lambda c: (c.start, -c.end))


def jieba_user_words(matcher: PlaceMatcher) -> list[str]:
    """Return the gazetteer's names and aliases, to be added to jieba as user words
    (``jieba.add_word``) so that segmentation keeps ``丽发新城`` or ``潇楚南路`` whole."""
    return matcher.names()


def locate_point(session: Session, *, lat: float, lon: float) -> PlaceResult:
    """Return the place of a point: the grid whose polygon contains it (``org.service.locate_grid``,
    GeoJSON order and shared-edge rule there) with its street and district; an empty result whose
    ``why`` says so when no grid contains it."""
    grid = org.locate_grid(session, lat=lat, lon=lon)
    if grid is None:
        return PlaceResult(reasons=(("place.why.no_grid", {"lat": lat, "lon": lon}),))
    district = org.ancestor_of_kind(grid.community, org.UnitKind.DISTRICT)
    street = org.ancestor_of_kind(grid.community, org.UnitKind.STREET)
    match = PlaceMatch(text="", name=grid.name, kind="grid", start=0, end=0, source="point", grid_id=grid.id,
                       district_id=district.id if district else None, street_id=street.id if street else None)
    label = " › ".join(n for n in (district.name if district else "", street.name if street else "", grid.name) if n)
    return PlaceResult(matches=(match,), place=match, chain=(match,), district_id=match.district_id,
                       street_id=match.street_id, grid_id=grid.id, label=label,
                       reasons=(("place.why.point", {"lat": lat, "lon": lon, "grid": grid.name}),))


MAX_AGE = 60.0
"""Seconds a cached matcher is trusted without a version change: the bound on how late this process
sees another process's rename (see ``org.service.gazetteer_version``)."""

_cache: dict[str, tuple[tuple[int, ...], float, PlaceMatcher]] = {}
_cache_lock = threading.Lock()


def matcher_for(session: Session, *, max_age: float = MAX_AGE) -> PlaceMatcher:
    """Return the matcher of the session's database, rebuilt only when the gazetteer's version
    (``org.service.gazetteer_version``: one aggregate query) changed or the cached one is older than
    ``max_age`` seconds. One cache entry per database URL; safe across threads."""
    bind = session.get_bind()
    key = bind.url.render_as_string(hide_password=True) if hasattr(bind, "url") else str(id(bind))
    version = org.gazetteer_version(session)
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == version and now - cached[1] < max_age:
            return cached[2]
        matcher = PlaceMatcher.from_session(session)
        matcher.version = version
        _cache[key] = (version, now, matcher)
        return matcher


def clear_cache() -> None:
    """Forget every cached matcher (tests that rebuild a database with the same ids use it)."""
    with _cache_lock:
        _cache.clear()
