"""``civicloop user``: create users, list them, set a password, make an API token.

Passwords are read from ``--password``, else from ``CIVICLOOP_PASSWORD``, else asked for twice
without echo; with no terminal and none given, a random one is made and printed once."""

from __future__ import annotations

import os
import secrets
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from civicloop.accounts import service
from civicloop.core import auth
from civicloop.core.db import session_scope
from civicloop.core.errors import CivicloopError, FieldError
from civicloop.core.i18n import translate
from civicloop.core.roles import Role
from civicloop.core.settings import get_settings
from civicloop.core.timeutil import utcnow
from civicloop.org import service as org

app = typer.Typer(help="用户与登录 Users, passwords and API tokens.", no_args_is_help=True)
console = Console()
ROLES = [r.value for r in Role if r != Role.SYSTEM]


def _fail(error: CivicloopError) -> None:
    lang = get_settings().default_language
    where = f"{'.'.join(error.field)}: " if isinstance(error, FieldError) else ""
    console.print(f"[red]{where}{translate(error.code, lang, **error.params)}[/red]", highlight=False)
    raise typer.Exit(2) from error


def _password(given: str | None) -> tuple[str, bool]:
    """Return (password, generated?)."""
    if given:
        return given, False
    if os.environ.get("CIVICLOOP_PASSWORD"):
        return os.environ["CIVICLOOP_PASSWORD"], False
    if sys.stdin.isatty():
        return typer.prompt("Password / 密码", hide_input=True, confirmation_prompt=True), False
    return secrets.token_urlsafe(12), True


@app.command("create")
def create(
    username: Annotated[str, typer.Argument(help="login name: 2–64 letters, digits, _.@-")],
    role: Annotated[str, typer.Option(help=f"one of {', '.join(ROLES)}")],
    unit: Annotated[str | None, typer.Option(help="the unit's code or id (a handler's unit, a supervisor's "
                                                  "district or street)")] = None,
    grid: Annotated[list[int] | None, typer.Option(help="a grid a grid worker covers (repeat)")] = None,
    name: Annotated[str, typer.Option(help="display name")] = "",
    password: Annotated[str | None, typer.Option(help="the password (else $CIVICLOOP_PASSWORD, else asked)")] = None,
) -> None:
    """新建用户 Create a user with a role, and a unit or grids where the role needs them."""
    if role not in ROLES:
        console.print(f"[red]--role: {translate('v.enum', get_settings().default_language, expected=', '.join(ROLES))}"
                      "[/red]", highlight=False)
        raise typer.Exit(2)
    secret, generated = _password(password)
    try:
        with session_scope() as session:
            unit_id = org.unit_by_code_or_id(session, unit, field="unit").id if unit else None
            user = service.create_user(session, username=username, password=secret, role=Role(role),
                                       unit_id=unit_id, grid_ids=grid or [], display_name=name, actor="cli",
                                       now=utcnow())
            summary = f"user {user.username} ({user.role}{f', unit {unit}' if unit else ''}) created"
    except CivicloopError as error:
        _fail(error)
        return
    console.print(summary, highlight=False)
    if generated:
        console.print("generated password (shown once):", highlight=False)
        typer.echo(secret)


@app.command("list")
def list_users() -> None:
    """用户列表 List users (never their passwords)."""
    table = Table(title="users / 用户")
    for header in ("username", "role", "unit", "active", "last login"):
        table.add_column(header)
    with session_scope() as session:
        for user in service.list_users(session):
            last = user.last_login_at.isoformat(timespec="seconds") if user.last_login_at else ""
            table.add_row(user.username, user.role, str(user.unit_id or ""), "yes" if user.active else "no", last)
    console.print(table)


@app.command("password")
def set_password(
    username: str,
    password: Annotated[str | None, typer.Option(help="the new password (else $CIVICLOOP_PASSWORD, else asked)")]
    = None,
) -> None:
    """设置密码 Set a user's password; their sessions and tokens end."""
    secret, generated = _password(password)
    try:
        with session_scope() as session:
            auth.set_password(session, username=username, password=secret, actor="cli", now=utcnow())
    except CivicloopError as error:
        _fail(error)
        return
    console.print(f"password of {username} set", highlight=False)
    if generated:
        typer.echo(secret)


@app.command("token")
def make_token(
    username: str,
    name: Annotated[str, typer.Option(help="what the token is for")] = "cli",
    hours: Annotated[float | None, typer.Option(help="lifetime in hours (default: until revoked)")] = None,
) -> None:
    """新建令牌 Print a new API token for a user (send it as ``Authorization: Bearer``)."""
    try:
        with session_scope() as session:
            user = auth.get_user(session, username)
            secret, _ = auth.issue_token(session, user=user, kind=auth.API, now=utcnow(), hours=hours, name=name)
    except CivicloopError as error:
        _fail(error)
        return
    typer.echo(secret)
