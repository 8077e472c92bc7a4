"""Render the README's screenshots (the supervisor's and the analyst's pages) from a generated city.

    .venv/bin/python scripts/readme_screenshots.py [--out docs/images]

Generates a city of its own and three months of requests (``civicloop generate``: the project's own
sample data, so no row of the shared data ends up in the repository), runs the proactive analysis so
the analyst has findings, creates a supervisor and an analyst, serves the app and photographs
``/supervise`` and ``/analysis`` (the top of each page and, below it, the ranking and the findings) in
Debian's Chromium (``/usr/bin/chromium``, never a downloaded one).
Takes about a minute. Exits non-zero when a step fails.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("civicloop"))
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--lang=zh-CN"]
PASSWORD = "readme-screenshots-1"


def run(*args: str, env: dict[str, str], cwd: Path) -> None:
    """Run ``civicloop ARGS`` and stop the script with its output when it fails."""
    done = subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"civicloop {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="civicloop-shots-") as work:
        home = Path(work)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICLOOP_")}
        env.update(CIVICLOOP_DATABASE_URL=f"sqlite:///{home / 'city.db'}", CIVICLOOP_PASSWORD=PASSWORD,
                   CIVICLOOP_MODEL_PATH=str(home / "no-model"))
        run("generate", "--requests", "30000", "--seed", "7", "--months", "3", "--start", "2026-08-01",
            env=env, cwd=home)
        run("analyze", "--out", str(home / "analysis"), env=env, cwd=home)
        run("user", "create", "supervisor", "--role", "supervisor", "--unit", "GC-D01", env=env, cwd=home)
        run("user", "create", "analyst", "--role", "analyst", env=env, cwd=home)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen([CLI, "serve", "--port", str(port)], cwd=home, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        root = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{root}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                pages = (("supervisor", "/supervise?month=2026-09&level=street", "supervisor", "#ranking"),
                         ("analyst", "/analysis", "analyst", "h2:nth-of-type(2)"))
                for user, path, name, below in pages:
                    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN",
                                                  base_url=root)
                    page = context.new_page()
                    page.goto("/login")
                    page.get_by_label("用户名").fill(user)
                    page.get_by_label("密码").fill(PASSWORD)
                    page.get_by_role("button", name="登录").click()
                    page.wait_for_load_state("networkidle")
                    page.goto(path)
                    page.wait_for_load_state("networkidle")
                    page.wait_for_timeout(1500)  # ECharts animates its first drawing
                    page.screenshot(path=str(options.out / f"{name}.png"), full_page=False)
                    page.locator(below).first.evaluate("node => window.scrollTo(0, node.offsetTop - 80)")
                    page.wait_for_timeout(1500)
                    page.screenshot(path=str(options.out / f"{name}-more.png"), full_page=False)
                    context.close()
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=20)
    print(f"screenshots → {options.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
