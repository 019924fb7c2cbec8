"""The single error shape, and the one place exceptions become HTTP responses."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from vecstore.api.context import request_id_of
from vecstore.api.schemas import ErrorBody, ErrorEnvelope
from vecstore.api.state import services_of
from vecstore.errors import NotReady, RateLimited, VecstoreError

log = logging.getLogger("vecstore.errors")

_TYPES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_body",
    429: "rate_limited",
    503: "not_ready",
}


def error_envelope(scope: Any, status: int, type_: str, message: str) -> ErrorEnvelope:
    """The one error body; a server-side failure (5xx) names its request id."""
    body = ErrorEnvelope(error=ErrorBody(code=status, type=type_, message=message))
    if status >= 500:
        body.error.request_id = request_id_of(scope)
    return body


def error_response(
    request: Request[Any, Any, Any],
    status: int,
    type_: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> Response[ErrorEnvelope]:
    body = error_envelope(request.scope, status, type_, message)
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def _validation_message(exc: ValidationException) -> str:
    parts: list[str] = []
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict):
            msg = item.get("message")
            key = item.get("key")
            parts.append(f"{key}: {msg}" if key else str(msg))
    detail = exc.detail or "the request body is not valid"
    if parts:
        return f"{detail}: " + "; ".join(parts)
    return str(detail)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What any error becomes, before a dialect gives it its wire shape."""

    status: int
    type: str
    message: str
    headers: dict[str, str] | None = None


def classify(request: Request[Any, Any, Any], exc: Exception) -> ErrorInfo:
    """The one mapping from exceptions to status, stable type and message (every dialect)."""
    if isinstance(exc, VecstoreError):
        headers = None
        if isinstance(exc, RateLimited | NotReady):
            headers = {"Retry-After": str(exc.retry_after_s)}
            _count_rejection(request, exc.error_type)
        return ErrorInfo(exc.status, exc.error_type, exc.message, headers)
    if isinstance(exc, ValidationException):
        return ErrorInfo(422, "invalid_body", _validation_message(exc))
    if isinstance(exc, HTTPException) and exc.status_code == 400:
        # Litestar's own 400s come from decoding the body or parameters.
        return ErrorInfo(422, "invalid_body", f"the request could not be decoded: {exc.detail}")
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        status = exc.status_code
        type_ = _TYPES_BY_STATUS.get(status, "http_error")
        message = str(exc.detail) if exc.detail else type_.replace("_", " ")
        if status == 404 and message == "Not Found":
            message = f"no route matches {request.method} {request.url.path}"
        elif status == 405:
            allowed = (exc.headers or {}).get("allow", "")
            message = f"{request.method} is not allowed on {request.url.path}" + (
                f"; use {allowed}" if allowed else ""
            )
        elif status == 413:
            message = (
                "the request body is larger than the server's limit (max_body_bytes);"
                " send fewer items per request, or stream large loads through import"
            )
        return ErrorInfo(status, type_, message, dict(exc.headers or {}) or None)
    rid = request_id_of(request.scope)
    log.error(
        "unhandled error on %s %s (request_id=%s)",
        request.method,
        request.url.path,
        rid,
        exc_info=exc,
    )
    return ErrorInfo(
        500,
        "internal_error",
        f"the server failed to handle this request; quote request id {rid} when reporting it",
    )


def _count_rejection(request: Request[Any, Any, Any], reason: str) -> None:
    route = request.scope.get("path_template") or "unmatched"
    # A worker thread's deadline check can fire just before the timeout timer: count it the same.
    services_of(request.app.state).metrics.observe_rejection(route, reason)


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorEnvelope]:
    info = classify(request, exc)
    return error_response(request, info.status, info.type, info.message, info.headers)
