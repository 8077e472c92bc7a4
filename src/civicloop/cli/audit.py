"""``civicloop audit``: verify the tamper-evident audit log and export the day's last hash."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Annotated

import typer

from civicloop.core import audit
from civicloop.core.db import session_scope
from civicloop.core.i18n import translate

app = typer.Typer(help="审计日志 The tamper-evident audit log (hash chain).", no_args_is_help=True)

ANCHOR = re.compile(r"^([1-9][0-9]{0,17}):([0-9a-f]{64})$")


def _anchors(values: list[str]) -> dict[int, str]:
    anchors = {}
    for value in values:
        match = ANCHOR.match(value.strip().lower())
        if match is None:
            raise typer.BadParameter(f"{value!r}: 应为 SEQ:HASH（64 位十六进制） must be SEQ:HASH (64 hex digits)",
                                     param_hint="--anchor")
        anchors[int(match.group(1))] = match.group(2)
    return anchors


@app.command("verify")
def verify(
    anchor: Annotated[list[str] | None, typer.Option(
        help="a published head SEQ:HASH (from `audit export`) that must still be in the chain; repeatable")] = None,
) -> None:
    """校验 Re-compute the hash chain. Exit 0 when intact; exit 1 naming the first bad entry (edited,
    deleted, inserted, reordered), in Chinese and English."""
    anchors = _anchors(anchor or [])
    with session_scope() as session:
        result = audit.verify(session, anchors=anchors)
    if result.ok:
        for lang in ("zh", "en"):
            typer.echo(translate("audit.ok", lang, checked=result.checked, seq=result.last_seq or 0))
        typer.echo(json.dumps({"ok": True, "checked": result.checked, "last_seq": result.last_seq,
                               "last_hash": result.last_hash}))
        return
    for lang in ("zh", "en"):
        typer.echo(translate(f"audit.{result.problem}", lang, seq=result.first_bad_seq, detail=result.detail), err=True)
    typer.echo(json.dumps({"ok": False, "checked": result.checked, "first_bad_seq": result.first_bad_seq,
                           "problem": result.problem, "detail": result.detail}))
    raise typer.Exit(1)


@app.command("export")
def export(day: Annotated[str, typer.Option(help="local date (Asia/Shanghai), YYYY-MM-DD")]) -> None:
    """导出 Print the day's entry count and last hash as JSON, for publication. Give the printed
    ``last_seq:last_hash`` back to ``audit verify --anchor`` later."""
    try:
        which = date.fromisoformat(day)
    except ValueError as exc:
        raise typer.BadParameter(f"{day!r} 不是有效日期 is not a valid date (YYYY-MM-DD)", param_hint="--day") from exc
    with session_scope() as session:
        found = audit.day_hash(session, day=which)
    typer.echo(json.dumps(found.as_dict()))
