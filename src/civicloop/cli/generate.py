"""``civicloop generate``: a synthetic city and N requests, in bulk, into the database or Parquet.

See ``civicloop.importers.generator`` for what is generated and how, and docs/generator.md for the
measured speed.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(width=max(Console().width, 100))


def default_manifest(url: str) -> Path:
    """Where the manifest of a database run goes: beside a SQLite file (``x.db`` →
    ``x.generate.json``), else ``generate-manifest.json`` in the current folder."""
    if url.startswith("sqlite") and ":memory:" not in url and "///" in url:
        path = Path(url.split("///", 1)[1].split("?", 1)[0])
        return path.with_name(path.stem + ".generate.json")
    return Path("generate-manifest.json")


def _summary(manifest: dict[str, Any], seconds: float, manifest_path: Path) -> None:
    counts = manifest["counts"]
    console.print(f"生成 generated {manifest['requests']:,} 件诉求 requests in {seconds:.1f} s → {manifest['output']}")
    table = Table()
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("requests_closed", "requests_replied", "requests_in_progress", "requests_dispatched",
                "requests_accepted", "requests_submitted", "requests_rejected", "work_orders", "returned_orders",
                "reopened_orders", "overdue_orders", "supervisions"):
        table.add_row(key, f"{counts.get(key, 0):,}")
    console.print(table)
    for spot in manifest["hotspots"]:
        console.print(f"热点 hotspot {spot['id']}: {spot['count']} × {spot['category_path']} at {spot['address']} "
                      f"({spot['window_start'][:10]} – {spot['window_end'][:10]})")
    for surge in manifest["surges"]:
        console.print(f"高频 surge {surge['id']}: {surge['planted']} × {surge['category_path']} in grid "
                      f"{surge['grid_id']} in {surge['month']} (baseline ≈ {surge['expected_baseline']})")
    console.print(f"清单 manifest → {manifest_path}")


def generate(
    requests: Annotated[int, typer.Option("--requests", min=1, help="how many service requests to generate")],
    seed: Annotated[int, typer.Option("--seed", help="random seed: the same seed gives the same rows")],
    start: Annotated[str, typer.Option(help="first local day of the span, YYYY-MM-DD")] = "2024-01-01",
    months: Annotated[int, typer.Option(min=1, max=240, help="length of the span in calendar months")] = 24,
    parquet: Annotated[Path | None, typer.Option(help="write Parquet files to this folder instead of the "
                                                      "database")] = None,
    append: Annotated[bool, typer.Option("--append", help="add to a database that already holds "
                                                          "requests")] = False,
    manifest: Annotated[Path | None, typer.Option(help="where to write the manifest JSON (default: beside the "
                                                       "output)")] = None,
) -> None:
    """生成模拟数据 Generate a synthetic city and N requests (bulk; 10⁶ in about two minutes).

    Writes to the configured database (CIVICLOOP_DATABASE_URL) after running the migrations, or
    with ``--parquet DIR`` to Parquet files only. Exits 2 for a malformed ``--start`` or when the
    database already holds requests and ``--append`` was not given.
    """
    from civicloop.core.db import make_engine
    from civicloop.core.migrate import upgrade
    from civicloop.core.settings import get_settings
    from civicloop.importers.generator import DatabaseNotEmpty, generate_to_database, generate_to_parquet

    try:
        first = date.fromisoformat(start)
    except ValueError as exc:
        console.print(f"[red]--start must be YYYY-MM-DD: {start!r}[/red]")
        raise typer.Exit(2) from exc
    settings = get_settings()
    began = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("生成诉求 generating", total=requests)

        def advance(rows: int) -> None:
            """Move the bar by the ``rows`` requests of a chunk just made."""
            progress.advance(task, rows)

        if parquet is not None:
            result = generate_to_parquet(parquet, requests=requests, seed=seed, settings=settings, start=first,
                                         months=months, on_progress=advance)
            path = parquet / "manifest.json"
            if manifest is not None:
                from civicloop.importers.generator import write_manifest

                write_manifest(result, manifest)
                path = manifest
        else:
            url = settings.database_url
            upgrade(url)
            engine = make_engine(url)
            path = manifest or default_manifest(url)
            try:
                result = generate_to_database(engine, requests=requests, seed=seed, settings=settings, start=first,
                                              months=months, append=append, manifest_path=path,
                                              on_progress=advance)
            except DatabaseNotEmpty as exc:
                progress.stop()
                console.print(f"[red]{exc}[/red]")
                raise typer.Exit(2) from exc
            finally:
                engine.dispose()
    _summary(result, time.perf_counter() - began, path)
