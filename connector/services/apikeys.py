"""API keys: created by the CLI, shown once, stored as a SHA-256 hash, scoped."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.adapters.models import ApiKey

KEY_PREFIX = "ssk_"


class Scope(StrEnum):
    SEATS_WRITE = "seats:write"
    SEATS_READ = "seats:read"
    BILLING_READ = "billing:read"
    OPS_WRITE = "ops:write"


@dataclass(frozen=True, slots=True)
class CreatedKey:
    id: str
    name: str
    secret: str  # shown once, never stored
    scopes: list[str]


def _hash(secret: str) -> str:
    # Keys are 256-bit random: a fast hash is enough (no dictionary to guess from).
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, name: str, scopes: list[Scope], now: datetime) -> CreatedKey:
    key_id = f"key_{secrets.token_hex(6)}"
    secret = f"{KEY_PREFIX}{secrets.token_urlsafe(32)}"
    ordered = sorted({scope.value for scope in scopes})
    session.add(
        ApiKey(id=key_id, name=name, secret_hash=_hash(secret), scopes=ordered, created_at=now)
    )
    return CreatedKey(id=key_id, name=name, secret=secret, scopes=ordered)


def find_key(session: Session, secret: str) -> ApiKey | None:
    key = session.scalars(select(ApiKey).where(ApiKey.secret_hash == _hash(secret))).first()
    if key is None or key.revoked_at is not None:
        return None
    return key


def revoke_key(session: Session, key_id: str, now: datetime) -> bool:
    key = session.get(ApiKey, key_id)
    if key is None:
        return False
    # PostgreSQL announces the change at the commit (a trigger: migration 0010), and every
    # web worker forgets its cached keys.
    key.revoked_at = now
    return True


@dataclass(frozen=True, slots=True)
class KnownKey:
    """What a request needs of its key: who, and what it may do."""

    id: str
    name: str
    scopes: tuple[str, ...]


class KeyCache:
    """Keys verified in the last `ttl_seconds`, so a request does not read the key table,
    kept only while the cache is trusted: while something tells it of every revocation
    (`connector.adapters.key_revocations`, on PostgreSQL). Untrusted (SQLite, or the
    listener's connection lost), every lookup reads the table, so a revoked key is refused
    on its next request either way. The TTL bounds the damage should an announcement be
    lost in the seconds before the listener notices its connection is gone. Only hashes
    are kept."""

    def __init__(self, ttl_seconds: float = 10.0, monotonic: Callable[[], float] = time.monotonic):
        self._ttl, self._monotonic = ttl_seconds, monotonic
        self._known: dict[str, tuple[float, KnownKey]] = {}
        self._lock = threading.Lock()
        self._trusted = False
        # Moves on every clear: a lookup that read the table before a revocation's clear
        # must not store what it read after it.
        self._generation = 0

    def lookup(self, session_factory: Callable[[], Session], secret: str) -> KnownKey | None:
        digest = _hash(secret)
        now = self._monotonic()
        with self._lock:
            cached = self._known.get(digest)
            generation = self._generation
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        with session_factory() as session:
            key = find_key(session, secret)
            known = None if key is None else KnownKey(key.id, key.name, tuple(key.scopes))
        with self._lock:
            if known is None:
                self._known.pop(digest, None)
            elif self._trusted and generation == self._generation:
                self._known[digest] = (now, known)
        return known

    @property
    def trusted(self) -> bool:
        return self._trusted

    def clear(self) -> None:
        """A key row changed somewhere (revoked, or deleted by hand): forget them all (it is
        rare)."""
        self._forget()

    def trust(self) -> None:
        """From now on every revocation is announced: keys may be kept (none from before:
        one may have been revoked before the announcements started)."""
        self._forget(trusted=True)

    def distrust(self) -> None:
        """Announcements may be missed from now on: read keys per request again."""
        self._forget(trusted=False)

    def _forget(self, *, trusted: bool | None = None) -> None:
        with self._lock:
            self._known.clear()
            self._generation += 1
            if trusted is not None:
                self._trusted = trusted
