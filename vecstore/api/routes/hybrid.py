"""/v1/collections/{name}/…: hybrid_search (BM25 + vector) and two-stage query."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.params import FromPath, JSONBody
from msgspec import UNSET

from vecstore.api import schemas as w
from vecstore.api.auth import check_scope, principal_of
from vecstore.api.mappers import fused_hit_out, query_timing, read_timing
from vecstore.api.openapi import ERROR_RESPONSES, SECURED
from vecstore.api.state import services_of
from vecstore.services.search import Query


class HybridController(Controller):
    path = "/v1/collections/{name:str}"
    security = SECURED
    tags = ["search"]

    @post(
        "/hybrid_search",
        responses=ERROR_RESPONSES,
        opt={"role": "read"},
        sync_to_thread=True,
        status_code=200,
    )
    def hybrid_search(
        self, request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[w.HybridSearchIn]
    ) -> w.Success[w.HybridSearchOut]:
        check_scope(principal_of(request), name, write=False)
        result = services_of(request.app.state).hybrid.hybrid_search(
            name,
            data.query_text,
            vector=data.vector,
            k=data.k,
            offset=data.offset,
            alpha=data.alpha,
            method=data.fusion,
            filters=data.filters,
            include_vectors=data.include_vectors,
            include_content=data.include_content,
        )
        return w.Success(
            data=w.HybridSearchOut(
                results=[
                    fused_hit_out(h, include_content=data.include_content) for h in result.hits
                ],
                k=data.k,
                offset=data.offset,
                timing_ms=read_timing(result.timing) if data.include_timing else UNSET,
                warnings=result.warnings or UNSET,
            )
        )

    @post(
        "/query",
        responses=ERROR_RESPONSES,
        opt={"role": "read"},
        sync_to_thread=True,
        status_code=200,
    )
    def query(
        self, request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[w.QueryIn]
    ) -> w.Success[w.QueryOut]:
        check_scope(principal_of(request), name, write=False)
        stage = data.rerank or w.RerankStageIn()
        result = services_of(request.app.state).hybrid.query(
            name,
            Query(data.vector, data.text),
            k=data.k,
            top_n=data.top_n,
            filters=data.filters,
            method=stage.method,
            model=stage.model,
            alpha=stage.alpha,
            include_vectors=data.include_vectors,
            include_content=data.include_content,
        )
        return w.Success(
            data=w.QueryOut(
                results=[
                    fused_hit_out(h, include_content=data.include_content) for h in result.hits
                ],
                timing_ms=query_timing(result.timing) if data.include_timing else UNSET,
                warnings=result.warnings or UNSET,
            )
        )
