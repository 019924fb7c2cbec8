"""External ids in paths: taken from the raw path so ids holding '/' survive routing."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from litestar import Request

from vecstore.errors import BadRequest


def path_external_id(request: Request[Any, Any, Any], routed: str) -> str:
    """The external id exactly as the client percent-encoded it in the last path segment(s).

    Litestar routes on the decoded path and normalises it (``//`` collapsed, a trailing ``/``
    dropped), so an id holding ``/`` would be cut or mangled; the raw path keeps it intact.
    """
    raw = request.scope.get("raw_path")
    if raw:
        parts = bytes(raw).split(b"?", 1)[0].split(b"/")
        # [..., b"v1", b"collections", name, b"vectors" | b"delete" | b"recommend", id...]
        for i in range(len(parts) - 4):
            if parts[i] == b"v1" and parts[i + 1] == b"collections":
                raw_id = unquote_to_bytes(b"/".join(parts[i + 4 :]))
                try:
                    return raw_id.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise BadRequest(
                        "the external id in the path is not percent-encoded UTF-8",
                        type_="invalid_external_id",
                    ) from exc
    return routed[1:] if routed.startswith("/") else routed
