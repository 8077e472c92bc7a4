"""``civicloop model``: train the category classifier and measure it; ``classify``: one text's category.

``train`` loads the shared Teddy Cup data, de-duplicates and splits them (see
``civicloop.intelligence.data``), trains the baseline and our model on the same training part, measures
both on the same held-out messages, prints the table and saves our model (trained on the training part
only, so the held-out messages stay unseen; ``--holdout`` writes them out for ``evaluate``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="分类模型 The request category classifier: train and evaluate.", no_args_is_help=True)
console = Console()
MODEL_HELP = "model file; default $CIVICLOOP_MODEL_PATH or models/classifier.joblib"
DATA_HELP = "teddy2020c folder (or the folder holding it); default $CIVICLOOP_SHARED_DATA, else ../shared/data"


def _stop(message: str) -> None:
    console.print(f"[red]{message}[/red]")
    raise typer.Exit(2)


def _load(path: Path | None) -> Any:
    """Load a model file or stop with status 2 and a message naming the file."""
    from civicloop.intelligence import model_store

    try:
        return model_store.load(path)
    except model_store.ModelNotFound as exc:
        _stop(f"模型文件不存在 no model file at {exc.path}: run `civicloop model train` first")
    except model_store.ModelFileInvalid as exc:
        _stop(f"模型文件无效 invalid model file {exc.path}: {exc.reason}")


def _database_exists(url: str) -> bool:
    """Whether the database can hold a city: any server URL, or a SQLite file that exists (opening a
    missing one would create an empty file)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return True
    return bool(parsed.database) and parsed.database != ":memory:" and Path(parsed.database).is_file()


def _metrics_table(results: dict[str, dict[str, Any]], labels: list[str]) -> Table:
    """A table with one column per method: headline figures, per-class F1, calibration, timing."""
    table = Table(title="分类效果 Classifier, held-out messages (same split, same run)")
    table.add_column("指标 metric")
    for method in results:
        table.add_column(method, justify="right")

    def row(name: str, pick: Any) -> None:
        table.add_row(name, *[pick(result) for result in results.values()])

    def number(value: Any, digits: int = 4) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    row("n (messages)", lambda r: str(r["metrics"]["n"]))
    row("macro-F1", lambda r: number(r["metrics"]["macro_f1"]))
    row("accuracy", lambda r: number(r["metrics"]["accuracy"]))
    row("top-3 accuracy", lambda r: number(r["metrics"]["top3_accuracy"]))
    row("weakest class F1", lambda r: number(min(r["metrics"]["per_class"].values())))
    for label in labels:
        row(f"F1 {label}", lambda r, label=label: number(r["metrics"]["per_class"].get(label)))
    row("ECE (calibration error)", lambda r: number(r["metrics"]["ece"]))
    for threshold in ("0.7", "0.9"):
        row(
            f"confidence ≥ {threshold}: coverage / accuracy",
            lambda r, t=threshold: (
                f"{number(r['metrics']['by_confidence'][t]['coverage'], 3)} / "
                f"{number(r['metrics']['by_confidence'][t]['accuracy'], 3)}"
            ),
        )
    row("train seconds", lambda r: f"{r['train_seconds']:.1f}")
    row("features", lambda r: str(r["features"]))
    row("latency p50 / p99 ms (CPU)", lambda r: f"{r['latency']['cpu_p50']:.2f} / {r['latency']['cpu_p99']:.2f}")
    row("latency p50 / p99 ms (wall)", lambda r: f"{r['latency']['p50']:.2f} / {r['latency']['p99']:.2f}")
    return table


def _confusion_table(metrics: dict[str, Any], title: str) -> Table:
    table = Table(title=title, caption="rows: true label; columns: predicted (first two characters)")
    table.add_column("true \\ predicted")
    for label in metrics["labels"]:
        table.add_column(label[:2], justify="right")
    for label, counts in zip(metrics["labels"], metrics["confusion"], strict=True):
        table.add_row(label, *[str(count) for count in counts])
    return table


def _write_holdout(path: Path, samples: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["title", "detail", "label"])
        for sample in samples:
            writer.writerow([sample.title, sample.detail, sample.label])


@app.command()
def train(
    data: Annotated[Path | None, typer.Option(help=DATA_HELP)] = None,
    out: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
    holdout: Annotated[Path | None, typer.Option(help="also write the held-out messages here (CSV)")] = None,
    report: Annotated[Path | None, typer.Option(help="also write the run's figures here (JSON)")] = None,
    test_size: Annotated[float, typer.Option(min=0.05, max=0.5, help="share of message groups held out")] = 0.3,
    seed: Annotated[int, typer.Option(help="seed of the split")] = 2020,
) -> None:
    """训练 Train the baseline and our classifier on the same split, print both, save ours."""
    from civicloop.intelligence import classifier, model_store
    from civicloop.intelligence.data import DataNotFound, fingerprint, load_split

    try:
        split = load_split(data, test_size=test_size, seed=seed)
    except DataNotFound as exc:
        _stop(f"数据未找到 data not found: {exc}")
    console.print(
        f"数据 data: {split.stats['rows']} rows → {split.stats['groups']} groups; "
        f"train {len(split.train)} rows, held out {len(split.test)} messages (seed {seed})"
    )
    results: dict[str, dict[str, Any]] = {}
    models = {}
    for method in classifier.METHODS:
        model = classifier.train(split.train, method=method)
        models[method] = model
        results[method] = {
            "metrics": classifier.evaluate(model, split.test),
            "latency": classifier.latency(model, split.test),
            "train_seconds": model.train_seconds,
            "features": model.info.get("features"),
        }
    ours = models[classifier.OURS]
    console.print(_metrics_table(results, ours.labels))
    console.print(_confusion_table(results[classifier.OURS]["metrics"], "混淆矩阵 Confusion matrix (ours)"))
    metadata = model_store.make_metadata(
        ours,
        fingerprint=fingerprint(split.train),
        metrics=results[classifier.OURS]["metrics"],
        extra={
            "split": {**split.stats, "seed": split.seed, "test_size": split.test_size},
            "latency_ms": results[classifier.OURS]["latency"],
            "baseline_metrics": results[classifier.BASELINE]["metrics"],
        },
    )
    path = model_store.save(ours, metadata, out)
    console.print(f"模型 model {metadata['version']} → {path}")
    if holdout is not None:
        _write_holdout(holdout, split.test)
        console.print(f"留出集 held-out messages → {holdout}")
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        payload = {"split": metadata["split"], "version": metadata["version"], "results": results}
        report.write_text(json.dumps(payload, ensure_ascii=False, indent=2), encoding="utf-8")


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="CSV with columns title, detail, label")],
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
) -> None:
    """评估 Measure a model on a labelled CSV; print JSON (macro_f1, accuracy, per_class, n, confusion …)."""
    from civicloop.intelligence import classifier
    from civicloop.intelligence.data import read_csv

    stored = _load(model)
    try:
        samples = read_csv(data)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from exc
    if not samples:
        raise typer.BadParameter("no rows with text", param_hint="--data")
    metrics = classifier.evaluate(stored.model, samples)
    metrics["model_version"] = stored.metadata.get("version")
    typer.echo(json.dumps(metrics, ensure_ascii=False))


def classify(
    text: Annotated[str, typer.Argument(help="the request: a title, a body, or title + newline + body")],
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
    address: Annotated[str, typer.Option(help="the address the citizen gave (地址)")] = "",
) -> None:
    """分类 Print what intake would do with one request, as JSON: category, confidence, top3 (each with
    its category path, lead unit and rule), place, suggested_units, auto_dispatch and reasons.

    Place and units come from the database (``CIVICLOOP_DATABASE_URL``) when it has been set up
    (``civicloop init``); without one they are ``null`` and ``[]``. Nothing is stored."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from civicloop.core.db import session_scope
    from civicloop.core.settings import get_settings
    from civicloop.intelligence import classifier
    from civicloop.requests import triage

    stored = _load(model)
    title, body = classifier.split_text(text)
    if not (title or body):
        raise typer.BadParameter("empty text", param_hint="TEXT")
    settings = get_settings().model_copy(update={"model_path": str(stored.path), "triage_on_intake": True})
    try:
        if not _database_exists(settings.database_url):
            raise OperationalError("no database file", None, Exception("missing"))
        with session_scope() as session:
            out = triage.preview(session, title=title, detail=body, address=address, settings=settings)
            session.rollback()  # a preview stores nothing
    except (OperationalError, ProgrammingError):  # no database set up: the model's answer alone
        out = {**stored.model.predict(title, body).as_dict(), "place": None, "suggested_units": [],
               "model_version": stored.metadata.get("version", "")}
    typer.echo(json.dumps(out, ensure_ascii=False))
