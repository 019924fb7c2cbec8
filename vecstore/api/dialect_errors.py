"""Errors in the shapes the OpenAI and TEI clients parse; the mapping itself is ``classify``."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response

from vecstore.api.dialect_schemas import CohereError, OpenAIError, OpenAIErrorDetail, TEIError
from vecstore.api.errors import ErrorInfo, classify

_OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}
_TEI_TYPES = {401: "Unauthorized", 403: "Unauthorized", 429: "Overloaded", 413: "Validation"}


def _param(info: ErrorInfo) -> str | None:
    """The request field an error is about, when the message names one first ('input', …)."""
    if info.message.startswith("'"):
        name = info.message[1:].split("'", 1)[0]
        return name.split("[", 1)[0] or None
    return None


def openai_error(request: Request[Any, Any, Any], exc: Exception) -> Response[OpenAIError]:
    info = classify(request, exc)
    if info.status >= 500:
        type_ = "server_error"
    else:
        type_ = _OPENAI_TYPES.get(info.status, "invalid_request_error")
    body = OpenAIError(OpenAIErrorDetail(info.message, type_, _param(info), info.type))
    return Response(body, status_code=info.status, media_type=MediaType.JSON, headers=info.headers)


def tei_error(request: Request[Any, Any, Any], exc: Exception) -> Response[TEIError]:
    info = classify(request, exc)
    if info.type == "overloaded":
        type_ = "Overloaded"
    elif info.status >= 500:
        type_ = "Unhealthy" if info.type in ("model_unavailable", "not_ready") else "Backend"
    else:
        type_ = _TEI_TYPES.get(info.status, "Validation")
    body = TEIError(info.message, type_)
    return Response(body, status_code=info.status, media_type=MediaType.JSON, headers=info.headers)


def cohere_error(request: Request[Any, Any, Any], exc: Exception) -> Response[CohereError]:
    """Cohere reads ``message``, Jina-style (FastAPI) clients read ``detail``: both carry it."""
    info = classify(request, exc)
    return Response(
        CohereError(info.message, info.message),
        status_code=info.status,
        media_type=MediaType.JSON,
        headers=info.headers,
    )


def sniffed_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """``POST /rerank`` serves two dialects: answer in the one the body was sniffed as (TEI
    when the body could not even be read)."""
    if getattr(request.state, "rerank_dialect", "tei") == "infinity":
        return openai_error(request, exc)
    return tei_error(request, exc)
