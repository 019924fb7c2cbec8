"""Authentication guard: the route's required role lives in its ``opt``; no role means public."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio.to_thread
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from vecstore.api.state import AppServices, services_of
from vecstore.errors import CollectionNotFound, Forbidden, NotReady
from vecstore.services.keys import ANONYMOUS_ADMIN, Principal


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key in ``x-api-key`` or ``Authorization: Bearer`` (header names in lower case)."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    services = services_of(connection.app.state)
    key = presented_key(connection.headers)
    principal = cached_principal(services, key)
    if principal is not None:
        return principal
    # A cache miss reads the database: keep it off the event loop.
    return await anyio.to_thread.run_sync(services.keys.authenticate, key)


def cached_principal(services: AppServices, key: str | None) -> Principal | None:
    """Who ``key`` is, when that needs no database read (raises for a bad key); else None."""
    if not services.settings.auth_enabled:
        return ANONYMOUS_ADMIN
    return services.keys.authenticate_from_memory(key)


async def require_role(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    role = handler.opt.get("role")
    if role is None:
        return
    services = services_of(connection.app.state)
    if not services.engine.ready:
        # Until collections are loaded, a lookup would wrongly answer 404.
        raise NotReady("the server is still loading its collections")
    principal = await authenticate(connection)
    admit(
        services,
        principal,
        role,
        unscoped=bool(handler.opt.get("unscoped")),
        route=connection.scope.get("path_template", "") or "",
    )
    connection.state.principal = principal


def admit(
    services: AppServices, principal: Principal, role: str, *, unscoped: bool, route: str
) -> None:
    """Role, scope rule for key management, then the key's rate limit (which counts the use)."""
    services.keys.authorize(principal, role)
    if unscoped and principal.scopes is not None:
        raise Forbidden("only an admin key without collection scopes may manage API keys")
    services.keys.record_use(principal, route)


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal: Principal = connection.state.principal
    return principal


def check_scope(principal: Principal, name: str, *, write: bool) -> None:
    """Outside a key's scope a collection reads as absent (404) and refuses writes (403)."""
    if principal.can_see(name):
        return
    if write:
        raise Forbidden(f"this key may not change collection '{name}'")
    raise CollectionNotFound(name)
