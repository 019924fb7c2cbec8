"""/v1/collections: create, list, read, patch, delete."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.params import FromPath, JSONBody

from vecstore.api import schemas as w
from vecstore.api.auth import check_scope, principal_of
from vecstore.api.mappers import collection_out
from vecstore.api.openapi import ERROR_RESPONSES, SECURED
from vecstore.api.state import services_of
from vecstore.errors import BadRequest


class CollectionController(Controller):
    path = "/v1/collections"
    security = SECURED
    tags = ["collections"]

    @post(
        "/", responses=ERROR_RESPONSES, opt={"role": "write"}, sync_to_thread=True, status_code=201
    )
    def create(
        self, request: Request[Any, Any, Any], data: JSONBody[w.CreateCollectionIn]
    ) -> w.Success[w.CollectionOut]:
        check_scope(principal_of(request), data.name, write=True)
        info = services_of(request.app.state).collections.create(
            name=data.name,
            dim=data.dim,
            metric=data.distance_metric,
            description=data.description,
            index=_index_dict(data.index),
            embedding_model=data.embedding_model,
        )
        return w.Success(data=collection_out(info))

    @get("/", responses=ERROR_RESPONSES, opt={"role": "read"}, sync_to_thread=True)
    def list_collections(self, request: Request[Any, Any, Any]) -> w.Success[w.CollectionList]:
        principal = principal_of(request)
        infos = services_of(request.app.state).collections.list()
        return w.Success(
            data=w.CollectionList([collection_out(i) for i in infos if principal.can_see(i.name)])
        )

    @get("/{name:str}", responses=ERROR_RESPONSES, opt={"role": "read"}, sync_to_thread=True)
    def read(
        self, request: Request[Any, Any, Any], name: FromPath[str]
    ) -> w.Success[w.CollectionOut]:
        check_scope(principal_of(request), name, write=False)
        return w.Success(data=collection_out(services_of(request.app.state).collections.get(name)))

    @patch("/{name:str}", responses=ERROR_RESPONSES, opt={"role": "write"}, sync_to_thread=True)
    def update(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        data: JSONBody[w.PatchCollectionIn],
    ) -> w.Success[w.CollectionOut]:
        check_scope(principal_of(request), name, write=True)
        services = services_of(request.app.state)
        description = data.description
        ef_search = data.index.ef_search if data.index is not None else None
        if data.index is not None and data.index.nprobe is not None:
            raise BadRequest("'index.nprobe' applies to IVF indexes, which this collection is not")
        info = services.collections.update(
            name,
            description=description,
            ef_search=ef_search,
        )
        return w.Success(data=collection_out(info))

    @delete(
        "/{name:str}",
        responses=ERROR_RESPONSES,
        opt={"role": "admin"},
        sync_to_thread=True,
        status_code=200,
    )
    def drop(self, request: Request[Any, Any, Any], name: FromPath[str]) -> w.Success[w.Deleted]:
        check_scope(principal_of(request), name, write=True)
        services_of(request.app.state).collections.delete(name)
        return w.Success(data=w.Deleted(name=name))


def _index_dict(index: w.IndexConfigIn | None) -> dict[str, Any] | None:
    if index is None:
        return None
    return {
        "type": index.type,
        "m": index.m,
        "ef_construction": index.ef_construction,
        "ef_search": index.ef_search,
        "rescore_factor": index.rescore_factor,
        "nlist": index.nlist,
        "nprobe": index.nprobe,
        "pq_m": index.pq_m,
    }
