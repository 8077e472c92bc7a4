"""The load side of ``benchmarks/http_intake.py``: a server in a subprocess, an asyncio HTTP/1.1 client
keeping C connections busy, and the CPU and memory of the processes involved (read from ``/proc``).
Used by ``http_intake.py`` for civicloop and for the floor app (``floor_app.py``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATABASE = os.environ.get("CIVICLOOP_BENCH_HTTP_DB", "bench_http")
"""The database the benchmark creates and drops (``CIVICLOOP_BENCH_HTTP_DB``: another name, so that two runs
on one PostgreSQL server do not drop each other's)."""
INTAKE_PATH = "/api/v1/requests"


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


# --- the server ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    """Return ``pid``'s descendants (from ``/proc/<pid>/task/*/children``)."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            kids = [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            out += [kid, *children(kid)]
    return out


def status_kb(pid: int, field_name: str) -> int:
    """Return a ``kB`` field (``VmHWM``, ``VmRSS``) of ``/proc/<pid>/status``; 0 when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """Return user + system CPU seconds of ``pid`` (``/proc/<pid>/stat``); 0 when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_backends(database: str = DATABASE) -> list[int]:
    """Return the pids of PostgreSQL's backends connected to ``database`` (their process titles read
    ``postgres: USER DATABASE HOST(PORT) STATE``)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        parts = title.split()  # "postgres: [15/main:] USER DATABASE HOST(PORT) STATE"
        if parts[:1] == ["postgres:"] and database in parts[2:4]:
            out.append(int(entry.name))
    return out


def machine_busy() -> tuple[float, float]:
    """Return (busy, total) jiffies of all cores since boot (``/proc/stat``), for the machine's load."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values) - idle), float(sum(values))


class Server:
    """A civicloop server in a subprocess, on a free port; a context manager that stops it."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], folder: Path, log: Path) -> None:
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.env, self.folder, self.log_path = env, folder, log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.folder, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the server did not answer in 180 s: see {self.log_path}")

    def pids(self) -> list[int]:
        """The supervisor's pid first, then its workers'."""
        assert self.process is not None
        return [self.process.pid, *children(self.process.pid)]

    def workers(self) -> list[int]:
        """The processes that serve requests: the workers, or the one process with ``--workers 1``."""
        pids = self.pids()
        python_kids = [p for p in pids[1:] if status_kb(p, "VmRSS") > 50_000]
        return python_kids or pids[:1]

    def peak_rss_mb(self) -> float:
        """Sum of ``VmHWM`` (peak resident set) over the server's processes, in MB."""
        return sum(status_kb(p, "VmHWM") for p in self.pids()) / 1024

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()


# --- the load generator -----------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a POST and reads the answer (Content-Length or
    chunked), with no work beyond that: the load generator shares the server's two cores."""

    def __init__(self, host: str, port: int, headers: bytes) -> None:
        self.host, self.port, self.headers = host, port, headers
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n").encode("ascii") + self.headers + b"\r\n"
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed by the server")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            payload = b"".join(parts)
        else:
            payload = await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


@dataclass
class LoadResult:
    """One load phase: ``connections`` busy for ``seconds`` (answers before ``warmup`` seconds not counted;
    ``seconds`` runs from then to the last answer)."""

    connections: int
    seconds: float
    requests: int = 0
    ok: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    rps: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    dispatch_p50_ms: float = 0.0
    dispatch_p99_ms: float = 0.0
    client_cpu_share: float = 0.0
    server_cpu_share: float = 0.0
    database_cpu_share: float = 0.0
    machine_busy_share: float = 0.0
    server_cpu_ms_per_request: float = 0.0
    database_cpu_ms_per_request: float = 0.0
    answered: int = 0  # every answer of the phase, warm-up included (for the CPU per request)
    worker_cpu_shares: list[float] = field(default_factory=list)  # each server process, of one core
    request_ids: list[int] = field(default_factory=list)  # "id" of each measured 2xx answer (not reported)


async def _load(host: str, port: int, tokens: Sequence[str], feed: Iterator[bytes], connections: int,
                seconds: float, warmup: float, path: str = INTAKE_PATH) -> LoadResult:
    pool = [Connection(host, port, f"Authorization: Bearer {tokens[i % len(tokens)]}\r\n".encode("ascii")
                       if tokens else b"") for i in range(connections)]
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from, end = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    dispatched: list[float] = []
    ids: list[int] = []
    statuses: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    samples: list[str] = []
    last_done = measure_from
    answered = 0

    async def client(index: int, conn: Connection) -> None:
        nonlocal last_done, answered
        # connections open one by one over the first half of the warm-up, as clients arrive: opened at
        # once, one worker's accept loop takes them all (uvicorn's workers share one listening socket)
        await asyncio.sleep(index * warmup / 2 / connections)
        while loop.time() < end:
            body = next(feed)
            sent = loop.time()
            try:
                status, payload = await conn.post(path, body)
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                await conn.close()
                status, payload = 0, repr(exc).encode()
            done = loop.time()
            answered += 1
            if done < measure_from:  # answered during the warm-up; one sent then and answered later counts
                continue
            last_done = max(last_done, done)
            statuses[str(status)] += 1
            if 200 <= status < 300:
                latencies.append(done - sent)
                answer = json.loads(payload)  # civicloop: the request with "triage"; the floor app: {"id"}
                if isinstance(answer.get("id"), int):
                    ids.append(answer["id"])
                outcome = (answer.get("triage") or {}).get("outcome", "none")
                outcomes[outcome] += 1
                if outcome == "auto_dispatched":
                    dispatched.append(done - sent)
            elif len(samples) < 5:
                samples.append(f"{status}: {payload[:300].decode('utf-8', 'replace')}")

    await asyncio.gather(*(client(i, c) for i, c in enumerate(pool)))
    for conn in pool:
        await conn.close()
    wall = max(last_done - measure_from, 1e-9)
    ok = len(latencies)
    total = sum(statuses.values())
    return LoadResult(
        connections=connections, seconds=round(wall, 3), requests=total, ok=ok, errors=total - ok,
        statuses=dict(statuses), error_samples=samples, rps=ok / wall,
        p50_ms=percentile(latencies, 50) * 1000, p90_ms=percentile(latencies, 90) * 1000,
        p99_ms=percentile(latencies, 99) * 1000, max_ms=max(latencies, default=float("nan")) * 1000,
        outcomes=dict(outcomes), dispatch_p50_ms=percentile(dispatched, 50) * 1000,
        dispatch_p99_ms=percentile(dispatched, 99) * 1000, answered=answered, request_ids=ids)


def load(server: Server, tokens: Sequence[str], feed: Iterator[bytes], connections: int, seconds: float,
         warmup: float = 2.0, path: str = INTAKE_PATH) -> LoadResult:
    """Keep ``connections`` connections busy with intake requests (``POST path``) for ``warmup + seconds``
    seconds and return the figures of the last ``seconds``. Connection *i* sends token *i mod
    len(tokens)* (no ``Authorization`` header when ``tokens`` is empty). CPU
    figures cover the whole phase: shares of the machine's cores (this load generator, the server's
    processes, PostgreSQL's backends on the database, the whole machine with other users), and CPU
    milliseconds per request filed (server, database)."""
    pids, backends = server.pids(), database_backends()
    each_before = {p: cpu_seconds(p) for p in pids}
    cpu_before = sum(each_before.values())
    db_before = {p: cpu_seconds(p) for p in backends}
    busy_before, total_before = machine_busy()
    own_before, wall_before = time.process_time(), time.perf_counter()
    try:
        import uvloop  # the load generator's own loop: the cheaper, the less it takes from the server
        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(_load("127.0.0.1", server.port, tokens, feed, connections, seconds, warmup, path))
    wall = time.perf_counter() - wall_before
    cores = os.cpu_count() or 1
    server_cpu = sum(cpu_seconds(p) for p in server.pids()) - cpu_before
    database_cpu = sum(cpu_seconds(p) - db_before.get(p, 0.0) for p in database_backends())
    busy_after, total_after = machine_busy()
    filed = result.answered
    result.client_cpu_share = (time.process_time() - own_before) / wall / cores
    result.server_cpu_share = server_cpu / wall / cores
    # keep-alive connections stay with the process that accepted them: an uneven split shows here
    result.worker_cpu_shares = [round((cpu_seconds(p) - each_before.get(p, 0.0)) / wall, 3) for p in server.workers()]
    result.database_cpu_share = database_cpu / wall / cores
    result.machine_busy_share = (busy_after - busy_before) / max(total_after - total_before, 1.0)
    result.server_cpu_ms_per_request = server_cpu / max(filed, 1) * 1000
    result.database_cpu_ms_per_request = database_cpu / max(filed, 1) * 1000
    return result
