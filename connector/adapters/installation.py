"""This deployment's id: random, made once, kept in the database.

Every idempotency key the connector sends Stripe starts with it. Keys derived from our own
row ids (`…-call-42`) would otherwise collide when a database is restored from a backup or a
second deployment shares the Stripe account: Stripe would replay another request's answer
for 24 hours instead of doing the work.
"""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError

from connector.adapters.database import SessionFactory
from connector.adapters.models import Installation


def installation_id(sessions: SessionFactory) -> str:
    """Read it, or make it if this database has none yet (two racing makers agree: the
    primary key lets one win, and the other reads the winner's)."""
    with sessions() as session:
        found = session.get(Installation, 1)
        if found is not None:
            return found.installation_id
    try:
        with sessions.begin() as session:
            made = Installation(
                id=1, installation_id=secrets.token_hex(6), created_at=datetime.now(UTC)
            )
            session.add(made)
            return made.installation_id
    except IntegrityError:
        with sessions() as session:
            return session.get_one(Installation, 1).installation_id


class KeyPrefix:
    """`seatsync-<installation id>`, read on first use (not at start-up: the database may
    not be migrated yet when the app is built)."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions
        self._value: str | None = None
        self._lock = threading.Lock()

    def __call__(self) -> str:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = f"seatsync-{installation_id(self._sessions)}"
        return self._value
