"""Request timeouts: a request that runs past ``request_timeout_s`` is answered and cancelled.

At the deadline, if the handler has not started its response, the client gets the standard
error shape at once (408 while the body was still arriving, else 503 ``timeout`` with
``Retry-After``) and the handler's task is cancelled. Work in a worker thread cannot be
interrupted from outside; it sees the same deadline (``vecstore.deadlines``) and stops at its
next checkpoint, so a write that had not committed is not applied. A response already under
way (an export stream) is left to finish, and routes marked ``opt={"no_timeout": True}``
(snapshot, verify, restore) run to the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from vecstore import deadlines
from vecstore.api.context import request_id_of
from vecstore.api.errors import error_envelope
from vecstore.api.metrics import Metrics

log = logging.getLogger("vecstore.timeouts")


class TimeoutMiddleware:
    def __init__(self, app: ASGIApp, timeout_s: float, metrics: Metrics) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.timeout_s <= 0:  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        started = False
        expired = False
        # 408 only when the deadline finds the handler waiting for the client's body; a
        # handler slow for any other reason (or a request without a body) gets 503.
        receiving = False

        async def receive_wrapper() -> ReceiveMessage:
            nonlocal receiving
            receiving = True
            try:
                return await receive()
            finally:
                receiving = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if expired:
                return  # the client already has its timeout answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        loop = asyncio.get_running_loop()
        handler = asyncio.current_task()
        assert handler is not None
        answering: list[asyncio.Task[None]] = []

        def expire() -> None:
            nonlocal expired
            if started:
                return  # already answering (a stream): let it finish
            route_handler = scope.get("route_handler")
            if getattr(route_handler, "opt", {}).get("no_timeout"):
                return  # snapshot and restore: long by nature, and not safely cancelled
            expired = True
            route = str(scope.get("path_template") or "unmatched")
            self.metrics.observe_rejection(route, "timeout")
            log.warning("request timed out", extra={"route": route, "timeout_s": self.timeout_s})
            # Answer from a task of its own: the handler may be waiting for a worker thread,
            # and its cancellation only lands when that thread returns.
            answering.append(
                loop.create_task(
                    _answer_timeout(scope, send, self.timeout_s, reading_body=receiving)
                )
            )
            handler.cancel()

        # One timer per request, in the request's own task: no extra task on the hot path.
        timer = loop.call_later(self.timeout_s, expire)
        token = deadlines.start(self.timeout_s)
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except asyncio.CancelledError:
            if not expired:
                raise  # cancelled from outside (shutdown): not ours to swallow
            handler.uncancel()
        finally:
            timer.cancel()
            deadlines.reset(token)
            for task in answering:
                with contextlib.suppress(Exception):
                    await task


async def _answer_timeout(
    scope: Scope, send: Send, timeout_s: float, *, reading_body: bool
) -> None:
    if reading_body:
        status, type_ = 408, "request_timeout"
        message = f"the request body did not arrive within {timeout_s:g} s"
    else:
        status, type_ = 503, "timeout"
        message = (
            f"the request did not finish within {timeout_s:g} s (request_timeout_s);"
            " its work was cancelled"
        )
    envelope = error_envelope(scope, status, type_, message)
    if envelope.error.request_id is msgspec.UNSET:  # a 408 names its request too (as before)
        envelope.error.request_id = request_id_of(scope)
    body = msgspec.json.encode(envelope)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
    ]
    if reading_body:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
