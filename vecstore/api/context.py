"""Request context: request ids, access logs and request metrics, for every response.

It wraps Litestar's ASGI handler rather than being a Litestar middleware, because Litestar
applies middleware after routing: a 404 or 405 would otherwise get no request id.
"""

from __future__ import annotations

import logging
import re
import time
from random import getrandbits
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from vecstore.api.metrics import Metrics

log = logging.getLogger("vecstore.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    """32 random hex digits. An id names a request in logs; it is not a secret, so Python's
    generator (reseeded in a forked child) serves, without a system call per request."""
    return f"{getrandbits(128):032x}"


def request_id_of(scope: Any) -> str:
    state = scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        rid = new_request_id()
        state["request_id"] = rid
    return str(rid)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        state["request_id"] = (
            incoming if incoming and _SAFE_ID.fullmatch(incoming) else new_request_id()
        )
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", state["request_id"].encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            method = str(scope.get("method", ""))
            self.metrics.observe_request(method, route, status, elapsed)
            if log.isEnabledFor(logging.INFO):  # (not building the record's fields otherwise)
                log.info(
                    "request",
                    extra={
                        "request_id": state["request_id"],
                        "method": method,
                        "path": scope.get("path", ""),
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )
