"""Operations: liveness, readiness, scoped health, Prometheus metrics, docs redirect."""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
from litestar import MediaType, Request, Response, get
from litestar.response import Redirect

from vecstore import __version__
from vecstore.api import schemas as w
from vecstore.api.auth import authenticate, principal_of
from vecstore.api.openapi import ERROR_RESPONSES, METRICS_RESPONSES, READY_RESPONSES, SECURED
from vecstore.api.state import services_of
from vecstore.errors import NotReady


@get("/health", sync_to_thread=False, tags=["operations"])
def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready", sync_to_thread=False, tags=["operations"], responses=READY_RESPONSES)
def ready(request: Request[Any, Any, Any]) -> dict[str, str]:
    if not services_of(request.app.state).engine.ready:
        raise NotReady("migrations or index loading are still running")
    return {"status": "ready"}


@get(
    "/v1/health",
    responses=ERROR_RESPONSES,
    opt={"role": "read"},
    security=SECURED,
    sync_to_thread=True,
    tags=["operations"],
)
def v1_health(request: Request[Any, Any, Any]) -> w.Success[w.HealthOut]:
    services = services_of(request.app.state)
    principal = principal_of(request)
    rows = []
    for name in services.engine.collection_names():
        if not principal.can_see(name):
            continue
        try:
            s = services.engine.stats(name)
        except Exception:  # noqa: S112 - a broken collection has no stats; it is not fatal
            continue
        rows.append(
            w.HealthCollection(
                s.name,
                s.dim,
                s.metric,
                s.vector_count,
                s.index_type,
                s.index_vectors,
                s.deleted_fraction,
            )
        )
    return w.Success(
        data=w.HealthOut(
            status="ok",
            version=__version__,
            uptime_seconds=round(time.monotonic() - services.started_monotonic, 3),
            collections=rows,
            total_vectors=sum(r.vector_count for r in rows),
            models=[
                w.HealthModel(model, state)
                for model, state in (services.models.status() if services.models else {}).items()
            ],
        )
    )


# A read key unless metrics_public; documented as secured either way.
@get(
    "/metrics",
    tags=["operations"],
    media_type=MediaType.TEXT,
    security=SECURED,
    responses=METRICS_RESPONSES,
)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = services_of(request.app.state)
    if services.settings.metrics_public:
        allowed = None
    else:
        if not services.engine.ready:
            # Key lookups need the migrated database; answer as every keyed route does.
            raise NotReady("the server is still loading its collections")
        principal = await authenticate(request)
        services.keys.authorize(principal, "read")
        allowed = principal

    def render() -> bytes:
        stats = []
        for name in services.engine.collection_names():
            if allowed is not None and not allowed.can_see(name):
                continue
            try:
                stats.append(services.engine.stats(name))
            except Exception:  # noqa: S112 - a broken collection has no stats to report
                continue
        return services.metrics.render(stats, services.engine.index_rebuilds)

    # Stats wait for an indexer batch to finish: never on the event loop.
    body = await anyio.to_thread.run_sync(render)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


@get("/docs", include_in_schema=False, sync_to_thread=False)
def docs() -> Redirect:
    return Redirect(path="/schema/swagger")
