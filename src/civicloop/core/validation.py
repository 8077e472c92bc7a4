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
_PHONE_IN_TEXT = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")


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


def mask_phone(phone: str) -> str:
    """Mask a phone number for display: ``13812341234`` → ``138****1234``; short ones keep only
    their last two digits."""
    digits = phone.strip()
    if len(digits) >= 7:
        return digits[:3] + "****" + digits[-4:]
    return "*" * max(len(digits) - 2, 0) + digits[-2:] if digits else ""


def mask_phones_in_text(text: str | None) -> str | None:
    """Mask the mobile numbers a text contains (``我的电话13700002222`` → ``我的电话137****2222``):
    citizens write their number into the description, and units into their replies."""
    return _PHONE_IN_TEXT.sub(r"\1****\3", text) if text else text


def mask_name(name: str) -> str:
    """Mask a person's name for display: ``张三丰`` → ``张**``, ``Alice`` → ``A****``."""
    name = name.strip()
    return name[:1] + "*" * (len(name) - 1) if name else ""
