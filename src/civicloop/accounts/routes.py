"""HTTP routes of accounts under ``/api/v1``: API tokens (log in), who am I, log out, users (admin).

The web app's login form (``web``) opens a cookie session through the same use case."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from civicloop.accounts import service
from civicloop.accounts.schemas import LoginIn, MeOut, TokenOut, UserIn, UserOut
from civicloop.core import auth
from civicloop.core.http import Caller, DbSession, LoggedIn, SettingsDep, allow
from civicloop.core.models import AuthToken
from civicloop.core.ratelimit import RATE_LIMITED_RESPONSES, rate_limited
from civicloop.core.roles import Role
from civicloop.core.timeutil import utcnow

router = APIRouter(prefix="/api/v1", tags=["accounts (用户与登录)"])


@router.post("/auth/tokens", response_model=TokenOut, status_code=201, summary="登录取令牌 Log in for an API token",
             dependencies=[Depends(rate_limited("login", per_user=False))], responses=RATE_LIMITED_RESPONSES)
def create_token(body: LoginIn, session: DbSession, settings: SettingsDep) -> TokenOut:
    """Check a user name and password and return a new API token (``Authorization: Bearer``),
    valid ``hours`` or until revoked. 401 ``login_failed`` for a wrong name or password (the same
    answer for both, OWASP Authentication Cheat Sheet); 429 after ``settings.rate_limit_login``
    attempts from one address (``core.ratelimit``)."""
    now = utcnow()
    secret, who = service.login(session, username=body.username, password=body.password, kind=auth.API,
                                settings=settings, now=now, name=body.name, hours=body.hours)
    token = session.get(AuthToken, who.token_id)
    return TokenOut(token=secret, token_id=who.token_id or 0, username=who.username, role=who.role,
                    unit_id=who.unit_id, expires_at=token.expires_at if token else None)


@router.get("/auth/me", response_model=MeOut, summary="当前用户 Who am I")
def me(caller: LoggedIn) -> MeOut:
    """Return the caller (401 for the anonymous public)."""
    return MeOut(username=caller.name, display_name=caller.name, role=caller.role, unit_id=caller.unit_id,
                 grid_ids=list(caller.grid_ids), via=caller.via)


@router.delete("/auth/tokens/current", status_code=204, summary="注销 Log out")
def logout(session: DbSession, caller: LoggedIn) -> None:
    """Revoke the token or session this request came with (401 without one)."""
    if caller.token_id is not None:
        who = auth.Principal(user_id=caller.user_id or 0, username=caller.name, display_name=caller.name,
                             role=caller.role, unit_id=caller.unit_id)
        auth.revoke_token(session, token_id=caller.token_id, user=who, now=utcnow(), actor=caller.name)


@router.get("/users", response_model=list[UserOut], summary="用户列表 Users")
def list_users(session: DbSession, caller: Annotated[Caller, allow(Role.ADMIN, "list_users")]) -> list[UserOut]:
    """Return every user (admin only; no password hashes)."""
    return [UserOut.of(u) for u in service.list_users(session)]


@router.post("/users", response_model=UserOut, status_code=201, summary="新建用户 Create a user")
def create_user(
    body: UserIn,
    session: DbSession,
    caller: Annotated[Caller, allow(Role.ADMIN, "create_user")],
) -> UserOut:
    """Create a user (admin only). 422 naming the field for a taken or malformed user name, a weak
    password, a handler without a unit, an unknown unit or grid."""
    return UserOut.of(service.create_user(session, username=body.username, password=body.password, role=body.role,
                                          unit_id=body.unit_id, grid_ids=body.grid_ids,
                                          display_name=body.display_name, actor=caller.name, now=utcnow()))
