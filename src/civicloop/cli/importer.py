"""``civicloop import``: read public data sets into the loop, with a progress bar and a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from civicloop.core.db import session_scope
from civicloop.core.migrate import upgrade
from civicloop.core.settings import get_settings
from civicloop.importers.common import ImportSummary

app = typer.Typer(help="导入数据 Import public data sets.", no_args_is_help=True)
console = Console()


def print_summary(summary: ImportSummary, title: str) -> None:
    """Print what an import read, stored, left unchanged and skipped (with the first bad lines)."""
    table = Table(title=title)
    table.add_column("")
    table.add_column("", justify="right")
    for label, value in [("读取 rows read", summary.read), ("新增 requests stored", summary.stored),
                         ("已存在 already there", summary.unchanged), ("跳过 skipped", len(summary.skipped))]:
        table.add_row(label, str(value))
    for reason, count in sorted(summary.reasons().items()):
        table.add_row(f"  skipped: {reason}", str(count))
    for note, count in sorted(summary.notes.items()):
        table.add_row(note, str(count))
    console.print(table)
    for file, line, reason in summary.skipped[:10]:
        console.print(f"[yellow]{file}:{line}: {reason}[/yellow]")


@app.command("teddy2020c")
def teddy2020c(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="the teddy2020c folder")],
) -> None:
    """Import the Teddy Cup 2020 C messages and replay the replied ones (see importers/teddy.py)."""
    from civicloop.importers.teddy import import_teddy

    settings = get_settings()
    upgrade(settings.database_url)
    with Progress(console=console) as progress, session_scope() as session:
        task = progress.add_task("导入 importing teddy2020c", total=None)
        summary = import_teddy(session, folder=folder, settings=settings,
                               on_progress=lambda n: progress.advance(task, n),
                               on_total=lambda n: progress.update(task, total=n))
    print_summary(summary, "teddy2020c")


@app.command("nyc311")
def nyc311(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="an NYC 311 CSV")]) -> None:
    """Import NYC 311 service requests and replay the closed ones (see importers/nyc311.py)."""
    from civicloop.importers.nyc311 import import_nyc311

    settings = get_settings()
    upgrade(settings.database_url)
    with Progress(console=console) as progress, session_scope() as session:
        task = progress.add_task("importing NYC 311", total=None)
        summary = import_nyc311(session, path=file, settings=settings, on_progress=lambda n: progress.advance(task, n))
    print_summary(summary, file.name)
