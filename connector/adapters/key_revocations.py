"""Telling every process at once that an API key was revoked: PostgreSQL's LISTEN/NOTIFY.

Web workers keep the keys they verified in a cache (`connector.services.apikeys.KeyCache`).
A revocation is made elsewhere (the CLI, another machine), so it announces itself on a
channel, and each web worker listens there and forgets its keys. SQLite has no such
channel: there the cache is never trusted and keys are read per request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# One channel per database: installations sharing a database (in schemas of their own)
# hear each other's revocations, which only costs them one extra read of their keys.
CHANNEL = "seatsync_api_keys"


def announce_key_revoked(session: Session) -> None:
    """Queue the announcement in the revoking transaction: PostgreSQL delivers it to every
    listener when the transaction commits, never if it rolls back."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


class RevocationListener:
    """A daemon thread holding one connection of its own (outside the pool) that LISTENs on
    the channel. `on_listening` runs once the LISTEN is in place (from then on nothing is
    missed), `on_revoked` on each announcement, `on_lost` when the connection fails; it
    then connects again every `retry_seconds` until it is stopped."""

    def __init__(
        self,
        engine: Engine,
        *,
        on_listening: Callable[[], None],
        on_revoked: Callable[[], None],
        on_lost: Callable[[], None],
        retry_seconds: float = 1.0,
        poll_seconds: float = 1.0,
    ) -> None:
        self._engine = engine
        self._on_listening, self._on_revoked, self._on_lost = on_listening, on_revoked, on_lost
        self._retry_seconds, self._poll_seconds = retry_seconds, poll_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="key-revocations", daemon=True)

    def start(self) -> RevocationListener:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as error:  # the server went away, a restart, a network fault
                log.warning("key revocations: not listening (%s); retrying", error)
            self._on_lost()
            self._stopping.wait(self._retry_seconds)

    def _listen(self) -> None:
        # A connection of its own, not the pool's: held for good, and closed here however it
        # ended (the pool would try to roll back a lost one, and log the failure).
        args, options = self._engine.dialect.create_connect_args(self._engine.url)
        connection: Any = self._engine.dialect.connect(*args, **options)  # psycopg's
        try:
            connection.autocommit = True  # LISTEN takes effect at once, not at a commit
            connection.execute(f"LISTEN {CHANNEL}")
            self._on_listening()
            while not self._stopping.is_set():
                # Wakes at least every `poll_seconds` to see whether it is being stopped.
                for _announcement in connection.notifies(timeout=self._poll_seconds):
                    self._on_revoked()
        finally:
            connection.close()
