"""/v1/collections/{name}/…: upserts, reads, deletes, scroll, count, export and import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.concurrency import sync_to_thread
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Stream
from msgspec import UNSET

from vecstore.api import schemas as w
from vecstore.api.auth import check_scope, principal_of
from vecstore.api.mappers import record_out
from vecstore.api.openapi import ERROR_RESPONSES, SECURED
from vecstore.api.paths import path_external_id
from vecstore.api.state import AppServices, services_of
from vecstore.errors import PayloadTooLarge
from vecstore.services.keys import Principal
from vecstore.services.records import WriteTiming

# A 4096-d vector, 64 KiB of metadata and 100k characters of content fit well within this;
# with 1000 lines buffered per transaction it also bounds an import's memory.
MAX_IMPORT_LINE_BYTES = 2 * 1024 * 1024
MAX_IMPORT_BATCH_BYTES = 32 * 1024 * 1024
_encoder = msgspec.json.Encoder()


def _write_timing(timing: WriteTiming) -> w.WriteTiming:
    return w.WriteTiming(
        embedding_ms=round(timing.embedding_ms, 4),
        storage_ms=round(timing.storage_ms, 4),
        total_ms=round(timing.total_ms, 4),
    )


class RecordController(Controller):
    path = "/v1/collections/{name:str}"
    security = SECURED
    tags = ["records"]

    @post(
        "/upsert",
        responses=ERROR_RESPONSES,
        opt={"role": "write"},
        sync_to_thread=True,
        status_code=200,
    )
    def upsert(
        self, request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[w.UpsertIn]
    ) -> w.Success[w.UpsertOut]:
        check_scope(principal_of(request), name, write=True)
        result, timing, warnings = services_of(request.app.state).records.upsert(
            name, [data], field="item"
        )
        return w.Success(
            data=w.UpsertOut(
                external_id=data.external_id,
                status=result.statuses[0],
                timing_ms=_write_timing(timing) if data.include_timing else UNSET,
                warnings=warnings or UNSET,
            )
        )

    @post(
        "/bulk_upsert",
        responses=ERROR_RESPONSES,
        opt={"role": "write"},
        status_code=200,
    )
    async def bulk_upsert(
        self, request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[w.BulkUpsertIn]
    ) -> w.Success[w.BulkUpsertOut]:
        return await answer_bulk_upsert(
            services_of(request.app.state), principal_of(request), name, data
        )

    @get(
        "/vectors/{external_id:path}",
        responses=ERROR_RESPONSES,
        opt={"role": "read"},
        sync_to_thread=True,
    )
    def read(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        external_id: FromPath[str],
        include_vector: FromQuery[bool] = True,
    ) -> w.Success[w.RecordOut]:
        check_scope(principal_of(request), name, write=False)
        external_id = path_external_id(request, external_id)
        record = services_of(request.app.state).records.get(name, external_id, include_vector)
        return w.Success(data=record_out(record))

    @post(
        "/vectors/fetch",
        responses=ERROR_RESPONSES,
        opt={"role": "read"},
        sync_to_thread=True,
        status_code=200,
    )
    def fetch(
        self, request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[w.FetchIn]
    ) -> w.Success[w.FetchOut]:
        check_scope(principal_of(request), name, write=False)
        records, missing = services_of(request.app.state).records.fetch(
            name, data.ids, data.include_vectors
        )
        return w.Success(data=w.FetchOut([record_out(r) for r in records], missing))

    @delete(
        "/delete/{external_id:path}",
        responses=ERROR_RESPONSES,
        opt={"role": "write"},
        sync_to_thread=True,
        status_code=200,
    )
    def delete_one(
        self, request: Request[Any, Any, Any], name: FromPath[str], external_id: FromPath[str]
    ) -> w.Success[w.RecordDeleted]:
        check_scope(principal_of(request), name, write=True)
        external_id = path_external_id(request, external_id)
        services_of(request.app.state).records.delete_one(name, external_id)
        return w.Success(data=w.RecordDeleted(external_id=external_id))

    @post(
        "/delete_batch",
        responses=ERROR_RESPONSES,
        opt={"role": "write"},
        sync_to_thread=True,
        status_code=200,
    )
    def delete_batch(
        self, request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[w.DeleteBatchIn]
    ) -> w.Success[w.DeleteBatchOut]:
        check_scope(principal_of(request), name, write=True)
        deleted, missing = services_of(request.app.state).records.delete_batch(
            name, data.external_ids
        )
        return w.Success(data=w.DeleteBatchOut(deleted, missing, len(deleted)))

    @post(
        "/delete_by_filter",
        responses=ERROR_RESPONSES,
        opt={"role": "write"},
        sync_to_thread=True,
        status_code=200,
    )
    def delete_by_filter(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        data: JSONBody[w.DeleteByFilterIn],
    ) -> w.Success[w.DeletedCount]:
        check_scope(principal_of(request), name, write=True)
        count = services_of(request.app.state).records.delete_by_filter(name, data.filters)
        return w.Success(data=w.DeletedCount(count))

    @post(
        "/scroll",
        responses=ERROR_RESPONSES,
        opt={"role": "read"},
        sync_to_thread=True,
        status_code=200,
    )
    def scroll(
        self, request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[w.ScrollIn]
    ) -> w.Success[w.ScrollOut]:
        check_scope(principal_of(request), name, write=False)
        records, cursor = services_of(request.app.state).records.scroll(
            name,
            cursor=data.cursor,
            limit=data.limit,
            filters=data.filters,
            include_vectors=data.include_vectors,
        )
        return w.Success(data=w.ScrollOut([record_out(r) for r in records], cursor))

    @post(
        "/count",
        responses=ERROR_RESPONSES,
        opt={"role": "read"},
        sync_to_thread=True,
        status_code=200,
    )
    def count(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        data: JSONBody[w.CountIn | None] = None,
    ) -> w.Success[w.CountOut]:
        check_scope(principal_of(request), name, write=False)
        filters = data.filters if data is not None else None
        return w.Success(
            data=w.CountOut(services_of(request.app.state).records.count(name, filters))
        )

    @get(
        "/export",
        responses=ERROR_RESPONSES,
        opt={"role": "read"},
        sync_to_thread=True,
        media_type="application/x-ndjson",  # so the schema documents it
    )
    def export(self, request: Request[Any, Any, Any], name: FromPath[str]) -> Stream:
        check_scope(principal_of(request), name, write=False)
        batches = iter(services_of(request.app.state).records.export(name))

        def next_chunk() -> bytes | None:
            batch = next(batches, None)
            if batch is None:
                return None
            buf = bytearray()
            for record in batch:
                buf += _encoder.encode(record_out(record))
                buf += b"\n"
            return bytes(buf)

        async def lines() -> AsyncIterator[bytes]:
            # Each page is read in a worker thread. Not Litestar's sync-iterator wrapper: it
            # takes any ValueError for the end of the stream, which would cut an export short
            # behind a 200; here an error aborts the response instead.
            while (chunk := await anyio.to_thread.run_sync(next_chunk)) is not None:
                yield chunk

        return Stream(lines(), media_type="application/x-ndjson")

    @post(
        "/import",
        responses=ERROR_RESPONSES,
        opt={"role": "write"},
        status_code=200,
        request_max_body_size=None,  # streamed in bounded batches: no whole-body limit
    )
    async def import_records(
        self, request: Request[Any, Any, Any], name: FromPath[str]
    ) -> w.Success[w.ImportOut]:
        check_scope(principal_of(request), name, write=True)
        records = services_of(request.app.state).records
        batch_size = records.limits.max_bulk_items
        inserted = updated = 0
        batch: list[tuple[int, bytes]] = []
        batch_bytes = 0
        async for numbered in _lines(request.stream()):
            batch.append(numbered)
            batch_bytes += len(numbered[1])
            if len(batch) >= batch_size or batch_bytes >= MAX_IMPORT_BATCH_BYTES:
                ins, upd = await anyio.to_thread.run_sync(records.import_lines, name, batch)
                inserted, updated, batch, batch_bytes = inserted + ins, updated + upd, [], 0
        if batch or (inserted == 0 and updated == 0):
            ins, upd = await anyio.to_thread.run_sync(records.import_lines, name, batch)
            inserted, updated = inserted + ins, updated + upd
        return w.Success(data=w.ImportOut(inserted, updated))


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """Non-blank lines with their 1-based line numbers in the whole body."""
    pending = bytearray()
    lineno = 0
    async for chunk in chunks:
        # Only the new chunk is searched for line ends: a long line costs linear time.
        start = 0
        end = chunk.find(b"\n")
        while end != -1:
            pending += chunk[start:end]
            _check_line_length(pending)
            lineno += 1
            if pending.strip():
                yield lineno, bytes(pending)
            pending = bytearray()
            start = end + 1
            end = chunk.find(b"\n", start)
        pending += chunk[start:]
        _check_line_length(pending)
    if pending.strip():
        yield lineno + 1, bytes(pending)


def _check_line_length(line: bytearray) -> None:
    if len(line) > MAX_IMPORT_LINE_BYTES:
        raise PayloadTooLarge(
            f"an import line is longer than {MAX_IMPORT_LINE_BYTES} bytes; split the record"
        )


# Shared by the route and by ``hot_paths`` (the same answer either way).
async def answer_bulk_upsert(
    services: AppServices, principal: Principal, name: str, data: w.BulkUpsertIn
) -> w.Success[w.BulkUpsertOut]:
    check_scope(principal, name, write=True)
    result, timing, warnings = await sync_to_thread(services.records.upsert, name, data.items)
    return w.Success(
        data=w.BulkUpsertOut(
            results=[
                w.UpsertStatus(i.external_id, s)
                for i, s in zip(data.items, result.statuses, strict=True)
            ],
            inserted=result.inserted,
            updated=result.updated,
            timing_ms=_write_timing(timing) if data.include_timing else UNSET,
            warnings=warnings or UNSET,
        )
    )
