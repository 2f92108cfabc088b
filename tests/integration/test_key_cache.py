"""API keys are verified from a short-lived cache: no key-table read per request, and a
revocation takes effect within the cache's TTL (at once in the process that revoked)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from connector.adapters.database import make_session_factory
from connector.services.apikeys import KeyCache, Scope, create_key, revoke_key
from tests.helpers import utc


def test_a_key_is_read_once_per_ttl_and_a_revocation_takes_effect_after_it(
    engine: Engine,
) -> None:
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        created = create_key(session, "backend", [Scope.SEATS_READ], utc(2026, 1, 1))
    reads = 0

    def counting() -> Session:
        nonlocal reads
        reads += 1
        return sessions()

    clock = [100.0]
    cache = KeyCache(ttl_seconds=10, monotonic=lambda: clock[0])
    lookup: Callable[[], object] = lambda: cache.lookup(counting, created.secret)  # noqa: E731
    first = cache.lookup(counting, created.secret)
    assert first is not None and first.scopes == ("seats:read",)
    lookup()
    assert reads == 1
    with sessions.begin() as session:
        revoke_key(session, created.id, utc(2026, 1, 2))
    clock[0] += 5
    assert lookup() is not None  # still within the TTL
    clock[0] += 6
    assert lookup() is None and reads == 2
    assert cache.lookup(counting, "ssk_unknown") is None
