"""Domain exceptions shared by all services.

Services raise these; each service's API registers one formatter (see
core/app.py) that renders them as that service's upstream error body, so the
status code and message are decided once, here, and the shape per service.
"""

from __future__ import annotations


class PocketstackError(Exception):
    """Base of every error a client may see; `status` is the HTTP status."""

    status = 500
    title = "Internal Server Error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    @classmethod
    def with_status(cls, status: int, title: str, message: str) -> PocketstackError:
        """An error of an HTTP status no subclass names (406 Accept, 415 media type)."""
        error = cls(message)
        error.status, error.title = status, title
        return error


class Invalid(PocketstackError):
    status = 400
    title = "Bad Request"


class Unauthorized(PocketstackError):
    status = 401
    title = "Unauthorized"


class Forbidden(PocketstackError):
    status = 403
    title = "Forbidden"


class NotFound(PocketstackError):
    status = 404
    title = "Not Found"


class MethodNotAllowed(PocketstackError):
    status = 405
    title = "Method Not Allowed"


class NotAcceptable(PocketstackError):
    """A requested microversion outside the supported range."""

    status = 406
    title = "Not Acceptable"

    def __init__(self, message: str, *, min_version: str, max_version: str) -> None:
        super().__init__(message, code="microversion.not_acceptable")
        self.min_version = min_version
        self.max_version = max_version


class Conflict(PocketstackError):
    status = 409
    title = "Conflict"


class GenerationConflict(Conflict):
    """A compare-and-swap on a generation column lost a race."""


class OverQuota(PocketstackError):
    status = 403
    title = "Forbidden"


class RequestTooLarge(PocketstackError):
    status = 413
    title = "Request Entity Too Large"


# The fault names Nova and Cinder wrap error bodies in (`{"itemNotFound": {...}}`), by status.
FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    501: "notImplemented",
    503: "serviceUnavailable",
}
