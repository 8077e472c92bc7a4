"""Logging in and out of the web app, and the home page that sends each role to its page.

The login opens a session through ``accounts.service.login(kind="session")`` and keeps its secret in
the ``SESSION_COOKIE`` cookie: ``HttpOnly`` (no script reads it), ``SameSite=Lax`` (not sent on
cross-site posts), ``Secure`` when ``settings.secure_cookies`` (behind HTTPS) — OWASP Session
Management Cheat Sheet. Login attempts are rate-limited per client (``core.ratelimit``, "login").
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response

from civicloop.accounts import service
from civicloop.core import auth
from civicloop.core.http import SESSION_COOKIE
from civicloop.core.ratelimit import rate_limited
from civicloop.web.common import HOME, Page, PublicPage, Rerender, page, without_control

router = APIRouter()

MAX_PASSWORD = 1024  # longer is no password anyone types; refusing it early keeps Argon2's work bounded


def safe_next(value: str) -> str:
    """Return ``value`` when it is a path of this site (``/…``, not ``//host`` nor ``/\\host``), else
    ``""``: the page to go back to after logging in must not be another site (OWASP, unvalidated
    redirects)."""
    value = value.strip()
    if value.startswith("/") and not value.startswith(("//", "/\\")) and value == without_control(value) \
            and "\n" not in value and "\r" not in value:
        return value[:500]
    return ""


@router.get("/")
def home(p: Annotated[Page, page(None, "open_home")]) -> Response:
    """Send the logged-in user to their role's page (``common.HOME``); a visitor to ``/login``."""
    return RedirectResponse(HOME.get(p.user.role, "/ledger"), status_code=303)


@router.get("/login")
def login_form(p: PublicPage, next: str = "") -> Response:
    """Show the login form (a logged-in user goes home). ``next``: the page to return to."""
    if p.caller is not None:
        return RedirectResponse(safe_next(next) or "/", status_code=303)
    return p.render("login.html", next=safe_next(next), username="", error="")


@router.post("/login", dependencies=[Depends(rate_limited("login"))])
def login(p: PublicPage) -> Response:
    """Check the user name and password, open a web session and set its cookie; 303 to ``next`` or the
    role's page. A wrong name or password shows the form again (401, one message for both: OWASP
    Authentication Cheat Sheet); too many attempts the 429 page; a missing CSRF token the 403 page."""
    username, password = p.field("username").strip()[:64], p.field("password")
    if not re.fullmatch(auth.USERNAME_PATTERN.strip("^$"), username):
        username = ""  # no such user (and nothing PostgreSQL would refuse): the same answer as a wrong password
    next_url = safe_next(p.field("next"))
    try:
        if len(password) > MAX_PASSWORD:
            raise auth.Unauthenticated("login_failed")
        secret, principal = service.login(p.session, username=username, password=password, kind=auth.SESSION,
                                          settings=p.settings, now=p.now)
    except auth.Unauthenticated as exc:
        raise Rerender(p.render("login.html", status=401, next=next_url, username=username,
                                error=p.t(exc.code))) from None
    response = RedirectResponse(next_url or HOME.get(principal.role, "/ledger"), status_code=303)
    response.set_cookie(SESSION_COOKIE, secret, max_age=int(p.settings.session_hours * 3600), path="/",
                        httponly=True, samesite="lax", secure=p.settings.secure_cookies)
    return response


@router.post("/logout")
def logout(p: Annotated[Page, page(None, "logout")]) -> Response:
    """Revoke this session (it no longer opens anything, even if the cookie was copied), clear the
    cookie and go to the login page."""
    caller = p.user
    if caller.token_id is not None:
        who = auth.Principal(user_id=caller.user_id or 0, username=caller.name, display_name=caller.name,
                             role=caller.role, unit_id=caller.unit_id)
        auth.revoke_token(p.session, token_id=caller.token_id, user=who, now=p.now, actor=caller.name)
    response = p.redirect("/login", "logged_out")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=p.settings.secure_cookies)
    return response
