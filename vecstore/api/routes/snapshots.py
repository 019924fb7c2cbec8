"""/v1/admin/snapshots: take, list, read, verify, delete and restore online snapshots."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.params import FromPath

from vecstore.api import schemas as w
from vecstore.api.mappers import snapshot_out
from vecstore.api.openapi import SECURED, SNAPSHOT_RESPONSES
from vecstore.api.state import services_of

# Copying, checksumming and swapping a whole data set may take longer than request_timeout_s;
# answering 503 while the work went on would mislead, so these routes are exempt.
_LONG = {"no_timeout": True}


class SnapshotController(Controller):
    path = "/v1/admin/snapshots"
    security = SECURED
    tags = ["snapshots"]
    # A snapshot holds every collection and every key hash: only an unscoped admin takes or
    # restores one.
    opt = {"role": "admin", "unscoped": True}

    @post("/", sync_to_thread=True, responses=SNAPSHOT_RESPONSES, status_code=201, opt=_LONG)
    def create(self, request: Request[Any, Any, Any]) -> w.Success[w.SnapshotOut]:
        manifest = services_of(request.app.state).snapshots.create()
        return w.Success(data=snapshot_out(manifest))

    @get("/", sync_to_thread=True, responses=SNAPSHOT_RESPONSES)
    def list_snapshots(self, request: Request[Any, Any, Any]) -> w.Success[w.SnapshotList]:
        manifests = services_of(request.app.state).snapshots.list()
        return w.Success(data=w.SnapshotList([snapshot_out(m) for m in manifests]))

    @get("/{snapshot_id:str}", sync_to_thread=True, responses=SNAPSHOT_RESPONSES)
    def read(
        self, request: Request[Any, Any, Any], snapshot_id: FromPath[str]
    ) -> w.Success[w.SnapshotOut]:
        return w.Success(
            data=snapshot_out(services_of(request.app.state).snapshots.get(snapshot_id))
        )

    @post(
        "/{snapshot_id:str}/verify",
        sync_to_thread=True,
        responses=SNAPSHOT_RESPONSES,
        status_code=200,
        opt=_LONG,
    )
    def verify(
        self, request: Request[Any, Any, Any], snapshot_id: FromPath[str]
    ) -> w.Success[w.SnapshotVerified]:
        manifest = services_of(request.app.state).snapshots.verify(snapshot_id)
        return w.Success(
            data=w.SnapshotVerified(
                manifest.id,
                verified=True,
                files=len(manifest.files),
                size_bytes=manifest.size_bytes,
            )
        )

    @post(
        "/{snapshot_id:str}/restore",
        sync_to_thread=True,
        responses=SNAPSHOT_RESPONSES,
        status_code=200,
        opt=_LONG,
    )
    def restore(
        self, request: Request[Any, Any, Any], snapshot_id: FromPath[str]
    ) -> w.Success[w.RestoreOut]:
        result = services_of(request.app.state).snapshots.restore(snapshot_id)
        return w.Success(
            data=w.RestoreOut(
                snapshot_out(result.manifest), previous_data=result.previous_data.name
            )
        )

    @delete(
        "/{snapshot_id:str}", sync_to_thread=True, responses=SNAPSHOT_RESPONSES, status_code=200
    )
    def remove(
        self, request: Request[Any, Any, Any], snapshot_id: FromPath[str]
    ) -> w.Success[w.SnapshotDeleted]:
        services_of(request.app.state).snapshots.delete(snapshot_id)
        return w.Success(data=w.SnapshotDeleted(snapshot_id))
