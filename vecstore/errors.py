"""The error family. Each class carries its HTTP status and a stable snake_case type.

No framework imports here: services raise these, and one handler in ``api`` maps them.
"""

from __future__ import annotations

from typing import ClassVar


class VecstoreError(Exception):
    status: ClassVar[int] = 400
    type: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, type_: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if type_ is not None:
            self.error_type = type_
        else:
            self.error_type = self.type


class BadRequest(VecstoreError):
    status = 400
    type = "bad_request"


class LimitExceeded(BadRequest):
    type = "limit_exceeded"


class InvalidVector(BadRequest):
    type = "invalid_vector"


class DimensionMismatch(BadRequest):
    type = "dimension_mismatch"


class InvalidFilter(BadRequest):
    type = "invalid_filter"


class EmbeddingUnavailable(BadRequest):
    type = "embedding_unavailable"


class UnknownModel(BadRequest):
    type = "unknown_model"


class ModelNotConfigured(BadRequest):
    """A method whose model the server does not have (e.g. a cross-encoder)."""

    type = "model_not_configured"


class Unauthorized(VecstoreError):
    status = 401
    type = "unauthorized"


class Forbidden(VecstoreError):
    status = 403
    type = "forbidden"


class NotFound(VecstoreError):
    status = 404
    type = "not_found"


class CollectionNotFound(NotFound):
    type = "collection_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"collection '{name}' does not exist")


class RecordNotFound(NotFound):
    type = "record_not_found"


class Conflict(VecstoreError):
    status = 409
    type = "conflict"


class PayloadTooLarge(VecstoreError):
    status = 413
    type = "payload_too_large"


class InvalidBody(VecstoreError):
    status = 422
    type = "invalid_body"


class RateLimited(VecstoreError):
    status = 429
    type = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReady(VecstoreError):
    status = 503
    type = "not_ready"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelUnavailable(NotReady):
    """A registered model that could not be loaded (missing file, checksum, broken graph)."""

    type = "model_unavailable"


class Overloaded(NotReady):
    type = "overloaded"


class RequestTimedOut(NotReady):
    """The request ran past ``request_timeout_s``; its remaining work was dropped."""

    type = "timeout"


class InsufficientStorage(VecstoreError):
    status = 507
    type = "insufficient_storage"
