"""The ``civicloop`` command: set up, serve, run periodic jobs, export the ledger, rank units."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from civicloop.cli.analyze import analyze
from civicloop.cli.audit import app as audit_app
from civicloop.cli.calendar import app as calendar_app
from civicloop.cli.demo import demo
from civicloop.cli.generate import generate
from civicloop.cli.importer import app as import_app
from civicloop.cli.intake import app as intake_app
from civicloop.cli.model import app as model_app
from civicloop.cli.model import classify
from civicloop.cli.open311 import app as open311_app
from civicloop.cli.privacy import app as privacy_app
from civicloop.cli.user import app as user_app
from civicloop.core.db import session_scope
from civicloop.core.errors import CivicloopError
from civicloop.core.i18n import translate
from civicloop.core.settings import get_settings

app = typer.Typer(help="civicloop：接诉即办 the closed loop of citizen requests.", no_args_is_help=True)
ledger_app = typer.Typer(help="台账 The ledger of all requests.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
app.add_typer(calendar_app, name="calendar")
app.add_typer(audit_app, name="audit")
app.add_typer(user_app, name="user")
app.add_typer(privacy_app, name="privacy")
app.add_typer(import_app, name="import")
app.add_typer(model_app, name="model")
app.add_typer(intake_app, name="intake")
app.add_typer(open311_app, name="open311")
app.command(help="分类 Classify one request's text (prints JSON).")(classify)
app.command(help="分析 未诉先办: hotspots, surges, co-occurrence, asset alerts, reply quality.")(analyze)
app.command(help="生成模拟数据 Generate a city and N requests (bulk; --parquet for analytics).")(generate)
app.command(help="运行演示 Run the main job end to end on the embedded SQLite default.")(demo)
console = Console(width=max(Console().width, 100))


def shared_categories() -> Path | None:
    """Return the shared data's category tree (``$CIVICLOOP_SHARED_DATA/teddy2020c/categories.csv``,
    else ``../shared/data/...`` beside the checkout), or ``None`` when absent."""
    roots = [os.environ.get("CIVICLOOP_SHARED_DATA"), str(Path.cwd().parent / "shared" / "data")]
    for root in filter(None, roots):
        path = Path(root) / "teddy2020c" / "categories.csv"
        if path.is_file():
            return path
    return None


def fail(error: CivicloopError) -> None:
    """Print a domain error in the configured language and exit with status 2."""
    lang = get_settings().default_language
    console.print(f"[red]{translate(error.code, lang, **error.params)}[/red]")
    raise typer.Exit(2)


@app.command()
def init(
    categories: Annotated[Path | None, typer.Option(help="CSV with level1,level2,level3 columns")] = None,
    sample_city: Annotated[bool, typer.Option(help="create the sample city's units and grids")] = True,
) -> None:
    """初始化 Build the schema (Alembic migrations) and seed units, grids and the category tree."""
    from civicloop.catalog.service import BUILTIN_TREE, load_tree
    from civicloop.core.migrate import upgrade
    from civicloop.importers.sample_city import build, build_routes

    settings = get_settings()
    upgrade(settings.database_url)
    tree = categories or shared_categories() or BUILTIN_TREE
    with session_scope() as session:
        city = build(session) if sample_city else None
        created = load_tree(session, csv_path=tree)
        rules = build_routes(session) if sample_city else 0
    console.print(f"数据库 database: {settings.database_url}")
    if city:
        console.print(f"承办单位 units: +{city.units} new  网格 grids: +{city.grids} new")
    console.print(f"诉求分类 categories: +{created} new, from {tree}")
    if rules:
        console.print(f"分拨规则 routing rules: +{rules} new")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="web worker processes")] = 1,
) -> None:
    """启动服务 Serve the API (OpenAPI docs at /docs). With ``--workers`` > 1 the listening socket is
    bound here (:func:`listening_socket`) and shared by the worker processes."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    console.print(f"civicloop on http://{host}:{port}  (API /api/v1, docs /docs)")
    if workers == 1:
        uvicorn.run("civicloop.app:create_app", factory=True, host=host, port=port, log_level="info")
        return
    config = uvicorn.Config("civicloop.app:create_app", factory=True, host=host, port=port, workers=workers,
                            log_level="info")
    try:
        Multiprocess(config, sockets=[listening_socket(host, port)]).run()
    except KeyboardInterrupt:
        pass


def listening_socket(host: str, port: int) -> socket.socket:
    """Return a TCP socket bound to ``host``:``port`` for uvicorn's worker processes (inheritable).

    Created with ``IPPROTO_TCP`` explicitly: uvicorn's own (``Config.bind_socket``, protocol 0) makes
    asyncio skip ``TCP_NODELAY`` on the connections it accepts, so every keep-alive answer waited for
    the client's delayed ACK: about 40 ms per request with ``--workers 2`` against 1 ms with one
    worker (uvicorn issue 3149; measured in docs/benchmarks.md). Raises ``typer.BadParameter`` when the
    address cannot be bound (in use, or not this machine's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise typer.BadParameter(f"cannot listen on {host}:{port}: {exc.strerror}", param_hint="--port") from None
    sock.set_inheritable(True)
    return sock


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="run one round and exit")] = False,
    interval: Annotated[int | None, typer.Option(min=1, help="seconds between rounds")] = None,
) -> None:
    """定时任务 Run periodic jobs: mark overdue orders and open supervision (督办); erase the contact
    of requests closed longer ago than the retention period; with ``triage_mode = "deferred"``, triage
    what waits in the deferred intake queue (left by a stopped server; normally the servers' runners
    take it within a second)."""
    from civicloop.core.timeutil import utcnow
    from civicloop.requests import triage_queue
    from civicloop.requests.jobs import mark_overdue
    from civicloop.requests.privacy import erase_expired

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    pause = interval or settings.worker_interval_seconds
    while True:
        triaged = triage_queue.drain(settings) if settings.triage_mode == "deferred" else 0
        with session_scope() as session:
            report = mark_overdue(session, settings=settings)
            erased = erase_expired(session, settings=settings, now=utcnow())
        console.print(f"超期 overdue marked: {len(report.marked)}  临时期限 provisional: {report.provisional_open}  "
                      f"联系方式到期删除 contacts erased: {len(erased)}  待分拨 deferred intake: {triaged}")
        if once:
            return
        time.sleep(pause)


@ledger_app.command("export")
def ledger_export(
    out: Annotated[Path, typer.Option(help="file to write: .xlsx or .csv")],
    start: Annotated[str | None, typer.Option(help="from this local date, YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="up to this local date, YYYY-MM-DD")] = None,
    unit: Annotated[int | None, typer.Option(help="lead unit id")] = None,
    street: Annotated[int | None, typer.Option(help="street id")] = None,
    category: Annotated[int | None, typer.Option(help="category id")] = None,
    status: Annotated[str | None, typer.Option(help="request status")] = None,
    lang: Annotated[str, typer.Option(help="zh or en")] = "zh",
) -> None:
    """导出台账 Export the ledger as .xlsx or .csv."""
    from civicloop.requests.ledger import LedgerFilter, ledger_rows, write_csv, write_xlsx
    from civicloop.requests.models import RequestStatus

    def day(option: str, text: str | None) -> date | None:
        try:
            return date.fromisoformat(text) if text else None
        except ValueError as exc:
            raise typer.BadParameter(f"{text!r} 不是有效日期 is not a valid date (YYYY-MM-DD)",
                                     param_hint=option) from exc

    if status is not None and status not in {s.value for s in RequestStatus}:
        raise typer.BadParameter(f"one of {', '.join(s.value for s in RequestStatus)}", param_hint="--status")
    filters = LedgerFilter(
        start=day("--start", start), end=day("--end", end), unit_id=unit, street_id=street, category_id=category,
        status=RequestStatus(status) if status else None,
    )
    if out.suffix.lower() not in (".xlsx", ".csv"):
        raise typer.BadParameter("须以 .xlsx 或 .csv 结尾 must end in .xlsx or .csv", param_hint="--out")
    settings = get_settings()
    with session_scope() as session:
        rows = ledger_rows(session, filters=filters, settings=settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".xlsx":
        write_xlsx(rows, out, lang=lang)
    else:
        with out.open("w", encoding="utf-8-sig", newline="") as handle:
            write_csv(rows, handle, lang=lang)
    console.print(f"台账 ledger: {len(rows)} rows → {out}")


@app.command()
def metrics(
    month: Annotated[str, typer.Option(help="YYYY-MM")],
    level: Annotated[str, typer.Option(help="unit or street")] = "unit",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    min_cases: Annotated[int, typer.Option(min=1, help="cases (due + called back) needed to be ranked")] = 5,
) -> None:
    """三率排名 Rank units (or streets) by response, resolution and satisfaction rates."""
    from civicloop.analytics.metrics import three_rates

    if level not in ("unit", "street"):
        console.print("[red]--level must be unit or street[/red]")
        raise typer.Exit(2)
    settings = get_settings()
    try:
        with session_scope() as session:
            rows = three_rates(session, month=month, level=level, settings=settings,  # type: ignore[arg-type]
                               min_cases=min_cases)
    except CivicloopError as error:
        fail(error)
        return
    if as_json:
        typer.echo(json.dumps([row.__dict__ for row in rows], ensure_ascii=False, default=str, indent=2))
        return
    print_rates(rows, title=f"{month} 三率排名 ({'承办单位' if level == 'unit' else '街道'})")


def print_rates(rows: list, title: str) -> None:  # type: ignore[type-arg]
    """Print a ranking as a Rich table (rates as percentages, '—' when undefined)."""

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value * 100:.1f}%"

    table = Table(title=title)
    for header in ("名次", "单位", "应响应", "响应率", "回访", "解决率", "满意率", "综合得分"):
        if header == "单位":
            table.add_column(header, no_wrap=True, min_width=12)
        else:
            table.add_column(header, justify="right")
    for row in rows:
        rank = "样本不足" if row.rank is None else str(row.rank)
        table.add_row(rank, row.unit_name, str(row.due), pct(row.response_rate), str(row.called_back),
                      pct(row.resolution_rate), pct(row.satisfaction_rate),
                      "—" if row.composite is None else f"{row.composite * 100:.1f}")
    console.print(table)


__all__ = ["app"]
