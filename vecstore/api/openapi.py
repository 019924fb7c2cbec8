"""OpenAPI descriptions shared by routes: every error answers with the one error envelope, or
(on the hosted-API dialect routes) with that dialect's error shape."""

from __future__ import annotations

from typing import Any, Union

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import SecurityRequirement

from vecstore.api.dialect_schemas import CohereError, OpenAIError, TEIError
from vecstore.api.schemas import ErrorEnvelope

_DESCRIPTIONS = {
    400: "Bad input: the message names the field and the fix",
    401: "Missing, unknown, revoked or expired API key",
    403: "The key lacks the role, or the collection is outside its scope",
    404: "Not found (or outside the key's scope)",
    408: "The request body did not arrive within request_timeout_s",
    409: "Conflict, e.g. a collection with that name exists",
    413: "Request body too large",
    422: "The body is not JSON or a field has the wrong type",
    429: "Rate limited; see Retry-After",
    500: "Internal error; quote the request id",
    503: "Not ready, overloaded or timed out; see Retry-After",
}

# Routes that need a key say so one by one; the public ones (/health, /ready, the schema) carry
# no security requirement, so that the schema tells the truth about them.
SECURED: list[SecurityRequirement] = [{"apiKey": []}, {"bearer": []}]

ERROR_RESPONSES: dict[int, ResponseSpec] = {
    status: ResponseSpec(data_container=ErrorEnvelope, description=text, generate_examples=False)
    for status, text in _DESCRIPTIONS.items()
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The envelope responses of a route that can fail in fewer ways than a keyed one."""
    return {status: ERROR_RESPONSES[status] for status in statuses}


# GET /ready answers 503 until migrations and index loading are done.
READY_RESPONSES = error_responses(500, 503)
# GET /metrics checks its key itself (no rate limit; no body, so a timeout is 503, not 408).
METRICS_RESPONSES = error_responses(401, 403, 500, 503)


SNAPSHOT_RESPONSES: dict[int, ResponseSpec] = {
    **ERROR_RESPONSES,
    507: ResponseSpec(
        data_container=ErrorEnvelope,
        description="Not enough free disk space for the snapshot or restore",
        generate_examples=False,
    ),
}


def _responses(container: Any) -> dict[int, ResponseSpec]:
    return {
        status: ResponseSpec(data_container=container, description=text, generate_examples=False)
        for status, text in _DESCRIPTIONS.items()
        if status not in (404, 409)
    }


OPENAI_ERROR_RESPONSES = _responses(OpenAIError)
TEI_ERROR_RESPONSES = _responses(TEIError)
COHERE_ERROR_RESPONSES = _responses(CohereError)
# POST /rerank speaks TEI or infinity, by the body: its errors come in either shape.
TEI_OR_OPENAI_ERROR_RESPONSES = _responses(Union[TEIError, OpenAIError])  # noqa: UP007
