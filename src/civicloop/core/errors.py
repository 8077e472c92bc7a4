"""One error hierarchy for the whole code base, rendered by one handler (see ``core.http``).

Every error carries a stable ``code`` (a msgid of the catalogues read by ``core.i18n``), its HTTP status, the
parameters of its message and, for validation errors, the field it concerns. The text is produced
in the caller's language only when rendered.
"""

from __future__ import annotations

from typing import Any


class CivicloopError(Exception):
    """Base of every expected error. ``status_code`` is the HTTP status the API answers with."""

    status_code = 400
    code = "validation"

    def __init__(self, code: str | None = None, /, **params: Any) -> None:
        self.code = code or type(self).code
        self.params = params
        super().__init__(f"{self.code} {params}")


class NotFound(CivicloopError):
    """A record that does not exist, or that the caller may not see (404, never 403)."""

    status_code = 404
    code = "not_found"

    def __init__(self, what: str, id: object) -> None:
        super().__init__("not_found", what=what, id=id)
        self.what = what


class FieldError(CivicloopError):
    """Input that passed the schema but breaks a domain rule; ``field`` names the input field (422)."""

    status_code = 422

    def __init__(self, field: str | tuple[str, ...], code: str, /, **params: Any) -> None:
        super().__init__(code, **params)
        self.field = (field,) if isinstance(field, str) else tuple(field)


class IllegalTransition(CivicloopError):
    """The state machine does not allow ``action`` from the record's current ``status`` (409)."""

    status_code = 409
    code = "conflict_state"

    def __init__(self, action: str, status: str) -> None:
        super().__init__("conflict_state", action=action, status=status)
        self.action = action
        self.status = status


class ConcurrentUpdate(CivicloopError):
    """Another transaction moved the record between our read and our conditional update (409)."""

    status_code = 409
    code = "conflict_race"


class Forbidden(CivicloopError):
    """The caller's role may not fire this transition (403: the record itself is visible to them)."""

    status_code = 403
    code = "forbidden_role"


class RuleViolation(CivicloopError):
    """A domain rule forbids the operation in the record's present situation (409)."""

    status_code = 409
