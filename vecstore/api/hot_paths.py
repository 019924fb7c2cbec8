"""The hot requests, ``POST /v1/collections/{name}/search``, ``…/rerank`` and ``…/bulk_upsert``,
answered without Litestar's routing.

Of the GIL time of a search request, Litestar's routing, guard (it copies the handler for every
guard call), dependency injection, body decoding and response took ~45 % and the search ~25 %
(py-spy of the server; docs/benchmarks.md, "What limits vecstore today"). Of a base64
``bulk_upsert`` of 1,000 vectors, Litestar's body handling (it decodes the JSON to Python
objects, then converts those to the request Struct) took ~15 %. One process serves every
request, so that time bounds throughput. This lane takes the success path of those three
routes only, and everything unusual goes the regular way, so the answers stay Litestar's:

- the request is handed to Litestar untouched (its body replayed) unless it is a POST to exactly
  one of the three paths with a valid collection name, the server is ready, CORS is off, the
  body fits ``max_body_bytes`` and decodes into the route's Struct, and the key can be checked
  from memory. Decoding follows Litestar's rules (``strict=False``): a body the lane cannot
  decode gets Litestar's exact 4xx;
- past that point the lane answers, including errors: the key's role and rate limit
  (``auth.admit``, which counts the use once), then the same handler body as the route
  (``answer_search`` / ``answer_rerank`` / ``answer_bulk_upsert``, which runs the write in a
  worker thread as the route does), and any exception through ``errors.classify``, the one
  mapping every route uses;
- it sits inside the request-context and timeout middlewares, so request ids, access logs,
  metrics (under the same route template) and deadlines apply as on every route.

``fast_path = false`` routes these requests like every other; the tests compare the two byte
for byte.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from vecstore.api import schemas as w
from vecstore.api.auth import admit, cached_principal, presented_key
from vecstore.api.errors import classify, error_envelope
from vecstore.api.routes.records import answer_bulk_upsert
from vecstore.api.routes.search import answer_rerank, answer_search
from vecstore.api.state import AppServices
from vecstore.services.collections import NAME_RE
from vecstore.services.keys import Principal

# Any other name goes to Litestar, which answers it as every route does.
_PATH = re.compile(rf"/v1/collections/({NAME_RE.pattern.strip('^$')})/(search|rerank|bulk_upsert)")
_Answer = Callable[[AppServices, Principal, str, Any], Awaitable[msgspec.Struct]]
# operation -> the route's body decoder, its handler body, and the role its route asks for
_ROUTES: dict[str, tuple[msgspec.json.Decoder[Any], _Answer, str]] = {
    "search": (msgspec.json.Decoder(w.SearchIn, strict=False), answer_search, "read"),
    "rerank": (msgspec.json.Decoder(w.RerankIn, strict=False), answer_rerank, "read"),
    "bulk_upsert": (
        msgspec.json.Decoder(w.BulkUpsertIn, strict=False),
        answer_bulk_upsert,
        "write",
    ),
}
_encode = msgspec.json.Encoder().encode
_JSON = (b"content-type", b"application/json")


class HotPaths:
    def __init__(self, app: ASGIApp, services: AppServices) -> None:
        self.app = app
        self.services = services
        settings = services.settings
        self.enabled = settings.fast_path and not settings.cors_origins
        self.max_body_bytes = settings.max_body_bytes

    async def __call__(self, asgi_scope: Scope, receive: Receive, send: Send) -> None:
        scope: Any = asgi_scope  # an HTTP scope once "type" says so; typed dicts cannot narrow
        match = None
        if (
            self.enabled
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and self.services.engine.ready
        ):
            match = _PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            headers.setdefault(raw_name.decode("latin-1"), raw_value.decode("latin-1"))
        received: list[ReceiveMessage] = []
        body = await self._read_body(headers, receive, received)
        name, operation = match.group(1), match.group(2)
        decoder, answer, role = _ROUTES[operation]
        data: Any = None
        if body is not None:
            try:
                data = decoder.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                data = None
        if data is None:
            await self.app(scope, _replaying(received, receive), send)
            return
        route = f"/v1/collections/{{name}}/{operation}"  # Litestar's template, for metrics
        scope["path_template"] = route
        result: msgspec.Struct | None = None
        try:
            principal = cached_principal(self.services, presented_key(headers))
            if principal is not None:
                admit(self.services, principal, role, unscoped=False, route=route)
                result = await answer(self.services, principal, name, data)
        except Exception as exc:
            info = classify(Request(scope, receive), exc)
            envelope = error_envelope(scope, info.status, info.type, info.message)
            extra = [(k.lower().encode(), v.encode()) for k, v in (info.headers or {}).items()]
            await _send_json(send, info.status, _encode(envelope), extra)
            return
        if result is None:  # the key needs a database read: Litestar does it off the loop
            await self.app(scope, _replaying(received, receive), send)
            return
        await _send_json(send, 200, _encode(result), [])

    async def _read_body(
        self, headers: dict[str, str], receive: Receive, received: list[ReceiveMessage]
    ) -> bytes | None:
        """The whole body, or None when it is over the limit or the client went away (every
        message read is kept in ``received`` for Litestar to read again)."""
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replaying(received: list[ReceiveMessage], receive: Receive) -> Receive:
    pending = list(received)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _send_json(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]
) -> None:
    headers = [_JSON, (b"content-length", str(len(body)).encode()), *extra]
    start: Any = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})
