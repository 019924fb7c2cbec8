"""API keys: issuing, authenticating (hashed, constant-time), scopes, rate limits and usage.

Keys are 32 random bytes, so one SHA-256 is a sound storage hash (no password stretching is
needed for high-entropy secrets). Usage is counted in memory and flushed in batches, so a read
request never turns into a database write.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from vecstore.errors import BadRequest, Forbidden, NotFound, RateLimited, Unauthorized
from vecstore.services.rate_limit import TokenBuckets
from vecstore.storage.engine import utc_now
from vecstore.storage.keys import KeyRow, KeyStore

ROLES = {"read": 1, "write": 2, "admin": 3}
KEY_PREFIX = "vs_"
BOOTSTRAP_ID = "bootstrap"
MAX_SCOPES = 100


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _utc_text(timestamp: float) -> str:
    """``utc_now()``'s format for a ``time.time()`` value."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    name: str
    role: str
    scopes: tuple[str, ...] | None
    rate_limit_per_minute: int | None = None

    def has_role(self, role: str) -> bool:
        return ROLES[self.role] >= ROLES[role]

    def can_see(self, collection: str) -> bool:
        if self.scopes is None:
            return True
        return any(fnmatch.fnmatchcase(collection, pattern) for pattern in self.scopes)


ANONYMOUS_ADMIN = Principal("anonymous", "auth disabled", "admin", None)
BOOTSTRAP_ADMIN = Principal(BOOTSTRAP_ID, "bootstrap admin", "admin", None)


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class KeyService:
    def __init__(
        self,
        store: KeyStore,
        *,
        admin_key: str | None,
        flush_interval_s: float = 5.0,
        default_rate_limit_per_minute: int | None = None,
        on_rate_limited: Callable[[str], None] | None = None,
    ):
        self.store = store
        self.default_rate_limit_per_minute = default_rate_limit_per_minute
        self._on_rate_limited = on_rate_limited
        self._buckets = TokenBuckets()
        self._admin_hash = hash_key(admin_key) if admin_key else None
        self._cache: dict[str, KeyRow | None] = {}
        # Bumped by every invalidation: a row read before one must not be cached after it.
        self._generation = 0
        self._lock = threading.Lock()
        self._usage: Counter[tuple[str, int, str]] = Counter()
        # time.time() of each key's last use, formatted when flushed (not on every request)
        self._last_used: dict[str, float] = {}
        self._flush_interval_s = flush_interval_s
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._flusher = threading.Thread(
            target=self._flush_loop, name="vecstore-usage", daemon=True
        )
        self._flusher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=10)
        self.flush()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._flush_interval_s):
            self.flush()

    def flush(self) -> None:
        with self._flush_lock:
            with self._lock:
                usage, self._usage = self._usage, Counter()
                last_used, self._last_used = self._last_used, {}
            if usage or last_used:
                self.store.add_usage(
                    [(k, h, r, n) for (k, h, r), n in usage.items() if k != BOOTSTRAP_ID],
                    {k: _utc_text(v) for k, v in last_used.items() if k != BOOTSTRAP_ID},
                )

    @contextlib.contextmanager
    def replacing_database(self) -> Iterator[None]:
        """Around a restore: usage so far is flushed to the old database, nothing is written
        while the files are swapped, and afterwards every cached key is read afresh."""
        self.flush()
        with self._flush_lock:
            try:
                yield
            finally:
                with self._lock:
                    self._usage.clear()
                    self._last_used.clear()
                self._invalidate()

    # -- authentication ---------------------------------------------------------------------
    def authenticate(self, presented: str | None) -> Principal:
        if not presented:
            raise Unauthorized(
                "an API key is required: send 'x-api-key: KEY' or 'Authorization: Bearer KEY'"
            )
        digest = hash_key(presented)
        if self._is_admin(digest):
            return BOOTSTRAP_ADMIN
        return self._principal(digest, self._lookup(digest))

    def authenticate_from_memory(self, presented: str | None) -> Principal | None:
        """``authenticate`` when that needs no database read (it raises as ``authenticate``
        does), else None. The key is hashed once."""
        if not presented:
            return self.authenticate(presented)
        digest = hash_key(presented)
        if self._is_admin(digest):
            return BOOTSTRAP_ADMIN
        with self._lock:
            if digest not in self._cache:
                return None
            row = self._cache[digest]
        return self._principal(digest, row)

    def _is_admin(self, digest: str) -> bool:
        return self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash)

    @staticmethod
    def _principal(digest: str, row: KeyRow | None) -> Principal:
        """The key stored as ``row`` (None: no key has that hash), checked and still valid."""
        # The lookup is by hash; the final comparison is constant-time all the same.
        if row is None or not hmac.compare_digest(row.key_hash, digest):
            raise Unauthorized("the API key is not valid")
        if not row.is_active:
            raise Unauthorized("the API key has been revoked")
        if row.expires_at is not None and _parse_time(row.expires_at) <= datetime.now(UTC):
            raise Unauthorized("the API key has expired")
        return Principal(
            row.id,
            row.name,
            row.role,
            tuple(row.collections) if row.collections is not None else None,
            row.rate_limit_per_minute,
        )

    def _lookup(self, digest: str) -> KeyRow | None:
        with self._lock:
            if digest in self._cache:
                return self._cache[digest]
            generation = self._generation
        row = self.store.by_hash(digest)
        with self._lock:
            if generation == self._generation:  # else a revocation raced this read
                if len(self._cache) > 10000:
                    self._cache.clear()
                self._cache[digest] = row
        return row

    def _invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._cache.clear()

    @staticmethod
    def authorize(principal: Principal, role: str) -> None:
        if not principal.has_role(role):
            raise Forbidden(
                f"this route needs a key with the '{role}' role; yours is '{principal.role}'"
            )

    def record_use(self, principal: Principal, route: str) -> None:
        """Enforce the key's rate limit (its own, else the server default), then count it."""
        limit = principal.rate_limit_per_minute
        if limit is None and principal.key_id not in (BOOTSTRAP_ID, ANONYMOUS_ADMIN.key_id):
            limit = self.default_rate_limit_per_minute
        if limit is not None:
            retry = self._buckets.take(principal.key_id, limit)
            if retry:
                if self._on_rate_limited is not None:
                    self._on_rate_limited(principal.key_id)
                raise RateLimited(
                    f"this key allows {limit} requests per minute; retry in {retry} s",
                    retry_after_s=retry,
                )
        now = time.time()
        with self._lock:
            self._usage[(principal.key_id, int(now // 3600), route)] += 1
            self._last_used[principal.key_id] = now

    # -- administration ---------------------------------------------------------------------
    @staticmethod
    def _check_fields(
        *, name: str | None, role: str | None, collections: list[str] | None, rate: int | None
    ) -> None:
        if name is not None and not 1 <= len(name) <= 200:
            raise BadRequest("'name' must be 1 to 200 characters")
        if role is not None and role not in ROLES:
            raise BadRequest(f"'role' must be one of {', '.join(ROLES)}, got '{role}'")
        if collections is not None:
            if len(collections) > MAX_SCOPES:
                raise BadRequest(f"'collections' takes at most {MAX_SCOPES} patterns")
            if any(not p or len(p) > 200 for p in collections):
                raise BadRequest("every 'collections' pattern must be 1 to 200 characters")
        if rate is not None and rate < 1:
            raise BadRequest("'rate_limit_per_minute' must be 1 or more (or null for no limit)")

    def create(
        self,
        *,
        name: str,
        role: str,
        collections: list[str] | None,
        expires_in_days: int | None,
        rate_limit_per_minute: int | None,
    ) -> tuple[KeyRow, str]:
        self._check_fields(
            name=name, role=role, collections=collections, rate=rate_limit_per_minute
        )
        if expires_in_days is not None and not 1 <= expires_in_days <= 36500:
            raise BadRequest("'expires_in_days' must be between 1 and 36500")
        secret = new_secret()
        expires = (
            (datetime.now(UTC) + timedelta(days=expires_in_days))
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
            if expires_in_days is not None
            else None
        )
        row = KeyRow(
            id=uuid.uuid4().hex,
            name=name,
            role=role,
            collections=collections,
            is_active=True,
            created_at=utc_now(),
            expires_at=expires,
            last_used_at=None,
            prefix=secret[:10],
            key_hash=hash_key(secret),
            rate_limit_per_minute=rate_limit_per_minute,
        )
        self.store.insert(row)
        return row, secret

    def list(self) -> list[KeyRow]:
        self.flush()
        return self.store.all()

    def get(self, key_id: str) -> KeyRow:
        self.flush()
        row = self.store.get(key_id)
        if row is None:
            raise NotFound(f"no API key with id '{key_id}'", type_="key_not_found")
        return row

    def update(self, key_id: str, changes: dict[str, object]) -> KeyRow:
        row = self.get(key_id)
        self._check_fields(
            name=changes.get("name"),  # type: ignore[arg-type]
            role=changes.get("role"),  # type: ignore[arg-type]
            collections=changes.get("collections"),  # type: ignore[arg-type]
            rate=changes.get("rate_limit_per_minute"),  # type: ignore[arg-type]
        )
        row = replace(row, **changes)  # type: ignore[arg-type]
        self.store.save(row)
        self._invalidate()
        return row

    def rotate(self, key_id: str) -> tuple[KeyRow, str]:
        row = self.get(key_id)
        secret = new_secret()
        row = replace(row, key_hash=hash_key(secret), prefix=secret[:10])
        self.store.save(row)
        self._invalidate()
        return row, secret

    def delete(self, key_id: str) -> None:
        if not self.store.delete(key_id):
            raise NotFound(f"no API key with id '{key_id}'", type_="key_not_found")
        self._invalidate()

    def usage(self, key_id: str) -> dict[str, object]:
        row = self.get(key_id)  # flushes pending counts first
        hour_now = int(time.time() // 3600)
        total = day = week = 0
        by_route: Counter[str] = Counter()
        for hour, route, count in self.store.usage(key_id):
            total += count
            by_route[route] += count
            if hour > hour_now - 24:
                day += count
            if hour > hour_now - 24 * 7:
                week += count
        return {
            "total_requests": total,
            "last_24h": day,
            "last_7d": week,
            "by_route": dict(by_route),
            "last_request_at": row.last_used_at,
        }
