"""``civicloop calendar``: show the official years and enter a new year's holiday schedule."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from civicloop.core.calendar_service import DayEntry, enter_year, known_years
from civicloop.core.db import session_scope
from civicloop.core.errors import CivicloopError
from civicloop.core.i18n import translate
from civicloop.core.settings import get_settings

app = typer.Typer(help="工作日历 The working-day calendar (holidays, adjusted working days).", no_args_is_help=True)
console = Console()

TRUE = {"1", "true", "yes", "y", "上班", "工作日", "work", "working"}
FALSE = {"0", "false", "no", "n", "休", "休息", "放假", "holiday", "off"}


def read_days(path: Path) -> list[DayEntry]:
    """Read a schedule CSV with columns ``date`` (YYYY-MM-DD), ``working`` (1/0, true/false, 上班/放假)
    and an optional ``name``. Raises ``typer.BadParameter`` naming the line of a bad row."""
    entries = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                day = date.fromisoformat((row.get("date") or "").strip())
            except ValueError as exc:
                raise typer.BadParameter(f"line {line}: date must be YYYY-MM-DD") from exc
            flag = (row.get("working") or "").strip().lower()
            if flag not in TRUE | FALSE:
                raise typer.BadParameter(f"line {line}: working must be 1/0, true/false, 上班/放假")
            entries.append(DayEntry(day=day, working=flag in TRUE, name=(row.get("name") or "").strip()))
    return entries


@app.command("set-year")
def set_year(
    year: Annotated[int, typer.Argument(min=2000, max=2100)],
    file: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="CSV: date,working,name")],
    source: Annotated[str, typer.Option(help="where the schedule comes from (the State Council notice)")] = "",
) -> None:
    """录入年度节假日 Enter a year's official schedule, then recompute provisional deadlines."""
    from civicloop.requests.jobs import refresh_deadlines

    settings = get_settings()
    days = read_days(file)
    try:
        with session_scope() as session:
            enter_year(session, year=year, days=days, source=source, actor="cli")
            touched = refresh_deadlines(session, settings=settings)
    except CivicloopError as error:
        console.print(f"[red]{translate(error.code, settings.default_language, **error.params)}[/red]")
        raise typer.Exit(2) from error
    console.print(f"{year}: {len(days)} days entered; {len(touched)} provisional deadlines recomputed")


@app.command("show")
def show() -> None:
    """查看 Show the years with an official schedule and the orders with provisional deadlines."""
    from civicloop.requests.jobs import provisional_orders

    with session_scope() as session:
        years = known_years(session)
        pending = provisional_orders(session)
    lib = years["library"]
    console.print(f"library years: {lib[0]}–{lib[-1]}; entered: {years['entered'] or 'none'}")
    if pending:
        console.print(f"[yellow]{len(pending)} open orders have provisional deadlines: enter the next year[/yellow]")
