"""The one exception hierarchy of modelport.

Every error that may reach a client is a subclass of :class:`ModelportError`.
Each class carries the Databricks ``error_code`` and the HTTP ``status`` that the
Databricks serving API uses for it (compat-api.md §D.2). Only ``api/errors.py``
turns them into HTTP responses; the client SDK maps ``error_code`` back to the
same class with :func:`error_from_body`.

    ModelportError                      INTERNAL_ERROR            500
    ├── BadRequest                      BAD_REQUEST               400
    │   ├── InvalidParameterValue       INVALID_PARAMETER_VALUE   400
    │   ├── MalformedRequest            MALFORMED_REQUEST         400
    │   └── InvalidState                INVALID_STATE             400
    ├── Unauthenticated                 UNAUTHENTICATED           401
    ├── PermissionDenied                PERMISSION_DENIED         403
    ├── NotFound                        NOT_FOUND                 404
    │   ├── ResourceDoesNotExist        RESOURCE_DOES_NOT_EXIST   404
    │   └── EndpointNotFound            ENDPOINT_NOT_FOUND        404
    ├── MethodNotAllowed                METHOD_NOT_ALLOWED        405
    ├── ResourceConflict                RESOURCE_CONFLICT         409
    │   ├── ResourceAlreadyExists       RESOURCE_ALREADY_EXISTS   409
    │   └── Aborted                     ABORTED                   409
    ├── RequestTooLarge                 REQUEST_TOO_LARGE         413
    │   └── HeadersTooLarge             REQUEST_HEADERS_TOO_LARGE 431
    ├── RequestLimitExceeded            REQUEST_LIMIT_EXCEEDED    429
    ├── Cancelled                       CANCELLED                 499
    ├── NotImplementedByServer          NOT_IMPLEMENTED           501
    ├── TemporarilyUnavailable          TEMPORARILY_UNAVAILABLE   503
    │   └── LeaseLost                   LEASE_LOST                503
    └── DeadlineExceeded                DEADLINE_EXCEEDED         504
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Aborted",
    "BadGateway",
    "BadRequest",
    "Cancelled",
    "DeadlineExceeded",
    "EndpointNotFound",
    "HeadersTooLarge",
    "InvalidParameterValue",
    "InvalidState",
    "LeaseLost",
    "MalformedRequest",
    "MethodNotAllowed",
    "ModelportError",
    "NotFound",
    "NotImplementedByServer",
    "PermissionDenied",
    "RequestLimitExceeded",
    "RequestTooLarge",
    "ResourceAlreadyExists",
    "ResourceConflict",
    "ResourceDoesNotExist",
    "TemporarilyUnavailable",
    "Unauthenticated",
    "error_class_for",
    "error_from_body",
]


class ModelportError(Exception):
    """Base of every error a client may see; the message is shown to the client as is."""

    error_code = "INTERNAL_ERROR"
    status = 500

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Seconds a client should wait before retrying (sent as ``Retry-After``).
        self.retry_after = retry_after

    def to_body(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message}


class BadRequest(ModelportError):
    """The request is wrong in a way that no more specific class describes."""

    error_code, status = "BAD_REQUEST", 400


class InvalidParameterValue(BadRequest):
    """A field has a value the API does not accept; the message names the field."""

    error_code, status = "INVALID_PARAMETER_VALUE", 400


class MalformedRequest(BadRequest):
    """The body could not be parsed (not JSON, not an object, too large)."""

    error_code, status = "MALFORMED_REQUEST", 400


class InvalidState(BadRequest):
    """The resource is in a state that does not allow the operation."""

    error_code, status = "INVALID_STATE", 400


class Unauthenticated(ModelportError):
    """No token, an unknown token or an expired token."""

    error_code, status = "UNAUTHENTICATED", 401


class PermissionDenied(ModelportError):
    """The caller is known but lacks the permission the operation needs."""

    error_code, status = "PERMISSION_DENIED", 403


class NotFound(ModelportError):
    """Generic 404."""

    error_code, status = "NOT_FOUND", 404


class ResourceDoesNotExist(NotFound):
    """A named resource (endpoint, model, version, token, principal) does not exist."""

    error_code, status = "RESOURCE_DOES_NOT_EXIST", 404


class EndpointNotFound(NotFound):
    """No API route matches the request's path."""

    error_code, status = "ENDPOINT_NOT_FOUND", 404


class MethodNotAllowed(ModelportError):
    """The path exists but not with this HTTP method."""

    error_code, status = "METHOD_NOT_ALLOWED", 405


class ResourceConflict(ModelportError):
    """The operation conflicts with the resource's current state (e.g. an update in progress)."""

    error_code, status = "RESOURCE_CONFLICT", 409


class ResourceAlreadyExists(ResourceConflict):
    """A resource with that name already exists."""

    error_code, status = "RESOURCE_ALREADY_EXISTS", 409


class Aborted(ResourceConflict):
    """The operation was aborted by a concurrent change."""

    error_code, status = "ABORTED", 409


class RequestTooLarge(ModelportError):
    """The request body is larger than the route's limit (the connection is closed after it)."""

    error_code, status = "REQUEST_TOO_LARGE", 413


class HeadersTooLarge(RequestTooLarge):
    """The request line and headers are too long, or there are too many headers."""

    error_code, status = "REQUEST_HEADERS_TOO_LARGE", 431


class RequestLimitExceeded(ModelportError):
    """Too many requests; ``retry_after`` says when to come back. ``limit`` describes what
    refused the request where the refuser knows it (the gateway's rate limiter sets a
    ``gateway.refusal_bursts.RefusedLimit``, for the event log); it is never sent to the client."""

    error_code, status = "REQUEST_LIMIT_EXCEEDED", 429

    def __init__(self, message: str, *, retry_after: int | None = None, limit: object = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.limit = limit


class Cancelled(ModelportError):
    """The client went away or the operation was cancelled."""

    error_code, status = "CANCELLED", 499


class NotImplementedByServer(ModelportError):
    """The route exists in the Databricks API but modelport does not implement it."""

    error_code, status = "NOT_IMPLEMENTED", 501


class TemporarilyUnavailable(ModelportError):
    """The service cannot answer now; retry after ``retry_after`` seconds."""

    error_code, status = "TEMPORARILY_UNAVAILABLE", 503


class LeaseLost(TemporarilyUnavailable):
    """This server process no longer leads: its lease expired or another holder took it, so a
    write fenced by the old epoch was refused and rolled back (``store/leases.py``).

    503, not 409: the client asked for nothing that conflicts; the server lost the right to do
    the work, and the same request succeeds once it is retried where the leader is.
    """

    error_code, status = "LEASE_LOST", 503


class BadGateway(ModelportError):
    """An external model provider failed (5xx, unreadable answer, connection refused)."""

    error_code, status = "BAD_GATEWAY", 502


class DeadlineExceeded(ModelportError):
    """The operation took longer than its time limit."""

    error_code, status = "DEADLINE_EXCEEDED", 504


def _all_subclasses(cls: type[ModelportError]) -> list[type[ModelportError]]:
    found: list[type[ModelportError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


_BY_CODE: dict[str, type[ModelportError]] = {
    c.error_code: c for c in [ModelportError, *_all_subclasses(ModelportError)]
}
_BY_STATUS: dict[int, type[ModelportError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    405: MethodNotAllowed,
    409: ResourceConflict,
    413: RequestTooLarge,
    431: HeadersTooLarge,
    429: RequestLimitExceeded,
    499: Cancelled,
    501: NotImplementedByServer,
    503: TemporarilyUnavailable,
    504: DeadlineExceeded,
}


def error_class_for(error_code: str | None, status: int) -> type[ModelportError]:
    """The class for an error body: by ``error_code`` first, then by HTTP status."""
    if error_code and error_code in _BY_CODE:
        return _BY_CODE[error_code]
    return _BY_STATUS.get(status, ModelportError)


def error_from_body(status: int, body: Any, headers_retry_after: str | None = None) -> ModelportError:
    """Rebuild the exception a response describes: an HTTP answer (the client SDK) or a
    replica's error frame (``runtime/protocol.py``). ``retry_after`` comes from the
    ``Retry-After`` header, else from the body's ``retry_after`` (what an error frame carries)."""
    code = None
    message = f"HTTP {status}"
    retry_after = None
    if isinstance(body, dict):
        code = body.get("error_code")
        message = str(body.get("message") or body.get("error") or message)
        hint = body.get("retry_after")
        if isinstance(hint, int) and not isinstance(hint, bool) and hint >= 0:
            retry_after = hint
    elif isinstance(body, str) and body:
        message = body
    if headers_retry_after and headers_retry_after.isdecimal():
        retry_after = int(headers_retry_after)
    return error_class_for(code, status)(message, retry_after=retry_after)
