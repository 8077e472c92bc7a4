"""POST requests: a request filed through Open311 enters the same loop as every other channel
(``requests.intake.submit`` with channel ``open311``, then intelligent intake, ``requests.triage``,
when ``triage_on_intake`` is on): located, checked for duplicates, classified, routed, deadlined."""

from __future__ import annotations

import secrets
import time
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from civicloop.core.roles import Role
from civicloop.core.settings import Settings
from civicloop.open311.attributes import check_all
from civicloop.open311.inputs import Filing, names_of
from civicloop.open311.models import ApiKey, Submission
from civicloop.open311.render import Open311Error, fail
from civicloop.open311.service import COMMON_ATTRIBUTES, require_service, service_attributes, service_code
from civicloop.org.models import OrgUnit, Place
from civicloop.requests import intake, triage_queue
from civicloop.requests.models import Channel, ServiceRequest
from civicloop.requests.service import Actor, now_or

MAX_DESCRIPTION = 4000
"""GeoReport v2: description "limited to 4,000 characters"; also the limit of the composed text."""


def _extra_lines(values: dict[str, Any], *, lang: str, tz: Any) -> list[str]:
    pick = 1 if lang == "en" else 0
    lines = []
    for attribute in COMMON_ATTRIBUTES:
        value = values.get(attribute.code)
        if value is None or attribute.code == "title":
            continue
        if attribute.code == "occurred_at":
            value = datetime.fromisoformat(value).astimezone(tz).strftime("%Y-%m-%d %H:%M")
        elif isinstance(value, list):
            names = {key: names[pick] for key, *names in attribute.values}
            value = "、".join(names[v] for v in value) if pick == 0 else ", ".join(names[v] for v in value)
        lines.append(f"{attribute.label[pick]}{'：' if pick == 0 else ': '}{value}")
    return lines


def file_request(
    session: Session, *, filing: Filing, key: ApiKey, settings: Settings, started: float | None = None,
    now: datetime | None = None,
) -> tuple[ServiceRequest, Submission]:
    """File ``filing`` for the client of ``key`` and return the request and its Open311 record.

    The service (category) is ``service_code``, refined by ``attribute[subcategory]``; the title is
    ``attribute[title]`` or the service's name; the description is the one posted (else the title)
    followed by one line per other attribute given, in the deployment's language; the address is
    ``address_string``, else the gazetteer place ``address_id`` names; the citizen's name joins
    ``first_name`` and ``last_name``. Raises ``Open311Error`` 404 for an unknown service_code
    (GeoReport v2 "POST Service Request" errors), 400 for attributes that break the definition,
    an unknown ``address_id`` or a composed description over 4,000 characters. Nothing is written
    before every check has passed."""
    started = time.perf_counter() if started is None else started
    now = now_or(now)
    category = require_service(session, filing.service_code)
    values, problems = check_all(service_attributes(session, category), filing.attributes)
    if problems:
        raise Open311Error(400, [(p.code, p.params) for p in problems])
    if "subcategory" in values:
        category = require_service(session, values["subcategory"])
    address = filing.address_string
    if filing.address_id is not None:
        place = session.get(Place, filing.address_id)
        if place is None:
            raise fail(400, "o311.address_id", field="address_id", id=filing.address_id)
        if not address:
            district = session.get(OrgUnit, place.district_id) if place.district_id else None
            address = f"{district.name if district else ''}{place.name}"
    title = values.get("title") or category.name
    lines = _extra_lines(values, lang=settings.default_language, tz=settings.tz)
    description = "\n".join([filing.description or title, *(["", *lines] if lines else [])])
    if len(description) > MAX_DESCRIPTION:
        raise fail(400, "o311.too_long", field="description", max_length=MAX_DESCRIPTION)
    data = intake.NewRequest(
        channel=Channel.OPEN311, title=title[:200], description=description, citizen_name=names_of(filing),
        citizen_phone=filing.phone, address=address[:500], lat=filing.lat, lon=filing.lon, category_id=category.id,
    )
    request = intake.submit(session, data=data, actor=Actor(f"open311:{key.name}"[:100], Role.RESIDENT), now=now)
    triage_queue.on_filing(session, request=request, settings=settings, started=started)
    submission = Submission(
        token=secrets.token_urlsafe(24), request_id=request.id, api_key_id=key.id, service_code=service_code(category),
        address_id=str(filing.address_id) if filing.address_id is not None else None, media_url=filing.media_url,
        device_id=filing.device_id, account_id=filing.account_id, email=filing.email, attributes=values,
        created_at=now,
    )
    session.add(submission)
    session.flush()
    return request, submission
