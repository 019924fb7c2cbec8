"""API key rows and usage counters (SQL only; policy lives in ``services.keys``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa

from vecstore.storage import schema as t


@dataclass(slots=True)
class KeyRow:
    id: str
    name: str
    role: str
    collections: list[str] | None
    is_active: bool
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    prefix: str
    key_hash: str
    rate_limit_per_minute: int | None


def _row(r: Any) -> KeyRow:
    return KeyRow(
        id=r.id,
        name=r.name,
        role=r.role,
        collections=msgspec.json.decode(r.collections) if r.collections is not None else None,
        is_active=bool(r.is_active),
        created_at=r.created_at,
        expires_at=r.expires_at,
        last_used_at=r.last_used_at,
        prefix=r.prefix,
        key_hash=r.key_hash,
        rate_limit_per_minute=r.rate_limit_per_minute,
    )


class KeyStore:
    def __init__(self, db: sa.Engine) -> None:
        self.db = db

    def insert(self, row: KeyRow) -> None:
        with self.db.begin() as conn:
            conn.execute(t.api_keys.insert().values(**self._values(row)))

    @staticmethod
    def _values(row: KeyRow) -> dict[str, Any]:
        return {
            "id": row.id,
            "name": row.name,
            "role": row.role,
            "collections": (
                msgspec.json.encode(row.collections).decode()
                if row.collections is not None
                else None
            ),
            "is_active": row.is_active,
            "created_at": row.created_at,
            "expires_at": row.expires_at,
            "last_used_at": row.last_used_at,
            "prefix": row.prefix,
            "key_hash": row.key_hash,
            "rate_limit_per_minute": row.rate_limit_per_minute,
        }

    def save(self, row: KeyRow) -> None:
        with self.db.begin() as conn:
            conn.execute(
                t.api_keys.update().where(t.api_keys.c.id == row.id).values(**self._values(row))
            )

    def all(self) -> list[KeyRow]:
        with self.db.connect() as conn:
            return [
                _row(r)
                for r in conn.execute(sa.select(t.api_keys).order_by(t.api_keys.c.created_at))
            ]

    def get(self, key_id: str) -> KeyRow | None:
        with self.db.connect() as conn:
            r = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id)).one_or_none()
        return _row(r) if r is not None else None

    def by_hash(self, key_hash: str) -> KeyRow | None:
        with self.db.connect() as conn:
            r = conn.execute(
                sa.select(t.api_keys).where(t.api_keys.c.key_hash == key_hash)
            ).one_or_none()
        return _row(r) if r is not None else None

    def delete(self, key_id: str) -> bool:
        with self.db.begin() as conn:
            conn.execute(t.key_usage.delete().where(t.key_usage.c.key_id == key_id))
            result = conn.execute(t.api_keys.delete().where(t.api_keys.c.id == key_id))
        return bool(result.rowcount)

    def add_usage(
        self, counts: Iterable[tuple[str, int, str, int]], last_used: dict[str, str]
    ) -> None:
        """Add (key_id, hour, route, n) counts and record last-use times, in one transaction."""
        with self.db.begin() as conn:
            for key_id, hour, route, n in counts:
                updated = conn.execute(
                    t.key_usage.update()
                    .where(
                        t.key_usage.c.key_id == key_id,
                        t.key_usage.c.hour == hour,
                        t.key_usage.c.route == route,
                    )
                    .values(count=t.key_usage.c.count + n)
                ).rowcount
                if not updated:
                    conn.execute(
                        t.key_usage.insert().values(key_id=key_id, hour=hour, route=route, count=n)
                    )
            for key_id, when in last_used.items():
                conn.execute(
                    t.api_keys.update().where(t.api_keys.c.id == key_id).values(last_used_at=when)
                )

    def usage(self, key_id: str) -> list[tuple[int, str, int]]:
        with self.db.connect() as conn:
            return [
                (int(r.hour), str(r.route), int(r[3]))
                for r in conn.execute(sa.select(t.key_usage).where(t.key_usage.c.key_id == key_id))
            ]
