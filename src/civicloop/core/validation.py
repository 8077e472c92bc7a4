"""Reusable input types for API schemas: clean text, bounded ids, masking of personal data.

Text fields refuse control characters (PostgreSQL cannot store NUL, and no citizen types a
BEL) while keeping line breaks and tabs; surrounding blanks are stripped.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

MAX_ID = 2**31 - 1
"""Largest id a PostgreSQL ``integer`` column holds; larger ids are refused at the edge (422)."""

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PHONE = re.compile(r"^\+?[0-9][0-9\- ]{6,19}$")
_ID_IN_TEXT = re.compile(r"(?<![\dA-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![\dA-Za-z])")
"""A resident identity card number (GB 11643: 17 digits and a check digit or X): kept 6 + 4 characters."""
_PHONE_IN_TEXT = re.compile(r"(?<![\d+])((?:\+|00)?86[ -]?)?(1[3-9]\d)[ -]?(\d{4})[ -]?(\d{4})(?!\d)")
"""A mainland mobile number, bare or written 138 1234 5678 / 138-1234-5678 / +86 138…."""
_LANDLINE_IN_TEXT = re.compile(r"(?<!\d)(0\d{2,3})[ -]?(\d{3,4})[ -]?(\d{4})(?!\d)")
"""A fixed-line number with its area code (010-62345678, 0731 8888 1234)."""
_EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def _clean(value: str) -> str:
    if _CONTROL.search(value):
        raise PydanticCustomError("control_chars", "contains control characters")
    return value.strip()


def _not_blank(value: str) -> str:
    if not value:
        raise PydanticCustomError("blank", "must not be blank")
    return value


def _phone(value: str) -> str:
    if value and not _PHONE.match(value):
        raise PydanticCustomError("phone", "not a valid phone number")
    return value


def Text(max_length: int, *, required: bool = False) -> object:
    """Return an annotated ``str`` type: at most ``max_length`` characters, no control characters,
    stripped, and (``required``) not blank."""
    validators = [AfterValidator(_clean)] + ([AfterValidator(_not_blank)] if required else [])
    return Annotated[str, Field(max_length=max_length), *validators]


Phone = Annotated[str, Field(max_length=40), AfterValidator(_clean), AfterValidator(_phone)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_NUMBER = re.compile(r"^\d{17}[\dX]$")


def _id_number(value: str) -> str:
    """A resident identity card number: 17 digits and the ISO 7064 MOD 11-2 check character of
    GB 11643-1999 (``X`` for 10); ``x`` is read as ``X``. Empty means none given."""
    value = value.strip().upper()
    if not value:
        return value
    if not _ID_NUMBER.match(value):
        raise PydanticCustomError("id_number", "not an identity card number")
    if _ID_CHECK[sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True)) % 11] != value[17]:
        raise PydanticCustomError("id_number_check", "the check character does not match")
    return value


IdNumber = Annotated[str, Field(max_length=18), AfterValidator(_id_number)]


def mask_id_number(value: str) -> str:
    """Mask an identity card number for display: ``110101199003071234`` → ``110***********1234``."""
    value = (value or "").strip()
    return value[:3] + "*" * (len(value) - 7) + value[-4:] if len(value) > 7 else "*" * len(value)


def first_mobile(text: str | None) -> str:
    """Return the first mainland mobile number written in ``text`` as 11 digits, or ``""``."""
    found = _PHONE_IN_TEXT.search(text or "")
    return "".join(found.group(2, 3, 4)) if found else ""


def mask_phone(phone: str) -> str:
    """Mask a phone number for display: ``13812341234`` → ``138****1234``; short ones keep only
    their last two digits."""
    digits = phone.strip()
    if len(digits) >= 7:
        return digits[:3] + "****" + digits[-4:]
    return "*" * max(len(digits) - 2, 0) + digits[-2:] if digits else ""


def mask_phones_in_text(text: str | None) -> str | None:
    """Mask the personal contact data a text contains, as the shared data's publisher did: mobile
    numbers however written (``我的电话138 1234 5678`` → ``我的电话138****5678``, ``+8613912345678`` →
    ``139****5678``), fixed-line numbers (``010-62345678`` → ``010****5678``), identity card numbers
    (``110101199003071234`` → ``110101********1234``) and e-mail addresses (``***@***``). Citizens write
    these into descriptions and units into replies; every view, export and log shows texts through this
    (the Personal Information Protection Law: minimum necessary). ``None`` and ``""`` pass through."""
    if not text:
        return text
    text = _ID_IN_TEXT.sub(lambda m: f"{m.group(1)}********{m.group(2)}", text)
    text = _EMAIL_IN_TEXT.sub("***@***", text)
    text = _PHONE_IN_TEXT.sub(lambda m: f"{m.group(2)}****{m.group(4)}", text)
    return _LANDLINE_IN_TEXT.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)


def mask_name(name: str) -> str:
    """Mask a person's name for display: ``张三丰`` → ``张**``, ``Alice`` → ``A****``."""
    name = name.strip()
    return name[:1] + "*" * (len(name) - 1) if name else ""


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """Return a cell value that a spreadsheet will not run as a formula: text starting with ``=``, ``+``,
    ``-``, ``@``, a tab or a carriage return gets a leading apostrophe (OWASP, "CSV Injection"); numbers
    and other values pass unchanged. Use it on every citizen-written text exported as CSV."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
