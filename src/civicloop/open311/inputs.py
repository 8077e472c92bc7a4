"""Reading what a GeoReport v2 client sends: the form of POST requests and the query of GET
requests. Every problem is collected and answered at once as a 400 ``errors`` list (GeoReport v2
"Errors": "400 for any other error where the request can not be fulfilled"); an empty parameter
is the same as an absent one (GeoReport v2 "Optional Arguments")."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter, ValidationError

from civicloop.core.validation import MAX_ID, Phone, Text
from civicloop.open311.attributes import parse_datetime
from civicloop.open311.render import Open311Error

WINDOW = timedelta(days=90)
"""GeoReport v2 GET requests: "may not span more than 90 days"; "defaults to most recent 90 days"."""
MAX_IDS = 1000
_ATTRIBUTE = re.compile(r"^attribute\[([^\[\]]{1,64})\](\[\])?$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,253}\.[^@\s]{1,63}$")
_URL = re.compile(r"^https?://[^\s]{1,1990}$", re.IGNORECASE)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_SHORT = TypeAdapter(Text(100))
_NAME = TypeAdapter(Text(50))
_ADDRESS = TypeAdapter(Text(500))
_DESCRIPTION = TypeAdapter(Text(4000))
_PHONE = TypeAdapter(Phone)

Problems = list[tuple[str, dict[str, Any]]]


class MultiMap(Protocol):
    def getlist(self, key: str) -> list[Any]: ...
    def keys(self) -> Any: ...


@dataclass
class Filing:
    """A POST requests form, checked (strings stripped; empty optional fields are ``None``)."""

    api_key: str
    service_code: str
    lat: float | None = None
    lon: float | None = None
    address_string: str = ""
    address_id: int | None = None
    email: str | None = None
    device_id: str | None = None
    account_id: str | None = None
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    description: str = ""
    media_url: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class RequestQuery:
    """A GET requests query, checked: ``ids`` (overrides the rest) or a window and filters."""

    ids: list[int] | None
    codes: list[str]
    statuses: set[str]
    start: datetime
    end: datetime


def _single(data: MultiMap, name: str, problems: Problems) -> str:
    values = [v for v in data.getlist(name) if isinstance(v, str)]
    if len(values) > 1:
        problems.append(("o311.repeated", {"field": name}))
    return values[-1].strip() if values else ""


def _checked(adapter: TypeAdapter[Any], value: str, name: str, problems: Problems) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        problems.append((f"v.{err['type']}", {"field": name, **{k: v for k, v in (err.get("ctx") or {}).items()
                                                                if isinstance(v, int | str)}}))
        return ""


def _coordinate(text: str, name: str, bound: int, problems: Problems) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        problems.append(("v.float_parsing", {"field": name}))
        return None
    if not math.isfinite(value) or not -bound <= value <= bound:
        problems.append(("o311.range", {"field": name, "min": -bound, "max": bound}))
        return None
    return value


def parse_filing(form: MultiMap) -> Filing:
    """Check a POST requests form (GeoReport v2 "POST Service Request": required service_code and a
    location, one of lat & long, address_string or address_id; optional attribute[code], email,
    device_id, account_id, first_name, last_name, phone, description up to 4,000 characters,
    media_url). ``api_key`` is only read here (checked by the caller, 403). Fields the spec does
    not name are ignored. Raises ``Open311Error`` 400 listing every problem."""
    problems: Problems = []
    single = lambda name: _single(form, name, problems)  # noqa: E731
    filing = Filing(api_key=single("api_key"), service_code=single("service_code"))
    if not filing.service_code:
        problems.append(("o311.missing", {"field": "service_code"}))
    lat_text, lon_text = single("lat"), single("long")
    filing.lat = _coordinate(lat_text, "lat", 90, problems)
    filing.lon = _coordinate(lon_text, "long", 180, problems)
    if bool(lat_text) != bool(lon_text):
        problems.append(("o311.latlong_pair", {}))
    filing.address_string = _checked(_ADDRESS, single("address_string"), "address_string", problems)
    address_id = single("address_id")
    if address_id:
        if address_id.isascii() and address_id.isdigit() and 1 <= int(address_id) <= MAX_ID:
            filing.address_id = int(address_id)
        else:
            problems.append(("o311.address_id", {"field": "address_id", "id": address_id[:40]}))
    if not (lat_text or lon_text) and not filing.address_string and not address_id:
        problems.append(("o311.location", {}))
    email = single("email")
    if email and not _EMAIL.match(email):
        problems.append(("o311.email", {"field": "email"}))
    filing.email = email or None
    filing.device_id = _checked(_SHORT, single("device_id"), "device_id", problems) or None
    filing.account_id = _checked(_SHORT, single("account_id"), "account_id", problems) or None
    filing.first_name = _checked(_NAME, single("first_name"), "first_name", problems)
    filing.last_name = _checked(_NAME, single("last_name"), "last_name", problems)
    filing.phone = _checked(_PHONE, single("phone"), "phone", problems)
    filing.description = _checked(_DESCRIPTION, single("description"), "description", problems)
    media_url = single("media_url")
    if media_url and not _URL.match(media_url):
        problems.append(("o311.url", {"field": "media_url"}))
    filing.media_url = media_url or None
    for key in form.keys():
        match = _ATTRIBUTE.match(key)
        if match:
            values = [v for v in form.getlist(key) if isinstance(v, str)]
            filing.attributes.setdefault(match.group(1), []).extend(values)
        elif key.startswith("attribute"):
            problems.append(("o311.attr_form", {"field": key[:80]}))
    if problems:
        raise Open311Error(400, problems)
    return filing


def _listed(params: MultiMap, name: str) -> list[str]:
    """Return the comma-delimited values of a parameter that "can be declared multiple times"."""
    return [part.strip() for value in params.getlist(name) for part in str(value).split(",") if part.strip()]


def _moment(text: str, name: str, tz: ZoneInfo, *, problems: Problems) -> datetime | None:
    if not text:
        return None
    if _DATE.match(text):  # a W3C date alone: the local midnight it starts with
        try:
            day = datetime.fromisoformat(text).date()
        except ValueError:
            problems.append(("o311.datetime", {"field": name}))
            return None
        moment = datetime.combine(day, time.min, tzinfo=tz)
        try:
            moment.astimezone(UTC) + WINDOW
            moment.astimezone(UTC) - WINDOW
        except OverflowError:
            problems.append(("o311.datetime", {"field": name}))
            return None
        return moment
    try:
        moment = parse_datetime(text)
        moment.astimezone(UTC) + WINDOW
        moment.astimezone(UTC) - WINDOW
    except (ValueError, OverflowError):
        problems.append(("o311.datetime", {"field": name}))
        return None
    return moment


def parse_query(params: MultiMap, *, now: datetime, tz: ZoneInfo) -> RequestQuery:
    """Check a GET requests query (GeoReport v2 "GET Service Requests"). ``service_request_id``
    (comma-delimited, at most 1000) overrides the rest. ``start_date``/``end_date`` are W3C times
    with a zone (a date alone means its local midnight); without either the window is the last 90 days
    up to ``now``, with one the 90 days after ``start_date`` or before ``end_date``, with both at
    most 90 days. ``status`` is ``open``/``closed`` (comma-delimited). Raises ``Open311Error`` 400."""
    problems: Problems = []
    ids: list[int] | None = None
    raw_ids = _listed(params, "service_request_id")
    if raw_ids:
        ids = []
        for raw in raw_ids:
            if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_ID:
                ids.append(int(raw))
            else:
                problems.append(("o311.request_id", {"field": "service_request_id", "id": raw[:40]}))
        if len(raw_ids) > MAX_IDS:
            problems.append(("o311.too_many", {"field": "service_request_id", "max": MAX_IDS}))
    statuses = set(_listed(params, "status"))
    if statuses - {"open", "closed"}:
        problems.append(("o311.status", {"field": "status"}))
    start = _moment(_single(params, "start_date", problems), "start_date", tz, problems=problems)
    end = _moment(_single(params, "end_date", problems), "end_date", tz, problems=problems)
    if start is None and end is None:
        start, end = now - WINDOW, now
    elif end is None:
        assert start is not None
        end = start + WINDOW
    elif start is None:
        start = end - WINDOW
    elif end < start:
        problems.append(("o311.date_order", {}))
    elif end - start > WINDOW:
        problems.append(("o311.window", {"days": WINDOW.days}))
    if problems:
        raise Open311Error(400, problems)
    return RequestQuery(ids=ids, codes=_listed(params, "service_code"), statuses=statuses, start=start, end=end)


def names_of(filing: Filing) -> str:
    """Return the submitter's name as one string: family name first for Chinese names (``张`` +
    ``三`` → ``张三``), ``first last`` otherwise; at most 100 characters."""
    first, last = filing.first_name, filing.last_name
    if not first or not last:
        return (first or last)[:100]
    cjk = re.search(r"[\u4e00-\u9fff]", first + last)
    return (f"{last}{first}" if cjk else f"{first} {last}")[:100]

