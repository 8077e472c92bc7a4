"""The outputs of ``civicloop analyze``: one CSV per finder, ``report.xlsx`` and ``report.html``.

``report.html`` is a single file readable offline: ECharts (from npm, vendored by ``make`` into
``civicloop/static/vendor``) is inlined, the data are embedded as JSON. Without the vendored file the
report still has every table, and says that the charts are missing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from jinja2 import Environment, FileSystemLoader, select_autoescape
from openpyxl import Workbook
from openpyxl.styles import Font

from civicloop.analytics.findings import Finding
from civicloop.core.validation import csv_safe

VENDOR = Path(__file__).resolve().parent.parent / "static" / "vendor"
TEMPLATES = Path(__file__).resolve().parent / "templates"
HOTSPOT_COLUMNS = ["rank", "heat", "summary", "place", "start", "end", "request_count", "request_ids"]
"""Columns of hotspots.csv, as issue #5 names them."""
FINDING_COLUMNS = ["rank", "score", "summary", "place", "category", "district", "street", "start", "end",
                   "request_count", "people", "request_ids", "key"]
FILES = {"hotspot": "hotspots.csv", "surge": "surges.csv", "cooccurrence": "cooccurrence.csv",
         "asset": "asset_alerts.csv", "topic": "monthly_topics.csv"}
TITLES = {"hotspot": "热点 Hotspots", "surge": "高频与季节性激增 Surges", "cooccurrence": "多类并发 Co-occurrence",
          "asset": "设施反复故障 Asset alerts", "topic": "每月一题 Monthly topic"}


COLUMN_LABELS = {
    "rank": "排名", "heat": "热度", "score": "评分", "summary": "概要", "place": "地点", "category": "分类",
    "district": "区", "street": "街道", "start": "开始", "end": "结束", "request_count": "诉求数",
    "people": "人数", "request_ids": "诉求编号", "unit": "单位", "replies": "答复数",
    "median_working_days": "答复用时中位数（工作日）", "within_7_share": "7个工作日内占比", "relevance": "针对性",
    "completeness": "完整性", "policy_share": "引用政策占比", "forwarded_share": "仅转办占比", "overall": "综合评分",
    "small_n": "样本少",
}
"""Chinese headings of the HTML report's tables (the CSV files keep the machine names)."""
SHARE_COLUMNS = {"within_7_share", "policy_share", "forwarded_share"}


def _shown(column: str, value: Any) -> Any:
    """A value as the HTML report shows it: shares as percentages, scores to two decimals."""
    if isinstance(value, float):
        return f"{value:.0%}" if column in SHARE_COLUMNS else f"{value:.2f}"
    if isinstance(value, bool):
        return "是" if value else ""
    return value


@dataclass
class AnalysisResults:
    """Everything one run of the finders produced. ``findings`` by kind (see ``findings.KINDS``);
    ``reply_scores`` one row per replied request (an Arrow table: at a million requests a list of dicts
    would not fit in memory) and ``reply_units`` one dict per unit (columns chosen by
    ``analytics.replies``); ``meta``: source, period, row count, seconds per finder."""

    findings: dict[str, list[Finding]] = field(default_factory=dict)
    reply_scores: pa.Table | None = None
    reply_units: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def all_findings(self) -> list[Finding]:
        return [f for kind in FILES if kind in self.findings for f in self.findings[kind]]


def _finding_rows(kind: str, findings: Sequence[Finding]) -> tuple[list[str], list[dict[str, Any]]]:
    rows = [f.as_row() for f in findings]
    if kind == "hotspot":
        return HOTSPOT_COLUMNS, [{**r, "heat": r["score"]} for r in rows]
    return FINDING_COLUMNS, rows


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: csv_safe(_plain(row.get(k))) for k in columns})


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return "" if value is None else value


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows[:50]:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def write_outputs(out: Path, results: AnalysisResults) -> list[Path]:
    """Write the CSVs (UTF-8 with BOM, so Excel opens them right), ``report.xlsx`` and ``report.html``
    into ``out`` (created) and return the paths written. Raises ``OSError`` when ``out`` is not writable."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for kind, name in FILES.items():
        columns, rows = _finding_rows(kind, results.findings.get(kind, []))
        _write_csv(out / name, columns, rows)
        written.append(out / name)
    _write_arrow_csv(out / "reply_quality.csv", results.reply_scores)
    _write_csv(out / "reply_quality_units.csv", _columns(results.reply_units) or ["unit"], results.reply_units)
    written += [out / "reply_quality.csv", out / "reply_quality_units.csv"]
    written.append(write_xlsx(out / "report.xlsx", results))
    written.append(write_html(out / "report.html", results))
    return written


def write_xlsx(path: Path, results: AnalysisResults) -> Path:
    """Write one sheet per finder plus the reply-quality sheets, bold headers, frozen first row."""
    book = Workbook()
    book.remove(book.active)
    sheets: list[tuple[str, list[str], list[dict[str, Any]]]] = []
    for kind in FILES:
        columns, rows = _finding_rows(kind, results.findings.get(kind, []))
        sheets.append((TITLES[kind].split()[0], columns, rows))
    sheets.append(("答复质量-单位", _columns(results.reply_units) or ["unit"], results.reply_units))
    worst = worst_replies(results.reply_scores)
    sheets.append((f"答复质量-最差{XLSX_REPLIES}", _columns(worst) or ["unit"], worst))
    for title, columns, rows in sheets:
        sheet = book.create_sheet(title[:31])
        sheet.append(list(columns))
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in rows:
            sheet.append([csv_safe(_plain(row.get(c))) for c in columns])  # "=…" in a title is no formula
        sheet.freeze_panes = "A2"
    meta = book.create_sheet("说明")
    for key, value in results.meta.items():
        meta.append([key, json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, dict | list)
                     else _plain(value)])
    book.save(path)
    return path


XLSX_REPLIES = 1000
"""The workbook lists the lowest-scored replies only (all of them are in reply_quality.csv)."""


def worst_replies(scores: pa.Table | None, limit: int = XLSX_REPLIES) -> list[dict[str, Any]]:
    """Return the ``limit`` lowest-scored replies (by ``overall``) as dicts, worst first."""
    if scores is None or scores.num_rows == 0:
        return []
    order = pc.sort_indices(scores, sort_keys=[("overall", "ascending")])[:limit]
    rows = scores.take(order).to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, list):
                row[key] = "；".join(str(v) for v in value)
    return rows


def _write_arrow_csv(path: Path, table: pa.Table | None) -> None:
    """Write an Arrow table as CSV (UTF-8 with BOM; list columns joined by "；")."""
    with path.open("wb") as handle:
        handle.write("\ufeff".encode())
        if table is None or table.num_rows == 0:
            handle.write(b"request_id\n")
            return
        columns = []
        for name in table.column_names:
            column = table.column(name)
            if pa.types.is_list(column.type):
                column = pc.binary_join(column, "；")
            columns.append(column)
        pa_csv.write_csv(pa.table(dict(zip(table.column_names, columns, strict=True))), handle)


def echarts_source() -> str | None:
    """Return ECharts' minified source for inlining, or ``None`` when ``make`` has not vendored it."""
    file = VENDOR / "echarts.min.js"
    return file.read_text(encoding="utf-8") if file.is_file() else None


def write_html(path: Path, results: AnalysisResults) -> Path:
    """Write ``report.html``: headline counts, the top hotspots by heat, reply quality per unit and a
    table per finder, in Chinese with English headings; charts by ECharts, inlined."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    template = env.get_template("report.html.j2")
    sections = []
    for kind in FILES:
        columns, rows = _finding_rows(kind, results.findings.get(kind, []))
        sections.append({"kind": kind, "title": TITLES[kind], "columns": [c for c in columns if c != "key"],
                         "rows": [{c: _shown(c, _plain(r.get(c))) for c in columns} for r in rows[:100]],
                         "total": len(rows)})
    hot = results.findings.get("hotspot", [])[:10]
    units = [u for u in results.reply_units if not u.get("small_n")][:20]  # few replies: table only
    charts = {
        "hotspots": {"labels": [f"{f.rank}. {f.summary[:18]}" for f in hot],
                     "values": [round(f.score, 2) for f in hot]},
        "units": {"labels": [str(u.get("unit", "")) for u in units],
                  "values": [round(float(u.get("overall", 0) or 0), 3) for u in units]},
        "kinds": {"labels": [TITLES[k] for k in FILES], "values": [len(results.findings.get(k, [])) for k in FILES]},
    }
    unit_columns = _columns(results.reply_units)
    html = template.render(
        meta=results.meta, sections=sections, charts_json=json.dumps(charts, ensure_ascii=False),
        echarts=echarts_source(), labels=COLUMN_LABELS,
        units=[{c: _shown(c, u.get(c)) for c in unit_columns} for u in results.reply_units],
        unit_columns=unit_columns, topics=results.findings.get("topic", []),
    )
    path.write_text(html, encoding="utf-8")
    return path
