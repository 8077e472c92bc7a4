"""``civicloop demo --no-serve`` on a slice of the real data, as a separate process (the demo builds its
own SQLite database under ``--out``): every step ran and its reports say what the database holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from civicloop.intelligence import classifier, model_store
from civicloop.intelligence.data import fingerprint, load_split
from tests.helpers import CLASSIFIER_TESTS

pytestmark = CLASSIFIER_TESTS
SAMPLE = 150


@pytest.fixture(scope="module")
def model_file(trained_classifier, tmp_path_factory) -> tuple[Path, dict]:
    """The test session's classifier saved as the demo would save it (same split, real held-out
    figures), so the demo loads it instead of training again."""
    split = load_split()
    metrics = classifier.evaluate(trained_classifier, split.test)
    metadata = model_store.make_metadata(trained_classifier, fingerprint=fingerprint(split.train), metrics=metrics)
    path = model_store.save(trained_classifier, metadata, tmp_path_factory.mktemp("model") / "classifier.joblib")
    return path, metrics


@pytest.fixture(scope="module")
def demo_run(model_file, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo") / "out"
    env = {**os.environ, "CIVICLOOP_MODEL_PATH": str(model_file[0]), "CIVICLOOP_NO_SERVE": "1", "COLUMNS": "160"}
    env.pop("CIVICLOOP_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "civicloop", "demo", "--sample", str(SAMPLE), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=out.parent)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done


def test_demo_runs_every_step_on_the_real_slice(demo_run, model_file):
    out, done = demo_run
    report = json.loads((out / "demo.json").read_text(encoding="utf-8"))
    engine = create_engine(f"sqlite:///{out / 'demo.db'}")
    with engine.connect() as conn:
        def one(sql: str) -> int:
            return int(conn.execute(text(sql)).scalar_one())

        assert report["imported"] == one("SELECT count(*) FROM service_requests") > 3 * SAMPLE
        assert report["replied"] == one("SELECT count(*) FROM work_orders WHERE replied_at IS NOT NULL") == SAMPLE
        # every unreplied message went through intake: the ones still submitted wait in the dispatcher's queue
        assert one("""SELECT count(*) FROM service_requests r LEFT JOIN triages t ON t.request_id = r.id
                      WHERE r.status = 'submitted' AND (t.id IS NULL OR NOT t.queued)""") == 0
        assert one("SELECT count(*) FROM service_requests WHERE status = 'submitted'") == report["intake"][
            "outcomes"].get("queued", 0) > 0
        assert report["intake"]["n"] == report["imported"] - report["replied"]
        assert sum(report["intake"]["outcomes"].values()) == report["intake"]["n"]
        assert report["intake"]["outcomes"]["auto_dispatched"] == one(
            "SELECT count(*) FROM triages WHERE outcome = 'auto_dispatched'")
        assert report["intake"]["outcomes"].get("duplicate", 0) == one(
            "SELECT count(*) FROM service_requests WHERE reject_reason = 'duplicate'")
        # territorial routing: the street of the place leads, else its district, else the city's government
        wrong = one("""SELECT count(*) FROM service_requests r JOIN triages t ON t.request_id = r.id
                       JOIN org_units u ON u.id = r.lead_unit_id
                       WHERE t.outcome = 'auto_dispatched' AND NOT (
                         (r.street_id IS NOT NULL AND r.lead_unit_id = r.street_id)
                         OR (r.street_id IS NULL AND r.district_id IS NOT NULL AND r.lead_unit_id = r.district_id)
                         OR (r.street_id IS NULL AND r.district_id IS NULL AND u.name = 'A市人民政府'))""")
        assert wrong == 0
        assert one("SELECT count(*) FROM users") == 8
    assert report["model"]["trained"] is False  # the saved model matched the data: loaded, not retrained
    assert report["model"]["macro_f1"] == pytest.approx(model_file[1]["macro_f1"])
    assert f"macro-F1 {model_file[1]['macro_f1']:.3f}" in done.stdout
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["month"] == report["month"] and metrics["units"]
    year = metrics["timeliness"]["year"]
    with engine.connect() as conn:
        replied_that_year = conn.execute(text(
            "SELECT count(*) FROM work_orders WHERE role = 'lead' AND replied_at >= :a AND replied_at < :b"),
            {"a": f"{year - 1}-12-31 16:00:00", "b": f"{year}-12-31 16:00:00"}).scalar_one()
    assert sum(u["replied"] for u in metrics["timeliness"]["units"]) == replied_that_year > 0
    assert report["timeliness"] == [u for u in metrics["timeliness"]["units"] if u["rank"] is not None][:10]
    assert (out / "ledger.xlsx").stat().st_size > 0
    assert (out / "analysis" / "report.html").read_text(encoding="utf-8").count("<table") >= 1
    logins = (out / "logins.txt").read_text(encoding="utf-8").splitlines()
    assert [line.split("\t")[0] for line in logins] == ["operator", "dispatcher", "handler", "grid_worker",
                                                        "supervisor", "analyst", "admin", "resident"]


def test_demo_refuses_a_data_folder_without_messages(tmp_path):
    env = {**os.environ, "CIVICLOOP_NO_SERVE": "1"}
    done = subprocess.run([sys.executable, "-m", "civicloop", "demo", "--data", str(tmp_path), "--out",
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "no teddy2020c message files" in done.stdout + done.stderr


def test_demo_without_real_data_generates_a_city(tmp_path):
    """``--synthetic`` (what runs when the shared data are absent): ``civicloop generate``'s city and
    requests through the rates, the analysis and the reports; the planted hotspots are found."""
    out = tmp_path / "out"
    env = {**os.environ, "CIVICLOOP_NO_SERVE": "1", "COLUMNS": "160"}
    env.pop("CIVICLOOP_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "civicloop", "demo", "--synthetic", "--requests", "3000", "--out",
                           str(out)], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((out / "generate.json").read_text(encoding="utf-8"))
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    engine = create_engine(f"sqlite:///{out / 'demo.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM service_requests")).scalar_one() == 3000
        found = {row[0] for row in conn.execute(text("SELECT request_ids FROM findings WHERE kind = 'hotspot'"))}
        handler_unit = conn.execute(text("SELECT o.code FROM users u JOIN org_units o ON o.id = u.unit_id "
                                         "WHERE u.role = 'handler'")).scalar_one()
    assert handler_unit == "GC-D01-S01"
    assert any(r["rank"] == 1 and r["resolution_rate"] is not None for r in metrics["units"])
    planted = min(spot["count"] for spot in manifest["hotspots"])  # 20 requests at one address each
    biggest = max(len(json.loads(ids)) if isinstance(ids, str) else len(ids) for ids in found)
    assert biggest >= planted and "热点 hotspot 1." in done.stdout
    assert (out / "analysis" / "report.html").is_file() and (out / "ledger.xlsx").is_file()
