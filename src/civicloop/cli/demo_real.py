"""The demo's steps on the real data (``../shared/data/teddy2020c``): import, model, intake, rates,
analysis, reports. ``cli/demo.py`` drives them and prints; each step here returns what it measured.

The demo's clock is the end of the data (the day after the last message), not today: the overdue
job and the three rates see the city as it stood when its last message came in, so a reply the
data give ten days after filing counts as late and a message filed the day before is not yet due.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from civicloop.core.settings import Settings

Progress = Callable[[int], None]
MESSAGE_FILES = ("messages_labelled.csv", "messages_unlabelled.csv", "messages_with_votes.csv",
                 "messages_with_replies.csv")


def find_data() -> Path | None:
    """Return the ``teddy2020c`` folder (``$CIVICLOOP_SHARED_DATA/teddy2020c``, else
    ``../shared/data/teddy2020c`` from the current folder or the repository), or ``None`` when it is
    not there or holds none of the message files."""
    from civicloop.intelligence.data import shared_data_dir

    root = shared_data_dir()
    folder = root / "teddy2020c" if root is not None else None
    if folder is None or not any((folder / name).is_file() for name in MESSAGE_FILES):
        return None
    return folder


def slice_data(folder: Path, rows: int, into: Path) -> Path:
    """Write the first ``rows`` data rows of each message file of ``folder`` (and its whole
    ``categories.csv``) into ``into`` and return ``into``: a small slice of the real data for the
    CI smoke test. Raises ``OSError`` when ``into`` cannot be written."""
    into.mkdir(parents=True, exist_ok=True)
    for name in ("categories.csv", *MESSAGE_FILES):
        source = folder / name
        if not source.is_file():
            continue
        with source.open(encoding="utf-8-sig", newline="") as src, (into / name).open(
                "w", encoding="utf-8", newline="") as dst:
            reader, writer = csv.reader(src), csv.writer(dst)
            for index, row in enumerate(reader):
                if name != "categories.csv" and index > rows:
                    break
                writer.writerow(row)
    return into


@dataclass
class ModelStep:
    """The classifier the demo uses: its held-out figures, where it lies, whether it was trained now."""

    version: str
    path: Path
    trained: bool
    seconds: float
    macro_f1: float
    accuracy: float
    n: int
    per_class: dict[str, float]


def ensure_model(labelled: Path, model_path: Path) -> ModelStep:
    """Load the model at ``model_path`` when it was trained on exactly the training part of
    ``labelled``'s split (same data fingerprint, same method), else train it (about a minute) on that
    part, measure it on the held-out messages it never saw and save it there. Returns the
    :class:`ModelStep` with the held-out macro-F1 (docs/intelligence.md describes the split).
    Raises ``DataNotFound`` when ``labelled`` holds no labelled files."""
    from civicloop.intelligence import classifier, model_store
    from civicloop.intelligence.data import fingerprint, load_split

    started = time.perf_counter()
    split = load_split(labelled)
    print_ = fingerprint(split.train)
    try:
        stored = model_store.load(model_path)
        fresh = stored.metadata.get("data_fingerprint") == print_ and stored.metadata.get("method") == classifier.OURS
    except (model_store.ModelNotFound, model_store.ModelFileInvalid):
        fresh = False
    if not fresh:
        model = classifier.train(split.train, method=classifier.OURS)
        metrics = classifier.evaluate(model, split.test)
        metadata = model_store.make_metadata(model, fingerprint=print_, metrics=metrics, extra={
            "split": {**split.stats, "seed": split.seed, "test_size": split.test_size}})
        model_store.save(model, metadata, model_path)
        stored = model_store.load(model_path)
    metrics = stored.metadata["metrics"]
    return ModelStep(version=stored.metadata["version"], path=model_path, trained=not fresh,
                     seconds=time.perf_counter() - started, macro_f1=metrics["macro_f1"],
                     accuracy=metrics["accuracy"], n=metrics["n"], per_class=dict(metrics["per_class"]))


@dataclass
class IntakeStep:
    """What intelligent intake did with the unreplied messages, by outcome and queue reason."""

    n: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def triage_unreplied(engine: Any, settings: Settings, *, on_total: Progress, on_progress: Progress,
                     batch: int = 200) -> IntakeStep:
    """Run intelligent intake (locate, duplicates, classify, route) on every imported request still
    ``submitted``, oldest first, each at its own filing time, so a repeat finds the earlier request
    still open and links to it. Commits every ``batch`` requests. Returns the :class:`IntakeStep`."""
    from civicloop.core.db import session_scope
    from civicloop.requests import triage
    from civicloop.requests.models import RequestStatus, ServiceRequest

    started = time.perf_counter()
    with session_scope(engine) as session:
        ids = list(session.scalars(select(ServiceRequest.id).where(
            ServiceRequest.status == RequestStatus.SUBMITTED).order_by(ServiceRequest.created_at, ServiceRequest.id)))
    on_total(len(ids))
    step = IntakeStep(n=len(ids))
    for first in range(0, len(ids), batch):
        with session_scope(engine) as session:
            for request_id in ids[first:first + batch]:
                request = session.get(ServiceRequest, request_id)
                assert request is not None
                record = triage.triage(session, request=request, settings=settings, now=request.created_at)
                step.outcomes[str(record.outcome)] = step.outcomes.get(str(record.outcome), 0) + 1
                for reason in record.reasons:
                    step.reasons[reason] = step.reasons.get(reason, 0) + 1
        on_progress(len(ids[first:first + batch]))
    step.seconds = time.perf_counter() - started
    return step


def data_clock(session: Session) -> datetime:
    """Return the demo's "now": the day after the latest filing or reply in the database (aware UTC)."""
    from civicloop.core.timeutil import as_utc
    from civicloop.requests.models import ServiceRequest, WorkOrder

    latest = [value for value in (session.scalar(select(func.max(ServiceRequest.created_at))),
                                  session.scalar(select(func.max(WorkOrder.replied_at)))) if value is not None]
    if not latest:
        from civicloop.core.timeutil import utcnow

        return utcnow()
    return max(as_utc(value) for value in latest) + timedelta(days=1)


def clock_and_month(engine: Any, settings: Settings) -> tuple[datetime, str]:
    """Return the demo's clock (:func:`data_clock`) and the month to rank (:func:`busiest_month`, else
    the clock's month, ``YYYY-MM`` local)."""
    from civicloop.core.db import session_scope

    with session_scope(engine) as session:
        now = data_clock(session)
        month = busiest_month(session, settings)
    return now, month or now.astimezone(settings.tz).strftime("%Y-%m")


def overdue(engine: Any, settings: Settings, now: datetime) -> int:
    """Run the overdue job (超期督办) as of ``now`` until nothing is left; return the orders flagged."""
    from civicloop.core.db import session_scope
    from civicloop.requests.jobs import mark_overdue

    flagged = 0
    while True:
        with session_scope(engine) as session:
            report = mark_overdue(session, settings=settings, now=now)
        flagged += len(report.marked)
        if len(report.marked) == 0:
            return flagged


def _busiest(session: Session, settings: Settings, column: Any, period: str) -> str | None:
    """Return the local period (``strftime`` pattern ``period``) holding the most lead work orders by
    ``column`` (an aware instant of ``WorkOrder``), earliest on a tie, or ``None`` when there is none."""
    from collections import Counter

    from civicloop.core.timeutil import as_utc
    from civicloop.requests.models import WorkOrder, WorkOrderRole

    counts = Counter(as_utc(moment).astimezone(settings.tz).strftime(period) for (moment,) in session.execute(
        select(column).where(WorkOrder.role == WorkOrderRole.LEAD, column.is_not(None))))
    return max(sorted(counts), key=counts.__getitem__) if counts else None


def busiest_month(session: Session, settings: Settings) -> str | None:
    """Return the local month ``YYYY-MM`` with the most lead work orders dispatched, or ``None``."""
    from civicloop.requests.models import WorkOrder

    return _busiest(session, settings, WorkOrder.dispatched_at, "%Y-%m")


def busiest_year(session: Session, settings: Settings) -> tuple[datetime, datetime] | None:
    """Return the local calendar year with the most lead work orders replied, as aware instants
    [1 January, next 1 January), or ``None`` when nothing was replied."""
    from civicloop.requests.models import WorkOrder

    found = _busiest(session, settings, WorkOrder.replied_at, "%Y")
    if found is None:
        return None
    year = int(found)
    return datetime(year, 1, 1, tzinfo=settings.tz), datetime(year + 1, 1, 1, tzinfo=settings.tz)


def analyse(engine: Any, settings: Settings, out: Path, *, now: datetime) -> Any:
    """Run the proactive analysis (未诉先办) over the whole database as of ``now``, write its CSVs,
    ``report.xlsx`` and ``report.html`` into ``out`` and keep the findings for the analyst's page.
    Returns the ``AnalysisResults``. Raises ``AnalyticsUnavailable`` when the data cannot be read."""
    from civicloop.analytics.report import write_outputs
    from civicloop.analytics.run import analyze, open_source
    from civicloop.analytics.service import store_findings
    from civicloop.core.db import session_scope

    conn, source = open_source(database_url=engine.url.render_as_string(hide_password=False),
                               timezone=settings.timezone)
    try:
        results = analyze(conn, source=source, now=now.astimezone(settings.tz).replace(tzinfo=None))
    finally:
        conn.close()
    write_outputs(out, results)
    with session_scope(engine) as session:
        store_findings(session, results.all_findings(), settings=settings, now=now)
    return results


def demo_units(session: Session) -> dict[str, str | None]:
    """Return the unit codes the demo's users work for in the imported city: the handler and the
    supervisor at the district with the most lead work orders, the grid worker in the grids of the
    community with the most requests in grids. ``None`` where the data have no such unit."""
    from civicloop.org.models import Grid, OrgUnit, UnitKind
    from civicloop.requests.models import ServiceRequest, WorkOrder, WorkOrderRole

    district = session.execute(
        select(OrgUnit.code).join(WorkOrder, WorkOrder.unit_id == OrgUnit.id)
        .where(OrgUnit.kind == UnitKind.DISTRICT, WorkOrder.role == WorkOrderRole.LEAD)
        .group_by(OrgUnit.code).order_by(func.count().desc(), OrgUnit.code).limit(1)).scalar()
    community = session.execute(
        select(OrgUnit.code).join(Grid, Grid.community_id == OrgUnit.id)
        .join(ServiceRequest, ServiceRequest.grid_id == Grid.id)
        .group_by(OrgUnit.code).order_by(func.count().desc(), OrgUnit.code).limit(1)).scalar()
    return {"handler": district, "supervisor": district, "grid_worker": community}
