"""The web app's UI strings, looked up in the gettext catalogues (``civicloop/locale``).

Every string a page shows goes through :func:`text`, the one lookup: the page's own strings are the
catalogue entries ``web.<key>`` (``text("nav.operator")`` reads ``web.nav.operator``); a key with no
``web.`` entry is a domain message (errors, statuses, roles, actions) of :mod:`civicloop.core.i18n`.
"""

from __future__ import annotations

from typing import Any

from civicloop.core.i18n import known, translate

WEB_PREFIX = "web."


def text(key: str, lang: str, /, **params: Any) -> str:
    """Return the UI string ``key`` in ``lang`` (``"zh"`` or ``"en"``) with ``params`` filled in.

    Looks for the page string ``web.<key>`` first, then for the domain message ``key``; an unknown key
    is logged once and returned as it is, so a missing string shows up on the page instead of failing
    it (:func:`civicloop.core.i18n.translate` gives the fallbacks)."""
    page_key = WEB_PREFIX + key
    return translate(page_key if known(page_key) else key, lang, **params)
