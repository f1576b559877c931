"""The control API's one error shape: ``{"error": code, "message": ...}`` with a status.

:class:`ApiError` is raised anywhere a request cannot succeed and turned into a response
by the app's handler (:func:`problem`); :data:`ERRORS` documents the statuses in the
OpenAPI document. Messages say what is wrong, never the submitted value.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi.responses import JSONResponse

from control_api.models import Problem


class ApiError(Exception):
    """An answer other than success: status, stable code, a message safe to show."""

    def __init__(self, status_code: int, error: str, message: str) -> None:
        """Keep the wire form."""
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.message = message


class NotRecordedError(ApiError):
    """Recall created the bot but the table refused its record (503, naming the bot)."""

    def __init__(self, bot_id: str, region: str, reason: str) -> None:
        """Say what exists, so the bot is not lost."""
        super().__init__(
            503,
            "not_recorded",
            f"bot {bot_id} was created in {region} but not recorded ({reason}); "
            "retrying with the same Idempotency-Key will not create another",
        )


ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": Problem, "description": description}
    for status, description in (
        (400, "malformed request"),
        (404, "no such bot (or no minutes yet)"),
        (409, "a create with this Idempotency-Key is in progress"),
        (413, "body over 16 KiB"),
        (415, "body is not JSON"),
        (422, "Idempotency-Key reused with another body"),
        (502, "Recall refused or failed"),
        (503, "a secret is not filled in, or the table is unreachable"),
    )
}


def describe(errors: Any) -> str:
    """Validation errors as ``field: problem``; never the submitted values."""
    parts = []
    for error in list(errors)[:10]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def problem(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)
