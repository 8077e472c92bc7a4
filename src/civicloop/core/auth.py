"""Who is calling: users, passwords, login sessions and API tokens (issue #6, "who may see what").

* Passwords are hashed with Argon2id (``argon2-cffi``, the parameters of RFC 9106's second
  recommended option as that library ships them), and re-hashed at login when the parameters change.
* A login makes a **session** (web app: an opaque secret in an ``HttpOnly``, ``SameSite=Lax`` cookie,
  ``Secure`` when served over HTTPS, with its own CSRF token) or an **API token** (``Authorization:
  Bearer …``). Both are 32 random bytes (``secrets.token_urlsafe``); only their SHA-256 is stored, so
  the table is useless to a thief. Sessions expire after ``settings.session_hours`` hours; API tokens
  when their owner sets, or never; either can be revoked.
* Every change (user created, role changed, password set, token made or revoked) is in the audit log.

The caller resolved here is a ``Principal``; ``core.http`` turns it into the request's ``Caller``.
The caller owns the transaction: nothing here commits.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from civicloop.core import audit
from civicloop.core.errors import CivicloopError, FieldError, NotFound
from civicloop.core.models import AuthToken, User, UserGrid
from civicloop.core.roles import Role

_HASHER = PasswordHasher()
# verifying against this keeps a login for an unknown user as slow as for a known one (no user enumeration by timing)
_DUMMY_HASH = _HASHER.hash("civicloop-no-such-user")
USERNAME_PATTERN = r"^[A-Za-z0-9_.@\-]{2,64}$"
MIN_PASSWORD = 8
SESSION = "session"
API = "api"


class Unauthenticated(CivicloopError):
    """No valid login: a missing, expired or revoked session or token, or a wrong password (401)."""

    status_code = 401
    code = "unauthenticated"


@dataclass(frozen=True)
class Principal:
    """An authenticated user as the rest of the code sees them (no password hash)."""

    user_id: int
    username: str
    display_name: str
    role: Role
    unit_id: int | None
    grid_ids: tuple[int, ...] = ()
    csrf_token: str = ""  # the session's CSRF token (empty for an API token)
    via: str = API  # "session" or "api"
    token_id: int | None = field(default=None, compare=False)


def hash_password(password: str) -> str:
    """Return the Argon2id PHC string of ``password`` (about 50 ms here, by design)."""
    return _HASHER.hash(password)


def check_password_strength(password: str) -> None:
    """Raise ``FieldError`` on field ``password`` when it is shorter than 8 characters or all one kind
    (NIST SP 800-63B §5.1.1.2 asks for at least 8 and no composition rules beyond that; we add only
    the refusal of a password that is one repeated character)."""
    if len(password) < MIN_PASSWORD:
        raise FieldError("password", "password_short", min=MIN_PASSWORD)
    if len(set(password)) == 1:
        raise FieldError("password", "password_weak")


def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_user(
    session: Session, *, username: str, password: str, role: Role, unit_id: int | None = None,
    display_name: str = "", grid_ids: list[int] | tuple[int, ...] = (), actor: str, now: datetime,
) -> User:
    """Create a user (active) and return it (flushed, with its id).

    Raises ``FieldError`` on ``username`` (taken, or not 2–64 letters, digits, ``_.@-``) or
    ``password`` (too weak). Audited as ``user_created`` (no password, no hash in the log).
    """
    if not re.match(USERNAME_PATTERN, username or ""):
        raise FieldError("username", "username_invalid")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise FieldError("username", "username_taken", username=username)
    check_password_strength(password)
    user = User(username=username, display_name=display_name or username, password_hash=hash_password(password),
                role=role.value, unit_id=unit_id, active=True, created_at=now)
    session.add(user)
    session.flush()
    for grid_id in sorted(set(grid_ids)):
        session.add(UserGrid(user_id=user.id, grid_id=grid_id))
    audit.enqueue(session, actor=actor, role=Role.ADMIN.value, action="user_created", subject=f"user:{user.id}",
                  data={"username": username, "role": role.value, "unit_id": unit_id, "grids": sorted(set(grid_ids))})
    return user


def set_password(session: Session, *, username: str, password: str, actor: str, now: datetime) -> User:
    """Set a user's password and revoke all their sessions and tokens; return the user.
    Raises ``NotFound`` (no such user) or ``FieldError`` (weak password). Audited."""
    user = get_user(session, username)
    check_password_strength(password)
    user.password_hash = hash_password(password)
    session.execute(update(AuthToken).where(AuthToken.user_id == user.id, AuthToken.revoked_at.is_(None))
                    .values(revoked_at=now))
    audit.enqueue(session, actor=actor, role=Role.ADMIN.value, action="password_set", subject=f"user:{user.id}",
                  data={"username": username})
    return user


def get_user(session: Session, username: str) -> User:
    """Return the user called ``username``; raises ``NotFound``."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound("User", username)
    return user


def grid_ids_of(session: Session, user_id: int) -> tuple[int, ...]:
    """Return the ids of the grids a user covers, ascending."""
    return tuple(session.scalars(select(UserGrid.grid_id).where(UserGrid.user_id == user_id)
                                 .order_by(UserGrid.grid_id)))


def set_grids(session: Session, *, username: str, grid_ids: list[int], actor: str) -> User:
    """Replace the grids a user covers; return the user. Audited."""
    user = get_user(session, username)
    session.execute(delete(UserGrid).where(UserGrid.user_id == user.id))
    for grid_id in sorted(set(grid_ids)):
        session.add(UserGrid(user_id=user.id, grid_id=grid_id))
    audit.enqueue(session, actor=actor, role=Role.ADMIN.value, action="user_grids_set", subject=f"user:{user.id}",
                  data={"grids": sorted(set(grid_ids))})
    return user


def authenticate(session: Session, *, username: str, password: str, now: datetime) -> User:
    """Return the active user whose password matches; raises ``Unauthenticated`` otherwise (the same
    answer, and about the same time, whether the user is unknown, inactive or the password wrong).
    Re-hashes the password when the hasher's parameters have changed since it was stored."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        try:
            _HASHER.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        raise Unauthenticated("login_failed")
    try:
        _HASHER.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        raise Unauthenticated("login_failed") from None
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = now
    return user


def issue_token(
    session: Session, *, user: User, kind: str, now: datetime, hours: float | None, name: str = "",
) -> tuple[str, AuthToken]:
    """Make a session (``kind="session"``) or API token (``kind="api"``) for ``user``, valid for
    ``hours`` (``None``: until revoked). Returns ``(secret, row)``: the secret is shown once and
    never stored. Audited as ``login`` or ``token_created`` (the token's id, not its secret)."""
    secret = secrets.token_urlsafe(32)
    row = AuthToken(user_id=user.id, kind=kind, name=name[:100], token_hash=_token_hash(secret),
                    csrf_token=secrets.token_urlsafe(24) if kind == SESSION else "", created_at=now,
                    expires_at=now + timedelta(hours=hours) if hours else None)
    session.add(row)
    session.flush()
    audit.enqueue(session, actor=user.username, role=user.role, action="login" if kind == SESSION else "token_created",
                  subject=f"user:{user.id}", data={"token": row.id, "kind": kind})
    return secret, row


def revoke_token(session: Session, *, token_id: int, user: Principal | None, now: datetime, actor: str) -> None:
    """Revoke a token or session (its owner, or an admin when ``user`` is an admin). Raises
    ``NotFound`` when it does not exist or belongs to someone else. Audited as ``logout``/``token_revoked``."""
    row = session.get(AuthToken, token_id)
    if row is None or (user is not None and user.role != Role.ADMIN and row.user_id != user.user_id):
        raise NotFound("AuthToken", token_id)
    if row.revoked_at is None:
        row.revoked_at = now
        audit.enqueue(session, actor=actor, role=user.role.value if user else Role.ADMIN.value,
                      action="logout" if row.kind == SESSION else "token_revoked", subject=f"user:{row.user_id}",
                      data={"token": row.id, "kind": row.kind})


def principal_for(session: Session, secret: str, *, kind: str, now: datetime) -> Principal | None:
    """Return the principal of a live (unexpired, unrevoked, active user) token of ``kind``, or
    ``None``. Marks the token used at most once a minute (so reads do not write on every call)."""
    if not secret or len(secret) > 200:
        return None
    # one query for the token, its user and their grids, as columns: loading the token and the user as
    # objects and the grids apart was three round trips and a tenth of a request's CPU (issue 9)
    rows = session.execute(
        select(AuthToken.id, AuthToken.revoked_at, AuthToken.expires_at, AuthToken.last_used_at, AuthToken.csrf_token,
               User.id, User.username, User.display_name, User.role, User.unit_id, User.active, UserGrid.grid_id)
        .join(User, User.id == AuthToken.user_id).outerjoin(UserGrid, UserGrid.user_id == User.id)
        .where(AuthToken.token_hash == _token_hash(secret), AuthToken.kind == kind)).all()
    if not rows:
        return None
    token_id, revoked_at, expires_at, last_used_at, csrf_token, user_id, username, display_name, role, unit_id, \
        active, _ = rows[0]
    if revoked_at is not None or (expires_at is not None and expires_at <= now) or not active:
        return None
    if last_used_at is None or now - last_used_at > timedelta(minutes=1):
        session.execute(update(AuthToken).where(AuthToken.id == token_id).values(last_used_at=now))
    grids = tuple(sorted(row[-1] for row in rows if row[-1] is not None))
    return Principal(user_id=user_id, username=username, display_name=display_name, role=Role(role),
                     unit_id=unit_id, grid_ids=grids, csrf_token=csrf_token, via=kind, token_id=token_id)


def csrf_matches(expected: str, given: str | None) -> bool:
    """Compare a form's or header's CSRF token with the session's in constant time."""
    return bool(expected) and given is not None and hmac.compare_digest(expected.encode(), given.encode())
