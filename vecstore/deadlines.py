"""Per-request deadlines, carried in a context variable so that worker threads see them too.

The request-timeout middleware sets the deadline; it is copied into every task and worker
thread the request starts (asyncio tasks and anyio's ``to_thread`` copy the context). Long
work checks it at its natural checkpoints (before a write commits, while it waits for the
embedding model) and stops there, so a timed-out request does not keep the server busy.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token

from vecstore.errors import RequestTimedOut

_DEADLINE: ContextVar[float | None] = ContextVar("vecstore_deadline", default=None)


def start(timeout_s: float) -> Token[float | None]:
    """Give the current context a deadline ``timeout_s`` from now."""
    return _DEADLINE.set(time.monotonic() + timeout_s)


def reset(token: Token[float | None]) -> None:
    _DEADLINE.reset(token)


def remaining_s() -> float | None:
    """Seconds left for the current request; ``None`` when it has no deadline."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def check(doing: str) -> None:
    """Raise ``RequestTimedOut`` once the current request's deadline has passed."""
    left = remaining_s()
    if left is not None and left <= 0:
        raise RequestTimedOut(f"the request timed out {doing}; nothing further was done")
