"""``civicloop demo``: the main job end to end on a fresh embedded SQLite database.

Builds the schema, seeds the sample city and the category tree (the shared data's tree when it
is there), drives a month of synthetic requests through the whole loop, runs the overdue job,
ranks units and streets by the three rates, writes the ledger and the ranking to ``./out/`` and
serves the API on the same database (unless ``--no-serve``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

console = Console(width=max(Console().width, 100))


def demo(
    no_serve: Annotated[bool, typer.Option("--no-serve", help="stop after the reports (scripts, CI)")] = False,
    requests: Annotated[int, typer.Option(min=10, max=100_000, help="synthetic requests to simulate")] = 400,
    month: Annotated[str, typer.Option(help="month to simulate, YYYY-MM")] = "2026-10",
    out: Annotated[Path, typer.Option(help="folder for the reports and the demo database")] = Path("out"),
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Run the demo. Exits 2 on a malformed ``--month``."""
    from civicloop.analytics.metrics import parse_month, three_rates
    from civicloop.catalog.service import BUILTIN_TREE, load_tree
    from civicloop.cli.main import print_rates, shared_categories
    from civicloop.core.db import make_engine, session_scope
    from civicloop.core.errors import CivicloopError
    from civicloop.core.migrate import upgrade
    from civicloop.core.settings import get_settings
    from civicloop.importers.sample_city import build
    from civicloop.importers.simulate import simulate_month
    from civicloop.requests.ledger import LedgerFilter, ledger_rows, write_xlsx

    if no_serve is False and os.environ.get("CIVICLOOP_NO_SERVE") == "1":
        no_serve = True
    out.mkdir(parents=True, exist_ok=True)
    db_file = (out / "demo.db").resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{db_file}"
    os.environ["CIVICLOOP_DATABASE_URL"] = url
    get_settings.cache_clear()
    settings = get_settings()
    try:
        start, end = parse_month(month, settings.tz)
    except CivicloopError as exc:
        console.print(f"[red]--month must be YYYY-MM: {month!r}[/red]")
        raise typer.Exit(2) from exc

    console.rule("civicloop 接诉即办 demo")
    upgrade(url)
    engine = make_engine(url)
    tree = shared_categories() or BUILTIN_TREE
    with session_scope(engine) as session:
        city = build(session)
        created = load_tree(session, csv_path=tree)
    console.print(f"样例城市 sample city: {city.units} units, {city.grids} grids; 诉求分类 {created} categories "
                  f"from {tree}")
    days = (end - start).days
    with Progress(console=console) as progress, session_scope(engine) as session:
        task = progress.add_task(f"模拟 {month} 的 {requests} 件诉求 simulating", total=requests)
        report = simulate_month(session, start=start, days=days, count=requests, settings=settings,
                                on_progress=lambda n: progress.advance(task, n))
    console.print(f"诉求 {report.requests} · 结案 closed {report.closed} · 重办 reopened {report.reopened} · "
                  f"退单 returned {report.returned} · 超期督办 overdue {report.overdue_marked}")
    with session_scope(engine) as session:
        now = end
        unit_rows = three_rates(session, month=month, level="unit", settings=settings, now=now, min_cases=5)
        street_rows = three_rates(session, month=month, level="street", settings=settings, now=now, min_cases=5)
        ledger = ledger_rows(session, filters=LedgerFilter(), settings=settings, now=now)
    ranked = [row for row in unit_rows if row.rank is not None]
    print_rates(ranked[:15], title=f"{month} 承办单位三率排名 (前 15 名，共 {len(ranked)} 个单位；"
                                   "应响应 + 回访 ≥ 5 件方参与排名)")
    print_rates(street_rows, title=f"{month} 街道三率排名")
    write_xlsx(ledger, out / "ledger.xlsx", lang="zh")
    (out / "metrics.json").write_text(json.dumps(
        {"month": month, "generated_at": datetime.now(settings.tz).isoformat(),
         "units": [asdict(r) for r in unit_rows], "streets": [asdict(r) for r in street_rows]},
        ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    console.print(f"台账 ledger → {out / 'ledger.xlsx'} ({len(ledger)} rows); 排名 ranking → {out / 'metrics.json'}")
    with session_scope(engine) as session:
        logins = demo_users(session)
    login_file = out / "logins.txt"
    login_file.write_text("".join(f"{role}\t{name}\t{password}\n" for role, name, password in logins),
                          encoding="utf-8")
    login_file.chmod(0o600)
    table = Table(title="登录 logins (also in " + str(login_file) + ")")
    for header in ("role 角色", "user 用户名", "password 密码"):
        table.add_column(header)
    for row in logins:
        table.add_row(*row)
    console.print(table)
    engine.dispose()
    if no_serve:
        console.print(f"数据库 database: {url}")
        return
    import uvicorn

    console.print(f"API: http://127.0.0.1:{port}/docs  (database {url}; Ctrl-C to stop)")
    console.print("API clients log in with POST /api/v1/auth/tokens and send 'Authorization: Bearer <token>'")
    uvicorn.run("civicloop.app:create_app", factory=True, host="127.0.0.1", port=port, log_level="info")


# the demo's users: one per role, in the sample city (a handler of 望湖街道, a supervisor of 云河区, …)
DEMO_USERS = (
    ("operator", "operator", None), ("dispatcher", "dispatcher", None), ("handler", "handler", "D01-S01"),
    ("grid_worker", "grid", "D01-S01-C01"), ("supervisor", "supervisor", "D01"), ("analyst", "analyst", None),
    ("admin", "admin", None), ("resident", "resident", None),
)


def demo_users(session: object) -> list[tuple[str, str, str]]:
    """Create one user per role with a fresh random password (a fresh demo database has none);
    returns ``(role, user name, password)`` rows. A grid worker covers the grids of community
    D01-S01-C01; a handler works for street D01-S01; the supervisor oversees district D01."""
    import secrets

    from civicloop.accounts import service
    from civicloop.core.roles import Role
    from civicloop.core.timeutil import utcnow
    from civicloop.org import service as org

    rows = []
    for role, name, unit_code in DEMO_USERS:
        unit = org.unit_by_code_or_id(session, unit_code) if unit_code else None  # type: ignore[arg-type]
        grids = [g.id for g in unit.grids] if unit is not None and role == "grid_worker" else []
        password = secrets.token_urlsafe(9)
        service.create_user(session, username=name, password=password, role=Role(role),  # type: ignore[arg-type]
                            unit_id=unit.id if unit is not None and role != "grid_worker" else None,
                            grid_ids=grids, display_name=name, actor="demo", now=utcnow())
        rows.append((role, name, password))
    return rows
