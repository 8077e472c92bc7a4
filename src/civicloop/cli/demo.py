"""``civicloop demo``: the main job end to end on a fresh embedded SQLite database (``out/demo.db``).

On the real data (``teddy2020c``, see ``cli/demo_real.py``): imports every message and replays the
replied ones with their real reply times, trains (or loads) the classifier and prints its held-out
macro-F1, runs intelligent intake on every unreplied message, the overdue job, the three rates and
the ranking, the proactive analysis, writes the reports into ``./out/`` (``demo.json``, ``metrics.json``,
``ledger.xlsx``, ``analysis/report.html`` …), creates one login per role and serves the web app
(unless ``--no-serve`` or ``CIVICLOOP_NO_SERVE=1``). Without the data it says so and simulates a month
of the generated sample city through the same loop instead.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import func, select

from civicloop.requests.models import WorkOrder

console = Console(width=max(Console().width, 100))


def demo(
    no_serve: Annotated[bool, typer.Option("--no-serve", help="stop after the reports (scripts, CI)")] = False,
    data: Annotated[Path | None, typer.Option(help="the teddy2020c folder (default: $CIVICLOOP_SHARED_DATA/"
                                                   "teddy2020c, else ../shared/data/teddy2020c)")] = None,
    sample: Annotated[int | None, typer.Option(min=20, help="import only the first N rows of each message file "
                                                           "(a quick smoke run)")] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="simulate the sample city even when the real "
                                                                "data are there")] = False,
    requests: Annotated[int, typer.Option(min=10, max=100_000, help="synthetic requests to simulate "
                                                                    "(without real data)")] = 400,
    month: Annotated[str, typer.Option(help="month to simulate, YYYY-MM (without real data)")] = "2026-10",
    out: Annotated[Path, typer.Option(help="folder for the reports and the demo database")] = Path("out"),
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Run the demo: on the real Teddy Cup data when they are there, else on a simulated month of the
    sample city (and say so). Exits 2 on a malformed ``--month`` or a ``--data`` folder without data."""
    from civicloop.cli.demo_real import find_data
    from civicloop.core.migrate import upgrade
    from civicloop.core.settings import get_settings

    if no_serve is False and os.environ.get("CIVICLOOP_NO_SERVE") == "1":
        no_serve = True
    began = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    db_file = (out / "demo.db").resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{db_file}"
    os.environ["CIVICLOOP_DATABASE_URL"] = url
    get_settings.cache_clear()
    settings = get_settings()
    folder = None
    if not synthetic:
        folder = find_data() if data is None else data
        if data is not None and not any((data / name).is_file() for name in ("messages_labelled.csv",
                                                                             "messages_with_replies.csv")):
            console.print(f"[red]--data: no teddy2020c message files in {data}[/red]")
            raise typer.Exit(2)
    console.rule("civicloop 接诉即办 demo")
    upgrade(url)
    if folder is not None:
        units = real_demo(folder, out=out, settings=settings, sample=sample)
    else:
        if not synthetic:
            console.print("[yellow]未找到真实数据 no real data found (set CIVICLOOP_SHARED_DATA to the folder holding "
                          "teddy2020c/): simulating a month of the generated sample city instead[/yellow]")
        units = synthetic_demo(out=out, settings=settings, month=month, requests=requests)
    from civicloop.core.db import make_engine, session_scope

    engine = make_engine(url)
    with session_scope(engine) as session:
        logins = demo_users(session, units)
    engine.dispose()
    login_file = out / "logins.txt"
    login_file.write_text("".join(f"{role}\t{name}\t{password}\n" for role, name, password in logins),
                          encoding="utf-8")
    login_file.chmod(0o600)
    table = Table(title="登录 logins (also in " + str(login_file) + ")")
    for header in ("role 角色", "user 用户名", "password 密码", "works for 所在单位"):
        table.add_column(header)
    for role, name, password in logins:
        table.add_row(role, name, password, units.get(role) or "—")
    console.print(table)
    console.print(f"演示用时 the demo took {time.perf_counter() - began:.0f} s; reports in {out}/")
    if no_serve:
        console.print(f"数据库 database: {url}")
        return
    import uvicorn

    console.print(f"网页 web app: http://127.0.0.1:{port}/   API: http://127.0.0.1:{port}/docs  "
                  f"(database {url}; Ctrl-C to stop)")
    console.print("API clients log in with POST /api/v1/auth/tokens and send 'Authorization: Bearer <token>'")
    uvicorn.run("civicloop.app:create_app", factory=True, host="127.0.0.1", port=port, log_level="info")


def synthetic_demo(*, out: Path, settings: Any, month: str, requests: int) -> dict[str, str | None]:
    """The demo without real data: the sample city, its category tree and a simulated month driven
    through the whole loop, ranked, with the ledger and the ranking in ``out``. Returns the unit codes
    of the demo's users. Exits 2 on a malformed ``month``."""
    from civicloop.analytics.metrics import parse_month
    from civicloop.catalog.service import BUILTIN_TREE, load_tree
    from civicloop.cli.main import shared_categories
    from civicloop.core.db import make_engine, session_scope
    from civicloop.core.errors import CivicloopError
    from civicloop.importers.sample_city import build
    from civicloop.importers.simulate import simulate_month

    try:
        start, end = parse_month(month, settings.tz)
    except CivicloopError as exc:
        console.print(f"[red]--month must be YYYY-MM: {month!r}[/red]")
        raise typer.Exit(2) from exc
    engine = make_engine(settings.database_url)
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
    rankings(engine, settings, out, month=month, now=end)
    engine.dispose()
    return {"handler": "D01-S01", "grid_worker": "D01-S01-C01", "supervisor": "D01"}


def rankings(engine: Any, settings: Any, out: Path, *, month: str, now: datetime) -> dict[str, Any]:
    """Print the units' and streets' three rates of ``month`` as of ``now``, write the ledger
    (``ledger.xlsx``) and the ranking (``metrics.json``) into ``out``; return the ranking's JSON."""
    from civicloop.analytics.metrics import three_rates
    from civicloop.cli.main import print_rates
    from civicloop.core.db import session_scope
    from civicloop.requests.ledger import LedgerFilter, ledger_rows, write_xlsx

    with session_scope(engine) as session:
        unit_rows = three_rates(session, month=month, level="unit", settings=settings, now=now, min_cases=5)
        street_rows = three_rates(session, month=month, level="street", settings=settings, now=now, min_cases=5)
        ledger = ledger_rows(session, filters=LedgerFilter(), settings=settings, now=now)
    ranked = [row for row in unit_rows if row.rank is not None]
    print_rates(ranked[:15], title=f"{month} 承办单位三率排名 (前 15 名，共 {len(ranked)} 个单位；"
                                   "应响应 + 回访 ≥ 5 件方参与排名)")
    streets_ranked = [row for row in street_rows if row.rank is not None]
    if streets_ranked:
        print_rates(streets_ranked[:15], title=f"{month} 街道三率排名 ({len(streets_ranked)} 个街道乡镇)")
    write_xlsx(ledger, out / "ledger.xlsx", lang="zh")
    payload = {"month": month, "as_of": now.isoformat(), "generated_at": datetime.now(settings.tz).isoformat(),
               "units": [asdict(r) for r in unit_rows], "streets": [asdict(r) for r in street_rows]}
    (out / "metrics.json").write_text(json.dumps(payload, ensure_ascii=False, indent=2, default=str),
                                      encoding="utf-8")
    console.print(f"台账 ledger → {out / 'ledger.xlsx'} ({len(ledger)} rows); 排名 ranking → {out / 'metrics.json'}")
    return payload


def reply_ranking(engine: Any, settings: Any, out: Path) -> list[dict[str, Any]]:
    """Print the units' reply timeliness (答复时效) over the year with the most replies, add it to
    ``out/metrics.json`` and return its rows (``analytics.timeliness``)."""
    from civicloop.analytics.timeliness import reply_timeliness
    from civicloop.cli import demo_real as steps
    from civicloop.core.db import session_scope

    with session_scope(engine) as session:
        year = steps.busiest_year(session, settings)
        rows = reply_timeliness(session, start=year[0], end=year[1]) if year else []
    ranked = [r for r in rows if r.rank is not None]
    if year:
        table = Table(title=f"{year[0].year} 年答复时效排名 reply timeliness (前 15 名，共 {len(ranked)} 个单位；"
                            "答复 ≥ 5 件方参与排名)")
        for header in ("名次", "单位", "答复", "按期答复率", "等待中位数(天)", "90% 在(天)内"):
            table.add_column(header, justify="left" if header == "单位" else "right", no_wrap=header == "单位")
        for row in ranked[:15]:
            table.add_row(str(row.rank), row.unit_name, str(row.replied), f"{row.on_time_rate * 100:.1f}%",
                          f"{row.median_days:.1f}", f"{row.p90_days:.1f}")
        console.print(table)
    found = [asdict(r) for r in rows]
    metrics_file = out / "metrics.json"
    payload = json.loads(metrics_file.read_text(encoding="utf-8"))
    payload["timeliness"] = {"year": year[0].year if year else None, "units": found}
    metrics_file.write_text(json.dumps(payload, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return [r for r in found if r["rank"] is not None]


def real_demo(folder: Path, *, out: Path, settings: Any, sample: int | None) -> dict[str, str | None]:
    """The demo on the real data of ``folder``: import and replay, model, intake of the unreplied
    messages, overdue job, rates, analysis and reports into ``out``. Returns the unit codes of the
    demo's users."""
    import tempfile

    from civicloop.cli import demo_real as steps
    from civicloop.core.db import make_engine, session_scope
    from civicloop.importers.teddy import build_routes, import_teddy
    from civicloop.intelligence.model_store import default_model_path

    source = folder
    scratch = None
    if sample is not None:
        scratch = tempfile.TemporaryDirectory(prefix="civicloop-sample-")
        source = steps.slice_data(folder, sample, Path(scratch.name))
    engine = make_engine(settings.database_url)
    console.print(f"真实数据 real data: {folder}" + (f" (first {sample} rows of each file)" if sample else ""))
    started = time.perf_counter()
    with Progress(console=console) as progress, session_scope(engine) as session:
        task = progress.add_task("导入并回放 importing and replaying the replied messages", total=None)
        summary = import_teddy(session, folder=source, settings=settings,
                               on_progress=lambda n: progress.advance(task, n),
                               on_total=lambda n: progress.update(task, total=n))
        routes = build_routes(session)
    with session_scope(engine) as session:
        replied = session.scalar(select(func.count()).select_from(WorkOrder).where(WorkOrder.replied_at.is_not(None)))
    console.print(f"导入 imported {summary.stored:,} messages in {time.perf_counter() - started:.0f} s "
                  f"(skipped {len(summary.skipped)}); {replied:,} replied ones replayed with their real reply "
                  f"times; routing table: {routes} territorial rules (属地)")
    if scratch is not None:
        scratch.cleanup()

    model_path = Path(settings.model_path) if settings.model_path else default_model_path()
    with console.status("分类模型 classifier: loading, or training on the labelled messages (about a minute)"):
        model = steps.ensure_model(folder, model_path)
    console.print(f"分类模型 classifier {model.version} ({'trained now' if model.trained else 'loaded'}, "
                  f"{model.seconds:.0f} s): macro-F1 [bold]{model.macro_f1:.3f}[/bold], accuracy {model.accuracy:.3f} "
                  f"on {model.n} held-out messages it never saw; weakest class "
                  f"{min(model.per_class, key=model.per_class.__getitem__)} {min(model.per_class.values()):.3f}")
    triage_settings = settings.model_copy(update={"model_path": str(model_path), "triage_on_intake": True})
    with Progress(console=console) as progress:
        task = progress.add_task("智能分拨 classifying, locating, de-duplicating and routing the unreplied",
                                 total=None)
        intake = steps.triage_unreplied(engine, triage_settings, on_total=lambda n: progress.update(task, total=n),
                                        on_progress=lambda n: progress.advance(task, n))
    outcome = intake.outcomes
    console.print(f"智能分拨 intake of {intake.n:,} unreplied messages in {intake.seconds:.0f} s: "
                  f"auto-dispatched {outcome.get('auto_dispatched', 0):,}, duplicates linked "
                  f"{outcome.get('duplicate', 0):,}, to the dispatcher's queue {outcome.get('queued', 0):,} "
                  f"({', '.join(f'{k} {v}' for k, v in sorted(intake.reasons.items())) or 'none'})")
    with session_scope(engine) as session:
        now = steps.data_clock(session)
        month = steps.busiest_month(session, settings)
    flagged = steps.overdue(engine, settings, now)
    console.print(f"演示时钟 the demo's clock: {now.astimezone(settings.tz):%Y-%m-%d} (the day after the last "
                  f"message); 超期督办 overdue orders flagged: {flagged:,}")
    payload = rankings(engine, settings, out, month=month or now.astimezone(settings.tz).strftime("%Y-%m"), now=now)
    console.print("[dim]解决率、满意率 need callbacks (回访), which the published data do not have: they fill in as "
                  "operators call citizens back in the web app. 响应率 is real but strict: the data know only the "
                  "reply, which must then come within the response deadline.[/dim]")
    timeliness = reply_ranking(engine, settings, out)
    with console.status("未诉先办 proactive analysis: hotspots, surges, co-occurrence, reply quality"):
        results = steps.analyse(engine, settings, out / "analysis", now=now)
    for finding in results.findings.get("hotspot", [])[:5]:
        console.print(f"  热点 hotspot {finding.rank}. {finding.summary}（{finding.place or '—'}，"
                      f"{len(finding.request_ids)} 件）")
    counts = {kind: len(items) for kind, items in results.findings.items()}
    console.print(f"未诉先办 findings: {counts}; report → {out / 'analysis' / 'report.html'}")
    (out / "demo.json").write_text(json.dumps({
        "data": str(folder), "sample": sample, "imported": summary.stored, "replied": replied,
        "model": {"version": model.version, "macro_f1": model.macro_f1, "accuracy": model.accuracy, "n": model.n,
                  "per_class": model.per_class, "trained": model.trained},
        "intake": {"n": intake.n, "outcomes": intake.outcomes, "reasons": intake.reasons,
                   "seconds": round(intake.seconds, 1)},
        "clock": now.isoformat(), "overdue_flagged": flagged, "month": payload["month"],
        "top_units": [r for r in payload["units"] if r.get("rank")][:10],
        "timeliness": timeliness[:10],
        "findings": counts,
        "top_hotspots": [{"summary": f.summary, "place": f.place, "requests": len(f.request_ids)}
                         for f in results.findings.get("hotspot", [])[:5]],
    }, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    engine.dispose()
    with session_scope(make_engine(settings.database_url)) as session:
        return steps.demo_units(session)


# the demo's users: one per role (role, user name); where they work comes from the data
DEMO_USERS = (("operator", "operator"), ("dispatcher", "dispatcher"), ("handler", "handler"), ("grid_worker", "grid"),
              ("supervisor", "supervisor"), ("analyst", "analyst"), ("admin", "admin"), ("resident", "resident"))


def demo_users(session: object, units: dict[str, str | None]) -> list[tuple[str, str, str]]:
    """Create one user per role with a fresh random password (a fresh demo database has none);
    returns ``(role, user name, password)`` rows. ``units`` gives the unit code a role works for
    (``handler``, ``grid_worker``: the community whose grids it covers, ``supervisor``); a role
    without one works city-wide, or not at all for a handler (it then sees no orders)."""
    import secrets

    from civicloop.accounts import service
    from civicloop.core.roles import Role
    from civicloop.core.timeutil import utcnow
    from civicloop.org import service as org

    rows = []
    for role, name in DEMO_USERS:
        code = units.get(role)
        unit = org.unit_by_code_or_id(session, code) if code else None  # type: ignore[arg-type]
        grids = [g.id for g in unit.grids] if unit is not None and role == "grid_worker" else []
        password = secrets.token_urlsafe(9)
        service.create_user(session, username=name, password=password, role=Role(role),  # type: ignore[arg-type]
                            unit_id=unit.id if unit is not None and role != "grid_worker" else None,
                            grid_ids=grids, display_name=name, actor="demo", now=utcnow())
        rows.append((role, name, password))
    return rows
