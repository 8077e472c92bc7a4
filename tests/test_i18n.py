"""The gettext catalogues (issue 8, English): the two ``.po`` files parse with Babel, carry their
Language header and the same msgids with the same ``{placeholder}`` names; every message code the
code base names statically exists; the look-up falls back from English to Chinese, and an unknown
code reads as itself (logged once); ``Accept-Language: en`` and ``?lang=en`` give English errors on
the API and ``?lang=en`` English pages on the web."""

from __future__ import annotations

import datetime
import logging
import re
import string
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

from civicloop.core.i18n import CATALOGUES, LANGS, Catalogues, known, label, pick_language, translate, word
from civicloop.web.messages import text

SRC = Path(__file__).resolve().parent.parent / "src" / "civicloop"
API = "/api/v1/requests"
OPERATOR = {"X-Civicloop-Actor": "operator-1", "X-Civicloop-Role": "operator"}


def parsed(lang: str) -> Catalog:
    """The package's catalogue of ``lang`` as Babel reads it (invalid syntax raises)."""
    with CATALOGUES.po_path(lang).open("rb") as handle:
        return read_po(handle, locale=lang, domain="civicloop", abort_invalid=True)


def placeholders(template: str) -> set[str]:
    """The ``{name}`` fields of a ``str.format`` template."""
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


# --- the catalogues themselves ------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_the_catalogue_parses_with_babel_and_names_its_language(lang: str) -> None:
    catalog = parsed(lang)
    assert str(catalog.locale) == lang and dict(catalog.mime_headers)["Language"] == lang
    assert "utf-8" in dict(catalog.mime_headers)["Content-Type"].lower()
    messages = [m for m in catalog if m.id]
    assert len(messages) > 400
    assert not [m.id for m in messages if m.fuzzy or not m.string], "fuzzy or untranslated entries"
    assert not [m.id for m in messages if not isinstance(m.id, str)], "plural entries are not used"


def test_both_catalogues_have_the_same_msgids() -> None:
    zh, en = ({m.id for m in parsed(lang) if m.id} for lang in ("zh", "en"))
    assert zh - en == set() and en - zh == set()


def test_placeholders_are_the_same_in_both_languages() -> None:
    zh, en = CATALOGUES.texts("zh"), CATALOGUES.texts("en")
    differ = {code: (placeholders(zh[code]), placeholders(en[code]))
              for code in zh if placeholders(zh[code]) != placeholders(en[code])}
    assert differ == {}
    assert placeholders(zh["not_found"]) == {"what", "id"}  # the parse does see them


def test_the_two_languages_differ_where_they_should() -> None:
    """Catches a catalogue pasted over the other: most entries read differently in zh and en."""
    zh, en = CATALOGUES.texts("zh"), CATALOGUES.texts("en")
    same = [code for code in zh if zh[code] == en[code]]
    assert len(same) < len(zh) // 20, same


# --- every code the code base names exists ----------------------------------------------------


PY_CODES = [
    re.compile(r'\btranslate\(\s*"([^"{}]+)"'),  # translate("code", lang)
    re.compile(r'^\s*code\s*=\s*"([^"{}]+)"', re.M),  # an error class's code
    re.compile(r'\bFieldError\(\s*(?:\((?:[^()]|\([^()]*\))*\)|[^,()]+),\s*"([^"{}]+)"'),  # FieldError(field, "code")
    re.compile(r'\b(?:CivicloopError|Forbidden|RuleViolation|AttributeProblem|FormInvalid)\(\s*"([^"{}]+)"'),
    # literals of the message-only namespaces anywhere (Open311 problems, validation, triage reasons...)
    re.compile(r'["\']((?:o311|v|triage|place\.why|audit|status|action|role|channel|satisfaction|word)'
               r'\.[a-z0-9_]+(?:\.[a-z0-9_]+)*)["\']'),
]
LABEL_CODES = re.compile(r'\bNotFound\(\s*"(\w+)"')  # NotFound("OrgUnit", id): the entity's label
WEB_CODES = [
    re.compile(r'\b(?:text|t)\(\s*"([^"{}]+)"'),  # text("key", lang), page.t("key")
    re.compile(r'"([a-z0-9_]+(?:\.[a-z0-9_]+)+)"'),  # any dotted literal of a web module is a UI key...
]
TEMPLATE_CODES = re.compile(r"""\bt\(\s*['"]([^'"{}]+)['"]""")  # {{ t("key") }}


def web_known(key: str) -> bool:
    """A key :func:`civicloop.web.messages.text` can show: a page string or a domain message."""
    return known(f"web.{key}") or known(key)


def test_every_message_code_named_in_the_python_code_exists() -> None:
    found: dict[str, str] = {}
    for path in SRC.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        for pattern in PY_CODES:
            for code in pattern.findall(source):
                found.setdefault(code, str(path.relative_to(SRC)))
        for name in LABEL_CODES.findall(source):
            found.setdefault(f"label.{name}", str(path.relative_to(SRC)))
    assert len(found) > 100, "the scan should see the code base's messages"
    assert {code: where for code, where in found.items() if not known(code)} == {}


def test_every_ui_key_of_the_web_modules_and_templates_exists() -> None:
    missing: dict[str, str] = {}
    seen = 0
    for path in (SRC / "web").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        for pattern in WEB_CODES:
            for key in pattern.findall(source):
                seen += 1
                if not key.endswith(".html") and not web_known(key):  # ...but a template's file name
                    missing.setdefault(key, path.name)
    for path in (SRC / "web" / "templates").rglob("*.html"):
        for key in TEMPLATE_CODES.findall(path.read_text(encoding="utf-8")):
            seen += 1
            if not key.endswith(".") and not web_known(key):  # t("an.kind." ~ kind): checked below
                missing.setdefault(key, path.name)
    assert seen > 300 and missing == {}


def test_every_value_a_template_looks_up_by_prefix_has_its_string() -> None:
    """The templates' computed keys (``t('tier.' ~ order.tier)``) cover every value they can meet."""
    from civicloop.analytics.findings import KINDS
    from civicloop.analytics.models import FindingStatus
    from civicloop.catalog.models import DeadlineTier
    from civicloop.requests.models import RejectReason, SupervisionReason, TriageOutcome, WorkOrderRole

    used = set()
    for path in (SRC / "web" / "templates").rglob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*['"]([a-z0-9_.]+\.)['"]\s*~""", path.read_text(encoding="utf-8")))
    values = {"an.kind.": KINDS, "an.status.": [s.value for s in FindingStatus],
              "tier.": [t.value for t in DeadlineTier], "reject.": [r.value for r in RejectReason],
              "wo.": [r.value for r in WorkOrderRole], "outcome.": [o.value for o in TriageOutcome],
              "sv.reason.": [r.value for r in SupervisionReason], "error.": ["401", "403", "404", "409", "422", "429",
                                                                             "503"]}
    assert used == set(values), "a new computed key in a template: list its values here"
    assert [prefix + value for prefix, found in values.items() for value in found
            if not web_known(prefix + value)] == []


# --- the look-up --------------------------------------------------------------------------------


def write_catalogue(root: Path, lang: str, entries: dict[str, str], fuzzy: frozenset[str] = frozenset()) -> None:
    """Write a small ``civicloop.po`` of ``lang`` under ``root`` as a PO editor would save it."""
    catalog = Catalog(locale=lang, domain="civicloop", fuzzy=False,
                      creation_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    for code, value in entries.items():
        catalog.add(code, value, flags=["fuzzy"] if code in fuzzy else [])
    path = root / lang / "LC_MESSAGES" / "civicloop.po"
    path.parent.mkdir(parents=True)
    with path.open("wb") as handle:
        write_po(handle, catalog)


def test_english_falls_back_to_chinese_for_a_missing_empty_or_fuzzy_entry(tmp_path: Path) -> None:
    write_catalogue(tmp_path, "zh", {"hello": "你好，{name}", "gone": "走了", "draft": "草稿", "only_zh": "只有中文"})
    write_catalogue(tmp_path, "en", {"hello": "Hello, {name}", "gone": "", "draft": "Draft"},
                    fuzzy=frozenset({"draft"}))
    catalogues = Catalogues(tmp_path)
    assert catalogues.template("hello", "en") == "Hello, {name}"
    assert catalogues.template("hello", "zh") == "你好，{name}"
    assert [catalogues.template(code, "en") for code in ("gone", "draft", "only_zh")] == ["走了", "草稿", "只有中文"]
    assert catalogues.template("hello", "fr") == "你好，{name}"  # a language not offered reads as the default
    assert catalogues.template("nowhere", "en") is None and not catalogues.known("nowhere")
    assert catalogues.known("only_zh")


def test_a_code_missing_everywhere_reads_as_itself_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    code = "test_i18n.no_such_code"
    with caplog.at_level(logging.WARNING, logger="civicloop.core.i18n"):
        assert translate(code, "en") == code and translate(code, "zh", x=1) == code
        assert text(code, "en") == code
    assert [r.getMessage() for r in caplog.records].count(
        f"no message {code!r} in the catalogues ({CATALOGUES.locale_dir})") == 1


def test_an_unknown_validation_type_reads_as_the_generic_message() -> None:
    """``v.<pydantic error type>`` codes are open-ended: an unlisted type still reads as a sentence."""
    assert translate("v.test_i18n_unlisted_type", "en") == "Invalid value"
    assert translate("v.test_i18n_unlisted_type", "zh") == "取值无效"


def test_the_public_functions_read_the_catalogues() -> None:
    assert translate("not_found", "zh", what="诉求", id=7) == "诉求不存在：7"
    assert translate("not_found", "en", what="Service request", id=7) == "Service request not found: 7"
    assert translate("not_found", "en") == "{what} not found: {id}"  # a missing parameter leaves the template
    assert (word("status", "closed", "zh"), word("status", "closed", "en")) == ("已结案", "closed")
    assert word("status", "no_such_status", "en") == "no_such_status"
    assert (label("WorkOrder", "zh"), label("WorkOrder", "en"), label("Nothing", "en")) == ("工单", "Work order",
                                                                                             "Nothing")
    assert (text("nav.operator", "zh"), text("nav.operator", "en")) == ("受理", "Intake")
    assert text("count", "en", n=3) == "3 in all"
    assert text("status.closed", "en") == "closed"  # a domain message through the web look-up
    assert pick_language("en-GB,en;q=0.9,zh;q=0.8") == "en" and pick_language("fr, zh-CN;q=0.5") == "zh"
    assert pick_language(None) == "zh"


# --- English on the wire ------------------------------------------------------------------------


def test_the_api_answers_errors_in_english_on_request(client) -> None:
    missing = f"{API}/987654"
    chinese = client.get(missing, headers=OPERATOR).json()["error"]
    assert chinese == {"code": "not_found", "message": "诉求不存在：987654", "fields": []}
    by_header = client.get(missing, headers={**OPERATOR, "Accept-Language": "en-US,en;q=0.9"}).json()["error"]
    by_query = client.get(missing, params={"lang": "en"}, headers=OPERATOR).json()["error"]
    assert by_header == by_query == {"code": "not_found", "message": "Service request not found: 987654",
                                     "fields": []}
    invalid = client.post(API, json={"description": "三号楼前路灯坏了"},
                          headers={**OPERATOR, "Accept-Language": "en"}).json()["error"]
    assert invalid["code"] == "validation" and invalid["message"] == "The submitted data is invalid"
    assert {"field": "title", "type": "missing", "message": "This field is required"} in invalid["fields"]


def test_the_web_pages_are_english_with_the_switch(client) -> None:
    chinese, english = client.get("/login").text, client.get("/login?lang=en").text
    assert '<html lang="zh-CN"' in chinese and "用户名" in chinese
    assert '<html lang="en"' in english and "User name" in english and "用户名" not in english
    visitor = client.get("/operator?lang=en")  # a staff page sends a visitor to the login, in English
    assert visitor.status_code == 200 and "Log in" in visitor.text and "登录" not in visitor.text
