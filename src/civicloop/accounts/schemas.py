"""API shapes of accounts. Passwords go in, never out; a token's secret is returned once."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from civicloop.core.auth import USERNAME_PATTERN
from civicloop.core.models import User
from civicloop.core.roles import Role
from civicloop.core.validation import Id

Username = Annotated[str, Field(min_length=2, max_length=64, pattern=USERNAME_PATTERN)]
Password = Annotated[str, Field(min_length=1, max_length=200)]


class LoginIn(BaseModel):
    """A user name and password, and for an API token optionally its name and lifetime in hours."""

    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Password
    name: Annotated[str, Field(max_length=100)] = ""
    hours: Annotated[float, Field(gt=0, le=24 * 366)] | None = None


class TokenOut(BaseModel):
    """A new API token: send ``Authorization: Bearer <token>``. Shown once; only its hash is kept."""

    token: str
    token_id: int
    username: str
    role: Role
    unit_id: int | None
    expires_at: datetime | None


class MeOut(BaseModel):
    """The caller as the server sees them."""

    username: str
    display_name: str
    role: Role
    unit_id: int | None
    grid_ids: list[int]
    via: str


class UserIn(BaseModel):
    """A new user (admin). ``unit_id``: a handler's unit, a supervisor's district or street (none:
    city-wide); ``grid_ids``: the grids a grid worker covers."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    password: Annotated[str, Field(min_length=8, max_length=200)]
    role: Role
    unit_id: Id | None = None
    grid_ids: Annotated[list[Id], Field(max_length=500)] = []  # type: ignore[valid-type]
    display_name: Annotated[str, Field(max_length=100)] = ""


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: Role
    unit_id: int | None
    active: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, username=user.username, display_name=user.display_name, role=Role(user.role),
                   unit_id=user.unit_id, active=user.active, created_at=user.created_at,
                   last_login_at=user.last_login_at)
