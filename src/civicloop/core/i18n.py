"""Messages in the user's language: Simplified Chinese first, English on request.

The texts live in gettext catalogues, one per language, edited with any PO editor:
``civicloop/locale/<lang>/LC_MESSAGES/civicloop.po``. A ``msgid`` is the stable message code the
code uses (``not_found``, ``v.phone``, ``status.closed``, ``label.WorkOrder``, ``web.nav.operator``);
its ``msgstr`` is the text, a ``str.format`` template whose ``{placeholder}`` names are the same in
every language. docs/i18n.md says how to fix a text or add a language.

Loading: each ``.po`` is read with Babel (:func:`babel.messages.pofile.read_po`) the first time a
language is asked for, and kept in memory. There is no ``.mo`` compile step: the package ships the
``.po`` files themselves (package-data), so a fresh clone (``make demo``/``make test``), an editable
install and a wheel all read the same file a translator just saved, and nothing generated can go
stale. Parsing the two catalogues takes a few milliseconds once per process. Fuzzy and empty
entries are treated as untranslated, as gettext does.

Look-up: the asked language, then Chinese (the default and the complete catalogue); a code found in
neither is logged once and returned as it is, except an unknown field-validation code (``v.<pydantic
error type>``: the error types are open-ended), which reads as the generic ``v.default``.

The client's language comes from ``Accept-Language`` (RFC 9110 §12.5.4): the first of ``zh``/``en``
it names wins, else the configured default.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

LANGS = ("zh", "en")
DEFAULT_LANG = "zh"
DOMAIN = "civicloop"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"

log = logging.getLogger(__name__)
_WARNED: set[str] = set()
_WARN_LIMIT = 1000  # codes can come from URLs (``?msg=``): remember a bounded number of them


class Catalogues:
    """The message catalogues under one ``locale`` directory, each read with Babel at first use.

    ``texts(lang)`` is ``{code: text}`` of ``<dir>/<lang>/LC_MESSAGES/civicloop.po``; entries marked
    fuzzy or left empty are not translations yet and are left out, as gettext does."""

    def __init__(self, locale_dir: Path, langs: tuple[str, ...] = LANGS, default: str = DEFAULT_LANG) -> None:
        self.locale_dir = locale_dir
        self.langs = langs
        self.default = default
        self._texts: dict[str, dict[str, str]] = {}

    def po_path(self, lang: str) -> Path:
        """Return the path of the ``.po`` catalogue of ``lang``."""
        return self.locale_dir / lang / "LC_MESSAGES" / f"{DOMAIN}.po"

    def texts(self, lang: str) -> dict[str, str]:
        """Return ``{code: text}`` of ``lang`` (empty for a language that is not offered)."""
        found = self._texts.get(lang)
        if found is None:
            found = self._read(lang) if lang in self.langs else {}
            self._texts[lang] = found
        return found

    def _read(self, lang: str) -> dict[str, str]:
        """Parse ``lang``'s ``.po`` (invalid syntax raises rather than losing messages silently)."""
        with self.po_path(lang).open("rb") as handle:
            parsed = read_po(handle, locale=lang, domain=DOMAIN, abort_invalid=True)
        return {message.id: message.string for message in parsed
                if message.id and isinstance(message.id, str) and isinstance(message.string, str)
                and message.string and not message.fuzzy}

    def template(self, code: str, lang: str) -> str | None:
        """Return the text of ``code`` in ``lang``, else in the default language, else ``None``."""
        found = self.texts(lang).get(code) if lang != self.default else None
        return found if found is not None else self.texts(self.default).get(code)

    def known(self, code: str) -> bool:
        """Tell whether some catalogue has a text for ``code``."""
        return any(code in self.texts(lang) for lang in self.langs)


CATALOGUES = Catalogues(LOCALE_DIR)
"""The package's own catalogues, the ones :func:`translate` reads."""


def catalogue(lang: str) -> dict[str, str]:
    """Return ``{code: text}`` of the package's catalogue of ``lang``."""
    return CATALOGUES.texts(lang)


def known(code: str) -> bool:
    """Tell whether some catalogue of the package has a text for ``code``."""
    return CATALOGUES.known(code)


def _missing(code: str) -> None:
    """Log, once per code, that no catalogue has ``code``."""
    if code not in _WARNED and len(_WARNED) < _WARN_LIMIT:
        _WARNED.add(code)
        log.warning("no message %r in the catalogues (%s)", code, LOCALE_DIR)


def pick_language(accept_language: str | None, default: str = DEFAULT_LANG) -> str:
    """Return ``"zh"`` or ``"en"`` from an ``Accept-Language`` header value.

    Entries are taken in order of their ``q`` weight; the first one whose primary tag is ``zh`` or
    ``en`` wins. Malformed entries are skipped; with no match, ``default``.
    """
    if not accept_language:
        return default
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        pieces = part.strip().split(";")
        tag = pieces[0].strip().lower()
        weight = 1.0
        for param in pieces[1:]:
            name, _, val = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    weight = float(val)
                except ValueError:
                    weight = 0.0
        primary = tag.split("-")[0]
        if primary in LANGS and weight > 0:
            ranked.append((-weight, position, primary))
    return sorted(ranked)[0][2] if ranked else default


def translate(code: str, lang: str, /, **params: Any) -> str:
    """Return the message ``code`` in ``lang`` with ``params`` filled in.

    A code missing in ``lang`` reads in Chinese; one missing everywhere is logged once and returned
    as it is (a ``v.*`` field-validation code reads as ``v.default``). A missing placeholder leaves
    the template as it is rather than raising.
    """
    template = CATALOGUES.template(code, lang)
    if template is None:
        _missing(code)
        if not code.startswith("v."):
            return code
        template = CATALOGUES.template("v.default", lang) or code
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):
        return template


def word(kind: str, value: object, lang: str) -> str:
    """Return the display word of a stored value (``word("status", "closed", "zh")`` → 已结案), or
    the value itself when the catalogue has no word for it."""
    key = f"{kind}.{value}"
    return translate(key, lang) if known(key) else str(value)


def label(name: str, lang: str) -> str:
    """Return the user-facing name of an entity (``"WorkOrder"`` → 工单 / Work order), from the
    catalogue's ``label.<name>`` entries; the name itself when it has none."""
    key = f"label.{name}"
    return translate(key, lang) if known(key) else name
