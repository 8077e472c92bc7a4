"""``civicloop open311``: manage the API keys of Open311 client applications."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from civicloop.core.db import session_scope
from civicloop.core.errors import CivicloopError
from civicloop.core.i18n import translate
from civicloop.core.settings import get_settings
from civicloop.open311 import keys

app = typer.Typer(help="Open311 GeoReport v2: API keys of client applications.", no_args_is_help=True)
console = Console()


def _fail(error: CivicloopError) -> None:
    console.print(f"[red]{translate(error.code, get_settings().default_language, **error.params)}[/red]")
    raise typer.Exit(2) from error


@app.command("add-key")
def add_key(name: Annotated[str, typer.Argument(help="the client application's name (unique)")]) -> None:
    """新增密钥 Create an API key for a client and print it once (only its hash is stored)."""
    try:
        with session_scope() as session:
            _, key = keys.create_key(session, name=name)
    except CivicloopError as error:
        _fail(error)
        return
    console.print(f"Open311 API key for {name} (shown once, keep it safe):", highlight=False)
    typer.echo(key)


@app.command("list-keys")
def list_keys() -> None:
    """查看密钥 List the clients' keys (names, prefixes, state; never the keys)."""
    table = Table(title="Open311 API keys")
    for header in ("name", "prefix", "active", "created", "revoked"):
        table.add_column(header)
    with session_scope() as session:
        for row in keys.list_keys(session):
            revoked = row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else ""
            table.add_row(row.name, row.prefix, "yes" if row.active else "no",
                          row.created_at.isoformat(timespec="seconds"), revoked)
    console.print(table)


@app.command("revoke-key")
def revoke_key(name: Annotated[str, typer.Argument(help="the client application's name")]) -> None:
    """停用密钥 Revoke a client's key: its POSTs answer 403 from then on."""
    try:
        with session_scope() as session:
            keys.revoke_key(session, name=name)
    except CivicloopError as error:
        _fail(error)
        return
    console.print(f"revoked: {name}")
