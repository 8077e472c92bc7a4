"""The web app end to end in a real browser: Debian's Chromium driven by Playwright against a real
``civicloop serve`` (a subprocess on a free port, a temporary SQLite database built by ``civicloop
init``, intake on without a classifier model, so new requests wait in the dispatcher's queue).

One story, each step by the role that does it: an operator takes a call (typing, with the live
suggestions, Ctrl+Enter files it); a resident files a request of their own on the public form; the
dispatcher dispatches both from the queue; the street's handler acknowledges and replies; the resident
reads the reply and rates it; the supervisor's ranking shows the street's rates change. Every page is
saved as a screenshot (``$CIVICLOOP_SCREENSHOTS``, else ``test-output/screenshots/``, git-ignored), and a
phone-sized and an English page too.

Never ``playwright install``: the browser is ``/usr/bin/chromium`` (``make test`` installs it); without
it the test is skipped, saying so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from civicloop.core.db import make_engine, session_factory
from civicloop.core.settings import Settings
from civicloop.org.models import OrgUnit
from tests.helpers import serving
from tests.web_helpers import PASSWORD, make_users, seed_activity

CHROMIUM = Path("/usr/bin/chromium")
CLI = str(Path(sys.executable).with_name("civicloop"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (make test installs it: "
                                                     "apt-get install chromium fonts-noto-cjk)"),
    pytest.mark.xdist_group("browser"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")



@pytest.fixture(scope="module")
def shots() -> Path:
    """Where the screenshots go: ``$CIVICLOOP_SCREENSHOTS``, else ``test-output/screenshots/`` (git-ignored)."""
    folder = Path(os.environ.get("CIVICLOOP_SCREENSHOTS") or Path(__file__).resolve().parents[1] / "test-output"
                  / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, int]]]:
    """A running ``civicloop serve`` on a fresh database with users of every role and a month of work;
    yields (root URL, unit ids by code)."""
    home = tmp_path_factory.mktemp("web-serve")
    url = f"sqlite:///{home / 'civicloop.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICLOOP_")}
    env.update(CIVICLOOP_DATABASE_URL=url, CIVICLOOP_MODEL_PATH=str(home / "no-model"),
               CIVICLOOP_RATE_LIMIT_LOGIN="1000/minute", CIVICLOOP_RATE_LIMIT_INTAKE="1000/minute")
    subprocess.run([CLI, "init"], cwd=home, env=env, capture_output=True, text=True, timeout=300, check=True)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        city = {u.code: u.id for u in session.scalars(select(OrgUnit))}
    make_users(engine, city)
    seed_activity(engine, city, Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    engine.dispose()
    with serving(CLI, home, env) as root:
        yield root, city


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium, headless, launched once for the module."""
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


def log_in(browser: object, root: str, username: str, *, phone: bool = False) -> object:
    """A fresh browser context (its own cookies) logged in as ``username``; returns its page."""
    size = {"width": 390, "height": 844} if phone else {"width": 1366, "height": 900}
    context = browser.new_context(viewport=size, locale="zh-CN", base_url=root)  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(r"/(operator|dispatch|unit|supervise|analysis|resident|ledger)"))
    return page


def shot(page: object, shots: Path, name: str, *, full: bool = True) -> None:
    """Save the page (whole, or the viewport) as ``<name>.png``."""
    page.screenshot(path=str(shots / f"{name}.png"), full_page=full)  # type: ignore[attr-defined]


def ranking_row(page: object, unit: str) -> str:
    """The text of the ranking table's row of ``unit`` (cells separated by tabs)."""
    return page.locator("#ranking-table tr", has_text=unit).first.inner_text()  # type: ignore[attr-defined]


def test_the_loop_in_a_browser(server: tuple[str, dict[str, int]], browser: object, shots: Path) -> None:
    root, city = server
    expect = playwright_api.expect

    # the login page, as a visitor sees it
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN",  # type: ignore[attr-defined]
                                  base_url=root)
    visitor = context.new_page()
    visitor.goto("/operator")
    expect(visitor).to_have_url(re.compile(r"/login\?next=%2Foperator"))
    shot(visitor, shots, "01-login")
    context.close()

    # 1. the operator takes a call: typing shows suggestions, Ctrl+Enter files it
    operator = log_in(browser, root, "op")
    expect(operator).to_have_url(re.compile("/operator"))
    expect(operator.locator("#title")).to_be_focused()
    operator.locator("#title").press_sequentially("路灯不亮<script>alert(1)</script>")
    operator.locator("#description").press_sequentially("望湖街道第一社区三号楼前的路灯坏了一周，电话13812345678。")
    expect(operator.locator("#suggest")).to_contain_text("望湖街道第一社区", timeout=15000)
    shot(operator, shots, "02-operator-suggestions")
    operator.locator("#description").press("Control+Enter")
    expect(operator.locator(".flash")).to_contain_text("诉求已登记")
    call_id = int(re.search(r"id=(\d+)", operator.url).group(1))  # type: ignore[union-attr]
    expect(operator.get_by_text("<script>alert(1)</script>").first).to_be_visible()  # shown as text, not run
    shot(operator, shots, "03-operator-filed")

    # 2. a resident files a request of their own on the public form
    resident = log_in(browser, root, "res")
    resident.goto("/submit")
    resident.get_by_label("诉求标题").fill("望湖街道第一社区 垃圾桶满溢")
    resident.get_by_label("诉求内容").fill("二号楼旁垃圾桶三天没清运，气味很大。")
    resident.get_by_label("地址 / 地点").fill("望湖街道第一社区二号楼")
    resident.get_by_label("照片链接").fill("https://example.org/bin.jpg")
    shot(resident, shots, "04-resident-submit")
    resident.get_by_role("button", name="提交").click()
    expect(resident).to_have_url(re.compile(r"/resident/requests/\d+"))
    own_id = int(re.search(r"/resident/requests/(\d+)", resident.url).group(1))  # type: ignore[union-attr]

    # 3. the dispatcher dispatches both from the queue (no model: they wait with their reason)
    dispatcher = log_in(browser, root, "disp")
    expect(dispatcher.locator(f"#q-{call_id}")).to_contain_text("没有可用的分类模型")
    shot(dispatcher, shots, "05-dispatch-queue")
    for request_id in (call_id, own_id):
        item = dispatcher.locator(f"#q-{request_id}")
        if item.locator("details.manual[open]").count() == 0:  # open when intake had no suggestion
            item.get_by_text("人工选择").click()
        item.get_by_label("主办单位").fill(f"望湖街道 #{city['D01-S01']}")
        item.get_by_role("button", name="派单").click()
        expect(dispatcher.locator(".flash")).to_contain_text("已派单")
    expect(dispatcher.locator(f"#q-{call_id}")).to_have_count(0)

    # 4. the street's handler: orders coloured by deadline; acknowledge and reply
    handler = log_in(browser, root, "street1")
    expect(handler.locator("tr.row-due-red")).not_to_have_count(0)
    expect(handler.locator("tr.row-due-orange")).not_to_have_count(0)
    expect(handler.locator("tr.row-due-green")).not_to_have_count(0)
    shot(handler, shots, "06-unit-orders")
    for request_id in (call_id, own_id):
        handler.goto("/unit")
        handler.get_by_role("link", name=re.compile(f"№{request_id} ")).click()
        expect(handler.locator(".words")).not_to_contain_text("13812345678")  # the contact stays masked
        handler.get_by_role("button", name="签收").click()
        expect(handler.locator(".flash")).to_contain_text("已签收")
        if request_id == own_id:
            shot(handler, shots, "07-unit-order")
        handler.get_by_label("答复内容").fill("已安排环卫人员清运，并增加了清运频次。")
        handler.get_by_role("button", name="办结答复").click()
        expect(handler.locator(".flash")).to_contain_text("已办结答复")

    # 5. the supervisor's ranking before the rating: the street has no callback yet
    supervisor = log_in(browser, root, "sup")
    before = ranking_row(supervisor, "望湖街道")
    assert "100.0%" not in before.split("\t")[5:7], before

    # 6. the resident reads the reply and rates it
    resident.goto(f"/resident/requests/{own_id}")
    expect(resident.locator(".reply-box")).to_contain_text("已安排环卫人员清运")
    resident.get_by_text("是", exact=True).click()
    resident.get_by_text("满意", exact=True).click()
    shot(resident, shots, "08-resident-rate")
    resident.get_by_role("button", name="提交评价").click()
    expect(resident.locator(".flash")).to_contain_text("感谢您的评价")
    expect(resident.locator(".status")).to_contain_text("已结案")
    resident.goto("/resident")
    shot(resident, shots, "09-resident-list")

    # 7. the supervisor sees the rates change, drills down to the street's cases
    supervisor.reload()
    after = ranking_row(supervisor, "望湖街道")
    assert after != before and "100.0%" in after, (before, after)
    shot(supervisor, shots, "10-supervise")
    supervisor.locator("#ranking-table").get_by_role("link", name="望湖街道").click()
    expect(supervisor.get_by_role("link", name=re.compile(f"№{own_id} "))).to_be_visible()
    shot(supervisor, shots, "11-supervise-drilldown")

    # the other pages with real data: case, ledger, analysis (charts and the grid map), English, phone
    supervisor.goto(f"/case/{own_id}")
    shot(supervisor, shots, "12-case")
    analyst = log_in(browser, root, "ana")
    expect(analyst.locator(".map svg")).to_be_visible(timeout=15000)
    expect(analyst.locator("#replies-table")).to_be_visible(timeout=30000)
    shot(analyst, shots, "13-analysis")
    analyst.goto("/ledger")
    expect(analyst.locator("#ledger-table")).to_contain_text("垃圾桶满溢")
    shot(analyst, shots, "14-ledger")
    analyst.goto("/ledger?lang=en")
    expect(analyst.locator("html")).to_have_attribute("lang", "en")
    expect(analyst.get_by_role("button", name="Filter")).to_be_visible()
    shot(analyst, shots, "15-ledger-english")
    phone = log_in(browser, root, "op", phone=True)
    shot(phone, shots, "16-operator-phone", full=False)
    handset = log_in(browser, root, "street1", phone=True)
    shot(handset, shots, "17-unit-phone", full=False)
