"""A thin HTTP client for the vecstore envelope: msgspec-encoded bodies, bounded retries."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import httpx
import msgspec

# 429 (rate limited) and 503 (overloaded / not ready) carry Retry-After and are worth retrying.
_RETRYABLE = frozenset({429, 503})
_MAX_ATTEMPTS = 5
_MAX_RETRY_WAIT_S = 5.0

encode = msgspec.json.encode


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        snippet = body[:500].decode("utf-8", errors="replace")
        super().__init__(f"{method} {path} -> HTTP {status}: {snippet}")
        self.status = status


class ApiClient:
    """One keep-alive connection; use one per thread."""

    def __init__(self, base_url: str, key: str, *, timeout_s: float = 120.0) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout_s,
            headers={"x-api-key": key, "content-type": "application/json"},
        )
        self.retries = 0

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def post_raw(self, path: str, body: bytes) -> bytes:
        """POST pre-encoded JSON; return the raw response body of a 2xx answer."""
        return self._send("POST", path, body)

    def post(self, path: str, payload: Any) -> Any:
        """POST a JSON-able object; return the envelope's ``data``."""
        return data_of(self._send("POST", path, encode(payload)))

    def get(self, path: str) -> Any:
        return data_of(self._send("GET", path, None))

    def delete(self, path: str) -> Any:
        return data_of(self._send("DELETE", path, None))

    def get_health(self) -> bytes:
        """``GET /health`` (no auth, trivially cheap): opens the keep-alive connection."""
        return self._send("GET", "/health", None)

    def _send(self, method: str, path: str, body: bytes | None) -> bytes:
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            resp = self._http.request(method, path, content=body)
            if resp.status_code < 300:
                return resp.content
            if resp.status_code not in _RETRYABLE or attempt == _MAX_ATTEMPTS:
                raise ApiError(method, path, resp.status_code, resp.content)
            self.retries += 1
            time.sleep(_retry_after(resp))
        raise AssertionError("unreachable")


def data_of(raw: bytes) -> Any:
    envelope = msgspec.json.decode(raw)
    if not isinstance(envelope, dict) or envelope.get("status") != "success":
        raise ValueError(f"not a success envelope: {raw[:300]!r}")
    return envelope["data"]


def _retry_after(resp: httpx.Response) -> float:
    try:
        wait = float(resp.headers.get("retry-after", "0.5"))
    except ValueError:
        wait = 0.5
    return min(max(wait, 0.05), _MAX_RETRY_WAIT_S)
