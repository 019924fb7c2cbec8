"""/v1/admin/keys: issue, list, read, patch, revoke, rotate, usage."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.params import FromPath, JSONBody

from vecstore.api import schemas as w
from vecstore.api.mappers import key_out
from vecstore.api.openapi import ERROR_RESPONSES, SECURED
from vecstore.api.state import services_of


class KeyController(Controller):
    path = "/v1/admin/keys"
    security = SECURED
    tags = ["keys"]
    # Only an admin key without collection scopes manages keys: a scoped admin could otherwise
    # issue itself an unscoped key.
    opt = {"role": "admin", "unscoped": True}

    @post("/", sync_to_thread=True, responses=ERROR_RESPONSES, status_code=201)
    def create(
        self, request: Request[Any, Any, Any], data: JSONBody[w.CreateKeyIn]
    ) -> w.Success[w.KeyOut]:
        row, secret = services_of(request.app.state).keys.create(
            name=data.name,
            role=data.role,
            collections=data.collections,
            expires_in_days=data.expires_in_days,
            rate_limit_per_minute=data.rate_limit_per_minute,
        )
        return w.Success(data=key_out(row, secret))

    @get("/", sync_to_thread=True, responses=ERROR_RESPONSES)
    def list_keys(self, request: Request[Any, Any, Any]) -> w.Success[w.KeyList]:
        rows = services_of(request.app.state).keys.list()
        return w.Success(data=w.KeyList([key_out(r) for r in rows]))

    @get("/{key_id:str}", sync_to_thread=True, responses=ERROR_RESPONSES)
    def read(self, request: Request[Any, Any, Any], key_id: FromPath[str]) -> w.Success[w.KeyOut]:
        return w.Success(data=key_out(services_of(request.app.state).keys.get(key_id)))

    @patch("/{key_id:str}", sync_to_thread=True, responses=ERROR_RESPONSES)
    def update(
        self, request: Request[Any, Any, Any], key_id: FromPath[str], data: JSONBody[w.PatchKeyIn]
    ) -> w.Success[w.KeyOut]:
        changes = {
            f: getattr(data, f)
            for f in ("name", "role", "is_active", "collections", "rate_limit_per_minute")
            if getattr(data, f) is not msgspec.UNSET
        }
        row = services_of(request.app.state).keys.update(key_id, changes)
        return w.Success(data=key_out(row))

    @delete("/{key_id:str}", sync_to_thread=True, responses=ERROR_RESPONSES, status_code=200)
    def revoke(
        self, request: Request[Any, Any, Any], key_id: FromPath[str]
    ) -> w.Success[w.KeyDeleted]:
        services_of(request.app.state).keys.delete(key_id)
        return w.Success(data=w.KeyDeleted(id=key_id))

    @post("/{key_id:str}/rotate", sync_to_thread=True, responses=ERROR_RESPONSES, status_code=200)
    def rotate(self, request: Request[Any, Any, Any], key_id: FromPath[str]) -> w.Success[w.KeyOut]:
        row, secret = services_of(request.app.state).keys.rotate(key_id)
        return w.Success(data=key_out(row, secret))

    @get("/{key_id:str}/usage", sync_to_thread=True, responses=ERROR_RESPONSES)
    def usage(
        self, request: Request[Any, Any, Any], key_id: FromPath[str]
    ) -> w.Success[w.KeyUsageOut]:
        usage = services_of(request.app.state).keys.usage(key_id)
        return w.Success(data=msgspec.convert(usage, w.KeyUsageOut))
