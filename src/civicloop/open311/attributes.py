"""Service definition attributes (GeoReport v2 "GET Service Definition") and the checking of the
values a client posts for them (``attribute[code]=value``, ``attribute[code][]=v1&…`` for a
multivaluelist). Pure: no database.

The six datatypes of the spec: ``string`` (no line breaks), ``number``, ``datetime`` (ISO 8601
with a zone, per the spec's "Date/time format"), ``text`` (line breaks allowed), ``singlevaluelist``
(one of ``values``), ``multivaluelist`` (one or more of ``values``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BREAK = re.compile(r"[\r\n]")


class Datatype(StrEnum):
    STRING = "string"
    NUMBER = "number"
    DATETIME = "datetime"
    TEXT = "text"
    SINGLEVALUELIST = "singlevaluelist"
    MULTIVALUELIST = "multivaluelist"


class AttributeProblem(ValueError):
    """A posted attribute value breaks its definition: ``code`` is a message code of
    the message catalogues (``core.i18n``) and ``params`` fill it in."""

    def __init__(self, code: str, /, **params: Any) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


@dataclass(frozen=True)
class Attribute:
    """One attribute of a service definition. ``description`` and ``label`` are (zh, en) pairs;
    ``values`` are (key, Chinese name, English name) for the list datatypes; ``max_length`` bounds
    string and text, ``minimum``/``maximum`` a number."""

    code: str
    datatype: Datatype
    order: int
    description: tuple[str, str]
    label: tuple[str, str]
    required: bool = False
    variable: bool = True
    values: tuple[tuple[str, str, str], ...] = ()
    max_length: int = 200
    minimum: float | None = None
    maximum: float | None = None
    datatype_description: tuple[str, str] = field(default=("", ""))

    def as_dict(self, lang: str) -> dict[str, Any]:
        """Return the attribute as the spec's ``attribute`` element, texts in ``lang``."""
        pick = 1 if lang == "en" else 0
        lists = self.datatype in (Datatype.SINGLEVALUELIST, Datatype.MULTIVALUELIST)
        return {
            "variable": self.variable, "code": self.code, "datatype": str(self.datatype),
            "required": self.required, "datatype_description": self.datatype_description[pick] or None,
            "order": self.order, "description": self.description[pick],
            **({"values": [{"key": key, "name": names[pick] or names[0]} for key, *names in self.values]}
               if lists else {}),
        }


def _one(attribute: Attribute, raw: list[str]) -> str:
    if len(raw) != 1:
        raise AttributeProblem("o311.attr_one", code=attribute.code)
    return raw[0]


def _clean(attribute: Attribute, value: str, *, breaks: bool) -> str:
    if _CONTROL.search(value) or (not breaks and _BREAK.search(value)):
        raise AttributeProblem("o311.attr_chars", code=attribute.code)
    value = value.strip()
    if len(value) > attribute.max_length:
        raise AttributeProblem("o311.attr_long", code=attribute.code, max_length=attribute.max_length)
    return value


def parse_datetime(value: str) -> datetime:
    """Parse a W3C/ISO 8601 date and time that carries a zone (``2010-01-01T00:00:00Z``,
    ``…+08:00``) into an aware datetime. Raises ``ValueError`` for anything else, a naive time
    included (GeoReport v2 "Date/time format": the zone must be included)."""
    text = value.strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})", text):
        raise ValueError(value)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:  # pragma: no cover - the pattern requires a zone
        raise ValueError(value)
    return parsed


def check_value(attribute: Attribute, raw: list[str]) -> Any:
    """Return the checked value of ``attribute`` from the strings posted for it (one string per
    occurrence; empty ones dropped): ``str`` for string/text/singlevaluelist, ``float`` or ``int``
    for a number, an ISO 8601 string with its zone for a datetime, a list of keys for a
    multivaluelist. Returns ``None`` when nothing was given. Raises :class:`AttributeProblem`."""
    raw = [r for r in raw if r.strip()]
    if not raw:
        if attribute.required:
            raise AttributeProblem("o311.attr_required", code=attribute.code)
        return None
    keys = {key for key, *_ in attribute.values}
    match attribute.datatype:
        case Datatype.STRING | Datatype.TEXT:
            return _clean(attribute, _one(attribute, raw), breaks=attribute.datatype == Datatype.TEXT)
        case Datatype.NUMBER:
            try:
                number = float(_one(attribute, raw).strip())
            except ValueError:
                raise AttributeProblem("o311.attr_number", code=attribute.code) from None
            low = attribute.minimum if attribute.minimum is not None else -math.inf
            high = attribute.maximum if attribute.maximum is not None else math.inf
            if not math.isfinite(number) or not low <= number <= high:
                raise AttributeProblem("o311.attr_range", code=attribute.code, min=attribute.minimum,
                                      max=attribute.maximum)
            return int(number) if number.is_integer() else number
        case Datatype.DATETIME:
            try:
                return parse_datetime(_one(attribute, raw)).isoformat()
            except ValueError:
                raise AttributeProblem("o311.attr_datetime", code=attribute.code) from None
        case Datatype.SINGLEVALUELIST:
            value = _one(attribute, raw).strip()
            if value not in keys:
                raise AttributeProblem("o311.attr_value", code=attribute.code, value=value[:40])
            return value
        case Datatype.MULTIVALUELIST:
            chosen: list[str] = []
            for value in (r.strip() for r in raw):
                if value not in keys:
                    raise AttributeProblem("o311.attr_value", code=attribute.code, value=value[:40])
                if value not in chosen:
                    chosen.append(value)
            return chosen
    raise AssertionError(attribute.datatype)  # pragma: no cover


def check_all(
    attributes: list[Attribute], posted: dict[str, list[str]]
) -> tuple[dict[str, Any], list[AttributeProblem]]:
    """Check every posted attribute against the service's definition. Returns the values given
    (by code, ``None`` values left out) and the problems found: an unknown code, or a value that
    breaks its attribute, or a required attribute missing."""
    known = {a.code: a for a in attributes}
    values: dict[str, Any] = {}
    problems = [AttributeProblem("o311.attr_unknown", code=code[:40]) for code in posted if code not in known]
    for attribute in attributes:
        try:
            value = check_value(attribute, posted.get(attribute.code, []))
        except AttributeProblem as problem:
            problems.append(problem)
            continue
        if value is not None:
            values[attribute.code] = value
    return values, problems
