"""Issue 9 at scale: the dashboards over 10⁷ requests, the memory of ``civicloop analyze`` on them, and the
replay of requests through import + classify + route (called from ``benchmarks/run.py``).

Each function returns ``{"rows": [(figure, value, reference value, reference name)], "detail": {...}}`` like
``run.bench_analyze``; every figure has a reference measured in the same run on the same data.

* :func:`bench_dashboard` — the three dashboard queries of ``analytics.dashboard`` (30-day counts by
  category and district, 7-day hotspot candidates, a month's three rates by unit) through the fast path
  (DuckDB over the Parquet snapshot, ``civicloop analyze --snapshot``), p95 over R windows; reference: the
  same query as plain SQL on the operational table (what the app ran before), p50 over fewer windows. The
  two answers are compared: a difference stops the benchmark.
* :func:`bench_analyze_memory` — peak resident memory of ``civicloop analyze`` (``/proc`` polled every 0.1 s
  and ``getrusage(RUSAGE_CHILDREN)``); reference: the size of the database it reads.
* :func:`bench_replay` — ``civicloop intake replay`` (the pipeline of ``POST /api/v1/requests``: submit,
  locate, duplicates, classify, route, dispatch, one transaction each) of generated requests on a fresh
  SQLite database of the sample city; reference: importing the same rows without intake (one INSERT +
  commit each) into the same database. Extrapolated to a Beijing year (24 million requests).

Sizes: 10⁷ requests in the full set, 10⁵ quick (databases cached in ``out/bench``, never in git).
"""

from __future__ import annotations

import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench"
CIVICLOOP = [sys.executable, "-m", "civicloop"]
BEIJING_YEAR = 24_000_000
REPLAY_BUDGET_S = 3 * 3600
REPLAY_BATCH = 32
"""Rows the replay files in one transaction and triages in the next (``civicloop intake replay --batch``,
deferred intake's batches)."""


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank on the sorted values)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def generated_db(n: int) -> Path:
    """Return the SQLite file of ``n`` generated requests (seed 1, as ``run.bench_analyze``), generating it
    first when it is not in ``out/bench``. Raises ``RuntimeError`` for a database without its manifest
    (a generation still running or cut short)."""
    OUT.mkdir(parents=True, exist_ok=True)
    db = OUT / f"generated-{n}.db"
    manifest = OUT / f"generated-{n}.generate.json"  # written by `civicloop generate` once it has committed
    if db.exists() and not manifest.exists():
        raise RuntimeError(f"{db} is incomplete or still being generated (no {manifest.name}): wait, or delete it")
    if not db.exists():
        subprocess.run([*CIVICLOOP, "generate", "--requests", str(n), "--seed", "1"], check=True, capture_output=True,
                       env={**os.environ, "CIVICLOOP_DATABASE_URL": f"sqlite:///{db}"})
    return db


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def _timed_cpu(call: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process — every thread, DuckDB's too —, the value) of ``call()``."""
    started, cpu = time.perf_counter(), time.process_time()
    value = call()
    return time.perf_counter() - started, time.process_time() - cpu, value


def bench_dashboard(quick: bool) -> dict[str, Any]:
    """Time the dashboard queries on N generated requests (10⁷ full, 10⁵ quick) through the snapshot and
    as plain SQL on the operational SQLite table, compare their answers, and return p95 (fast) against
    p50 (plain) in ms per query; the snapshot's refresh time is in ``detail``."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from civicloop.analytics import dashboard, metrics
    from civicloop.core.db import make_engine
    from civicloop.core.settings import Settings
    from civicloop.requests.models import ServiceRequest

    n = 100_000 if quick else 10_000_000
    db = generated_db(n)
    url = f"sqlite:///{db}"
    folder = dashboard.snapshot_dir(url)
    assert folder is not None
    refresh_s, meta = _timed(lambda: dashboard.write_snapshot(url, folder))
    snap = dashboard.open_snapshot(folder)
    assert snap is not None
    engine = make_engine(url)
    settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    fast_runs, plain_runs = (10, 3) if quick else (20, 3)
    with Session(engine) as s:
        latest = s.scalar(select(func.max(ServiceRequest.created_at)))
        assert latest is not None
        live_s, _ = _timed(lambda: dashboard.live_requests(s, snap, start=snap.watermark, end=datetime.now(UTC)))
        ends = [latest - timedelta(days=3 * k) for k in range(fast_runs)]
        months = []
        for k in range(fast_runs):  # the months before the last one of the data, newest first
            stamp = (latest.astimezone(settings.tz).replace(day=1) - timedelta(days=1 + 31 * k))
            months.append(metrics.parse_month(stamp.strftime("%Y-%m"), settings.tz))
        now = latest + timedelta(days=1)
        queries: dict[str, tuple[list[Any], Callable[[Any], Any], Callable[[Any], Any]]] = {
            "30-day counts by category and district": (
                ends,
                lambda end: dashboard.category_district_counts(s, start=end - timedelta(days=30), end=end,
                                                               snapshot=snap),
                lambda end: dashboard.category_district_counts_sql(s, start=end - timedelta(days=30), end=end)),
            "7-day hotspot candidates": (
                ends,
                lambda end: dashboard.hotspot_candidates(s, end=end, snapshot=snap),
                lambda end: dashboard.judge_cells(*dashboard.hotspot_cells_sql(s, end=end), min_requests=3)),
            "a month's three rates by unit": (
                months,
                lambda m: dashboard.unit_counts(s, start=m[0], end=m[1], now=now, snapshot=snap),
                lambda m: metrics.unit_counts(s, start=m[0], end=m[1], now=now)),
        }
        detail: dict[str, Any] = {"requests": n, "snapshot": meta, "snapshot_refresh_s": refresh_s,
                                  "live_part_ms": live_s * 1000, "fast_runs": fast_runs, "plain_runs": plain_runs,
                                  "queries": {}}
        rows = []
        for name, (args, fast, plain) in queries.items():
            fast(args[0])  # warm: the Parquet footers, the page cache
            plain(args[0])
            fast_times, fast_cpu, answers = [], [], []
            load = os.getloadavg()[0]
            for arg in args:
                seconds, cpu, answer = _timed_cpu(lambda arg=arg, fast=fast: fast(arg))
                fast_times.append(seconds)
                fast_cpu.append(cpu)
                answers.append(answer)
            plain_times = []
            for arg, answer in list(zip(args, answers, strict=True))[:plain_runs]:
                seconds, expected = _timed(lambda arg=arg, plain=plain: plain(arg))
                plain_times.append(seconds)
                if answer != expected:
                    raise AssertionError(f"{name}: the fast path differs from plain SQL at {arg}")
            sizes = [len(a) for a in answers]
            detail["queries"][name] = {
                "fast_ms": [round(t * 1000, 2) for t in fast_times],
                "plain_ms": [round(t * 1000, 1) for t in plain_times],
                "fast_p50_ms": percentile(fast_times, 50) * 1000, "fast_p95_ms": percentile(fast_times, 95) * 1000,
                "fast_cpu_p95_ms": percentile(fast_cpu, 95) * 1000, "load_average": load,
                "plain_p50_ms": percentile(plain_times, 50) * 1000, "answer_rows": [min(sizes), max(sizes)]}
            rows.append((f"dashboard, {n:,} requests: {name}, p95 (ms)", percentile(fast_times, 95) * 1000,
                         percentile(plain_times, 50) * 1000, "the same query as plain SQL on the operational table,"
                         " p50 (ms)"))
    engine.dispose()
    detail["database_mb"] = round(db.stat().st_size / 2**20)
    detail["snapshot_mb"] = round(sum(f.stat().st_size for f in folder.glob("*.parquet")) / 2**20, 1)
    return {"rows": rows, "detail": detail}


def _rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (kB, from /proc), 0 once it has gone."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                stack += [int(c) for c in children]
        except (OSError, ValueError):
            continue
    return total


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Run ``command`` and return (wall seconds, peak resident MB, the finished process, with its CPU
    seconds, user + system, in ``cpu_seconds``). The peak is the larger of /proc polled every 0.1 s (the
    process and its children together) and the kernel's ``ru_maxrss`` of the largest child
    (``getrusage(RUSAGE_CHILDREN)``, which only grows: a fresh process makes it that child's own)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = usage.ru_maxrss
    cpu_before = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def poll() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], _rss_kb(process.pid))
            time.sleep(0.1)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    out, err = process.communicate()
    seconds = time.perf_counter() - started
    watcher.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    kernel = usage.ru_maxrss
    peak_kb = max(peak[0], kernel if kernel > before else 0)
    done = subprocess.CompletedProcess(command, process.returncode, out, err)
    done.cpu_seconds = usage.ru_utime + usage.ru_stime - cpu_before  # type: ignore[attr-defined]
    return seconds, peak_kb / 1024, done


def generated_parquet(n: int) -> Path:
    """Return the folder of ``n`` generated requests as Parquet (``civicloop generate --parquet``, seed 1: the
    rows of :func:`generated_db`), generating it first when it is not in ``out/bench``."""
    folder = OUT / f"parquet-{n}"
    if not (folder / "manifest.json").exists():
        subprocess.run([*CIVICLOOP, "generate", "--requests", str(n), "--seed", "1", "--parquet", str(folder)],
                       check=True, capture_output=True)
    return folder


def bench_analyze_memory(quick: bool, source: str = "sqlite") -> dict[str, Any]:
    """Run ``civicloop analyze`` on N generated requests (10⁷ full, 10⁵ quick) read from the SQLite database
    (``source="sqlite"``) or from the same rows as Parquet (``"parquet"``, ``--parquet``) and return its peak
    resident memory (MB) against the size of what it reads (MB)."""
    n = 100_000 if quick else 10_000_000
    command = [*CIVICLOOP, "analyze", "--out", str(OUT / f"report-{n}-{source}"), "--no-store"]
    if source == "parquet":
        folder = generated_parquet(n)
        env = {**os.environ, "CIVICLOOP_DATABASE_URL": "sqlite:///:memory:"}
        command += ["--parquet", str(folder)]
        size_mb = sum(f.stat().st_size for f in folder.glob("*.parquet")) / 2**20
        what = "size of the Parquet files it reads (MB)"
    else:
        db = generated_db(n)
        env = {**os.environ, "CIVICLOOP_DATABASE_URL": f"sqlite:///{db}"}
        size_mb = db.stat().st_size / 2**20
        what = "size of the SQLite database it reads (MB)"
    seconds, peak_mb, done = run_measured(command, env)
    if done.returncode != 0:
        raise RuntimeError(f"civicloop analyze failed: {done.stderr[-300:]}")
    return {"rows": [(f"`civicloop analyze` on {n:,} requests ({source}): peak RSS (MB)", peak_mb, size_mb, what)],
            "detail": {"requests": n, "source": source, "seconds": seconds, "peak_rss_mb": peak_mb,
                       "database_mb": size_mb, "cpu_seconds": done.cpu_seconds,  # type: ignore[attr-defined]
                       "target_mb": 4096, "summary": done.stdout[-1500:]}}


SAMPLE_STREETS = ["云河区望湖街道", "云河区东桥街道", "青山区松林街道", "青山区北苑街道", "云河区柳岸镇",
                  "青山区石门乡"]
"""The sample city's streets and townships (``importers/sample_city.py``): the replay's addresses are a
building of one of their communities, 720 places in all, so that a request's duplicates are those of its
building (with six addresses, four in five generated requests were filed as duplicates)."""


def sample_address(i: int) -> str:
    """The address of replayed row ``i``: a building (1–60) of a community of a sample-city street."""
    street = SAMPLE_STREETS[i % len(SAMPLE_STREETS)]
    community = "第一社区" if (i // len(SAMPLE_STREETS)) % 2 == 0 else "第二社区"
    return f"{street}{community}{(i // 12) % 60 + 1}号楼"


def replay_rows(n: int, path: Path) -> int:
    """Write ``n`` generated requests (titles and descriptions of the cached 10⁵ generated database, in
    order, repeated if need be) to the CSV ``path`` with an address in the sample city (the replay's city,
    :func:`sample_address`); return the number written."""
    import sqlite3

    source = generated_db(100_000)
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as conn:
        texts = conn.execute("SELECT title, description FROM service_requests ORDER BY id LIMIT ?", (n,)).fetchall()
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["title", "detail", "address"])
        for i in range(n):
            title, detail = texts[i % len(texts)]
            writer.writerow([title, detail, sample_address(i)])
    return n


def bench_replay(quick: bool, model_path: Path, n: int | None = None) -> dict[str, Any]:
    """Replay ``n`` generated requests (default 200 quick, 10,000 full) through ``civicloop intake replay``
    on a fresh SQLite database of the sample city with the classifier at ``model_path``, then import the
    same rows without intake (one INSERT + commit each) into the same database; return both rates
    (requests/s) and the extrapolation to :data:`BEIJING_YEAR` requests in ``detail``."""


    n = n or (200 if quick else 10_000)
    folder = Path(tempfile.mkdtemp(prefix="bench-replay-", dir=OUT))
    url = f"sqlite:///{folder / 'replay.db'}"
    env = {**os.environ, "CIVICLOOP_DATABASE_URL": url, "CIVICLOOP_MODEL_PATH": str(model_path)}
    subprocess.run([*CIVICLOOP, "init"], env=env, check=True, capture_output=True)
    data = folder / "rows.csv"
    replay_rows(n, data)
    seconds, peak_mb, done = run_measured([*CIVICLOOP, "intake", "replay", "--data", str(data), "--batch",
                                           str(REPLAY_BATCH), "--json"], env)
    if done.returncode != 0:
        raise RuntimeError(f"civicloop intake replay failed: {done.stderr[-300:]}")

    figures = json.loads(done.stdout.strip().splitlines()[-1])
    cpu = done.cpu_seconds  # type: ignore[attr-defined]
    rate = n / seconds
    pipeline_rate = n / figures["wall_seconds"]
    import sqlite3

    with sqlite3.connect(f"file:{folder / 'replay.db'}?mode=ro", uri=True) as check:
        filed = [datetime.fromisoformat(t) for (t,) in check.execute(
            "SELECT created_at FROM service_requests ORDER BY id").fetchall()]
    half = len(filed) // 2
    halves = [half / max((filed[half - 1] - filed[0]).total_seconds(), 1e-9),
              (len(filed) - half) / max((filed[-1] - filed[half]).total_seconds(), 1e-9)] if half > 1 else None
    # the reference: the same rows imported as plain rows, one INSERT + commit each, into the same file
    with data.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[: min(n, 5_000)]
    import_rate = import_reference(url, rows)
    year_hours = BEIJING_YEAR / rate / 3600
    return {"rows": [(f"replay: import + classify + route of {n:,} requests (requests/s)", rate, import_rate,
                      "import of the same rows without intake, one INSERT + commit each (requests/s)")],
            "detail": {"requests": n, "seconds": seconds, "pipeline_seconds": figures["wall_seconds"],
                       "rate": rate, "pipeline_rate": pipeline_rate, "import_rate": import_rate,
                       "halves_rate": halves, "cpu_seconds": cpu, "cpu_ms_per_request": cpu / n * 1000,
                       "core_rate": n / cpu,
                       "load_average": os.getloadavg()[0],
                       "peak_rss_mb": peak_mb, "outcomes": figures["by_outcome"], "latency": figures["latency_seconds"],
                       "million_hours": 1_000_000 / rate / 3600, "beijing_year_hours": year_hours,
                       "beijing_year_fits_3h": year_hours <= 3, "needed_rate": BEIJING_YEAR / REPLAY_BUDGET_S,
                       "folder": str(folder)}}


def import_reference(url: str, rows: list[dict[str, str]]) -> float:
    """Import ``rows`` (``title``, ``detail``, ``address``) into the database at ``url`` as plain requests,
    one INSERT + commit each, without intake; return the rate (rows per second): the replay's reference."""
    from sqlalchemy import insert

    from civicloop.core.db import make_engine
    from civicloop.requests.models import ServiceRequest

    engine = make_engine(url)
    started = time.perf_counter()
    for row in rows:
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(insert(ServiceRequest).values(
                channel="hotline", title=row["title"][:200], description=row["detail"][:4000], address=row["address"],
                deadline_tier="7wd", status="submitted", created_at=now, updated_at=now, version=1, support_count=0,
                return_count=0, reopen_count=0, fallback=False))
    rate = len(rows) / (time.perf_counter() - started)
    engine.dispose()
    return rate


FULL = 10_000_000


def targets(results: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Return (target, measured, met?[, why not]) for issue 9 items 3, 5 (analyze) and 6 from the results
    of :func:`bench_dashboard`, :func:`bench_analyze_memory` and :func:`bench_replay` (the keys
    ``dashboard``, ``analyze_memory``, ``replay``); a set smaller than 10⁷ requests does not judge 3 and 5."""
    out: list[tuple[Any, ...]] = []
    small = "the quick set's 10⁵ requests do not judge the target (10⁷: `make bench`)"
    dash = results.get("dashboard", {})
    if "rows" in dash:
        n = dash["detail"]["requests"]
        for name, q in dash["detail"]["queries"].items():
            p95, plain = q["fast_p95_ms"], q["plain_p50_ms"]
            ok = p95 <= 200 and p95 * 10 <= plain
            why = small if n < FULL else (f"p95 {p95:,.0f} ms > 200 ms" if p95 > 200 else
                                           f"only {plain / p95:,.1f}× faster than plain SQL")
            out.append((f"dashboard on {n:,} requests, {name}: p95 ≤ 200 ms and ≥ 10× faster than plain SQL",
                        f"{p95:,.1f} ms, {plain / p95:,.0f}× ({plain:,.0f} ms plain)", ok and n >= FULL, why))
    memory = results.get("analyze_memory", {})
    if "rows" in memory:
        n, peak = memory["detail"]["requests"], memory["detail"]["peak_rss_mb"]
        source = memory["detail"].get("source", "sqlite")
        out.append((f"peak memory of `civicloop analyze` on {n:,} requests ({source}) < 4 GB", f"{peak:,.0f} MB",
                    peak < 4096 and n >= FULL, small if n < FULL else "above 4 GB"))
    replay = results.get("replay", {})
    if "rows" in replay:
        d = replay["detail"]
        out.append(("replay of a Beijing year (24,000,000 requests: import + classify + route) within 3 h",
                    f"{d['beijing_year_hours']:,.0f} h at {d['pipeline_rate']:,.1f} requests/s (measured on"
                    f" {d['requests']:,}; 10⁶ at that rate: {d['million_hours']:,.1f} h{_full_replay()})",
                    d["beijing_year_fits_3h"],
                    f"needs {d['needed_rate']:,.0f} requests/s; intake costs"
                    f" {d.get('cpu_ms_per_request', 1000 / d['pipeline_rate']):,.0f} ms of CPU per request in batches"
                    " of 32 (duplicate check, classifier, routing and ~10 statements: see the HTTP section), so 24"
                    f" million need {BEIJING_YEAR * d.get('cpu_ms_per_request', 0) / 1000 / 3600:,.0f} CPU-hours"
                    " against the 6 of two cores in 3 h"))
    return out


def _full_replay() -> str:
    """The last ``make bench-replay`` of at least 10⁶ requests (``out/bench/replay-scale.json``), as words for
    the replay's target row ("" when there is none)."""
    path = OUT / "replay-scale.json"
    if not path.exists():
        return ""
    d = json.loads(path.read_text(encoding="utf-8"))
    if d.get("requests", 0) < 1_000_000:
        return ""
    return (f"; replayed on PostgreSQL by `make bench-replay`, {d['at']}: {d['requests']:,} in"
            f" {d['seconds'] / 3600:.2f} h, {d['rate']:,.1f} requests/s, a Beijing year"
            f" {d['beijing_year_hours']:,.0f} h (its section below)")


def doc_section(results: dict[str, Any]) -> list[str]:
    """The section "Analytics at 10⁷ and the replay (issue 9)" of docs/benchmarks.md, from the results (the
    parts not measured in these results are said to be missing)."""
    if not any("rows" in results.get(name, {}) for name in ("dashboard", "analyze_memory", "replay")):
        return ["", "Not measured in this run (issue 9; `benchmarks/scale.py`, `--only dashboard analyze_memory"
                " replay`): dashboard queries over 10⁷ requests, peak memory of `civicloop analyze`, the replay."]
    lines = ["", "## Analytics at 10⁷ and the replay (issue 9)", "",
             "`benchmarks/scale.py` (called by `benchmarks/run.py`): the dashboards' queries, the memory of"
             " `civicloop analyze`, and the replay. Generated data: `civicloop generate --requests N --seed 1` into"
             " a SQLite file in `out/bench` (2024-01 to 2025-12; 10⁷ in the full set, 10⁵ quick)."]
    dash = results.get("dashboard", {})
    if "rows" in dash:
        d = dash["detail"]
        snap = d["snapshot"]
        lines += ["", "### Dashboard queries", "",
                  f"{d['requests']:,} requests, {snap['work_orders']:,} work orders; the SQLite database is"
                  f" {d['database_mb']:,} MB, the snapshot {d['snapshot_mb']:,} MB (written in"
                  f" {d['snapshot_refresh_s']:,.1f} s"
                  " by `write_snapshot`, as `civicloop analyze --snapshot` does). The queries are the app's"
                  " (`analytics/dashboard.py`; `GET /api/v1/dashboard`, and `metrics.three_rates` behind `GET"
                  " /api/v1/metrics` and the supervisor's ranking), each timed through the fast path (the Parquet"
                  f" snapshot, plus the rows filed since its watermark: that part cost {d['live_part_ms']:,.1f} ms when"
                  f" there were none) for {d['fast_runs']} windows (ends 3 days apart back from the last request; the"
                  f" months before the last), and as plain SQL on the operational table for the first {d['plain_runs']}"
                  " of them, whose answers must be equal (they were). One warm-up run of each first.", "",
                  "| query | fast p50 ms | fast p95 ms | fast p95 CPU ms | plain SQL p50 ms | plain ÷ fast (p95) |"
                  " rows answered | load average |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, q in d["queries"].items():
            lines.append(f"| {name} | {q['fast_p50_ms']:,.1f} | {q['fast_p95_ms']:,.1f} |"
                         f" {q.get('fast_cpu_p95_ms', float('nan')):,.1f} | {q['plain_p50_ms']:,.0f} |"
                         f" {q['plain_p50_ms'] / q['fast_p95_ms']:,.0f}× |"
                         f" {q['answer_rows'][0]:,}–{q['answer_rows'][1]:,} |"
                         f" {q.get('load_average', float('nan')):.1f} |")
        lines += ["", "CPU ms: the benchmark process's CPU time (every thread) per query; the wall-clock figures"
                  " include waiting for a core while other sessions used the machine (load average above)."]
    memory = results.get("analyze_memory", {})
    if "rows" in memory:
        m = memory["detail"]
        lines += ["", "### Memory of `civicloop analyze`", "",
                  f"`civicloop analyze --no-store` on {m['requests']:,} requests ({m['database_mb']:,.0f} MB of"
                  f" {'Parquet, `--parquet`' if m.get('source') == 'parquet' else 'SQLite'}): peak resident memory"
                  f" {m['peak_rss_mb']:,.0f} MB (the process and its children, `/proc`"
                  " every 0.1 s,"
                  f" and `ru_maxrss`), {m['seconds']:,.0f} s wall clock, {m.get('cpu_seconds', float('nan')):,.0f} s of"
                  " CPU. DuckDB works in a temporary database file with `--memory-limit` (1 GB by default) in memory."
                  + (" The source was the generated rows as Parquet, not the SQLite database: `reqs` is the same DuckDB"
                     " table either way (the finders' memory is the same); only the read that fills it differs."
                     if m.get("source") == "parquet" else "")]
    replay = results.get("replay", {})
    if "rows" in replay:
        r = replay["detail"]
        lat = r["latency"]
        cpu_ms = r.get("cpu_ms_per_request")
        core_rate = r.get("core_rate")
        cores = os.cpu_count() or 2
        year = r["beijing_year_hours"]
        idle_hours = BEIJING_YEAR / core_rate / cores / 3600 if core_rate else 0.0
        halves = r.get("halves_rate")
        dup = r["outcomes"].get("duplicate", 0) / max(r["requests"], 1)
        lines += ["", "### Replay: import + classify + route", "",
                  "`civicloop intake replay --batch 32` (the pipeline of `POST /api/v1/requests`: submit, locate,"
                  " duplicates, classify, route, dispatch or queue; 32 rows filed in one transaction and triaged in"
                  f" the next, as deferred intake's runner does) of {r['requests']:,} generated"
                  " requests (titles and descriptions of the generated set; addresses: a building of a community of"
                  " the sample city, 720 places) on a fresh SQLite database of the sample city (`civicloop init`)"
                  f" with the classifier of `make bench`: {r['pipeline_seconds']:,.0f} s in the pipeline"
                  f" ({r['pipeline_rate']:,.1f} requests/s), {r['seconds']:,.0f} s for the whole command with start-up"
                  f" and the model's loading ({r['rate']:,.1f} requests/s), peak RSS {r['peak_rss_mb']:,.0f} MB."
                  + (f" CPU: {cpu_ms:,.0f} ms per request ({core_rate:,.1f} requests/s per core; load average"
                     f" {r.get('load_average', float('nan')):.1f} on {cores} cores while it ran: other sessions"
                     " shared the machine)." if cpu_ms else "")
                  + f" Outcomes: {', '.join(f'{k} {v:,}' for k, v in sorted(r['outcomes'].items()))}; dispatch"
                  f" latency p50 {lat['p50'] * 1000 if lat['p50'] is not None else float('nan'):,.0f} ms. Reference:"
                  f" the same rows imported without intake, one INSERT + commit each: {r['import_rate']:,.0f}"
                  " requests/s.", "",
                  "Extrapolated linearly at the measured rate: 10⁶ requests in"
                  f" {r['million_hours']:,.1f} h, a Beijing year (24 million) in {year:,.0f} h = {year / 24:,.1f}"
                  f" days — {'within' if r['beijing_year_fits_3h'] else 'not within'} 3 h, which needs"
                  f" {r['needed_rate']:,.0f} requests/s."
                  + (f" On an idle machine, at the CPU it took: {core_rate:,.1f} requests/s on one core,"
                     f" {BEIJING_YEAR / core_rate / 3600:,.0f} h; with all {cores} cores busy (PostgreSQL and {cores}"
                     f" replay processes; SQLite has one writer) at best {idle_hours:,.0f} h,"
                     f" {idle_hours / 3:,.0f}× the 3 hours." if core_rate else "")
                  + f" Measured on {r['requests']:,} requests, not 10⁶: at this rate 10⁶ take"
                  f" {r['million_hours']:,.0f} h, more than this session had."
                  + (f" {dup:.0%} of these requests were filed as duplicates of an earlier one (the generated texts"
                     " are built from templates, so requests at one building read alike): a duplicate is located and"
                     " classified but not routed or dispatched, so the mix is cheaper than a city's (about 4 %"
                     " duplicates); in-process intake of the held-out real messages (1 % duplicates) on PostgreSQL"
                     " costs about 10 ms of CPU a request in batches and 17 ms one by one (HTTP section, third"
                     " round), so the real mix would not make the year shorter."
                     if dup > 0.1 else "")
                  + (f" Rate over the run (requests filed per second of the replay's own clock): first half"
                     f" {halves[0]:,.1f}, second half {halves[1]:,.1f}; the extrapolation assumes it stays there (the"
                     " duplicate check reads at most 500 open candidates, so it stops growing once they are there)."
                     if halves else "")]
    return [*lines, "", CHANGES]


CHANGES = """### Changes made for these figures

* **The dashboards' fast path** (`analytics/dashboard.py`; docs/analytics.md, "Dashboards over years of
  history"). Before, the three rates were one `GROUP BY` over `work_orders` whose `dispatched in the month OR
  called back in the month` no index serves (a scan of every order), and counts by category and district or
  hotspot cells would be a range scan of the request table. Now a snapshot (Parquet: requests sorted by
  filing time, work orders by dispatch time, row groups of 100,000, and the three rates' counts per unit and
  month) answers them through DuckDB, which reads only the row groups of the period; the requests filed
  since the snapshot's watermark come from `service_requests` through its `created_at` index. Used by
  `metrics.three_rates` (`GET /api/v1/metrics`, the supervisor's ranking) for settled months and by the new
  `GET /api/v1/dashboard`; without a snapshot, plain SQL as before. `tests/test_dashboard_fast.py` compares
  every answer with plain SQL on SQLite and PostgreSQL.
* Measured on a 10⁷-row replica of the snapshot before the real one existed (the 10⁵ snapshot repeated 100
  times, machine loaded by other sessions): a month's three rates read from the orders took 190–250 ms, from
  the monthly rollup 5–27 ms; the rollup's month of a row found by an ASOF join on month bounds took 88 s per
  refresh, by whole local days (the zone's offset is the same at every month start, as in Asia/Shanghai; an
  ASOF join otherwise) 7 s. Hotspot cells as one group-by over nine weeks took 110–150 ms against 210–320 ms
  for a plan that grouped the week first and joined its few hot cells to the baseline (three scans), so the
  single group-by stayed. Snappy instead of Zstandard: 74–114 against 78–160 ms, within the noise (kept:
  cheaper to decode).
* **`civicloop analyze` within bounded memory** (`analytics/duck.py`, `run.py`, `cli/analyze.py`): DuckDB
  works in a database file in a temporary folder with `--memory-limit` (1 GB by default) instead of in memory
  with its default limit of 80 % of the machine. `analytics/assets.py`: the ~24 % of requests naming a
  facility are fetched in batches and kept as slotted `Report`s (tracemalloc on the 24,271 of 10⁵: 5.7 kB
  per request held as dicts after one `fetchall`, 0.36 kB as `Report`s, 0.96 kB at the peak; ~2.4 million at
  10⁷, so ~13 GB before against ~0.9 GB); `analytics/replies.py`: the TF-IDF cosines of a month's replies in
  batches of 20,000 pairs with the document frequencies of all of them (the same numbers, checked on 45,000
  pairs; one count matrix peaked at 4.5 kB per pair, 1.8 GB for the ~400,000 replies of a month at 10⁷;
  the batches at 104 MB, whatever the number of pairs).
* **The replay's batches read and write less** (issue 9, item 6; after the figures above, which are of the
  tree before; `make bench-replay` below is after): a batch's requests are classified in one
  `predict_many` call (`requests/triage.py` `predict_batch`: 0.75 → 0.29 ms of CPU a request for 32, the
  same top three, `tests/test_triage_deferred.py`); the gazetteer's version (six aggregates) is read once
  per transaction and again after the session writes a place, unit or grid (`org/service.py`), and the
  units a route names once per transaction with the routes (`catalog/routing.py`); a duplicate's master
  is checked by the rowcount of its support count's `UPDATE`, not loaded with its work orders
  (`requests/intake.py`); the batch runs in one savepoint, again one request at a time only when one
  fails (`requests/triage_queue.py`); `civicloop intake replay` no longer loads each request for its
  figures. py-spy over a replay of 4,000 rows before: the gazetteer's version 6 % of the time, the
  master's load 5.5 %, the figures 9 %. Effect, 2,000 rows in batches of 32, one process, the same
  outcomes (379 dispatched, 537 queued, 1,084 duplicates), before and after alternately twice: SQLite
  40.6 / 43.0 → 29.3 / 27.5 s (CPU 47 / 49 → 35 / 34 s), PostgreSQL 62.5 / 57.1 → 40.3 / 45.4 s (CPU 59 /
  53 → 39 / 44 s). `run_batch(request_ids=…)` takes only the given requests, so that replays side by side
  (or beside a server's runners) triage their own: `make bench-replay` runs two on PostgreSQL, each with
  three of the six streets.
* **The duplicate check's indexes** (migration `0011_duplicate_check_indexes`, `requests/models.py`
  `OPEN_SQL`, `requests/triage_steps.py`): `make bench-replay N=100000` on the tree before slowed from
  4,832 to 2,944 requests a minute over its first eight minutes (30,272 requests): "the newest open requests of this
  street in the window" was served by the index on `street_id` alone and the status index (PostgreSQL's
  `BitmapAnd`), so it read every request ever filed in the street and every open request anywhere (40 ms
  for one query at 31,000 requests). Now partial indexes of the open requests (`WHERE status IN (…)`, the
  statuses written as constants in the query too, or neither database may use them) by grid, street and
  place label with `created_at`, one of the open requests without a place, and the text key with the
  status: each member of the query walks back from the newest open request at its place and stops at
  500 (`tests/test_intake_speedups.py` checks both databases' plans). The run below: 6,240 requests in
  the first minute, 3,584–5,120 a minute from the ninth on.
* **A batch reads a place's open requests once and writes once** (issue 9, item 6, fourth round:
  `requests/triage_steps.py` `BatchPool`, `requests/triage_queue.py` `run_batch`, `requests/triage.py`
  `triage(flush=False)`). py-spy over a replay of 12,000 rows on PostgreSQL (one process, batches of 32)
  after the third round: the duplicate check 30 % of the time, two thirds of it its query (up to 500 open
  requests of the street, grid or district, read and wrapped again for every request), and ORM flushes
  27 % (9.6 statements a request). Now a batch reads each of those shared members once (500 + the batch's
  size rows; the same-text and building members stay one small query a request), and each request's part
  is that read with the batch's own requests as the session has them now (left out once rejected, put
  where intake located them); the batch is triaged without autoflush and flushed once at its end, so its
  places, triage records and events go in a few multi-row statements (7.8 statements a request over a
  320-row replay; what remains is the filing's two INSERTs, the conditional UPDATE of each move and the
  reads of the categories and units a batch's routes name). The same statuses, masters, places, support
  counts, versions and events as request by request (`tests/test_batch_intake.py`, the candidate limit
  cut to 4 so that which requests are a place's newest decides; both databases). `make bench-replay
  N=40000` before and after, in the same session: 266.9 → 202.8 s, 149.9 → 197.3 requests/s (replay CPU
  10.3 → 8.1 ms a request, PostgreSQL's 2.4 → 1.4 ms), the same outcomes. The machine of this session
  ran the tree before at 149.9 requests/s over 40,000 (its first minute 11,968) where the previous
  session's measured 104 in the first minute of its 10⁵: machines of this kind differ, so only figures of
  one run (or one session) compare.
* **The run of 10⁶** (item 6; its section below, after the fourth round): 1,000,000 requests in 1.56 h,
  178.3 requests/s (186 in the first tenth), 8.9 ms of the replay's CPU and 1.6 ms of PostgreSQL's a
  request, peak 2.0 GB for the two processes. A Beijing year at that rate takes 37 h: not within 3 h,
  which needs 2,222 requests/s, 12× this; with 10.5 ms of CPU a request, 24 million need 70 CPU-hours
  against the 6 of two cores in 3 h, so no change of batching closes it on this machine. 96 % of these
  requests were duplicates (the 10⁵ generated texts repeat ten times, each at other buildings), a cheaper
  mix than a city's (~4 %). This machine's PostgreSQL runs with `autovacuum` off: the run eased from
  9,500 to 8,800 requests a minute between 200,000 and 290,000 requests while PostgreSQL's share of the
  CPU rose from 12 % to 19 % a backend (dead versions of rejected requests in the partial indexes, and
  the statistics of an empty city); one `VACUUM (ANALYZE)` of intake's tables by hand at 29 minutes
  brought it back to 10,300–12,000 a minute, and a loop beside the run did the same every 10 minutes
  after (the six vacuums of the section; `replay_scale.py` now does it itself where autovacuum is off,
  `--vacuum-every`, so the section's wording is the script's). The run used the tree at commit `9366cac`;
  the one change to `src/` after it (the batch pool takes a request's text key as stored) changes nothing
  for requests filed through intake, which all have one."""
