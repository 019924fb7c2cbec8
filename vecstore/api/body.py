"""Request bodies: JSON nested deeper than the decoder can follow is a 400, not a 500.

msgspec decodes recursively and raises ``RecursionError`` once a body nests deeper than
Python's recursion limit allows (some 900 levels: ``[[[[...]]]]`` costs a few bytes a level, so a
tiny body does it). Litestar lets that escape as a server error; this request class turns it
into ``400 limit_exceeded`` before any handler runs. What may nest, and how deep, past this point
is a service rule (metadata: ``services.limits.MAX_JSON_DEPTH``; filters: ``storage.filters``).
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from vecstore.errors import LimitExceeded
from vecstore.services.limits import MAX_JSON_DEPTH


def too_deep() -> LimitExceeded:
    return LimitExceeded(
        "the JSON body is nested too deeply to decode; metadata may nest at most"
        f" {MAX_JSON_DEPTH} levels and filters at most 16"
    )


class VecstoreRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            raise too_deep() from None

    async def msgpack(self) -> Any:
        try:
            return await super().msgpack()
        except RecursionError:
            raise too_deep() from None
