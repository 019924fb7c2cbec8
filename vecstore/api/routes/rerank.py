"""Document rerank in the hosted APIs' dialects: ``/v1/rerank`` (Cohere v1, Jina, the seed
documents; also ``/api/v3/inference/reranker``), ``/v2/rerank`` (Cohere v2) and ``/rerank``
(TEI with ``texts``, infinity with ``documents``: the body says which)."""

from __future__ import annotations

import math
import time
import uuid
from typing import Annotated, Any, Union

import msgspec
from litestar import Request, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap
from msgspec import UNSET

from vecstore.api import dialect_schemas as d
from vecstore.api.dialect_errors import cohere_error, sniffed_error
from vecstore.api.openapi import COHERE_ERROR_RESPONSES, SECURED, TEI_OR_OPENAI_ERROR_RESPONSES
from vecstore.api.state import services_of
from vecstore.errors import BadRequest, InvalidBody
from vecstore.services.document_rerank import (
    DocumentRerank,
    DocumentRerankResult,
    document_texts,
)

_COHERE_ERRORS: ExceptionHandlersMap = {Exception: cohere_error}
_SNIFFED_ERRORS: ExceptionHandlersMap = {Exception: sniffed_error}
_FIELDS = {f.name for f in msgspec.structs.fields(d.RerankDocsIn)} - {"extra_body"}


def _merged(data: d.RerankDocsIn) -> d.RerankDocsIn:
    """``extra_body`` (what OpenAI-style SDKs use for extensions) fills fields the body left
    out; keys this server does not know are ignored."""
    if not data.extra_body:
        return data
    extra = {k: v for k, v in data.extra_body.items() if k in _FIELDS}
    given = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not None}
    try:
        return msgspec.convert({**extra, **given, "extra_body": None}, d.RerankDocsIn)
    except msgspec.ValidationError as exc:
        raise InvalidBody(f"'extra_body': {exc}") from exc


def _run(
    request: Request[Any, Any, Any], data: d.RerankDocsIn
) -> tuple[DocumentRerankResult, list[str]]:
    """The result, and the text each document was scored on."""
    if not isinstance(data.query, str):
        raise BadRequest("'query' is required: the text to rank the documents against")
    if data.documents is None:
        raise BadRequest("'documents' is required: 1 to 1000 strings or objects with 'text'")
    texts = document_texts(data.documents, data.rank_fields)
    result = services_of(request.app.state).document_rerank.rerank(
        DocumentRerank(
            query=data.query,
            documents=texts,
            model=data.model,
            method=data.method,
            model_cross=data.model_cross,
            top_n=data.top_n,
            stage1_top_k=data.stage1_top_k if data.stage1_top_k is not None else 100,
            max_tokens_per_doc=data.max_tokens_per_doc,
            max_chunks_per_doc=data.max_chunks_per_doc or 10,
            truncate=data.truncate or "end",
            raw_scores=bool(data.raw_scores),
        )
    )
    return result, texts


def _meta(result: DocumentRerankResult, documents: int, version: str) -> d.RerankMeta:
    # Cohere bills a search unit per query of up to 100 documents.
    return d.RerankMeta(
        api_version=d.ApiVersion(version),
        billed_units=d.BilledUnits(max(1, math.ceil(documents / 100))),
        method=result.method if version == "1" else UNSET,
        deployed_model_id=result.model if version == "1" else UNSET,
        model_cross=(result.model_cross or UNSET) if version == "1" else UNSET,
        stage1_top_k=(result.stage1_top_k or UNSET) if version == "1" else UNSET,
    )


def _document(original: Any, text: str) -> dict[str, Any]:
    """Never ``null``: an object document comes back with its own keys, a string as {"text"}."""
    if isinstance(original, dict):
        return {"text": text, **original}
    return {"text": text}


@post(
    ["/v1/rerank", "/api/v3/inference/reranker"],
    opt={"role": "read"},
    security=SECURED,
    sync_to_thread=True,
    status_code=200,
    exception_handlers=_COHERE_ERRORS,
    responses=COHERE_ERROR_RESPONSES,
    tags=["rerank"],
)
def rerank_v1(
    request: Request[Any, Any, Any], data: Annotated[d.RerankDocsIn, d.RERANK_DOCS_BODY]
) -> d.RerankDocsOut:
    data = _merged(data)
    result, texts = _run(request, data)
    docs: list[Any] = data.documents
    return d.RerankDocsOut(
        id=str(uuid.uuid4()),
        model=result.model,
        results=[
            d.RerankResultOut(
                index=r.index,
                relevance_score=r.score,
                document=_document(docs[r.index], texts[r.index])
                if data.return_documents
                else UNSET,
            )
            for r in result.ranked
        ],
        meta=_meta(result, len(docs), "1"),
        usage=d.RerankUsage(result.tokens, result.tokens),
    )


@post(
    "/v2/rerank",
    opt={"role": "read"},
    security=SECURED,
    sync_to_thread=True,
    status_code=200,
    exception_handlers=_COHERE_ERRORS,
    responses=COHERE_ERROR_RESPONSES,
    tags=["rerank"],
)
def rerank_v2(
    request: Request[Any, Any, Any], data: Annotated[d.RerankDocsIn, d.RERANK_DOCS_BODY]
) -> d.RerankV2Out:
    data = _merged(data)
    result, _ = _run(request, data)
    return d.RerankV2Out(
        id=str(uuid.uuid4()),
        results=[d.RerankV2Result(index=r.index, relevance_score=r.score) for r in result.ranked],
        meta=_meta(result, len(data.documents), "2"),
    )


@post(
    "/rerank",
    opt={"role": "read"},
    security=SECURED,
    sync_to_thread=True,
    status_code=200,
    exception_handlers=_SNIFFED_ERRORS,
    responses={
        200: ResponseSpec(
            data_container=Union[list[d.TEIRank], d.InfinityRerankOut],  # noqa: UP007
            description="TEI: a bare list of every text, best first; infinity: an object",
            generate_examples=False,
        ),
        **TEI_OR_OPENAI_ERROR_RESPONSES,
    },
    tags=["rerank"],
)
def rerank_tei_or_infinity(
    request: Request[Any, Any, Any],
    data: Annotated[dict[str, Any], d.TEI_OR_INFINITY_RERANK_BODY],
) -> Any:
    """TEI when the body has ``texts``, infinity when it has ``documents``."""
    if "texts" in data or "documents" not in data:
        request.state.rerank_dialect = "tei"
        return _tei(request, _convert(data, d.TEIRerankIn))
    request.state.rerank_dialect = "infinity"
    return _infinity(request, _convert(data, d.InfinityRerankIn))


def _convert(data: dict[str, Any], kind: type[Any]) -> Any:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise InvalidBody(f"the request body is not valid: {exc}") from exc


def _tei(request: Request[Any, Any, Any], data: d.TEIRerankIn) -> list[d.TEIRank]:
    if data.truncation_direction not in (None, "right", "Right"):
        raise BadRequest("'truncation_direction' 'left' is not supported: texts are cut at the end")
    if not isinstance(data.texts, list) or not all(isinstance(t, str) for t in data.texts):
        raise BadRequest("'texts' must be a list of strings")
    body = d.RerankDocsIn(
        query=data.query,
        documents=data.texts,
        raw_scores=data.raw_scores,
        truncate="none" if data.truncate is False else "end",
    )
    result, texts = _run(request, body)
    return [  # every text, best first (TEI answers a bare list)
        d.TEIRank(index=r.index, score=r.score, text=texts[r.index] if data.return_text else UNSET)
        for r in result.ranked
    ]


def _infinity(request: Request[Any, Any, Any], data: d.InfinityRerankIn) -> d.InfinityRerankOut:
    body = d.RerankDocsIn(
        query=data.query,
        documents=data.documents,
        model=data.model,
        top_n=data.top_n,
        raw_scores=data.raw_scores,
    )
    result, texts = _run(request, body)
    return d.InfinityRerankOut(
        results=[
            d.InfinityResult(
                relevance_score=r.score,
                index=r.index,
                document=texts[r.index] if data.return_documents else UNSET,
            )
            for r in result.ranked
        ],
        model=result.model,
        usage=d.RerankUsage(result.tokens, result.tokens),
        id=str(uuid.uuid4()),
        created=int(time.time()),
    )
