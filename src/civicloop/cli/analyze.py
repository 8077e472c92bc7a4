"""``civicloop analyze``: run the finders of 未诉先办 and write the report."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from civicloop.analytics.report import AnalysisResults

console = Console()

STEP_WORDS = {"hotspot": "热点 hotspots", "surge": "激增 surges", "cooccurrence": "并发 co-occurrence",
              "asset": "设施 assets", "replies": "答复质量 reply quality", "topic": "每月一题 topic",
              "done": "完成 done"}


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected a date like 2026-07-01, got {value!r}", param_hint=option) from None


def analyze(
    out: Annotated[Path, typer.Option(help="folder for the CSVs, report.html and report.xlsx")],
    since: Annotated[str | None, typer.Option(help="first day (local), e.g. 2026-01-01")] = None,
    until: Annotated[str | None, typer.Option(help="day after the last (local), e.g. 2026-07-01")] = None,
    data: Annotated[Path | None, typer.Option(help="a Teddy Cup 2020 C CSV instead of the database")] = None,
    parquet: Annotated[Path | None, typer.Option(help="a folder of Parquet snapshots instead of the database")] = None,
    store: Annotated[bool, typer.Option(help="keep the findings for the API (database source only)")] = True,
    memory_limit: Annotated[str, typer.Option(help="memory DuckDB may hold (e.g. 2GB); beyond it, it works on "
                                                   "disk in a temporary folder")] = "1GB",
    snapshot: Annotated[bool, typer.Option("--snapshot", help="first refresh the dashboards' Parquet snapshot "
                                                              "(database source only; docs/analytics.md)")] = False,
) -> None:
    """分析 Find hotspots, surges, co-occurring problems, repeated asset failures and reply quality (未诉先办).

    Reads the configured database (``CIVICLOOP_DATABASE_URL``) through DuckDB, or ``--data`` /
    ``--parquet``; writes hotspots.csv, surges.csv, cooccurrence.csv, asset_alerts.csv,
    monthly_topics.csv, reply_quality.csv, reply_quality_units.csv, report.html and report.xlsx into
    ``--out``. With the database as source the findings are also kept (``--no-store`` to skip), so that
    analysts can accept them as work through the API. DuckDB keeps its tables in a temporary folder and
    at most ``--memory-limit`` in memory. ``--snapshot`` first rewrites the dashboards' snapshot
    (``analytics.dashboard.write_snapshot``, into ``CIVICLOOP_SNAPSHOT_DIR`` or beside a SQLite file);
    exits 2 when there is no place for one (PostgreSQL without ``CIVICLOOP_SNAPSHOT_DIR``)."""
    from civicloop.analytics.duck import AnalyticsUnavailable
    from civicloop.analytics.report import write_outputs
    from civicloop.analytics.run import analyze as run_analysis
    from civicloop.analytics.run import open_source
    from civicloop.core.settings import get_settings

    start, end = _date(since, "--since"), _date(until, "--until")
    if start and end and start >= end:
        raise typer.BadParameter("--since must be before --until", param_hint="--until")
    if data is not None and not data.is_file():
        raise typer.BadParameter(f"no such file: {data}", param_hint="--data")
    if parquet is not None and not parquet.is_dir():
        raise typer.BadParameter(f"no such folder: {parquet}", param_hint="--parquet")
    settings = get_settings()
    if snapshot:
        refresh_snapshot(settings.database_url)
    work = tempfile.TemporaryDirectory(prefix="civicloop-analyze-")
    try:
        conn, source = open_source(database_url=settings.database_url, teddy_file=data, parquet_dir=parquet,
                                   since=start, until=end, timezone=settings.timezone, work_dir=Path(work.name),
                                   memory_limit=memory_limit)
    except AnalyticsUnavailable as exc:
        console.print(f"[red]无法读取数据 cannot read the data: {exc}[/red]")
        raise typer.Exit(2) from None
    except UnicodeDecodeError:
        raise typer.BadParameter("the file is not UTF-8 text", param_hint="--data") from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from None
    except Exception as exc:  # duckdb.CatalogException and friends: the tables are not there
        console.print(f"[red]无法读取数据 cannot read the data: {exc}. 先运行 run `civicloop init`?[/red]")
        raise typer.Exit(2) from None
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("分析 analysing", total=6)

        def progress(step: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"分析 {STEP_WORDS.get(step, step)}")

        try:
            results = run_analysis(conn, source=source, since=start, until=end, progress=progress)
        finally:
            conn.close()
            work.cleanup()
    try:
        written = write_outputs(out, results)
    except OSError as exc:
        raise typer.BadParameter(f"cannot write into {out}: {exc.strerror or exc}", param_hint="--out") from None
    if store and data is None and parquet is None:
        from civicloop.analytics.service import store_findings
        from civicloop.core.db import session_scope

        with session_scope() as session:
            counts = store_findings(session, results.all_findings(), settings=settings)
        console.print(f"发现已保存 findings kept: {counts['new']} new, {counts['refreshed']} refreshed, "
                      f"{counts['skipped']} already decided")
    print_summary(results)
    console.print(f"报告 report: {out / 'report.html'}  ({len(written)} files in {out})")


def refresh_snapshot(database_url: str) -> None:
    """Rewrite the dashboards' snapshot of ``database_url`` (``analytics.dashboard``) and say what it holds;
    exit 2 when the database has no snapshot folder or cannot be read."""
    from civicloop.analytics import dashboard
    from civicloop.analytics.duck import AnalyticsUnavailable

    folder = dashboard.snapshot_dir(database_url)
    if folder is None:
        console.print(f"[red]快照 snapshot: set {dashboard.SNAPSHOT_ENV} (a folder) for this database[/red]")
        raise typer.Exit(2)
    try:
        meta = dashboard.write_snapshot(database_url, folder)
    except AnalyticsUnavailable as exc:
        console.print(f"[red]无法读取数据 cannot read the data: {exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"快照 snapshot → {folder}: {meta['requests']:,} requests, {meta['work_orders']:,} work orders "
                  f"up to {meta['watermark']} ({meta['seconds']:.1f} s)")


def print_summary(results: AnalysisResults) -> None:
    """Print the number of findings per kind, the timings and the top five hotspots."""
    from civicloop.analytics.report import FILES, TITLES

    table = Table(title=f"未诉先办 {results.meta.get('rows', 0)} 件诉求 requests")
    table.add_column("")
    table.add_column("发现 found", justify="right")
    table.add_column("秒 s", justify="right")
    seconds = results.meta.get("seconds", {})
    for kind in FILES:
        table.add_row(TITLES[kind], str(len(results.findings.get(kind, []))), str(seconds.get(kind, "")))
    scored = results.reply_scores.num_rows if results.reply_scores is not None else 0
    table.add_row("答复质量 replies scored", str(scored), str(seconds.get("replies", "")))
    console.print(table)
    for finding in results.findings.get("hotspot", [])[:5]:
        console.print(f"  {finding.rank}. [{finding.score:.1f}] {finding.summary}（{finding.place or '—'}，"
                      f"{len(finding.request_ids)} 件）")
    for topic in results.findings.get("topic", []):
        console.print(f"[bold]{topic.summary}[/bold]")
