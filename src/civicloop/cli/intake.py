"""``civicloop intake``: run intelligent intake (智能分拨) over a file of real messages and report it.

``civicloop intake replay --data holdout.csv`` files every row (columns ``title``, ``detail``,
optional ``label`` and ``address``) as a new hotline request through the same pipeline as
``POST /api/v1/requests`` — locate, duplicates, classify, route, dispatch or queue — one transaction per
request, and prints what happened: the share dispatched without a person, how often that dispatch
was under the right first-level category (when the file has labels), the queue's reasons, and the
dispatch latency (seconds from filing to the routed work order, measured by the pipeline itself).

``civicloop intake drain`` triages what waits in the deferred intake queue (``requests.triage_queue``).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="智能分拨 Intelligent intake: replay real messages through it.", no_args_is_help=True)
console = Console()


def read_rows(path: Path, limit: int | None) -> list[dict[str, str]]:
    """Return the rows of a UTF-8 CSV with at least ``title`` and ``detail`` (others optional).
    Raises ``typer.BadParameter`` naming ``--data`` for a missing file or missing columns."""
    if not path.is_file():
        raise typer.BadParameter(f"no such file: {path}", param_hint="--data")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"title", "detail"} - set(reader.fieldnames or [])
        if missing:
            raise typer.BadParameter(f"missing columns {sorted(missing)}", param_hint="--data")
        rows = [row for row in reader if (row.get("title") or "").strip() or (row.get("detail") or "").strip()]
    return rows[:limit] if limit else rows


@app.command()
def replay(
    data: Annotated[Path, typer.Option(help="CSV with title, detail[, label, address] columns")],
    limit: Annotated[int | None, typer.Option(min=1, help="file at most this many rows")] = None,
    address: Annotated[str, typer.Option(help="address for rows that have none (e.g. a street of the city)")] = "",
    batch: Annotated[int, typer.Option(min=1, max=1000, help="rows filed, then triaged, per transaction "
                                       "(1: each as POST /api/v1/requests does inline; more: as deferred intake)")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """回放 File each row as a request through intelligent intake and print the figures.

    The requests are stored in the configured database (``civicloop init`` first), as a real intake
    would; use a scratch database (``CIVICLOOP_DATABASE_URL``) to measure without keeping them. With
    ``--batch N`` the rows are filed N at a time in one transaction and triaged in the next, as deferred
    intake's runner does (``requests.triage_queue``): the same pipeline, fewer commits and reads."""
    from sqlalchemy import select

    from civicloop.core.db import session_scope
    from civicloop.core.roles import Role
    from civicloop.core.settings import get_settings
    from civicloop.requests import intake, triage, triage_queue
    from civicloop.requests.models import Channel, Triage
    from civicloop.requests.service import Actor

    settings = get_settings().model_copy(update={"triage_on_intake": True})
    rows = read_rows(data, limit)
    operator = Actor("intake-replay", Role.OPERATOR)
    outcomes: list[dict[str, Any]] = []
    started_all = time.perf_counter()
    for first in range(0, len(rows), batch):
        chunk = rows[first:first + batch]
        started = time.perf_counter()
        with session_scope() as session:
            filed = [intake.submit(session, actor=operator, data=intake.NewRequest(
                channel=Channel.WEB, title=(row.get("title") or "")[:200] or "（无标题）",
                description=(row.get("detail") or "")[:4000] or (row.get("title") or ""),
                address=(row.get("address") or address)[:500])) for row in chunk]
            if batch == 1:
                records = [triage.triage(session, request=filed[0], settings=settings, started=started)]
                outcomes += [_outcome(session, row, record) for row, record in zip(chunk, records, strict=True)]
            else:
                for request in filed:
                    triage_queue.enqueue(session, request_id=request.id, now=request.created_at)
        if batch > 1:
            with session_scope() as session:
                triage_queue.run_batch(session, settings=settings, limit=len(filed),
                                       request_ids=[r.id for r in filed])
                found = {t.request_id: t for t in session.scalars(
                    select(Triage).where(Triage.request_id.in_([r.id for r in filed])))}
                outcomes += [_outcome(session, row, found[r.id]) for row, r in zip(chunk, filed, strict=True)]
    figures = summarise(outcomes, wall_seconds=time.perf_counter() - started_all)
    if as_json:
        typer.echo(json.dumps(figures, ensure_ascii=False))
    else:
        print_figures(figures)


def _outcome(session: Any, row: dict[str, str], record: Any) -> dict[str, Any]:
    """One replayed row's figures: the outcome, the queue's reasons, the latency (seconds), the file's
    label and the first level of the category intake gave it (the record's top suggestion, which an
    automatic dispatch accepts; ``None`` for a request intake did not dispatch)."""
    from civicloop.catalog.service import find_category
    from civicloop.requests.models import TriageOutcome

    category = (find_category(session, record.category_id)
                if record.outcome == TriageOutcome.AUTO_DISPATCHED and record.category_id else None)
    return {"outcome": str(record.outcome), "reasons": list(record.reasons), "latency": record.latency_seconds,
            "label": (row.get("label") or "").strip(), "level1": category.path.split("/")[0] if category else None}


@app.command()
def drain() -> None:
    """排空 Triage every request waiting in the deferred intake queue now (``triage_mode = "deferred"``:
    what the runners of ``civicloop serve`` do within about a second; for a server that was stopped
    with requests queued, or a deployment that runs no web worker). Prints how many were taken."""
    from civicloop.core.db import session_scope
    from civicloop.core.settings import get_settings
    from civicloop.requests import triage_queue

    settings = get_settings().model_copy(update={"triage_on_intake": True})
    taken = triage_queue.drain(settings)
    with session_scope() as session:
        left = triage_queue.backlog(session)
    console.print(f"待分拨队列 deferred intake queue: {taken} triaged, {left['waiting']} waiting")


def summarise(outcomes: list[dict[str, Any]], *, wall_seconds: float) -> dict[str, Any]:
    """Return the replay's figures: counts by outcome, auto-dispatch share and accuracy (against
    the file's labels, where given), queue reasons, latency spread (seconds) of automatic dispatches."""
    import numpy as np

    n = len(outcomes)
    by_outcome: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for item in outcomes:
        by_outcome[item["outcome"]] = by_outcome.get(item["outcome"], 0) + 1
        for code in item["reasons"]:
            reasons[code] = reasons.get(code, 0) + 1
    auto = [o for o in outcomes if o["outcome"] == "auto_dispatched"]
    labelled = [o for o in auto if o["label"]]
    latencies = np.array([o["latency"] for o in auto if o["latency"] is not None], dtype=float)
    spread = ({"p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95)),
               "max": float(latencies.max())} if latencies.size else {"p50": None, "p95": None, "max": None})
    return {
        "n": n, "by_outcome": by_outcome, "auto_share": round(len(auto) / n, 4) if n else None,
        "auto_accuracy": round(sum(o["level1"] == o["label"] for o in labelled) / len(labelled), 4)
        if labelled else None,
        "reasons": reasons, "latency_seconds": spread, "wall_seconds": round(wall_seconds, 2),
    }


def print_figures(figures: dict[str, Any]) -> None:
    """Print the replay's figures as a table."""
    table = Table(title="智能分拨回放 Intake replay")
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("诉求 requests filed", str(figures["n"]))
    for outcome, count in sorted(figures["by_outcome"].items()):
        table.add_row(f"  {outcome}", str(count))
    table.add_row("自动派单占比 auto-dispatch share", _pct(figures["auto_share"]))
    table.add_row("自动派单正确率 auto-dispatch accuracy (first level)", _pct(figures["auto_accuracy"]))
    for code, count in sorted(figures["reasons"].items()):
        table.add_row(f"  queued: {code}", str(count))
    spread = figures["latency_seconds"]
    for key in ("p50", "p95", "max"):
        value = spread[key]
        table.add_row(f"派单耗时 latency {key} (ms)", "–" if value is None else f"{value * 1000:.1f}")
    table.add_row("总耗时 wall time (s)", str(figures["wall_seconds"]))
    console.print(table)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"
