"""``civicloop privacy``: keys of the citizens' personal data, key rotation, erasure after retention."""

from __future__ import annotations

import typer
from rich.console import Console

from civicloop.core.db import session_scope
from civicloop.core.settings import get_settings
from civicloop.core.timeutil import utcnow

app = typer.Typer(help="个人信息 Personal data: keys, rotation, erasure (PIPL).", no_args_is_help=True)
console = Console()


@app.command("new-key")
def new_key() -> None:
    """生成密钥 Print a fresh data key (put it first in CIVICLOOP_DATA_KEYS, then run rotate)."""
    from civicloop.core.crypto import new_key as make

    typer.echo(make())


@app.command("rotate")
def rotate() -> None:
    """轮换密钥 Re-encrypt every stored contact under the first key of CIVICLOOP_DATA_KEYS."""
    from civicloop.requests.privacy import rotate_keys

    with session_scope() as session:
        done = rotate_keys(session)
    console.print(f"重新加密 re-encrypted: {done} requests", highlight=False)


@app.command("erase")
def erase() -> None:
    """到期删除 Erase the contact of requests closed longer ago than the retention period."""
    from civicloop.requests.privacy import erase_expired

    settings = get_settings()
    with session_scope() as session:
        ids = erase_expired(session, settings=settings, now=utcnow())
    console.print(f"联系方式已删除 contacts erased: {len(ids)} (retention {settings.contact_retention_days} days)",
                  highlight=False)
