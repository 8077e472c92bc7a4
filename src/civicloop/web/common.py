"""What every page of the web app shares: the templates, the page context (who is logged in, their
language, the CSRF token), the login and role check, the CSRF check of every form, the helpers pages
show data with (local times, deadline colours, masked texts), and the HTML rendering of errors.

Pages are server-rendered Jinja2 with autoescaping on (a ``<script>`` a citizen types shows as text);
htmx fetches fragments. A page needs a web login (the session cookie ``core.http.SESSION_COOKIE``): API
tokens and the development role headers do not open pages. Every query a page makes goes through
``requests.scope``, so a record outside the caller's scope is the 404 page (never a 403 that reveals it).
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from civicloop.core import auth
from civicloop.core.calendar import WorkCalendar
from civicloop.core.errors import CivicloopError, Forbidden
from civicloop.core.http import SAFE_METHODS, Caller, CurrentCaller, DbSession, SettingsDep
from civicloop.core.i18n import label, pick_language, word
from civicloop.core.roles import STAFF, Role
from civicloop.core.settings import Settings, get_settings
from civicloop.core.timeutil import utcnow
from civicloop.core.validation import mask_phones_in_text
from civicloop.org.models import OrgUnit
from civicloop.requests.service import Actor
from civicloop.web.messages import text

HERE = Path(__file__).resolve().parent
M = TypeVar("M", bound=BaseModel)
LANG_COOKIE = "lang"
ANON_CSRF_COOKIE = "civicloop_csrf"

ENV = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                  trim_blocks=True, lstrip_blocks=True)
"""The pages' Jinja2 environment: autoescaping on for every template (a citizen's ``<script>`` is text)."""

OPERATOR_ROLES = frozenset({Role.OPERATOR, Role.ADMIN})
DISPATCH_ROLES = frozenset({Role.DISPATCHER, Role.ADMIN})
UNIT_ROLES = frozenset({Role.HANDLER, Role.ADMIN})
SUPERVISE_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN})
ANALYSIS_ROLES = frozenset({Role.ANALYST, Role.SUPERVISOR, Role.DISPATCHER, Role.ADMIN})
FINDING_DECIDERS = frozenset({Role.ANALYST, Role.SUPERVISOR, Role.ADMIN})
LEDGER_ROLES = STAFF
RESIDENT_ROLES = frozenset({Role.RESIDENT})

NAV: tuple[tuple[str, str, frozenset[Role]], ...] = (
    ("/operator", "nav.operator", OPERATOR_ROLES),
    ("/dispatch", "nav.dispatch", DISPATCH_ROLES),
    ("/unit", "nav.unit", UNIT_ROLES),
    ("/supervise", "nav.supervise", SUPERVISE_ROLES),
    ("/analysis", "nav.analysis", ANALYSIS_ROLES),
    ("/ledger", "nav.ledger", LEDGER_ROLES),
    ("/resident", "nav.resident", RESIDENT_ROLES),
    ("/submit", "nav.submit", frozenset({Role.RESIDENT, Role.GRID_WORKER})),
)
"""The top bar's links: path, label, the roles that see it (the same sets guard the pages)."""

HOME: dict[Role, str] = {
    Role.OPERATOR: "/operator", Role.DISPATCHER: "/dispatch", Role.HANDLER: "/unit", Role.SUPERVISOR: "/supervise",
    Role.ANALYST: "/analysis", Role.RESIDENT: "/resident", Role.GRID_WORKER: "/ledger", Role.ADMIN: "/supervise",
}
"""Where the home page sends each role (the division of labour of 接诉即办: docs/web.md)."""

WEB_PATHS = ("/login", "/logout", "/operator", "/dispatch", "/unit", "/supervise", "/analysis", "/resident",
             "/submit", "/ledger", "/case")
"""Paths the web app answers; errors under them are pages, everywhere else the JSON API's shape."""


class Rerender(Exception):
    """Raised by a page to answer with ``response`` (a form shown again with its errors) after the
    request's transaction was rolled back: raising, not returning, makes ``core.http.get_session``
    roll back whatever the failed use case wrote."""

    def __init__(self, response: Response) -> None:
        super().__init__("rerender")
        self.response = response


class FormInvalid(CivicloopError):
    """A form's fields broke their schema (422); ``fields`` maps a field name to its message."""

    status_code = 422
    code = "validation"

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("validation")
        self.fields = fields


@dataclass
class Who:
    """The top bar's view of the logged-in user: display strings only (safe to use after the
    session is closed, e.g. on an error page)."""

    name: str
    role: Role
    role_word: str
    unit_name: str


@dataclass
class Page:
    """One page request: the database session, settings, the logged-in caller (``None`` on the
    public pages when nobody is logged in), the language, the submitted form (POST, CSRF-checked)."""

    request: Request
    session: Session
    settings: Settings
    caller: Caller | None
    lang: str
    who: Who | None = None
    form: FormData | None = None
    now: datetime = field(default_factory=utcnow)
    anon_csrf: str = ""

    @property
    def user(self) -> Caller:
        """The logged-in caller (the role check guarantees one on every non-public page)."""
        assert self.caller is not None
        return self.caller

    @property
    def actor(self) -> Actor:
        """The caller as the use cases name who acted (name, role, unit)."""
        return Actor(self.user.name, self.user.role, self.user.unit_id)

    def t(self, key: str, **params: Any) -> str:
        """Return UI string ``key`` in the page's language (:func:`civicloop.web.messages.text`)."""
        return text(key, self.lang, **params)

    def field(self, name: str) -> str:
        """Return form field ``name`` as text (``""`` when absent or a file)."""
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else ""

    def render(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        """Render ``template`` with the page's context plus ``context``; returns the HTML response
        (sets the language cookie when ``?lang=`` chose one)."""
        return render(self.request, template, status=status, page=self, **context)

    def redirect(self, url: str, msg: str | None = None, **params: Any) -> RedirectResponse:
        """Return a 303 to ``url`` (a path of this app) with flash ``msg`` (a ``flash.*`` id)."""
        return redirect(url, msg, **params)


def web_lang(request: Request) -> str:
    """Return the page language: ``?lang=zh|en`` first, then the ``lang`` cookie (the switch), then
    the browser's ``Accept-Language`` (RFC 9110 §12.5.4, as the API reads it: the first of zh/en it
    names), else the configured default (Chinese). A browser naming neither language gets Chinese."""
    for value in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if value in ("zh", "en"):
            return value
    default = "en" if get_settings().default_language == "en" else "zh"
    return pick_language(request.headers.get("accept-language"), default)


def who_of(session: Session, caller: Caller, lang: str) -> Who:
    """Return the top bar's strings for ``caller`` (unit name looked up once)."""
    unit = session.get(OrgUnit, caller.unit_id) if caller.unit_id is not None else None
    return Who(name=caller.name, role=caller.role, role_word=word("role", caller.role.value, lang),
               unit_name=unit.name if unit is not None else "")


def _check_csrf(expected: str, form: FormData, request: Request) -> None:
    given = form.get("csrf_token")
    token = given if isinstance(given, str) else request.headers.get("x-csrf-token")
    if not auth.csrf_matches(expected, token):
        raise Forbidden("csrf_failed")


def page(roles: Collection[Role] | None, action: str) -> Any:
    """A dependency returning the :class:`Page` of a logged-in caller whose role is in ``roles``
    (``None``: any role). Not logged in through the web (no live session): ``Unauthenticated``, shown
    as a redirect to ``/login``; another role: ``Forbidden`` (the 403 page, naming ``action``). On
    a POST the form must carry the session's CSRF token (field ``csrf_token`` or header
    ``X-CSRF-Token``, which htmx sends), else ``Forbidden("csrf_failed")`` (OWASP CSRF Prevention
    Cheat Sheet: synchroniser token pattern)."""
    allowed = frozenset(roles) if roles is not None else None

    async def _page(request: Request, session: DbSession, settings: SettingsDep, caller: CurrentCaller) -> Page:
        lang = web_lang(request)
        if caller.via != "session":
            raise auth.Unauthenticated()
        who = who_of(session, caller, lang)
        request.state.web_who = who
        if allowed is not None and caller.role not in allowed:
            raise Forbidden(role=caller.role.value, action=action)
        found = Page(request=request, session=session, settings=settings, caller=caller, lang=lang, who=who)
        if request.method not in SAFE_METHODS:
            found.form = await request.form()
            _check_csrf(caller.csrf_token, found.form, request)
        return found

    return Depends(_page)


def public_page() -> Any:
    """A dependency returning the :class:`Page` of a public page (login, the resident's form): the
    caller when logged in through the web, else ``None``. A POST must carry the CSRF token: the
    session's when logged in, else the double-submit cookie's (``civicloop_csrf``, set when the form
    was shown; OWASP's double-submit cookie pattern), else ``Forbidden("csrf_failed")``."""

    async def _public(request: Request, session: DbSession, settings: SettingsDep, caller: CurrentCaller) -> Page:
        lang = web_lang(request)
        user = caller if caller.via == "session" else None
        who = who_of(session, user, lang) if user is not None else None
        request.state.web_who = who
        found = Page(request=request, session=session, settings=settings, caller=user, lang=lang, who=who,
                     anon_csrf=request.cookies.get(ANON_CSRF_COOKIE) or "")
        if request.method not in SAFE_METHODS:
            found.form = await request.form()
            if user is not None:
                _check_csrf(user.csrf_token, found.form, request)
            else:
                given = found.form.get("csrf_token")
                if not (found.anon_csrf and isinstance(given, str)
                        and hmac.compare_digest(found.anon_csrf.encode(), given.encode())):
                    raise Forbidden("csrf_failed")
        return found

    return Depends(_public)


PublicPage = Annotated[Page, public_page()]


# --- rendering -------------------------------------------------------------------------------------


def nav_for(role: Role | None, path: str, lang: str) -> list[dict[str, Any]]:
    """Return the top bar's links for ``role``, the current one marked."""
    if role is None:
        return []
    return [{"href": href, "label": text(key, lang), "current": path == href or path.startswith(href + "/")}
            for href, key, roles in NAV if role in roles]


def lang_switch_url(request: Request, lang: str) -> str:
    """Return the current page's URL with ``lang`` switched to the other language."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("lang", "msg", "id")]
    params.append(("lang", "zh" if lang == "en" else "en"))
    return f"{request.url.path}?{urlencode(params)}"


def render(request: Request, template: str, *, status: int = 200, page: Page | None = None,
           **context: Any) -> HTMLResponse:
    """Render ``template`` as the answer to ``request`` with the common context: ``t`` (UI strings in
    the page's language), ``lang``, ``who`` (top bar), ``nav``, ``csrf`` (the token forms carry),
    ``flash`` (the ``?msg=`` of a redirect after an action) and ``page``. Returns the HTML response;
    sets the ``lang`` cookie when the URL chose a language and the anonymous CSRF cookie when a
    public form needed a new one."""
    lang = page.lang if page is not None else web_lang(request)
    who: Who | None = page.who if page is not None else getattr(request.state, "web_who", None)
    csrf, new_anon = "", ""
    if page is not None and page.caller is not None:
        csrf = page.caller.csrf_token
    else:
        csrf = (page.anon_csrf if page is not None else "") or request.cookies.get(ANON_CSRF_COOKIE) or ""
        if not csrf:
            csrf = new_anon = secrets.token_urlsafe(24)
    msg = request.query_params.get("msg", "")
    flash = text(f"flash.{msg}", lang, id=request.query_params.get("id", "")[:20]) if msg.isidentifier() \
        and f"flash.{msg}" != text(f"flash.{msg}", lang) else ""

    def t(key: str, **params: Any) -> str:
        return text(key, lang, **params)

    body = ENV.get_template(template).render(
        request=request, page=page, t=t, lang=lang, who=who, csrf=csrf, flash=flash,
        nav=nav_for(who.role if who else None, request.url.path, lang),
        switch_url=lang_switch_url(request, lang), word=lambda kind, value: word(kind, value, lang),
        **context,
    )
    response = HTMLResponse(body, status_code=status)
    secure = get_settings().secure_cookies
    if request.query_params.get("lang") in ("zh", "en"):
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 24 * 3600, samesite="lax", secure=secure)
    if new_anon:
        response.set_cookie(ANON_CSRF_COOKIE, new_anon, httponly=True, samesite="strict", secure=secure)
    return response


def redirect(url: str, msg: str | None = None, **params: Any) -> RedirectResponse:
    """Return a 303 (See Other: the browser GETs ``url`` after a POST) with flash ``msg``."""
    query = {**({"msg": msg} if msg else {}), **{k: str(v) for k, v in params.items()}}
    return RedirectResponse(f"{url}{'&' if '?' in url else '?'}{urlencode(query)}" if query else url,
                            status_code=303)


# --- what pages show -------------------------------------------------------------------------------


def local(value: datetime | None, settings: Settings, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Return an aware time as the users' local time (``settings.tz``, Asia/Shanghai), ``""`` for ``None``."""
    return value.astimezone(settings.tz).strftime(fmt) if value is not None else ""


def masked(value: str | None) -> str:
    """Return a citizen's or unit's text with phone numbers, ID numbers and e-mails masked
    (``core.validation.mask_phones_in_text``, the Personal Information Protection Law)."""
    return mask_phones_in_text(value) or ""


def _span(delta: timedelta, lang: str) -> str:
    minutes = int(abs(delta).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return text("due.days", lang, d=days, h=hours)
    if hours:
        return text("due.hours", lang, h=hours, m=mins)
    return text("due.minutes", lang, m=mins)


def time_left(due: datetime | None, now: datetime, calendar: WorkCalendar, settings: Settings,
              lang: str) -> tuple[str, str]:
    """Return ``(css class, words)`` for a deadline: ``due-red`` when past, ``due-orange`` when less
    than one working day is left (the deadline comes before this clock time on the next working day of
    the Chinese calendar, ``core.calendar``), ``due-green`` otherwise, ``due-none`` without a deadline."""
    if due is None:
        return "due-none", text("due.none", lang)
    if due <= now:
        return "due-red", text("due.overdue", lang, t=_span(now - due, lang))
    here = now.astimezone(settings.tz)
    next_day, _ = calendar.add_working_days(here.date(), 1)
    one_working_day = datetime.combine(next_day, here.timetz())
    kind = "due-orange" if due < one_working_day else "due-green"
    return kind, text("due.left", lang, t=_span(due - now, lang))


def unit_names(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    """Return unit id → name for the given ids (one query; unknown ids left out)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(session.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(wanted))).all())


def field_messages(exc: ValidationError, lang: str) -> dict[str, str]:
    """Return field name → message in ``lang`` for pydantic's errors (the texts of ``v.<type>`` in
    ``core.i18n``, as the JSON API gives them)."""
    out: dict[str, str] = {}
    for err in exc.errors():
        ctx = {k: str(v) if k in ("expected", "error") else v for k, v in dict(err.get("ctx") or {}).items()}
        name = ".".join(str(p) for p in err.get("loc", ())) or "form"
        out.setdefault(name, text(f"v.{err.get('type', 'default')}", lang, **ctx))
    return out


def validated(model: type[M], lang: str, **data: Any) -> M:
    """Return ``model`` validated from form values; raises :class:`FormInvalid` (422) naming each
    field at fault in ``lang``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise FormInvalid(field_messages(exc, lang)) from None


def callback_answer(p: Page) -> Any:
    """Return the citizen's answer at callback from the form (``resolved`` yes/no, ``satisfaction``,
    ``note``) as a ``requests.schemas.CallbackIn``; raises :class:`FormInvalid` (422) for a missing or
    malformed answer. Used by the operator's callback and the resident's rating."""
    from civicloop.requests.schemas import CallbackIn

    resolved = p.field("resolved")
    if resolved not in ("yes", "no"):
        raise FormInvalid({"resolved": p.t("v.missing")})
    return validated(CallbackIn, p.lang, resolved=resolved == "yes", satisfaction=p.field("satisfaction") or None,
                     note=p.field("note"))


def int_or_none(value: str, name: str, lang: str, *, low: int = 1, high: int = 2**31 - 1) -> int | None:
    """Return the form value as an integer in [low, high], ``None`` when blank; raises
    :class:`FormInvalid` on ``name`` otherwise."""
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or not low <= int(value) <= high:
        raise FormInvalid({name: text("v.int_parsing", lang) if not value.isdigit()
                           else text("v.less_than_equal", lang, le=high) if int(value) > high
                           else text("v.greater_than_equal", lang, ge=low)})
    return int(value)


def error_message(exc: CivicloopError, lang: str) -> str:
    """Return a domain error's message in ``lang``, its parameters shown as words (as the JSON
    API's renderer does, ``core.http.install_error_handlers``)."""
    params = dict(exc.params)
    if "what" in params:
        params["what"] = label(str(params["what"]), lang)
    for kind in ("status", "action", "role"):
        if kind in params:
            key = f"{kind}.{params[kind]}"
            params[kind] = text(key, lang) if text(key, lang) != key else str(params[kind])
    return text(exc.code, lang, **params)


def is_web(request: Request) -> bool:
    """True when ``request`` is for a page of the web app (its errors are pages too)."""
    path = request.url.path
    return path == "/" or any(path == p or path.startswith(p + "/") for p in WEB_PATHS)


def error_page(request: Request, status: int, message: str, fields: dict[str, str] | None = None) -> HTMLResponse:
    """Return the error page: the status's title, ``message``, the fields at fault, links back."""
    return render(request, "error.html", status=status, status_code=status, message=message,
                  fields=fields or {})


def login_redirect(request: Request) -> RedirectResponse:
    """Return the 303 to ``/login`` that comes back to this page (GET) after logging in."""
    back = request.url.path if request.method == "GET" else "/"
    if request.method == "GET" and request.url.query:
        back += "?" + request.url.query
    return RedirectResponse(f"/login?next={quote(back, safe='')}", status_code=303)


def category_options(session: Session) -> list[tuple[int, str]]:
    """Return (id, path) of every category of the tree, by path (for a form's select)."""
    from civicloop.catalog.service import list_categories

    return sorted(((c.id, c.path) for c in list_categories(session)), key=lambda pair: pair[1])


def unit_options(session: Session) -> list[tuple[int, str]]:
    """Return (id, name) of every active unit, districts and streets first (for a form's select)."""
    order = {"district": 0, "street": 1, "community": 2, "department": 3, "utility": 4, "property": 5}
    units = session.scalars(select(OrgUnit).where(OrgUnit.active.is_(True))).all()
    return [(u.id, u.name) for u in sorted(units, key=lambda u: (order.get(str(u.kind), 9), u.id))]


def events_of(session: Session, request_id: int, settings: Settings) -> list[dict[str, Any]]:
    """Return a request's history for display, oldest first: time (local), action, statuses, actor,
    role and reason (contact data masked)."""
    from civicloop.requests.service import history

    return [{"at": local(e.created_at, settings), "action": e.action, "from": e.from_status, "to": e.to_status,
             "actor": e.actor, "role": e.actor_role, "reason": masked(e.reason)}
            for e in history(session, request_id=request_id)]


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def without_control(value: str) -> str:
    """Return ``value`` without control characters (NUL and the like, which PostgreSQL refuses in text and
    no person types), for free text that is only looked at, never stored (suggestions, look-ups)."""
    return _CONTROL.sub("", value)


_PICKED_ID = re.compile(r"#([0-9]{1,9})\s*$")  # an id up to 9 digits fits every integer column


def pick_unit(session: Session, value: str, field: str, lang: str) -> int | None:
    """Return the id of the active unit a form's unit field names: ``"望湖街道 #2"`` (the option of the
    page's ``<datalist>``), a bare id, or an exact name when only one unit has it; ``None`` when blank.
    Raises :class:`FormInvalid` on ``field`` for a unit that does not exist (or a name shared by several)."""
    value = without_control(value).strip()
    if not value:
        return None
    found = _PICKED_ID.search(value)
    if found or (value.isdigit() and len(value) <= 9):
        unit = session.get(OrgUnit, int(found.group(1) if found else value))
        if unit is not None and unit.active:
            return unit.id
    else:
        ids = session.scalars(select(OrgUnit.id).where(OrgUnit.name == value, OrgUnit.active.is_(True))).all()
        if len(ids) == 1:
            return ids[0]
    raise FormInvalid({field: text("v.unknown_unit", lang, id=value[:100])})


def pick_category(session: Session, value: str, field: str, lang: str) -> int | None:
    """Return the id of the category a form's category field names (its path, as the page's
    ``<datalist>`` offers it, or a bare id); ``None`` when blank. Raises :class:`FormInvalid` on ``field``
    for a category that does not exist."""
    from civicloop.catalog.service import find_category, find_category_by_path

    value = without_control(value).strip()
    if not value:
        return None
    category = find_category(session, int(value)) if value.isdigit() and len(value) <= 9 \
        else find_category_by_path(session, value)
    if category is None:
        raise FormInvalid({field: text("v.unknown_category", lang, id=value[:100])})
    return category.id
