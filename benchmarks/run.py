"""civicloop's benchmarks (``make bench``; ``make bench QUICK=1`` for the quick set).

Absolute times on a shared 2-core machine are noisy, so every figure is reported next to a reference
measured in the same run, on the same data, and as a ratio to it. Results go to
``docs/benchmarks.md`` (the machine, the date, the table) and ``out/bench/results.json``.

Benchmarks:

* ``classifier`` — messages per second per core and p99 latency of the shipped classifier, one message
  at a time; reference: the issue's baseline (char TF-IDF + linear SVM) on the same messages.
* ``intake`` — filing + intelligent intake (locate, duplicates, classify, route, dispatch) of held-out
  real messages, one transaction each, on SQLite; reference: a one-row INSERT + commit of a request of
  the same size into the same database.
* ``analyze`` — ``civicloop analyze`` (every finder and the report) over N generated requests (10⁶ in the
  full set, 10⁵ quick); reference: one DuckDB scan grouping all requests by category over the same
  attached database.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench"
DOC = ROOT / "docs" / "benchmarks.md"
CIVICLOOP = [sys.executable, "-m", "civicloop"]


def machine() -> dict[str, Any]:
    """Describe the machine: CPU model, cores, memory, Python, load average."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        memory = next(int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        memory = 0
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "memory_mb": memory,
            "python": platform.python_version(), "load_before": os.getloadavg()[0]}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def bench_classifier(quick: bool) -> dict[str, Any]:
    """Time the shipped method and the baseline, trained on the same training part, one held-out
    message at a time (CPU time of this process)."""
    from civicloop.intelligence import classifier
    from civicloop.intelligence.data import load_split

    split = load_split()
    messages = [(s.title, s.detail) for s in split.test][: 200 if quick else 593]
    out: dict[str, Any] = {}
    for method in (classifier.OURS, classifier.BASELINE):
        model = classifier.train(split.train, method=method)
        model.warm_up()
        times = []
        for title, detail in messages:
            started = time.process_time()
            model.predict(title, detail)
            times.append(time.process_time() - started)
        out[method] = {"per_second": len(times) / sum(times), "p50_ms": percentile(times, 50) * 1000,
                       "p99_ms": percentile(times, 99) * 1000}
    ours, base = out[classifier.OURS], out[classifier.BASELINE]
    return {"rows": [
        ("classifier: messages/s per core", ours["per_second"], base["per_second"], "baseline messages/s"),
        ("classifier: p99 latency (ms CPU)", ours["p99_ms"], base["p99_ms"], "baseline p99 (ms)"),
    ], "detail": out}


def bench_intake(quick: bool, model_path: Path) -> dict[str, Any]:
    """File held-out messages through intake on a fresh SQLite database and time a one-row INSERT of
    the same size into the same file as the reference."""
    from sqlalchemy import insert

    from civicloop.core.db import make_engine, session_factory
    from civicloop.core.migrate import upgrade
    from civicloop.core.roles import Role
    from civicloop.core.settings import Settings
    from civicloop.intelligence.data import load_split
    from civicloop.requests import intake, triage
    from civicloop.requests.models import Channel, ServiceRequest
    from civicloop.requests.service import Actor

    folder = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    url = f"sqlite:///{folder / 'intake.db'}"
    upgrade(url)
    subprocess.run([*CIVICLOOP, "init"], env={**os.environ, "CIVICLOOP_DATABASE_URL": url}, check=True,
                   capture_output=True)
    engine = make_engine(url)
    factory = session_factory(engine)
    settings = Settings(_env_file=None, database_url=url, model_path=str(model_path))  # type: ignore[call-arg]
    messages = [(s.title, s.detail) for s in load_split().test][: 150 if quick else 593]
    operator = Actor("bench", Role.OPERATOR)
    intake_times, insert_times = [], []
    for title, detail in messages:
        started = time.perf_counter()
        with factory() as session:
            request = intake.submit(session, actor=operator, data=intake.NewRequest(
                channel=Channel.WEB, title=title[:200] or "无标题", description=detail[:4000] or title,
                address="云河区东桥街道"))
            triage.triage(session, request=request, settings=settings, started=started)
            session.commit()
        intake_times.append(time.perf_counter() - started)
        now = datetime.now(UTC)
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(insert(ServiceRequest).values(
                channel="web", title=title[:200], description=detail[:4000], address="云河区东桥街道",
                deadline_tier="7wd", status="submitted", created_at=now, updated_at=now, version=1,
                support_count=0, return_count=0, reopen_count=0, fallback=False))
        insert_times.append(time.perf_counter() - started)
    engine.dispose()
    return {"rows": [
        ("intake: filing → routed, p50 (ms)", percentile(intake_times, 50) * 1000,
         percentile(insert_times, 50) * 1000, "one-row INSERT + commit p50 (ms)"),
        ("intake: filing → routed, p99 (ms)", percentile(intake_times, 99) * 1000,
         percentile(insert_times, 99) * 1000, "one-row INSERT + commit p99 (ms)"),
    ], "detail": {"n": len(messages), "mean_ms": statistics.mean(intake_times) * 1000}}


def bench_analyze(quick: bool) -> dict[str, Any]:
    """Generate N requests into a SQLite file (kept in out/bench for the next run), run `civicloop
    analyze` on it, and time a DuckDB group-by scan of the same table as the reference."""
    from civicloop.analytics.duck import connect

    n = 100_000 if quick else 1_000_000
    OUT.mkdir(parents=True, exist_ok=True)
    db = OUT / f"generated-{n}.db"
    url = f"sqlite:///{db}"
    env = {**os.environ, "CIVICLOOP_DATABASE_URL": url}
    if not db.exists():
        subprocess.run([*CIVICLOOP, "generate", "--requests", str(n), "--seed", "1"], env=env, check=True,
                       capture_output=True)
    started = time.perf_counter()
    subprocess.run([*CIVICLOOP, "analyze", "--out", str(OUT / f"report-{n}"), "--no-store"], env=env, check=True,
                   capture_output=True)
    analyze_seconds = time.perf_counter() - started
    conn = connect(url)
    started = time.perf_counter()
    conn.execute("SELECT category_id, count(*) FROM ops.service_requests GROUP BY 1").fetchall()
    scan_seconds = time.perf_counter() - started
    return {"rows": [(f"analyze: {n:,} requests (s, whole command)", analyze_seconds, scan_seconds,
                      "DuckDB group-by scan of the same table (s)")],
            "detail": {"requests": n, "target_seconds": 60}}


def write_doc(results: dict[str, Any], info: dict[str, Any], quick: bool) -> None:
    """Write docs/benchmarks.md: the machine, the date, one row per figure with its reference and ratio."""
    lines = [
        "# Benchmarks", "",
        "Written by `make bench` (`make bench QUICK=1` for the quick set). Every figure sits next to a reference",
        "measured in the same run on the same data; the ratio is figure ÷ reference. See `benchmarks/run.py`",
        "for what each benchmark does.", "",
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {'quick' if quick else 'full'} set. Machine: {info['cpu']},",
        f"{info['cores']} cores, {info['memory_mb']:,} MB, Python {info['python']}, load average before the run "
        f"{info['load_before']:.2f}.", "",
        "| figure | value | reference | reference value | ratio |", "|---|---|---|---|---|",
    ]
    for name, result in results.items():
        if "error" in result:
            lines.append(f"| {name} | failed: {result['error']} | | | |")
            continue
        for label, value, ref, ref_label in result["rows"]:
            ratio = value / ref if ref else float("nan")
            lines.append(f"| {label} | {value:,.2f} | {ref_label} | {ref:,.2f} | {ratio:,.2f} |")
    lines += ["", "## Against the targets (issues 4, 5 and 9)", "", "| target | measured | status |", "|---|---|---|"]
    for target, measured, met in targets(results):
        lines.append(f"| {target} | {measured} | {'met' if met else 'not met'} |")
    lines += ["", "Not measured yet (issue 9): intake throughput over HTTP on PostgreSQL against pgbench at 16 and 64",
              "connections, dashboard queries over 10⁷ requests, peak memory of `civicloop serve` under load, the",
              "replay of 10⁶ requests through import + classify + route.", ""]
    DOC.write_text("\n".join(lines), encoding="utf-8")


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Return (target, measured value, met?) for the targets these benchmarks can judge."""
    out: list[tuple[str, str, bool]] = []
    rows = {label: value for r in results.values() if "rows" in r for label, value, _, _ in r["rows"]}
    for label, value in rows.items():
        if label.startswith("classifier: p99"):
            out.append(("classifier p99 ≤ 5 ms per message, one core", f"{value:.2f} ms", value <= 5))
        elif label.startswith("intake: filing → routed, p99"):
            out.append(("dispatch latency p99 ≤ 1 s (one client, SQLite)", f"{value:.0f} ms", value <= 1000))
        elif label.startswith("analyze:"):
            requests = results["analyze"]["detail"]["requests"]
            out.append((f"`civicloop analyze` on {requests:,} requests < 60 s", f"{value:.1f} s",
                        value < 60 and requests >= 1_000_000))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the quick set (a few minutes)")
    parser.add_argument("--only", nargs="*", help="run only these benchmarks")
    parser.add_argument("--render", action="store_true", help="rewrite docs/benchmarks.md from the last results")
    args = parser.parse_args()
    if args.render:
        saved = json.loads((OUT / "results.json").read_text(encoding="utf-8"))
        write_doc(saved["results"], saved["machine"], saved.get("quick", False))
        return 0
    info = machine()
    model_path = OUT / "classifier.joblib"
    OUT.mkdir(parents=True, exist_ok=True)
    if not model_path.exists():
        subprocess.run([*CIVICLOOP, "model", "train", "--out", str(model_path)], check=True, capture_output=True)
    benches: dict[str, Callable[[], dict[str, Any]]] = {
        "classifier": lambda: bench_classifier(args.quick),
        "intake": lambda: bench_intake(args.quick, model_path),
        "analyze": lambda: bench_analyze(args.quick),
    }
    results: dict[str, Any] = {}
    for name, bench in benches.items():
        if args.only and name not in args.only:
            continue
        print(f"bench {name} …", flush=True)
        try:
            results[name] = bench()
        except Exception as exc:  # a failed benchmark is reported, the others still run
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(json.dumps(results[name], ensure_ascii=False, default=str)[:400], flush=True)
    (OUT / "results.json").write_text(json.dumps({"machine": info, "results": results, "quick": args.quick},
                                                 ensure_ascii=False,
                                                 default=str, indent=1), encoding="utf-8")
    write_doc(results, info, args.quick)
    print(f"written {DOC}")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
