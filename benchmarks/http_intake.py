"""Intake over HTTP on PostgreSQL (issue 9, items 1, 2 and 5 for ``civicloop serve``).

What is measured, against a fresh PostgreSQL database (``bench_http`` on 127.0.0.1:5432, dropped after):

* **throughput and latency** of ``POST /api/v1/requests`` with intelligent intake on (locate, duplicates,
  classify, route, dispatch; the classifier's model of ``make bench``, the sample city and its routing
  rules of ``civicloop init``), durable commits (PostgreSQL's default ``synchronous_commit=on``; a 2xx
  means the request, its triage record and its work orders are committed). A real server
  (``civicloop serve --workers N``) is started as a subprocess; the load generator, in this process, is
  an asyncio HTTP/1.1 client keeping ``C`` connections busy (one request in flight per connection) for
  a fixed time after a warm-up in which the connections open one by one, each logged in with its own
  API token of the operator ``bench`` (``Authorization: Bearer``; ``--shared-token``: one for all). Figures:
  requests per second (completed 2xx per second of wall time), p50 and p99 latency in milliseconds
  (send to last byte of the answer), and the count of non-2xx answers and transport errors (must be 0);
* **the reference**, in the same run and database: ``pgbench`` at 8 clients (``-j 2``) running a
  one-row INSERT into a table with ``service_requests``' text columns, filled with a held-out message of
  the average size, same durability: transactions per second;
* **dispatch latency**: for the requests that intake dispatched without a person, the client's time
  from sending to the answer (the work order is committed when the 2xx arrives), p50/p99 in ms, and the
  ``latency_seconds`` intake stores in the triage record (handler start to routed order, before commit);
* **memory**: the peak resident set (``VmHWM`` of ``/proc/<pid>/status``, MB) of the server's
  processes, summed over the supervisor and its workers, after the load;
* **the floor**, in the same run and database (``--no-floor``: not), after civicloop's phases at the reported
  worker count: ``benchmarks/floor_app.py``, a minimal FastAPI app started as ``civicloop serve`` starts
  uvicorn, storing the same bodies durably in pgbench's table: ``POST /plain`` (one INSERT + commit per
  request, the issue's "plain FastAPI + one INSERT") and ``POST /batched`` (group commit: a writer task
  per process commits up to 64 rows at once before their 201s), at the same connections and seconds, the
  same figures; in the full set (``--floor-nodelay``) both also on a listening socket with which asyncio
  sets ``TCP_NODELAY`` (uvicorn's multi-worker socket leaves Nagle on: Kludex/uvicorn#3149);
* **deferred intake** (``--triage-mode deferred``: the server runs with ``CIVICLOOP_TRIAGE_MODE=deferred``,
  answering 201 once the request is stored and queued, and triaging the queue after): after each phase
  the benchmark waits for ``triage_queue`` to empty (polled every 0.2 s, at most 180 s; ``drain_seconds``),
  counts the outcomes of the phase's requests from their triage records and takes the dispatch latency
  from their ``latency_seconds`` (filing to routed work order, queue wait included); CPU per request
  also with the drain;
* **profile**: ``py-spy record`` (raw collapsed stacks, 200 Hz, samples holding the GIL) of one worker
  during a load phase on a warmed-up server, summarised as the functions with the largest inclusive and
  self shares of the samples.

Bodies are the 593 held-out Teddy Cup messages (``intelligence.data.load_split().test``), never seen by
the classifier. Each is filed at most once per grid: request *k* goes to grid *k // 593* of the sample
city's 24 (coordinates inside it), with the grid's name appended to the body as a citizen writes where
the matter is, so a message filed again is not a verbatim or same-place repeat (those are duplicates,
rejected without dispatch: a different, cheaper path). Before the load the database holds 1,200 open
requests of the last 30 days (training messages, 600 per district), so the duplicate check compares
each new request with its full 500 candidates as in a running city, not with an empty table.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from http_load import (
    DATABASE,
    Server,
    cpu_seconds,
    database_backends,
    load,
    percentile,
    status_kb,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench"
PG_DSN = os.environ.get("CIVICLOOP_BENCH_PG", "host=127.0.0.1 port=5432 user=postgres")
"""libpq connection string of the PostgreSQL server to use (the database name is added)."""
PASSWORD = "bench-operator-password"
PREFILL_PER_DISTRICT = 600


# --- the database ------------------------------------------------------------------------------------


def _admin(sql: str) -> None:
    with psycopg.connect(f"{PG_DSN} dbname=postgres", autocommit=True) as conn:
        conn.execute(sql)


def fresh_database(name: str = DATABASE) -> str:
    """Drop and create database ``name``; return its SQLAlchemy URL."""
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
    params = dict(part.split("=", 1) for part in PG_DSN.split())
    return (f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
            f"{params.get('port', '5432')}/{name}")


def drop_database(name: str = DATABASE) -> None:
    """Drop database ``name`` (forcing its connections closed)."""
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(url: str, model_path: Path, folder: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the CLI and the server: this database, the model, intake on, no rate limit
    worth the name, keys in ``folder``."""
    return {**os.environ, "CIVICLOOP_DATABASE_URL": url, "CIVICLOOP_MODEL_PATH": str(model_path),
            "CIVICLOOP_TRIAGE_ON_INTAKE": "true", "CIVICLOOP_RATE_LIMIT_INTAKE": "1000000/minute",
            "CIVICLOOP_KEY_FILE": str(folder / "civicloop.keys"), **(extra or {})}


def prepare(env: dict[str, str], folder: Path, tokens: int = 1) -> list[str]:
    """Build the schema and the sample city (``civicloop init``), create the operator ``bench``, and
    return ``tokens`` API tokens of theirs: the first from ``civicloop user token``, the others made
    in this process by the same function (``core.auth.issue_token``), which is quicker than a CLI
    start each."""
    from civicloop.core import auth
    from civicloop.core.db import make_engine, session_factory
    from civicloop.core.timeutil import utcnow

    cli = [sys.executable, "-m", "civicloop"]
    run = dict(env=env, cwd=folder, check=True, capture_output=True, text=True)
    subprocess.run([*cli, "init"], **run)  # type: ignore[call-overload]
    subprocess.run([*cli, "user", "create", "bench", "--role", "operator", "--password", PASSWORD], **run)  # type: ignore[call-overload]
    token = subprocess.run([*cli, "user", "token", "bench", "--name", "bench"], **run).stdout  # type: ignore[call-overload]
    secrets = [token.strip().splitlines()[-1].strip()]
    if tokens > 1:
        engine = make_engine(env["CIVICLOOP_DATABASE_URL"])
        with session_factory(engine)() as session:
            user = auth.get_user(session, "bench")
            for index in range(1, tokens):
                secret, _ = auth.issue_token(session, user=user, kind=auth.API, now=utcnow(), hours=None,
                                             name=f"bench-{index}")
                secrets.append(secret)
            session.commit()
        engine.dispose()
    return secrets


@dataclass(frozen=True)
class GridSpot:
    """A grid of the sample city: its id, name, district and a point inside it."""

    id: int
    name: str
    street_id: int
    district_id: int
    lat: float
    lon: float


def grids(url: str) -> list[GridSpot]:
    """Return the sample city's grids with a point at the centre of each (the polygons are rectangles)."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT g.id, g.name, g.geometry, s.id, s.parent_id FROM grids g JOIN org_units c ON c.id = g.community_id"
            " JOIN org_units s ON s.id = c.parent_id ORDER BY g.id").fetchall()
    out = []
    for grid_id, name, geometry, street_id, district_id in rows:
        shape = geometry if isinstance(geometry, dict) else json.loads(geometry)
        ring = shape["coordinates"][0]
        lon = sum(p[0] for p in ring[:-1]) / (len(ring) - 1)
        lat = sum(p[1] for p in ring[:-1]) / (len(ring) - 1)
        out.append(GridSpot(grid_id, name, street_id, district_id, round(lat, 6), round(lon, 6)))
    return out


def prefill(url: str, spots: Sequence[GridSpot], texts: Sequence[tuple[str, str]], per_district: int) -> int:
    """Insert ``per_district`` open (submitted) requests per district, created over the last 30 days,
    with the given (training) texts; return how many. They are the duplicate check's candidates."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    now = datetime.now(UTC)
    rng = random.Random(9)
    by_district: dict[int, list[GridSpot]] = {}
    for spot in spots:
        by_district.setdefault(spot.district_id, []).append(spot)
    rows = []
    for index in range(per_district * len(by_district)):
        district_spots = list(by_district.values())[index % len(by_district)]
        spot = district_spots[index // len(by_district) % len(district_spots)]
        title, detail = texts[index % len(texts)]
        created = now - timedelta(days=29.5 * rng.random())
        rows.append(("hotline", title[:200] or "无标题", detail[:4000] or title, "", "", "", spot.name,
                     spot.id, spot.street_id, spot.district_id, "7wd", 0, "submitted", created, created, 1, 0, 0,
                     False))
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO service_requests (channel, title, description, citizen_name, citizen_phone,"
            " citizen_id_number, address, grid_id, street_id, district_id, deadline_tier, support_count, status,"
            " created_at, updated_at, version, return_count, reopen_count, fallback)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
        _fill_keys(cur)
        cur.execute("ANALYZE")
    return len(rows)


def _fill_keys(cur: psycopg.Cursor[Any]) -> None:
    """Give the rows inserted by SQL the duplicate check's keys that intake stores with a request it files
    (migration 0009: ``text_key`` of the texts, ``place_key`` of the place label, here the grid's name), so
    that they are candidates as requests filed through the API are. No-op on a schema without them."""
    cur.execute("SELECT 1 FROM information_schema.columns WHERE table_name = 'service_requests'"
                " AND column_name = 'text_key'")
    if cur.fetchone() is None:
        return
    from civicloop.intelligence.duplicates import place_key, text_key

    cur.execute("SELECT r.id, r.title, r.description, g.name FROM service_requests r JOIN grids g ON g.id = r.grid_id"
                " WHERE r.text_key IS NULL")
    keys = [(text_key(title, description), place_key(grid), rid) for rid, title, description, grid in cur.fetchall()]
    cur.executemany("UPDATE service_requests SET text_key = %s, place_key = %s WHERE id = %s", keys)


# --- the bodies ----------------------------------------------------------------------------------------


def bodies(messages: Sequence[tuple[str, str]], spots: Sequence[GridSpot]) -> Iterator[bytes]:
    """Yield the JSON bodies of ``POST /api/v1/requests``: message *k mod n* in grid *k // n* (see the
    module docstring), channel ``hotline`` as an operator files it. Cycles after every grid had every
    message (then repeats are duplicates)."""
    k = 0
    while True:
        title, detail = messages[k % len(messages)]
        spot = spots[(k // len(messages)) % len(spots)]
        body = {"channel": "hotline", "title": title[:200] or "无标题",
                "description": f"{(detail or title)[:3900]}\n地点：{spot.name}附近", "address": spot.name,
                "lat": spot.lat, "lon": spot.lon}
        yield json.dumps(body, ensure_ascii=False).encode("utf-8")
        k += 1


# --- the reference: pgbench -----------------------------------------------------------------------------


REFERENCE_TABLE = """CREATE TABLE bench_ref (
    id serial PRIMARY KEY, channel varchar(20) NOT NULL, title varchar(200) NOT NULL, description text NOT NULL,
    address varchar(500) NOT NULL, deadline_tier varchar(8) NOT NULL, status varchar(20) NOT NULL,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"""


def _sql_text(text: str) -> str:
    # pgbench reads ':name' as a variable and a newline ends nothing inside a literal, but keep it one line
    return "'" + re.sub(r"[:\\\r\n]", " ", text).replace("'", "''") + "'"


def pgbench(url: str, body: bytes, seconds: float, folder: Path, clients: int = 8) -> dict[str, Any]:
    """Run ``pgbench -n -c clients -j 2 -T seconds`` with a one-row INSERT of ``body``'s texts into
    ``bench_ref`` (``service_requests``' text columns) and return ``{"tps", "latency_ms", "output"}``."""
    fields = json.loads(body)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_ref")
        conn.execute(REFERENCE_TABLE)
    script = folder / "insert.sql"
    script.write_text(
        "INSERT INTO bench_ref (channel, title, description, address, deadline_tier, status, created_at, updated_at)"
        f" VALUES ('hotline', {_sql_text(fields['title'])}, {_sql_text(fields['description'])},"
        f" {_sql_text(fields['address'])}, '7wd', 'submitted', now(), now());\n", encoding="utf-8")
    params = dict(part.split("=", 1) for part in PG_DSN.split())
    binary = shutil.which("pgbench") or "/usr/bin/pgbench"
    done = subprocess.run([binary, "-n", "-c", str(clients), "-j", "2", "-T", str(round(seconds)), "-f", str(script),
                           "-h", params.get("host", "127.0.0.1"), "-p", params.get("port", "5432"),
                           "-U", params.get("user", "postgres"), DATABASE], capture_output=True, text=True, check=True)
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
    if tps is None:
        raise RuntimeError(f"pgbench printed no tps: {done.stdout[-500:]} {done.stderr[-500:]}")
    return {"tps": float(tps.group(1)), "latency_ms": float(latency.group(1)) if latency else None,
            "clients": clients, "seconds": round(seconds)}


# --- the profile -----------------------------------------------------------------------------------------


def _frame_name(frame: str) -> str:
    # py-spy's raw frames read "function (path/to/file.py:123)": keep the function and the module path
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    function, path = match.groups()
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{function} ({path})"


def summarise_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """Read py-spy's raw (collapsed) stacks and return the total samples and the functions with the
    largest inclusive (on the stack) and self (at the top) shares, as ``[name, share]`` lists."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if not f.startswith("process ") and
                  not f.startswith("thread ")]
        total += count
        for name in set(frames):
            inclusive[name] += count
        if frames:
            own[frames[-1]] += count
    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(n / total, 4)] for name, n in counter.most_common(top)] if total else []
    return {"samples": total, "inclusive": share(inclusive), "self": share(own)}


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Start ``py-spy record`` on ``pid`` for ``seconds``: raw stacks, 200 Hz, only the samples of the
    thread holding the GIL (``--gil``: where the process spends CPU in Python, not threads waiting for
    the database or the GIL); return the process (``None`` when py-spy is not installed)."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(binary).exists():
        return None
    return subprocess.Popen([binary, "record", "--pid", str(pid), "--duration", str(round(seconds)), "--rate", "200",
                             "--format", "raw", "--output", str(out), "--nonblocking", "--gil"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- the whole benchmark ----------------------------------------------------------------------------------


def triage_latencies(url: str, since: datetime) -> dict[str, float]:
    """Return p50/p99/max (ms) of ``latency_seconds`` of the triage records of requests dispatched by
    intake since ``since`` (handler start to routed work order, as intake stores it)."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        values = [row[0] for row in conn.execute(
            "SELECT latency_seconds FROM triages WHERE outcome = 'auto_dispatched' AND triaged_at >= %s"
            " AND latency_seconds IS NOT NULL", (since,))]
    return {"n": len(values), "p50_ms": percentile(values, 50) * 1000, "p99_ms": percentile(values, 99) * 1000,
            "max_ms": max(values, default=float("nan")) * 1000}


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def queue_length(url: str) -> int:
    """Return how many requests wait in the deferred intake queue (``triage_queue``)."""
    with psycopg.connect(_dsn(url)) as conn:
        row = conn.execute("SELECT count(*) FROM triage_queue").fetchone()
    return int(row[0]) if row else 0


def drain(url: str, timeout: float = 180.0, every: float = 0.2) -> tuple[float, bool]:
    """Wait until the deferred intake queue is empty (polled every ``every`` seconds, at most ``timeout``);
    return (seconds waited, emptied?)."""
    start = time.monotonic()
    while True:
        if queue_length(url) == 0:
            return time.monotonic() - start, True
        if time.monotonic() - start >= timeout:
            return time.monotonic() - start, False
        time.sleep(every)


def triage_of(url: str, ids: Sequence[int]) -> tuple[dict[str, int], dict[str, float]]:
    """Return the outcomes of the triage records of requests ``ids`` (``untriaged``: none yet) and p50/p99/
    max (ms) of ``latency_seconds`` of those auto-dispatched (filing to routed work order)."""
    with psycopg.connect(_dsn(url)) as conn:
        rows = conn.execute("SELECT outcome, latency_seconds FROM triages WHERE request_id = ANY(%s)",
                            (list(ids),)).fetchall()
    outcomes: Counter[str] = Counter(str(outcome) for outcome, _ in rows)
    if len(ids) > len(rows):
        outcomes["untriaged"] = len(ids) - len(rows)
    values = [latency for outcome, latency in rows if outcome == "auto_dispatched" and latency is not None]
    return dict(outcomes), {"n": len(values), "p50_ms": percentile(values, 50) * 1000,
                            "p99_ms": percentile(values, 99) * 1000,
                            "max_ms": max(values, default=float("nan")) * 1000}


def phase(server: Server, url: str, tokens: Sequence[str], feed: Iterator[bytes], connections: int,
          seconds: float, deferred: bool) -> dict[str, Any]:
    """One load phase of ``civicloop serve`` (:func:`load`) as a dict of figures. Deferred intake: then
    waits for the queue to drain (``drain_seconds``, ``drained``), takes the outcomes from the triage
    records of the phase's requests and the dispatch latency (``dispatch_p50_ms``, ``dispatch_p99_ms``,
    ``triage_latency``) from their ``latency_seconds`` (filing to routed order, queue wait included), and
    adds the CPU per request of load and drain together (``*_cpu_ms_per_request_with_drain``)."""
    pids, backends = server.pids(), database_backends()
    cpu_before = {p: cpu_seconds(p) for p in pids}
    db_before = {p: cpu_seconds(p) for p in backends}
    result = load(server, tokens, feed, connections, seconds)
    figures = asdict(result)
    ids = figures.pop("request_ids")
    figures["dispatch_source"] = "answer"  # sent → 2xx with the routed order in it
    if deferred:
        waited, emptied = drain(url)
        server_cpu = sum(cpu_seconds(p) - cpu_before.get(p, 0.0) for p in server.pids())
        database_cpu = sum(cpu_seconds(p) - db_before.get(p, 0.0) for p in database_backends())
        outcomes, latency = triage_of(url, ids)
        figures.update(
            drain_seconds=round(waited, 2), drained=emptied, outcomes=outcomes, triage_latency=latency,
            dispatch_p50_ms=latency["p50_ms"], dispatch_p99_ms=latency["p99_ms"], dispatch_source="triage record",
            server_cpu_ms_per_request_with_drain=server_cpu / max(result.answered, 1) * 1000,
            database_cpu_ms_per_request_with_drain=database_cpu / max(result.answered, 1) * 1000)
    return figures


FLOOR_APP = Path(__file__).resolve().with_name("floor_app.py")
FLOOR_PATHS = ("/plain", "/batched")


def floor_phases(url: str, workers: int, feed: Iterator[bytes], connections: Sequence[int], seconds: float,
                 folder: Path, nodelay: bool = False) -> dict[str, Any]:
    """The floor (``benchmarks/floor_app.py``): a minimal FastAPI app under uvicorn with ``workers``
    workers, started as ``civicloop serve`` starts uvicorn, storing the same bodies in ``bench_ref``:
    ``POST /plain`` (one INSERT + commit per request) and ``POST /batched`` (group commit), each driven
    like the civicloop phases. ``nodelay``: then both again on a server whose listening socket lets
    asyncio set ``TCP_NODELAY`` (``floor_app.py --nodelay``). Returns ``{"workers", "plain": [phase, …],
    "batched": [phase, …], ["plain_nodelay": …, "batched_nodelay": …,] "peak_rss_mb"}``."""
    env = {**os.environ, "FLOOR_DSN": _dsn(url)}
    out: dict[str, Any] = {"workers": workers}
    for flag in (False, True) if nodelay else (False,):
        argv = [sys.executable, str(FLOOR_APP), "--workers", str(workers), "--port", "{port}",
                *(["--nodelay"] if flag else [])]
        suffix = "_nodelay" if flag else ""
        with Server(argv, env, folder, OUT / f"http-floor-{workers}{suffix}.log") as server:
            for path in FLOOR_PATHS:
                load(server, [], feed, 4, 1.0, warmup=1.0, path=path)  # every worker opens its connections
                figures = [asdict(load(server, [], feed, c, seconds, path=path)) for c in connections]
                for item in figures:
                    item.pop("request_ids")
                    print(f"  floor {path}{' TCP_NODELAY' if flag else ''}, workers {workers},"
                          f" {item['connections']} connections: {item['rps']:.1f} rps, p50 {item['p50_ms']:.1f} ms,"
                          f" p99 {item['p99_ms']:.1f} ms, errors {item['errors']}; CPU ms/request server"
                          f" {item['server_cpu_ms_per_request']:.2f},"
                          f" database {item['database_cpu_ms_per_request']:.2f};"
                          f" machine busy {item['machine_busy_share']:.0%}", flush=True)
                out[path.strip("/") + suffix] = figures
            out["peak_rss_mb" + suffix] = round(server.peak_rss_mb(), 1)
    return out


def serve_argv(workers: int) -> list[str]:
    """``civicloop serve`` with ``workers`` worker processes (``{port}`` is filled in by :class:`Server`)."""
    return [sys.executable, "-m", "civicloop", "serve", "--workers", str(workers), "--port", "{port}"]


def run(model_path: Path, *, quick: bool, workers: Sequence[int] = (), connections: Sequence[int] = (16, 64),
        seconds: float | None = None, argv: Sequence[str] | None = None, env_extra: dict[str, str] | None = None,
        shared_token: bool = False, profile_it: bool = True, keep: bool = False, floor: bool = True,
        floor_nodelay: bool | None = None, triage_mode: str = "inline") -> dict[str, Any]:
    """Run the whole HTTP benchmark and return its figures (see the module docstring).

    ``workers``: the worker counts to try (default: 2 in the quick set; 1, 2, 3 in the full one); the
    count with the most requests per second at the most connections is the one reported and profiled.
    ``seconds``: measured seconds per phase (default 8 quick, 20 full). ``pgbench`` runs before the
    first and after the last count; the reference is the mean of the two. ``shared_token``: every
    connection sends the same API token (default: each its own, as operators each logged in).
    ``argv``: another server command (``{port}`` and ``{workers}`` filled in) for experiments;
    ``env_extra``: settings for the server. ``floor``: after the counts, the floor app
    (``benchmarks/floor_app.py``, :func:`floor_phases`) at the best count, same connections, bodies and
    seconds; ``floor_nodelay`` (default: not ``quick``): also with ``TCP_NODELAY``. ``triage_mode``:
    ``inline`` (intake in the request) or ``deferred`` (``CIVICLOOP_TRIAGE_MODE=deferred``: intake after
    the answer; see :func:`phase`)."""
    from civicloop.intelligence.data import load_split

    if triage_mode not in ("inline", "deferred"):
        raise ValueError(f"triage_mode: inline or deferred, not {triage_mode!r}")
    deferred = triage_mode == "deferred"

    seconds = seconds or (8.0 if quick else 20.0)
    workers = list(workers) or ([2] if quick else [1, 2, 3])
    folder = Path(tempfile.mkdtemp(prefix="bench-http-"))
    OUT.mkdir(parents=True, exist_ok=True)
    split = load_split()
    messages = [(s.title, s.detail) for s in split.test]
    training = [(s.title, s.detail) for s in split.train if s.title and s.detail]
    url = fresh_database()
    env = server_env(url, model_path, folder,
                     {**({"CIVICLOOP_TRIAGE_MODE": "deferred"} if deferred else {}), **(env_extra or {})})

    def command(count: int) -> list[str]:
        return [a.replace("{workers}", str(count)) for a in argv] if argv else serve_argv(count)

    try:
        tokens = prepare(env, folder, tokens=1 if shared_token else max(connections))
        spots = grids(url)
        prefilled = prefill(url, spots, training, PREFILL_PER_DISTRICT)
        feed = bodies(messages, spots)
        mean = statistics.mean(len(t) + len(d) for t, d in messages)
        typical = min(messages, key=lambda m: abs(len(m[0]) + len(m[1]) - mean))
        typical_body = next(bodies([typical], spots[:1]))
        references = [pgbench(url, typical_body, seconds, folder)]
        configs: list[dict[str, Any]] = []
        for count in workers:
            since = datetime.now(UTC)
            with Server(command(count), env, folder, OUT / f"http-server-{count}.log") as server:
                load(server, tokens, feed, 4, 2.0, warmup=2.0)  # every worker loads its model and warms up
                if deferred:
                    drain(url)
                start_rss = sum(status_kb(p, "VmRSS") for p in server.pids()) / 1024
                phases = [phase(server, url, tokens, feed, c, seconds, deferred) for c in connections]
                config = {"workers": count, "phases": phases, "peak_rss_mb": round(server.peak_rss_mb(), 1),
                          "start_rss_mb": round(start_rss, 1), "processes": len(server.pids())}
            config["triage_latency"] = triage_latencies(url, since)
            configs.append(config)
            for item in phases:
                drained = (f"; queue drained after {item['drain_seconds']:.1f} s"
                           f"{'' if item['drained'] else ' (gave up)'}, dispatch p99 (triage record)"
                           f" {item['dispatch_p99_ms']:.0f} ms" if deferred else "")
                print(f"  {triage_mode}: workers {count}, {item['connections']} connections: {item['rps']:.1f} rps, "
                      f"p50 {item['p50_ms']:.0f} ms, p99 {item['p99_ms']:.0f} ms, errors {item['errors']}; "
                      f"CPU ms/request server {item['server_cpu_ms_per_request']:.1f}, "
                      f"database {item['database_cpu_ms_per_request']:.1f}; machine busy "
                      f"{item['machine_busy_share']:.0%} (workers {item['worker_cpu_shares']} of a core);"
                      f" peak RSS {config['peak_rss_mb']:.0f} MB{drained}", flush=True)
        best = max(configs, key=lambda c: c["phases"][-1]["rps"])
        floor_figures = floor_phases(url, best["workers"], feed, connections, seconds, folder,
                                     nodelay=not quick if floor_nodelay is None else floor_nodelay) if floor else {}
        references.append(pgbench(url, typical_body, seconds, folder))
        reference = {**references[0], "tps": statistics.mean(r["tps"] for r in references),
                     "runs": [r["tps"] for r in references]}
        print(f"  pgbench (8 clients): {reference['runs']} tps", flush=True)
        prof: dict[str, Any] = {}
        count = best["workers"]
        if profile_it:
            with Server(command(count), env, folder, OUT / "http-server-profile.log") as server:
                load(server, tokens, feed, 16, 6.0, warmup=2.0)  # warm, as in the measured phases
                raw = OUT / "http-intake-profile.txt"
                spy = profile(server.workers()[0], seconds, raw)
                if spy is not None:
                    profiled = load(server, tokens, feed, connections[-1], seconds, warmup=0.5)
                    spy.wait(timeout=seconds + 60)
                    if raw.exists():
                        prof = {"workers": count, "connections": connections[-1], "rps_while_profiled": profiled.rps,
                                "file": str(raw.relative_to(ROOT)), **summarise_profile(raw, top=120)}
        return {"pgbench": reference, "configs": configs, "best_workers": count, "profile": prof,
                "floor": floor_figures, "triage_mode": triage_mode,
                "prefilled": prefilled, "seconds": seconds, "shared_token": shared_token,
                "messages": len(messages), "typical_chars": len(typical[0]) + len(typical[1])}
    finally:
        if not keep:
            drop_database()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, nargs="*", default=[])
    parser.add_argument("--connections", type=int, nargs="*", default=[16, 64])
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--argv", help="server command, with {port} and {workers}", default="")
    parser.add_argument("--env", nargs="*", default=[], help="NAME=VALUE for the server")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    parser.add_argument("--shared-token", action="store_true", help="one API token for every connection")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor app (benchmarks/floor_app.py)")
    parser.add_argument("--floor-nodelay", choices=("yes", "no"),
                        help="the floor app also with TCP_NODELAY (default: yes, no with --quick)")
    parser.add_argument("--triage-mode", choices=("inline", "deferred"), default="inline",
                        help="intake in the request (inline) or after the answer (deferred)")
    args = parser.parse_args()
    model_path = OUT / "classifier.joblib"
    if not model_path.exists():
        subprocess.run([sys.executable, "-m", "civicloop", "model", "train", "--out", str(model_path)], check=True)
    result = run(model_path, quick=args.quick, workers=args.workers, connections=args.connections,
                 seconds=args.seconds, argv=args.argv.split() if args.argv else None,
                 env_extra=dict(item.split("=", 1) for item in args.env), shared_token=args.shared_token,
                 profile_it=not args.no_profile, floor=not args.no_floor,
                 floor_nodelay=None if args.floor_nodelay is None else args.floor_nodelay == "yes",
                 triage_mode=args.triage_mode)
    text = json.dumps(result, ensure_ascii=False, indent=1, default=str)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
