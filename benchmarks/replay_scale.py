"""Issue 9, item 6 at full size: replay N generated requests (default 1,000,000) through intake on PostgreSQL.

``make bench-replay`` (``N=…``, ``PROCESSES=…``, ``BATCH=…``) or ``python benchmarks/replay_scale.py
--requests N --processes P --batch B``. Long: about N ÷ the rate of ``make bench``'s replay row, so not
part of ``make bench``.

What it does, in one run on a fresh PostgreSQL database (``civicloop init``: the sample city, its routing
table, the model of ``make bench``):

* writes N rows (title and body of the cached 10⁵ generated requests, in order, repeated; an address of
  the sample city, ``scale.sample_address``) into P files, each street's rows into one file in their
  order, so that the requests one duplicate check compares are filed by one process in the file's order
  (a city replaying its history would split it by district the same way);
* runs P ``civicloop intake replay --batch B`` side by side (each files B rows, default 32, in one
  transaction, then triages them in the next: locate, duplicates, classify, route, dispatch or queue), and
  every ``--every`` seconds counts the triage records, for the rate along the way (does it fall as the tables
  grow?);
* where the server's ``autovacuum`` is off (this machine), vacuums and analyses intake's tables every
  ``--vacuum-every`` seconds (default 600) in its stead (:func:`_vacuum`);
* the reference, in the same run and database: the same rows imported without intake, one INSERT +
  commit each (``scale.import_reference``).

Writes ``out/bench/replay-scale.json`` and the section between :data:`BEGIN` and :data:`END` of
docs/benchmarks.md (added at the end when missing; ``--render`` writes it again from the JSON); drops the
database at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import http_intake  # benchmarks/http_intake.py: the PostgreSQL database
import http_load  # benchmarks/http_load.py: /proc readings
import scale  # benchmarks/scale.py: the generated rows, the addresses, the reference

DATABASE = "civicloop_bench_replay"
DOC = scale.ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- replay-scale: written by benchmarks/replay_scale.py -->"
END = "<!-- /replay-scale -->"


def write_parts(n: int, processes: int, folder: Path) -> list[Path]:
    """Write ``n`` replay rows (``scale.replay_rows``' texts and addresses) into ``processes`` CSV files,
    row ``i`` into file ``(i mod 6) mod processes``: each of the six streets' rows in one file, in order.
    Returns the files."""
    import sqlite3

    source = scale.generated_db(100_000)
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as conn:
        texts = conn.execute("SELECT title, description FROM service_requests ORDER BY id LIMIT ?", (n,)).fetchall()
    paths = [folder / f"rows-{k}.csv" for k in range(processes)]
    handles = [path.open("w", encoding="utf-8", newline="") for path in paths]
    try:
        writers = [csv.writer(handle) for handle in handles]
        for writer in writers:
            writer.writerow(["title", "detail", "address"])
        streets = len(scale.SAMPLE_STREETS)
        for i in range(n):
            title, detail = texts[i % len(texts)]
            writers[(i % streets) % processes].writerow([title, detail, scale.sample_address(i)])
    finally:
        for handle in handles:
            handle.close()
    return paths


def _autovacuum(dsn: str) -> str:
    """The server's ``autovacuum`` setting: off on the benchmark machine, so the replay's tables are
    neither vacuumed nor analysed while it runs (a production server's are)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    return str(row[0]) if row else "?"


TABLES = ("service_requests", "triage_queue", "triages", "request_events", "work_orders", "audit_log")
"""The tables intake writes, which :func:`_vacuum` vacuums and analyses."""


def _vacuum(dsn: str) -> float:
    """``VACUUM (ANALYZE)`` the tables intake writes, as autovacuum would on a server where it is on;
    return the seconds it took. Without it, dead versions of the requests that left the open statuses
    pile up in the duplicate check's partial indexes and the statistics stay those of an empty city: a
    run of 10⁶ on this machine eased from 9,500 to 8,800 requests a minute between 200,000 and 290,000,
    and ran at 10,300 after one vacuum."""
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"VACUUM (ANALYZE) {', '.join(TABLES)}")
    return time.perf_counter() - started


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM triages").fetchone()
    return int(row[0]) if row else 0


def run(n: int, processes: int, model_path: Path, *, batch: int = scale.REPLAY_BATCH,
        every: float = 60.0, vacuum_every: float | None = None) -> dict[str, Any]:
    """Replay ``n`` requests in ``processes`` processes on a fresh PostgreSQL database; return the
    figures (``detail`` of the JSON). Raises ``RuntimeError`` when a replay process fails."""
    url = http_intake.fresh_database(DATABASE)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    env = {**os.environ, "CIVICLOOP_DATABASE_URL": url, "CIVICLOOP_MODEL_PATH": str(model_path)}
    try:
        subprocess.run([*scale.CIVICLOOP, "init"], env=env, check=True, capture_output=True)
        autovacuum = _autovacuum(dsn)
        if vacuum_every is None:  # the stand-in for autovacuum where the server has it off
            vacuum_every = 600.0 if autovacuum == "off" else 0.0
        vacuums: list[tuple[float, float]] = []  # (when, seconds taken)
        folder = Path(tempfile.mkdtemp(prefix="bench-replay-scale-", dir=scale.OUT))
        parts = write_parts(n, processes, folder)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_before = usage.ru_utime + usage.ru_stime
        busy_before = http_load.machine_busy()
        started = time.perf_counter()
        running = [subprocess.Popen([*scale.CIVICLOOP, "intake", "replay", "--data", str(path), "--batch",
                                     str(batch), "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for path in parts]
        backends_cpu: dict[int, float] = {}
        progress: list[tuple[float, int]] = [(0.0, 0)]
        peak_kb = 0
        next_count = started + every
        next_vacuum = started + vacuum_every if vacuum_every else float("inf")
        while any(p.poll() is None for p in running):
            time.sleep(0.5)
            peak_kb = max(peak_kb, sum(http_load.status_kb(p.pid, "VmRSS") for p in running))
            for pid in http_load.database_backends(DATABASE):  # PostgreSQL's CPU for the replay's connections
                backends_cpu[pid] = http_load.cpu_seconds(pid) or backends_cpu.get(pid, 0.0)
            if time.perf_counter() >= next_count:
                progress.append((round(time.perf_counter() - started, 1), _count(dsn)))
                print(f"replay: {progress[-1][1]:,} of {n:,} after {progress[-1][0]:,.0f} s", flush=True)
                next_count += every
            if time.perf_counter() >= next_vacuum and any(p.poll() is None for p in running):
                vacuums.append((round(time.perf_counter() - started, 1), round(_vacuum(dsn), 1)))
                next_vacuum = time.perf_counter() + vacuum_every
        seconds = time.perf_counter() - started
        busy, total = (a - b for a, b in zip(http_load.machine_busy(), busy_before, strict=True))
        outs = [p.communicate() for p in running]
        failed = [err[-400:] for p, (_, err) in zip(running, outs, strict=True) if p.returncode != 0]
        if failed:
            raise RuntimeError(f"civicloop intake replay failed: {failed[0]}")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = usage.ru_utime + usage.ru_stime - cpu_before
        figures = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
        progress.append((round(seconds, 1), _count(dsn)))
        outcomes: dict[str, int] = {}
        for part in figures:
            for outcome, count in part["by_outcome"].items():
                outcomes[outcome] = outcomes.get(outcome, 0) + count
        with parts[0].open(encoding="utf-8") as handle:
            sample = list(csv.DictReader(handle))[:5_000]
        import_rate = scale.import_reference(url, sample)
    finally:
        http_intake.drop_database(DATABASE)
    rate = n / seconds
    return {
        "requests": n, "processes": processes, "batch": batch, "seconds": round(seconds, 1), "rate": rate,
        "import_rate": import_rate, "ratio": rate / import_rate, "cpu_seconds": round(cpu, 1),
        "cpu_ms_per_request": cpu / n * 1000, "postgres_cpu_ms_per_request": sum(backends_cpu.values()) / n * 1000,
        "machine_busy": busy / total if total else None, "peak_rss_mb": peak_kb / 1024,
        "outcomes": outcomes, "progress": progress,
        "first_tenth_rate": _rate_between(progress, 0, n // 10),
        "last_tenth_rate": _rate_between(progress, n - n // 10, n),
        "beijing_year_hours": scale.BEIJING_YEAR / rate / 3600,
        "needed_rate": scale.BEIJING_YEAR / scale.REPLAY_BUDGET_S,
        "per_process_wall_seconds": [part["wall_seconds"] for part in figures],
        "load_average": os.getloadavg()[0], "at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "autovacuum": autovacuum, "vacuum_every": vacuum_every, "vacuums": vacuums,
    }


def _rate_between(progress: list[tuple[float, int]], low: int, high: int) -> float | None:
    """Requests per second between the samples nearest to ``low`` and ``high`` requests done."""
    if len(progress) < 3:
        return None
    first = min(progress, key=lambda p: abs(p[1] - low))
    last = min(progress, key=lambda p: abs(p[1] - high))
    return (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else None


def _n(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def doc_section(d: dict[str, Any], info: dict[str, Any]) -> list[str]:
    """The lines of docs/benchmarks.md's section for the figures ``d`` of :func:`run` (``info``: the machine)."""
    hours = d["beijing_year_hours"]
    first, last = d["first_tenth_rate"], d["last_tenth_rate"]
    walls = ", ".join(f"{s / 3600:.2f}" for s in d["per_process_wall_seconds"])
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(d["outcomes"].items()))
    return [
        BEGIN, "", f"## Replay of {d['requests']:,} requests (issue 9, item 6)", "",
        f"Run: {d['at']}, `make bench-replay N={d['requests']} PROCESSES={d['processes']} BATCH={d['batch']}` "
        f"(`benchmarks/replay_scale.py`). Machine: {info.get('cpu', '')}, {info.get('cores', '')} cores, "
        f"load average at the end {d['load_average']:.2f}. PostgreSQL, a fresh database of the sample city; "
        f"{d['processes']} `civicloop intake replay --batch {d['batch']}` side by side, each the rows of "
        f"{6 // max(1, d['processes'])} of the six streets in order; reference: the same rows imported without "
        "intake, one INSERT + commit each, into the same database in the same run.", "",
        "| figure | value | reference | reference value | ratio |", "|---|---|---|---|---|",
        f"| replay: import + classify + route of {d['requests']:,} requests (requests/s) | {_n(d['rate'])} | "
        f"import of the same rows without intake, one INSERT + commit each (requests/s) | {_n(d['import_rate'])} | "
        f"{d['ratio']:.4f} |",
        f"| the same, the first tenth (requests/s) | {_n(d['first_tenth_rate'])} | the last tenth (requests/s) | "
        f"{_n(d['last_tenth_rate'])} | "
        f"{first / last if first and last else 0:.2f} |",
        "",
        f"Wall time {d['seconds'] / 3600:.2f} h ({walls} h "
        f"per process); replay CPU {d['cpu_ms_per_request']:.1f} ms per request, PostgreSQL "
        f"{d['postgres_cpu_ms_per_request']:.1f} ms; machine busy {_n((d['machine_busy'] or 0) * 100, 0)} %; "
        f"peak resident memory of the replay processes {d['peak_rss_mb']:,.0f} MB. Outcomes: {outcomes}."
        f" PostgreSQL's `autovacuum` was {d.get('autovacuum', '?')} (this machine's setting); "
        + _vacuumed(d) + " Requests done by time (s, requests): "
        + ", ".join(f"{t:,.0f} {c:,}" for t, c in d["progress"]) + ".",
        "",
        f"**At this rate** 1,000,000 requests take {1_000_000 / d['rate'] / 3600:,.1f} h and a Beijing year"
        f" (24,000,000 requests) {hours:,.1f} h: {'within' if hours <= 3 else 'not within'} the 3 h target, which"
        f" needs {d['needed_rate']:,.0f} requests/s. The last tenth's rate includes the run's end, when the"
        " process with fewer rows left had finished.",
        "", END,
    ]


def _vacuumed(d: dict[str, Any]) -> str:
    """The sentence on how the run's tables were vacuumed (:func:`_vacuum`)."""
    vacuums = d.get("vacuums") or []
    if not vacuums:
        return "the tables were not vacuumed or analysed during the run."
    return (f"in its stead the replay's tables were vacuumed and analysed (`VACUUM (ANALYZE)`) {len(vacuums)} times,"
            f" about every {d.get('vacuum_every', 0):,.0f} s: at "
            + ", ".join(f"{t:,.0f} s ({took:.0f} s)" for t, took in vacuums) + " of the run.")


def write_doc(d: dict[str, Any], info: dict[str, Any]) -> None:
    """Put the section into docs/benchmarks.md: between the markers, or at the end."""
    text = DOC.read_text(encoding="utf-8")
    section = "\n".join(doc_section(d, info))
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000, help="rows to replay (default 1,000,000)")
    parser.add_argument("--processes", type=int, default=2, help="replay processes side by side (default 2)")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between progress counts")
    parser.add_argument("--vacuum-every", type=float, default=None,
                        help="seconds between VACUUM (ANALYZE) of intake's tables (default 600 where the server's "
                             "autovacuum is off, else 0: none)")
    parser.add_argument("--batch", type=int, default=scale.REPLAY_BATCH,
                        help=f"rows each replay files, then triages, per transaction (default {scale.REPLAY_BATCH})")
    parser.add_argument("--render", action="store_true", help="rewrite the section from the last results")
    args = parser.parse_args()
    import run as bench_run

    if args.render:
        saved = json.loads((scale.OUT / "replay-scale.json").read_text(encoding="utf-8"))
        write_doc(saved, saved.get("machine") or bench_run.machine())
        return 0

    model_path = scale.OUT / "classifier.joblib"
    scale.OUT.mkdir(parents=True, exist_ok=True)
    if not model_path.exists():
        subprocess.run([*scale.CIVICLOOP, "model", "train", "--out", str(model_path)], check=True, capture_output=True)
    d = run(args.requests, args.processes, model_path, batch=args.batch, every=args.every,
            vacuum_every=args.vacuum_every)
    d["machine"] = bench_run.machine()
    (scale.OUT / "replay-scale.json").write_text(json.dumps(d, indent=1), encoding="utf-8")
    write_doc(d, d["machine"])
    print(json.dumps({k: v for k, v in d.items() if k != "progress"}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
