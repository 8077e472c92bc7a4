"""The ``civicloop`` command as a user runs it: a real process on a temporary SQLite database."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from openpyxl import load_workbook

from tests.helpers import run_cli


def run(*args: str, db: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, db=db, cwd=cwd)


def test_init_then_ledger_export_and_metrics(tmp_path):
    db = tmp_path / "c.db"
    init = run("init", db=db, cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert "承办单位 units: +35 new" in init.stdout
    again = run("init", db=db, cwd=tmp_path)
    assert again.returncode == 0 and "units: +0 new" in again.stdout  # nothing new to seed
    out = tmp_path / "ledger.xlsx"
    export = run("ledger", "export", "--out", str(out), db=db, cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    assert [c.value for c in next(load_workbook(out).active.iter_rows(max_row=1))][:2] == ["诉求编号", "登记时间"]
    metrics = run("metrics", "--month", "2019-06", "--json", db=db, cwd=tmp_path)
    assert (metrics.returncode, metrics.stdout.strip()) == (0, "[]")


def test_bad_arguments_name_the_option(tmp_path):
    db = tmp_path / "c.db"
    bad_day = run("ledger", "export", "--out", "x.xlsx", "--start", "2019-02-30", db=db, cwd=tmp_path)
    assert bad_day.returncode == 2 and "--start" in bad_day.stderr and "2019-02-30" in bad_day.stderr
    bad_out = run("ledger", "export", "--out", "x.txt", db=db, cwd=tmp_path)
    assert bad_out.returncode == 2 and "--out" in bad_out.stderr
    bad_month = run("metrics", "--month", "2019-13", db=db, cwd=tmp_path)
    assert bad_month.returncode == 2 and "月份须在 2000-01 到 2100-12 之间" in bad_month.stdout


def test_user_create_then_token_then_the_api_accepts_it(tmp_path):
    db = tmp_path / "u.db"
    assert run("init", db=db, cwd=tmp_path).returncode == 0
    made = run("user", "create", "wang", "--role", "handler", "--unit", "D01-S01", "--password", "long enough pw",
               db=db, cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "user wang (handler, unit D01-S01) created" in made.stdout
    no_unit = run("user", "create", "li", "--role", "handler", "--password", "long enough pw", db=db, cwd=tmp_path)
    assert no_unit.returncode == 2 and "unit_id" in no_unit.stdout
    bad_role = run("user", "create", "li", "--role", "mayor", "--password", "long enough pw", db=db, cwd=tmp_path)
    assert bad_role.returncode == 2 and "--role" in bad_role.stdout
    generated = run("user", "create", "zhao", "--role", "analyst", db=db, cwd=tmp_path)  # no tty: one is made
    assert generated.returncode == 0 and "generated password" in generated.stdout
    token = run("user", "token", "wang", db=db, cwd=tmp_path)
    assert token.returncode == 0
    secret = token.stdout.strip().splitlines()[-1]

    from fastapi.testclient import TestClient

    from civicloop.app import create_app
    from civicloop.core.db import get_engine
    from civicloop.core.settings import get_settings

    os.environ["CIVICLOOP_DATABASE_URL"] = f"sqlite:///{db}"
    get_settings.cache_clear()
    get_engine.cache_clear()
    try:
        me = TestClient(create_app()).get("/api/v1/auth/me", headers={"Authorization": f"Bearer {secret}"})
        assert me.status_code == 200 and me.json()["username"] == "wang" and me.json()["role"] == "handler"
    finally:
        del os.environ["CIVICLOOP_DATABASE_URL"]
        get_settings.cache_clear()
        get_engine.cache_clear()
