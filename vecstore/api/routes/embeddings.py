"""Embedding routes in the hosted APIs' dialects: OpenAI ``/v1/embeddings`` (also
``/embeddings``) and ``/v1/models`` (also ``/models``), TEI ``/embed``."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.types import ExceptionHandlersMap

from vecstore.api import dialect_schemas as d
from vecstore.api.dialect_errors import openai_error, tei_error
from vecstore.api.openapi import OPENAI_ERROR_RESPONSES, SECURED, TEI_ERROR_RESPONSES
from vecstore.api.state import services_of
from vecstore.errors import BadRequest
from vecstore.services.embeddings import EmbeddingRequest, texts_of

_OPENAI_ERRORS: ExceptionHandlersMap = {Exception: openai_error}
_TEI_ERRORS: ExceptionHandlersMap = {Exception: tei_error}


@post(
    ["/v1/embeddings", "/embeddings"],
    opt={"role": "read"},
    security=SECURED,
    sync_to_thread=True,
    status_code=200,
    exception_handlers=_OPENAI_ERRORS,
    responses=OPENAI_ERROR_RESPONSES,
    tags=["embeddings"],
)
def openai_embeddings(
    request: Request[Any, Any, Any], data: Annotated[d.OpenAIEmbeddingsIn, d.OPENAI_EMBEDDINGS_BODY]
) -> d.OpenAIEmbeddingsOut:
    encoding = data.encoding_format or "float"
    if encoding not in ("float", "base64"):
        raise BadRequest(f"'encoding_format' must be 'float' or 'base64', got '{encoding}'")
    out = services_of(request.app.state).embeddings.embed(
        EmbeddingRequest(
            texts_of(data.input, "input"), model=data.model, dimensions=data.dimensions
        ),
        field="input",
    )
    rows: list[list[float] | str]
    if encoding == "base64":  # what the OpenAI SDK asks for by default
        little = out.vectors.astype("<f4", copy=False)
        rows = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    else:
        rows = out.vectors.tolist()
    return d.OpenAIEmbeddingsOut(
        data=[d.OpenAIEmbedding(embedding=row, index=i) for i, row in enumerate(rows)],
        model=out.model,
        usage=d.OpenAIUsage(out.prompt_tokens, out.prompt_tokens),
    )


@get(
    ["/v1/models", "/models"],
    opt={"role": "read"},
    security=SECURED,
    sync_to_thread=False,
    exception_handlers=_OPENAI_ERRORS,
    responses=OPENAI_ERROR_RESPONSES,
    tags=["embeddings"],
)
def list_models(request: Request[Any, Any, Any]) -> d.ModelList:
    models = services_of(request.app.state).embeddings.models()
    return d.ModelList(
        data=[
            d.ModelOut(id=m.id, kind=m.kind, dimension=m.dimension, max_tokens=m.max_tokens)
            for m in models
        ]
    )


@post(
    "/embed",
    opt={"role": "read"},
    security=SECURED,
    sync_to_thread=True,
    status_code=200,
    exception_handlers=_TEI_ERRORS,
    responses=TEI_ERROR_RESPONSES,
    tags=["embeddings"],
)
def tei_embed(
    request: Request[Any, Any, Any], data: Annotated[d.TEIEmbedIn, d.TEI_EMBED_BODY]
) -> list[list[float]]:
    if data.truncation_direction not in (None, "right", "Right"):
        raise BadRequest(
            "'truncation_direction' 'left' is not supported: texts are truncated at the end"
        )
    out = services_of(request.app.state).embeddings.embed(
        EmbeddingRequest(
            texts_of(data.inputs, "inputs"),
            dimensions=data.dimensions,
            normalize=data.normalize is not False,
            truncate=data.truncate is not False,
        ),
        field="inputs",
    )
    rows: list[list[float]] = out.vectors.tolist()
    return rows
