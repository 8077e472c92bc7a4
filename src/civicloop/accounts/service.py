"""Use cases of accounts: create a user with a role that fits their unit and grids, list users,
log in (a web session or an API token), log out. The caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloop.core import auth
from civicloop.core.errors import FieldError
from civicloop.core.models import User
from civicloop.core.roles import Role
from civicloop.core.settings import Settings
from civicloop.org import service as org

# roles whose scope is a unit: they cannot work without one (core.auth, requests.scope)
NEEDS_UNIT = frozenset({Role.HANDLER})


def create_user(
    session: Session, *, username: str, password: str, role: Role, unit_id: int | None = None,
    grid_ids: Sequence[int] = (), display_name: str = "", actor: str, now: datetime,
) -> User:
    """Create a user after checking their unit and grids exist; return it (flushed).

    A handler needs a unit (``user_unit_required``); a grid worker's ``grid_ids`` must exist;
    the system role cannot log in. Raises ``FieldError`` (422) on ``username``, ``password``,
    ``role``, ``unit_id`` or ``grid_ids``."""
    if role == Role.SYSTEM:
        raise FieldError("role", "v.enum", expected=", ".join(r.value for r in Role if r != Role.SYSTEM))
    if role in NEEDS_UNIT and unit_id is None:
        raise FieldError("unit_id", "user_unit_required", role=role.value)
    if unit_id is not None:
        org.require_unit(session, unit_id=unit_id, field="unit_id")
    for grid_id in grid_ids:
        org.get_grid(session, grid_id=grid_id, field="grid_ids")
    return auth.create_user(session, username=username, password=password, role=role, unit_id=unit_id,
                            display_name=display_name, grid_ids=tuple(grid_ids), actor=actor, now=now)


def list_users(session: Session) -> Sequence[User]:
    """Return every user by user name."""
    return session.scalars(select(User).order_by(User.username)).all()


def login(
    session: Session, *, username: str, password: str, kind: str, settings: Settings, now: datetime,
    name: str = "", hours: float | None = None,
) -> tuple[str, auth.Principal]:
    """Check the password and open a web session (``kind="session"``, valid ``settings.session_hours``)
    or make an API token (``kind="api"``, valid ``hours``, or until revoked). Returns the secret
    (shown once) and the principal. Raises ``auth.Unauthenticated`` (401) on a bad login."""
    user = auth.authenticate(session, username=username, password=password, now=now)
    secret, _ = auth.issue_token(session, user=user, kind=kind, now=now, name=name,
                                 hours=settings.session_hours if kind == auth.SESSION else hours)
    principal = auth.principal_for(session, secret, kind=kind, now=now)
    assert principal is not None  # just issued for an active user
    return secret, principal
