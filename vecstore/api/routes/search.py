"""/v1/collections/{name}/…: search, bulk_search, recommend, similarity, rerank."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from litestar import Controller, Request, post
from litestar.concurrency import sync_to_thread
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from msgspec import UNSET

from vecstore.api import schemas as w
from vecstore.api.auth import check_scope, principal_of
from vecstore.api.mappers import hit_out, read_timing
from vecstore.api.offload import quick_or_threaded
from vecstore.api.openapi import ERROR_RESPONSES, SECURED
from vecstore.api.paths import path_external_id
from vecstore.api.state import AppServices, services_of
from vecstore.errors import BadRequest
from vecstore.services.keys import Principal
from vecstore.services.search import Query
from vecstore.storage.rwlock import WouldBlock

# similarity's ids in the query string: the older form, read for an id the body leaves out.
_DEPRECATED_ID = Parameter(
    description="Deprecated: send the id in the body", schema_extra={"deprecated": True}
)


class SearchController(Controller):
    path = "/v1/collections/{name:str}"
    security = SECURED
    tags = ["search"]

    @post(
        "/search",
        responses=ERROR_RESPONSES,
        opt={"role": "read"},
        status_code=200,
    )
    async def search(
        self, request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[w.SearchIn]
    ) -> w.Success[w.SearchOut]:
        return await answer_search(
            services_of(request.app.state), principal_of(request), name, data
        )

    @post(
        "/bulk_search",
        responses=ERROR_RESPONSES,
        opt={"role": "read"},
        sync_to_thread=True,
        status_code=200,
    )
    def bulk_search(
        self, request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[w.BulkSearchIn]
    ) -> w.Success[w.BulkSearchOut]:
        check_scope(principal_of(request), name, write=False)
        results, timing, warnings = services_of(request.app.state).search.bulk_search(
            name, [(Query(q.vector, q.text), q.k, q.filters) for q in data.queries]
        )
        return w.Success(
            data=w.BulkSearchOut(
                results=[[hit_out(h) for h in hits] for hits in results],
                timing_ms=read_timing(timing) if data.include_timing else UNSET,
                warnings=warnings or UNSET,
            )
        )

    @post(
        "/recommend/{external_id:path}",
        responses=ERROR_RESPONSES,
        opt={"role": "read"},
        sync_to_thread=True,
        status_code=200,
    )
    def recommend(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        external_id: FromPath[str],
        data: JSONBody[w.RecommendIn | None] = None,
        k: FromQuery[int | None] = None,
    ) -> w.Success[w.ResultsOut]:
        check_scope(principal_of(request), name, write=False)
        external_id = path_external_id(request, external_id)
        body = data or w.RecommendIn()
        result = services_of(request.app.state).search.recommend(
            name,
            external_id,
            k=body.k if body.k is not None else (k if k is not None else 10),
            filters=body.filters,
            exclude_self=body.exclude_self,
        )
        return w.Success(
            data=w.ResultsOut(
                [hit_out(h) for h in result.hits],
                read_timing(result.timing) if body.include_timing else UNSET,
            )
        )

    @post(
        "/similarity",
        responses=ERROR_RESPONSES,
        opt={"role": "read"},
        sync_to_thread=True,
        status_code=200,
    )
    def similarity(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        data: Annotated[w.SimilarityIn | None, w.SIMILARITY_BODY] = None,
        id1: Annotated[str | None, _DEPRECATED_ID] = None,
        id2: Annotated[str | None, _DEPRECATED_ID] = None,
    ) -> w.Success[w.SimilarityOut]:
        check_scope(principal_of(request), name, write=False)
        first = (data.id1 if data else None) or id1
        second = (data.id2 if data else None) or id2
        if not first or not second:
            raise BadRequest("send 'id1' and 'id2' (in the body or the query string)")
        score = services_of(request.app.state).search.similarity(name, first, second)
        return w.Success(data=w.SimilarityOut(score, first, second))

    @post(
        "/rerank",
        responses=ERROR_RESPONSES,
        opt={"role": "read"},
        status_code=200,
    )
    async def rerank(
        self, request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[w.RerankIn]
    ) -> w.Success[w.RerankOut]:
        return await answer_rerank(
            services_of(request.app.state), principal_of(request), name, data
        )


# The two hot reads, shared by their routes and by ``hot_paths`` (the same answer either way).
async def answer_search(
    services: AppServices, principal: Principal, name: str, data: w.SearchIn
) -> w.Success[w.SearchOut]:
    check_scope(principal, name, write=False)
    if data.nprobe is not None:
        raise BadRequest("'nprobe' applies to IVF indexes; use 'ef_search' for HNSW")
    plan_of = partial(
        services.search.plan,
        name,
        Query(data.vector, data.text),
        k=data.k,
        offset=data.offset,
        filters=data.filters,
        score_threshold=data.score_threshold,
        exact=data.exact,
        ef_search=data.ef_search,
        include_vectors=data.include_vectors,
        include_content=data.include_content,
        include_count=data.include_count,
    )
    try:
        plan = plan_of(nonblocking=True)
    except WouldBlock:  # not quick (a filter, text to embed, ...): all of it in a worker thread
        result = await sync_to_thread(lambda: services.search.run([plan_of()])[0])
    else:  # quick: batched with the searches that reach the loop in the same turn
        result = await services.search_batches.run(plan)
    return w.Success(
        data=w.SearchOut(
            results=[hit_out(h, include_content=data.include_content) for h in result.hits],
            k=data.k,
            offset=data.offset,
            total_count=result.total_count if result.total_count is not None else UNSET,
            timing_ms=read_timing(result.timing) if data.include_timing else UNSET,
            warnings=result.warnings or UNSET,
        )
    )


async def answer_rerank(
    services: AppServices, principal: Principal, name: str, data: w.RerankIn
) -> w.Success[w.RerankOut]:
    check_scope(principal, name, write=False)
    run = partial(
        services.search.rerank,
        name,
        Query(data.vector, data.text),
        data.candidates,
        top_k=data.top_k,
        score_threshold=data.score_threshold,
        include_vectors=data.include_vectors,
    )
    result = await quick_or_threaded(run)
    return w.Success(
        data=w.RerankOut(
            results=[hit_out(h) for h in result.hits],
            not_found=result.not_found,
            timing_ms=read_timing(result.timing) if data.include_timing else UNSET,
            warnings=result.warnings or UNSET,
        )
    )
